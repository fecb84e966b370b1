//! llama2.c checkpoint parser (`export.py` versions 0 and 1, float32).
//!
//! - Version 0 ("legacy"): 7 × `i32` header `dim, hidden_dim, n_layers, n_heads, n_kv_heads,
//!   vocab_size, seq_len` (a negative `vocab_size` means a separate classifier at the end), then
//!   float32 arrays: token embedding, every layer's attention norm, wq, wk, wv, wo, ffn norm, w1,
//!   w2, w3 (each group over all layers), final norm, two `[seq_len, head_size/2]` RoPE tables
//!   (skipped), then the classifier if not shared.
//! - Version 1: `u32` magic `0x616b3432` ("ak42"), `i32` version 1, the same 7 × `i32`, a `u8`
//!   shared-classifier flag, zero padding to 256 bytes; then float32 arrays: attention norms, ffn
//!   norms, final norm, token embedding, wq, wk, wv, wo, w1, w2, w3 (all layers each), classifier
//!   if not shared.
//! - Version 2 (Q8_0) is reported as unsupported.
//!
//! Tensors are described with Meta names (`tok_embeddings.weight`,
//! `layers.{i}.attention.wq.weight`, ...), all F32, matrices `[out, in]`; nothing is copied.

use crate::error::{Error, Result};
use crate::formats::cursor::Cursor;
use crate::tensor::{DType, TensorInfo};

/// The version-1+ magic, `"ak42"` read as a little-endian `u32`.
pub const MAGIC: u32 = 0x616b_3432;
/// Header bytes of a legacy (version 0) checkpoint.
pub const LEGACY_HEADER_LEN: usize = 28;
/// Header bytes of a version 1 checkpoint (padded).
pub const V1_HEADER_LEN: usize = 256;

/// The llama2.c header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Llama2cConfig {
    /// Model width.
    pub dim: usize,
    /// FFN width.
    pub hidden_dim: usize,
    /// Layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// KV heads.
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Max sequence length.
    pub seq_len: usize,
    /// Classifier shared with the embedding.
    pub shared_classifier: bool,
    /// 0 = legacy, 1 = "ak42" fp32 format.
    pub version: u32,
}

impl Llama2cConfig {
    /// Width of one attention head (`dim / n_heads`).
    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads.max(1)
    }
    /// Width of the key/value projections (`dim * n_kv_heads / n_heads`).
    pub fn kv_dim(&self) -> usize {
        self.head_size() * self.n_kv_heads
    }
}

/// The raw seven header integers at `at`.
fn read_i32s(bytes: &[u8], at: usize) -> Option<[i32; 7]> {
    let mut c = Cursor::window(bytes, at, bytes.len());
    let mut out = [0i32; 7];
    for o in &mut out {
        *o = c.i32()?;
    }
    Some(out)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Cursor::window(bytes, at, bytes.len()).u32()
}

const FIELDS: [&str; 7] = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];

/// True when the bytes look like a llama2.c checkpoint: the `"ak42"` magic, or a legacy header
/// whose seven values are all in plausible ranges and whose implied size (header, weights, RoPE
/// tables, classifier) equals `bytes.len()` exactly. `bytes` must be the whole file; see
/// [`is_llama2c_header`] when only the start of the file is at hand.
pub fn is_llama2c(bytes: &[u8]) -> bool {
    is_llama2c_header(bytes, bytes.len() as u64)
}

/// [`is_llama2c`] for a file of `file_len` bytes of which `head` holds at least the first 28.
pub fn is_llama2c_header(head: &[u8], file_len: u64) -> bool {
    if read_u32(head, 0) == Some(MAGIC) {
        return true;
    }
    let Some(h) = read_i32s(head, 0) else {
        return false;
    };
    let [dim, hidden, layers, heads, kv, vocab, seq] = h;
    let plausible = (1..=65_536).contains(&dim)
        && (1..=1 << 20).contains(&hidden)
        && (1..=1024).contains(&layers)
        && (1..=1024).contains(&heads)
        && (1..=heads).contains(&kv)
        && vocab != 0
        && vocab.unsigned_abs() <= 1 << 22
        && (1..=1 << 24).contains(&seq);
    if !plausible {
        return false;
    }
    match config_from(h, 0, None, "") {
        Ok(cfg) => expected_size(&cfg).map(|s| s as u64) == Some(file_len),
        Err(_) => false,
    }
}

/// Validate the seven header values and build the config. `shared` is the version-1 flag
/// (`None` for legacy, where the sign of `vocab_size` carries it). `at` is the byte offset of
/// the first field, for messages.
fn config_from(h: [i32; 7], at: usize, shared: Option<bool>, path: &str) -> Result<Llama2cConfig> {
    let err = |i: usize, msg: String| {
        Error::format(format!("{path}: llama2.c header: at byte offset {}: {} {msg}", at + 4 * i, FIELDS[i]))
    };
    let version = if shared.is_some() { 1 } else { 0 };
    let (vocab, shared) = match shared {
        None => (h[5].unsigned_abs(), h[5] > 0),
        Some(s) => {
            if h[5] < 0 {
                return Err(err(5, format!("must be positive in version 1, found {}", h[5])));
            }
            (h[5] as u32, s)
        }
    };
    for (i, &v) in h.iter().enumerate() {
        if v == 0 || (i != 5 && v < 0) {
            return Err(err(i, format!("must be positive, found {v}")));
        }
    }
    let cfg = Llama2cConfig {
        dim: h[0] as usize,
        hidden_dim: h[1] as usize,
        n_layers: h[2] as usize,
        n_heads: h[3] as usize,
        n_kv_heads: h[4] as usize,
        vocab_size: vocab as usize,
        seq_len: h[6] as usize,
        shared_classifier: shared,
        version,
    };
    if cfg.n_kv_heads > cfg.n_heads || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
        return Err(err(
            4,
            format!("{} must divide n_heads {} (expected a divisor of n_heads)", cfg.n_kv_heads, cfg.n_heads),
        ));
    }
    if !cfg.dim.is_multiple_of(cfg.n_heads) {
        return Err(err(3, format!("{} must divide dim {} (expected a divisor of dim)", cfg.n_heads, cfg.dim)));
    }
    if !cfg.head_size().is_multiple_of(2) {
        return Err(err(
            3,
            format!(
                "{} gives an odd head size {} (dim {} / n_heads); RoPE needs an even head size",
                cfg.n_heads,
                cfg.head_size(),
                cfg.dim
            ),
        ));
    }
    Ok(cfg)
}

/// One stored array: its Meta name (`None` for the skipped RoPE tables) and shape.
type Segment = (Option<String>, Vec<usize>);

/// The arrays of a checkpoint in file order.
fn layout(c: &Llama2cConfig) -> Vec<Segment> {
    let (d, h, kv, l) = (c.dim, c.hidden_dim, c.kv_dim(), c.n_layers);
    let per_layer = |what: &str, shape: Vec<usize>| -> Vec<Segment> {
        (0..l).map(|i| (Some(format!("layers.{i}.{what}.weight")), shape.clone())).collect()
    };
    let tok = vec![(Some("tok_embeddings.weight".to_string()), vec![c.vocab_size, d])];
    let att_norm = per_layer("attention_norm", vec![d]);
    let ffn_norm = per_layer("ffn_norm", vec![d]);
    let norm = vec![(Some("norm.weight".to_string()), vec![d])];
    let mats = [
        per_layer("attention.wq", vec![d, d]),
        per_layer("attention.wk", vec![kv, d]),
        per_layer("attention.wv", vec![kv, d]),
        per_layer("attention.wo", vec![d, d]),
    ];
    let ffn = [
        per_layer("feed_forward.w1", vec![h, d]),
        per_layer("feed_forward.w2", vec![d, h]),
        per_layer("feed_forward.w3", vec![h, d]),
    ];
    let mut out = Vec::new();
    if c.version == 0 {
        out.extend(tok);
        out.extend(att_norm);
        for m in mats {
            out.extend(m);
        }
        out.extend(ffn_norm);
        for m in ffn {
            out.extend(m);
        }
        out.extend(norm);
        let half = c.head_size() / 2;
        out.push((None, vec![c.seq_len, half]));
        out.push((None, vec![c.seq_len, half]));
    } else {
        out.extend(att_norm);
        out.extend(ffn_norm);
        out.extend(norm);
        out.extend(tok);
        for m in mats {
            out.extend(m);
        }
        for m in ffn {
            out.extend(m);
        }
    }
    if !c.shared_classifier {
        out.push((Some("output.weight".to_string()), vec![c.vocab_size, d]));
    }
    out
}

fn header_len(c: &Llama2cConfig) -> usize {
    if c.version == 0 {
        LEGACY_HEADER_LEN
    } else {
        V1_HEADER_LEN
    }
}

/// The exact size in bytes of a checkpoint with this config (header, every array, and for
/// version 0 the two RoPE tables), or `None` when it overflows `usize`.
pub fn expected_size(c: &Llama2cConfig) -> Option<usize> {
    if c.n_heads == 0 {
        return None;
    }
    let (d, h, l) = (c.dim, c.hidden_dim, c.n_layers);
    let kv = d.checked_mul(c.n_kv_heads)? / c.n_heads;
    let dd = d.checked_mul(d)?;
    // Per layer: two norms [d], wq and wo [d, d], wk and wv [kv, d], w1 w2 w3 [h, d].
    let per_layer = d
        .checked_mul(2)?
        .checked_add(dd.checked_mul(2)?)?
        .checked_add(kv.checked_mul(d)?.checked_mul(2)?)?
        .checked_add(h.checked_mul(d)?.checked_mul(3)?)?;
    let emb = c.vocab_size.checked_mul(d)?;
    let mut n = emb.checked_add(per_layer.checked_mul(l)?)?.checked_add(d)?;
    if c.version == 0 {
        let rope = c.seq_len.checked_mul(c.head_size() / 2)?.checked_mul(2)?;
        n = n.checked_add(rope)?;
    }
    if !c.shared_classifier {
        n = n.checked_add(emb)?;
    }
    n.checked_mul(4)?.checked_add(header_len(c))
}

/// Parse the header and describe every tensor.
///
/// `bytes` is the whole file. Errors: `Format` for a header that is truncated or inconsistent
/// (a value not positive, `n_heads` not a multiple of `n_kv_heads`, `dim` not a multiple of
/// `n_heads`, an odd head size, sizes overflowing) or a file shorter than the header implies
/// (expected vs found, and the first tensor that does not fit); `Unsupported` for version 2
/// (Q8_0) or a later version. Trailing bytes after the last array are allowed.
pub fn parse(bytes: &[u8], path: &str) -> Result<(Llama2cConfig, Vec<TensorInfo>)> {
    let len = bytes.len();
    let cfg = if read_u32(bytes, 0) == Some(MAGIC) {
        let version = read_u32(bytes, 4).ok_or_else(|| {
            Error::format(format!(
                "{path}: llama2.c header: at byte offset 4: truncated version field (file is {len} bytes)"
            ))
        })? as i32;
        match version {
            1 => {}
            2 => {
                return Err(Error::unsupported(format!(
                    "{path}: llama2.c header: at byte offset 4: version 2 (Q8_0 quantized) checkpoints are not supported; export with --version 1 (fp32)"
                )))
            }
            v if v > 2 => {
                return Err(Error::unsupported(format!(
                    "{path}: llama2.c header: at byte offset 4: version {v} is not supported (expected 1)"
                )))
            }
            v => {
                return Err(Error::format(format!(
                    "{path}: llama2.c header: at byte offset 4: invalid version {v} (expected 1)"
                )))
            }
        }
        if len < V1_HEADER_LEN {
            return Err(Error::format(format!(
                "{path}: llama2.c header: at byte offset {len}: truncated: a version 1 header is {V1_HEADER_LEN} bytes, file is {len} bytes"
            )));
        }
        let h = read_i32s(bytes, 8).ok_or_else(|| Error::internal("header length checked"))?;
        let shared = match bytes[36] {
            0 => false,
            1 => true,
            b => {
                return Err(Error::format(format!(
                    "{path}: llama2.c header: at byte offset 36: shared_classifier flag must be 0 or 1, found {b}"
                )))
            }
        };
        config_from(h, 8, Some(shared), path)?
    } else {
        let h = read_i32s(bytes, 0).ok_or_else(|| {
            Error::format(format!(
                "{path}: llama2.c header: at byte offset {len}: truncated: the legacy header is {LEGACY_HEADER_LEN} bytes, file is {len} bytes"
            ))
        })?;
        config_from(h, 0, None, path)?
    };

    let expected = expected_size(&cfg)
        .ok_or_else(|| Error::format(format!("{path}: llama2.c header: the model size overflows (config {cfg:?})")))?;
    let summary = format!(
        "dim {} hidden_dim {} n_layers {} n_heads {} n_kv_heads {} vocab_size {} seq_len {}{}",
        cfg.dim,
        cfg.hidden_dim,
        cfg.n_layers,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.vocab_size,
        cfg.seq_len,
        if cfg.shared_classifier { "" } else { ", separate classifier" }
    );
    // Every layer takes at least 36 bytes, so a layout is only built for layer counts the file
    // could hold (or, to name the first missing tensor, for modest counts).
    if expected > len && cfg.n_layers > 1 << 16 {
        return Err(Error::format(format!(
            "{path}: llama2.c: truncated: the header ({summary}) implies {expected} bytes, but the file is {len} bytes"
        )));
    }
    let mut tensors = Vec::new();
    let mut offset = header_len(&cfg);
    for (name, shape) in layout(&cfg) {
        // Cannot overflow: expected_size summed the same sizes.
        let nbytes = 4 * shape.iter().product::<usize>();
        let end = offset + nbytes;
        if end > len {
            let what = match &name {
                Some(n) => format!("tensor '{n}'"),
                None => "the RoPE frequency table".to_string(),
            };
            return Err(Error::format(format!(
                "{path}: llama2.c: truncated: {what} F32 {shape:?} at byte offset {offset} ends at byte {end}, but the file is {len} bytes (expected {expected} bytes in all for {summary})"
            )));
        }
        if let Some(name) = name {
            tensors.push(TensorInfo { name, dtype: DType::F32, shape, file: 0, offset, nbytes });
        }
        offset = end;
    }
    if offset != len {
        // Bytes the header does not account for: its sizes are not the file's, so the arrays
        // would be read from the wrong offsets.
        return Err(Error::format(format!(
            "{path}: llama2.c: the header ({summary}) accounts for {expected} bytes, but the file is {len} bytes ({} bytes unaccounted for)",
            len - offset
        )));
    }
    Ok((cfg, tensors))
}

// ---------------------------------------------------------------------------------------------
// The loader's adapter: this format's files as what the binder reads (`loader::Source`).

use std::collections::HashMap;
use std::path::Path;

use runllama_kernels::RopeLayout;

use crate::formats::hf_config;
use crate::loader::{LoadOptions, Partial, Scheme, Source};
use crate::model::FusedLayout;
use crate::storage::Storage;

/// A llama2.c `.bin`: its header and arrays in place (hyper-parameters from a `config_path`
/// when given).
pub(crate) fn open(path: &Path, storage: Storage, opts: &LoadOptions<'_>) -> Result<Source> {
    let shown = path.display().to_string();
    let (c, tensors) = parse(storage.bytes(), &shown)?;
    let mut hp = Partial {
        n_vocab: Some(c.vocab_size),
        n_embd: Some(c.dim),
        n_layer: Some(c.n_layers),
        n_head: Some(c.n_heads),
        n_head_kv: Some(c.n_kv_heads),
        n_ff: Some(c.hidden_dim),
        n_ctx_train: Some(c.seq_len),
        tied: Some(c.shared_classifier),
        ..Partial::default()
    };
    if let Some(cfg) = &opts.config_path {
        hf_config::apply(&mut hp, cfg)?;
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Source {
        format: "llama2c",
        scheme: Scheme::Meta,
        rope_layout: RopeLayout::Interleaved,
        files: vec![storage],
        file_names: vec![shown],
        tensors,
        hp,
        tokenizer: None,
        tokenizer_files: vec![dir.join("tokenizer.model")],
        spans: HashMap::new(),
        fused_layout: FusedLayout::Concat,
        assumed: Vec::new(),
    })
}
