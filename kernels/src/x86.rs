//! The x86-64 instantiations of the SIMD template (`simd.rs`): the vector primitives of each
//! instruction set, written with `core::arch` intrinsics. Every load and store is unaligned
//! (`loadu`/`storeu`, masked or through a stack buffer for tails): weight rows come straight
//! from a memory map at any byte offset.

/// Hint that the line at `p` is read soon: into L1 (never faults; any address). SSE only, so
/// it inlines into every path's kernels.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    // SAFETY: PREFETCHT0 is only a hint: it never faults, whatever the address. (A safe fn in
    // recent Rust, `unsafe` in older releases: keep the block for those.)
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
}

/// Hint that the line at `p` is read later: into L2 (never faults; any address).
#[inline(always)]
pub(crate) fn prefetch_l2(p: *const u8) {
    // SAFETY: PREFETCHT1 is only a hint, as above.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(p.cast())
    }
}

/// AVX2 + FMA + F16C: 8 f32 lanes, 16 ymm registers (matmul tile 6 rows x 2 vectors).
pub(crate) mod avx2 {
    use super::{prefetch, prefetch_l2};

    use core::arch::x86_64::*;
    use core::ptr::copy_nonoverlapping;

    type V = __m256;
    const L: usize = 8;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn zero() -> V {
        _mm256_setzero_ps()
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn splat(v: f32) -> V {
        _mm256_set1_ps(v)
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm256_add_ps(a, b)
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn mul(a: V, b: V) -> V {
        _mm256_mul_ps(a, b)
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn div(a: V, b: V) -> V {
        _mm256_div_ps(a, b)
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn max(a: V, b: V) -> V {
        _mm256_max_ps(a, b)
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    /// `libm::expf` of each lane, bit for bit (`x86_exp.rs`).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn exp(v: V) -> V {
        // SAFETY: compiled for AVX2.
        unsafe { crate::x86_exp::exp8(v) }
    }
    /// # Safety: `p` is valid for reading one f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn bcast(p: *const f32) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    /// # Safety: `p` is valid for reading 8 f32 (any alignment).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ldx(p: *const f32) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm256_loadu_ps(p) }
    }
    /// # Safety: `p` is valid for reading `n < 8` f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ldx_tail(p: *const f32, n: usize) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            let mut b = [0f32; L];
            copy_nonoverlapping(p, b.as_mut_ptr(), n);
            _mm256_loadu_ps(b.as_ptr())
        }
    }
    /// # Safety: `p` is valid for reading 8 elements of type `WT`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ldw<const WT: u8>(p: *const u8) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            match WT {
                WF16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
                WBF16 => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))),
                _ => _mm256_loadu_ps(p.cast()),
            }
        }
    }
    /// # Safety: `p` is valid for reading `n < 8` elements of type `WT`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ldw_tail<const WT: u8>(p: *const u8, n: usize) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            let mut b = [0u8; 4 * L];
            copy_nonoverlapping(p, b.as_mut_ptr(), n * wsize(WT));
            ldw::<WT>(b.as_ptr())
        }
    }
    /// # Safety: `p` is valid for reading 8 i8.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ldq(p: *const i8) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
    }
    /// An f16 (its bits) widened to f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn h2f(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
    /// # Safety: `p` is valid for writing 8 f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn st(p: *mut f32, v: V) {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    /// # Safety: `p` is valid for writing `n < 8` f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn st_tail(p: *mut f32, v: V, n: usize) {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            let mut b = [0f32; L];
            _mm256_storeu_ps(b.as_mut_ptr(), v);
            copy_nonoverlapping(b.as_ptr(), p, n);
        }
    }
    /// Lane sum in a fixed order: (lo128 + hi128), then pairs, then the last two.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn hsum(v: V) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    crate::simd::simd_kernels!("avx2,fma,f16c", 2);
    crate::simd::row_kernels!("avx2,fma,f16c", 16);
}

/// AVX-512 F/BW/VL (+ AVX2, FMA, F16C): 16 f32 lanes, 32 zmm registers (matmul tile 6 rows x
/// 4 vectors); tails use masked loads and stores (masked-off lanes are not accessed). Built
/// with Rust >= 1.89 only (see build.rs).
#[cfg(runllama_avx512)]
pub(crate) mod avx512 {
    use super::{prefetch, prefetch_l2};

    use core::arch::x86_64::*;

    type V = __m512;
    const L: usize = 16;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn zero() -> V {
        _mm512_setzero_ps()
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn splat(v: f32) -> V {
        _mm512_set1_ps(v)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm512_add_ps(a, b)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn mul(a: V, b: V) -> V {
        _mm512_mul_ps(a, b)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn div(a: V, b: V) -> V {
        _mm512_div_ps(a, b)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn max(a: V, b: V) -> V {
        _mm512_max_ps(a, b)
    }
    /// `libm::expf` of each lane, bit for bit (`x86_exp.rs`, one half at a time).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn exp(v: V) -> V {
        // SAFETY: compiled for AVX2 and AVX-512 F.
        unsafe {
            let lo = crate::x86_exp::exp8(_mm512_castps512_ps256(v));
            let hi = crate::x86_exp::exp8(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_castps_pd(lo)),
                _mm256_castps_pd(hi),
            ))
        }
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    /// # Safety: `p` is valid for reading one f32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn bcast(p: *const f32) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm512_set1_ps(*p) }
    }
    /// # Safety: `p` is valid for reading 16 f32 (any alignment).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn ldx(p: *const f32) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm512_loadu_ps(p) }
    }
    /// # Safety: `p` is valid for reading `n < 16` f32 (the masked-off lanes are not read).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn ldx_tail(p: *const f32, n: usize) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm512_maskz_loadu_ps(mask(n), p) }
    }
    /// # Safety: `p` is valid for reading 16 elements of type `WT`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn ldw<const WT: u8>(p: *const u8) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            match WT {
                WF16 => _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())),
                WBF16 => {
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))))
                }
                _ => _mm512_loadu_ps(p.cast()),
            }
        }
    }
    /// # Safety: `p` is valid for reading `n < 16` elements of type `WT`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn ldw_tail<const WT: u8>(p: *const u8, n: usize) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            let m = mask(n);
            match WT {
                WF16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p.cast())),
                WBF16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(
                    m,
                    p.cast(),
                )))),
                _ => _mm512_maskz_loadu_ps(m, p.cast()),
            }
        }
    }
    /// # Safety: `p` is valid for reading 16 i8.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn ldq(p: *const i8) -> V {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
    }
    /// An f16 (its bits) widened to f32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn h2f(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
    /// # Safety: `p` is valid for writing 16 f32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn st(p: *mut f32, v: V) {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    /// # Safety: `p` is valid for writing `n < 16` f32 (the masked-off lanes are not written).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn st_tail(p: *mut f32, v: V, n: usize) {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _mm512_mask_storeu_ps(p, mask(n), v) }
    }
    /// Lane sum in a fixed order: (lo256 + hi256), then as AVX2's.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn hsum(v: V) -> f32 {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let v = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    crate::simd::simd_kernels!("avx512f,avx512bw,avx512vl,avx2,fma,f16c", 4);
    crate::simd::row_kernels!("avx512f,avx512bw,avx512vl,avx2,fma,f16c", 32);
}
