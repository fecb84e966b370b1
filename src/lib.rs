//! runllama: LLaMA 2 / LLaMA 3 inference behind a C ABI.
//!
//! Layout: the readers of `formats` (GGUF, safetensors, llama2.c, MindSpore `.ckpt` and its
//! MindFormers yaml) describe tensors in memory-mapped files; `loader` binds them into a
//! [`model::Model`]; `backend` runs the forward pass; `session` holds
//! a KV cache and sampler; `ffi` is the C ABI of `include/runllama.h`.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

// The C structs' layouts (explicit reserved fields, version-1 sizes) are those of 64-bit targets.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("runllama supports 64-bit targets only (its C ABI's struct layouts are 64-bit ones)");

mod alloc;
pub mod backend;
pub mod cpu;
pub mod error;
pub mod ffi;
pub mod formats;
pub mod fsio;
pub mod fuzz;
pub mod jsonsize;
pub mod loader;
pub mod log;
pub mod model;
pub mod sampler;
pub mod session;
pub mod storage;
pub mod tensor;
pub mod tokenizer;

/// The `llama_system_info()` line (see [`cpu::system_info`]).
pub fn system_info() -> String {
    cpu::system_info()
}
