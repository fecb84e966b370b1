//! runllama: LLaMA 2 / LLaMA 3 inference behind a C ABI.
//!
//! Layout: loaders (`gguf`, `safetensors`, `llama2c`) describe tensors in memory-mapped files;
//! `loader` binds them into a [`model::Model`]; `backend` runs the forward pass; `session` holds
//! a KV cache and sampler; `ffi` is the C ABI of `include/runllama.h`.

#![deny(missing_docs)]

pub mod error;
pub mod gguf;
pub mod llama2c;
pub mod safetensors;
pub mod tensor;
pub mod tokenizer;
