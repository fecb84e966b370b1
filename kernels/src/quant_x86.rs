//! AVX2+FMA dot products of quantized rows with f32 activations (used on every x86 path above
//! scalar), for `Q8_0`, `Q4_0` and the K-quants of the common presets (`Q4_K`, `Q5_K`, `Q6_K`).
//! A (sub-)block's integers are widened to f32 eight at a time and multiplied into an 8-lane
//! sum, which its scale then adds into the row's 8-lane total (for the types with a minimum,
//! minus the minimum times the sum of the activations; Q6_K's offset of 32 likewise): the
//! activations stay f32 (no 8-bit rounding). Results differ from the scalar reference by the
//! order of the sums and by this factoring of the scales (the reference multiplies each
//! dequantized value): rounding only.

use core::arch::x86_64::*;

use half::f16;

use crate::WeightType;

#[inline(always)]
fn scale(b: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// Horizontal sum of 8 lanes, in a fixed order.
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Whether [`dot_row`] has a kernel for `wt`.
pub(crate) fn handles(wt: WeightType) -> bool {
    matches!(wt, WeightType::Q8_0 | WeightType::Q4_0 | WeightType::Q4_K | WeightType::Q5_K | WeightType::Q6_K)
}

/// `s + Σ q[i] * x[i]` over 32 unsigned bytes `q` and 32 activations at `x`, in 8 lanes.
#[target_feature(enable = "avx2,fma")]
unsafe fn fma32_u8(q: __m256i, x: *const f32, s: __m256) -> __m256 {
    let (lo, hi) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    let mut s = s;
    for (g, part) in [(0, lo), (1, _mm_srli_si128(lo, 8)), (2, hi), (3, _mm_srli_si128(hi, 8))] {
        // SAFETY (of the load): the caller passes 32 activations at `x`.
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(part)), _mm256_loadu_ps(x.add(8 * g)), s);
    }
    s
}

/// `Σ x[i]` over 32 activations at `x`, in 8 lanes.
#[target_feature(enable = "avx2,fma")]
unsafe fn sum32(x: *const f32) -> __m256 {
    let a = _mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8)));
    let b = _mm256_add_ps(_mm256_loadu_ps(x.add(16)), _mm256_loadu_ps(x.add(24)));
    _mm256_add_ps(a, b)
}

/// `dot(row, x)` for a row of `x.len()` elements of a type [`handles`] accepts (whole blocks;
/// the caller checked the lengths).
///
/// # Safety
/// The CPU supports AVX2 and FMA; `row` holds the blocks of `x.len()` elements of `wt`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_row(wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
    if matches!(wt, WeightType::Q4_K | WeightType::Q5_K | WeightType::Q6_K) {
        return dot_row_k(wt, row, x);
    }
    let bb = wt.block_bytes();
    let mut acc = _mm256_setzero_ps();
    for (xs, b) in x.chunks_exact(32).zip(row.chunks_exact(bb)) {
        let xp = xs.as_ptr();
        let mut s = _mm256_setzero_ps();
        match wt {
            WeightType::Q8_0 => {
                let q = b.as_ptr().add(2);
                for g in 0..4 {
                    // SAFETY: bytes 2 + 8g .. 2 + 8g + 8 of the 34-byte block; x[8g..8g + 8].
                    let qi = _mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(8 * g) as *const __m128i));
                    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(qi), _mm256_loadu_ps(xp.add(8 * g)), s);
                }
            }
            WeightType::Q4_0 => {
                // SAFETY: bytes 2..18 of the 18-byte block.
                let raw = _mm_loadu_si128(b.as_ptr().add(2) as *const __m128i);
                let mask = _mm_set1_epi8(0x0F);
                let lo = _mm_and_si128(raw, mask); // elements 0..16
                let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask); // elements 16..32
                let eight = _mm256_set1_ps(8.0);
                for (g, half) in [(0, lo), (1, _mm_srli_si128(lo, 8)), (2, hi), (3, _mm_srli_si128(hi, 8))] {
                    let q = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(half)), eight);
                    s = _mm256_fmadd_ps(q, _mm256_loadu_ps(xp.add(8 * g)), s);
                }
            }
            _ => unreachable!("AVX2 quantized dot of {wt:?}"),
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(scale(b)), s, acc);
    }
    hsum(acc)
}

/// [`dot_row`] for the K-quants: super-blocks of 256 in sub-blocks with their own scales.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_row_k(wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
    let bb = wt.block_bytes();
    let mut acc = _mm256_setzero_ps();
    let nib = _mm256_set1_epi8(0x0F);
    for (xs, b) in x.chunks_exact(256).zip(row.chunks_exact(bb)) {
        let xp = xs.as_ptr();
        let bp = b.as_ptr();
        match wt {
            WeightType::Q4_K | WeightType::Q5_K => {
                let (d, dmin) = (scale(b), scale(&b[2..]));
                let (qh, qs) = if wt == WeightType::Q5_K { (Some(bp.add(16)), bp.add(48)) } else { (None, bp.add(16)) };
                let high = qh.map(|p| _mm256_loadu_si256(p as *const __m256i));
                for c in 0..4 {
                    // SAFETY: 32 bytes of the 128 nibble bytes; activations 64c..64c + 64.
                    let raw = _mm256_loadu_si256(qs.add(32 * c) as *const __m256i);
                    for (half, q) in
                        [(0, _mm256_and_si256(raw, nib)), (1, _mm256_and_si256(_mm256_srli_epi16(raw, 4), nib))]
                    {
                        let j = 2 * c + half;
                        let q = match high {
                            // Bit j of each of the 32 high-bit bytes is this sub-block's fifth bit.
                            Some(h) => {
                                let bit = _mm256_and_si256(
                                    _mm256_srl_epi16(h, _mm_cvtsi32_si128(j as i32)),
                                    _mm256_set1_epi8(1),
                                );
                                _mm256_or_si256(q, _mm256_slli_epi16(bit, 4))
                            }
                            None => q,
                        };
                        let (sc, mn) = super::quant::scale_min_k4(&b[4..16], j);
                        let xj = xp.add(32 * j);
                        let sq = fma32_u8(q, xj, _mm256_setzero_ps());
                        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc as f32), sq, acc);
                        acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * mn as f32), sum32(xj), acc);
                    }
                }
            }
            WeightType::Q6_K => {
                let d = scale(&b[208..]);
                let (ql, qh, scales) = (bp, bp.add(128), &b[192..208]);
                let three = _mm256_set1_epi8(3);
                for h in 0..2 {
                    // SAFETY: 32 high-part bytes of half h.
                    let hb = _mm256_loadu_si256(qh.add(32 * h) as *const __m256i);
                    for s in 0..4 {
                        // SAFETY: 32 low-nibble bytes of half h; activations of group (h, s).
                        let lb = _mm256_loadu_si256(ql.add(64 * h + 32 * (s % 2)) as *const __m256i);
                        let low = _mm256_and_si256(_mm256_srl_epi16(lb, _mm_cvtsi32_si128(4 * (s / 2) as i32)), nib);
                        let high = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * s as i32)), three);
                        let q = _mm256_or_si256(low, _mm256_slli_epi16(high, 4)); // 0..63, offset 32
                        let e = 128 * h + 32 * s;
                        let xg = xp.add(e);
                        // Two sub-blocks of 16: sum q*x and x for each, then scale.
                        let (qa, qb) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
                        for (k, part) in [(0, qa), (1, qb)] {
                            let mut sq = _mm256_setzero_ps();
                            for (g, p) in [(0, part), (1, _mm_srli_si128(part, 8))] {
                                let v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(p));
                                sq = _mm256_fmadd_ps(v, _mm256_loadu_ps(xg.add(16 * k + 8 * g)), sq);
                            }
                            let sx =
                                _mm256_add_ps(_mm256_loadu_ps(xg.add(16 * k)), _mm256_loadu_ps(xg.add(16 * k + 8)));
                            let dsc = d * (scales[(e + 16 * k) / 16] as i8) as f32;
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(dsc), sq, acc);
                            acc = _mm256_fnmadd_ps(_mm256_set1_ps(32.0 * dsc), sx, acc);
                        }
                    }
                }
            }
            _ => unreachable!("AVX2 K-quant dot of {wt:?}"),
        }
    }
    hsum(acc)
}
