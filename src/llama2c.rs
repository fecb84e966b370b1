//! llama2.c checkpoint parser. INTERFACE STUB — owned by the parsers helper.

use crate::error::{Error, Result};
use crate::tensor::TensorInfo;

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

/// True when the bytes look like a llama2.c checkpoint.
pub fn is_llama2c(_bytes: &[u8]) -> bool {
    false
}

/// Parse the header and describe every tensor.
pub fn parse(_bytes: &[u8], _path: &str) -> Result<(Llama2cConfig, Vec<TensorInfo>)> {
    Err(Error::unsupported("stub"))
}
