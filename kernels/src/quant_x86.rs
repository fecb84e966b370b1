//! AVX2+FMA dot products of `Q8_0` and `Q4_0` rows with f32 activations (used on every x86
//! path above scalar). A block's 32 integers are widened to f32 eight at a time and multiplied
//! into one 8-lane sum, which is then scaled by the block's `d` into the row's 8-lane total
//! (one FMA): the activations stay f32 (no 8-bit rounding), so results differ from the scalar
//! reference only by summation order.

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

/// `dot(row, x)` for a `Q8_0` or `Q4_0` row of `x.len()` elements (whole blocks; the caller
/// checked the lengths).
///
/// # Safety
/// The CPU supports AVX2 and FMA; `row` holds `x.len() / 32` blocks of `wt`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_row(wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
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
