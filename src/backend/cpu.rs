//! The CPU forward pass: llama2.c's `forward()` read top to bottom, batched over the tokens of
//! a step, with every matrix product split over output rows on the model's thread pool. During
//! a step the pool's other threads wait for work spinning (a team, `cpu/team.rs`), so that a
//! decode step's ~130 short regions start and end without waking a sleeping thread.
//!
//! Steady state allocates only the step's team (a few small allocations per step): the
//! activations (and the packed copy of a product's input that the matmul kernel reads) live in
//! the session's `Scratch` (grown once to the largest batch seen, at most [`UBATCH`] tokens),
//! and each worker thread keeps a small buffer of its own for attention scores and matmul
//! outputs. A long prompt runs in batches of [`UBATCH`] tokens.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use runllama_kernels as k;

mod team;

use self::team::Team;
use super::llama::{self, LlamaOps};
use super::{Backend, Batch, KvType, SessionState};
use crate::error::{Error, Result, Status};
use crate::model::{Hparams, Matrix, Projections, Weights};

/// Largest number of tokens one batched pass computes at once (longer prompts run in pieces).
pub const UBATCH: usize = 256;

/// Tasks per thread a batched matrix product is split into (a few, so that a core slowed by another
/// process hands its share to the others).
const TASKS_PER_THREAD: usize = 8;

/// Rows a task's share of a product is a whole number of: the matmul kernel's 48-row
/// super-block (and the smallest piece of a decode region).
const ROW_BLOCK: usize = 48;

/// Most values of `swiglu`'s gate one task computes.
const SILU_PIECE: usize = 2048;

/// Most matrix-vector products one decode region runs together (q, k and v).
const MAX_MATVECS: usize = 3;

/// The start of the names of the backend's worker threads ("runllama-0", ...).
pub const WORKER_NAME: &str = "runllama-";

/// The CPU backend: the weights (views into the mapped files, used in place) and a rayon pool of
/// `n_threads`, whose threads are joined when the backend is dropped (with the model's last
/// reference), so that a host may unload the library afterwards.
pub struct CpuBackend {
    weights: Weights,
    /// `None` only while dropping.
    pool: Option<rayon::ThreadPool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    n_threads: usize,
    /// What batched products of bf16 weights use.
    bf16: k::Bf16Products,
}

impl CpuBackend {
    /// A backend computing over `weights` with `n_threads` threads, its batched products of
    /// bf16 weights as `bf16` says.
    pub fn new(n_threads: usize, bf16: k::Bf16Products, weights: Weights) -> Result<CpuBackend> {
        let mut workers = Vec::with_capacity(n_threads);
        let built = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .thread_name(|i| format!("{WORKER_NAME}{i}"))
            .spawn_handler(|t| {
                let mut b = std::thread::Builder::new();
                if let Some(name) = t.name() {
                    b = b.name(name.to_owned());
                }
                if let Some(size) = t.stack_size() {
                    b = b.stack_size(size);
                }
                // One thread at a time, each setting up its thread-local state before the next
                // one's stack is mapped: where memory runs out it is then a spawn that fails
                // (an error), not a started thread's first thread-local allocation, which glibc
                // cannot fail and aborts the process for.
                let (ready, set_up) = std::sync::mpsc::sync_channel(0);
                workers.push(b.spawn(move || {
                    let _ = std::thread::current();
                    // The deques' epoch handle, which a worker's first look for work registers.
                    drop(crossbeam_epoch::pin());
                    let _ = ready.send(());
                    t.run()
                })?);
                let _ = set_up.recv();
                Ok(())
            })
            .build();
        match built {
            Ok(pool) => Ok(CpuBackend { weights, pool: Some(pool), workers, n_threads, bf16 }),
            Err(e) => {
                // rayon stops the threads it did start: wait for them.
                for w in workers {
                    let _ = w.join();
                }
                // The system refused a thread (a limit or memory), not a bug.
                Err(Error::new(Status::OutOfMemory, format!("cannot start {n_threads} worker threads: {e}")))
            }
        }
    }

    fn pool(&self) -> &rayon::ThreadPool {
        self.pool.as_ref().expect("the pool lives until the backend is dropped")
    }

    /// Rows per task of a product with `rows` output rows: whole 48-row super-blocks of the
    /// matmul kernel, about [`TASKS_PER_THREAD`] tasks per thread.
    fn chunk_rows(&self, rows: usize) -> usize {
        rows.div_ceil(self.n_threads * TASKS_PER_THREAD).next_multiple_of(ROW_BLOCK).max(ROW_BLOCK)
    }
}

impl Drop for CpuBackend {
    fn drop(&mut self) {
        // Dropping the pool tells its threads to exit once idle; then wait for them (unless
        // this is one of them, which cannot wait for itself).
        drop(self.pool.take());
        let me = std::thread::current().id();
        for w in self.workers.drain(..) {
            if w.thread().id() != me {
                let _ = w.join();
            }
        }
    }
}

/// Element types whose all-zero bytes are the value zero.
///
/// # Safety
/// Every all-zero bit pattern of the type's size is a valid value, and the type is not zero-sized.
unsafe trait ZeroBits {}
// SAFETY: zero bytes are 0.0, +0.0 in f16, 0.
unsafe impl ZeroBits for f32 {}
// SAFETY: as above.
unsafe impl ZeroBits for f16 {}
// SAFETY: as above.
unsafe impl ZeroBits for i8 {}
// SAFETY: as above.
unsafe impl ZeroBits for u8 {}

/// `n` zeros in a fresh vector, or `OutOfMemory` naming `what` and the bytes. The memory comes
/// zeroed from the allocator (`calloc`): a large block is fresh pages that the OS commits only
/// when they are written, so a long context costs memory as its positions are used.
fn zeroed<T: ZeroBits>(n: usize, what: &str) -> Result<Vec<T>> {
    let oom = || crate::alloc::out_of_memory(n.saturating_mul(std::mem::size_of::<T>()), what);
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n).map_err(|_| oom())?;
    // SAFETY: the layout's size is not zero (`n > 0`, `T` not zero-sized per `ZeroBits`).
    let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if p.is_null() {
        return Err(oom());
    }
    // SAFETY: `p` comes from the global allocator with the layout of `[T; n]`; its `n`
    // zero-filled elements are valid values of `T` (`ZeroBits`).
    Ok(unsafe { Vec::from_raw_parts(p, n, n) })
}

/// Physical memory plus swap in bytes (Linux: `/proc/meminfo`), where known: no request for
/// more can ever be met.
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) * 1024)
}

/// The values of one layer's K or V cache.
enum KvData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// `k::quantize_q8` rows: the values, and one scale per `block` values (`block` divides
    /// the head size, so every head's row is whole blocks).
    Q8 {
        qs: Vec<i8>,
        scales: Vec<f16>,
        block: usize,
    },
    /// `k::quantize_q4` rows: two values a byte, one scale per `block` (even, dividing the
    /// head size).
    Q4 {
        qs: Vec<u8>,
        scales: Vec<f16>,
        block: usize,
    },
}

/// One layer's K or V cache, head-major: head `h`'s vector at position `p` is the `head_dim`
/// values at `(h * n_ctx + p) * head_dim`. Attention reads one head's positions in one
/// contiguous run (a position-major cache would put each 256-byte row of a LLaMA head on its
/// own 4 KiB page: a TLB miss per position, and a stride no hardware prefetcher follows).
struct KvBuf {
    data: KvData,
    n_ctx: usize,
    n_heads: usize,
    head_dim: usize,
}

/// Block size of the 8-bit and 4-bit caches for heads of `head_dim`: `gcd(32, head_dim)` (32 for every
/// LLaMA; a head never shares a block with the next).
fn quant_block(head_dim: usize) -> usize {
    let (mut a, mut b) = (32, head_dim);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl KvBuf {
    /// A cache of `n_ctx` positions of `n_heads` heads of `head_dim`.
    fn new(kind: KvType, n_ctx: usize, n_heads: usize, head_dim: usize) -> Result<KvBuf> {
        let n = n_ctx
            .checked_mul(n_heads * head_dim)
            .ok_or_else(|| Error::invalid(format!("n_ctx {n_ctx} is too large")))?;
        let data = match kind {
            KvType::F32 => KvData::F32(zeroed(n, "the KV cache")?),
            KvType::F16 => KvData::F16(zeroed(n, "the KV cache")?),
            KvType::Int8 => {
                let block = quant_block(head_dim);
                let qs = zeroed(n, "the KV cache")?;
                KvData::Q8 { qs, scales: zeroed(n / block, "the KV cache scales")?, block }
            }
            KvType::Int4 => {
                let block = quant_block(head_dim);
                if !block.is_multiple_of(2) {
                    return Err(Error::new(
                        Status::Unsupported,
                        format!("a 4-bit (q4_0) KV cache needs an even head size, not {head_dim}"),
                    ));
                }
                let qs = zeroed(n / 2, "the KV cache")?;
                KvData::Q4 { qs, scales: zeroed(n / block, "the KV cache scales")?, block }
            }
        };
        Ok(KvBuf { data, n_ctx, n_heads, head_dim })
    }

    fn bytes_len(&self) -> usize {
        match &self.data {
            KvData::F32(v) => v.len() * 4,
            KvData::F16(v) => v.len() * 2,
            KvData::Q8 { qs, scales, .. } => qs.len() + scales.len() * 2,
            KvData::Q4 { qs, scales, .. } => qs.len() + scales.len() * 2,
        }
    }

    /// Store the K or V vectors of positions `pos..`: `src` holds one row of every head per
    /// position (`n_heads * head_dim` values, as the projection writes them).
    fn write(&mut self, pos: usize, src: &[f32]) {
        let (hd, nh) = (self.head_dim, self.n_heads);
        for (i, head) in src.chunks_exact(hd).enumerate() {
            let at = ((i % nh) * self.n_ctx + pos + i / nh) * hd;
            match &mut self.data {
                KvData::F32(v) => v[at..at + hd].copy_from_slice(head),
                KvData::F16(v) => v[at..at + hd].convert_from_f32_slice(head),
                KvData::Q8 { qs, scales, block } => {
                    let b = *block;
                    k::quantize_q8(head, b, &mut qs[at..at + hd], &mut scales[at / b..(at + hd) / b]);
                }
                KvData::Q4 { qs, scales, block } => {
                    let b = *block;
                    k::quantize_q4(head, b, &mut qs[at / 2..(at + hd) / 2], &mut scales[at / b..(at + hd) / b]);
                }
            }
        }
    }

    /// Head `h`'s first `n` positions, as the attention kernels read them.
    fn head(&self, h: usize, n: usize) -> HeadRows<'_> {
        let hd = self.head_dim;
        let (at, end) = (h * self.n_ctx * hd, (h * self.n_ctx + n) * hd);
        match &self.data {
            KvData::F32(v) => HeadRows::Stored(k::WeightType::F32, elem_bytes(&v[at..end])),
            KvData::F16(v) => HeadRows::Stored(k::WeightType::F16, elem_bytes(&v[at..end])),
            KvData::Q8 { qs, scales, block } => {
                HeadRows::Q8 { qs: &qs[at..end], scales: &scales[at / block..end / block], block: *block }
            }
            KvData::Q4 { qs, scales, block } => {
                HeadRows::Q4 { qs: &qs[at / 2..end / 2], scales: &scales[at / block..end / block], block: *block }
            }
        }
    }

    /// Attention scores of query `q` against head `h` at positions `0..out.len()`:
    /// `out[j] = scale * dot(q, K_h[j])`. `then` is the cache read next (the layer's V cache):
    /// its head `h`'s rows are prefetched alongside (f32/f16 caches).
    fn scores(&self, h: usize, q: &[f32], scale: f32, out: &mut [f32], then: &KvBuf) {
        let hd = self.head_dim;
        match self.head(h, out.len()) {
            HeadRows::Stored(wt, rows) => {
                let next = match then.head(h, out.len()) {
                    HeadRows::Stored(_, next) => next,
                    _ => &[],
                };
                k::attn_scores(wt, rows, hd, q, scale, out, next)
            }
            HeadRows::Q8 { qs, scales, block } => k::attn_scores_q8(qs, scales, block, hd, q, scale, out),
            HeadRows::Q4 { qs, scales, block } => k::attn_scores_q4(qs, scales, block, hd, q, scale, out),
        }
    }

    /// Head `h`'s attention output: `out = sum_j p[j] * V_h[j]` over positions `0..p.len()`.
    fn wsum(&self, h: usize, p: &[f32], out: &mut [f32]) {
        let hd = self.head_dim;
        match self.head(h, p.len()) {
            HeadRows::Stored(wt, rows) => k::attn_wsum(wt, rows, hd, p, out),
            HeadRows::Q8 { qs, scales, block } => k::attn_wsum_q8(qs, scales, block, hd, p, out),
            HeadRows::Q4 { qs, scales, block } => k::attn_wsum_q4(qs, scales, block, hd, p, out),
        }
    }
}

/// One head's cached positions, contiguous (`head_dim` values each).
enum HeadRows<'a> {
    /// Values of a weight type, as bytes.
    Stored(k::WeightType, &'a [u8]),
    /// 8-bit values and their scales (one per `block`).
    Q8 { qs: &'a [i8], scales: &'a [f16], block: usize },
    /// 4-bit values (two a byte) and their scales (one per `block`).
    Q4 { qs: &'a [u8], scales: &'a [f16], block: usize },
}

/// Element types of a KV cache whose bytes the kernels read as stored rows: no padding, every
/// byte initialised (little-endian on the targets we build for, as the kernels read them).
trait CacheElem: Copy {}
impl CacheElem for f32 {}
impl CacheElem for f16 {}

/// The bytes of cache values.
fn elem_bytes<T: CacheElem>(v: &[T]) -> &[u8] {
    // SAFETY: `CacheElem` types have no padding and are fully initialised: a u8 view of their
    // bytes is valid at any alignment and lives as long as `v`.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Activations of one batched pass, sized for `cap` tokens.
#[derive(Default)]
struct Scratch {
    cap: usize,
    x: Vec<f32>,
    xb: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Output of a fused projection before it is scattered (empty for separate ones).
    fused: Vec<f32>,
    normed: Vec<f32>,
    /// A product's input packed for the matmul kernel (`k::pack_activations`).
    packed: Vec<f32>,
}

impl Scratch {
    /// Make room for `n` tokens (grows, never shrinks; a no-op in steady state).
    fn ensure(&mut self, hp: &Hparams, w: &Weights, n: usize) -> Result<()> {
        if n <= self.cap {
            return Ok(());
        }
        let (d, qd, kvd, ff) = (hp.n_embd, hp.n_head * hp.head_dim(), hp.kv_dim(), hp.n_ff);
        let fused_rows = w.layers.iter().map(|l| l.qkv.fused_rows().max(l.gate_up.fused_rows())).max().unwrap_or(0);
        let grow = |v: &mut Vec<f32>, len: usize| -> Result<()> {
            *v = Vec::new(); // free the old buffer first
            *v = zeroed(len, "activations")?;
            Ok(())
        };
        grow(&mut self.x, n * d)?;
        grow(&mut self.xb, n * d)?;
        grow(&mut self.q, n * qd)?;
        grow(&mut self.k, n * kvd)?;
        grow(&mut self.v, n * kvd)?;
        grow(&mut self.att, n * qd)?;
        grow(&mut self.proj, n * d)?;
        grow(&mut self.gate, n * ff)?;
        grow(&mut self.up, n * ff)?;
        grow(&mut self.fused, n * fused_rows)?;
        grow(&mut self.normed, d)?;
        grow(&mut self.packed, k::packed_len(n, d.max(qd).max(ff)))?;
        self.cap = n;
        Ok(())
    }
}

/// A session's state: per layer, the K and V caches of `n_ctx` positions, the activations, and
/// the RoPE frequencies.
struct CpuState {
    n_ctx: usize,
    k: Vec<KvBuf>,
    v: Vec<KvBuf>,
    inv_freq: Vec<f32>,
    scratch: Scratch,
}

impl SessionState for CpuState {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn kv_bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(KvBuf::bytes_len).sum()
    }
}

/// Per-worker-thread buffers: attention scores, a matmul block, a gathered weight row.
#[derive(Default)]
struct TaskScratch {
    f: Vec<f32>,
    bytes: Vec<u8>,
    /// The matmul kernel's own buffers (`k::MATMUL_SCRATCH`: AMX tiles' partial sums and
    /// converted weights).
    mm: Vec<f32>,
}

thread_local! {
    static TASK: RefCell<TaskScratch> = RefCell::new(TaskScratch::default());
}

/// The output of a parallel matmul, written by tasks at disjoint (row range, token) places.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements (each owns a row range), and the caller's `&mut`
// borrow of the buffer outlives the parallel loop.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn n_threads(&self) -> usize {
        self.n_threads
    }

    fn new_state(&self, hp: &Hparams, n_ctx: usize, k_type: KvType, v_type: KvType) -> Result<Box<dyn SessionState>> {
        let per_32 = (k_type.bytes_per_32() + v_type.bytes_per_32()) as u128;
        let total = hp.n_layer as u128 * per_32 * hp.kv_dim() as u128 * n_ctx as u128 / 32;
        if let Some(have) = machine_memory() {
            if total > have as u128 {
                return Err(Error::new(
                    Status::OutOfMemory,
                    format!(
                        "a KV cache of {n_ctx} positions needs {total} bytes ({} MiB), more than this machine's memory and swap ({} MiB)",
                        total >> 20,
                        have >> 20
                    ),
                ));
            }
        }
        let mut k = Vec::with_capacity(hp.n_layer);
        let mut v = Vec::with_capacity(hp.n_layer);
        for _ in 0..hp.n_layer {
            k.push(KvBuf::new(k_type, n_ctx, hp.n_head_kv, hp.head_dim())?);
            v.push(KvBuf::new(v_type, n_ctx, hp.n_head_kv, hp.head_dim())?);
        }
        let hd = hp.head_dim();
        let inv_freq = (0..hd / 2).map(|i| 1.0 / hp.rope_theta.powf((2 * i) as f32 / hd as f32)).collect();
        Ok(Box::new(CpuState { n_ctx, k, v, inv_freq, scratch: Scratch::default() }))
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn forward(
        &self,
        hp: &Hparams,
        state: &mut dyn SessionState,
        batch: Batch<'_>,
        logits: &mut [f32],
        cancel: &AtomicBool,
    ) -> Result<()> {
        let st = super::own_state::<CpuState>(state, "CPU")?;
        let w = &self.weights;
        st.scratch.ensure(hp, w, batch.tokens.len().min(UBATCH))?;
        self.pool().install(|| {
            Team::with(self.n_threads, |team| {
                let mut pos = batch.pos;
                let mut chunks = batch.tokens.chunks(UBATCH).peekable();
                while let Some(tokens) = chunks.next() {
                    let last = chunks.peek().is_none();
                    let mut pass = CpuPass { b: self, team, hp, st: &mut *st, n: 0 };
                    llama::forward(&mut pass, w, tokens, pos, last.then_some(&mut *logits), cancel)?;
                    pos += tokens.len();
                }
                Ok(())
            })
        })
    }
}

impl CpuBackend {
    /// `out[t * rows + r] = dot(m[r, :], x[t, :])` for the `n` rows of `x`, rows split over the
    /// pool. One token runs the matrix-vector kernel; a batch is packed once into `packed`
    /// (split over the pool by panel) and every task runs the matmul kernel on it.
    fn matmul(&self, team: &Team, m: &Matrix, x: &[f32], n: usize, packed: &mut [f32], out: &mut [f32]) {
        if n == 1 {
            self.matvecs(team, std::slice::from_ref(m), x, &mut [out], packed);
            return;
        }
        self.pack(m, x, n, packed);
        self.packed_product(m, packed, n, out);
    }

    /// How this backend's batched products run (the packing and the product take the same).
    fn products(&self) -> k::Products {
        k::Products { path: k::path(), bf16: self.bf16 }
    }

    /// Pack the `n` rows of `x` for products with `m` ([`k::pack_activations`] as
    /// [`Self::products`] say, its panels split over the pool) into `packed`.
    fn pack(&self, m: &Matrix, x: &[f32], n: usize, packed: &mut [f32]) {
        let (wt, cols, products) = (m.dtype(), m.cols, self.products());
        let packed = &mut packed[..k::packed_len(n, cols)];
        let x = &x[..n * cols];
        packed.par_chunks_mut(k::panel_stride(cols)).enumerate().for_each(|(q, p)| {
            k::paths::pack_panel(products, wt, x, n, cols, q, p);
        });
    }

    /// [`matmul`](Self::matmul)'s product over activations that [`pack`] packed for `m`.
    fn packed_product(&self, m: &Matrix, packed: &[f32], n: usize, out: &mut [f32]) {
        let w = &self.weights;
        let wt = m.dtype();
        let (rows, cols) = (m.rows, m.cols);
        // As the packing was made (see `pack`).
        let products = self.products();
        let chunk = self.chunk_rows(rows);
        let packed = &packed[..k::packed_len(n, cols)];
        let out = &mut out[..n * rows];
        let shared = SharedOut(out.as_mut_ptr());
        (0..rows.div_ceil(chunk)).into_par_iter().for_each(|b| {
            let (r0, r1) = (b * chunk, ((b + 1) * chunk).min(rows));
            TASK.with_borrow_mut(|s| {
                let TaskScratch { f, bytes, mm } = s;
                m.for_each_run(w, r0, r1, bytes, |r, run| {
                    let nr = run.len() / m.row_bytes();
                    let f = at_least(f, nr * n);
                    k::paths::matmul_packed_with(
                        products,
                        wt,
                        run,
                        nr,
                        cols,
                        packed,
                        n,
                        f,
                        at_least(mm, k::MATMUL_SCRATCH),
                    );
                    for t in 0..n {
                        // SAFETY: `t * rows + r + nr <= n * rows = out.len()`; this task alone
                        // writes rows `r0..r1` (see `SharedOut`).
                        unsafe {
                            std::ptr::copy_nonoverlapping(f.as_ptr().add(t * nr), shared.ptr().add(t * rows + r), nr);
                        }
                    }
                });
            });
        });
    }

    /// `outs[i][r] = dot(ms[i][r, :], x)` for every product at once, in one parallel region
    /// (one token's q, k and v, or gate and up, share an input). For quantized weights `x` is
    /// quantized once per activation format before the region, in `space` when it is large
    /// enough (the packing buffer, unused by a single token).
    ///
    /// The rows of all products form one list handed out from a shared counter in pieces that
    /// shrink as the list drains (what is left / (4 × threads), at least [`ROW_BLOCK`] rows), so
    /// the threads finish together: while one thread ends a region alone it reads about half
    /// the bandwidth that two would (measured on a 7B decode: a fixed split into 16 tasks left
    /// one thread working alone ~140 us of each ~2.7 ms product).
    fn matvecs(&self, team: &Team, ms: &[Matrix], x: &[f32], outs: &mut [&mut [f32]], space: &mut [f32]) {
        let w = &self.weights;
        assert!(ms.len() <= MAX_MATVECS && ms.len() == outs.len(), "at most {MAX_MATVECS} products, one output each");
        let mut own = Vec::new();
        let (acts, at) = quantize_inputs(ms, x, space, &mut own);
        let mut ends = [0usize; MAX_MATVECS];
        let mut ptrs = [SharedOut(std::ptr::null_mut()); MAX_MATVECS];
        let mut total = 0;
        for (i, (m, o)) in ms.iter().zip(outs.iter_mut()).enumerate() {
            assert!(o.len() >= m.rows && x.len() >= m.cols, "output or input shorter than the product");
            total += m.rows;
            ends[i] = total;
            ptrs[i] = SharedOut(o.as_mut_ptr());
        }
        let (ends, ptrs) = (&ends[..ms.len()], &ptrs[..ms.len()]);
        let next = AtomicUsize::new(0);
        let parts = 4 * self.n_threads;
        team.run(|| {
            TASK.with_borrow_mut(|s| loop {
                // Claim rows `g0..g1` of the list: never across a product's end.
                let mut g0 = next.load(Ordering::Relaxed);
                let (i, g1) = loop {
                    if g0 >= total {
                        return;
                    }
                    let i = ends.partition_point(|&e| e <= g0);
                    let want = ((total - g0) / parts).next_multiple_of(ROW_BLOCK).max(ROW_BLOCK);
                    let g1 = (g0 + want).min(ends[i]);
                    match next.compare_exchange_weak(g0, g1, Ordering::Relaxed, Ordering::Relaxed) {
                        Ok(_) => break (i, g1),
                        Err(now) => g0 = now,
                    }
                };
                let (m, base) = (&ms[i], ends[i] - ms[i].rows);
                let (r0, r1) = (g0 - base, g1 - base);
                let wt = m.dtype();
                m.for_each_run(w, r0, r1, &mut s.bytes, |r, bytes| {
                    let nr = bytes.len() / m.row_bytes();
                    // SAFETY: `r + nr <= r1 <= m.rows <= outs[i].len()`, and rows `r0..r1` of
                    // product `i` were claimed by this thread alone from the counter; the
                    // caller's `&mut` borrow of `outs` outlives the region.
                    let o = unsafe { std::slice::from_raw_parts_mut(ptrs[i].ptr().add(r), nr) };
                    match &at[i] {
                        Some(r) => k::matvec_quantized(wt, bytes, &acts[r.clone()], m.cols, o),
                        None => k::matvec(wt, bytes, &x[..m.cols], o),
                    }
                });
            })
        });
    }

    /// Apply projections to `x` (`n` rows): each output `outs[i]` is `[n, rows_i]`.
    #[allow(clippy::too_many_arguments)]
    fn project(
        &self,
        team: &Team,
        p: &Projections,
        x: &[f32],
        n: usize,
        packed: &mut [f32],
        fused: &mut [f32],
        outs: &mut [&mut [f32]],
    ) {
        match p {
            Projections::Separate(ms) if n == 1 && ms.len() <= MAX_MATVECS => {
                self.matvecs(team, ms, x, outs, packed);
            }
            Projections::Separate(ms) => {
                // Products of the same type and width share one packing of `x`.
                let mut packed_for = None;
                for (m, o) in ms.iter().zip(outs.iter_mut()) {
                    if packed_for != Some((m.dtype(), m.cols)) {
                        self.pack(m, x, n, packed);
                        packed_for = Some((m.dtype(), m.cols));
                    }
                    self.packed_product(m, packed, n, o);
                }
            }
            Projections::Fused { w: m, order } => {
                let total = m.rows;
                let fused = &mut fused[..n * total];
                self.matmul(team, m, x, n, packed, fused);
                for (r, &dst) in order.iter().enumerate() {
                    // Fused row `r` is row `d` of output `i`.
                    let (mut i, mut d) = (0, dst as usize);
                    while d >= outs[i].len() / n {
                        d -= outs[i].len() / n;
                        i += 1;
                    }
                    let width = outs[i].len() / n;
                    for t in 0..n {
                        outs[i][t * width + d] = fused[t * total + r];
                    }
                }
            }
        }
    }
}

/// One batched pass of the CPU backend: [`LlamaOps`] over the session's scratch activations and
/// KV cache, run inside the backend's pool (every product is split over it).
struct CpuPass<'a> {
    b: &'a CpuBackend,
    /// The threads that run the step's matrix-vector products, attention and gate.
    team: &'a Team,
    hp: &'a Hparams,
    st: &'a mut CpuState,
    /// Tokens in the batch (set by `embed`).
    n: usize,
}

impl LlamaOps for CpuPass<'_> {
    fn embed(&mut self, tokens: &[u32]) {
        let (w, d) = (&self.b.weights, self.hp.n_embd);
        self.n = tokens.len();
        let x = &mut self.st.scratch.x[..self.n * d];
        for (t, &tok) in tokens.iter().enumerate() {
            let r = tok as usize;
            k::row_to_f32(w.tok_embd.dtype(), &w.tok_embd.rows(w, r, r + 1), &mut x[t * d..(t + 1) * d]);
        }
    }

    fn norm(&mut self, weight: &[f32]) {
        let (d, s) = (self.hp.n_embd, &mut self.st.scratch);
        for t in 0..self.n {
            k::rmsnorm(&mut s.xb[t * d..(t + 1) * d], &s.x[t * d..(t + 1) * d], weight, self.hp.norm_eps);
        }
    }

    fn qkv(&mut self, p: &Projections) {
        let (n, qd, kvd) = (self.n, self.hp.n_head * self.hp.head_dim(), self.hp.kv_dim());
        let s = &mut self.st.scratch;
        let outs = &mut [&mut s.q[..n * qd], &mut s.k[..n * kvd], &mut s.v[..n * kvd]];
        self.b.project(self.team, p, &s.xb[..n * self.hp.n_embd], n, &mut s.packed, &mut s.fused, outs);
    }

    fn rope(&mut self, pos: usize) {
        let hp = self.hp;
        let (hd, qd, kvd) = (hp.head_dim(), hp.n_head * hp.head_dim(), hp.kv_dim());
        let CpuState { inv_freq, scratch: s, .. } = &mut *self.st;
        for t in 0..self.n {
            k::rope(&mut s.q[t * qd..(t + 1) * qd], hd, pos + t, inv_freq, hp.rope_layout);
            k::rope(&mut s.k[t * kvd..(t + 1) * kvd], hd, pos + t, inv_freq, hp.rope_layout);
        }
    }

    fn store_kv(&mut self, layer: usize, pos: usize) {
        let len = self.n * self.hp.kv_dim();
        let CpuState { k: kc, v: vc, scratch: s, .. } = &mut *self.st;
        kc[layer].write(pos, &s.k[..len]);
        vc[layer].write(pos, &s.v[..len]);
    }

    fn attention(&mut self, layer: usize, pos: usize) {
        let hp = self.hp;
        let (hd, qd) = (hp.head_dim(), hp.n_head * hp.head_dim());
        let group = hp.n_head / hp.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        let CpuState { k: kc, v: vc, scratch: s, .. } = &mut *self.st;
        let (kc, vc, q) = (&kc[layer], &vc[layer], &s.q);
        let att = SharedOut(s.att[..self.n * qd].as_mut_ptr());
        // Each (head, token) pair is one task writing its own output slice, a head's tokens in
        // a row: while the threads take them, that head's K and V rows stay in their caches
        // (token after token over all heads read every head's rows from memory per token).
        let n = self.n;
        self.team.for_each(n * hp.n_head, |i| {
            let (h, t) = (i / n, i % n);
            let at = t * qd + h * hd;
            // SAFETY: task `i` (claimed by one thread) alone writes `att[at..at + hd]` (`at` is
            // one-to-one with `i`), within the `n * qd` values checked above; `s.att`'s `&mut`
            // borrow outlives the region.
            let out = unsafe { std::slice::from_raw_parts_mut(att.ptr().add(at), hd) };
            let qh = &q[at..at + hd];
            let len = pos + t + 1;
            TASK.with_borrow_mut(|s| {
                let scores = at_least(&mut s.f, len);
                kc.scores(h / group, qh, scale, scores, vc);
                k::softmax(scores);
                vc.wsum(h / group, scores, out);
            });
        });
    }

    fn add_attention_output(&mut self, wo: &Matrix) {
        let (n, d, qd) = (self.n, self.hp.n_embd, self.hp.n_head * self.hp.head_dim());
        let s = &mut self.st.scratch;
        self.b.matmul(self.team, wo, &s.att[..n * qd], n, &mut s.packed, &mut s.proj[..n * d]);
        add_into(&mut s.x[..n * d], &s.proj[..n * d]);
    }

    fn gate_up(&mut self, p: &Projections) {
        let (n, ff) = (self.n, self.hp.n_ff);
        let s = &mut self.st.scratch;
        let outs = &mut [&mut s.gate[..n * ff], &mut s.up[..n * ff]];
        self.b.project(self.team, p, &s.xb[..n * self.hp.n_embd], n, &mut s.packed, &mut s.fused, outs);
    }

    fn swiglu(&mut self) {
        let (n, ff) = (self.n, self.hp.n_ff);
        let s = &mut self.st.scratch;
        // Pieces of at most SILU_PIECE values within a token's row (a multiple of every vector
        // width, so each value is computed as in one pass over the row): a batch's gate is
        // n x n_ff values, each with a scalar exp (one thread's pass was ~2% of a 7B prefill).
        let per_row = ff.div_ceil(SILU_PIECE);
        let (gate, up) = (SharedOut(s.gate[..n * ff].as_mut_ptr()), &s.up[..n * ff]);
        self.team.for_each(n * per_row, |p| {
            let (t, j) = (p / per_row, p % per_row);
            let r = t * ff + j * SILU_PIECE..t * ff + ((j + 1) * SILU_PIECE).min(ff);
            // SAFETY: piece `p` (claimed by one thread) alone writes `gate[r]`, within the
            // `n * ff` values checked above; `s.gate`'s `&mut` borrow outlives the region.
            let g = unsafe { std::slice::from_raw_parts_mut(gate.ptr().add(r.start), r.len()) };
            k::silu_mul(g, &up[r]);
        });
    }

    fn add_ffn_output(&mut self, w_down: &Matrix) {
        let (n, d, ff) = (self.n, self.hp.n_embd, self.hp.n_ff);
        let s = &mut self.st.scratch;
        self.b.matmul(self.team, w_down, &s.gate[..n * ff], n, &mut s.packed, &mut s.proj[..n * d]);
        add_into(&mut s.x[..n * d], &s.proj[..n * d]);
    }

    fn logits(&mut self, norm: &[f32], output: &Matrix, logits: &mut [f32]) {
        let (n, d) = (self.n, self.hp.n_embd);
        let s = &mut self.st.scratch;
        let normed = &mut s.normed[..d];
        k::rmsnorm(normed, &s.x[(n - 1) * d..n * d], norm, self.hp.norm_eps);
        self.b.matmul(self.team, output, normed, 1, &mut s.packed, logits);
    }

    fn keep_last(&mut self, keep: usize) -> bool {
        let (n, d, qd) = (self.n, self.hp.n_embd, self.hp.n_head * self.hp.head_dim());
        if keep == 1 {
            let s = &mut self.st.scratch;
            s.x.copy_within((n - 1) * d..n * d, 0);
            s.q.copy_within((n - 1) * qd..n * qd, 0);
        }
        self.n = keep.min(n);
        true
    }
}

/// `x` quantized for each quantized product of `ms` (once per activation format), in `space`
/// when it holds them all, else in `own`: the bytes and each product's range of them (`None`
/// for float weights, which read `x`).
fn quantize_inputs<'a>(
    ms: &[Matrix],
    x: &[f32],
    space: &'a mut [f32],
    own: &'a mut Vec<u8>,
) -> (&'a [u8], [Option<std::ops::Range<usize>>; MAX_MATVECS]) {
    let mut at: [Option<std::ops::Range<usize>>; MAX_MATVECS] = Default::default();
    // Whether product `i` quantizes into its range (the first product of each format).
    let mut first = [false; MAX_MATVECS];
    let mut len = 0;
    for (i, m) in ms.iter().enumerate() {
        let wt = m.dtype();
        let Some(bytes) = k::act_bytes(wt, m.cols) else { continue };
        let same = (0..i).find(|&j| {
            at[j].is_some() && ms[j].cols == m.cols && ms[j].dtype().act_block_elems() == wt.act_block_elems()
        });
        at[i] = match same {
            Some(j) => at[j].clone(),
            None => {
                first[i] = true;
                len += bytes;
                Some(len - bytes..len)
            }
        };
    }
    // SAFETY: the same memory as `space`, 4 bytes per f32 (u8 has no alignment or validity
    // requirement; any bytes written are a valid f32); the `&mut` borrow is carried over.
    let space = unsafe { std::slice::from_raw_parts_mut(space.as_mut_ptr() as *mut u8, space.len() * 4) };
    let buf = if space.len() >= len {
        space
    } else {
        own.resize(len, 0);
        &mut own[..]
    };
    for (i, m) in ms.iter().enumerate() {
        if let (true, Some(r)) = (first[i], &at[i]) {
            k::quantize_acts(m.dtype(), &x[..m.cols], &mut buf[r.clone()]);
        }
    }
    (buf, at)
}

/// The first `len` values of a per-thread buffer, grown (never shrunk) to hold them.
fn at_least(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// `x += y` (the residual connection).
fn add_into(x: &mut [f32], y: &[f32]) {
    for (xi, yi) in x.iter_mut().zip(y) {
        *xi += yi;
    }
}
