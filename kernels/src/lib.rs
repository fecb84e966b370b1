//! Numeric kernels for runllama, `#![no_std]`: dot products of stored weight rows (f32, f16,
//! bf16, read with unaligned little-endian loads straight from the memory map) with f32
//! activations, and the small per-token ops of a LLaMA layer (rmsnorm, rope, softmax, silu).
//!
//! These are the scalar reference versions. Every later SIMD variant is tested against them.

#![no_std]
#![deny(missing_docs)]

use half::{bf16, f16};

/// How stored weight elements are encoded (all little-endian, any alignment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
}

impl WeightType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 | WeightType::BF16 => 2,
        }
    }
}

/// How the query/key rows of a head pair their dimensions for the rotary embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Meta's original order (llama2.c, GGUF): dims `(2i, 2i+1)` rotate together.
    Interleaved,
    /// Hugging Face "rotate_half" order (safetensors, MindFormers): dims `(i, i + head_dim/2)`.
    Halves,
}

#[inline(always)]
fn load_f32(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

#[inline(always)]
fn load_f16(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[2 * i], b[2 * i + 1]])).to_f32()
}

#[inline(always)]
fn load_bf16(b: &[u8], i: usize) -> f32 {
    bf16::from_bits(u16::from_le_bytes([b[2 * i], b[2 * i + 1]])).to_f32()
}

/// Element `i` of a stored row, widened to f32.
#[inline(always)]
pub fn load(wt: WeightType, row: &[u8], i: usize) -> f32 {
    match wt {
        WeightType::F32 => load_f32(row, i),
        WeightType::F16 => load_f16(row, i),
        WeightType::BF16 => load_bf16(row, i),
    }
}

/// Widen a stored row to f32: `out[i] = row[i]`. `row` holds `out.len()` elements.
pub fn row_to_f32(wt: WeightType, row: &[u8], out: &mut [f32]) {
    assert!(row.len() >= out.len() * wt.size(), "row_to_f32: row too short");
    for (i, o) in out.iter_mut().enumerate() {
        *o = load(wt, row, i);
    }
}

/// Dot product of one stored row (`x.len()` elements) with `x`.
///
/// Accumulates in 8 independent f32 lanes (the same association a SIMD version uses), then
/// sums the lanes pairwise.
pub fn dot_row(wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
    assert!(row.len() >= x.len() * wt.size(), "dot_row: row too short");
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

/// Matrix-vector product: `out[r] = dot(w[r, :], x)` for a row-major `[out.len(), x.len()]`
/// matrix stored in `w`.
pub fn matvec(wt: WeightType, w: &[u8], x: &[f32], out: &mut [f32]) {
    let row_bytes = x.len() * wt.size();
    assert!(w.len() >= row_bytes * out.len(), "matvec: matrix too short");
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot_row(wt, &w[r * row_bytes..(r + 1) * row_bytes], x);
    }
}

/// Matrix-matrix product for a batch of `n` activation rows: `x` is `[n, cols]`, `out` is
/// `[n, rows]` with `out[t * rows + r] = dot(w[r, :], x[t, :])`. Each weight row is read once
/// and used for the whole batch.
pub fn matmul(wt: WeightType, w: &[u8], rows: usize, cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    let row_bytes = cols * wt.size();
    assert!(w.len() >= row_bytes * rows, "matmul: matrix too short");
    assert!(x.len() >= n * cols && out.len() >= n * rows, "matmul: activations too short");
    for r in 0..rows {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        for t in 0..n {
            out[t * rows + r] = dot_row(wt, row, &x[t * cols..(t + 1) * cols]);
        }
    }
}

/// RMSNorm: `out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    assert!(out.len() == x.len() && weight.len() == x.len(), "rmsnorm: length mismatch");
    let mut ss = 0f32;
    for v in x {
        ss += v * v;
    }
    let scale = 1.0 / libm_sqrt(ss / x.len() as f32 + eps);
    for i in 0..x.len() {
        out[i] = x[i] * scale * weight[i];
    }
}

/// Rotary position embedding of `x` (`x.len() / head_dim` heads of `head_dim`) at `pos`.
///
/// `inv_freq[i] = theta^(-2i/head_dim)` for `i < head_dim/2` (precomputed by the caller, as
/// transformers does in f32). Pair `i` rotates by `pos * inv_freq[i]`; which dims form pair
/// `i` is given by `layout`.
pub fn rope(x: &mut [f32], head_dim: usize, pos: usize, inv_freq: &[f32], layout: RopeLayout) {
    let half = head_dim / 2;
    assert!(inv_freq.len() >= half && x.len().is_multiple_of(head_dim), "rope: bad lengths");
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &f) in inv_freq.iter().enumerate().take(half) {
            let angle = pos as f32 * f;
            let (s, c) = (libm_sin(angle), libm_cos(angle));
            let (a, b) = match layout {
                RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                RopeLayout::Halves => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

/// In-place softmax (max-subtracted).
pub fn softmax(x: &mut [f32]) {
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

/// SwiGLU gate: `gate[i] = silu(gate[i]) * up[i]`, `silu(v) = v / (1 + e^-v)`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert!(gate.len() == up.len(), "silu_mul: length mismatch");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + libm_exp(-*g)) * u;
    }
}

/// `acc[i] += w * v[i]`.
pub fn axpy(acc: &mut [f32], w: f32, v: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += w * b;
    }
}

/// Plain f32 dot product.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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

mod math;
use math::{libm_cos, libm_exp, libm_sin, libm_sqrt};
