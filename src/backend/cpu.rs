//! The CPU forward pass: llama2.c's `forward()` read top to bottom, batched over the tokens of
//! a step, with every matrix product split over output rows on the model's thread pool.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use runllama_kernels as k;

use super::{Backend, Batch, SessionState};
use crate::error::{Error, Result, Status};
use crate::model::{Hparams, Matrix, Projections, Weights};

/// Rows per parallel task in a matrix product.
const ROW_BLOCK: usize = 64;

/// The CPU backend: a rayon pool of `n_threads`.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    n_threads: usize,
}

impl CpuBackend {
    /// A backend computing with `n_threads` threads.
    pub fn new(n_threads: usize) -> Result<CpuBackend> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .thread_name(|i| format!("runllama-{i}"))
            .build()
            .map_err(|e| Error::internal(format!("cannot start {n_threads} worker threads: {e}")))?;
        Ok(CpuBackend { pool, n_threads })
    }
}

/// KV cache of one session: per layer, `n_ctx` rows of `kv_dim` floats for K and for V.
struct CpuState {
    n_ctx: usize,
    kv_dim: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl SessionState for CpuState {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
}

fn zeroed(n: usize) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::new(Status::OutOfMemory, format!("cannot allocate {} MiB for the KV cache", (n * 4) >> 20))
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn n_threads(&self) -> usize {
        self.n_threads
    }

    fn new_state(&self, hp: &Hparams, n_ctx: usize) -> Result<Box<dyn SessionState>> {
        let kv_dim = hp.kv_dim();
        let per_layer =
            n_ctx.checked_mul(kv_dim).ok_or_else(|| Error::invalid(format!("n_ctx {n_ctx} is too large")))?;
        let mut k = Vec::with_capacity(hp.n_layer);
        let mut v = Vec::with_capacity(hp.n_layer);
        for _ in 0..hp.n_layer {
            k.push(zeroed(per_layer)?);
            v.push(zeroed(per_layer)?);
        }
        Ok(Box::new(CpuState { n_ctx, kv_dim, k, v }))
    }

    fn forward(
        &self,
        hp: &Hparams,
        w: &Weights,
        state: &mut dyn SessionState,
        batch: Batch<'_>,
        logits: &mut [f32],
        cancel: &AtomicBool,
    ) -> Result<()> {
        let (tokens, pos) = (batch.tokens, batch.pos);
        let st = state
            .as_any_mut()
            .downcast_mut::<CpuState>()
            .ok_or_else(|| Error::internal("session state does not belong to the CPU backend"))?;
        self.pool.install(|| forward(hp, w, st, tokens, pos, logits, cancel))
    }
}

/// `out[t, r] = dot(m[r, :], x[t, :])` for the `n` rows of `x`, rows split over the pool.
fn matmul(w: &Weights, m: &Matrix, x: &[f32], n: usize, out: &mut [f32]) {
    let wt = m.dtype().kernel();
    let (rows, cols) = (m.rows, m.cols);
    if n == 1 {
        out[..rows].par_chunks_mut(ROW_BLOCK).enumerate().for_each(|(b, o)| {
            let r0 = b * ROW_BLOCK;
            k::matvec(wt, &m.rows(w, r0, r0 + o.len()), &x[..cols], o);
        });
        return;
    }
    let blocks: Vec<(usize, Vec<f32>)> = (0..rows.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .map(|b| {
            let r0 = b * ROW_BLOCK;
            let nr = ROW_BLOCK.min(rows - r0);
            let mut o = vec![0f32; nr * n];
            k::matmul(wt, &m.rows(w, r0, r0 + nr), nr, cols, x, n, &mut o);
            (r0, o)
        })
        .collect();
    for (r0, o) in blocks {
        let nr = o.len() / n;
        for t in 0..n {
            out[t * rows + r0..t * rows + r0 + nr].copy_from_slice(&o[t * nr..(t + 1) * nr]);
        }
    }
}

/// Apply projections to `x` (`n` rows): each output `outs[i]` is `[n, rows_i]`.
fn project(w: &Weights, p: &Projections, x: &[f32], n: usize, outs: &mut [&mut [f32]]) {
    match p {
        Projections::Separate(ms) => {
            for (m, o) in ms.iter().zip(outs.iter_mut()) {
                matmul(w, m, x, n, o);
            }
        }
        Projections::Fused { w: m, order } => {
            let widths: Vec<usize> = outs.iter().map(|o| o.len() / n).collect();
            let total: usize = widths.iter().sum();
            let mut fused = vec![0f32; n * m.rows];
            matmul(w, m, x, n, &mut fused);
            for t in 0..n {
                for (r, &dst) in order.iter().enumerate() {
                    let (mut i, mut d) = (0, dst as usize);
                    while d >= widths[i] {
                        d -= widths[i];
                        i += 1;
                    }
                    outs[i][t * widths[i] + d] = fused[t * total + r];
                }
            }
        }
    }
}

fn check_cancel(cancel: &AtomicBool) -> Result<()> {
    if cancel.swap(false, Ordering::AcqRel) {
        return Err(Error::new(Status::Cancelled, "llama_step was aborted by llama_session_abort"));
    }
    Ok(())
}

/// The forward pass over `tokens` at `pos..`: see [`Backend::forward`].
fn forward(
    hp: &Hparams,
    w: &Weights,
    st: &mut CpuState,
    tokens: &[u32],
    pos: usize,
    logits: &mut [f32],
    cancel: &AtomicBool,
) -> Result<()> {
    let n = tokens.len();
    let (d, hd, kvd, ff) = (hp.n_embd, hp.head_dim(), hp.kv_dim(), hp.n_ff);
    let qd = hp.n_head * hd;
    let group = hp.n_head / hp.n_head_kv;
    let inv_freq: Vec<f32> = (0..hd / 2).map(|i| 1.0 / hp.rope_theta.powf((2 * i) as f32 / hd as f32)).collect();
    let scale = 1.0 / (hd as f32).sqrt();

    // x[t] = embedding row of tokens[t]
    let mut x = vec![0f32; n * d];
    for (t, &tok) in tokens.iter().enumerate() {
        let r = tok as usize;
        k::row_to_f32(w.tok_embd.dtype().kernel(), &w.tok_embd.rows(w, r, r + 1), &mut x[t * d..(t + 1) * d]);
    }
    let mut xb = vec![0f32; n * d];
    let mut q = vec![0f32; n * qd];
    let mut kk = vec![0f32; n * kvd];
    let mut vv = vec![0f32; n * kvd];
    let mut att = vec![0f32; n * qd];
    let mut proj = vec![0f32; n * d];
    let mut gate = vec![0f32; n * ff];
    let mut up = vec![0f32; n * ff];

    for (l, layer) in w.layers.iter().enumerate() {
        check_cancel(cancel)?;
        for t in 0..n {
            k::rmsnorm(&mut xb[t * d..(t + 1) * d], &x[t * d..(t + 1) * d], &layer.attn_norm, hp.norm_eps);
        }
        project(w, &layer.qkv, &xb, n, &mut [&mut q, &mut kk, &mut vv]);
        for t in 0..n {
            k::rope(&mut q[t * qd..(t + 1) * qd], hd, pos + t, &inv_freq, hp.rope_layout);
            k::rope(&mut kk[t * kvd..(t + 1) * kvd], hd, pos + t, &inv_freq, hp.rope_layout);
        }
        let (kc, vc) = (&mut st.k[l], &mut st.v[l]);
        kc[pos * st.kv_dim..(pos + n) * st.kv_dim].copy_from_slice(&kk);
        vc[pos * st.kv_dim..(pos + n) * st.kv_dim].copy_from_slice(&vv);
        let (kc, vc) = (&*kc, &*vc);

        // Causal attention: each (token, head) pair is one task writing its own output slice.
        att.par_chunks_mut(hd).enumerate().for_each(|(i, out)| {
            let (t, h) = (i / hp.n_head, i % hp.n_head);
            let qh = &q[t * qd + h * hd..t * qd + (h + 1) * hd];
            let kvh = h / group;
            let len = pos + t + 1;
            let mut scores: Vec<f32> =
                (0..len).map(|j| k::dot_f32(qh, &kc[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd]) * scale).collect();
            k::softmax(&mut scores);
            out.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                k::axpy(out, p, &vc[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd]);
            }
        });
        matmul(w, &layer.wo, &att, n, &mut proj);
        for (xi, pi) in x.iter_mut().zip(&proj) {
            *xi += pi;
        }

        for t in 0..n {
            k::rmsnorm(&mut xb[t * d..(t + 1) * d], &x[t * d..(t + 1) * d], &layer.ffn_norm, hp.norm_eps);
        }
        project(w, &layer.gate_up, &xb, n, &mut [&mut gate, &mut up]);
        k::silu_mul(&mut gate, &up);
        matmul(w, &layer.w_down, &gate, n, &mut proj);
        for (xi, pi) in x.iter_mut().zip(&proj) {
            *xi += pi;
        }
    }
    check_cancel(cancel)?;

    let last = &x[(n - 1) * d..n * d];
    let mut normed = vec![0f32; d];
    k::rmsnorm(&mut normed, last, &w.output_norm, hp.norm_eps);
    matmul(w, &w.output, &normed, 1, logits);
    Ok(())
}
