//! GGUF's block-quantized weight types, as llama.cpp (ggml) stores them, and their reference
//! (scalar) kernels.
//!
//! Blocks of 32 elements (an f16 scale `d`, for `_1` types an f16 minimum `m`, then the quants):
//! - `Q8_0` (34 bytes): 32 signed bytes; `d * q`.
//! - `Q4_0` (18), `Q4_1` (20): 16 bytes of two 4-bit values; element `i < 16` is byte `i`'s low
//!   nibble, element `16 + i` its high nibble; `d * (q - 8)`, or `d * q + m`.
//! - `Q5_0` (22), `Q5_1` (24): as the 4-bit types plus a little-endian `u32` (after `d`/`m`)
//!   whose bit `i` is element `i`'s fifth bit; `d * (q - 16)`, or `d * q + m`.
//!
//! Super-blocks of 256 elements (K-quants), in sub-blocks with their own scales:
//! - `Q2_K` (84): 16 scale bytes (low nibble scale, high nibble minimum), 64 bytes of 2-bit
//!   values, `d`, `dmin`; `d * sc * q - dmin * mn` per 16 elements.
//! - `Q3_K` (110): a 32-byte high-bit mask, 64 bytes of 2-bit values, 12 bytes of sixteen 6-bit
//!   scales (offset 32), `d`; `d * sc * (q - 4 * (1 - hbit))` per 16 elements.
//! - `Q4_K` (144), `Q5_K` (176): `d`, `dmin`, 12 bytes of eight 6-bit scales and minimums,
//!   (`Q5_K`: a 32-byte fifth-bit mask,) 128 bytes of nibbles; `d * sc * q - dmin * mn` per 32.
//! - `Q6_K` (210): 128 bytes of low nibbles, 64 bytes of 2-bit high parts, sixteen signed byte
//!   scales, `d`; `d * sc * (q - 32)` per 16 elements.
//!
//! Dequantization reproduces the reference's f32 operations in the reference's order (the
//! scale product first, then the value), so it is bit-exact with ggml's `dequantize_row_*` and
//! gguf-py. Products with activations are integer dot products over quantized activations:
//! see `qdot.rs`.

use half::f16;

use crate::WeightType;

/// Elements per block of the 32-element types.
pub(crate) const QK: usize = 32;
/// Elements per super-block of the K-quants.
pub(crate) const QK_K: usize = 256;

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K/Q5_K super-block.
#[inline(always)]
pub(crate) fn scale_min_k4(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// The values of one block of `wt` into `out[..wt.block_elems()]`.
pub(crate) fn dequant_block(wt: WeightType, b: &[u8], out: &mut [f32]) {
    match wt {
        WeightType::Q8_0 => {
            let d = f16_at(b, 0);
            for (o, &q) in out[..QK].iter_mut().zip(&b[2..2 + QK]) {
                *o = d * (q as i8) as f32;
            }
        }
        WeightType::Q4_0 | WeightType::Q4_1 => {
            let d = f16_at(b, 0);
            let (m, qs) = if wt == WeightType::Q4_1 { (Some(f16_at(b, 2)), &b[4..20]) } else { (None, &b[2..18]) };
            for (i, &q) in qs.iter().enumerate() {
                let (lo, hi) = ((q & 0x0F) as f32, (q >> 4) as f32);
                match m {
                    Some(m) => {
                        out[i] = d * lo + m;
                        out[i + 16] = d * hi + m;
                    }
                    None => {
                        out[i] = d * (lo - 8.0);
                        out[i + 16] = d * (hi - 8.0);
                    }
                }
            }
        }
        WeightType::Q5_0 | WeightType::Q5_1 => {
            let d = f16_at(b, 0);
            let (m, rest) = if wt == WeightType::Q5_1 { (Some(f16_at(b, 2)), &b[4..]) } else { (None, &b[2..]) };
            let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            for (i, &q) in rest[4..20].iter().enumerate() {
                for (e, nibble) in [(i, q & 0x0F), (i + 16, q >> 4)] {
                    let v = (nibble | ((((qh >> e) & 1) as u8) << 4)) as f32;
                    out[e] = match m {
                        Some(m) => d * v + m,
                        None => d * (v - 16.0),
                    };
                }
            }
        }
        WeightType::Q2_K => {
            let (scales, qs) = (&b[..16], &b[16..80]);
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            for (e, o) in out[..QK_K].iter_mut().enumerate() {
                let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
                let q = ((qs[h * 32 + l] >> (2 * s)) & 3) as f32;
                let sc = scales[e / 16];
                let (dl, ml) = (d * (sc & 0x0F) as f32, dmin * (sc >> 4) as f32);
                *o = dl * q - ml;
            }
        }
        WeightType::Q3_K => {
            let (hmask, qs, sc, d) = (&b[..32], &b[32..96], &b[96..108], f16_at(b, 108));
            let scale = |k: usize| -> f32 {
                let lo = if k < 8 { sc[k] & 0x0F } else { sc[k - 8] >> 4 };
                let hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
                ((lo | (hi << 4)) as i8 - 32) as f32
            };
            for (e, o) in out[..QK_K].iter_mut().enumerate() {
                let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
                let low = ((qs[h * 32 + l] >> (2 * s)) & 3) as i8;
                let high = (hmask[l] >> (e / 32)) & 1;
                let q = (low - if high == 0 { 4 } else { 0 }) as f32;
                *o = (d * scale(e / 16)) * q;
            }
        }
        WeightType::Q4_K | WeightType::Q5_K => {
            let (d, dmin, scales) = (f16_at(b, 0), f16_at(b, 2), &b[4..16]);
            let (qh, qs) = if wt == WeightType::Q5_K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
            for (e, o) in out[..QK_K].iter_mut().enumerate() {
                let (j, l) = (e / 32, e % 32);
                let mut q = (qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F;
                if let Some(qh) = qh {
                    q |= ((qh[l] >> j) & 1) << 4;
                }
                let (sc, mn) = scale_min_k4(scales, j);
                *o = (d * sc as f32) * q as f32 - dmin * mn as f32;
            }
        }
        WeightType::Q6_K => {
            let (ql, qh, scales, d) = (&b[..128], &b[128..192], &b[192..208], f16_at(b, 208));
            for (e, o) in out[..QK_K].iter_mut().enumerate() {
                let (h, w) = (e / 128, e % 128);
                let low = (ql[h * 64 + w % 64] >> (4 * (w / 64))) & 0x0F;
                let high = (qh[h * 32 + w % 32] >> (2 * (w / 32))) & 3;
                let q = ((low | (high << 4)) as i8 - 32) as f32;
                *o = (d * (scales[e / 16] as i8) as f32) * q;
            }
        }
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => unreachable!("not a block type: {wt:?}"),
    }
}

/// Element `i` of a stored row.
pub(crate) fn load(wt: WeightType, row: &[u8], i: usize) -> f32 {
    let (be, bb) = (wt.block_elems(), wt.block_bytes());
    let mut v = [0f32; QK_K];
    dequant_block(wt, &row[(i / be) * bb..][..bb], &mut v);
    v[i % be]
}

/// `out` = the row's `out.len()` values (a whole number of blocks).
pub(crate) fn row_to_f32(wt: WeightType, row: &[u8], out: &mut [f32]) {
    let (be, bb) = (wt.block_elems(), wt.block_bytes());
    for (o, b) in out.chunks_exact_mut(be).zip(row.chunks_exact(bb)) {
        dequant_block(wt, b, o);
    }
}
