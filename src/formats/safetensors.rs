//! safetensors header parser.
//!
//! Layout: an 8-byte little-endian `u64` header length `N`, then `N` bytes of a UTF-8 JSON object
//! mapping each tensor name to `{"dtype": ..., "shape": [...], "data_offsets": [begin, end]}`
//! (offsets relative to the first byte after the header), plus an optional `"__metadata__"`
//! object of string pairs. Tensor data follows the header. Only the header is read; tensors are
//! described with absolute offsets into the same bytes.

use crate::error::{Error, Result};
use crate::formats::cursor::Cursor;
use crate::tensor::{tensor_bytes, DType, TensorInfo};

/// Most elements of one JSON array in a header (a shape has at most 8 dims, `data_offsets` 2).
const MAX_ARRAY_LEN: usize = 16;
/// Most JSON values in a header (a 7B model's header has ~2,500).
const MAX_JSON_VALUES: usize = 1 << 20;

/// The largest JSON header accepted (100 MB, as the reference implementation).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// A parsed safetensors header.
#[derive(Clone, Debug)]
pub struct SafetensorsFile {
    /// Tensors (offsets absolute in the file, `file` = the given index), sorted by offset.
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__` string pairs.
    pub metadata: Vec<(String, String)>,
}

impl SafetensorsFile {
    /// The tensor with this name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The value of a `__metadata__` key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// True when the bytes look like a safetensors file (u64 header length, then `{`).
///
/// Needs at least 10 bytes, a header length of 2..=[`MAX_HEADER_LEN`] and a `{` right after the
/// length. The header length is not compared with the file size, so that a truncated file is
/// still recognised and [`parse`] reports the truncation.
pub fn is_safetensors(bytes: &[u8]) -> bool {
    let Some(n) = Cursor::new(bytes).u64() else { return false };
    bytes.len() >= 10 && (2..=MAX_HEADER_LEN).contains(&n) && bytes[8] == b'{'
}

/// The [`DType`] of a safetensors dtype string, `None` for any dtype other than F32/F16/BF16.
fn dtype_of(s: &str) -> Option<DType> {
    match s {
        "F32" => Some(DType::F32),
        "F16" => Some(DType::F16),
        "BF16" => Some(DType::BF16),
        _ => None,
    }
}

/// Parse; `file_index` is stored in each TensorInfo.
///
/// Errors: `Format` for a header length larger than the file or [`MAX_HEADER_LEN`], a header
/// that is not a UTF-8 JSON object of the expected shape, `end - begin` different from
/// `product(shape) × dtype size`, a range outside the file, or overlapping ranges; `Unsupported`
/// for a tensor whose dtype is not F32, F16 or BF16 (the message names the tensor). Every message
/// starts with `path` and names the tensor and byte offsets where they apply.
pub fn parse(bytes: &[u8], path: &str, file_index: usize) -> Result<SafetensorsFile> {
    let ferr = |msg: String| Error::format(format!("{path}: safetensors: {msg}"));
    let len = bytes.len();
    let Some(n) = Cursor::new(bytes).u64() else {
        return Err(ferr(format!("at byte offset 0: truncated header length: need 8 bytes, file is {len} bytes")));
    };
    if n > MAX_HEADER_LEN {
        return Err(ferr(format!("at byte offset 0: header length {n} exceeds the limit of {MAX_HEADER_LEN} bytes")));
    }
    if n > (len - 8) as u64 {
        return Err(ferr(format!(
            "at byte offset 0: header length {n} exceeds the {} bytes after the length field (file is {len} bytes)",
            len - 8
        )));
    }
    let n = n as usize;
    let data_start = 8 + n;
    let data_len = len - data_start;
    let header = &bytes[8..data_start];
    // Before the header becomes `serde_json::Value`s (~30 bytes each, however short the text):
    // a shape of millions of numbers took 20 times the header's size in memory.
    if let Err((at, msg)) = crate::jsonsize::check(header, MAX_JSON_VALUES, Some(MAX_ARRAY_LEN)) {
        return Err(ferr(format!("at byte offset {}: the JSON header has {msg}", 8 + at)));
    }
    let json: serde_json::Value = serde_json::from_slice(header).map_err(|e| {
        // serde_json reports 1-based line/column; turn them into a byte offset in the file.
        let line_start: usize =
            header.split(|&b| b == b'\n').take(e.line().saturating_sub(1)).map(|l| l.len() + 1).sum();
        let at = 8 + line_start + e.column().saturating_sub(1);
        ferr(format!("at byte offset {at}: JSON header (bytes 8..{data_start}) is invalid: {e}"))
    })?;
    let obj = match json {
        serde_json::Value::Object(o) => o,
        other => {
            return Err(ferr(format!(
                "at byte offset 8: expected the JSON header to be an object, found {}",
                json_kind(&other)
            )))
        }
    };

    let mut metadata = Vec::new();
    let mut tensors = Vec::with_capacity(obj.len());
    for (name, v) in &obj {
        if name == "__metadata__" {
            let m = v.as_object().ok_or_else(|| {
                ferr(format!("\"__metadata__\": expected an object of strings, found {}", json_kind(v)))
            })?;
            for (k, val) in m {
                let s = val.as_str().ok_or_else(|| {
                    ferr(format!("\"__metadata__\" key '{k}': expected a string, found {}", json_kind(val)))
                })?;
                metadata.push((k.clone(), s.to_owned()));
            }
            continue;
        }
        let terr = |msg: String| ferr(format!("tensor '{name}': {msg}"));
        let t = v.as_object().ok_or_else(|| terr(format!("expected an object, found {}", json_kind(v))))?;
        let dtype_s = match t.get("dtype") {
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(other) => return Err(terr(format!("\"dtype\": expected a string, found {}", json_kind(other)))),
            None => return Err(terr("missing \"dtype\"".into())),
        };
        let shape_v = match t.get("shape") {
            Some(serde_json::Value::Array(a)) => a,
            Some(other) => return Err(terr(format!("\"shape\": expected an array, found {}", json_kind(other)))),
            None => return Err(terr("missing \"shape\"".into())),
        };
        let mut shape = Vec::with_capacity(shape_v.len());
        for (i, d) in shape_v.iter().enumerate() {
            let d = d
                .as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| terr(format!("\"shape\"[{i}]: expected a non-negative integer, found {d}")))?;
            shape.push(d);
        }
        let offs = match t.get("data_offsets") {
            Some(serde_json::Value::Array(a)) if a.len() == 2 => a,
            Some(other) => return Err(terr(format!("\"data_offsets\": expected [begin, end], found {other}"))),
            None => return Err(terr("missing \"data_offsets\"".into())),
        };
        let off = |i: usize| {
            offs[i].as_u64().and_then(|x| usize::try_from(x).ok()).ok_or_else(|| {
                terr(format!("\"data_offsets\"[{i}]: expected a non-negative integer, found {}", offs[i]))
            })
        };
        let (begin, end) = (off(0)?, off(1)?);
        let dtype = match dtype_of(dtype_s) {
            Some(d) => d,
            None => {
                return Err(Error::unsupported(format!(
                    "{path}: safetensors: tensor '{name}' has dtype {dtype_s}; only F32, F16 and BF16 are supported"
                )))
            }
        };
        if begin > end {
            return Err(terr(format!("\"data_offsets\" [{begin}, {end}]: begin is after end")));
        }
        let nbytes = tensor_bytes(dtype, &shape).ok_or_else(|| terr(format!("shape {shape:?} overflows")))?;
        if end - begin != nbytes {
            return Err(terr(format!(
                "data_offsets [{begin}, {end}] span {} bytes, but {} {shape:?} needs {nbytes}",
                end - begin,
                dtype.name()
            )));
        }
        if end > data_len {
            return Err(terr(format!(
                "data_offsets [{begin}, {end}] (absolute bytes {}..{}) end past the end of the file ({len} bytes; data section is {data_len} bytes)",
                data_start as u128 + begin as u128,
                data_start as u128 + end as u128
            )));
        }
        tensors.push(TensorInfo {
            name: name.clone(),
            dtype,
            shape,
            file: file_index,
            offset: data_start + begin,
            nbytes,
        });
    }

    tensors.sort_by_key(|t| (t.offset, t.nbytes));
    let mut prev: Option<&TensorInfo> = None;
    for t in tensors.iter().filter(|t| t.nbytes > 0) {
        if let Some(p) = prev {
            if t.offset < p.offset + p.nbytes {
                return Err(ferr(format!(
                    "tensor '{}' (data_offsets [{}, {}]) overlaps tensor '{}' (data_offsets [{}, {}])",
                    t.name,
                    t.offset - data_start,
                    t.offset + t.nbytes - data_start,
                    p.name,
                    p.offset - data_start,
                    p.offset + p.nbytes - data_start
                )));
            }
        }
        prev = Some(t);
    }

    Ok(SafetensorsFile { tensors, metadata })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// The loader's adapter: this format's files as what the binder reads (`loader::Source`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use runllama_kernels::RopeLayout;

use crate::formats::hf_config;
use crate::loader::{LoadOptions, Partial, Scheme, Source};
use crate::model::FusedLayout;
use crate::storage::Storage;

/// A directory of safetensors: `model.safetensors.index.json` names the shards, else
/// `model.safetensors`, else every `*.safetensors` in name order.
pub(crate) fn open_dir(dir: &Path, opts: &LoadOptions<'_>) -> Result<Source> {
    let shown = dir.display().to_string();
    let index = dir.join("model.safetensors.index.json");
    let mut names: Vec<String> = Vec::new();
    if index.is_file() {
        let text = crate::fsio::read_small(&index, "the safetensors index", crate::fsio::CONFIG_LIMIT)?;
        names = index_shards(&text, &index.display().to_string())?;
    } else if dir.join("model.safetensors").is_file() {
        names.push("model.safetensors".into());
    } else {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("{shown}: {e}")))?;
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.ends_with(".safetensors") {
                names.push(n);
            }
        }
        names.sort();
    }
    if names.is_empty() {
        return Err(Error::io(format!("{shown}: a directory without model.safetensors(.index.json) or *.safetensors")));
    }
    let mut files = Vec::new();
    for n in names {
        let p = dir.join(&n);
        let s = Storage::open(&p, opts.use_mmap)?;
        files.push((p, s));
    }
    open(files, dir, opts)
}

pub(crate) fn open(files: Vec<(PathBuf, Storage)>, dir: &Path, opts: &LoadOptions<'_>) -> Result<Source> {
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut storages = Vec::new();
    let mut file_names: Vec<String> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, (p, s)) in files.into_iter().enumerate() {
        let shown = p.display().to_string();
        let parsed = parse(s.bytes(), &shown, i)?;
        for t in &parsed.tensors {
            // Two shards with one name: which one is meant cannot be told.
            if let Some(&first) = seen.get(&t.name) {
                return Err(Error::format(format!(
                    "{shown}: tensor {:?} is also in {}: a tensor must be in one shard only",
                    t.name, file_names[first]
                )));
            }
            seen.insert(t.name.clone(), i);
        }
        tensors.extend(parsed.tensors);
        storages.push(s);
        file_names.push(shown);
    }
    let mut hp = Partial::default();
    let config = opts.config_path.clone().unwrap_or_else(|| dir.join("config.json"));
    if config.is_file() || opts.config_path.is_some() {
        hf_config::apply(&mut hp, &config)?;
    }
    Ok(Source {
        format: "safetensors",
        scheme: Scheme::Hf,
        rope_layout: RopeLayout::Halves,
        files: storages,
        file_names,
        tensors,
        hp,
        tokenizer: None,
        // tokenizer.json last: a LLaMA 2 repo's is SentencePiece-style and would be refused.
        tokenizer_files: vec![
            dir.join("tokenizer.model"),
            dir.join("original/tokenizer.model"),
            dir.join("tokenizer.json"),
        ],
        spans: HashMap::new(),
        fused_layout: FusedLayout::Concat,
        assumed: Vec::new(),
    })
}

/// The shard files a `model.safetensors.index.json` (`text`, shown as `shown`) names in its
/// `weight_map`, each once, in name order; each must be a plain file name.
pub(crate) fn index_shards(text: &[u8], shown: &str) -> Result<Vec<String>> {
    let v = crate::jsonsize::parse(text, 1 << 20, shown)?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::format(format!("{shown}: no \"weight_map\" object")))?;
    let mut names: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file =
            file.as_str().ok_or_else(|| Error::format(format!("{shown}: weight_map[{tensor:?}] is not a string")))?;
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(Error::format(format!(
                "{shown}: shard name {file:?} for {tensor:?} must be a plain file name"
            )));
        }
        if !names.iter().any(|n| n == file) {
            names.push(file.to_string());
        }
    }
    names.sort();
    Ok(names)
}
