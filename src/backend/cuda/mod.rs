//! The CUDA backend (feature `cuda`): the NVIDIA driver, cuBLAS and NVRTC are found at run time
//! (`libcuda.so` / `nvcuda.dll`, `libcublas.so.13|12` / `cublas64_13|12.dll`, NVRTC), so the
//! library builds without the CUDA SDK and loads on machines without a GPU.
//!
//! [`probe`] says which GPU a load would use, or names what is missing (no driver, no GPU,
//! `device_index` out of range, libraries that cannot be opened), as `LLAMA_ERR_DEVICE`. (On
//! Windows the CUDA 12 NVRTC, `nvrtc64_120_0.dll`, is not among the names cudarc's 13.0
//! bindings try.) [`CudaBackend`] then uploads the weights once (`upload`: float types, and
//! GGUF's quantized blocks as stored), compiles the kernels for the GPU (`kernels`: the
//! float kernels of `kernels.cu`, the quantized products of `quant.cu`), and runs the forward
//! pass of [`crate::backend::llama`]
//! over them (`pass`): a single-token step as one captured CUDA graph of matrix-vector
//! kernels, a prompt as cuBLAS products in batches of `state::UBATCH` tokens. Each session
//! has its own stream, cuBLAS handle, KV cache and graph (`state`), so sessions step in
//! parallel from several threads.

mod driver;
mod kernels;
mod pass;
mod state;
#[cfg(test)]
mod tests;
mod upload;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use cudarc::driver::result as cu;

use super::{llama, Backend, Batch, KvType, SessionState};
use crate::error::{Error, Result, Status};
use crate::model::{Hparams, Weights};
use driver::Context;
use kernels::Kernels;
use pass::CudaPass;
use state::{CudaState, UBATCH};
use upload::DeviceWeights;

/// A GPU the driver reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// Its index (`device_index`).
    pub index: usize,
    /// The driver's name for it, e.g. "NVIDIA H200".
    pub name: String,
    /// Device memory in bytes.
    pub total_memory: usize,
}

fn device_error(msg: String) -> Error {
    Error::new(Status::Device, msg)
}

/// The GPU `index`, after checking that the driver, cuBLAS and NVRTC can be loaded.
pub fn probe(index: usize) -> Result<GpuInfo> {
    // SAFETY: only tries to open the driver library (no CUDA call is made).
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(device_error(format!(
            "CUDA device {index} was requested but the NVIDIA driver library ({}) was not found: is an NVIDIA driver installed?",
            if cfg!(windows) { "nvcuda.dll" } else { "libcuda.so" }
        )));
    }
    let no_gpu = || device_error(format!("CUDA device {index} was requested but the driver sees no CUDA GPU"));
    cu::init().map_err(|e| match e.0 {
        cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => no_gpu(),
        _ => device_error(format!("CUDA device {index}: the CUDA driver did not initialise: {e}")),
    })?;
    let count = cu::device::get_count()
        .map_err(|e| device_error(format!("CUDA device {index}: cannot count CUDA devices: {e}")))?;
    let count = usize::try_from(count).unwrap_or(0);
    if index >= count {
        return Err(if count == 0 {
            no_gpu()
        } else {
            device_error(format!(
                "device_index {index} is out of range: the driver sees {count} CUDA GPU(s) (0..{})",
                count - 1
            ))
        });
    }
    let dev = cu::device::get(index as i32).map_err(|e| device_error(format!("CUDA device {index}: {e}")))?;
    let name = cu::device::get_name(dev).map_err(|e| device_error(format!("CUDA device {index}: {e}")))?;
    // SAFETY: `dev` is a device handle the driver just returned.
    let total_memory =
        unsafe { cu::device::total_mem(dev) }.map_err(|e| device_error(format!("CUDA device {index}: {e}")))?;
    // SAFETY: as above, only opening the libraries.
    let (cublas, nvrtc) = unsafe { (cudarc::cublas::sys::is_culib_present(), cudarc::nvrtc::sys::is_culib_present()) };
    for (present, what) in [(cublas, "cuBLAS (libcublas.so.13 or .12 / cublas64_13.dll)"), (nvrtc, "NVRTC")] {
        if !present {
            return Err(device_error(format!(
                "CUDA device {index} ({name}): {what} was not found: install the CUDA runtime libraries"
            )));
        }
    }
    Ok(GpuInfo { index, name, total_memory })
}

/// (free, total) bytes of GPU `index`'s memory (`None` if it cannot be used).
pub fn memory(index: usize) -> Option<(usize, usize)> {
    probe(index).ok()?;
    let ctx = Context::new(index).ok()?;
    Some(ctx.mem_info())
}

/// The CUDA backend: the weights on one GPU and the kernels compiled for it.
pub struct CudaBackend {
    /// The host description of the weights (names, shapes; the mapped files stay open for
    /// `llama_model_describe` and the tensor list).
    weights: Weights,
    gpu: GpuInfo,
    dev: DeviceWeights,
    kernels: Kernels,
    ctx: Arc<Context>,
}

impl CudaBackend {
    /// Upload `weights` to GPU `index` (`progress` with the fraction sent; true cancels) and
    /// compile the kernels for it.
    pub fn new(index: usize, weights: Weights, progress: Option<&mut dyn FnMut(f32) -> bool>) -> Result<CudaBackend> {
        upload::check_gate_up_types(&weights)?;
        let gpu = probe(index)?;
        let ctx = Context::new(index)?;
        let kernels = Kernels::load(&ctx, upload::widest_float_row(&weights))?;
        let dev = upload::upload(&ctx, &weights, progress)?;
        crate::log::info(&format!(
            "CUDA: {} MiB of weights on GPU {index} ({}, {} MiB)",
            dev.bytes >> 20,
            gpu.name,
            gpu.total_memory >> 20
        ));
        Ok(CudaBackend { weights, gpu, dev, kernels, ctx })
    }

    /// One batched pass over `tokens` at `pos` (at most [`UBATCH`]); logits into the state's
    /// device buffer when `logits`.
    fn pass(
        &self,
        hp: &Hparams,
        st: &mut CudaState,
        tokens: &[u32],
        pos: usize,
        logits: bool,
        cancel: &AtomicBool,
    ) -> Result<()> {
        let mut pass = CudaPass::new(self, hp, st);
        // The pass writes logits into the state's device buffer (`forward` copies them out), so
        // the host slice `llama::forward` hands on is not used.
        let mut none = [0f32; 0];
        let r = llama::forward(&mut pass, &self.weights, tokens, pos, logits.then_some(&mut none[..]), cancel);
        let first = pass.finish();
        r.and(first)
    }

    /// Copy the step's position and tokens to the GPU (`io`: position, then ids).
    fn send_inputs(st: &mut CudaState, tokens: &[u32], pos: usize) -> Result<()> {
        let io = st.host_io.bytes_mut();
        io[..4].copy_from_slice(&(pos as i32).to_le_bytes());
        for (c, &t) in io[4..].chunks_exact_mut(4).zip(tokens) {
            c.copy_from_slice(&(t as i32).to_le_bytes());
        }
        let len = 4 * (tokens.len() + 1);
        // SAFETY: pinned memory, not written again before the stream is synchronised at the
        // end of the step; `io` holds UBATCH + 1 values.
        unsafe { st.stream.upload(st.act.io.ptr(), st.host_io.as_ptr(), len) }
    }

    /// A single-token step: the captured graph (captured on first use).
    fn decode(&self, hp: &Hparams, st: &mut CudaState, token: u32, pos: usize) -> Result<()> {
        Self::send_inputs(st, &[token], pos)?;
        if st.graph.is_none() {
            let _capturing = driver::capturing();
            st.stream.begin_capture()?;
            let never = AtomicBool::new(false);
            let r = self.pass(hp, st, &[token], pos, true, &never);
            // End the capture on every path (a failed pass leaves it open otherwise).
            let graph = st.stream.end_capture();
            r?;
            st.graph = Some(graph?);
        }
        match &st.graph {
            Some(g) => g.launch(&st.stream),
            None => Err(Error::internal("no decode graph")),
        }
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn n_threads(&self) -> usize {
        1
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn device(&self) -> Option<String> {
        Some(format!("{} (GPU {}, {} MiB)", self.gpu.name, self.gpu.index, self.gpu.total_memory >> 20))
    }

    fn new_state(&self, hp: &Hparams, n_ctx: usize, k_type: KvType, v_type: KvType) -> Result<Box<dyn SessionState>> {
        Ok(Box::new(CudaState::new(&self.ctx, hp, n_ctx, (k_type, v_type), self.dev.dequant)?))
    }

    fn forward(
        &self,
        hp: &Hparams,
        state: &mut dyn SessionState,
        batch: Batch<'_>,
        logits: &mut [f32],
        cancel: &AtomicBool,
    ) -> Result<()> {
        let st = super::own_state::<CudaState>(state, "CUDA")?;
        self.ctx.bind()?;
        if batch.tokens.len() == 1 {
            llama::check_cancel(cancel)?;
            self.decode(hp, st, batch.tokens[0], batch.pos)?;
        } else {
            let mut pos = batch.pos;
            let mut chunks = batch.tokens.chunks(UBATCH).peekable();
            while let Some(tokens) = chunks.next() {
                let last = chunks.peek().is_none();
                Self::send_inputs(st, tokens, pos)?;
                let r = self.pass(hp, st, tokens, pos, last, cancel);
                // Wait for the piece (the inputs' pinned memory is reused by the next), and
                // see an abort between pieces.
                st.stream.sync()?;
                r?;
                pos += tokens.len();
            }
        }
        let n = logits.len().min(hp.n_vocab);
        let host = st.host_logits.bytes_mut();
        // SAFETY: the device logits hold n_vocab f32; `host` as many bytes.
        unsafe { st.stream.download(&mut host[..4 * n], st.act.logits.ptr())? };
        for (o, b) in logits[..n].iter_mut().zip(st.host_logits.bytes().chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }
}
