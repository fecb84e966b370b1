//! `e^x` on 8 f32 lanes, equal bit for bit to the scalar reference (`libm::expf`, FreeBSD's
//! `e_expf.c`): the same operations in the same order, no FMA (each product and sum rounded
//! as the reference rounds it), its branches as lane selects. libm's steps: for |x| > ln2/2,
//! `k` = the nearest integer to x/ln2 (±1 up to 1.5 ln2), `r = (x - k·ln2_hi) - k·ln2_lo`
//! (`k = 0` gives `r = x` through the same operations); a rational approximation of `e^r`;
//! then `scalbn(y, k)`, which pre-scales by 2^127 or 2^-102 out of the normal exponent range so
//! that only the last product rounds. Special lanes: |x| ≤ 2^-14 gives `1 + x`, NaN itself,
//! x ≥ 88.72 `x·2^127` (inf), x ≤ -103.97 zero.

use core::arch::x86_64::*;

// libm's constants (its decimal spellings in the comments).
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 6.9314575195e-01
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 1.4286067653e-06
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b); // 1.4426950216e+00
const P1: f32 = f32::from_bits(0x3e2a_aa8f); // 1.6666625440e-1
const P2: f32 = f32::from_bits(0xbb35_5215); // -2.7667332906e-3

/// `libm::expf` of each lane (see the module docs).
///
/// # Safety
/// The CPU supports AVX2 (callers are compiled with it; the function is inlined into them).
#[inline(always)]
pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let set = _mm256_set1_ps;
        let bits = _mm256_castps_si256(x);
        let hx = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fff_ffff));
        let above = |c: i32| _mm256_cmpgt_epi32(hx, _mm256_set1_epi32(c));
        let pick = |mask: __m256i, yes: __m256, no: __m256| _mm256_blendv_ps(no, yes, _mm256_castsi256_ps(mask));
        let pick_i = |mask: __m256i, yes: __m256i, no: __m256i| _mm256_blendv_epi8(no, yes, mask);
        // All ones where x is negative.
        let neg = _mm256_srai_epi32::<31>(bits);

        // k: 0 up to ln2/2, then ±1 up to 1.5 ln2, then trunc(x/ln2 ± 1/2).
        let half = pick(neg, set(-0.5), set(0.5));
        let k_far = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(set(INV_LN2), x), half));
        let k_near = _mm256_sub_epi32(_mm256_set1_epi32(1), _mm256_and_si256(neg, _mm256_set1_epi32(2)));
        let k = pick_i(above(0x3f85_1592), k_far, _mm256_and_si256(above(0x3eb1_7218), k_near));
        let kf = _mm256_cvtepi32_ps(k);
        let hi = _mm256_sub_ps(x, _mm256_mul_ps(kf, set(LN2_HI)));
        let lo = _mm256_mul_ps(kf, set(LN2_LO));
        let r = _mm256_sub_ps(hi, lo);

        // y = 1 + (r·c / (2 - c) - lo + hi), c = r - r²(P1 + r²·P2).
        let rr = _mm256_mul_ps(r, r);
        let c = _mm256_sub_ps(r, _mm256_mul_ps(rr, _mm256_add_ps(set(P1), _mm256_mul_ps(rr, set(P2)))));
        let q = _mm256_div_ps(_mm256_mul_ps(r, c), _mm256_sub_ps(set(2.0), c));
        let y = _mm256_add_ps(set(1.0), _mm256_add_ps(_mm256_sub_ps(q, lo), hi));

        // scalbn(y, k), k in -150..=128 here.
        let k_big = _mm256_cmpgt_epi32(k, _mm256_set1_epi32(127));
        let k_small = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), k);
        let y = pick(k_big, _mm256_mul_ps(y, set(f32::from_bits(0x7f00_0000))), y);
        let y = pick(k_small, _mm256_mul_ps(y, set(f32::from_bits(0x0c80_0000))), y);
        let k = pick_i(k_big, _mm256_sub_epi32(k, _mm256_set1_epi32(127)), k);
        let k = pick_i(k_small, _mm256_add_epi32(k, _mm256_set1_epi32(102)), k);
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k, _mm256_set1_epi32(127))));
        let e = _mm256_mul_ps(y, scale);

        // The special lanes, the later taking precedence (NaN last).
        let tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3900_0001), hx);
        let e = pick(tiny, _mm256_add_ps(set(1.0), x), e);
        let e = pick(_mm256_and_si256(neg, above(0x42cf_f1b4)), _mm256_setzero_ps(), e);
        let e =
            pick(_mm256_andnot_si256(neg, above(0x42b1_7217)), _mm256_mul_ps(x, set(f32::from_bits(0x7f00_0000))), e);
        pick(above(0x7f80_0000), x, e)
    }
}
