//! The CUDA backend (feature `cuda`): the NVIDIA driver, cuBLAS and NVRTC are found at run time
//! (`libcuda.so` / `nvcuda.dll`, `libcublas.so.13|12` / `cublas64_13|12.dll`, NVRTC), so the
//! library builds without the CUDA SDK and loads on machines without a GPU.
//!
//! So far this is the device probe: [`probe`] says which GPU a load would use, or names what is
//! missing (no driver, no GPU, `device_index` out of range, libraries that cannot be opened), as
//! `LLAMA_ERR_DEVICE`. (On Windows the CUDA 12 NVRTC, `nvrtc64_120_0.dll`, is not among the
//! names cudarc's 13.0 bindings try.) The forward pass on the GPU is not written yet: a load that gets past the
//! probe is refused as unsupported, naming the GPU it found.

use cudarc::driver::result as cu;

use crate::error::{Error, Result, Status};

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
