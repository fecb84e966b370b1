//! The compute seam: a [`Backend`] is created once per model by [`create`], which hands it the
//! model's weights (the CPU backend keeps its views into the mapped files; a GPU backend would
//! upload them); it runs the forward pass and owns the per-session state (KV cache) it needs.
//! The CPU backend lives in [`cpu`]; a CUDA backend goes beside it without touching the model,
//! the loaders or the C API.

use std::any::Any;
use std::sync::atomic::AtomicBool;

#[cfg(not(feature = "cuda"))]
use crate::error::Error;
use crate::error::Result;
use crate::model::{Hparams, Weights};

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod llama;

/// Where a model runs (`llama_load_params.device` and `device_index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU, on the model's own thread pool.
    #[default]
    Cpu,
    /// A CUDA GPU, by index (0 = the first).
    Cuda {
        /// Which GPU.
        index: usize,
    },
}

/// Whether this build has the CUDA backend's code (the `cuda` feature).
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// For `llama_system_info`: ` gpu0="NAME, N MiB"` per CUDA GPU the driver reports, or
/// ` gpu=none` (builds with the `cuda` feature; empty without it).
pub fn gpu_summary() -> String {
    #[cfg(feature = "cuda")]
    {
        let gpus: Vec<String> = (0..16)
            .map_while(|i| cuda::probe(i).ok())
            .map(|g| format!(" gpu{}=\"{}, {} MiB\"", g.index, g.name, g.total_memory >> 20))
            .collect();
        if gpus.is_empty() {
            " gpu=none".to_string()
        } else {
            gpus.concat()
        }
    }
    #[cfg(not(feature = "cuda"))]
    String::new()
}

/// (free, total) bytes of GPU `index`'s memory as the driver reports them (`None` without the
/// `cuda` feature or a usable GPU): what a host or bench checks its use against.
pub fn gpu_memory(index: usize) -> Option<(usize, usize)> {
    #[cfg(feature = "cuda")]
    {
        cuda::memory(index)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = index;
        None
    }
}

/// Refuse a device this build or machine cannot run on, before anything is read.
pub fn check_available(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        Device::Cuda { index } => cuda::probe(index).map(|_| ()),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda { index } => Err(Error::new(
            crate::error::Status::Device,
            format!(
                "CUDA device {index} was requested but this build of runllama has no CUDA backend (built without the `cuda` feature)"
            ),
        )),
    }
}

/// The backend for `device`, given the model's weights once (`n_threads`: the CPU backend's
/// pool size; `bf16`: what its batched products of bf16 weights use; `progress`: called with
/// the fraction of the weights uploaded to a GPU, true cancels). The loader has called
/// [`check_available`] before reading the files.
pub fn create(
    device: Device,
    n_threads: usize,
    bf16: runllama_kernels::Bf16Products,
    weights: Weights,
    progress: Option<&mut dyn FnMut(f32) -> bool>,
) -> Result<Box<dyn Backend>> {
    match device {
        Device::Cpu => Ok(Box::new(cpu::CpuBackend::new(n_threads, bf16, weights)?)),
        #[cfg(feature = "cuda")]
        Device::Cuda { index } => {
            let _ = bf16; // the GPU's products are its own (cuBLAS)
            Ok(Box::new(cuda::CudaBackend::new(index, weights, progress)?))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda { .. } => {
            let _ = (progress, bf16);
            check_available(device).and_then(|()| Err(Error::internal("no CUDA backend in this build")))
        }
    }
}

/// The tokens of one step and the position of the first.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// Token ids (all < n_vocab, at least one).
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`.
    pub pos: usize,
}

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    /// Half precision (llama.cpp's default): half the memory; attention reads f16 K/V rows.
    #[default]
    F16,
    /// Single precision: bit-for-bit what an f32 reference computes.
    F32,
    /// 8-bit integers with an f16 scale per block of 32 (the values of llama.cpp's `q8_0`
    /// cache, `LLAMA_KV_Q8_0`; blocks of `gcd(32, head_dim)` for smaller heads), the scales kept
    /// apart from the quants (not GGUF's interleaved `Q8_0` block): 17/32 of the f16 cache's
    /// memory.
    Int8,
    /// 4-bit integers with an f16 scale per block (llama.cpp's `q4_0` rounding,
    /// `LLAMA_KV_Q4_0`; blocks as `Int8`, scales apart): 9/32 of the f16 cache's memory. Best
    /// kept for V (llama.cpp's `-ctv q4_0`): attention scores through 4-bit keys move more.
    Int4,
}

impl KvType {
    /// Bytes of 32 cached values, scales included (for heads of 32 or more; smaller heads have
    /// smaller blocks, so a few more scales).
    pub fn bytes_per_32(self) -> u64 {
        match self {
            KvType::F16 => 64,
            KvType::F32 => 128,
            KvType::Int8 => 32 + 2,
            KvType::Int4 => 16 + 2,
        }
    }
}

/// Per-session backend state (the KV cache and scratch buffers).
pub trait SessionState: Send {
    /// For the backend to get its concrete type back.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Context length this state holds.
    fn n_ctx(&self) -> usize;
    /// Bytes of the KV cache.
    fn kv_bytes(&self) -> usize;
}

/// A backend's own state type in `state`, or an internal error naming `backend` (a session
/// handed to a model of another backend).
fn own_state<'a, T: 'static>(state: &'a mut dyn SessionState, backend: &str) -> Result<&'a mut T> {
    state
        .as_any_mut()
        .downcast_mut::<T>()
        .ok_or_else(|| crate::error::Error::internal(format!("session state does not belong to the {backend} backend")))
}

/// A forward-pass implementation, holding the model's weights.
pub trait Backend: Send + Sync {
    /// `"cpu"`, `"cuda"`.
    fn name(&self) -> &'static str;
    /// Threads the backend computes with.
    fn n_threads(&self) -> usize;
    /// The weights it was created with (their host-side description: files, shapes, dtypes).
    fn weights(&self) -> &Weights;
    /// The device it computes on, for people (e.g. "NVIDIA H200 (GPU 0, 143771 MiB)"); `None`
    /// for the CPU.
    fn device(&self) -> Option<String> {
        None
    }
    /// Allocate a session's state for `n_ctx` positions with a K cache of `k_type` and a V
    /// cache of `v_type` (`OutOfMemory` when it cannot).
    fn new_state(&self, hp: &Hparams, n_ctx: usize, k_type: KvType, v_type: KvType) -> Result<Box<dyn SessionState>>;
    /// Run `batch.tokens` at positions `pos..pos + tokens.len()` (one batched pass), writing their K/V
    /// into the state, and the logits of the last position into `logits` (`n_vocab` floats).
    /// Positions `>= pos` of the cache may be overwritten even on error; earlier ones never are.
    /// Returns `Cancelled` soon after `cancel` becomes true.
    fn forward(
        &self,
        hp: &Hparams,
        state: &mut dyn SessionState,
        batch: Batch<'_>,
        logits: &mut [f32],
        cancel: &AtomicBool,
    ) -> Result<()>;
}
