//! The model file formats: each module reads one kind of file in place (the bytes of a
//! memory map or of a small file) and describes what it holds: tensors (name, type, shape,
//! where their bytes are) and metadata, with every size checked against the bytes present.
//! `loader.rs` binds their descriptions into a model; none of them knows the others.

pub mod ckpt;
pub(crate) mod cursor;
pub mod gguf;
pub(crate) mod hf_config;
pub mod llama2c;
pub mod mindformers;
pub(crate) mod protobuf;
pub mod safetensors;
