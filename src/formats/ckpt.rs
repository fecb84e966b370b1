//! MindSpore `.ckpt` reader and writer (the checkpoints MindFormers ships for LLaMA).
//!
//! Layout (`checkpoint.proto`, proto2): the whole file is one protobuf message
//! `Checkpoint { repeated Value value = 1; }` with
//! `Value { string tag = 1; TensorProto tensor = 2; MapTensorProto maptensor = 3; }` and
//! `TensorProto { repeated int64 dims = 1; string tensor_type = 2; bytes tensor_content = 3; }`.
//! MindSpore appends one serialized one-entry `Checkpoint` per tensor piece, so the file is a run
//! of `0A <len> Value` records with no header, index, padding or alignment. An optional 17-byte
//! trailer `"crc_num"` + a 10-byte big-endian CRC-32 (IEEE, of every byte before the trailer)
//! ends files saved with `crc_check=True`. Encrypted files start with a little-endian `u32` magic
//! ([`GCM_MAGIC`], [`CBC_MAGIC`], [`SM4_CBC_MAGIC`]) and are reported as unsupported.
//!
//! A tensor larger than the slice size (512 MiB) is stored as several consecutive Values with the
//! same tag, each repeating the full dims and dtype and holding a part of the C-order bytes. The
//! parser turns each maximal run of same-tag Values into one [`CkptTensor`] with one [`Segment`]
//! per piece. Pieces may end in the middle of a row; offsets have no alignment.
//!
//! The parser walks the protobuf in place: tensor bytes are described (absolute file offsets),
//! never copied. Every varint and length is checked against the message that encloses it, so a
//! corrupt or hostile file gives an [`Error`] and never a panic or a huge allocation.
//!
//! The writer the tests use (files byte-identical to MindSpore 2.10's `save_checkpoint`) is not
//! part of the library: `tests/common/ckpt_writer.rs`.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::formats::cursor::Cursor;
use crate::formats::protobuf::{self, Field, Fields, Value};
use crate::tensor::DType;

/// MindSpore's slice size: a tensor of more than this many bytes is stored in several pieces.
pub const SLICE_BYTES: usize = 536_870_912;

/// Little-endian `u32` at the start of a file encrypted with `enc_mode="AES-GCM"` (the default).
pub const GCM_MAGIC: u32 = 0x7F3A_5ED8;

/// Little-endian `u32` at the start of a file encrypted with `enc_mode="AES-CBC"`.
pub const CBC_MAGIC: u32 = 0x7F3A_5ED9;

/// Little-endian `u32` at the start of a file encrypted with `enc_mode="SM4-CBC"` (seen in files
/// written by MindSpore 2.10.0).
pub const SM4_CBC_MAGIC: u32 = 0x7F3A_5EDA;

/// The encryption mode named by a file's first four bytes, if they are an encryption magic.
fn encryption_mode(bytes: &[u8]) -> Option<(u32, &'static str)> {
    let magic = Cursor::new(bytes).u32()?;
    let mode = match magic {
        GCM_MAGIC => "AES-GCM",
        CBC_MAGIC => "AES-CBC",
        SM4_CBC_MAGIC => "SM4-CBC",
        _ => return None,
    };
    Some((magic, mode))
}

/// Length of the CRC trailer: `"crc_num"` and a 10-byte big-endian integer.
pub const CRC_TRAILER_LEN: usize = 17;

/// The tag that opens the CRC trailer (`crc_num`, then 10 big-endian bytes of the CRC).
pub const CRC_TAG: &[u8; 7] = b"crc_num";

/// Most bytes of a protobuf varint.
const MAX_VARINT_LEN: usize = 10;

/// Most dimensions accepted for one tensor (MindSpore's own limit is 8).
pub const MAX_DIMS: usize = 32;

/// Element type of a stored tensor: the `tensor_type` string of `TensorProto`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CkptDType {
    /// `Float16`: IEEE binary16.
    F16,
    /// `BFloat16`: the upper half of an f32.
    BF16,
    /// `Float32`.
    F32,
    /// `Float64`.
    F64,
    /// `Int8`.
    I8,
    /// `UInt8` (also read as `Uint8`).
    U8,
    /// `Int16`.
    I16,
    /// `UInt16` (also read as `Uint16`).
    U16,
    /// `Int32`.
    I32,
    /// `UInt32` (also read as `Uint32`).
    U32,
    /// `Int64`.
    I64,
    /// `UInt64` (also read as `Uint64`).
    U64,
    /// `Bool`: one byte per element.
    Bool,
    /// `Int4` (qint4x2): two 4-bit values per byte; the stored size is not checked.
    Int4,
    /// `str`: an `append_dict` string, numpy `<U` (UTF-32LE); the stored size is not checked.
    Str,
    /// Any other `tensor_type` string (e.g. `Complex64`), kept verbatim; the size is not checked.
    Other(String),
}

impl CkptDType {
    /// The dtype named by a `tensor_type` string. Unknown names give [`CkptDType::Other`].
    pub fn from_name(s: &str) -> CkptDType {
        match s {
            "Float16" => CkptDType::F16,
            "BFloat16" => CkptDType::BF16,
            "Float32" => CkptDType::F32,
            "Float64" => CkptDType::F64,
            "Int8" => CkptDType::I8,
            "UInt8" | "Uint8" => CkptDType::U8,
            "Int16" => CkptDType::I16,
            "UInt16" | "Uint16" => CkptDType::U16,
            "Int32" => CkptDType::I32,
            "UInt32" | "Uint32" => CkptDType::U32,
            "Int64" => CkptDType::I64,
            "UInt64" | "Uint64" => CkptDType::U64,
            "Bool" => CkptDType::Bool,
            "Int4" => CkptDType::Int4,
            "str" => CkptDType::Str,
            other => CkptDType::Other(other.to_owned()),
        }
    }

    /// The `tensor_type` string MindSpore 2.10 writes (`"Float32"`, `"UInt8"`, `"str"`, ...).
    pub fn name(&self) -> &str {
        match self {
            CkptDType::F16 => "Float16",
            CkptDType::BF16 => "BFloat16",
            CkptDType::F32 => "Float32",
            CkptDType::F64 => "Float64",
            CkptDType::I8 => "Int8",
            CkptDType::U8 => "UInt8",
            CkptDType::I16 => "Int16",
            CkptDType::U16 => "UInt16",
            CkptDType::I32 => "Int32",
            CkptDType::U32 => "UInt32",
            CkptDType::I64 => "Int64",
            CkptDType::U64 => "UInt64",
            CkptDType::Bool => "Bool",
            CkptDType::Int4 => "Int4",
            CkptDType::Str => "str",
            CkptDType::Other(s) => s,
        }
    }

    /// The weight type the forward pass reads in place: `Some` for F16, BF16 and F32 only.
    pub fn weight_dtype(&self) -> Option<DType> {
        match self {
            CkptDType::F16 => Some(DType::F16),
            CkptDType::BF16 => Some(DType::BF16),
            CkptDType::F32 => Some(DType::F32),
            _ => None,
        }
    }

    /// Bytes per element; `None` where the stored size does not follow from the dims
    /// (`Int4`, `str`, unknown types).
    pub fn element_size(&self) -> Option<usize> {
        match self {
            CkptDType::I8 | CkptDType::U8 | CkptDType::Bool => Some(1),
            CkptDType::F16 | CkptDType::BF16 | CkptDType::I16 | CkptDType::U16 => Some(2),
            CkptDType::F32 | CkptDType::I32 | CkptDType::U32 => Some(4),
            CkptDType::F64 | CkptDType::I64 | CkptDType::U64 => Some(8),
            CkptDType::Int4 | CkptDType::Str | CkptDType::Other(_) => None,
        }
    }
}

/// One contiguous run of a tensor's content bytes in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Absolute file offset of these content bytes (no alignment).
    pub offset: usize,
    /// Number of bytes.
    pub len: usize,
}

/// One tensor: a maximal run of consecutive Values with the same tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CkptTensor {
    /// The tag (parameter name) exactly as stored.
    pub name: String,
    /// Element type.
    pub dtype: CkptDType,
    /// Row-major shape, outermost first. A scalar has `[]` (stored as no dims, or as the old
    /// `[0]` with one element's worth of bytes).
    pub shape: Vec<usize>,
    /// The content bytes, one segment per stored piece, in file order. Concatenated they are the
    /// tensor's C-order bytes.
    pub segments: Vec<Segment>,
}

impl CkptTensor {
    /// Total content bytes (the sum of the segments).
    pub fn nbytes(&self) -> usize {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Number of elements (the product of the shape; 1 for a scalar).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The content of each segment within `bytes` (the whole file the tensor was parsed from);
    /// `None` when a segment lies outside `bytes`.
    pub fn segment_bytes<'a>(&self, bytes: &'a [u8]) -> Option<Vec<&'a [u8]>> {
        self.segments.iter().map(|s| bytes.get(s.offset..s.offset.checked_add(s.len)?)).collect()
    }
}

/// A parsed `.ckpt` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CkptFile {
    /// Every tensor (weights, optimizer state, scalars, `str` entries), in file order.
    /// `maptensor` Values are skipped.
    pub tensors: Vec<CkptTensor>,
    /// The CRC-32 stored in the trailer, when the file has one.
    pub crc: Option<u32>,
}

impl CkptFile {
    /// The tensor with this name.
    pub fn tensor(&self, name: &str) -> Option<&CkptTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3 / zlib, reflected polynomial 0xEDB88320), slicing-by-8.

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut j = 1;
        while j < 8 {
            let prev = t[j - 1][i];
            t[j][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            j += 1;
        }
        i += 1;
    }
    t
}

static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

/// Incremental CRC-32 (IEEE, as zlib's `crc32` and Python's `binascii.crc32` starting from 0).
#[derive(Clone, Copy, Debug)]
pub struct Crc32 {
    state: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub fn new() -> Self {
        Crc32 { state: !0 }
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        let t = &CRC_TABLES;
        let mut c = self.state;
        let mut chunks = data.chunks_exact(8);
        for ch in &mut chunks {
            let lo = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]) ^ c;
            let hi = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
            c = t[7][(lo & 0xFF) as usize]
                ^ t[6][((lo >> 8) & 0xFF) as usize]
                ^ t[5][((lo >> 16) & 0xFF) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xFF) as usize]
                ^ t[2][((hi >> 8) & 0xFF) as usize]
                ^ t[1][((hi >> 16) & 0xFF) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            c = t[0][((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.state = c;
    }

    /// The CRC of all bytes fed so far.
    pub fn value(&self) -> u32 {
        !self.state
    }
}

/// CRC-32 (IEEE) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.value()
}

// ---------------------------------------------------------------------------------------------
// Detection.

/// Read a varint at `pos` without bounds errors: `None` when malformed or cut off.
fn peek_varint(bytes: &[u8], pos: usize) -> Option<(u64, usize)> {
    let mut c = Cursor::window(bytes, pos, bytes.len());
    c.varint().ok().map(|v| (v, c.pos()))
}

/// True when the bytes look like a MindSpore checkpoint: a plain one (key `0x0A` of
/// `Checkpoint.value`, a length, then a plausible first `Value` field: a printable UTF-8 tag, a
/// tensor or a map tensor), or an encrypted one (the AES-GCM, AES-CBC or SM4-CBC magic), which
/// [`parse`] reports as unsupported.
///
/// The Value length is not compared with the file size, so that a truncated file is still
/// recognised and [`parse`] reports the truncation.
pub fn is_ckpt(bytes: &[u8]) -> bool {
    if encryption_mode(bytes).is_some() {
        return true;
    }
    if bytes.first() != Some(&0x0A) {
        return false;
    }
    let Some((vlen, p)) = peek_varint(bytes, 1) else { return false };
    if vlen < 2 {
        return false;
    }
    let Some(&key) = bytes.get(p) else { return false };
    match key {
        0x0A => {
            let Some((tlen, q)) = peek_varint(bytes, p + 1) else { return false };
            if tlen == 0 || tlen >= vlen {
                return false;
            }
            // Check the tag bytes that are present (at most 256): printable UTF-8.
            let avail = bytes.len().saturating_sub(q).min(tlen as usize).min(256);
            let tag = &bytes[q..q + avail];
            let text = match std::str::from_utf8(tag) {
                Ok(s) => s,
                // A multi-byte character cut by the 256-byte window is fine.
                Err(e) if e.error_len().is_none() => match std::str::from_utf8(&tag[..e.valid_up_to()]) {
                    Ok(s) => s,
                    Err(_) => return false,
                },
                Err(_) => return false,
            };
            if text.is_empty() || text.chars().any(char::is_control) {
                return false;
            }
            // The field after the tag is the tensor or map tensor (a SentencePiece
            // `tokenizer.model`, also a protobuf starting `0A len 0A len "<unk>"`, has a fixed32
            // score there). A file cut right after the tag is still recognised.
            match (tlen as usize).checked_add(q).and_then(|e| bytes.get(e)) {
                None => true,
                Some(&k) => k == 0x12 || k == 0x1A,
            }
        }
        0x12 | 0x1A => {
            // The tensor (or map tensor) comes first: its first field must be a TensorProto /
            // MapTensorProto key.
            let Some((_, q)) = peek_varint(bytes, p + 1) else {
                return bytes.len() < p + 1 + MAX_VARINT_LEN; // cut inside the length: truncated
            };
            match bytes.get(q) {
                None => true,
                Some(&k) => matches!(k, 0x08 | 0x0A | 0x12 | 0x1A),
            }
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Parser.

struct Parser<'a> {
    bytes: &'a [u8],
    path: &'a str,
}

impl Parser<'_> {
    fn err(&self, off: usize, tensor: Option<&str>, msg: impl std::fmt::Display) -> Error {
        match tensor {
            Some(t) => Error::format(format!("{}: ckpt: tensor '{t}': at byte offset {off}: {msg}", self.path)),
            None => Error::format(format!("{}: ckpt: at byte offset {off}: {msg}", self.path)),
        }
    }

    /// The fields of the message `msg` in `[start, end)`, its wire errors worded for it.
    fn fields<'s>(
        &'s self,
        start: usize,
        end: usize,
        msg: &'s str,
        tensor: Option<&'s str>,
    ) -> impl Iterator<Item = Result<Field>> + 's {
        Fields::new(self.bytes, start, end).map(move |f| f.map_err(|e| self.err(e.at, tensor, format!("{msg}: {e}"))))
    }

    fn utf8(&self, start: usize, len: usize, what: &str, tensor: Option<&str>) -> Result<&str> {
        std::str::from_utf8(&self.bytes[start..start + len])
            .map_err(|e| self.err(start, tensor, format!("{what} is not valid UTF-8: {e}")))
    }

    fn wrong_wire(&self, f: &Field, msg: &str, name: &str, want: u8, tensor: Option<&str>) -> Error {
        self.err(
            f.at,
            tensor,
            format!("{msg}.{name} (field {}) has wire type {}, expected {want}", f.number, f.value.wire()),
        )
    }

    /// One `Value` message in `[start, end)`; `key_off` is where its top-level key is.
    fn value(&self, start: usize, end: usize, key_off: usize) -> Result<Entry> {
        let mut tag: Option<(usize, usize)> = None;
        let mut tensor: Option<(usize, usize, usize)> = None;
        let mut map: Option<usize> = None;
        for f in self.fields(start, end, "Value", None) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::Len { start: s, len: l }) => {
                    if tag.is_some() {
                        return Err(self.err(f.at, None, "Value has a second tag"));
                    }
                    tag = Some((s, l));
                }
                (2, Value::Len { start: s, len: l }) => {
                    if tensor.is_some() {
                        return Err(self.err(f.at, None, "Value has a second tensor field"));
                    }
                    tensor = Some((s, l, f.at));
                }
                (3, Value::Len { .. }) => {
                    if map.is_some() {
                        return Err(self.err(f.at, None, "Value has a second maptensor field"));
                    }
                    map = Some(f.at);
                }
                (1, _) => return Err(self.wrong_wire(&f, "Value", "tag", 2, None)),
                (2, _) => return Err(self.wrong_wire(&f, "Value", "tensor", 2, None)),
                (3, _) => return Err(self.wrong_wire(&f, "Value", "maptensor", 2, None)),
                _ => {} // unknown field: skipped
            }
        }
        let Some((ts, tl)) = tag else {
            return Err(self.err(key_off, None, "Value (a checkpoint entry) has no tag (parameter name)"));
        };
        let name = self.utf8(ts, tl, "the tag (parameter name)", None)?;
        match (tensor, map) {
            (Some(_), Some(m)) => Err(self.err(m, Some(name), "Value has both a tensor and a maptensor")),
            (None, Some(_)) => Ok(Entry::Map(name.to_owned())),
            (None, None) => Err(self.err(key_off, Some(name), "Value has neither a tensor nor a maptensor")),
            (Some((s, l, k)), None) => {
                let (dims, dtype, content) = self.tensor_proto(s, s + l, k, name)?;
                Ok(Entry::Tensor(Piece { name: name.to_owned(), dims, dtype, content, key_off }))
            }
        }
    }

    /// One `TensorProto` in `[start, end)`.
    fn tensor_proto(
        &self,
        start: usize,
        end: usize,
        key_off: usize,
        name: &str,
    ) -> Result<(Vec<u64>, CkptDType, Segment)> {
        let t = Some(name);
        let mut dims: Vec<u64> = Vec::new();
        let mut ttype: Option<&str> = None;
        let mut content: Option<Segment> = None;
        let push = |dims: &mut Vec<u64>, v: u64, at: usize| -> Result<()> {
            if v > i64::MAX as u64 {
                return Err(self.err(at, t, format!("dimension {} is negative ({})", dims.len(), v as i64)));
            }
            if dims.len() == MAX_DIMS {
                return Err(self.err(at, t, format!("more than {MAX_DIMS} dimensions")));
            }
            dims.push(v);
            Ok(())
        };
        for f in self.fields(start, end, "TensorProto", t) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::Varint(v)) => push(&mut dims, v, f.at)?,
                (1, Value::Len { start, len }) => {
                    // Packed dims: varints filling the field exactly.
                    for v in protobuf::packed_varints(self.bytes, start, len) {
                        let v = v.map_err(|e| self.err(e.at, t, format!("packed dims: {e}")))?;
                        push(&mut dims, v, f.at)?;
                    }
                }
                (2, Value::Len { start: s, len: l }) => {
                    if ttype.is_some() {
                        return Err(self.err(f.at, t, "TensorProto has a second tensor_type"));
                    }
                    ttype = Some(self.utf8(s, l, "tensor_type", t)?);
                }
                (3, Value::Len { start: s, len: l }) => {
                    if content.is_some() {
                        return Err(self.err(f.at, t, "TensorProto has a second tensor_content"));
                    }
                    content = Some(Segment { offset: s, len: l });
                }
                (1, _) => return Err(self.wrong_wire(&f, "TensorProto", "dims", 0, t)),
                (2, _) => return Err(self.wrong_wire(&f, "TensorProto", "tensor_type", 2, t)),
                (3, _) => return Err(self.wrong_wire(&f, "TensorProto", "tensor_content", 2, t)),
                _ => {} // unknown field: skipped
            }
        }
        let Some(ttype) = ttype else {
            return Err(self.err(key_off, t, "TensorProto has no tensor_type"));
        };
        let Some(content) = content else {
            return Err(self.err(key_off, t, "TensorProto has no tensor_content"));
        };
        Ok((dims, CkptDType::from_name(ttype), content))
    }
}

/// One top-level Value as read.
enum Entry {
    Tensor(Piece),
    Map(String),
}

struct Piece {
    name: String,
    dims: Vec<u64>,
    dtype: CkptDType,
    content: Segment,
    key_off: usize,
}

/// A tensor being assembled from its pieces.
struct Building {
    tensor: CkptTensor,
    dims: Vec<u64>,
    /// Top-level key offset of each piece.
    piece_offs: Vec<usize>,
}

/// Parse a `.ckpt` file held in `bytes` (e.g. memory-mapped); `path` is used in messages.
///
/// Every maximal run of consecutive Values with the same tag becomes one [`CkptTensor`] with one
/// [`Segment`] per piece; `maptensor` Values are skipped. A CRC trailer is recognised and
/// excluded; with `verify_crc` the CRC-32 of the bytes before it is computed and compared (a file
/// without a trailer is accepted either way: [`CkptFile::crc`] is then `None`).
///
/// Errors: `Unsupported` for an encrypted file; `Format` for an empty file, malformed protobuf
/// (truncated or overlong varints, lengths past the enclosing message, unterminated groups, invalid wire
/// types or field numbers, known fields of the wrong wire type, repeated singular fields), a
/// Value without a tag or tensor, a tag or dtype that is not UTF-8, a negative dimension, pieces
/// of one tensor whose dims or dtype differ, a name repeated in non-consecutive Values, content
/// whose size is not `prod(dims) × element size`, a CRC trailer value wider than 32 bits, or a
/// CRC mismatch (with `verify_crc`). Messages start with `path` and name the byte offset and,
/// where known, the tensor.
pub fn parse(bytes: &[u8], path: &str, verify_crc: bool) -> Result<CkptFile> {
    let p = Parser { bytes, path };
    let len = bytes.len();
    if let Some((magic, mode)) = encryption_mode(bytes) {
        return Err(Error::unsupported(format!(
            "{path}: ckpt: the file is an encrypted MindSpore checkpoint ({mode}, magic 0x{magic:08X}); \
             decrypt it with MindSpore first (mindspore.load_checkpoint with dec_key and dec_mode, then \
             mindspore.save_checkpoint without enc_key)"
        )));
    }

    // The CRC trailer.
    let mut body_end = len;
    let mut crc = None;
    if len >= CRC_TRAILER_LEN && &bytes[len - CRC_TRAILER_LEN..len - 10] == CRC_TAG {
        body_end = len - CRC_TRAILER_LEN;
        let v = bytes[len - 10..].iter().fold(0u128, |a, &b| (a << 8) | u128::from(b));
        let v = u32::try_from(v)
            .map_err(|_| p.err(len - 10, None, format!("the CRC trailer holds {v}, which is not a 32-bit CRC")))?;
        crc = Some(v);
        if verify_crc {
            let got = crc32(&bytes[..body_end]);
            if got != v {
                return Err(p.err(
                    body_end,
                    None,
                    format!(
                        "CRC-32 mismatch: the trailer says 0x{v:08X} ({v}) but the {body_end} bytes before it give 0x{got:08X} ({got}); the file is damaged"
                    ),
                ));
            }
        }
    }
    if body_end == 0 {
        return Err(p.err(0, None, "the file holds no checkpoint entries (it is empty)"));
    }

    let mut done: Vec<CkptTensor> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new(); // name → key offset of its first piece
    let mut cur: Option<Building> = None;
    for f in p.fields(0, body_end, "Checkpoint", None) {
        let f = f?;
        match (f.number, f.value) {
            (1, Value::Len { start: s, len: l }) => match p.value(s, s + l, f.at)? {
                Entry::Map(name) => {
                    if let Some(b) = cur.take() {
                        done.push(finish(&p, b)?);
                    }
                    if let Some(&first) = seen.get(&name) {
                        return Err(duplicate(&p, &name, f.at, first));
                    }
                    seen.insert(name, f.at);
                }
                Entry::Tensor(piece) => {
                    let cont = matches!(&cur, Some(b) if b.tensor.name == piece.name);
                    if cont {
                        if let Some(b) = cur.as_mut() {
                            add_piece(&p, b, piece)?;
                        }
                    } else {
                        if let Some(b) = cur.take() {
                            done.push(finish(&p, b)?);
                        }
                        if let Some(&first) = seen.get(&piece.name) {
                            return Err(duplicate(&p, &piece.name, piece.key_off, first));
                        }
                        seen.insert(piece.name.clone(), piece.key_off);
                        cur = Some(Building {
                            tensor: CkptTensor {
                                name: piece.name,
                                dtype: piece.dtype,
                                shape: Vec::new(),
                                segments: vec![piece.content],
                            },
                            dims: piece.dims,
                            piece_offs: vec![piece.key_off],
                        });
                    }
                }
            },
            (1, _) => return Err(p.wrong_wire(&f, "Checkpoint", "value", 2, None)),
            _ => {} // unknown top-level field: skipped
        }
    }
    if let Some(b) = cur.take() {
        done.push(finish(&p, b)?);
    }
    Ok(CkptFile { tensors: done, crc })
}

fn duplicate(p: &Parser<'_>, name: &str, at: usize, first: usize) -> Error {
    p.err(
        at,
        Some(name),
        format!(
            "the name is stored again in a Value that does not follow its earlier piece(s) (first stored in the Value at byte offset {first}); only consecutive Values may share a tag"
        ),
    )
}

fn add_piece(p: &Parser<'_>, b: &mut Building, piece: Piece) -> Result<()> {
    if piece.dims != b.dims || piece.dtype != b.tensor.dtype {
        return Err(p.err(
            piece.key_off,
            Some(&piece.name),
            format!(
                "piece {} is {} {:?} but the first piece (Value at byte offset {}) is {} {:?}; the pieces of a split tensor must agree",
                b.piece_offs.len(),
                piece.dtype.name(),
                piece.dims,
                b.piece_offs[0],
                b.tensor.dtype.name(),
                b.dims
            ),
        ));
    }
    b.tensor.segments.push(piece.content);
    b.piece_offs.push(piece.key_off);
    Ok(())
}

/// Check a finished run: the dims fit `usize`, and the content size matches.
fn finish(p: &Parser<'_>, b: Building) -> Result<CkptTensor> {
    let Building { mut tensor, dims, piece_offs } = b;
    let at = piece_offs[0];
    let name = tensor.name.clone();
    let t = Some(name.as_str());
    let mut shape = Vec::with_capacity(dims.len());
    for &d in &dims {
        shape.push(usize::try_from(d).map_err(|_| p.err(at, t, format!("dimension {d} does not fit in memory")))?);
    }
    let total = tensor
        .segments
        .iter()
        .try_fold(0usize, |a, s| a.checked_add(s.len))
        .ok_or_else(|| p.err(at, t, "content size overflows"))?;
    if let Some(w) = tensor.dtype.element_size() {
        if shape == [0] && total == w {
            // MindSpore before 2.x wrote scalars with dims [0].
            shape.clear();
        }
        let want = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(w))
            .ok_or_else(|| p.err(at, t, format!("shape {shape:?} overflows")))?;
        if total != want {
            let pieces = if tensor.segments.len() > 1 {
                let sizes: Vec<usize> = tensor.segments.iter().map(|s| s.len).collect();
                format!(" in {} pieces of {sizes:?} bytes (Values at byte offsets {piece_offs:?})", sizes.len())
            } else {
                String::new()
            };
            return Err(p.err(
                at,
                t,
                format!(
                    "{} {:?} needs {want} bytes ({} elements × {w}), but the file stores {total} bytes{pieces}",
                    tensor.dtype.name(),
                    dims,
                    want / w,
                ),
            ));
        }
    }
    tensor.shape = shape;
    Ok(tensor)
}

// ---------------------------------------------------------------------------------------------
// The loader's adapter: this format's files as what the binder reads (`loader::Source`).

use std::path::Path;

use runllama_kernels::RopeLayout;

use crate::formats::{hf_config, mindformers};
use crate::loader::{LoadOptions, Partial, Scheme, Source};
use crate::model::{FusedLayout, Span};
use crate::storage::Storage;
use crate::tensor::TensorInfo;

/// A MindSpore `.ckpt` from MindFormers: weights in place (pieces of a split tensor become
/// spans), hyper-parameters from a MindFormers yaml (`config_path`) or, without one, from the
/// shapes plus the version's defaults (recorded in `assumed`).
pub(crate) fn open(path: &Path, storage: Storage, opts: &LoadOptions<'_>) -> Result<Source> {
    let shown = path.display().to_string();
    let verify = std::env::var_os("RUNLLAMA_CKPT_VERIFY_CRC").is_some_and(|v| v == "1");
    let file = parse(storage.bytes(), &shown, verify)?;
    let mut tensors = Vec::new();
    let mut spans = HashMap::new();
    for t in file.tensors {
        // Optimizer moments, step counters and strings are not weights of the network.
        if t.name.starts_with("adam_") || t.name.starts_with("moment") || t.name.starts_with("accu_") {
            continue;
        }
        let Some(dtype) = t.dtype.weight_dtype() else {
            if t.name.starts_with("model.") && t.name.ends_with("weight") {
                // A weight in a type the forward pass does not read: say so, not "missing".
                return Err(Error::unsupported(format!(
                    "{shown}: tensor {:?} is stored as {}; weights must be Float32, Float16 or BFloat16",
                    t.name,
                    t.dtype.name()
                )));
            }
            continue;
        };
        let nbytes = t.nbytes();
        let offset = t.segments.first().map_or(0, |s| s.offset);
        if t.segments.len() > 1 {
            let pieces: Vec<Span> = t.segments.iter().map(|s| Span { file: 0, offset: s.offset, len: s.len }).collect();
            spans.insert(t.name.clone(), pieces);
        }
        tensors.push(TensorInfo { name: t.name, dtype, shape: t.shape, file: 0, offset, nbytes });
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut tokenizer_files = vec![dir.join("tokenizer.model")];
    let mut hp = Partial::default();
    let mut assumed = Vec::new();
    let mut layout = None;
    let shape_of = |name: &str| tensors.iter().find(|t| t.name == name).map(|t| t.shape.clone());
    // The rows of a tensor of the first layer (a tensor stored without dimensions has none; its
    // shape is refused later, where it is bound).
    let rows_of = |name: &str| shape_of(name).and_then(|s| s.first().copied());
    let emb = ["model.tok_embeddings.embedding_weight", "model.tok_embeddings.weight"]
        .iter()
        .find_map(|n| shape_of(n))
        .ok_or_else(|| {
            Error::format(format!(
                "{shown}: no model.tok_embeddings.embedding_weight tensor: not a MindFormers LLaMA checkpoint"
            ))
        })?;
    let (n_vocab, n_embd) = match emb[..] {
        [v, e] => (v, e),
        _ => return Err(Error::format(format!("{shown}: the embedding has shape {emb:?}, expected [vocab, hidden]"))),
    };
    match &opts.config_path {
        Some(cfg) if is_json(cfg) => hf_config::apply(&mut hp, cfg)?,
        Some(cfg) => {
            let cshown = cfg.display().to_string();
            let c = mindformers::read_yaml(cfg)?;
            if let Some(m) = c.extend_method.as_deref() {
                if m != "None" && !m.is_empty() {
                    return Err(Error::unsupported(format!(
                        "{cshown}: extend_method {m:?} (RoPE scaling) is not supported"
                    )));
                }
            }
            hp.n_embd = c.hidden_size;
            hp.n_layer = c.num_layers;
            hp.n_head = c.num_heads;
            hp.n_head_kv = c.n_kv_heads.or(c.num_heads);
            hp.n_vocab = c.vocab_size;
            hp.n_ff = c.ffn_size(c.hidden_size.unwrap_or(n_embd));
            hp.norm_eps = Some(c.rms_norm_eps.unwrap_or(mindformers::DEFAULT_RMS_NORM_EPS) as f32);
            hp.rope_theta = Some(c.theta.unwrap_or(mindformers::DEFAULT_THETA) as f32);
            hp.n_ctx_train = c.max_position_embedding.or(c.seq_length);
            hp.bos = c.bos_token_id.and_then(|v| u32::try_from(v).ok());
            hp.eos = c.eos_token_id.and_then(|v| u32::try_from(v).ok());
            hp.tied = Some(c.tie_word_embeddings.unwrap_or(false));
            layout = c.qkv_concat_layout.map(|l| match l {
                mindformers::QkvConcatLayout::Grouped => FusedLayout::Grouped,
                mindformers::QkvConcatLayout::Concat => FusedLayout::Concat,
            });
            if let Some(v) = &c.tokenizer_vocab_file {
                let base = cfg.parent().map(Path::to_path_buf).unwrap_or_default();
                tokenizer_files.insert(0, base.join(v));
                tokenizer_files.insert(1, dir.join(Path::new(v).file_name().unwrap_or_default()));
            }
        }
        None => {}
    }
    // What the shapes give when no config says it; the rest from the version's defaults.
    let version = match opts.version {
        0 if n_vocab >= 128_000 => 3,
        0 => 2,
        v => v,
    };
    let head_dim = 128;
    if hp.n_head.is_none() {
        let n = n_embd / head_dim;
        hp.n_head = Some(n);
        assumed.push(format!(
            "n_head={n} (head_dim {head_dim} of LLaMA {version}; pass a MindFormers yaml to set num_heads)"
        ));
    }
    let hd = (hp.n_embd.unwrap_or(n_embd) / hp.n_head.unwrap_or(1).max(1)).max(1);
    let wk = rows_of("model.layers.0.attention.wk.weight");
    let fused_qkv = rows_of("model.layers.0.attention.w_qkv.weight");
    let fused_ffn = rows_of("model.layers.0.feed_forward.w_gate_hidden.weight");
    if hp.n_head_kv.is_none() {
        if let Some(r) = wk.or(fused_qkv.map(|r| r.saturating_sub(n_embd) / 2)) {
            hp.n_head_kv = Some(r / hd);
            assumed.push(format!("n_head_kv={} (from the k projection's {r} rows)", r / hd));
        }
    }
    if hp.n_ff.is_none() {
        hp.n_ff = rows_of("model.layers.0.feed_forward.w1.weight").or(fused_ffn.map(|r| r / 2));
    }
    let (theta, ctx) = if version == 3 { (500_000.0, 8192) } else { (10_000.0, 4096) };
    if hp.rope_theta.is_none() {
        hp.rope_theta = Some(theta);
        assumed.push(format!("rope_theta={theta} (LLaMA {version} default)"));
    }
    if hp.norm_eps.is_none() {
        hp.norm_eps = Some(1e-5);
        assumed.push("norm_eps=1e-5 (LLaMA default)".into());
    }
    if hp.n_ctx_train.is_none() {
        hp.n_ctx_train = Some(ctx);
        assumed.push(format!("n_ctx_train={ctx} (LLaMA {version} default)"));
    }
    let fused_layout = layout.unwrap_or_else(|| {
        if fused_qkv.is_some() || fused_ffn.is_some() {
            assumed.push(
                "qkv_concat_layout=grouped (the MindFormers >= 1.4 layout; put qkv_concat_layout: concat in the yaml for 1.2-1.3 files)"
                    .into(),
            );
        }
        FusedLayout::Grouped
    });
    Ok(Source {
        format: "mindspore-ckpt",
        scheme: Scheme::MindFormers,
        rope_layout: RopeLayout::Halves,
        files: vec![storage],
        file_names: vec![shown],
        tensors,
        hp,
        tokenizer: None,
        tokenizer_files,
        spans,
        fused_layout,
        assumed,
    })
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}
