//! safetensors header parser. INTERFACE STUB — owned by the parsers helper.

use crate::error::{Error, Result};
use crate::tensor::TensorInfo;

/// A parsed safetensors header.
#[derive(Clone, Debug)]
pub struct SafetensorsFile {
    /// Tensors (offsets absolute in the file, `file` = the given index), sorted by offset.
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__` string pairs.
    pub metadata: Vec<(String, String)>,
}

/// True when the bytes look like a safetensors file (u64 header length, then `{`).
pub fn is_safetensors(_bytes: &[u8]) -> bool {
    false
}

/// Parse; `file_index` is stored in each TensorInfo.
pub fn parse(_bytes: &[u8], _path: &str, _file_index: usize) -> Result<SafetensorsFile> {
    Err(Error::unsupported("stub"))
}
