//! GGUF parser (format versions 2 and 3, little-endian).
//!
//! Layout: magic `"GGUF"`, `u32` version, `u64` tensor count, `u64` metadata count; the metadata
//! key/value pairs; one tensor description per tensor (name, `u32` n_dims, `u64` dims innermost
//! first, `u32` ggml type, `u64` offset relative to the data section); the data section starts at
//! the end of the header rounded up to `general.alignment` (default 32).
//!
//! Only the header is read: tensors are described (absolute offsets into the same bytes), never
//! copied. Every count and length is checked against the bytes that remain before anything is
//! allocated, so a corrupt or hostile file gives an [`Error`] and never a panic or a huge
//! allocation.

use crate::error::{Error, Result};
use crate::formats::cursor::Cursor;
use crate::tensor::{tensor_bytes, DType, TensorInfo};
use crate::tokenizer::GgufVocab;

/// The alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;

/// Most dimensions a GGUF tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Deepest nesting of metadata arrays accepted (arrays of arrays of ...).
const MAX_ARRAY_DEPTH: usize = 8;

/// Most items reserved up front for a count read from the file. Counts are already bounded by the
/// bytes left, but an in-memory item is larger than its encoding (a key/value pair takes ~60
/// bytes for its 13), so vectors grow as items are actually parsed instead.
const MAX_PREALLOC: usize = 1 << 16;

fn prealloc(count: u64) -> usize {
    count.min(MAX_PREALLOC as u64) as usize
}

/// A GGUF metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    /// uint8
    U8(u8),
    /// int8
    I8(i8),
    /// uint16
    U16(u16),
    /// int16
    I16(i16),
    /// uint32
    U32(u32),
    /// int32
    I32(i32),
    /// uint64
    U64(u64),
    /// int64
    I64(i64),
    /// float32
    F32(f32),
    /// float64
    F64(f64),
    /// bool
    Bool(bool),
    /// UTF-8 string
    Str(String),
    /// array
    Array(GgufArray),
}

/// A GGUF metadata array, kept as its encoded bytes (validated when the file was parsed):
/// memory as the file's, whatever the element type. Elements are decoded when read.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufArray {
    elem: u32,
    len: usize,
    raw: Vec<u8>,
}

impl GgufArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements, decoded one by one.
    pub fn iter(&self) -> impl Iterator<Item = GgufValue> + '_ {
        let mut r = Reader { cur: Cursor::new(&self.raw), path: "" };
        // Cannot fail: the bytes were validated as `len` values of this type.
        (0..self.len).map_while(move |_| r.value(self.elem, "", 0).ok())
    }
}

impl GgufValue {
    /// The GGUF name of the value's type (`"uint32"`, `"string"`, `"array"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "uint8",
            GgufValue::I8(_) => "int8",
            GgufValue::U16(_) => "uint16",
            GgufValue::I16(_) => "int16",
            GgufValue::U32(_) => "uint32",
            GgufValue::I32(_) => "int32",
            GgufValue::U64(_) => "uint64",
            GgufValue::I64(_) => "int64",
            GgufValue::F32(_) => "float32",
            GgufValue::F64(_) => "float64",
            GgufValue::Bool(_) => "bool",
            GgufValue::Str(_) => "string",
            GgufValue::Array(_) => "array",
        }
    }

    /// The value as an `i128` when it is an integer of any width, else `None`.
    pub fn as_integer(&self) -> Option<i128> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v.into()),
            _ => None,
        }
    }

    /// The value as an `f64` when it is a float32 or float64, else `None`.
    pub fn as_float(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The string when the value is a string, else `None`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A parsed GGUF file: metadata, tensor descriptions (offsets absolute in the file).
#[derive(Clone, Debug)]
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensors in file order; `offset` is absolute, `file` is 0.
    pub tensors: Vec<TensorInfo>,
}

/// True when the bytes start with the GGUF magic.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GGUF")
}

/// The ggml name of a tensor type number (`2` -> `"Q4_0"`), or `None` for an unknown number.
pub fn ggml_type_name(t: u32) -> Option<&'static str> {
    Some(match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_2",
        5 => "Q4_3",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36 => "IQ4_NL_4_4",
        37 => "IQ4_NL_4_8",
        38 => "IQ4_NL_8_8",
        39 => "MXFP4",
        _ => return None,
    })
}

/// The [`DType`] of a supported ggml type number (0 F32, 1 F16, 30 BF16).
pub(crate) fn ggml_dtype(t: u32) -> Option<DType> {
    match t {
        0 => Some(DType::F32),
        1 => Some(DType::F16),
        2 => Some(DType::Q4_0),
        3 => Some(DType::Q4_1),
        6 => Some(DType::Q5_0),
        7 => Some(DType::Q5_1),
        8 => Some(DType::Q8_0),
        10 => Some(DType::Q2_K),
        11 => Some(DType::Q3_K),
        12 => Some(DType::Q4_K),
        13 => Some(DType::Q5_K),
        14 => Some(DType::Q6_K),
        30 => Some(DType::BF16),
        _ => None,
    }
}

/// The file's bytes as GGUF reads them: the crate's cursor, its errors worded for GGUF.
struct Reader<'a> {
    cur: Cursor<'a>,
    path: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, at: usize, msg: impl std::fmt::Display) -> Error {
        Error::format(format!("{}: GGUF: at byte offset {at}: {msg}", self.path))
    }

    fn remaining(&self) -> usize {
        self.cur.left()
    }

    /// A read of `what` through `read`, or the truncation error naming what it needed.
    fn read<T>(&mut self, need: u64, what: &str, read: impl FnOnce(&mut Cursor<'a>) -> Option<T>) -> Result<T> {
        read(&mut self.cur).ok_or_else(|| {
            self.err(
                self.cur.pos(),
                format!(
                    "truncated {what}: need {need} bytes, only {} left (file is {} bytes)",
                    self.cur.left(),
                    self.cur.end()
                ),
            )
        })
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        self.read(n as u64, what, |c| c.take(n as u64))
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        self.read(1, what, |c| c.array::<1>().map(|[b]| b))
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        self.read(2, what, Cursor::u16)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        self.read(4, what, Cursor::u32)
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        self.read(8, what, Cursor::u64)
    }

    /// A count that must fit `remaining / min_item_size` items.
    fn count(&mut self, min_item_size: usize, what: &str) -> Result<usize> {
        let at = self.cur.pos();
        let n = self.u64(what)?;
        let max = (self.remaining() / min_item_size.max(1)) as u64;
        if n > max {
            return Err(self.err(
                at,
                format!(
                    "{what} {n} needs at least {} bytes ({min_item_size} per item), but only {} bytes follow (truncated file or corrupt count)",
                    (n as u128) * min_item_size as u128,
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        self.str_ref(what).map(str::to_owned)
    }

    /// A length-prefixed UTF-8 string, borrowed from the file.
    fn str_ref(&mut self, what: &str) -> Result<&'a str> {
        let at = self.cur.pos();
        let n = self.u64(&format!("{what} length"))?;
        if n > self.remaining() as u64 {
            return Err(
                self.err(at, format!("{what} length {n} exceeds the {} bytes left in the file", self.remaining()))
            );
        }
        let data_at = self.cur.pos();
        let s = self.take(n as usize, what)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(s),
            Err(e) => Err(self.err(data_at + e.valid_up_to(), format!("{what} is not valid UTF-8"))),
        }
    }

    /// Check and pass over a value of GGUF type `ty` (the checks of [`Reader::value`]) without
    /// copying a string.
    fn skip_value(&mut self, ty: u32, key: &str, depth: usize) -> Result<()> {
        if ty == 8 {
            return self.str_ref(&format!("string value of key '{key}'")).map(drop);
        }
        self.value(ty, key, depth).map(drop)
    }

    /// A value of GGUF type `ty`; `key` names it in errors.
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<GgufValue> {
        let at = self.cur.pos();
        Ok(match ty {
            0 => GgufValue::U8(self.u8(key)?),
            1 => GgufValue::I8(self.u8(key)? as i8),
            2 => GgufValue::U16(self.u16(key)?),
            3 => GgufValue::I16(self.u16(key)? as i16),
            4 => GgufValue::U32(self.u32(key)?),
            5 => GgufValue::I32(self.u32(key)? as i32),
            6 => GgufValue::F32(f32::from_bits(self.u32(key)?)),
            7 => match self.u8(key)? {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.err(at, format!("key '{key}': bool value must be 0 or 1, found {b}"))),
            },
            8 => GgufValue::Str(self.string(&format!("string value of key '{key}'"))?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(
                        self.err(at, format!("key '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH} levels"))
                    );
                }
                let elem_at = self.cur.pos();
                let elem = self.u32(&format!("array element type of key '{key}'"))?;
                let min = min_value_size(elem).ok_or_else(|| {
                    self.err(elem_at, format!("key '{key}': invalid array element type {elem} (expected 0..=12)"))
                })?;
                let n = self.count(min, &format!("array length of key '{key}'"))?;
                let start = self.cur.pos();
                for _ in 0..n {
                    self.skip_value(elem, key, depth + 1)?;
                }
                GgufValue::Array(GgufArray { elem, len: n, raw: self.cur.since(start).to_vec() })
            }
            10 => GgufValue::U64(self.u64(key)?),
            11 => GgufValue::I64(self.u64(key)? as i64),
            12 => GgufValue::F64(f64::from_bits(self.u64(key)?)),
            _ => return Err(self.err(at, format!("key '{key}': invalid value type {ty} (expected 0..=12)"))),
        })
    }
}

/// Fewest bytes a value of GGUF type `ty` takes, or `None` for an invalid type.
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

/// Parse the header of a GGUF file held in `bytes` (the whole mapped file); `path` names it in errors.
///
/// Errors: `Format` for a corrupt, truncated or inconsistent file (bad magic, counts larger than
/// the file, invalid UTF-8, bad alignment, tensor data outside the file or overlapping);
/// `Unsupported` for GGUF v1 or a version above 3, a big-endian file, or a tensor whose ggml type
/// is not F32, F16 or BF16 (the message names the tensor and the type).
pub fn parse(bytes: &[u8], path: &str) -> Result<GgufFile> {
    let mut r = Reader { cur: Cursor::new(bytes), path };
    let magic = r.read(4, "magic", Cursor::array::<4>)?;
    if &magic != b"GGUF" {
        return Err(r.err(0, format!("bad magic: expected \"GGUF\" (47 47 55 46), found {magic:02x?}")));
    }
    let version = r.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(Error::unsupported(format!(
                "{path}: GGUF: at byte offset 4: GGUF version 1 is not supported (expected 2 or 3)"
            )))
        }
        v if v.swap_bytes() <= 3 && v.swap_bytes() != 0 => {
            return Err(Error::unsupported(format!(
                "{path}: GGUF: at byte offset 4: big-endian GGUF (version {}) is not supported",
                v.swap_bytes()
            )))
        }
        0 => return Err(r.err(4, "invalid GGUF version 0 (expected 2 or 3)")),
        v => {
            let msg = format!("GGUF version {v} is not supported (expected 2 or 3)");
            return Err(Error::unsupported(format!("{path}: GGUF: at byte offset 4: {msg}")));
        }
    }
    // A tensor description takes at least 32 bytes (name length, n_dims, one dim, type, offset);
    // a key/value pair at least 13 (key length, type, one byte of value).
    let tensor_count_at = r.cur.pos();
    let tensor_count = r.u64("tensor count")?;
    let kv_count_at = r.cur.pos();
    let kv_count = r.u64("metadata count")?;
    let left = r.remaining() as u64;
    if tensor_count > left / 32 {
        return Err(r.err(
            tensor_count_at,
            format!(
                "tensor count {tensor_count} needs at least {} bytes of tensor descriptions (32 each), but only {left} bytes follow (truncated file or corrupt count)",
                tensor_count as u128 * 32
            ),
        ));
    }
    if kv_count > left / 13 {
        return Err(r.err(
            kv_count_at,
            format!(
                "metadata count {kv_count} needs at least {} bytes of key/value pairs (13 each), but only {left} bytes follow (truncated file or corrupt count)",
                kv_count as u128 * 13
            ),
        ));
    }

    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(prealloc(kv_count));
    let mut keys = std::collections::HashSet::with_capacity(prealloc(kv_count));
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..kv_count {
        let key_at = r.cur.pos();
        let key = r.string(&format!("key of metadata entry {i}"))?;
        if !keys.insert(key.clone()) {
            return Err(r.err(key_at, format!("duplicate metadata key '{key}'")));
        }
        let ty = r.u32(&format!("value type of key '{key}'"))?;
        let value_at = r.cur.pos();
        let value = r.value(ty, &key, 0)?;
        if key == "general.alignment" {
            let a = match value {
                GgufValue::U32(a) => a,
                ref v => {
                    return Err(r.err(
                        value_at,
                        format!("key 'general.alignment': expected type uint32, found {}", v.type_name()),
                    ))
                }
            };
            if a == 0 || !a.is_power_of_two() {
                return Err(r.err(value_at, format!("key 'general.alignment': expected a power of two, found {a}")));
            }
            alignment = a as usize;
        }
        metadata.push((key, value));
    }

    struct Raw {
        name: String,
        at: usize,
        shape: Vec<usize>,
        dtype: DType,
        rel: u64,
    }
    let mut raws: Vec<Raw> = Vec::with_capacity(prealloc(tensor_count));
    let mut names = std::collections::HashSet::with_capacity(prealloc(tensor_count));
    for i in 0..tensor_count {
        let at = r.cur.pos();
        let name = r.string(&format!("name of tensor {i}"))?;
        if !names.insert(name.clone()) {
            return Err(r.err(at, format!("duplicate tensor name '{name}'")));
        }
        let nd_at = r.cur.pos();
        let n_dims = r.u32(&format!("n_dims of tensor '{name}'"))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(r.err(nd_at, format!("tensor '{name}': n_dims must be 1..={MAX_DIMS}, found {n_dims}")));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let dim_at = r.cur.pos();
            let v = r.u64(&format!("dimension {d} of tensor '{name}'"))?;
            let v = usize::try_from(v)
                .ok()
                .filter(|&v| v <= i64::MAX as usize)
                .ok_or_else(|| r.err(dim_at, format!("tensor '{name}': dimension {d} is {v}, too large")))?;
            shape.push(v);
        }
        shape.reverse(); // ggml lists ne innermost first; TensorInfo wants outermost first
        let ty_at = r.cur.pos();
        let ty = r.u32(&format!("type of tensor '{name}'"))?;
        let dtype = match ggml_dtype(ty) {
            Some(d) => d,
            None => {
                let tname = ggml_type_name(ty).unwrap_or("unknown");
                return Err(Error::unsupported(format!(
                    "{path}: GGUF: at byte offset {ty_at}: tensor '{name}' has ggml type {ty} ({tname}); supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K"
                )));
            }
        };
        let rel_at = r.cur.pos();
        let rel = r.u64(&format!("data offset of tensor '{name}'"))?;
        if rel % alignment as u64 != 0 {
            return Err(r.err(
                rel_at,
                format!("tensor '{name}': data offset {rel} is not a multiple of the alignment {alignment}"),
            ));
        }
        raws.push(Raw { name, at, shape, dtype, rel });
    }

    let header_end = r.cur.pos();
    let data_start = header_end
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| r.err(header_end, "data section offset overflows"))?;
    let file_len = bytes.len();
    let mut tensors = Vec::with_capacity(raws.len());
    for raw in raws {
        let name = &raw.name;
        let nbytes = tensor_bytes(raw.dtype, &raw.shape).ok_or_else(|| {
            r.err(
                raw.at,
                format!(
                    "tensor '{name}': shape {:?} overflows or its rows are not whole blocks of {} ({} elements)",
                    raw.shape,
                    raw.dtype.name(),
                    raw.dtype.block_elems()
                ),
            )
        })?;
        let begin = usize::try_from(raw.rel).ok().and_then(|rel| data_start.checked_add(rel));
        let end = begin.and_then(|b| b.checked_add(nbytes));
        match (begin, end) {
            (Some(begin), Some(end)) if end <= file_len => tensors.push(TensorInfo {
                name: raw.name,
                dtype: raw.dtype,
                shape: raw.shape,
                file: 0,
                offset: begin,
                nbytes,
            }),
            _ => {
                return Err(r.err(
                    raw.at,
                    format!(
                        "tensor '{name}' ({} {:?}, {nbytes} bytes) at data offset {} (absolute {}) ends at byte {}, past the end of the file ({file_len} bytes)",
                        raw.dtype.name(),
                        raw.shape,
                        raw.rel,
                        (data_start as u128) + raw.rel as u128,
                        (data_start as u128) + raw.rel as u128 + nbytes as u128,
                    ),
                ))
            }
        }
    }

    // No two tensors may share bytes.
    let mut order: Vec<usize> = (0..tensors.len()).filter(|&i| tensors[i].nbytes > 0).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        if b.offset < a.offset + a.nbytes {
            return Err(r.err(
                b.offset,
                format!(
                    "tensor '{}' (bytes {}..{}) overlaps tensor '{}' (bytes {}..{})",
                    b.name,
                    b.offset,
                    b.offset + b.nbytes,
                    a.name,
                    a.offset,
                    a.offset + a.nbytes
                ),
            ));
        }
    }

    Ok(GgufFile { version, metadata, tensors })
}

/// A `Format` error about a metadata key. `GgufFile` does not know its path: callers of the
/// getters add it with [`Error::context`].
fn key_err(key: &str, msg: impl std::fmt::Display) -> Error {
    Error::format(format!("GGUF metadata key '{key}': {msg}"))
}

impl GgufFile {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor with this name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// An integer key as `u32`: any integer type whose value fits is accepted. `None` when the
    /// key is absent; `Format` (naming the key) for another type or a value out of range.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get_int(key)?.map(|v| u32::try_from(v).map_err(|_| self.range_err(key, v, "u32"))).transpose()
    }

    /// An integer key as `u64` (any integer type whose value fits); see [`GgufFile::get_u32`].
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get_int(key)?.map(|v| u64::try_from(v).map_err(|_| self.range_err(key, v, "u64"))).transpose()
    }

    /// An integer key as `i64` (any integer type whose value fits); see [`GgufFile::get_u32`].
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        self.get_int(key)?.map(|v| i64::try_from(v).map_err(|_| self.range_err(key, v, "i64"))).transpose()
    }

    /// An integer key as `usize` (any integer type whose value fits); see [`GgufFile::get_u32`].
    pub fn get_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get_int(key)?.map(|v| usize::try_from(v).map_err(|_| self.range_err(key, v, "usize"))).transpose()
    }

    /// A float key (float32 or float64) as `f32`. `None` when absent; `Format` for another type.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_float() {
                Some(f) => Ok(Some(f as f32)),
                None => Err(self.type_err(key, "float32 or float64", v)),
            },
        }
    }

    /// A bool key. `None` when absent; `Format` for another type.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(GgufValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.type_err(key, "bool", v)),
        }
    }

    /// A string key. `None` when absent; `Format` for another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(GgufValue::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.type_err(key, "string", v)),
        }
    }

    /// An array-of-strings key. `None` when absent; `Format` for another type.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.get_array(key, "array of string", |v| v.as_str().map(str::to_owned))
    }

    /// An array-of-floats key (float32 or float64 elements) as `f32`. `None` when absent;
    /// `Format` for another type.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.get_array(key, "array of float32", |v| v.as_float().map(|f| f as f32))
    }

    /// An array-of-integers key whose values all fit `i32`. `None` when absent; `Format` for
    /// another type or an element out of range.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.get_array(key, "array of int32", |v| v.as_integer().and_then(|i| i32::try_from(i).ok()))
    }

    /// `general.architecture` (e.g. `"llama"`), if present.
    pub fn architecture(&self) -> Result<Option<&str>> {
        self.get_str("general.architecture")
    }

    /// The embedded tokenizer (`tokenizer.ggml.*`), or `None` when the file has no
    /// `tokenizer.ggml.model`. `Format` (naming the key) when a key has the wrong type or when
    /// `scores` / `token_type` do not have one entry per token.
    pub fn vocab(&self) -> Result<Option<GgufVocab>> {
        const P: &str = "tokenizer.ggml.";
        let k = |s: &str| format!("{P}{s}");
        let model = match self.get_str(&k("model"))? {
            None => return Ok(None),
            Some(m) => m.to_owned(),
        };
        let tokens = self
            .get_str_array(&k("tokens"))?
            .ok_or_else(|| key_err(&k("tokens"), "missing (required with tokenizer.ggml.model)"))?;
        let n = tokens.len();
        let scores = self.get_f32_array(&k("scores"))?;
        if let Some(s) = &scores {
            if s.len() != n {
                return Err(key_err(&k("scores"), format!("expected {n} entries (one per token), found {}", s.len())));
            }
        }
        let token_types = self.get_i32_array(&k("token_type"))?;
        if let Some(t) = &token_types {
            if t.len() != n {
                return Err(key_err(
                    &k("token_type"),
                    format!("expected {n} entries (one per token), found {}", t.len()),
                ));
            }
        }
        Ok(Some(GgufVocab {
            model,
            tokens,
            scores,
            token_types,
            merges: self.get_str_array(&k("merges"))?,
            bos: self.get_u32(&k("bos_token_id"))?,
            eos: self.get_u32(&k("eos_token_id"))?,
            unk: self.get_u32(&k("unknown_token_id"))?,
            add_bos: self.get_bool(&k("add_bos_token"))?,
            add_space_prefix: self.get_bool(&k("add_space_prefix"))?,
            pre: self.get_str(&k("pre"))?.map(str::to_string),
        }))
    }

    fn get_int(&self, key: &str) -> Result<Option<i128>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_integer() {
                Some(i) => Ok(Some(i)),
                None => Err(self.type_err(key, "an integer", v)),
            },
        }
    }

    fn get_array<T>(&self, key: &str, expected: &str, f: impl Fn(&GgufValue) -> Option<T>) -> Result<Option<Vec<T>>> {
        match self.get(key) {
            None => Ok(None),
            Some(GgufValue::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match f(&item) {
                        Some(x) => out.push(x),
                        None => {
                            return Err(key_err(
                                key,
                                format!("expected {expected}, element {i} is {} {item:?}", item.type_name()),
                            ))
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.type_err(key, expected, v)),
        }
    }

    fn type_err(&self, key: &str, expected: &str, found: &GgufValue) -> Error {
        key_err(key, format!("expected {expected}, found {}", found.type_name()))
    }

    fn range_err(&self, key: &str, v: i128, ty: &str) -> Error {
        key_err(key, format!("value {v} does not fit {ty}"))
    }
}

// ---------------------------------------------------------------------------------------------
// The loader's adapter: this format's files as what the binder reads (`loader::Source`).

use std::collections::HashMap;
use std::path::Path;

use runllama_kernels::RopeLayout;

use crate::loader::{Partial, Scheme, Source};
use crate::model::FusedLayout;
use crate::storage::Storage;
use crate::tokenizer::Tokenizer;

/// A GGUF file: its tensors in place, hyper-parameters and tokenizer from its metadata.
pub(crate) fn open(path: &Path, storage: Storage) -> Result<Source> {
    let shown = path.display().to_string();
    let g: GgufFile = parse(storage.bytes(), &shown)?;
    let ctx = |e: Error| e.context(&shown);
    let arch = g.get_str("general.architecture").map_err(ctx)?.unwrap_or_default();
    if arch != "llama" {
        return Err(Error::unsupported(format!(
            "{shown}: general.architecture is {arch:?}; only \"llama\" is supported"
        )));
    }
    let u =
        |k: &str| -> Result<Option<usize>> { Ok(g.get_u32(&format!("llama.{k}")).map_err(ctx)?.map(|v| v as usize)) };
    let mut hp = Partial {
        n_vocab: u("vocab_size")?,
        n_embd: u("embedding_length")?,
        n_layer: u("block_count")?,
        n_head: u("attention.head_count")?,
        n_head_kv: u("attention.head_count_kv")?,
        n_ff: u("feed_forward_length")?,
        n_ctx_train: u("context_length")?,
        rope_theta: g.get_f32("llama.rope.freq_base").map_err(ctx)?,
        norm_eps: g.get_f32("llama.attention.layer_norm_rms_epsilon").map_err(ctx)?,
        head_dim: u("rope.dimension_count")?,
        tied: None,
        bos: None,
        eos: None,
    };
    if g.get("llama.rope.scaling.type").is_some() || g.get("llama.rope.scale_linear").is_some() {
        let kind = g.get_str("llama.rope.scaling.type").map_err(ctx)?.unwrap_or("linear");
        if kind != "none" {
            return Err(Error::unsupported(format!("{shown}: RoPE scaling {kind:?} is not supported")));
        }
    }
    let tokenizer = match g.vocab().map_err(ctx)? {
        Some(v) => {
            hp.bos = v.bos;
            hp.eos = v.eos;
            if hp.n_vocab.is_none() {
                hp.n_vocab = Some(v.tokens.len());
            }
            Some((Tokenizer::from_gguf(v, &shown)?, format!("{shown} (embedded)")))
        }
        None => None,
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Source {
        format: "gguf",
        scheme: Scheme::Gguf,
        rope_layout: RopeLayout::Interleaved,
        files: vec![storage],
        file_names: vec![shown],
        tensors: g.tensors,
        hp,
        tokenizer,
        tokenizer_files: vec![dir.join("tokenizer.model")],
        spans: HashMap::new(),
        fused_layout: FusedLayout::Concat,
        assumed: Vec::new(),
    })
}
