//! Integer dot products of block-quantized weight rows (see `quant.rs`) with activations
//! quantized to 8 bits, as llama.cpp's CPU backend computes them (ggml's `vec_dot_type`), and
//! the reference (scalar) versions of those products. The x86 paths have their own kernels
//! (`qdot_x86.rs`) that give the same integer sums; only their float sums of the block
//! results are ordered differently.
//!
//! Activation formats (our own byte layouts, ggml's values):
//! - 32-element blocks for `Q4_0 … Q8_0` (ggml's `Q8_0`/`Q8_1`): a scale `d` (the f16 rounding
//!   of `amax / 127`), 32 signed bytes `round(x × 127 / amax)` (ties to even, as ggml's x86
//!   quantizer), their sum `Σq`, and `s` (the f16 rounding of `amax / 127 × Σq`, used by the
//!   types with a minimum). Stored in groups of 8 blocks ([`G32_BYTES`]: eight f32 `d`, eight
//!   f32 `s`, eight i32 `Σq`, then the 8 × 32 quants), so that a kernel loads each field of 8
//!   blocks as one vector; a row's last group holds the `n < 8` blocks left, laid out the same
//!   way for `n` ([`g32_fields`]).
//! - 256-element blocks ([`AK_BYTES`]) for the K-quants (ggml's `Q8_K`): an f32 `d`, 256 signed
//!   bytes `min(127, round(x × -127 / max))` where `max` is the (first) element of largest
//!   magnitude and `d = 1 / (-127 / max)`, then sixteen little-endian i16 sums of 16 quants.
//!
//! A weight block's integers are summed exactly against the activations' (i32), and each block's
//! sum becomes one f32 term: `d_w d_x Σ q_w q_x` (plus `m_w s_x` for `Q4_1`/`Q5_1`); for a
//! K-quant super-block, sub-block sums are weighted by their integer scales before the one
//! multiplication, and the minimums (or the offsets of `Q3_K`/`Q6_K`) come from the sums of 16.

use half::f16;

use crate::quant::{scale_min_k4, QK, QK_K};
use crate::WeightType;

/// Blocks per group of quantized 32-element activation blocks.
pub(crate) const G32: usize = 8;
/// Bytes of one quantized 32-element activation block (its share of a group).
pub(crate) const A32_BYTES: usize = 12 + QK;
/// Bytes of a group of 8 quantized 32-element activation blocks.
pub(crate) const G32_BYTES: usize = G32 * A32_BYTES;

/// Offsets in a group of `n` blocks of its fields: the f32 scales, the f32 `s`, the i32 sums,
/// the quants.
#[inline(always)]
pub(crate) const fn g32_fields(n: usize) -> (usize, usize, usize, usize) {
    (0, 4 * n, 8 * n, 12 * n)
}
/// Bytes of a quantized 256-element activation block: `d: f32`, 256 × `i8`, 16 × `i16`.
pub(crate) const AK_BYTES: usize = 4 + QK_K + 32;
/// Where the sums of 16 start in a 256-element activation block.
pub(crate) const AK_BSUMS: usize = 4 + QK_K;

/// Elements of the activation blocks that products with `wt` rows read (`None` for the float
/// types).
pub(crate) const fn act_block(wt: WeightType) -> Option<usize> {
    match wt {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => None,
        WeightType::Q8_0 | WeightType::Q4_0 | WeightType::Q4_1 | WeightType::Q5_0 | WeightType::Q5_1 => Some(QK),
        WeightType::Q2_K | WeightType::Q3_K | WeightType::Q4_K | WeightType::Q5_K | WeightType::Q6_K => Some(QK_K),
    }
}

/// Bytes of `cols` activations quantized for `wt` rows (`None` for the float types, or when
/// `cols` is not whole blocks).
pub(crate) const fn act_bytes(wt: WeightType, cols: usize) -> Option<usize> {
    match act_block(wt) {
        Some(QK) if cols.is_multiple_of(QK) => Some(cols / QK * A32_BYTES),
        Some(QK_K) if cols.is_multiple_of(QK_K) => Some(cols / QK_K * AK_BYTES),
        _ => None,
    }
}

/// ggml's `nearest_int`: round to nearest, ties to even, for `|v| < 2^22`.
#[inline(always)]
fn nearest(v: f32) -> i32 {
    ((v + 12582912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

#[inline(always)]
pub(crate) fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Quantize `x` (whole blocks of `wt`'s activation format) into `out` (exactly
/// [`act_bytes`]); the same bytes on every path.
pub(crate) fn quantize(wt: WeightType, x: &[f32], out: &mut [u8]) {
    if act_block(wt) == Some(QK) {
        for (xs, g) in x.chunks(G32 * QK).zip(out.chunks_mut(G32_BYTES)) {
            let n = xs.len() / QK;
            for (k, xb) in xs.chunks_exact(QK).enumerate() {
                quantize_a32(xb, g, g32_fields(n), k);
            }
        }
    } else {
        for (xs, o) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(AK_BYTES)) {
            quantize_ak(xs, o)
        }
    }
}

/// Block `k` of group `g` (whose fields are at `(d, s, sum, qs)`).
fn quantize_a32(x: &[f32], g: &mut [u8], (d_at, s_at, sum_at, qs_at): (usize, usize, usize, usize), k: usize) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in g[qs_at + QK * k..qs_at + QK * (k + 1)].iter_mut().zip(x) {
        let n = nearest(v * id);
        sum += n;
        *q = n as i8 as u8;
    }
    g[d_at + 4 * k..d_at + 4 * k + 4].copy_from_slice(&f16::from_f32(d).to_f32().to_le_bytes());
    g[s_at + 4 * k..s_at + 4 * k + 4].copy_from_slice(&f16::from_f32(d * sum as f32).to_f32().to_le_bytes());
    g[sum_at + 4 * k..sum_at + 4 * k + 4].copy_from_slice(&sum.to_le_bytes());
}

fn quantize_ak(x: &[f32], o: &mut [u8]) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            (amax, max) = (v.abs(), v);
        }
    }
    if amax == 0.0 {
        o[..AK_BYTES].fill(0);
        return;
    }
    let iscale = -127.0 / max;
    for (q, &v) in o[4..4 + QK_K].iter_mut().zip(x) {
        *q = nearest(iscale * v).min(127) as i8 as u8;
    }
    for j in 0..QK_K / 16 {
        let s: i32 = o[4 + 16 * j..4 + 16 * (j + 1)].iter().map(|&q| q as i8 as i32).sum();
        o[AK_BSUMS + 2 * j..AK_BSUMS + 2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    o[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}

/// A K-quant super-block's integer form: unsigned quants `q`, per sub-block of 16 a scale and
/// a weight of that sub-block's activation sum (the minimum, or the offset × scale), and the
/// f32 factors of the two sums (`dmin: None` when the second is subtracted before scaling,
/// i.e. an offset: `Q3_K`, `Q6_K`).
pub(crate) struct KBlock {
    pub q: [u8; QK_K],
    pub sc: [i16; 16],
    pub m: [i16; 16],
    pub d: f32,
    pub dmin: Option<f32>,
}

/// The 6-bit signed scale of sub-block `k` (0..16) of a `Q3_K` super-block (scale bytes `sc`).
#[inline(always)]
pub(crate) fn q3k_scale(sc: &[u8], k: usize) -> i16 {
    let lo = if k < 8 { sc[k] & 0x0F } else { sc[k - 8] >> 4 };
    let hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
    (lo | (hi << 4)) as i16 - 32
}

/// Where a K-quant super-block keeps its f16 factors: `(d, dmin)`, `dmin` only for the types
/// with minimums (for `Q3_K`/`Q6_K` the second sum is an offset, subtracted before scaling).
pub(crate) const fn k_factors(wt: WeightType) -> (usize, Option<usize>) {
    match wt {
        WeightType::Q2_K => (80, Some(82)),
        WeightType::Q3_K => (108, None),
        WeightType::Q4_K | WeightType::Q5_K => (0, Some(2)),
        WeightType::Q6_K => (208, None),
        _ => panic!("not a K-quant"),
    }
}

/// The integer scales of a K-quant super-block `b`'s sub-blocks of 16, and the weights of its
/// activations' sums of 16 (the minimums, or the offset times the scale): `(sc, m)` as in
/// [`KBlock`].
#[inline(always)]
pub(crate) fn k_scales(wt: WeightType, b: &[u8]) -> ([i16; 16], [i16; 16]) {
    let (mut sc, mut m) = ([0i16; 16], [0i16; 16]);
    match wt {
        WeightType::Q2_K => {
            for j in 0..16 {
                (sc[j], m[j]) = ((b[j] & 0x0F) as i16, (b[j] >> 4) as i16);
            }
        }
        WeightType::Q3_K => {
            for (j, (s, mj)) in sc.iter_mut().zip(&mut m).enumerate() {
                *s = q3k_scale(&b[96..108], j);
                *mj = 4 * *s;
            }
        }
        WeightType::Q4_K | WeightType::Q5_K => {
            for j in 0..8 {
                let (s, mn) = scale_min_k4(&b[4..16], j);
                (sc[2 * j], sc[2 * j + 1], m[2 * j], m[2 * j + 1]) = (s as i16, s as i16, mn as i16, mn as i16);
            }
        }
        WeightType::Q6_K => {
            for (j, (s, mj)) in sc.iter_mut().zip(&mut m).enumerate() {
                *s = b[192 + j] as i8 as i16;
                *mj = 32 * *s;
            }
        }
        _ => unreachable!("not a K-quant: {wt:?}"),
    }
    (sc, m)
}

/// The unsigned quants (before their offset) of K-quant super-block `b`, group by group of 32
/// (each group one loop over its bytes, which the compiler vectorizes).
fn k_quants(wt: WeightType, b: &[u8], q: &mut [u8; QK_K]) {
    for (g, out) in q.chunks_exact_mut(32).enumerate() {
        let (h, s) = (g / 4, g % 4);
        match wt {
            WeightType::Q2_K => {
                for (o, &x) in out.iter_mut().zip(&b[16 + 32 * h..]) {
                    *o = (x >> (2 * s)) & 3;
                }
            }
            WeightType::Q3_K => {
                for ((o, &x), &m) in out.iter_mut().zip(&b[32 + 32 * h..]).zip(&b[..32]) {
                    *o = ((x >> (2 * s)) & 3) | (((m >> g) & 1) << 2);
                }
            }
            WeightType::Q4_K => {
                for (o, &x) in out.iter_mut().zip(&b[16 + 32 * (g / 2)..]) {
                    *o = (x >> (4 * (g % 2))) & 0x0F;
                }
            }
            WeightType::Q5_K => {
                for ((o, &x), &hb) in out.iter_mut().zip(&b[48 + 32 * (g / 2)..]).zip(&b[16..48]) {
                    *o = ((x >> (4 * (g % 2))) & 0x0F) | (((hb >> g) & 1) << 4);
                }
            }
            WeightType::Q6_K => {
                let (ql, qh) = (&b[64 * h + 32 * (s % 2)..], &b[128 + 32 * h..]);
                for ((o, &lo), &hi) in out.iter_mut().zip(ql).zip(qh) {
                    *o = ((lo >> (4 * (s / 2))) & 0x0F) | (((hi >> (2 * s)) & 3) << 4);
                }
            }
            _ => unreachable!("not a K-quant: {wt:?}"),
        }
    }
}

/// The integer form of K-quant super-block `b`.
pub(crate) fn k_block(wt: WeightType, b: &[u8]) -> KBlock {
    let (sc, m) = k_scales(wt, b);
    let (d_at, dmin_at) = k_factors(wt);
    let (d, dmin) = (f16_at(b, d_at), dmin_at.map(|at| f16_at(b, at)));
    let mut q = [0u8; QK_K];
    k_quants(wt, b, &mut q);
    KBlock { q, sc, m, d, dmin }
}

/// A 32-element weight block's quants as signed integers (offsets applied) and its f32 scale
/// and minimum (0 for the types without).
#[inline(always)]
fn ints32(wt: WeightType, b: &[u8]) -> ([i8; QK], f32, f32) {
    let mut q = [0i8; QK];
    let d = f16_at(b, 0);
    match wt {
        WeightType::Q8_0 => {
            for (v, &x) in q.iter_mut().zip(&b[2..2 + QK]) {
                *v = x as i8;
            }
            (q, d, 0.0)
        }
        WeightType::Q4_0 | WeightType::Q4_1 => {
            let (m, qs, off) = if wt == WeightType::Q4_1 { (f16_at(b, 2), &b[4..20], 0) } else { (0.0, &b[2..18], 8) };
            for (i, &x) in qs.iter().enumerate() {
                (q[i], q[i + 16]) = ((x & 0x0F) as i8 - off, (x >> 4) as i8 - off);
            }
            (q, d, m)
        }
        WeightType::Q5_0 | WeightType::Q5_1 => {
            let (m, rest, off) = if wt == WeightType::Q5_1 { (f16_at(b, 2), &b[4..], 0) } else { (0.0, &b[2..], 16) };
            let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            for (i, &x) in rest[4..20].iter().enumerate() {
                for (e, nibble) in [(i, x & 0x0F), (i + 16, x >> 4)] {
                    q[e] = (nibble | ((((qh >> e) & 1) as u8) << 4)) as i8 - off;
                }
            }
            (q, d, m)
        }
        _ => unreachable!("not a 32-element block type: {wt:?}"),
    }
}

/// `dot(row, x)` for a row of whole blocks of `wt` and its activations quantized by
/// [`quantize`] (`acts`): the reference. Blocks' terms are summed in order.
pub(crate) fn dot(wt: WeightType, row: &[u8], acts: &[u8]) -> f32 {
    let bb = wt.block_bytes();
    let mut acc = 0f32;
    if wt.block_elems() == QK {
        let blocks = row.len() / bb;
        for (i, b) in row.chunks_exact(bb).enumerate() {
            let (g, k) = (&acts[(i / G32) * G32_BYTES..], i % G32);
            let (d_at, s_at, _, qs_at) = g32_fields(G32.min(blocks - i / G32 * G32));
            let (q, d, m) = ints32(wt, b);
            let y = &g[qs_at + QK * k..qs_at + QK * (k + 1)];
            let sumi: i32 = q.iter().zip(y).map(|(&w, &x)| w as i32 * x as i8 as i32).sum();
            acc += sumi as f32 * (d * f32_at(g, d_at + 4 * k)) + m * f32_at(g, s_at + 4 * k);
        }
        return acc;
    }
    for (b, a) in row.chunks_exact(bb).zip(acts.chunks_exact(AK_BYTES)) {
        let yd = f32_at(a, 0);
        let y = &a[4..4 + QK_K];
        let k = k_block(wt, b);
        let mut isum = 0i32;
        let mut msum = 0i32;
        for j in 0..16 {
            let (qj, yj) = (&k.q[16 * j..16 * (j + 1)], &y[16 * j..16 * (j + 1)]);
            let s: i32 = qj.iter().zip(yj).map(|(&w, &x)| w as i32 * x as i8 as i32).sum();
            isum += k.sc[j] as i32 * s;
            let bs = i16::from_le_bytes([a[AK_BSUMS + 2 * j], a[AK_BSUMS + 2 * j + 1]]);
            msum += k.m[j] as i32 * bs as i32;
        }
        acc += match k.dmin {
            None => (k.d * yd) * (isum - msum) as f32,
            Some(dmin) => (k.d * yd) * isum as f32 - (dmin * yd) * msum as f32,
        };
    }
    acc
}

/// `out[t * rows + r] = dot(row r of w, token t)` for the `rows` rows of `w` (exactly, whole
/// blocks of `wt`) and the tokens' quantized activations `acts[t]`, on path `p`: the AVX2
/// kernels on every x86 path above scalar, the reference otherwise. Each product is the same
/// computation whatever the number of rows and tokens. With `tile` (batched products), the x86
/// paths run the tile kernel (`qdot_x86_tile.rs`), which orders the f32 sums differently.
///
/// # Safety
/// The CPU supports `p`; each of `acts` holds the activations of a row of `w`; `out` holds
/// `acts.len() * rows`.
pub(crate) unsafe fn products_on(
    p: crate::Path,
    tile: bool,
    wt: WeightType,
    w: &[u8],
    rows: usize,
    acts: &[&[u8]],
    out: &mut [f32],
) {
    if rows == 0 {
        return;
    }
    let rb = w.len() / rows;
    #[cfg(target_arch = "x86_64")]
    if p >= crate::Path::Avx2 {
        let vnni = if p >= crate::Path::Avx512 && crate::detected().avx512vnni {
            crate::qdot_x86::VNNI_EVEX
        } else if p == crate::Path::AvxVnni {
            crate::qdot_x86::VNNI_VEX
        } else {
            crate::qdot_x86::NO_VNNI
        };
        let mut ptrs = [core::ptr::null::<u8>(); crate::qdot_x86::MAX_TOKENS];
        let per_call = crate::qdot_x86::tokens_per_call(wt);
        for (c, chunk) in acts.chunks(per_call).enumerate() {
            for (p, a) in ptrs.iter_mut().zip(chunk) {
                *p = a.as_ptr();
            }
            // SAFETY: every x86 path above scalar has AVX2, FMA and F16C, the AVX-512 paths F
            // and VL (VNNI is checked), the AVX-VNNI path AVX-VNNI; the caller's lengths.
            unsafe {
                let first = per_call * c;
                let out = &mut out[first * rows..(first + chunk.len()) * rows];
                let job = crate::qdot_x86::Products {
                    wt,
                    w,
                    rows,
                    blocks: rb / wt.block_bytes(),
                    acts: &ptrs[..chunk.len()],
                    out,
                };
                crate::qdot_x86::products(vnni, tile, job)
            };
        }
        return;
    }
    let _ = (p, tile);
    for (t, a) in acts.iter().enumerate() {
        for (r, row) in w.chunks_exact(rb.max(1)).take(rows).enumerate() {
            out[t * rows + r] = dot(wt, row, a);
        }
    }
}
