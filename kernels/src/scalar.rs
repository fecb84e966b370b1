//! The scalar reference kernels: plain Rust, no intrinsics, the behaviour every SIMD path is
//! tested against. Length checks are done by the dispatcher in `lib.rs` before these run (they
//! are repeated here only through slice indexing).

use half::f16;

use crate::math::{libm_cos, libm_exp, libm_round, libm_sin, libm_sqrt};
use crate::{load, panel_stride, RopeLayout, WeightType, PANEL};

pub(crate) fn row_to_f32(wt: WeightType, row: &[u8], out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = load(wt, row, i);
    }
}

/// Accumulates in 8 independent f32 lanes, then sums the lanes pairwise.
pub(crate) fn dot_row(wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n8 = x.len() / 8 * 8;
    let mut i = 0;
    while i < n8 {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += load(wt, row, i + l) * x[i + l];
        }
        i += 8;
    }
    let mut tail = 0f32;
    while i < x.len() {
        tail += load(wt, row, i) * x[i];
        i += 1;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

pub(crate) fn matvec(wt: WeightType, w: &[u8], x: &[f32], out: &mut [f32]) {
    let row_bytes = x.len() * wt.size();
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot_row(wt, &w[r * row_bytes..(r + 1) * row_bytes], x);
    }
}

/// One chain per output over the columns in order (as the SIMD paths, without FMA).
pub(crate) fn matmul_packed(wt: WeightType, w: &[u8], rows: usize, cols: usize, xp: &[f32], n: usize, out: &mut [f32]) {
    let row_bytes = cols * wt.size();
    for r in 0..rows {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        for t in 0..n {
            let panel = &xp[(t / PANEL) * panel_stride(cols)..];
            let mut acc = 0f32;
            for k in 0..cols {
                acc += load(wt, row, k) * panel[k * PANEL + t % PANEL];
            }
            out[t * rows + r] = acc;
        }
    }
}

pub(crate) fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let mut ss = 0f32;
    for v in x {
        ss += v * v;
    }
    let scale = 1.0 / libm_sqrt(ss / x.len() as f32 + eps);
    for i in 0..x.len() {
        out[i] = x[i] * scale * weight[i];
    }
}

/// The angle of pair `i` does not depend on the head: each (sin, cos) is computed once and
/// applied to every head (same values as computing it per head, `heads` times fewer calls).
pub(crate) fn rope(x: &mut [f32], head_dim: usize, pos: usize, inv_freq: &[f32], layout: RopeLayout) {
    let half = head_dim / 2;
    for (i, &f) in inv_freq.iter().enumerate().take(half) {
        let angle = pos as f32 * f;
        let (s, c) = (libm_sin(angle), libm_cos(angle));
        let (a, b) = match layout {
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
            RopeLayout::Halves => (i, i + half),
        };
        for head in x.chunks_exact_mut(head_dim) {
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

pub(crate) fn softmax(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = libm_exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

pub(crate) fn exp_all(x: &mut [f32]) {
    for v in x {
        *v = libm_exp(*v);
    }
}

pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + libm_exp(-*g)) * u;
    }
}

pub(crate) fn axpy(acc: &mut [f32], w: f32, v: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += w * b;
    }
}

pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n8 = a.len().min(b.len()) / 8 * 8;
    let mut i = 0;
    while i < n8 {
        for l in 0..8 {
            acc[l] += a[i + l] * b[i + l];
        }
        i += 8;
    }
    let mut tail = 0f32;
    while i < a.len().min(b.len()) {
        tail += a[i] * b[i];
        i += 1;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Per block: scale `d = max|x| / 127` rounded to f16 (at most f16::MAX), `q = round(x / d)`.
pub(crate) fn quantize_q8(x: &[f32], block: usize, qs: &mut [i8], scales: &mut [f16]) {
    for ((xb, qb), s) in x.chunks(block).zip(qs.chunks_mut(block)).zip(scales.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32((amax / 127.0).min(f16::MAX.to_f32()));
        *s = d;
        let d = d.to_f32();
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in qb.iter_mut().zip(xb) {
            // `as` saturates (NaN gives 0); the clamp keeps -128 out.
            *q = libm_round(v * id).clamp(-127.0, 127.0) as i8;
        }
    }
}

/// `out[j] = scale * dot_row(row j, q)` for rows `stride` elements apart (`next`, a prefetch
/// hint, unused here).
pub(crate) fn attn_scores(
    wt: WeightType,
    k: &[u8],
    stride: usize,
    q: &[f32],
    scale: f32,
    out: &mut [f32],
    next: &[u8],
) {
    let _ = next;
    let (sz, hd) = (wt.size(), q.len());
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot_row(wt, &k[j * stride * sz..(j * stride + hd) * sz], q) * scale;
    }
}

/// `out = sum_j p[j] * row j` (rows `stride` elements apart), one row after another.
pub(crate) fn attn_wsum(wt: WeightType, v: &[u8], stride: usize, p: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (j, &w) in p.iter().enumerate() {
        for (i, o) in out.iter_mut().enumerate() {
            *o += w * load(wt, v, j * stride + i);
        }
    }
}

/// Per block, `sum q[i] * x[i]` in order, times the block's scale; blocks summed in order.
fn dot_q8(qs: &[i8], scales: &[f16], block: usize, x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for ((qb, xb), d) in qs.chunks(block).zip(x.chunks(block)).zip(scales) {
        let mut p = 0f32;
        for (&q, &v) in qb.iter().zip(xb) {
            p += q as f32 * v;
        }
        acc += d.to_f32() * p;
    }
    acc
}

/// `out[j] = scale * dot(q, row j)` over an 8-bit cache: rows of values `stride` apart, their
/// scales `stride / block` apart.
pub(crate) fn attn_scores_q8(
    qs: &[i8],
    scales: &[f16],
    block: usize,
    stride: usize,
    q: &[f32],
    scale: f32,
    out: &mut [f32],
) {
    let hd = q.len();
    for (j, o) in out.iter_mut().enumerate() {
        let s0 = j * stride / block;
        *o = dot_q8(&qs[j * stride..j * stride + hd], &scales[s0..s0 + hd.div_ceil(block)], block, q) * scale;
    }
}

/// llama.cpp's `q4_0` rounding per block: `m` the value of largest magnitude, `d = m / -8`
/// (stored rounded to f16), `q = min(15, trunc(x / d + 8.5))`; byte `i` of a block holds `q[i]`
/// in its low nibble and `q[i + block / 2]` in its high one.
pub(crate) fn quantize_q4(x: &[f32], block: usize, qs: &mut [u8], scales: &mut [f16]) {
    let half = block / 2;
    for ((xb, qb), s) in x.chunks(block).zip(qs.chunks_mut(half)).zip(scales.iter_mut()) {
        let m = xb.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = m / -8.0;
        *s = f16::from_f32(d.clamp(-f16::MAX.to_f32(), f16::MAX.to_f32()));
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // `as` truncates toward zero (and maps NaN to 0), as llama.cpp's `(int8_t)` cast.
        let q = |i: usize| xb.get(i).map_or(8, |&v| ((v * id + 8.5) as i32).clamp(0, 15) as u8);
        for (i, b) in qb.iter_mut().enumerate() {
            *b = q(i) | q(i + half) << 4;
        }
    }
}

/// The values of a 4-bit row as signed 8-bit ones (`q - 8`, in -8..=7): `out[i]` from nibble
/// `i` of blocks of `block` (layout as [`quantize_q4`]).
pub(crate) fn unpack_q4(qs: &[u8], block: usize, out: &mut [i8]) {
    let half = block / 2;
    for (qb, ob) in qs.chunks(half).zip(out.chunks_mut(block)) {
        let (lo, hi) = ob.split_at_mut(half);
        for ((b, l), h) in qb.iter().zip(lo).zip(hi) {
            *l = (b & 15) as i8 - 8;
            *h = (b >> 4) as i8 - 8;
        }
    }
}

/// `out = sum_j p[j] * row j` over an 8-bit cache: `out[i] += (p[j] * d) * q[i]` row by row
/// (onto `out` as it is when `acc`, else from zero).
pub(crate) fn attn_wsum_q8(
    qs: &[i8],
    scales: &[f16],
    block: usize,
    stride: usize,
    p: &[f32],
    out: &mut [f32],
    acc: bool,
) {
    if !acc {
        out.fill(0.0);
    }
    for (j, &w) in p.iter().enumerate() {
        let (row, s0) = (&qs[j * stride..], j * stride / block);
        for (b, ob) in out.chunks_mut(block).enumerate() {
            let s = w * scales[s0 + b].to_f32();
            for (i, o) in ob.iter_mut().enumerate() {
                *o += s * row[b * block + i] as f32;
            }
        }
    }
}
