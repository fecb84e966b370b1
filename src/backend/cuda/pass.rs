//! One batched pass on the GPU: [`LlamaOps`] enqueueing kernels on the session's stream.
//!
//! A single token (decode) runs the matrix-vector kernels, which fuse what surrounds each
//! product: the RMSNorm before q/k/v and gate/up is applied while the input is read (for
//! quantized weights: while it is quantized to 8 bits, by the kernel before the product), the
//! residual add is the product's epilogue, SwiGLU that of the gate/up product. A batch
//! (prefill) runs cuBLAS products over inputs narrowed to the weights' type, accumulating the
//! residual in place (beta = 1); quantized weights are first dequantized to f16, some rows at
//! a time, into the session's scratch, except in batches of at most `QGEMV_TOKENS` tokens,
//! which run the quantized products over the inputs quantized to 8 bits. Norm and SwiGLU are
//! therefore applied by the product that follows them: `norm` and `swiglu` only record that
//! they are due.

use super::driver::{Batched, BlasType, KernelArg};
use super::kernels::{
    attn_tiled_shared, GpuType, GpuWeight, PrefillAttention, GEMV_SPLITS, QGEMV_TOKENS, TILE_QUERIES, TILE_THREADS,
};
use super::state::{q8_scales_at, CudaState};
use super::upload::{DeviceLayer, DeviceMatrix};
use super::CudaBackend;
use crate::backend::llama::LlamaOps;
use crate::error::{Error, Result};
use crate::model::{Hparams, Matrix, Projections};
use runllama_kernels::RopeLayout;

/// Threads of the element-wise kernels' blocks.
const BLOCK: u32 = 256;
/// Threads of a matrix-vector block over float rows (`GEMV_THREADS` in kernels.cu; each warp
/// computes a row or a pair at a time).
const GEMV_BLOCK: u32 = 1024;
/// Threads of a block of a product over quantized rows (`QGEMV_THREADS` in quant.cu: a block
/// per row or pair).
pub(super) const QGEMV_BLOCK: u32 = 128;
/// Threads of a block that quantizes a product's input (`QUANTIZE_THREADS` in quant.cu: a warp
/// per 32 values).
pub(super) const QUANTIZE_BLOCK: u32 = 256;
/// Threads of a decode attention block (`ATT_THREADS` in kernels.cu).
const ATTN_BLOCK: u32 = 128;

/// The pass; the first error stops it (later operations do nothing) and is returned by
/// [`CudaPass::finish`].
pub(super) struct CudaPass<'a> {
    b: &'a CudaBackend,
    hp: &'a Hparams,
    st: &'a mut CudaState,
    /// Tokens in the batch (set by `embed`).
    n: usize,
    /// The norm weight the next product applies to the residual stream.
    norm: Option<u64>,
    /// Launch kernels to overlap the end of the one before (a decode step, after `embed`).
    overlap: bool,
    /// The attention output is head-major (`[n_head, n, head_dim]`, from `attention_gemm`).
    att_head_major: bool,
    err: Option<Error>,
}

/// Enqueue `f` with the given arguments (a macro so that each argument becomes a cell).
macro_rules! launch {
    ($pass:expr, $f:expr, $grid:expr, $block:expr, $shared:expr; $($arg:expr),* $(,)?) => {{
        let mut cells = [$(KernelArg::cell($arg)),*];
        let (f, grid, block, shared, overlap) = ($f, $grid, $block, $shared, $pass.overlap);
        // SAFETY: the cells follow the kernel's parameter list in `kernels.cu`; every address is
        // a live allocation of this backend or session sized for the pass (UBATCH tokens); an
        // overlapping launch is safe as every kernel waits for the one before (`pdl_wait`).
        $pass.run(|st| unsafe { f.launch(&st.stream, grid, block, shared, overlap, &mut cells) })
    }};
}

impl<'a> CudaPass<'a> {
    pub(super) fn new(b: &'a CudaBackend, hp: &'a Hparams, st: &'a mut CudaState) -> Self {
        CudaPass { b, hp, st, n: 0, norm: None, overlap: false, att_head_major: false, err: None }
    }

    /// The first error of the pass, if any.
    pub(super) fn finish(self) -> Result<()> {
        self.err.map_or(Ok(()), Err)
    }

    /// Run `f` unless an earlier step failed; keep its error.
    fn run(&mut self, f: impl FnOnce(&mut CudaState) -> Result<()>) {
        if self.err.is_none() {
            if let Err(e) = f(self.st) {
                self.err = Some(e);
            }
        }
    }

    /// Keep `e` as the pass's error unless it already has one.
    fn keep(&mut self, e: Error) {
        self.err.get_or_insert(e);
    }

    /// Stop the pass with an internal error (a weight the upload did not place).
    fn fail(&mut self, msg: &str) {
        self.keep(Error::internal(msg.to_string()));
    }

    /// The device layer of a host value (matrix, projections) of `Weights::layers`.
    fn layer<T>(&self, host: *const T) -> Option<&'a DeviceLayer> {
        self.b.dev.layer_at(host as usize)
    }

    /// `out = W · x` (`kind`: store, add, or SwiGLU over row pairs) for one token, normalising
    /// `x` first by the pending norm when `normed`. Quantized rows: `reuse_input` when the
    /// product before (another part of q/k/v) left this very input quantized in `act.q8`.
    fn gemv(&mut self, m: &DeviceMatrix, kind: Gemv, x: u64, normed: bool, out: u64, reuse_input: bool) {
        let k = match self.b.kernels.products(m.ty) {
            Ok(k) => k,
            Err(e) => return self.keep(e),
        };
        let f = match kind {
            Gemv::Store => k.gemv,
            Gemv::Add => k.gemv_add,
            Gemv::SwiGlu => k.gemv_swiglu,
        };
        let norm = if normed { self.norm.take().unwrap_or(0) } else { 0 };
        let eps = self.hp.norm_eps;
        let units = if kind == Gemv::SwiGlu { m.rows / 2 } else { m.rows };
        let (rows, cols) = (m.rows as i32, m.cols as i32);
        if let GpuWeight::Quant(_) = m.ty {
            // The input quantized once, then a block per row (or pair).
            let (qa, ds) = (self.st.act.q8.ptr(), self.st.act.q8.at(q8_scales_at(m.cols)));
            if !reuse_input {
                let q = self.b.kernels.quantize_input;
                launch!(self, q, quantize_grid(m.cols, 1), QUANTIZE_BLOCK, 0; x, norm, eps, cols, qa, ds);
            }
            launch!(self, f, units as u32, QGEMV_BLOCK, 0; m.buf.ptr(), rows, cols, qa, ds, out, 1i32, 0i32);
            return;
        }
        // The float products hold the f32 input in shared memory.
        let shared = m.cols as u32 * 4;
        let resident = match f.blocks_per_sm(GEMV_BLOCK, shared) {
            Ok(b) => b * self.b.kernels.n_sm,
            Err(e) => return self.keep(e),
        };
        let (grid, k) = gemv_shape(units, resident, self.b.kernels.gemv_split);
        launch!(self, f, grid as u32, GEMV_BLOCK, shared; m.buf.ptr(), rows, cols, x, norm, eps, out, m.vec_rows() as i32, k as i32);
    }

    /// `out[n, rows] = in · Wᵀ + beta · out` (beta 0 or 1) with cuBLAS (`ldc` values from one
    /// token's outputs to the next), `input` already in the weights' compute type. Quantized
    /// rows: for at most [`QGEMV_TOKENS`] tokens, the quantized products over the inputs
    /// quantized to 8 bits; for more, dequantized to f16 into the session's scratch, as many
    /// rows at a time as it holds, for cuBLAS (measured on an H100, 7B Q4_K_M: 8 tokens 715
    /// tok/s against 446 dequantized, 16 tokens 781 against 882).
    fn gemm(&mut self, m: &DeviceMatrix, input: u64, out: u64, ldc: usize, beta: f32) {
        let n = self.n;
        let GpuWeight::Quant(_) = m.ty else {
            let t = m.ty.compute().blas();
            return self.run(|st| st.blas.gemm(t, m.buf.ptr(), m.rows, m.cols, input, n, out, ldc, beta));
        };
        let qk = match self.b.kernels.products(m.ty).map(|p| p.quant) {
            Ok(Some(q)) => q,
            Ok(None) => return self.fail("no kernels for quantized rows"),
            Err(e) => return self.keep(e),
        };
        if n <= QGEMV_TOKENS {
            let (qa, cols) = (self.st.act.q8.ptr(), m.cols);
            let ds = qa + q8_scales_at(n * cols) as u64;
            let quantize = self.b.kernels.quantize_input_f16;
            launch!(self, quantize, quantize_grid(cols, n), QUANTIZE_BLOCK, 0; input, cols as i32, qa, ds);
            let f = if beta == 0.0 { qk.batch } else { qk.batch_add };
            launch!(self, f, m.rows as u32, QGEMV_BLOCK, 0;
                m.buf.ptr(), m.rows as i32, cols as i32, qa, ds, out, n as i32, ldc as i32);
            return;
        }
        let f = qk.to_f16;
        let Some(scratch) = &self.st.dequant else { return self.fail("no dequantization scratch") };
        let (s, chunk) = (scratch.ptr(), (scratch.bytes() / (m.cols * 2)).clamp(1, m.rows));
        let rb = m.row_bytes;
        for r0 in (0..m.rows).step_by(chunk) {
            let rows = chunk.min(m.rows - r0);
            let w = m.buf.ptr() + (r0 * rb) as u64;
            launch!(self, f, grid_for(rows * m.cols / 32), BLOCK, 0; w, rows as i32, m.cols as i32, s);
            let c = out + (r0 * 4) as u64;
            self.run(|st| st.blas.gemm(BlasType::F16, s, rows, m.cols, input, n, c, ldc, beta));
        }
    }

    /// `xb = rmsnorm(x) ⊙ pending norm`, in `ty`, for every token.
    fn norm_into_xb(&mut self, ty: GpuType) {
        let Some(norm) = self.norm.take() else { return self.fail("a product needs a norm first") };
        let f = self.b.kernels.typed(ty).rmsnorm;
        let (x, xb, d, eps) = (self.st.act.x.ptr(), self.st.act.xb.ptr(), self.hp.n_embd as i32, self.hp.norm_eps);
        launch!(self, f, self.n as u32, BLOCK, 0; x, norm, d, eps, xb);
    }

    /// `xb = src` narrowed to `ty` (`len` values).
    fn convert_into_xb(&mut self, ty: GpuType, src: u64, len: usize) {
        let f = self.b.kernels.typed(ty).convert;
        let xb = self.st.act.xb.ptr();
        launch!(self, f, grid_for(len), BLOCK, 0; src, len as i32, xb);
    }

    /// Causal attention of the batch (tokens at `pos`..) as cuBLAS products, KV heads in rounds
    /// that fit the session's scratch: per KV head, S = K Qᵀ over its query heads' rows (f32),
    /// the causal softmax of each row, O = V P into `att`, head-major.
    fn attention_gemm(&mut self, layer: usize, pos: usize, scale: f32) {
        let (hp, n) = (self.hp, self.n);
        let Some(sc) = &self.st.attn else { return self.fail("no attention scratch") };
        let (q, s, heads) = (sc.q.ptr(), sc.s.ptr(), sc.heads);
        let p = sc.p.as_ref().map_or(s, |p| p.ptr());
        let (hd, n_kv, kvt) = (hp.head_dim(), hp.n_head_kv, self.st.kv_type);
        let (len, rows, es, n_ctx) = (pos + n, hp.n_head / n_kv * n, kvt.size() as u64, self.st.n_ctx);
        let (qkv, att) = (self.st.act.qkv.ptr(), self.st.act.att.ptr());
        let (kc, vc) = self.st.layer_kv(layer, hp.kv_dim());
        let f = self.b.kernels.q_pack(kvt);
        launch!(self, f, grid_for(n * hp.n_head * hd), BLOCK, 0;
            qkv, n as i32, hp.n_head as i32, n_kv as i32, hd as i32, scale, q);
        let softmax = self.b.kernels.softmax_causal(kvt);
        let head_bytes = (n_ctx * hd) as u64 * es;
        for k0 in (0..n_kv).step_by(heads) {
            let batch = heads.min(n_kv - k0);
            let scores = Batched {
                ty: kvt.blas(),
                trans_a: true,
                m: len,
                n: rows,
                k: hd,
                a: kc + k0 as u64 * head_bytes,
                lda: hd,
                stride_a: n_ctx * hd,
                b: q + (k0 * rows * hd) as u64 * es,
                ldb: hd,
                stride_b: rows * hd,
                c: s,
                ldc: len,
                stride_c: rows * len,
                batch,
            };
            self.run(|st| st.blas.gemm_batched(&scores));
            launch!(self, softmax, (batch * rows) as u32, BLOCK, 0; s, len as i32, n as i32, pos as i32, p);
            let out = Batched {
                ty: kvt.blas(),
                trans_a: false,
                m: hd,
                n: rows,
                k: len,
                a: vc + k0 as u64 * head_bytes,
                lda: hd,
                stride_a: n_ctx * hd,
                b: p,
                ldb: len,
                stride_b: rows * len,
                c: att + (k0 * rows * hd * 4) as u64,
                ldc: hd,
                stride_c: rows * hd,
                batch,
            };
            self.run(|st| st.blas.gemm_batched(&out));
        }
        self.att_head_major = true;
    }

    /// q/k/v or gate/up over the normalised residual stream: the products of `parts` (rows
    /// stacked in this order) into `out`.
    fn project(&mut self, parts: &[DeviceMatrix], kind: Gemv, out: u64) {
        let norm = self.norm.take();
        let total: usize = parts.iter().map(|m| m.rows).sum();
        let (x, xb) = (self.st.act.x.ptr(), self.st.act.xb.ptr());
        let (mut row, mut xb_type, mut quantized) = (0, None, false);
        for m in parts {
            let at = out + (row * 4) as u64;
            if self.n == 1 {
                // The parts share their input: quantized (for quantized rows) once.
                self.norm = norm;
                self.gemv(m, kind, x, true, at, quantized);
                quantized |= matches!(m.ty, GpuWeight::Quant(_));
            } else {
                let t = m.ty.compute();
                if xb_type != Some(t) {
                    self.norm = norm;
                    self.norm_into_xb(t);
                    xb_type = Some(t);
                }
                self.gemm(m, xb, at, total, 0.0);
            }
            row += m.rows;
        }
    }
}

/// What a matrix-vector product does with its result.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gemv {
    Store,
    Add,
    SwiGlu,
}

/// Blocks and warps per row of a matrix-vector product over `units` rows (or row pairs) on a
/// GPU that holds `resident` blocks at once: a persistent grid, no larger than the work, with
/// the split that leaves the fewest warps idle in the last round (the smaller split on a tie);
/// `force` (`RUNLLAMA_CUDA_GEMV_SPLIT`) imposes one. E.g. 4096 rows over 264 blocks of 32
/// warps: whole rows keep 48 % of the warps busy, rows split in 4 97 %.
fn gemv_shape(units: usize, resident: usize, force: Option<usize>) -> (usize, usize) {
    let warps = GEMV_BLOCK as usize / 32;
    let shape = |k: usize| {
        let groups = warps / k;
        let grid = units.div_ceil(groups).clamp(1, resident);
        let rounds = units.div_ceil(grid * groups);
        let busy = units as f64 / (rounds * grid * groups) as f64;
        (grid, k, busy)
    };
    let best = match force {
        Some(k) => shape(k),
        None => GEMV_SPLITS.iter().map(|&k| shape(k)).fold(shape(1), |a, b| if b.2 > a.2 + 0.01 { b } else { a }),
    };
    (best.0, best.1)
}

/// Blocks of `quantize_input` for `n` tokens of `cols` values: per token, a warp per 32.
pub(super) fn quantize_grid(cols: usize, n: usize) -> u32 {
    (n * (cols / 32).div_ceil(QUANTIZE_BLOCK as usize / 32)) as u32
}

/// Blocks for an element-wise kernel over `len` values (grid-stride loops beyond).
fn grid_for(len: usize) -> u32 {
    len.div_ceil(BLOCK as usize).clamp(1, 65_535) as u32
}

impl LlamaOps for CudaPass<'_> {
    fn embed(&mut self, tokens: &[u32]) {
        self.n = tokens.len();
        let b = self.b;
        let m = &b.dev.tok_embd;
        let f = match b.kernels.products(m.ty) {
            Ok(p) => p.embed,
            Err(e) => return self.keep(e),
        };
        let (table, io, x) = (m.buf.ptr(), self.st.act.io.at(4), self.st.act.x.ptr());
        launch!(self, f, self.n as u32, BLOCK, 0; table, io, m.cols as i32, x);
        self.overlap = self.n == 1 && b.kernels.pdl;
    }

    fn norm(&mut self, weight: &[f32]) {
        self.norm = self.b.dev.norm_at(weight.as_ptr() as usize);
        if self.norm.is_none() {
            self.fail("norm weights not on the GPU");
        }
    }

    fn qkv(&mut self, p: &Projections) {
        let Some(l) = self.layer(p) else { return self.fail("q/k/v weights not on the GPU") };
        let out = self.st.act.qkv.ptr();
        self.project(&l.qkv, Gemv::Store, out);
    }

    fn rope(&mut self, _pos: usize) {
        // Applied with the cache write (`store_kv`), which reads the position from the GPU.
    }

    fn store_kv(&mut self, layer: usize, _pos: usize) {
        let hp = self.hp;
        let f = self.b.kernels.rope_store(self.st.kv_type);
        let (kc, vc) = self.st.layer_kv(layer, hp.kv_dim());
        let halves = (hp.rope_layout == RopeLayout::Halves) as i32;
        let (qkv, pos, inv) = (self.st.act.qkv.ptr(), self.st.act.io.ptr(), self.st.inv_freq.ptr());
        let items = (hp.n_head + hp.n_head_kv) * hp.head_dim() / 2 + hp.kv_dim();
        let grid = (self.n * items.div_ceil(BLOCK as usize)) as u32;
        launch!(self, f, grid, BLOCK, 0;
            qkv, pos, inv, hp.n_head as i32, hp.n_head_kv as i32, hp.head_dim() as i32, halves,
            self.st.n_ctx as i32, kc, vc);
    }

    fn attention(&mut self, layer: usize, pos: usize) {
        let hp = self.hp;
        let hd = hp.head_dim();
        let scale = 1.0 / (hd as f32).sqrt();
        self.att_head_major = false;
        if self.n > 1 {
            if self.b.kernels.prefill_attention == PrefillAttention::Gemm && self.st.attn.is_some() {
                return self.attention_gemm(layer, pos, scale);
            }
            if let Some(f) = self.b.kernels.attention_tiled(self.st.kv_type, hd) {
                let (kc, vc) = self.st.layer_kv(layer, hp.kv_dim());
                let grid = (hp.n_head * self.n.div_ceil(TILE_QUERIES)) as u32;
                let a = &self.st.act;
                let (qkv, pos, att) = (a.qkv.ptr(), a.io.ptr(), a.att.ptr());
                launch!(self, f, grid, TILE_THREADS, attn_tiled_shared(hd) as u32;
                    qkv, kc, vc, self.n as i32, pos, hp.n_head as i32, hp.n_head_kv as i32, hd as i32,
                    self.st.n_ctx as i32, scale, att);
                return;
            }
        }
        let f = self.b.kernels.attention(self.st.kv_type);
        let (kc, vc) = self.st.layer_kv(layer, hp.kv_dim());
        let splits = if self.n == 1 { self.st.splits } else { 1 };
        let grid = (self.n * hp.n_head * splits) as u32;
        let a = &self.st.act;
        let (qkv, pos, att, part) = (a.qkv.ptr(), a.io.ptr(), a.att.ptr(), a.part.ptr());
        let tickets = a.tickets.ptr();
        launch!(self, f, grid, ATTN_BLOCK, 0;
            qkv, kc, vc, self.n as i32, pos, hp.n_head as i32, hp.n_head_kv as i32, hd as i32,
            self.st.n_ctx as i32, splits as i32, scale, att, part, tickets);
        // The last split of each head to finish merges the head's splits into `att`.
    }

    fn add_attention_output(&mut self, wo: &Matrix) {
        let Some(l) = self.layer(wo) else { return self.fail("attention output weights not on the GPU") };
        let (att, x) = (self.st.act.att.ptr(), self.st.act.x.ptr());
        if self.n == 1 {
            self.gemv(&l.wo, Gemv::Add, att, false, x, false);
        } else {
            let t = l.wo.ty.compute();
            if self.att_head_major {
                let f = self.b.kernels.typed(t).attn_out;
                let (n, hd, xb) = (self.n, self.hp.head_dim(), self.st.act.xb.ptr());
                launch!(self, f, grid_for(n * l.wo.cols), BLOCK, 0; att, n as i32, self.hp.n_head as i32, hd as i32, xb);
            } else {
                self.convert_into_xb(t, att, self.n * l.wo.cols);
            }
            let xb = self.st.act.xb.ptr();
            self.gemm(&l.wo, xb, x, l.wo.rows, 1.0);
        }
    }

    fn gate_up(&mut self, p: &Projections) {
        let Some(l) = self.layer(p) else { return self.fail("gate/up weights not on the GPU") };
        if self.n == 1 {
            // SwiGLU in the product's epilogue, into `hidden`.
            let out = self.st.act.hidden.ptr();
            self.project(std::slice::from_ref(&l.gate_up), Gemv::SwiGlu, out);
        } else {
            let out = self.st.act.gate_up.ptr();
            self.project(std::slice::from_ref(&l.gate_up), Gemv::Store, out);
        }
    }

    fn swiglu(&mut self) {
        // Decode: done by the gate/up product; prefill: by `add_ffn_output`, narrowing to the
        // down projection's type.
    }

    fn add_ffn_output(&mut self, w_down: &Matrix) {
        let Some(l) = self.layer(w_down) else { return self.fail("down projection weights not on the GPU") };
        let x = self.st.act.x.ptr();
        if self.n == 1 {
            let h = self.st.act.hidden.ptr();
            self.gemv(&l.down, Gemv::Add, h, false, x, false);
        } else {
            let f = self.b.kernels.typed(l.down.ty.compute()).swiglu;
            let (gu, xb, ff) = (self.st.act.gate_up.ptr(), self.st.act.xb.ptr(), self.hp.n_ff);
            launch!(self, f, grid_for(self.n * ff), BLOCK, 0; gu, self.n as i32, ff as i32, xb);
            self.gemm(&l.down, xb, x, l.down.rows, 1.0);
        }
    }

    fn logits(&mut self, _norm: &[f32], _output: &Matrix, _logits: &mut [f32]) {
        // Into the session's device logits; the backend copies them to the host after the pass.
        self.norm = Some(self.b.dev.output_norm.ptr());
        let last = self.st.act.x.at((self.n - 1) * self.hp.n_embd * 4);
        let out = self.st.act.logits.ptr();
        let b = self.b;
        self.gemv(&b.dev.output, Gemv::Store, last, true, out, false);
    }

    fn keep_last(&mut self, _keep: usize) -> bool {
        // Not narrowed here: the batch's buffers and fused kernels keep their layout (not yet
        // measured or tested on a GPU).
        false
    }
}
