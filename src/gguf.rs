//! GGUF parser. INTERFACE STUB — owned by the parsers helper.

use crate::error::{Error, Result};
use crate::tensor::TensorInfo;

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
    Array(Vec<GgufValue>),
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

/// Parse the header of a GGUF file held in `bytes` (the whole mapped file); `path` names it in errors.
pub fn parse(_bytes: &[u8], _path: &str) -> Result<GgufFile> {
    Err(Error::unsupported("stub"))
}

impl GgufFile {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}
