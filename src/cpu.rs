//! Which kernel path the process uses: the best the CPU supports (chosen at run time by the
//! kernels crate), capped by the environment variable
//! `RUNLLAMA_CPU=scalar|avx2|avxvnni|avx512|amx`, read once, before the first model is loaded.

use std::sync::Once;

use runllama_kernels::Path;

/// Apply `RUNLLAMA_CPU` (once per process; later calls do nothing).
pub fn init() {
    static ONCE: Once = Once::new();
    let mut warnings = Vec::new();
    ONCE.call_once(|| {
        if let Ok(v) = std::env::var("RUNLLAMA_CPU") {
            match Path::from_name(&v) {
                Some(p) => runllama_kernels::set_max_path(p),
                None => {
                    warnings.push(format!("RUNLLAMA_CPU={v:?} is not scalar, avx2, avxvnni, avx512 or amx: ignored"))
                }
            }
        }
    });
    // Logged once the `Once` is complete: the host's callback may call back into the library.
    for w in warnings {
        crate::log::emit(2, &w);
    }
}

/// The `llama_system_info()` line: CPU features seen, CUDA, threads, kernel path in use.
pub fn system_info() -> String {
    init();
    let f = runllama_kernels::detected();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "AVX2={} FMA={} F16C={} AVX_VNNI={} AVX512F={} AVX512BW={} AVX512VL={} AVX512_VNNI={} AVX512_BF16={} AVX512_FP16={} GFNI={} AMX={} AMX_INT8={} CUDA={}{} threads={threads} kernels={} prefetch={} quant_prefetch={}",
        f.avx2 as u8,
        f.fma as u8,
        f.f16c as u8,
        f.avxvnni as u8,
        f.avx512f as u8,
        f.avx512bw as u8,
        f.avx512vl as u8,
        f.avx512vnni as u8,
        f.avx512bf16 as u8,
        f.avx512fp16 as u8,
        f.gfni as u8,
        f.amx as u8,
        f.amx_int8 as u8,
        crate::backend::CUDA_COMPILED as u8,
        crate::backend::gpu_summary(),
        runllama_kernels::path_name(),
        f.sw_prefetch() as u8,
        f.quant_prefetch() as u8
    )
}
