//! runllama: LLaMA 2 / LLaMA 3 inference behind a C ABI.
//!
//! Layout: loaders (`gguf`, `safetensors`, `llama2c`) describe tensors in memory-mapped files;
//! `loader` binds them into a [`model::Model`]; `backend` runs the forward pass; `session` holds
//! a KV cache and sampler; `ffi` is the C ABI of `include/runllama.h`.

#![deny(missing_docs)]

pub mod backend;
pub mod ckpt;
pub mod error;
pub mod ffi;
pub mod gguf;
pub mod llama2c;
pub mod loader;
pub mod log;
pub mod mindformers;
pub mod model;
pub mod safetensors;
pub mod sampler;
pub mod session;
pub mod storage;
pub mod tensor;
pub mod tokenizer;

/// The `llama_system_info()` line: CPU features seen, CUDA, threads, kernel path in use.
pub fn system_info() -> String {
    #[cfg(target_arch = "x86_64")]
    let cpu = format!(
        "AVX2={} AVX512F={} AVX512_BF16={} F16C={} FMA={} ",
        std::arch::is_x86_feature_detected!("avx2") as u8,
        std::arch::is_x86_feature_detected!("avx512f") as u8,
        std::arch::is_x86_feature_detected!("avx512bf16") as u8,
        std::arch::is_x86_feature_detected!("f16c") as u8,
        std::arch::is_x86_feature_detected!("fma") as u8,
    );
    #[cfg(not(target_arch = "x86_64"))]
    let cpu = String::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}CUDA=0 threads={threads} kernels=scalar")
}
