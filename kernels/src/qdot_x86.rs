//! AVX2 integer dot products of quantized weight rows with quantized activations (the formats
//! of `qdot.rs`), used on every x86 path above scalar. The integer sums are exact and equal
//! the reference's: unsigned weight quants times signed activation bytes by `vpmaddubsw`
//! (pairs into i16, no saturation at these ranges), weighted into i32 by `vpmaddwd` (by ones,
//! or by the sub-block scales of a K-quant); signed × signed by the sign trick. Only the f32
//! sum of the blocks' terms differs from the reference (two 8-lane accumulators, even and odd
//! blocks, then a fixed horizontal sum).
//!
//! Each type has its own instance of the loops (a const-generic type tag), so that nothing is
//! decided per block.

use core::arch::x86_64::*;

use crate::qdot::{g32_fields, k_factors, k_scales, AK_BSUMS, AK_BYTES, G32, G32_BYTES};
use crate::quant::QK;
use crate::WeightType;

/// The f16 at `p`, widened (F16C, inline: no call into a non-AVX function per block).
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller points at two bytes of a block; every x86 path above scalar has F16C.
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline(always)]
unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: the caller points at four bytes of an activation block.
    (p as *const f32).read_unaligned()
}

/// Horizontal sum of 8 lanes, in a fixed order.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Σ over 4-byte groups of `u[i] * s[i]` (unsigned × signed bytes) as i32 lanes: one
/// `vpdpbusd` with VNNI (`V`), else `vpmaddubsw` (pairs into i16; no saturation at the ranges
/// here) and `vpmaddwd` by ones.
#[inline(always)]
unsafe fn dot_us<const V: bool>(u: __m256i, s: __m256i) -> __m256i {
    #[cfg(runllama_avx512)]
    if V {
        // SAFETY: `V` is only set in functions compiled for AVX-512 VNNI and VL.
        return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
    }
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Σ over 4-byte groups of `a[i] * b[i]` (signed × signed bytes) as i32 lanes.
#[inline(always)]
unsafe fn dot_ss<const V: bool>(a: __m256i, b: __m256i) -> __m256i {
    dot_us::<V>(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
}

/// 0xFF in byte `i` where bit `i` of the little-endian u32 at `p` is set, 0 elsewhere.
#[inline(always)]
unsafe fn bytes_from_bits(p: *const u8) -> __m256i {
    // SAFETY: the caller points at four bytes of a block.
    let v = _mm256_set1_epi32((p as *const u32).read_unaligned() as i32);
    // Bytes 0..8 take the word's byte 0, 8..16 byte 1, 16..24 byte 2, 24..32 byte 3.
    let pick = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, pick), mask), mask)
}

/// The 32 nibbles of the 16 bytes at `p`, in element order (low nibbles first).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller points at 16 bytes of a block.
    let raw = _mm_loadu_si128(p as *const __m128i);
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F))
}

/// The 32 bytes at `b + at`.
#[inline(always)]
unsafe fn ld(b: *const u8, at: usize) -> __m256i {
    // SAFETY: the caller points inside a block with 32 bytes from `at`.
    _mm256_loadu_si256(b.add(at) as *const __m256i)
}

/// Each 16-bit lane of `v` shifted right by `n`.
#[inline(always)]
unsafe fn sh(v: __m256i, n: usize) -> __m256i {
    _mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32))
}

/// Whether [`matvec`] has a kernel for `wt` (every block type).
pub(crate) fn handles(wt: WeightType) -> bool {
    wt.is_quantized()
}

/// `out[r] = dot(row r, x)` for the `out.len()` rows of `w` (`blocks` blocks of `wt` each,
/// back to back) and the rows' quantized activations at `acts`, row by row.
///
/// With `vnni`, the 32-element types' byte products are one `vpdpbusd` each (the same sums).
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C, and with `vnni` AVX-512 F, VL and VNNI; `w` holds
/// `out.len()` rows of `blocks` blocks of `wt` and `acts` `blocks` activation blocks (the
/// caller checked the lengths).
pub(crate) unsafe fn matvec(vnni: bool, wt: WeightType, w: &[u8], acts: &[u8], blocks: usize, out: &mut [f32]) {
    #[cfg(runllama_avx512)]
    if vnni {
        // SAFETY: the caller's contract.
        return unsafe { matvec_vnni(wt, w, acts, blocks, out) };
    }
    let _ = vnni;
    // SAFETY: the caller's contract.
    unsafe { matvec_avx2(wt, w, acts, blocks, out) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn matvec_avx2(wt: WeightType, w: &[u8], acts: &[u8], blocks: usize, out: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { matvec_with::<false>(wt, w, acts, blocks, out) }
}

#[cfg(runllama_avx512)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn matvec_vnni(wt: WeightType, w: &[u8], acts: &[u8], blocks: usize, out: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { matvec_with::<true>(wt, w, acts, blocks, out) }
}

/// [`matvec`]'s body, inlined into a function compiled for the features `V` needs.
#[inline(always)]
unsafe fn matvec_with<const V: bool>(wt: WeightType, w: &[u8], acts: &[u8], blocks: usize, out: &mut [f32]) {
    const Q8_0: u8 = WeightType::Q8_0 as u8;
    const Q4_0: u8 = WeightType::Q4_0 as u8;
    const Q4_1: u8 = WeightType::Q4_1 as u8;
    const Q5_0: u8 = WeightType::Q5_0 as u8;
    const Q5_1: u8 = WeightType::Q5_1 as u8;
    const Q2_K: u8 = WeightType::Q2_K as u8;
    const Q3_K: u8 = WeightType::Q3_K as u8;
    const Q4_K: u8 = WeightType::Q4_K as u8;
    const Q5_K: u8 = WeightType::Q5_K as u8;
    const Q6_K: u8 = WeightType::Q6_K as u8;
    let (rb, a) = (blocks * wt.block_bytes(), acts.as_ptr());
    // SAFETY (of each call): the caller's contract; row `r` is within `w`.
    macro_rules! run {
        ($f:ident, $t:expr) => {
            for (r, o) in out.iter_mut().enumerate() {
                *o = $f::<$t, V>(w.as_ptr().add(r * rb), a, blocks);
            }
        };
    }
    match wt {
        WeightType::Q8_0 => run!(row32, Q8_0),
        WeightType::Q4_0 => run!(row32, Q4_0),
        WeightType::Q4_1 => run!(row32, Q4_1),
        WeightType::Q5_0 => run!(row32, Q5_0),
        WeightType::Q5_1 => run!(row32, Q5_1),
        WeightType::Q2_K => run!(row_k, Q2_K),
        WeightType::Q3_K => run!(row_k, Q3_K),
        WeightType::Q4_K => run!(row_k, Q4_K),
        WeightType::Q5_K => run!(row_k, Q5_K),
        WeightType::Q6_K => run!(row_k, Q6_K),
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => unreachable!("not a block type: {wt:?}"),
    }
}

/// The type whose discriminant is `t`.
#[inline(always)]
const fn wt_of(t: u8) -> WeightType {
    match t {
        3 => WeightType::Q8_0,
        4 => WeightType::Q4_0,
        5 => WeightType::Q4_1,
        6 => WeightType::Q5_0,
        7 => WeightType::Q5_1,
        8 => WeightType::Q2_K,
        9 => WeightType::Q3_K,
        10 => WeightType::Q4_K,
        11 => WeightType::Q5_K,
        12 => WeightType::Q6_K,
        _ => panic!("not a block type"),
    }
}

/// One 32-element block of type `T` times its activations `y`: i32 lanes summing to
/// `Σ u y`, where `u = q + OFF` ([`off32`]) is the block's quants made unsigned (for `Q8_0`
/// without VNNI, the signed quants and no offset: `vpmaddubsw` could saturate on 255 × 127).
#[inline(always)]
unsafe fn usum32<const T: u8, const V: bool>(b: *const u8, y: *const u8) -> __m256i {
    // SAFETY (of the loads): the caller points `b` at a whole block of `T`, `y` at its 32
    // activation quants.
    let y = _mm256_loadu_si256(y as *const __m256i);
    match wt_of(T) {
        WeightType::Q8_0 if V => dot_us::<V>(_mm256_xor_si256(ld(b, 2), _mm256_set1_epi8(-128)), y),
        WeightType::Q8_0 => dot_ss::<V>(ld(b, 2), y),
        WeightType::Q4_0 => dot_us::<V>(nibbles(b.add(2)), y),
        WeightType::Q4_1 => dot_us::<V>(nibbles(b.add(4)), y),
        WeightType::Q5_0 => {
            let hi = _mm256_and_si256(bytes_from_bits(b.add(2)), _mm256_set1_epi8(16));
            dot_us::<V>(_mm256_or_si256(nibbles(b.add(6)), hi), y)
        }
        WeightType::Q5_1 => {
            let hi = _mm256_and_si256(bytes_from_bits(b.add(4)), _mm256_set1_epi8(16));
            dot_us::<V>(_mm256_or_si256(nibbles(b.add(8)), hi), y)
        }
        _ => unreachable!(),
    }
}

/// log2 of the offset [`usum32`] adds to type `T`'s quants (`None`: none).
const fn off32(t: u8, vnni: bool) -> Option<i32> {
    match wt_of(t) {
        WeightType::Q8_0 if vnni => Some(7),
        WeightType::Q4_0 => Some(3),
        WeightType::Q5_0 => Some(4),
        _ => None,
    }
}

/// Eight vectors' lane sums, as the eight lanes of one (a fixed tree of pairwise adds).
#[inline(always)]
unsafe fn sum8(p: [__m256i; 8]) -> __m256i {
    let (a, b) = (_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    let (c, d) = (_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    // Lanes of each: vector 0..4 (resp. 4..8) low halves' sums, then their high halves'.
    let (lo, hi) = (_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31))
}

/// The f16 at byte `at` of each of `n` (at most 8) blocks `bb` bytes apart from `b`, widened;
/// lanes from `n` on zero.
#[inline(always)]
unsafe fn f16x8(b: *const u8, bb: usize, at: usize, n: usize) -> __m256 {
    // SAFETY: the caller points at `n` blocks with two bytes at `at`.
    let h = |k: usize| if k < n { (b.add(k * bb + at) as *const u16).read_unaligned() as i16 } else { 0 };
    _mm256_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)))
}

/// [`matvec`] of one row of a 32-element type: per group of 8 blocks, each block's integer
/// sum (one lane per block), the offset taken off with the activations' sums, then one
/// multiply-add by the 8 blocks' scale products (and for the types with a minimum, one by the
/// minimums and the activations' `s`).
#[inline(always)]
unsafe fn row32<const T: u8, const V: bool>(row: *const u8, acts: *const u8, blocks: usize) -> f32 {
    let bb = wt_of(T).block_bytes();
    let with_min = matches!(wt_of(T), WeightType::Q4_1 | WeightType::Q5_1);
    let (mut acc, mut accm) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for g in 0..blocks.div_ceil(G32) {
        // SAFETY (of every access below): group `g` of the activations and the row's blocks
        // `8g .. 8g + n` exist (the caller's contract).
        let (b, a) = (row.add(g * G32 * bb), acts.add(g * G32_BYTES));
        let n = G32.min(blocks - g * G32);
        let (d_at, s_at, sum_at, qs_at) = g32_fields(n);
        // A short last group's fields, as 8 lanes (zero from `n`).
        let lanes = |at: usize| {
            let mut v = [0u32; 8];
            for (k, l) in v.iter_mut().enumerate().take(n) {
                *l = (a.add(at + 4 * k) as *const u32).read_unaligned();
            }
            _mm256_loadu_si256(v.as_ptr() as *const __m256i)
        };
        let mut p = [_mm256_setzero_si256(); 8];
        let (yd, ysum, ys) = if n == G32 {
            for (k, pk) in p.iter_mut().enumerate() {
                *pk = usum32::<T, V>(b.add(k * bb), a.add(qs_at + QK * k));
            }
            (ld(a, d_at), ld(a, sum_at), ld(a, s_at))
        } else {
            for (k, pk) in p.iter_mut().enumerate().take(n) {
                *pk = usum32::<T, V>(b.add(k * bb), a.add(qs_at + QK * k));
            }
            (lanes(d_at), lanes(sum_at), lanes(s_at))
        };
        let mut sumi = sum8(p);
        if let Some(shift) = off32(T, V) {
            sumi = _mm256_sub_epi32(sumi, _mm256_sll_epi32(ysum, _mm_cvtsi32_si128(shift)));
        }
        let d = _mm256_mul_ps(f16x8(b, bb, 0, n), _mm256_castsi256_ps(yd));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        if with_min {
            accm = _mm256_fmadd_ps(f16x8(b, bb, 2, n), _mm256_castsi256_ps(ys), accm);
        }
    }
    hsum(acc) + hsum(accm)
}

/// [`matvec`] of one row of a K-quant: per super-block, each group of 32 quants (unsigned)
/// times the activations, weighted by its two sub-block scales; the minimums or offsets from
/// the activations' sums of 16. Even and odd super-blocks in two accumulators.
#[inline(always)]
unsafe fn row_k<const T: u8, const _V: bool>(row: *const u8, acts: *const u8, blocks: usize) -> f32 {
    let zero = _mm256_setzero_ps();
    let (mut even, mut odd) = ((zero, zero), (zero, zero));
    for i in (0..blocks - blocks % 2).step_by(2) {
        // SAFETY: the caller's contract, passed on.
        even = term_k::<T>(row, acts, i, even);
        odd = term_k::<T>(row, acts, i + 1, odd);
    }
    if blocks % 2 == 1 {
        even = term_k::<T>(row, acts, blocks - 1, even);
    }
    hsum(_mm256_add_ps(even.0, odd.0)) - hsum(_mm256_add_ps(even.1, odd.1))
}

/// Super-block `i`'s terms of a K-quant `T` added into `acc` (scales) and `accm` (minimums).
#[inline(always)]
unsafe fn term_k<const T: u8>(
    row: *const u8,
    acts: *const u8,
    i: usize,
    (acc, accm): (__m256, __m256),
) -> (__m256, __m256) {
    let wt = wt_of(T);
    let bb = wt.block_bytes();
    let (d_at, dmin_at) = k_factors(wt);
    let (nib, three, one) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3), _mm256_set1_epi8(1));
    {
        // SAFETY (of every access below): super-block `i` of the row (`bb` bytes) and of the
        // activations (`AK_BYTES`) exist (the caller's contract); accesses stay inside them.
        let (b, a) = (row.add(i * bb), acts.add(i * AK_BYTES));
        let (sc, m) = k_scales(wt, core::slice::from_raw_parts(b, bb));
        let y = a.add(4);
        let mut isum = _mm256_setzero_si256();
        for g in 0..8 {
            let (h, s) = (g / 4, g % 4);
            let q = match wt {
                WeightType::Q2_K => _mm256_and_si256(sh(ld(b, 16 + 32 * h), 2 * s), three),
                WeightType::Q3_K => {
                    let low = _mm256_and_si256(sh(ld(b, 32 + 32 * h), 2 * s), three);
                    let high = _mm256_and_si256(sh(ld(b, 0), g), one);
                    _mm256_or_si256(low, _mm256_slli_epi16(high, 2))
                }
                WeightType::Q4_K => _mm256_and_si256(sh(ld(b, 16 + 32 * (g / 2)), 4 * (g % 2)), nib),
                WeightType::Q5_K => {
                    let low = _mm256_and_si256(sh(ld(b, 48 + 32 * (g / 2)), 4 * (g % 2)), nib);
                    let high = _mm256_and_si256(sh(ld(b, 16), g), one);
                    _mm256_or_si256(low, _mm256_slli_epi16(high, 4))
                }
                WeightType::Q6_K => {
                    let low = _mm256_and_si256(sh(ld(b, 64 * h + 32 * (s % 2)), 4 * (s / 2)), nib);
                    let high = _mm256_and_si256(sh(ld(b, 128 + 32 * h), 2 * s), three);
                    _mm256_or_si256(low, _mm256_slli_epi16(high, 4))
                }
                _ => unreachable!(),
            };
            let p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(y.add(32 * g) as *const __m256i));
            // i16 lanes 0..8 hold elements 0..16 (sub-block 2g), lanes 8..16 sub-block 2g + 1.
            let scales = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]), _mm_set1_epi16(sc[2 * g]));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scales));
        }
        let bsums = _mm256_loadu_si256(a.add(AK_BSUMS) as *const __m256i);
        let msum = _mm256_madd_epi16(bsums, _mm256_loadu_si256(m.as_ptr() as *const __m256i));
        let yd = f32_at(a);
        let d = _mm256_set1_ps(f16_at(b.add(d_at)) * yd);
        match dmin_at {
            None => (_mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, msum)), acc), accm),
            Some(at) => {
                let dmin = _mm256_set1_ps(f16_at(b.add(at)) * yd);
                (
                    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc),
                    _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(msum), accm),
                )
            }
        }
    }
}
