//! GGUF's block-quantized weight types, as llama.cpp (ggml) stores them: blocks of 32 elements
//! with an f16 scale `d` first, then the quants.
//!
//! - `Q8_0` (34 bytes a block): 32 signed bytes `q`; element `i` is `d * q[i]`.
//! - `Q4_0` (18 bytes a block): 16 bytes of two 4-bit values each; element `i < 16` is the low
//!   nibble of byte `i`, element `16 + i` its high nibble; the value is `d * (nibble - 8)`.
//!
//! These are the reference (scalar) kernels: dequantization (bit-exact: one f16 → f32 scale
//! times a small integer, an exact product) and dot products with f32 activations that sum each
//! block's integer-weighted activations before scaling by `d`, so that every path gives the
//! same bits. The products of a row run block by block in increasing order.

use half::f16;

use crate::{panel_stride, WeightType, PANEL};

/// Elements per block of every quantized type here.
pub(crate) const QK: usize = 32;

/// The scale of the block at `b`.
#[inline(always)]
fn scale(b: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// The 32 integer values of a block (before the scale).
#[inline(always)]
fn block_ints(wt: WeightType, b: &[u8], out: &mut [f32; QK]) {
    match wt {
        WeightType::Q8_0 => {
            for (o, &q) in out.iter_mut().zip(&b[2..2 + QK]) {
                *o = q as i8 as f32;
            }
        }
        WeightType::Q4_0 => {
            for (i, &q) in b[2..2 + QK / 2].iter().enumerate() {
                out[i] = (q & 0x0F) as f32 - 8.0;
                out[i + QK / 2] = (q >> 4) as f32 - 8.0;
            }
        }
        _ => unreachable!("not a block-quantized type: {wt:?}"),
    }
}

/// Element `i` of a stored row.
pub(crate) fn load(wt: WeightType, row: &[u8], i: usize) -> f32 {
    let b = &row[(i / QK) * wt.block_bytes()..][..wt.block_bytes()];
    let mut v = [0f32; QK];
    block_ints(wt, b, &mut v);
    scale(b) * v[i % QK]
}

/// `out` = the row's `out.len()` values (a whole number of blocks).
pub(crate) fn row_to_f32(wt: WeightType, row: &[u8], out: &mut [f32]) {
    let bb = wt.block_bytes();
    let mut v = [0f32; QK];
    for (o, b) in out.chunks_exact_mut(QK).zip(row.chunks_exact(bb)) {
        block_ints(wt, b, &mut v);
        let d = scale(b);
        for (o, &q) in o.iter_mut().zip(&v) {
            *o = d * q;
        }
    }
}

/// `dot(row, x)` over `x.len()` elements (a whole number of blocks).
pub(crate) fn dot_row(wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
    let bb = wt.block_bytes();
    let mut v = [0f32; QK];
    let mut acc = 0f32;
    for (xs, b) in x.chunks_exact(QK).zip(row.chunks_exact(bb)) {
        block_ints(wt, b, &mut v);
        let mut s = 0f32;
        for (&q, &xi) in v.iter().zip(xs) {
            s += q * xi;
        }
        acc += scale(b) * s;
    }
    acc
}

/// `out[r] = dot(w[r, :], x)` for the `out.len()` rows of `w`.
pub(crate) fn matvec(wt: WeightType, w: &[u8], x: &[f32], out: &mut [f32]) {
    let Some(rb) = wt.row_bytes(x.len()) else { unreachable!("rows of whole blocks") };
    for (o, row) in out.iter_mut().zip(w.chunks_exact(rb.max(1))) {
        *o = dot_row(wt, row, x);
    }
}

/// `out[t * rows + r] = dot(w[r, :], x[t, :])` for `n` tokens of activations packed by
/// `pack_f32` (panels of [`PANEL`] tokens, column-major in each). Each output is summed in
/// the order of [`dot_row`], so batched and single-token products agree bit for bit.
pub(crate) fn matmul_packed(wt: WeightType, w: &[u8], rows: usize, cols: usize, xp: &[f32], n: usize, out: &mut [f32]) {
    let Some(rb) = wt.row_bytes(cols) else { unreachable!("rows of whole blocks") };
    let bb = wt.block_bytes();
    let stride = panel_stride(cols);
    let mut v = [0f32; QK];
    for (r, row) in w.chunks_exact(rb.max(1)).take(rows).enumerate() {
        for t in 0..n {
            out[t * rows + r] = 0.0;
        }
        for (blk, b) in row.chunks_exact(bb).enumerate() {
            block_ints(wt, b, &mut v);
            let d = scale(b);
            for t in 0..n {
                let panel = &xp[(t / PANEL) * stride..];
                let mut s = 0f32;
                for (i, &q) in v.iter().enumerate() {
                    s += q * panel[(blk * QK + i) * PANEL + t % PANEL];
                }
                out[t * rows + r] += d * s;
            }
        }
    }
}
