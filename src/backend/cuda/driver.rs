//! Owned CUDA driver objects (the primary context, device and pinned host memory, streams,
//! events, captured graphs, cuBLAS handles, the kernel module), each freed on drop with its
//! context current, and the mapping of driver errors to ours: out of memory names the bytes
//! asked for and free, everything else is `LLAMA_ERR_DEVICE` naming the step that failed.

use std::ffi::c_void;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cudarc::cublas::sys as blas;
use cudarc::driver::result as cu;
use cudarc::driver::sys;

use crate::error::{Error, Result, Status};

/// `Device` status naming what failed.
pub(super) fn device_error(msg: impl Into<String>) -> Error {
    Error::new(Status::Device, msg)
}

/// A driver result as ours, naming `what` was being done.
pub(super) fn check<T>(r: std::result::Result<T, cu::DriverError>, what: &str) -> Result<T> {
    r.map_err(|e| device_error(format!("CUDA: {what}: {e}")))
}

/// Decode-graph captures in progress (shared) against the driver calls that may synchronise the
/// device and so invalidate another thread's capture (exclusive): allocating and freeing
/// memory, loading modules, creating and destroying contexts, streams, events, cuBLAS handles
/// and graphs. Without it, tests that loaded models while another thread captured its decode
/// graph failed with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (H100, 2026-12-06).
static CAPTURES: RwLock<()> = RwLock::new(());

/// Held while a stream captures (see [`CAPTURES`]); the capture must not call what takes
/// [`exclusive`].
pub(super) fn capturing() -> RwLockReadGuard<'static, ()> {
    CAPTURES.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held around a driver call that may synchronise the device (see [`CAPTURES`]).
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    CAPTURES.write().unwrap_or_else(PoisonError::into_inner)
}

/// The device's primary context (retained while this lives).
pub(super) struct Context {
    dev: sys::CUdevice,
    ctx: sys::CUcontext,
}

// SAFETY: a CUDA context may be made current on, and used from, any thread; the handles are
// plain identifiers.
unsafe impl Send for Context {}
// SAFETY: as above; every use goes through the driver, which is thread-safe.
unsafe impl Sync for Context {}

impl Context {
    /// Retain device `index`'s primary context (the driver was initialised by the probe).
    pub(super) fn new(index: usize) -> Result<Arc<Context>> {
        let dev = check(cu::device::get(index as i32), "cuDeviceGet")?;
        let _x = exclusive();
        // SAFETY: `dev` is a device the driver returned.
        let ctx = check(unsafe { cu::primary_ctx::retain(dev) }, "cuDevicePrimaryCtxRetain")?;
        let c = Arc::new(Context { dev, ctx });
        c.bind()?;
        Ok(c)
    }

    /// Make the context current on the calling thread (every entry into the backend does).
    pub(super) fn bind(&self) -> Result<()> {
        // SAFETY: the context is retained until `self` drops.
        check(unsafe { cu::ctx::set_current(self.ctx) }, "cuCtxSetCurrent")
    }

    /// (free, total) device memory in bytes.
    pub(super) fn mem_info(&self) -> (usize, usize) {
        cu::mem_get_info().unwrap_or((0, 0))
    }

    /// A device attribute.
    pub(super) fn attribute(&self, a: sys::CUdevice_attribute) -> Result<i32> {
        // SAFETY: `dev` is valid and `a` a driver attribute.
        check(unsafe { cu::device::get_attribute(self.dev, a) }, "cuDeviceGetAttribute")
    }

    /// `bytes` of device memory (uninitialised), or `OutOfMemory` naming `what`, the bytes
    /// asked for and the bytes free.
    pub(super) fn alloc(self: &Arc<Self>, bytes: usize, what: &str) -> Result<DeviceBuffer> {
        self.bind()?;
        let _x = exclusive();
        // SAFETY: plain allocation in the current context (a zero size is rounded up: the driver
        // refuses zero-byte allocations).
        match unsafe { cu::malloc_sync(bytes.max(1)) } {
            Ok(ptr) => Ok(DeviceBuffer { ptr, bytes, ctx: self.clone() }),
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                let (free, total) = self.mem_info();
                Err(Error::new(
                    Status::OutOfMemory,
                    format!(
                        "out of GPU memory: {what} needs {} MiB but {} MiB of {} MiB are free",
                        bytes.div_ceil(1 << 20),
                        free >> 20,
                        total >> 20
                    ),
                ))
            }
            Err(e) => Err(device_error(format!("CUDA: cannot allocate {bytes} bytes for {what}: {e}"))),
        }
    }

    /// `bytes` of page-locked host memory.
    pub(super) fn alloc_pinned(self: &Arc<Self>, bytes: usize) -> Result<PinnedBuffer> {
        self.bind()?;
        let _x = exclusive();
        // SAFETY: plain allocation; freed by `PinnedBuffer::drop`.
        let ptr = unsafe { cu::malloc_host(bytes.max(1), 0) }.map_err(|e| {
            Error::new(Status::OutOfMemory, format!("cannot allocate {} MiB of pinned host memory: {e}", bytes >> 20))
        })?;
        Ok(PinnedBuffer { ptr: ptr.cast(), bytes, ctx: self.clone() })
    }

    /// A non-blocking stream.
    pub(super) fn stream(self: &Arc<Self>) -> Result<Stream> {
        self.bind()?;
        let _x = exclusive();
        let raw = check(cu::stream::create(cu::stream::StreamKind::NonBlocking), "cuStreamCreate")?;
        Ok(Stream { raw, ctx: self.clone() })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _x = exclusive();
        // SAFETY: releases the retain of `new`; every object made in it holds an `Arc` to this
        // and has been dropped.
        unsafe {
            let _ = cu::primary_ctx::release(self.dev);
        }
    }
}

/// Device memory.
pub(super) struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    ctx: Arc<Context>,
}

impl DeviceBuffer {
    /// The device address of byte `offset`.
    pub(super) fn at(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.bytes);
        self.ptr + offset as u64
    }
    /// The device address.
    pub(super) fn ptr(&self) -> u64 {
        self.ptr
    }
    /// Size in bytes.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let _x = exclusive();
        // SAFETY: `ptr` came from `cuMemAlloc` in this context and is freed once; work that used
        // it was synchronised by its owner (streams are synchronised before buffers drop).
        unsafe {
            let _ = self.ctx.bind();
            let _ = cu::memory_free(self.ptr);
        }
    }
}

/// Page-locked host memory (staging for uploads, the step's inputs and logits).
pub(super) struct PinnedBuffer {
    ptr: *mut u8,
    bytes: usize,
    ctx: Arc<Context>,
}

// SAFETY: plain host memory owned by this value.
unsafe impl Send for PinnedBuffer {}

impl PinnedBuffer {
    /// The memory as bytes.
    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `bytes` bytes this value owns, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }
    /// The memory as bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: as above, shared.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }
    /// The start of the memory.
    pub(super) fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        let _x = exclusive();
        // SAFETY: `ptr` came from `cuMemHostAlloc`; copies from it were synchronised by its owner.
        unsafe {
            let _ = self.ctx.bind();
            let _ = cu::free_host(self.ptr.cast());
        }
    }
}

/// A stream.
pub(super) struct Stream {
    raw: sys::CUstream,
    ctx: Arc<Context>,
}

// SAFETY: a stream handle may be used from any thread (its owner serialises use by `&mut`).
unsafe impl Send for Stream {}

impl Stream {
    /// The driver handle.
    pub(super) fn raw(&self) -> sys::CUstream {
        self.raw
    }

    /// Wait for the stream's work.
    pub(super) fn sync(&self) -> Result<()> {
        // SAFETY: a live stream.
        check(unsafe { cu::stream::synchronize(self.raw) }, "cuStreamSynchronize")
    }

    /// Copy `len` bytes from host `src` to device address `dst`, asynchronously.
    ///
    /// # Safety
    /// `src..src + len` must stay valid and unchanged until the stream reaches the copy (pinned
    /// memory for a truly asynchronous copy), and `dst` must be device memory of `len` bytes.
    pub(super) unsafe fn upload(&self, dst: u64, src: *const u8, len: usize) -> Result<()> {
        // SAFETY: the caller keeps `src..src + len` valid until the copy runs.
        let src = unsafe { std::slice::from_raw_parts(src, len) };
        // SAFETY: `dst` is device memory of `len` bytes (the caller's contract), the stream ours.
        check(unsafe { cu::memcpy_htod_async(dst, src, self.raw) }, "cuMemcpyHtoDAsync")
    }

    /// Copy `dst.len()` bytes from device address `src` into `dst`, waiting for it.
    ///
    /// # Safety
    /// `src` must be device memory of at least `dst.len()` bytes.
    pub(super) unsafe fn download(&self, dst: &mut [u8], src: u64) -> Result<()> {
        // SAFETY: `src` holds `dst.len()` device bytes (the caller's contract); the sync below
        // waits for the copy before `dst` is handed back.
        check(unsafe { cu::memcpy_dtoh_async(dst, src, self.raw) }, "cuMemcpyDtoHAsync")?;
        self.sync()
    }

    /// Start capturing the work enqueued by this thread into a graph.
    pub(super) fn begin_capture(&self) -> Result<()> {
        // SAFETY: a live stream; thread-local mode leaves other threads' CUDA calls alone.
        check(
            unsafe {
                cu::stream::begin_capture(self.raw, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            },
            "cuStreamBeginCapture",
        )
    }

    /// End a capture and instantiate what it recorded.
    pub(super) fn end_capture(&self) -> Result<Graph> {
        // SAFETY: the stream is capturing (begun by `begin_capture`).
        let graph = check(unsafe { cu::stream::end_capture(self.raw) }, "cuStreamEndCapture")?;
        // SAFETY: `graph` is the captured graph; destroyed once instantiated (the instance is
        // independent of it).
        let exec = unsafe { cu::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) };
        // SAFETY: as above.
        unsafe {
            let _ = cu::graph::destroy(graph);
        }
        Ok(Graph { exec: check(exec, "cuGraphInstantiate")?, ctx: self.ctx.clone() })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _x = exclusive();
        // SAFETY: a live stream, destroyed once after its work (the driver waits for it).
        unsafe {
            let _ = self.ctx.bind();
            let _ = cu::stream::synchronize(self.raw);
            let _ = cu::stream::destroy(self.raw);
        }
    }
}

/// A captured, instantiated graph (one decode step).
pub(super) struct Graph {
    exec: sys::CUgraphExec,
    ctx: Arc<Context>,
}

// SAFETY: an executable graph may be launched from any thread; its owner serialises use.
unsafe impl Send for Graph {}

impl Graph {
    /// Launch the graph on `stream`.
    pub(super) fn launch(&self, stream: &Stream) -> Result<()> {
        // SAFETY: a live graph and stream of the same context.
        check(unsafe { cu::graph::launch(self.exec, stream.raw) }, "cuGraphLaunch")
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        let _x = exclusive();
        // SAFETY: a live instance, destroyed once (launches were synchronised by the owner).
        unsafe {
            let _ = self.ctx.bind();
            let _ = cu::graph::exec_destroy(self.exec);
        }
    }
}

/// An event, to wait for part of a stream's work.
pub(super) struct Event {
    raw: sys::CUevent,
    ctx: Arc<Context>,
}

impl Event {
    /// A new event (no timing).
    pub(super) fn new(ctx: &Arc<Context>) -> Result<Event> {
        ctx.bind()?;
        let _x = exclusive();
        let raw = check(cu::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING), "cuEventCreate")?;
        Ok(Event { raw, ctx: ctx.clone() })
    }
    /// Mark the work enqueued on `stream` so far.
    pub(super) fn record(&self, stream: &Stream) -> Result<()> {
        // SAFETY: live event and stream of one context.
        check(unsafe { cu::event::record(self.raw, stream.raw) }, "cuEventRecord")
    }
    /// Wait for the marked work.
    pub(super) fn sync(&self) -> Result<()> {
        // SAFETY: a live event.
        check(unsafe { cu::event::synchronize(self.raw) }, "cuEventSynchronize")
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let _x = exclusive();
        // SAFETY: a live event, destroyed once.
        unsafe {
            let _ = self.ctx.bind();
            let _ = cu::event::destroy(self.raw);
        }
    }
}

/// A cuBLAS handle bound to one stream.
pub(super) struct Blas {
    handle: blas::cublasHandle_t,
    ctx: Arc<Context>,
}

// SAFETY: a cuBLAS handle may move between threads; its owner serialises use by `&mut`.
unsafe impl Send for Blas {}

fn blas_check(s: blas::cublasStatus_t, what: &str) -> Result<()> {
    if s == blas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(device_error(format!("cuBLAS: {what}: {s:?}")))
    }
}

/// Element types of a cuBLAS product's operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BlasType {
    F32,
    F16,
    BF16,
}

impl BlasType {
    fn raw(self) -> blas::cudaDataType {
        match self {
            BlasType::F32 => blas::cudaDataType::CUDA_R_32F,
            BlasType::F16 => blas::cudaDataType::CUDA_R_16F,
            BlasType::BF16 => blas::cudaDataType::CUDA_R_16BF,
        }
    }
}

impl Blas {
    /// A handle enqueueing on `stream`, with cuBLAS's default math (no TF32 for f32).
    pub(super) fn new(stream: &Stream) -> Result<Blas> {
        stream.ctx.bind()?;
        let mut handle = std::ptr::null_mut();
        let _x = exclusive();
        // SAFETY: `handle` receives a new handle.
        blas_check(unsafe { blas::cublasCreate_v2(&mut handle) }, "cublasCreate")?;
        let b = Blas { handle, ctx: stream.ctx.clone() };
        // SAFETY: a live handle and stream of the current context.
        blas_check(unsafe { blas::cublasSetStream_v2(handle, stream.raw().cast()) }, "cublasSetStream")?;
        Ok(b)
    }

    /// `C[n, rows] = X[n, cols] · W[rows, cols]ᵀ + beta · C` (row-major, `ldc` values from one
    /// row of `C` to the next; `C` f32, accumulated in f32): `w` and `x` device addresses of
    /// `ty` values, `c` of f32.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm(
        &mut self,
        ty: BlasType,
        w: u64,
        rows: usize,
        cols: usize,
        x: u64,
        n: usize,
        c: u64,
        ldc: usize,
        beta: f32,
    ) -> Result<()> {
        let (alpha, beta) = (1f32, beta);
        // Column-major view: C (rows x n, ld rows) = Wᵀ-stored (cols x rows, ld cols)ᵀ · X (cols x n).
        // SAFETY: the addresses hold the operands' sizes (checked by the caller's allocation),
        // all on the handle's stream; alpha and beta are f32 as the compute type wants.
        let s = unsafe {
            blas::cublasGemmEx(
                self.handle,
                blas::cublasOperation_t::CUBLAS_OP_T,
                blas::cublasOperation_t::CUBLAS_OP_N,
                rows as i32,
                n as i32,
                cols as i32,
                (&alpha as *const f32).cast::<c_void>(),
                w as *const c_void,
                ty.raw(),
                cols as i32,
                x as *const c_void,
                ty.raw(),
                cols as i32,
                (&beta as *const f32).cast::<c_void>(),
                c as *mut c_void,
                blas::cudaDataType::CUDA_R_32F,
                ldc as i32,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        };
        blas_check(s, "cublasGemmEx")
    }

    /// `batch` products `C_i = op(A_i) · B_i` (column-major, `C` f32, accumulated in f32; `A`
    /// transposed when `g.trans_a`), `A` and `B` of `g.ty`, each operand `stride` elements after
    /// the last.
    pub(super) fn gemm_batched(&mut self, g: &Batched) -> Result<()> {
        let (alpha, beta) = (1f32, 0f32);
        let op = |t: bool| if t { blas::cublasOperation_t::CUBLAS_OP_T } else { blas::cublasOperation_t::CUBLAS_OP_N };
        // SAFETY: the addresses hold `batch` operands of the given shapes and strides (the
        // caller's allocation), all on the handle's stream; alpha and beta are f32 as the
        // compute type wants.
        let s = unsafe {
            blas::cublasGemmStridedBatchedEx(
                self.handle,
                op(g.trans_a),
                blas::cublasOperation_t::CUBLAS_OP_N,
                g.m as i32,
                g.n as i32,
                g.k as i32,
                (&alpha as *const f32).cast::<c_void>(),
                g.a as *const c_void,
                g.ty.raw(),
                g.lda as i32,
                g.stride_a as i64,
                g.b as *const c_void,
                g.ty.raw(),
                g.ldb as i32,
                g.stride_b as i64,
                (&beta as *const f32).cast::<c_void>(),
                g.c as *mut c_void,
                blas::cudaDataType::CUDA_R_32F,
                g.ldc as i32,
                g.stride_c as i64,
                g.batch as i32,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        };
        blas_check(s, "cublasGemmStridedBatchedEx")
    }
}

/// A strided batch of column-major products for [`Blas::gemm_batched`] (sizes, leading
/// dimensions and strides in elements).
pub(super) struct Batched {
    /// Element type of `A` and `B`.
    pub ty: BlasType,
    /// Whether `A` is stored transposed (`k x m`).
    pub trans_a: bool,
    /// Rows of `C`.
    pub m: usize,
    /// Columns of `C`.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// `A`: device address, leading dimension, stride.
    pub a: u64,
    pub lda: usize,
    pub stride_a: usize,
    /// `B` (`k x n`).
    pub b: u64,
    pub ldb: usize,
    pub stride_b: usize,
    /// `C` (f32).
    pub c: u64,
    pub ldc: usize,
    pub stride_c: usize,
    /// Products.
    pub batch: usize,
}

impl Drop for Blas {
    fn drop(&mut self) {
        let _x = exclusive();
        // SAFETY: a live handle, destroyed once.
        unsafe {
            let _ = self.ctx.bind();
            let _ = blas::cublasDestroy_v2(self.handle);
        }
    }
}

/// A kernel argument as the 8-byte cell `cuLaunchKernel` reads it from (4-byte values in the
/// low bytes: x86-64 and every CUDA host is little-endian).
pub(super) trait KernelArg {
    /// The cell.
    fn cell(self) -> u64;
}
impl KernelArg for u64 {
    fn cell(self) -> u64 {
        self
    }
}
impl KernelArg for i32 {
    fn cell(self) -> u64 {
        self as u32 as u64
    }
}
impl KernelArg for f32 {
    fn cell(self) -> u64 {
        self.to_bits() as u64
    }
}

/// A kernel of the loaded module.
#[derive(Clone, Copy)]
pub(super) struct Function(sys::CUfunction);

// SAFETY: function handles are identifiers valid on any thread while the module is loaded
// (the module outlives every user: both belong to the backend).
unsafe impl Send for Function {}
// SAFETY: as above.
unsafe impl Sync for Function {}

impl Function {
    /// Enqueue the kernel on `stream` with arguments `cells` (see [`KernelArg`]).
    ///
    /// With `overlap`, the launch is a programmatic dependent one: the kernel may start before
    /// the one before it on the stream has completed, and must wait for it
    /// (`griddepcontrol.wait`, kernels.cu's `pdl_wait`) before it uses its results.
    ///
    /// # Safety
    /// The cells must match the kernel's parameters in number and size, and every address
    /// among them must be device memory the kernel may access as it does.
    pub(super) unsafe fn launch(
        self,
        stream: &Stream,
        grid: u32,
        block: u32,
        shared: u32,
        overlap: bool,
        cells: &mut [u64],
    ) -> Result<()> {
        let mut params: [*mut c_void; 16] = [std::ptr::null_mut(); 16];
        for (p, c) in params.iter_mut().zip(cells.iter_mut()) {
            *p = (c as *mut u64).cast();
        }
        // SAFETY: an all-zero attribute is a valid C value (a union of plain integers).
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: grid,
            gridDimY: 1,
            gridDimZ: 1,
            blockDimX: block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: shared,
            hStream: stream.raw(),
            attrs: &mut attr,
            numAttrs: overlap as u32,
        };
        // SAFETY: the cells match the kernel's parameters and address memory it may access (the
        // caller's contract); `params`, `config` and `attr` live for the duration of the call.
        let launched =
            unsafe { sys::cuLaunchKernelEx(&config, self.0, params.as_mut_ptr(), std::ptr::null_mut()).result() };
        check(launched, "cuLaunchKernelEx")
    }

    /// Blocks of `block` threads with `shared` bytes of dynamic shared memory that fit one
    /// multiprocessor at once (at least 1).
    pub(super) fn blocks_per_sm(self, block: u32, shared: u32) -> Result<usize> {
        // SAFETY: a live function.
        let n = check(
            unsafe { cu::occupancy::max_active_block_per_multiprocessor(self.0, block as i32, shared as usize) },
            "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        )?;
        Ok(n.max(1) as usize)
    }

    /// Allow `bytes` of dynamic shared memory (above the 48 KiB default).
    pub(super) fn allow_shared(self, bytes: usize) -> Result<()> {
        // SAFETY: a live function; the attribute takes a byte count.
        check(
            unsafe {
                cu::function::set_function_attribute(
                    self.0,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    bytes as i32,
                )
            },
            "cuFuncSetAttribute",
        )
    }
}

/// A loaded module (the compiled kernels).
pub(super) struct Module {
    raw: sys::CUmodule,
    ctx: Arc<Context>,
}

// SAFETY: a module handle is usable from any thread of its context.
unsafe impl Send for Module {}
// SAFETY: as above.
unsafe impl Sync for Module {}

impl Module {
    /// Load PTX or a cubin image (NUL-terminated for PTX).
    pub(super) fn load(ctx: &Arc<Context>, image: &[u8]) -> Result<Module> {
        ctx.bind()?;
        let _x = exclusive();
        // SAFETY: `image` is a complete PTX text (NUL-terminated) or cubin, read during the call.
        let raw = check(unsafe { cu::module::load_data(image.as_ptr().cast()) }, "cuModuleLoadData")?;
        Ok(Module { raw, ctx: ctx.clone() })
    }

    /// The kernel called `name`.
    pub(super) fn function(&self, name: &str) -> Result<Function> {
        let c = std::ffi::CString::new(name).map_err(|_| Error::internal("kernel name with NUL"))?;
        // SAFETY: a loaded module and a NUL-terminated name.
        let f = check(unsafe { cu::module::get_function(self.raw, c) }, &format!("kernel {name}"))?;
        Ok(Function(f))
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let _x = exclusive();
        // SAFETY: a loaded module, unloaded once after every stream using it was synchronised.
        unsafe {
            let _ = self.ctx.bind();
            let _ = cu::module::unload(self.raw);
        }
    }
}
