//! x86 integer dot products of quantized weight rows with quantized activations (the formats
//! of `qdot.rs`), used on every x86 path above scalar: per row (the matrix-vector product of
//! decoding), and the batched tile kernel's shared pieces (`qdot_x86_tile.rs`). The integer
//! sums are exact and equal the reference's: unsigned weight quants times signed activation
//! bytes by `vpmaddubsw` (pairs into i16, no saturation at these ranges) and `vpmaddwd`, or by
//! one `vpdpbusd` on CPUs with AVX-512 VNNI or AVX-VNNI ([`NO_VNNI`] and its siblings name the
//! three); signed × signed by the sign trick. A 32-element type's 8 block sums of a group become
//! the lanes of one vector (a fixed tree of adds) for one multiply-add by the blocks' scales; a
//! K-quant's sub-block sums are weighted by their integer scales. Only the f32 sums of the terms
//! are ordered differently from the reference.
//! Decoding's `Q4_0` rows take their token's activation quants re-laid once per call ([`Laid`])
//! in the order of the weights' packed nibbles, which saves unpacking work and most of the tree.
//!
//! On AVX-512 VNNI cores (`CpuFeatures::wide_int`: Intel's, Zen 4) decoding's rows of the common
//! types (`Q4_0`, `Q8_0`, `Q4_K`, `Q5_K`, `Q6_K`) run on 512-bit vectors instead
//! (`qdot_x86_wide.rs`).
//! The row kernels take a flag `pf`: prefetch each group's bytes [`QPF`] ahead as it is summed.
//! On CPUs with GFNI the AVX-VNNI and AVX-512 paths' decode rows take the packed bit fields
//! apart with one `vgf2p8affineqb` each ([`bits_to`]) where shifts and masks take one to three
//! instructions (a const parameter `G`; the AVX2 path, Zen 3's, keeps the shifts).
//!
//! Each type has its own instance of the loops (a const-generic type tag), so that nothing is
//! decided per block. Helpers are `#[inline(always)]` functions, not closures: a closure is
//! compiled without its caller's target features, so its intrinsics would be calls.

use core::arch::x86_64::*;

use crate::qdot::{g32_fields, k_factors, AK_BSUMS, AK_BYTES, G32, G32_BYTES};
use crate::quant::QK;
use crate::WeightType;

/// The f16 at `p`, widened (F16C, inline: no call into a non-AVX function per block).
#[inline(always)]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points at two bytes of a block; every x86 path above scalar has F16C.
        let bits = u16::from_le_bytes([*p, *p.add(1)]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
}

/// The f16 at `p`, widened, in every lane. (With every lane used the compiler keeps the
/// broadcast load; for one lane it merged the load with `vpinsrw` into whatever register it
/// liked, at times a loop's accumulator, which made a false dependency through the loop.)
#[inline(always)]
unsafe fn f16_splat(p: *const u8) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points at two bytes of a block.
        _mm256_cvtph_ps(_mm_set1_epi16((p as *const u16).read_unaligned() as i16))
    }
}

#[inline(always)]
pub(crate) unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points at four bytes of an activation block.
        (p as *const f32).read_unaligned()
    }
}

/// Horizontal sum of 8 lanes, in a fixed order.
#[inline(always)]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

/// How the kernels multiply bytes (their const parameter `V`): `vpmaddubsw` and `vpmaddwd`
/// (AVX2), or with VNNI one `vpdpbusd`, EVEX-encoded (AVX-512 VNNI with VL; also `vpdpwssd` for
/// i16 pairs, see [`madd_acc`]) or VEX-encoded (AVX-VNNI). Each value is only used in functions
/// compiled for the features it needs. The sums are the same whichever multiplies.
pub(crate) const NO_VNNI: u8 = 0;
/// See [`NO_VNNI`]: AVX-512 VNNI and VL.
pub(crate) const VNNI_EVEX: u8 = 1;
/// See [`NO_VNNI`]: AVX-VNNI.
pub(crate) const VNNI_VEX: u8 = 2;

/// Σ over 4-byte groups of `u[i] * s[i]` (unsigned × signed bytes) as i32 lanes: one
/// `vpdpbusd` with VNNI (`V`), else `vpmaddubsw` (pairs into i16; no saturation at the ranges
/// here) and `vpmaddwd` by ones.
#[inline(always)]
pub(crate) unsafe fn dot_us<const V: u8>(u: __m256i, s: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        if V == NO_VNNI {
            return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
        }
        dot_us_acc::<V>(_mm256_setzero_si256(), u, s)
    }
}

/// `acc +` [`dot_us`]`(u, s)`: one `vpdpbusd` with VNNI.
#[inline(always)]
pub(crate) unsafe fn dot_us_acc<const V: u8>(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY (of both): `V` is only set in functions compiled for the features it names.
        #[cfg(runllama_avx512)]
        if V == VNNI_EVEX {
            return _mm256_dpbusd_epi32(acc, u, s);
        }
        #[cfg(runllama_avx512)]
        if V == VNNI_VEX {
            return _mm256_dpbusd_avx_epi32(acc, u, s);
        }
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
    }
}

/// Σ over 4-byte groups of `a[i] * b[i]` (signed × signed bytes) as i32 lanes.
#[inline(always)]
pub(crate) unsafe fn dot_ss<const V: u8>(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { dot_us::<V>(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a)) }
}

/// 0xFF in byte `i` where bit `i` of the little-endian u32 at `p` is set, 0 elsewhere.
#[inline(always)]
unsafe fn bytes_from_bits(p: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points at four bytes of a block.
        let v = _mm256_set1_epi32((p as *const u32).read_unaligned() as i32);
        // Bytes 0..8 take the word's byte 0, 8..16 byte 1, 16..24 byte 2, 24..32 byte 3.
        let pick = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
        let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, pick), mask), mask)
    }
}

/// The 32 nibbles of the 16 bytes at `p`, in element order (low nibbles first).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points at 16 bytes of a block.
        let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        // The upper copy shifted right by 4 (per 64-bit lane: no bits cross the nibble boundary
        // that the mask keeps).
        let shifted = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
        _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
    }
}

/// The 32 bytes at `b + at`.
#[inline(always)]
pub(crate) unsafe fn ld(b: *const u8, at: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points inside a block with 32 bytes from `at`.
        _mm256_loadu_si256(b.add(at) as *const __m256i)
    }
}

/// Each 16-bit lane of `v` shifted right by `n`.
#[inline(always)]
unsafe fn sh(v: __m256i, n: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { _mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32)) }
}

/// Most tokens one call of [`products`] takes (the tile kernel keeps two accumulators per token).
pub(crate) const MAX_TOKENS: usize = 256;

/// Tokens one call of [`products`] is given for weights of `wt`: the tile kernel unpacks each
/// unit of 8 rows once per call. A K-quant's unpacking costs more (scales, a transpose per
/// group): 256 tokens (measured on Zen 4, one thread, 4096 x 4096 x 128 tokens: 228 -> 250
/// Gelem/s against 64); for the 32-element types more tokens only push their activations out of
/// L2 (220 -> 200 with 128).
pub(crate) const fn tokens_per_call(wt: WeightType) -> usize {
    if wt.block_elems() == QK {
        64
    } else {
        MAX_TOKENS
    }
}

/// A product of quantized rows with quantized activations: `out[t * rows + r] = dot(row r,
/// token t)` for the `rows` rows of `w` (`blocks` blocks of `wt` each, back to back) and the
/// tokens' activations `acts[t]` (at most [`MAX_TOKENS`]).
pub(crate) struct Products<'a> {
    pub wt: WeightType,
    pub w: &'a [u8],
    pub rows: usize,
    pub blocks: usize,
    pub acts: &'a [*const u8],
    pub out: &'a mut [f32],
}

/// Run `job`: row by row and token by token (the matrix-vector product of decoding), or with
/// `tile` (batched products) the tile kernel (8 rows at a time; the same integer sums, the f32
/// sums by row). `vnni` says how bytes are multiplied ([`NO_VNNI`], [`VNNI_EVEX`] or
/// [`VNNI_VEX`]: the same sums).
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C, and what `vnni` names: AVX-512 F, VL and VNNI, or
/// AVX-VNNI; `w` holds `rows` rows of `blocks` blocks of `wt`, each of `acts` points at the
/// activations of a row, and `out` holds `acts.len() * rows` (the caller checked the lengths).
pub(crate) unsafe fn products(vnni: u8, tile: bool, job: Products<'_>) {
    #[cfg(runllama_avx512)]
    match vnni {
        // SAFETY: the caller's contract (AVX-512 VNNI and VL), and GFNI detected.
        VNNI_EVEX if !tile && crate::detected().gfni => return unsafe { products_vnni_gfni(job) },
        // SAFETY: the caller's contract (AVX-512 VNNI and VL).
        VNNI_EVEX => return unsafe { products_vnni(tile, job) },
        // SAFETY: the caller's contract (AVX-VNNI), and GFNI detected.
        VNNI_VEX if !tile && crate::detected().gfni => return unsafe { products_avxvnni_gfni(job) },
        // SAFETY: the caller's contract (AVX-VNNI).
        VNNI_VEX => return unsafe { products_avxvnni(tile, job) },
        _ => {}
    }
    let _ = vnni;
    // SAFETY: the caller's contract.
    unsafe { products_avx2(tile, job) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn products_avx2(tile: bool, job: Products<'_>) {
    // SAFETY: the caller's contract.
    unsafe { products_with::<NO_VNNI, false>(tile, job) }
}

#[cfg(runllama_avx512)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn products_vnni(tile: bool, job: Products<'_>) {
    // SAFETY: the caller's contract.
    unsafe { products_with::<VNNI_EVEX, false>(tile, job) }
}

/// [`products_vnni`]'s rows (no tile) on a CPU that also has GFNI (Intel's from Ice Lake on,
/// AMD's from Zen 4 on), whose rows take their bit fields apart with it.
#[cfg(runllama_avx512)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
unsafe fn products_vnni_gfni(job: Products<'_>) {
    // SAFETY: the caller's contract.
    unsafe { products_with::<VNNI_EVEX, true>(false, job) }
}

#[cfg(runllama_avx512)]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn products_avxvnni(tile: bool, job: Products<'_>) {
    // SAFETY: the caller's contract.
    unsafe { products_with::<VNNI_VEX, false>(tile, job) }
}

/// [`products_avxvnni`]'s rows (no tile) on a CPU that also has GFNI (Intel's client cores
/// from Alder Lake on). The AVX2 path never takes GFNI: it stands for CPUs without it (AMD's
/// Zen 3 and older).
#[cfg(runllama_avx512)]
#[target_feature(enable = "avx2,fma,f16c,avxvnni,gfni")]
unsafe fn products_avxvnni_gfni(job: Products<'_>) {
    // SAFETY: the caller's contract.
    unsafe { products_with::<VNNI_VEX, true>(false, job) }
}

/// [`products`]' body, inlined into a function compiled for the features `V` needs (and GFNI
/// where `G`: see [`crate::qdot_x86_wide::row_q45k`]).
#[inline(always)]
unsafe fn products_with<const V: u8, const G: bool>(tile: bool, job: Products<'_>) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        use tags::*;
        let Products { wt, w, rows, blocks, acts, out } = job;
        let rb = blocks * wt.block_bytes();
        let prefetch = crate::detected().quant_prefetch();
        let wide = V == VNNI_EVEX && !tile && crate::detected().wide_int();
        // SAFETY (of each call): the caller's contract; row `r` is within `w`, tokens within `acts`.
        macro_rules! run {
            ($f:ident, $t:expr) => {
                run!($f::<$t, V>, $t)
            };
            ($f:ident::<$($g:tt),+>, $t:expr) => {{
                if tile {
                    return crate::qdot_x86_tile::products::<$t, V>(w.as_ptr(), rows, blocks, acts, out);
                }
                for (t, &a) in acts.iter().enumerate() {
                    for r in stream_order(rows, prefetch) {
                        let row = w.as_ptr().add(r * rb);
                        out[t * rows + r] = $f::<$($g),+>(row, a, blocks, prefetch && t == 0);
                    }
                }
            }};
        }
        match wt {
            #[cfg(runllama_avx512)]
            WeightType::Q8_0 if wide => run!(row_wide::<Q8_0, V, G>, Q8_0),
            WeightType::Q4_0 if !tile && laid_fits(blocks) => {
                let mut laid = core::mem::MaybeUninit::<Laid>::uninit();
                let laid = laid.as_mut_ptr() as *mut u8;
                for (t, &a) in acts.iter().enumerate() {
                    let pf = prefetch && t == 0;
                    // SAFETY (of the layouts): `laid` has room for the row's groups
                    // (`laid_fits`); each row reads only the bytes written here.
                    #[cfg(runllama_avx512)]
                    if wide {
                        crate::qdot_x86_wide::lay_q4_0(a, blocks, laid);
                        for r in stream_order(rows, prefetch) {
                            let row = w.as_ptr().add(r * rb);
                            out[t * rows + r] = crate::qdot_x86_wide::row_q4_0::<G>(row, a, laid, blocks, pf);
                        }
                        continue;
                    }
                    lay_q4_0_pairs(a, blocks, laid);
                    for r in stream_order(rows, prefetch) {
                        out[t * rows + r] = row_q4_0_pairs::<V, G>(w.as_ptr().add(r * rb), a, laid, blocks, pf);
                    }
                }
            }
            #[cfg(runllama_avx512)]
            WeightType::Q4_K | WeightType::Q5_K if wide && blocks * crate::qdot_x86_wide::LAID_K <= LAID_BYTES => {
                let mut laid = core::mem::MaybeUninit::<Laid>::uninit();
                let laid = laid.as_mut_ptr() as *mut u8;
                for (t, &a) in acts.iter().enumerate() {
                    // SAFETY (of the layout): `laid` has room for the row's super-blocks (the
                    // guard above); each row reads only the bytes written here.
                    crate::qdot_x86_wide::lay_q45k(a, blocks, laid);
                    for r in stream_order(rows, prefetch) {
                        let row = w.as_ptr().add(r * rb);
                        out[t * rows + r] = if wt == WeightType::Q4_K {
                            crate::qdot_x86_wide::row_q45k::<Q4_K, G>(row, a, laid, blocks, prefetch && t == 0)
                        } else {
                            crate::qdot_x86_wide::row_q45k::<Q5_K, G>(row, a, laid, blocks, prefetch && t == 0)
                        };
                    }
                }
            }
            WeightType::Q8_0 => run!(row32, Q8_0),
            WeightType::Q4_0 => run!(row32, Q4_0),
            WeightType::Q4_1 => run!(row32, Q4_1),
            WeightType::Q5_0 => run!(row32, Q5_0),
            WeightType::Q5_1 => run!(row32, Q5_1),
            WeightType::Q2_K => run!(row_k::<Q2_K, V, G>, Q2_K),
            WeightType::Q3_K => run!(row_k::<Q3_K, V, G>, Q3_K),
            WeightType::Q4_K => run!(row_k::<Q4_K, V, G>, Q4_K),
            WeightType::Q5_K => run!(row_k::<Q5_K, V, G>, Q5_K),
            #[cfg(runllama_avx512)]
            WeightType::Q6_K if wide => run!(row_wide::<Q6_K, V, G>, Q6_K),
            WeightType::Q6_K => run!(row_k::<Q6_K, V, G>, Q6_K),
            WeightType::F32 | WeightType::F16 | WeightType::BF16 => unreachable!("not a block type: {wt:?}"),
        }
    }
}

/// The order in which decoding sums `rows` rows: with `two`, row `i` of each half of the
/// rows in turn (then the odd last row), so that two memory streams run through the matrix,
/// each sequential through its half, as `matvec`'s float rows do in four parts. On the Xeon
/// (CPUID family 6 model 207) one core reads more with two streams in flight: one thread over
/// 11008 x 4096 rows 10.8-11.5 -> 11.7-12.7 GiB/s (Q4_0, Q4_K), and a 2-thread 7B decode
/// 5-10 % faster (tg32 of Q4_0 5.68-5.89 -> 6.05-6.30 tok/s, Q4_K_M tg/limit 0.73-0.82 ->
/// 0.77-0.88, binaries alternating); four streams were slower than two. Rows are summed
/// independently, so the order changes no result. Taken where quantized decoding prefetches
/// (`CpuFeatures::quant_prefetch`, Intel).
fn stream_order(rows: usize, two: bool) -> impl Iterator<Item = usize> {
    let h = if two { rows / 2 } else { 0 };
    (0..h).flat_map(move |i| [i, h + i]).chain(2 * h..rows)
}

/// The 512-bit row kernel of `T` (`Q8_0` or `Q6_K`: [`crate::qdot_x86_wide`]) under the row
/// kernels' signature (`Q6_K`'s high bits by GFNI where `G`).
#[cfg(runllama_avx512)]
#[inline(always)]
unsafe fn row_wide<const T: u8, const V: u8, const G: bool>(
    row: *const u8,
    acts: *const u8,
    blocks: usize,
    pf: bool,
) -> f32 {
    // SAFETY: the caller's contract; `V` is `VNNI_EVEX` (AVX-512 BW and VNNI compiled in), and
    // GFNI where `G`.
    unsafe {
        match wt_of(T) {
            WeightType::Q6_K => crate::qdot_x86_wide::row_q6k::<G>(row, acts, blocks, pf),
            _ => crate::qdot_x86_wide::row32::<T>(row, acts, blocks, pf),
        }
    }
}

/// Bytes ahead of the block being summed that decoding prefetches into L1, where
/// `CpuFeatures::quant_prefetch` says software prefetches pay (Intel): the rows are
/// contiguous, so this is the matrix's stream about two 4096-column Q4_K rows ahead. Each group
/// of blocks prefetches its own lines as it is summed: issued as one burst per row they were
/// 13-20 % slower (Xeon model 207, e2e tg32 of 7B Q4_K_M, 2 threads: 5.8 against 6.1-6.8 tok/s);
/// 8 and 12 KiB ahead measured the same as 4, 2 KiB slower; one prefetch per line instead of
/// one per 64 bytes of each block 1-2 % slower, one per 128 bytes 12 % slower.
const QPF: usize = 4096;

/// Bytes ahead that decoding also prefetches into L2 (`prefetcht1`). On the Xeon (model 207)
/// the L1 prefetches alone keep too few lines in flight per core; adding `prefetcht2` 12 KiB
/// ahead made a 2-thread 7B decode 11-14 % faster (e2e tg32, alternating, 3 rounds: Q4_K_M
/// 6.96-7.07 -> 7.72-7.81 tok/s, tg/limit 0.80-0.82 -> 0.88-0.92; Q8_0 4.23-4.25 -> 4.69-4.74,
/// 0.84-0.88 -> 0.94-0.98); `prefetcht1` 12 KiB ahead, and `prefetcht2` 8 or 16 KiB ahead,
/// measured alike (2 more rounds: Q4_K_M 7.74-7.95, Q8_0 4.74-4.80). A burst of prefetches
/// over the first `QPF_L2` bytes of each stream at the start of every `products` call (which
/// these prefetches do not reach) was no faster (2026-12-07, Q4_K_M, 5 rounds alternating: tg /
/// limit 0.75-0.78 against 0.77-0.82 without).
const QPF_L2: usize = 3 * QPF;

/// Prefetch the `len` bytes [`QPF`] past `row` into L1 and those [`QPF_L2`] past it into L2 (a
/// hint: an address past the matrix is harmless).
#[inline(always)]
pub(crate) fn prefetch_ahead(row: *const u8, len: usize) {
    for o in (0..len).step_by(64) {
        crate::x86::prefetch(row.wrapping_add(QPF + o));
        crate::x86::prefetch_l2(row.wrapping_add(QPF_L2 + o));
    }
}

/// The block types' tags for the kernels' const generic parameter (their discriminants;
/// [`wt_of`] maps a tag back).
pub(crate) mod tags {
    use crate::WeightType;
    pub(crate) const Q8_0: u8 = WeightType::Q8_0 as u8;
    pub(crate) const Q4_0: u8 = WeightType::Q4_0 as u8;
    pub(crate) const Q4_1: u8 = WeightType::Q4_1 as u8;
    pub(crate) const Q5_0: u8 = WeightType::Q5_0 as u8;
    pub(crate) const Q5_1: u8 = WeightType::Q5_1 as u8;
    pub(crate) const Q2_K: u8 = WeightType::Q2_K as u8;
    pub(crate) const Q3_K: u8 = WeightType::Q3_K as u8;
    pub(crate) const Q4_K: u8 = WeightType::Q4_K as u8;
    pub(crate) const Q5_K: u8 = WeightType::Q5_K as u8;
    pub(crate) const Q6_K: u8 = WeightType::Q6_K as u8;
}

/// The type whose discriminant is `t`.
#[inline(always)]
pub(crate) const fn wt_of(t: u8) -> WeightType {
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

/// One 32-element block of type `T` as the unsigned bytes `u = q + OFF` ([`off32`]) that
/// [`dot32`] multiplies (for `Q8_0` without VNNI, the signed quants and no offset:
/// `vpmaddubsw` could saturate on 255 × 127).
#[inline(always)]
pub(crate) unsafe fn unpack32<const T: u8, const V: u8>(b: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY (of the loads): the caller points `b` at a whole block of `T`.
        match wt_of(T) {
            WeightType::Q8_0 if V != NO_VNNI => _mm256_xor_si256(ld(b, 2), _mm256_set1_epi8(-128)),
            WeightType::Q8_0 => ld(b, 2),
            WeightType::Q4_0 => nibbles(b.add(2)),
            WeightType::Q4_1 => nibbles(b.add(4)),
            WeightType::Q5_0 => {
                _mm256_or_si256(nibbles(b.add(6)), _mm256_and_si256(bytes_from_bits(b.add(2)), _mm256_set1_epi8(16)))
            }
            WeightType::Q5_1 => {
                _mm256_or_si256(nibbles(b.add(8)), _mm256_and_si256(bytes_from_bits(b.add(4)), _mm256_set1_epi8(16)))
            }
            _ => unreachable!(),
        }
    }
}

/// i32 lanes summing to `Σ u y` for a block unpacked by [`unpack32`] and the 32 activation
/// quants at `y`.
#[inline(always)]
unsafe fn dot32<const T: u8, const V: u8>(u: __m256i, y: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points `y` at 32 activation quants.
        let y = _mm256_loadu_si256(y as *const __m256i);
        match wt_of(T) {
            WeightType::Q8_0 if V == NO_VNNI => dot_ss::<V>(u, y),
            _ => dot_us::<V>(u, y),
        }
    }
}

/// log2 of the offset [`unpack32`] adds to type `T`'s quants (`None`: none).
pub(crate) const fn off32(t: u8, vnni: bool) -> Option<i32> {
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
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (a, b) = (_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        let (c, d) = (_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
        // Lanes of each: vector 0..4 (resp. 4..8) low halves' sums, then their high halves'.
        let (lo, hi) = (_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
        _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31))
    }
}

/// The f16 at byte `at` of each of `n` (at most 8) blocks `bb` bytes apart from `b`, widened;
/// lanes from `n` on zero. The halves are packed into two 64-bit words in general-purpose
/// registers (the integer units are idle in these loops; a `vpgatherdd` cost a quarter of a
/// Q4_0 row's time on Zen 4).
#[inline(always)]
unsafe fn f16x8(b: *const u8, bb: usize, at: usize, n: usize) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points at `n` blocks with two bytes at `at`.
        let h = |k: usize| if k < n { (b.add(k * bb + at) as *const u16).read_unaligned() as u64 } else { 0 };
        let lo = h(0) | h(1) << 16 | h(2) << 32 | h(3) << 48;
        let hi = h(4) | h(5) << 16 | h(6) << 32 | h(7) << 48;
        _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
    }
}

/// Bytes of re-laid activation quants that the `Q4_0` rows of decoding take ([`lay_q4_0_pairs`],
/// `qdot_x86_wide::lay_q4_0`: rows of up to 32768 columns; longer rows run [`row32`]), and the
/// 512-bit `Q4_K`/`Q5_K` rows (`qdot_x86_wide::lay_q45k`: the same; longer rows run [`row_k`]).
pub(crate) const LAID_BYTES: usize = 32 * 1024;

/// A token's activation quants re-laid for the `Q4_0` or the 512-bit `Q4_K`/`Q5_K` rows, on the
/// stack.
#[repr(C, align(64))]
pub(crate) struct Laid(pub [u8; LAID_BYTES]);

/// Bytes of one group's re-laid quants.
pub(crate) const LAID_GROUP: usize = G32 * QK;

/// Whether the full groups of a row of `blocks` `Q4_0` blocks fit [`Laid`].
pub(crate) const fn laid_fits(blocks: usize) -> bool {
    blocks / G32 * LAID_GROUP <= LAID_BYTES
}

/// Re-lay the quants of a token's `Q4_0` activations (`blocks` blocks at `acts`) for
/// [`row_q4_0_pairs`]: per full group of 8 blocks 256 bytes at `out`, per pair of blocks `2j,
/// 2j + 1` 32 bytes of their elements 0-15 (block `2j`'s in the low 128 bits) and 32 of their
/// elements 16-31: the order of a pair's packed bytes' low and high nibbles. Done once per call
/// of `products` and token (a thread's piece of a product's rows).
///
/// # Safety
/// AVX2; `acts` points at the activations of `blocks` blocks; `out` at room for their full
/// groups ([`laid_fits`]).
#[inline(always)]
unsafe fn lay_q4_0_pairs(acts: *const u8, blocks: usize, out: *mut u8) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let qs_at = g32_fields(G32).3;
        for g in 0..blocks / G32 {
            let (q, o) = (acts.add(g * G32_BYTES + qs_at), out.add(LAID_GROUP * g));
            for j in 0..G32 / 2 {
                let (x, y) = (ld(q, 64 * j), ld(q, 64 * j + QK));
                let to = o.add(64 * j) as *mut __m256i;
                _mm256_storeu_si256(to, _mm256_permute2x128_si256::<0x20>(x, y));
                _mm256_storeu_si256(to.add(1), _mm256_permute2x128_si256::<0x31>(x, y));
            }
        }
    }
}

/// The dot product of one `Q4_0` row with a token's activations (`acts`, their quants re-laid
/// at `laid` by [`lay_q4_0_pairs`]), the same bits as [`row32`]: per pair of blocks their 32
/// packed bytes in one vector, whose low and high nibbles meet the re-laid activations (with
/// VNNI two `vpdpbusd`, else two `vpmaddubsw` whose i16 sums add before one `vpmaddwd`): four
/// lanes per block, and three `vphaddd` and a permute make the group's 8 block sums (for
/// [`group32_finish`]) instead of [`sum8`]'s tree of eight vectors. With `G` (GFNI) the high
/// nibbles come down by one affine transform ([`bits_to`]) instead of a shift and a mask.
///
/// # Safety
/// As [`row32`], and GFNI where `G`; `laid` holds [`lay_q4_0_pairs`]'s layout of `acts`.
#[inline(always)]
unsafe fn row_q4_0_pairs<const V: u8, const G: bool>(
    row: *const u8,
    acts: *const u8,
    laid: *const u8,
    blocks: usize,
    pf: bool,
) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        use tags::Q4_0;
        let bb = WeightType::Q4_0.block_bytes();
        let nib = _mm256_set1_epi8(0x0F);
        // The third `vphaddd` leaves blocks 0, 2, 4, 6 in the low lanes and 1, 3, 5, 7 above.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut acc = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let full = blocks / G32;
        for g in 0..full {
            // SAFETY (of every access): the caller's contract, group `g`'s blocks, activations
            // and re-laid quants.
            let ((b, a), q) = (group32_at(row, acts, g, bb, pf), laid.add(LAID_GROUP * g));
            let mut p = [_mm256_setzero_si256(); 4];
            for (j, pj) in p.iter_mut().enumerate() {
                let x = b.add(2 * j * bb + 2);
                let packed = _mm256_inserti128_si256::<1>(
                    _mm256_castsi128_si256(_mm_loadu_si128(x as *const __m128i)),
                    _mm_loadu_si128(x.add(bb) as *const __m128i),
                );
                let lo = _mm256_and_si256(packed, nib);
                let hi = if G {
                    gf(packed, bits_to(4, 4, 0))
                } else {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(packed), nib)
                };
                let (al, ah) = (ld(q, 64 * j), ld(q, 64 * j + QK));
                *pj = if V != NO_VNNI {
                    dot_us_acc::<V>(dot_us::<V>(lo, al), hi, ah)
                } else {
                    // Each i16 at most 2 x 15 x 128 before the add: no saturation.
                    let s = _mm256_add_epi16(_mm256_maddubs_epi16(lo, al), _mm256_maddubs_epi16(hi, ah));
                    _mm256_madd_epi16(s, _mm256_set1_epi16(1))
                };
            }
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
            acc = group32_finish::<Q4_0, V, true>(b, a, G32, _mm256_permutevar8x32_epi32(h, order), acc);
        }
        // SAFETY: the caller's contract, for the blocks after the full groups.
        row32_tail::<Q4_0, V>(row, acts, blocks, acc)
    }
}

/// The dot product of one row of a 32-element type with a token's activations `acts`: per
/// group of 8 blocks, each block's integer sum (one lane per block), the offset taken off with
/// the activations' sums, then one multiply-add by the 8 blocks' scale products (and for the
/// types with a minimum, one by the minimums and the activations' `s`).
#[inline(always)]
unsafe fn row32<const T: u8, const V: u8>(row: *const u8, acts: *const u8, blocks: usize, pf: bool) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let bb = wt_of(T).block_bytes();
        let mut acc = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let full = blocks / G32;
        for g in 0..full {
            // SAFETY: the caller's contract: blocks `8g .. 8g + 8` and group `g` exist.
            let (b, a) = group32_at(row, acts, g, bb, pf);
            acc = group32::<T, V, true>(b, a, G32, acc);
        }
        // SAFETY: the caller's contract, for the blocks after the full groups.
        row32_tail::<T, V>(row, acts, blocks, acc)
    }
}

/// The end of a 32-element row's product after its full groups of 8 blocks: the last group's
/// `blocks % 8` blocks ([`group32`]) added into the `(scales, minimums)` accumulators, then
/// their sum.
///
/// # Safety
/// As [`row32`].
#[inline(always)]
pub(crate) unsafe fn row32_tail<const T: u8, const V: u8>(
    row: *const u8,
    acts: *const u8,
    blocks: usize,
    mut acc: (__m256, __m256),
) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let full = blocks / G32;
        if blocks > full * G32 {
            let bb = wt_of(T).block_bytes();
            // SAFETY: the last `blocks - 8 full` blocks and their activations' group.
            acc =
                group32::<T, V, false>(row.add(full * G32 * bb), acts.add(full * G32_BYTES), blocks - full * G32, acc);
        }
        hsum(acc.0) + hsum(acc.1)
    }
}

/// The 8 four-byte values at `a + at` (`FULL`), or the first `n` and zeros.
#[inline(always)]
unsafe fn lanes<const FULL: bool>(a: *const u8, at: usize, n: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        if FULL {
            // SAFETY: the caller points at 32 bytes.
            return ld(a, at);
        }
        let mut v = [0u32; 8];
        for (k, l) in v.iter_mut().enumerate().take(n) {
            // SAFETY: the caller points at `4n` bytes.
            *l = (a.add(at + 4 * k) as *const u32).read_unaligned();
        }
        _mm256_loadu_si256(v.as_ptr() as *const __m256i)
    }
}

/// Group `g` of a row of 32-element blocks (`bb` bytes each) at `row`, and its activations'
/// group in `acts`: `(blocks, activations)`; with `pf`, the group's blocks prefetched ahead.
///
/// # Safety
/// `row` and `acts` hold group `g`.
#[inline(always)]
pub(crate) unsafe fn group32_at(
    row: *const u8,
    acts: *const u8,
    g: usize,
    bb: usize,
    pf: bool,
) -> (*const u8, *const u8) {
    // SAFETY: the caller's contract: both offsets lie within their rows.
    let (b, a) = unsafe { (row.add(g * G32 * bb), acts.add(g * G32_BYTES)) };
    if pf {
        prefetch_ahead(b, G32 * bb);
    }
    (b, a)
}

/// One group of [`row32`]: `n` blocks at `b`, their activations' group at `a` (`FULL`: `n` is
/// 8, and every loop has a fixed length); the `(scales, minimums)` accumulators.
#[inline(always)]
pub(crate) unsafe fn group32<const T: u8, const V: u8, const FULL: bool>(
    b: *const u8,
    a: *const u8,
    n: usize,
    (acc, accm): (__m256, __m256),
) -> (__m256, __m256) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let bb = wt_of(T).block_bytes();
        let n = if FULL { G32 } else { n };
        let qs_at = g32_fields(n).3;
        // SAFETY (of every access below): the caller points `b` at `n` blocks of `T`, and `a` at
        // their activations' group.
        let mut p = [_mm256_setzero_si256(); 8];
        for (k, pk) in p.iter_mut().enumerate() {
            if FULL || k < n {
                *pk = dot32::<T, V>(unpack32::<T, V>(b.add(k * bb)), a.add(qs_at + QK * k));
            }
        }
        group32_finish::<T, V, FULL>(b, a, n, sum8(p), (acc, accm))
    }
}

/// The rest of [`group32`] after the `n` blocks' integer sums `sumi` (one lane each): the
/// offsets taken off, the scales applied, added into the `(scales, minimums)` accumulators.
#[inline(always)]
pub(crate) unsafe fn group32_finish<const T: u8, const V: u8, const FULL: bool>(
    b: *const u8,
    a: *const u8,
    n: usize,
    sumi: __m256i,
    (acc, accm): (__m256, __m256),
) -> (__m256, __m256) {
    // SAFETY: the caller upholds [`group32`]'s `# Safety` contract.
    unsafe {
        let bb = wt_of(T).block_bytes();
        let n = if FULL { G32 } else { n };
        let acc = group32_scaled::<T, V, FULL>(a, n, sumi, f16x8(b, bb, 0, n), acc);
        if !matches!(wt_of(T), WeightType::Q4_1 | WeightType::Q5_1) {
            return (acc, accm);
        }
        let s = _mm256_castsi256_ps(lanes::<FULL>(a, g32_fields(n).1, n));
        (acc, _mm256_fmadd_ps(f16x8(b, bb, 2, n), s, accm))
    }
}

/// `acc +` the `n` blocks' terms from their integer sums `sumi` and the weights' scales `dw`
/// (widened, one lane each): the offsets taken off with the activations' sums (at `a`, their
/// group), then one multiply-add by the scale products.
///
/// # Safety
/// As [`group32`].
#[inline(always)]
pub(crate) unsafe fn group32_scaled<const T: u8, const V: u8, const FULL: bool>(
    a: *const u8,
    n: usize,
    mut sumi: __m256i,
    dw: __m256,
    acc: __m256,
) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let n = if FULL { G32 } else { n };
        let (d_at, _, sum_at, _) = g32_fields(n);
        if let Some(shift) = off32(T, V != NO_VNNI) {
            sumi = _mm256_sub_epi32(sumi, _mm256_sll_epi32(lanes::<FULL>(a, sum_at, n), _mm_cvtsi32_si128(shift)));
        }
        let d = _mm256_mul_ps(dw, _mm256_castsi256_ps(lanes::<FULL>(a, d_at, n)));
        _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc)
    }
}

/// The dot product of one row of a K-quant with a token's activations `acts`: per super-block,
/// each group of 32 quants (unsigned) times the activations, weighted by its sub-block scales;
/// the minimums or offsets from the activations' sums of 16. Even and odd super-blocks in two
/// accumulators.
#[inline(always)]
unsafe fn row_k<const T: u8, const V: u8, const G: bool>(
    row: *const u8,
    acts: *const u8,
    blocks: usize,
    pf: bool,
) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let bb = wt_of(T).block_bytes();
        let zero = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut even, mut odd) = (zero, zero);
        // Out of the compiler's sight (see `SCALE_PICKS`).
        let picks = core::hint::black_box(SCALE_PICKS.0.as_ptr());
        // Super-block `i`'s terms added into `acc`.
        macro_rules! term {
            ($i:expr, $acc:expr) => {
                match wt_of(T) {
                    WeightType::Q4_K | WeightType::Q5_K => {
                        term_q45k::<T, V, G>(row.add($i * bb), acts.add($i * AK_BYTES), $acc)
                    }
                    _ => term_k16::<T, V, G>(row.add($i * bb), acts.add($i * AK_BYTES), picks, $acc),
                }
            };
        }
        for i in (0..blocks - blocks % 2).step_by(2) {
            if pf {
                prefetch_ahead(row.add(i * bb), 2 * bb);
            }
            // SAFETY: the caller's contract, passed on.
            even = term!(i, even);
            odd = term!(i + 1, odd);
        }
        if blocks % 2 == 1 {
            even = term!(blocks - 1, even);
        }
        let (acc, accm) = (_mm256_add_ps(even.0, odd.0), _mm256_add_ps(even.1, odd.1));
        match wt_of(T) {
            // The minimums' terms in the odd lanes (`term_q45k`).
            WeightType::Q4_K | WeightType::Q5_K => {
                hsum(_mm256_mul_ps(acc, _mm256_setr_ps(1., -1., 1., -1., 1., -1., 1., -1.)))
            }
            _ => hsum(acc) - hsum(accm),
        }
    }
}

/// A `vgf2p8affineqb` matrix (for every 64-bit lane) that moves bits `from .. from + n` of each
/// byte to bits `to .. to + n` and clears the others: bit `i` of an output byte is the parity
/// of the input byte and byte `7 - i` of the matrix.
pub(crate) const fn bits_to(from: u32, n: u32, to: u32) -> i64 {
    let (mut m, mut k) = (0u64, 0);
    while k < n {
        m |= 1 << (from + k) << (8 * (7 - (to + k)));
        k += 1;
    }
    m as i64
}

/// `v`'s bytes each transformed by [`bits_to`]'s matrix `m` (one `vgf2p8affineqb`).
#[inline(always)]
unsafe fn gf(v: __m256i, m: i64) -> __m256i {
    // SAFETY: the caller compiled for GFNI and AVX.
    unsafe { _mm256_gf2p8affine_epi64_epi8::<0>(v, _mm256_set1_epi64x(m)) }
}

/// A K-quant super-block's quants (unsigned), group `g` (elements `32g .. 32g + 32`) in
/// vector `g`. With `G` (GFNI, compiled in) each bit field of a group's bytes is taken out and
/// put in place by one affine transform, where shifts and masks take one to three instructions
/// (Q4_K: 8 instructions a super-block against 12, Q5_K and Q6_K 24 against 36 to 48).
#[inline(always)]
pub(crate) unsafe fn unpack_k<const T: u8, const G: bool>(b: *const u8) -> [__m256i; 8] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (nib, three, one) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3), _mm256_set1_epi8(1));
        let mut q = [_mm256_setzero_si256(); 8];
        // SAFETY (of the loads): the caller points `b` at a whole super-block of `T`.
        for (g, qg) in q.iter_mut().enumerate() {
            let (h, s) = (g / 4, g % 4);
            // The same indices for `bits_to`.
            let (gs, su) = (g as u32, s as u32);
            if G {
                *qg = match wt_of(T) {
                    WeightType::Q2_K => gf(ld(b, 16 + 32 * h), bits_to(2 * su, 2, 0)),
                    WeightType::Q3_K => {
                        _mm256_or_si256(gf(ld(b, 32 + 32 * h), bits_to(2 * su, 2, 0)), gf(ld(b, 0), bits_to(gs, 1, 2)))
                    }
                    WeightType::Q4_K => gf(ld(b, 16 + 32 * (g / 2)), bits_to(4 * (gs % 2), 4, 0)),
                    WeightType::Q5_K => _mm256_or_si256(
                        gf(ld(b, 48 + 32 * (g / 2)), bits_to(4 * (gs % 2), 4, 0)),
                        gf(ld(b, 16), bits_to(gs, 1, 4)),
                    ),
                    WeightType::Q6_K => _mm256_or_si256(
                        gf(ld(b, 64 * h + 32 * (s % 2)), bits_to(4 * (su / 2), 4, 0)),
                        gf(ld(b, 128 + 32 * h), bits_to(2 * su, 2, 4)),
                    ),
                    _ => unreachable!(),
                };
                continue;
            }
            *qg = match wt_of(T) {
                WeightType::Q2_K => _mm256_and_si256(sh(ld(b, 16 + 32 * h), 2 * s), three),
                WeightType::Q3_K => {
                    let low = _mm256_and_si256(sh(ld(b, 32 + 32 * h), 2 * s), three);
                    let high = _mm256_and_si256(sh(ld(b, 0), g), one);
                    _mm256_or_si256(low, _mm256_slli_epi16(high, 2))
                }
                WeightType::Q4_K => _mm256_and_si256(sh(ld(b, 16 + 32 * (g / 2)), 4 * (g % 2)), nib),
                WeightType::Q5_K => {
                    // Bit g of each high-bit byte is this sub-block's fifth bit.
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
        }
        q
    }
}

/// The sixteen scales of a `Q2_K`/`Q3_K`/`Q6_K` super-block as bytes (signed for Q3_K/Q6_K),
/// and the weights of the activations' sums of 16 as i16 (the minimums of Q2_K; 4 and 32
/// times the scales, the offsets of Q3_K and Q6_K).
#[inline(always)]
pub(crate) unsafe fn scales_k16<const T: u8>(b: *const u8) -> (__m128i, __m256i) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let nib16 = _mm_set1_epi8(0x0F);
        // SAFETY (of the loads): the caller points `b` at a whole super-block of `T`.
        match wt_of(T) {
            WeightType::Q2_K => {
                let raw = _mm_loadu_si128(b as *const __m128i);
                (_mm_and_si128(raw, nib16), _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), nib16)))
            }
            WeightType::Q3_K => {
                let word = |at: usize| (b.add(96 + at) as *const u32).read_unaligned();
                let (w0, w1, w2) = (word(0), word(4), word(8));
                let (lo, hi) = (0x0f0f_0f0f, 0x0303_0303);
                let sc = _mm_setr_epi32(
                    ((w0 & lo) | (w2 & hi) << 4) as i32,
                    ((w1 & lo) | ((w2 >> 2) & hi) << 4) as i32,
                    (((w0 >> 4) & lo) | ((w2 >> 4) & hi) << 4) as i32,
                    (((w1 >> 4) & lo) | ((w2 >> 6) & hi) << 4) as i32,
                );
                let sc = _mm_sub_epi8(sc, _mm_set1_epi8(32));
                (sc, _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 2))
            }
            WeightType::Q6_K => {
                let sc = _mm_loadu_si128(b.add(192) as *const __m128i);
                (sc, _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 5))
            }
            _ => unreachable!(),
        }
    }
}

/// A `vpshufb` control whose i16 lanes are byte `k` of their 128-bit lane, zero-extended.
pub(crate) const fn pick(k: u32) -> i32 {
    (0x8000_8000 | (k * 0x0001_0001)) as i32
}

/// The eight 6-bit scales and minimums of a `Q4_K`/`Q5_K` super-block as the bytes of two
/// words: sub-blocks 0..4's scales then their minimums, and sub-blocks 4..8's (64-bit
/// arithmetic: both halves at once).
#[inline(always)]
pub(crate) unsafe fn k8_words(b: *const u8) -> [u64; 2] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: the caller points `b` at a whole super-block: bytes 4..16 are its scales.
        let x = (b.add(4) as *const u64).read_unaligned();
        let w2 = (b.add(12) as *const u32).read_unaligned() as u64;
        // Each byte's low 6 bits; its top 2 are bits 4 and 5 of the upper sub-block's value,
        // whose low 4 bits are the low (scale) and high (minimum) nibbles of w2's bytes.
        let lo = x & 0x3f3f_3f3f_3f3f_3f3f;
        let hi = ((w2 | w2 << 28) & 0x0f0f_0f0f_0f0f_0f0f) | ((x >> 2) & 0x3030_3030_3030_3030);
        [lo, hi]
    }
}

/// The eight 6-bit scales and minimums of a `Q4_K`/`Q5_K` super-block, as the bytes of a word
/// each: `(scales, minimums)`.
#[inline(always)]
pub(crate) unsafe fn scales_k8(b: *const u8) -> (u64, u64) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let [lo, hi] = k8_words(b);
        ((lo & 0xffff_ffff) | hi << 32, lo >> 32 | (hi & 0xffff_ffff_0000_0000))
    }
}

/// `v` stored at `at`, and a pointer to its elements (`E`) for volatile loads, which the
/// compiler does not replace by the stored value: an element loaded into every lane at once is
/// a load alone, where spreading it from a register is a shuffle, on the port that the byte
/// products' unpacking needs on Intel's cores (and moving values from general registers into a
/// vector, as [`k8_words`]' two, takes more: `vmovq`, `vpinsrq`'s two uops).
#[inline(always)]
pub(crate) fn stored<T, E>(v: T, at: &mut core::mem::MaybeUninit<T>) -> *const E {
    at.write(v) as *const T as *const E
}

/// [`k8_words`] as the bytes of both 128-bit lanes of a vector: sub-block j's scale at byte j
/// (j < 4) or j + 4, its minimum 4 bytes after. (Through memory, by [`stored`], the 256-bit
/// rows' loops were no shorter under `llvm-mca`: 33.5 -> 33.2 cycles a loop as an Alder Lake
/// P-core, 33.1 -> 35.5 as Zen 3; on the Xeon, AVX2 `Q4_K` from L2 went 18.9 -> 18.1 GiB/s.)
#[inline(always)]
pub(crate) unsafe fn k8_vector(b: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let [lo, hi] = k8_words(b);
        _mm256_broadcastsi128_si256(_mm_set_epi64x(hi as i64, lo as i64))
    }
}

/// A `Q4_K`/`Q5_K` super-block's minimums (in `k8`: a [`k8_vector`], of which only bytes 4-7
/// and 28-31 are read) against its activations' (at `a`) sums of 16, each minimum weighing its
/// sub-block's two sums: 8 i32 lanes.
#[inline(always)]
pub(crate) unsafe fn min_sums(a: *const u8, k8: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // Each minimum twice (for its two sums of 16), as i16: i16 lanes 2j, 2j + 1 take byte
        // j + 4 (j < 4) or j + 8.
        let twice = _mm256_setr_epi32(pick(4), pick(5), pick(6), pick(7), pick(12), pick(13), pick(14), pick(15));
        // SAFETY: the caller points `a` at a whole activation block.
        _mm256_madd_epi16(ld(a, AK_BSUMS), _mm256_shuffle_epi8(k8, twice))
    }
}

/// `vpshufb` controls, one per group `g` of 32 quants of a K-quant with sixteen sub-blocks: each
/// i16 lane takes word `g` of its 128-bit lane ([`term_k16`]: the scales of sub-blocks `2g`
/// and `2g + 1`). [`row_k`] hands them to the kernel through an opaque pointer, so that each
/// group's shuffle is one `vpshufb` with its control loaded from memory: with the controls
/// known, LLVM made each of them two shuffles (`vpshuflw` + `vpshufd`), on ports the byte
/// products' unpacking needs. `llvm-mca` (LLVM 16) of the `Q6_K` loop over two super-blocks:
/// 57.5 -> 52.2 cycles as an Alder Lake P-core, AVX2; with AVX-512 VNNI (Zen 4's path) 47.1 ->
/// 40.7 as Zen 3; on the Xeon (AVX2, one thread from L2, 30 short runs alternating) 18.5 ->
/// 19.1 GiB/s best, 14.1 -> 15.0 median.
#[repr(C, align(32))]
struct ScalePicks([[u8; 32]; 8]);

/// See [`ScalePicks`].
static SCALE_PICKS: ScalePicks = {
    let mut t = [[0u8; 32]; 8];
    let mut i = 0;
    while i < 8 * 32 {
        t[i / 32][i % 32] = (2 * (i / 32) + i % 2) as u8;
        i += 1;
    }
    ScalePicks(t)
};

/// One super-block's terms of [`row_k`] for the types with sixteen sub-blocks (`Q2_K`, `Q3_K`,
/// `Q6_K`; `b`: the super-block, `a`: its activations) added into the `(scales, minimums)`
/// accumulators: each group of 32 quants (unsigned) times the activations in i16 pairs,
/// weighted into i32 by its two sub-blocks' scales; the minimums (`Q2_K`) or the offsets (4 and
/// 32 times the scale) against the activations' sums of 16. `picks` points at [`SCALE_PICKS`].
#[inline(always)]
unsafe fn term_k16<const T: u8, const V: u8, const G: bool>(
    b: *const u8,
    a: *const u8,
    picks: *const [u8; 32],
    (acc, accm): (__m256, __m256),
) -> (__m256, __m256) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (d_at, dmin_at) = k_factors(wt_of(T));
        // SAFETY (of every access below): the caller points `b` at a whole super-block of `T` and
        // `a` at its activation block.
        let (sc, m) = scales_k16::<T>(b);
        // The scales as i16, the even sub-blocks' in the low 128-bit lane, the odd ones' in the
        // high lane: one in-lane shuffle per group then puts sub-block 2g's scale under the
        // group's low 16 elements and 2g + 1's under its high 16 (instead of a shuffle and a
        // widening per group).
        let even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, even_odd));
        let q = unpack_k::<T, G>(b);
        // Two chains (even and odd groups), so that the accumulations overlap.
        let mut isum = [_mm256_setzero_si256(); 2];
        for (g, qg) in q.iter().enumerate() {
            // i16 lanes 0..8 hold elements 0..16 (sub-block 2g), lanes 8..16 sub-block 2g + 1:
            // weighted by their scales (word g of each lane of `sc`).
            let scales = _mm256_shuffle_epi8(sc, _mm256_load_si256(picks.add(g) as *const __m256i));
            let p = _mm256_maddubs_epi16(*qg, ld(a, 4 + 32 * g));
            isum[g % 2] = madd_acc::<V>(isum[g % 2], p, scales);
        }
        let isum = _mm256_add_epi32(isum[0], isum[1]);
        let msum = _mm256_madd_epi16(ld(a, AK_BSUMS), m);
        let yd = _mm256_set1_ps(f32_at(a));
        let d = _mm256_mul_ps(f16_splat(b.add(d_at)), yd);
        match dmin_at {
            None => (_mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, msum)), acc), accm),
            Some(at) => (
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc),
                _mm256_fmadd_ps(_mm256_mul_ps(f16_splat(b.add(at)), yd), _mm256_cvtepi32_ps(msum), accm),
            ),
        }
    }
}

/// `acc +` the i16 pairs of `p` times those of `s`, summed into i32 lanes: one `vpdpwssd` with
/// AVX-512 VNNI, else `vpmaddwd` and an add, also with AVX-VNNI: its `vpdpwssd` measured no
/// faster on the Xeon (model 207, one thread, 160 rows in L2, 3 rounds alternating: Q4_K 15.0-17.4
/// against 17.1-17.2 GiB/s with `vpmaddwd`, Q5_K 15.9-16.5 against 14.1-16.4, Q6_K 18.0-19.5
/// against 19.0-19.1).
#[inline(always)]
unsafe fn madd_acc<const V: u8>(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY: `V` is only set in functions compiled for the features it names.
        #[cfg(runllama_avx512)]
        if V == VNNI_EVEX {
            return dpwssd256(acc, p, s);
        }
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, s))
    }
}

/// Defines `$name`: `vpdpwssd` (`acc +` the i16 pairs of `a` times those of `b`, summed into
/// i32 lanes) as one instruction on `$vec` vectors. LLVM's machine combiner splits chained
/// `vpdpwssd`s into `vpmaddwd` and `vpaddd` when it judges the chain's latency to matter: two
/// instructions on the ports that bound the row loops, where one does (6 of the 8 of a `Q3_K`
/// super-block in the 256-bit rows, 2 of the 4 of a `Q6_K` one in the 512-bit rows).
macro_rules! dpwssd_in_one {
    ($name:ident, $vec:ty, $reg:ident, $features:literal) => {
        #[doc = concat!("`vpdpwssd` on `", stringify!($vec), "` as one instruction (see `dpwssd_in_one`).")]
        #[inline]
        #[target_feature(enable = $features)]
        pub(crate) fn $name(acc: $vec, a: $vec, b: $vec) -> $vec {
            let mut acc = acc;
            // SAFETY: the CPU has this function's features, AVX-512 VNNI among them; the
            // instruction reads and writes these registers only.
            unsafe {
                core::arch::asm!("vpdpwssd {acc}, {a}, {b}", acc = inout($reg) acc, a = in($reg) a, b = in($reg) b,
                    options(pure, nomem, nostack, preserves_flags));
            }
            acc
        }
    };
}
#[cfg(runllama_avx512)]
dpwssd_in_one!(dpwssd256, __m256i, ymm_reg, "avx512f,avx512vl,avx512vnni");
#[cfg(runllama_avx512)]
dpwssd_in_one!(dpwssd512, __m512i, zmm_reg, "avx512f,avx512vnni");

/// One super-block's terms of [`row_k`] for `Q4_K`/`Q5_K` (`b`: the super-block, `a`: its
/// activations) added into the first of the `(scales, minimums)` accumulators (the minimums'
/// terms in its odd lanes, see [`row_k`]'s sum): the eight 6-bit scales and
/// minimums unpacked in registers; each sub-block's byte products in i16 pairs weighted by its
/// scale (broadcast as an i16 pair) into i32 lanes ([`madd_acc`]), so that the weighted sum
/// lands in one vector without a tree or a shuffle (measured on Zen 4 with `vpdpwssd`: 22.4 ->
/// 24.4 GB/s of Q4_K from cache, one thread; on the Xeon model 207's AVX2 path, with
/// `vpmaddwd`, against the group sums' tree and one multiply by the scales, Q5_K 19.0 -> 19.7
/// GiB/s, Q4_K 20.4 -> 20.3); the minimums against the activations' sums of 16. The scales
/// and minimums are unpacked by two byte shuffles of one vector, and the scale pairs broadcast
/// from memory (the compiler had made each a shuffle or two): on the same Xeon, AVX2, Q4_K
/// 15.1 -> 16.9 and Q5_K 14.7 -> 16.2 GiB/s (best of 5-6 runs alternating with the code before).
/// The scales' and the minimums' sums then take one conversion and one multiply-add side by side
/// (two unpacks and an add put them in alternate lanes; the factors are the super-block's two
/// f16, converted together): `llvm-mca` (LLVM 16) of the AVX2 loop over two super-blocks, 188 ->
/// 166 instructions, 39.2 -> 33.5 cycles as an Alder Lake P-core and 42.3 -> 33.1 as Zen 3; on
/// the Xeon (AVX2, one thread from L2, 30 short runs alternating) Q4_K 16.4 -> 19.0 GiB/s best,
/// 12.9 -> 14.8 median.
#[inline(always)]
unsafe fn term_q45k<const T: u8, const V: u8, const G: bool>(
    b: *const u8,
    a: *const u8,
    (acc, accm): (__m256, __m256),
) -> (__m256, __m256) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // SAFETY (of every access): the caller points `b` at a whole super-block of `T` and `a` at
        // its activation block.
        let k8 = k8_vector(b);
        let msum = min_sums(a, k8);
        // Each scale as an i16 pair: an i32 lane per sub-block (lane j takes byte j, or j + 4 from
        // j = 4 on).
        let pair_of = _mm256_setr_epi32(pick(0), pick(1), pick(2), pick(3), pick(8), pick(9), pick(10), pick(11));
        let q = unpack_k::<T, G>(b);
        // In memory, read back by volatile loads (which the compiler does not take from the
        // stored vector), so that each group's scale pair is a broadcast load rather than a
        // shuffle: shuffles share one port with the byte products' unpacking on Intel's cores.
        // (An opaque pointer by `black_box` cost a store and a load of the pointer per
        // super-block.)
        let mut at = core::mem::MaybeUninit::uninit();
        let pairs: *const i32 = stored(_mm256_shuffle_epi8(k8, pair_of), &mut at);
        // Two chains (even and odd groups), so that the accumulations overlap.
        let mut isum = [_mm256_setzero_si256(); 2];
        for (g, qg) in q.iter().enumerate() {
            let p = _mm256_maddubs_epi16(*qg, ld(a, 4 + 32 * g));
            isum[g % 2] = madd_acc::<V>(isum[g % 2], p, _mm256_set1_epi32(pairs.add(g).read_volatile()));
        }
        let isum = _mm256_add_epi32(isum[0], isum[1]);
        // The scales' sums in the even lanes, the minimums' in the odd ones (lanes j and j + 2
        // of each added), for one multiply-add by [d, dmin] (repeating: the super-block's first
        // two f16 in every i32) times the activations' d; `row_k` takes the odd lanes off.
        let t = _mm256_add_epi32(_mm256_unpacklo_epi32(isum, msum), _mm256_unpackhi_epi32(isum, msum));
        let dd = _mm256_cvtph_ps(_mm_set1_epi32((b as *const i32).read_unaligned()));
        (_mm256_fmadd_ps(_mm256_mul_ps(dd, _mm256_set1_ps(f32_at(a))), _mm256_cvtepi32_ps(t), acc), accm)
    }
}

#[cfg(test)]
mod tests {
    use super::stream_order;
    use crate::qdot::{act_bytes, quantize};
    use crate::WeightType;

    const BLOCKS: usize = 3 * 8 + 3;

    /// A xorshift generator from `seed`.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// An f16 scale in [0.5, 2) (exponent 14 or 15) from the random `r`, as bytes.
    fn f16_scale(r: u64) -> [u8; 2] {
        (0x3800u16 | (r as u16 & 0x07FF)).to_le_bytes()
    }

    /// A `Q4_0` row of [`BLOCKS`] blocks of pseudo-random quants and scales, and activations.
    fn q4_0_row_and_acts() -> ([u8; BLOCKS * 18], [u8; BLOCKS * 44]) {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let mut row = [0u8; BLOCKS * 18];
        for b in row.chunks_exact_mut(18) {
            // Scales in [0.5, 2), quants anything.
            b[..2].copy_from_slice(&f16_scale(next()));
            b[2..].iter_mut().for_each(|q| *q = next() as u8);
        }
        let mut x = [0f32; BLOCKS * 32];
        x.iter_mut().for_each(|v| *v = (next() % 2001) as f32 / 1000.0 - 1.0);
        let mut acts = [0u8; BLOCKS * 44];
        assert_eq!(act_bytes(WeightType::Q4_0, x.len()), Some(acts.len()));
        quantize(WeightType::Q4_0, &x, &mut acts);
        (row, acts)
    }

    /// The re-laid `Q4_0` rows give `row32`'s bits, on AVX2 and (where the CPU has it) with
    /// AVX-512 VNNI, on 256-bit vectors (Zen 4's decoding) and on 512-bit ones (Intel's).
    #[test]
    fn q4_0_pairs_give_row32s_bits() {
        let (row, acts) = q4_0_row_and_acts();
        let f = crate::detected();
        if !(f.avx2 && f.fma && f.f16c) {
            return;
        }
        let mut laid = core::mem::MaybeUninit::<super::Laid>::uninit();
        let laid = laid.as_mut_ptr() as *mut u8;
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2(row: &[u8], acts: &[u8], laid: *mut u8) -> (f32, f32) {
            // SAFETY: AVX2 checked by the caller; `row`, `acts` hold BLOCKS blocks; `laid` room
            // for them.
            unsafe {
                super::lay_q4_0_pairs(acts.as_ptr(), BLOCKS, laid);
                let a = super::row_q4_0_pairs::<{ super::NO_VNNI }, false>(
                    row.as_ptr(),
                    acts.as_ptr(),
                    laid,
                    BLOCKS,
                    false,
                );
                (
                    a,
                    super::row32::<{ super::tags::Q4_0 }, { super::NO_VNNI }>(
                        row.as_ptr(),
                        acts.as_ptr(),
                        BLOCKS,
                        false,
                    ),
                )
            }
        }
        // SAFETY: as the function asks.
        let (a, b) = unsafe { avx2(&row, &acts, laid) };
        assert_eq!(a.to_bits(), b.to_bits(), "AVX2: {a} against {b}");
        #[cfg(runllama_avx512)]
        if f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni {
            #[inline(always)]
            unsafe fn vnni<const G: bool>(row: &[u8], acts: &[u8], laid: *mut u8) -> [f32; 3] {
                // SAFETY: as `avx2`, the features (GFNI where `G`) compiled in by the caller.
                unsafe {
                    let (w, x) = (row.as_ptr(), acts.as_ptr());
                    super::lay_q4_0_pairs(x, BLOCKS, laid);
                    let pairs = super::row_q4_0_pairs::<{ super::VNNI_EVEX }, G>(w, x, laid, BLOCKS, false);
                    // The 512-bit rows (Intel's decoding) against the same reference.
                    crate::qdot_x86_wide::lay_q4_0(x, BLOCKS, laid);
                    let wide = crate::qdot_x86_wide::row_q4_0::<G>(w, x, laid, BLOCKS, false);
                    [pairs, wide, super::row32::<{ super::tags::Q4_0 }, { super::VNNI_EVEX }>(w, x, BLOCKS, false)]
                }
            }
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            unsafe fn plain(row: &[u8], acts: &[u8], laid: *mut u8) -> [f32; 3] {
                // SAFETY: the features checked by the caller.
                unsafe { vnni::<false>(row, acts, laid) }
            }
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
            unsafe fn gfni(row: &[u8], acts: &[u8], laid: *mut u8) -> [f32; 3] {
                // SAFETY: the features checked by the caller.
                unsafe { vnni::<true>(row, acts, laid) }
            }
            for g in [false, true] {
                if g && !f.gfni {
                    continue;
                }
                // SAFETY: as the functions ask.
                let [a, wide, b] = unsafe {
                    if g {
                        gfni(&row, &acts, laid)
                    } else {
                        plain(&row, &acts, laid)
                    }
                };
                assert_eq!(a.to_bits(), b.to_bits(), "VNNI (GFNI {g}): {a} against {b}");
                assert_eq!(wide.to_bits(), b.to_bits(), "512-bit (GFNI {g}): {wide} against {b}");
            }
        }
    }

    /// A row of `blocks` blocks of `wt` (at most 2048 bytes) of random quants (and K-quant
    /// scales) with factors in [0.5, 2), and random activations in [-1, 1] quantized for it
    /// (at most 4096 bytes): each buffer with the length used.
    #[allow(clippy::type_complexity)]
    fn row_and_acts(
        wt: WeightType,
        blocks: usize,
        next: &mut impl FnMut() -> u64,
    ) -> (([u8; 2048], usize), ([u8; 4096], usize)) {
        let (be, bb) = (wt.block_elems(), wt.block_bytes());
        let mut row = [0u8; 2048];
        row[..blocks * bb].iter_mut().for_each(|q| *q = next() as u8);
        let factors = match wt {
            WeightType::Q4_1 | WeightType::Q5_1 => (0, Some(2)),
            _ if be == 256 => crate::qdot::k_factors(wt),
            _ => (0, None),
        };
        for b in row[..blocks * bb].chunks_exact_mut(bb) {
            for at in [Some(factors.0), factors.1].into_iter().flatten() {
                b[at..at + 2].copy_from_slice(&f16_scale(next()));
            }
        }
        let mut x = [0f32; 43 * 32];
        let x = &mut x[..blocks * be];
        x.iter_mut().for_each(|v| *v = (next() % 2001) as f32 / 1000.0 - 1.0);
        let mut acts = [0u8; 4096];
        let n = act_bytes(wt, x.len()).unwrap();
        quantize(wt, x, &mut acts[..n]);
        ((row, blocks * bb), (acts, n))
    }

    /// The 512-bit `Q4_K`/`Q5_K`/`Q6_K` rows (Intel's and Zen 4's decoding) give the same bits
    /// with GFNI's affine transforms as with shifts, rotations and masks (CPUs with AVX-512 VNNI
    /// but no GFNI, as Cascade Lake, run the latter; the path tests reach only the former where
    /// GFNI is present).
    #[cfg(runllama_avx512)]
    #[test]
    fn wide_k_rows_give_the_same_bits_with_gfni() {
        use super::tags::{Q4_K, Q5_K, Q6_K};
        let f = crate::detected();
        if !(f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni && f.gfni) {
            return;
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
        unsafe fn both<const T: u8>(w: &[u8], acts: &[u8], blocks: usize) -> [f32; 2] {
            use crate::qdot_x86_wide::{lay_q45k, row_q45k, LAID_K};
            // SAFETY: the features checked by the caller; `w`, `acts` hold `blocks` blocks, and
            // `laid` room for their re-laid quants.
            unsafe {
                let mut laid = [0u8; 5 * LAID_K];
                let (w, a, l) = (w.as_ptr(), acts.as_ptr(), laid.as_mut_ptr());
                lay_q45k(a, blocks, l);
                [row_q45k::<T, false>(w, a, l, blocks, false), row_q45k::<T, true>(w, a, l, blocks, false)]
            }
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
        unsafe fn both_q6k(w: &[u8], acts: &[u8], blocks: usize) -> [f32; 2] {
            use crate::qdot_x86_wide::row_q6k;
            let (w, a) = (w.as_ptr(), acts.as_ptr());
            // SAFETY: the features checked by the caller; `w`, `acts` hold `blocks` blocks.
            unsafe { [row_q6k::<false>(w, a, blocks, false), row_q6k::<true>(w, a, blocks, false)] }
        }
        let mut next = xorshift(0x0123_4567_89AB_CDEF);
        for blocks in 1..=5 {
            for wt in [Q4_K, Q5_K, Q6_K] {
                let (row, acts) = row_and_acts(super::wt_of(wt), blocks, &mut next);
                let (w, a) = (&row.0[..row.1], &acts.0[..acts.1]);
                // SAFETY: the features checked above.
                let [s, g] = unsafe {
                    match wt {
                        Q4_K => both::<Q4_K>(w, a, blocks),
                        Q5_K => both::<Q5_K>(w, a, blocks),
                        _ => both_q6k(w, a, blocks),
                    }
                };
                assert!(s.is_finite() && s != 0.0);
                assert_eq!(s.to_bits(), g.to_bits(), "{:?}, {blocks} blocks: {s} against {g}", super::wt_of(wt));
            }
        }
    }

    /// The 256-bit rows with AVX-512 VNNI (Zen 4's decoding: Intel's AVX-512 cores run 512-bit
    /// rows for the common types, so the path tests leave these out there), without and with
    /// GFNI, and with AVX-VNNI and GFNI, give the AVX2 rows' bits, every block type: the same
    /// integer sums (`vpdpbusd` and `vpdpwssd` for `vpmaddubsw` and `vpmaddwd`; the K-quants'
    /// bits taken apart by affine transforms instead of shifts and masks), the same f32 order.
    #[test]
    fn rows_with_vnni_give_avx2s_bits() {
        use super::tags::*;
        use super::{row32, row_k, NO_VNNI};
        let f = crate::detected();
        if !(f.avx2 && f.fma && f.f16c) {
            return;
        }
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        /// Row `row` (`blocks` blocks of `T`) times `acts` with bytes multiplied as `V` says.
        #[inline(always)]
        unsafe fn row<const T: u8, const V: u8, const G: bool>(row: &[u8], acts: &[u8], blocks: usize) -> f32 {
            // SAFETY: the caller's features; `row`, `acts` hold `blocks` blocks.
            unsafe {
                if super::wt_of(T).block_elems() == 256 {
                    row_k::<T, V, G>(row.as_ptr(), acts.as_ptr(), blocks, false)
                } else {
                    row32::<T, V>(row.as_ptr(), acts.as_ptr(), blocks, false)
                }
            }
        }
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2<const T: u8>(w: &[u8], acts: &[u8], blocks: usize) -> f32 {
            // SAFETY: AVX2 checked by the caller.
            unsafe { row::<T, NO_VNNI, false>(w, acts, blocks) }
        }
        #[cfg(runllama_avx512)]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn vnni<const T: u8>(w: &[u8], acts: &[u8], blocks: usize) -> f32 {
            // SAFETY: as `avx2`, the features checked by the caller.
            unsafe { row::<T, { super::VNNI_EVEX }, false>(w, acts, blocks) }
        }
        #[cfg(runllama_avx512)]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
        unsafe fn vnni_gfni<const T: u8>(w: &[u8], acts: &[u8], blocks: usize) -> f32 {
            // SAFETY: as `avx2`, the features checked by the caller.
            unsafe { row::<T, { super::VNNI_EVEX }, true>(w, acts, blocks) }
        }
        #[cfg(runllama_avx512)]
        #[target_feature(enable = "avx2,fma,f16c,avxvnni,gfni")]
        unsafe fn avxvnni_gfni<const T: u8>(w: &[u8], acts: &[u8], blocks: usize) -> f32 {
            // SAFETY: as `avx2`, the features checked by the caller.
            unsafe { row::<T, { super::VNNI_VEX }, true>(w, acts, blocks) }
        }
        macro_rules! check {
            ($($t:expr),*) => {$({
                let wt = super::wt_of($t);
                // 5 super-blocks, or 5 full groups of 8 blocks and 3 more.
                let blocks = if wt.block_elems() == 256 { 5 } else { 43 };
                let (row, acts) = row_and_acts(wt, blocks, &mut next);
                let (row, acts) = (&row.0[..row.1], &acts.0[..acts.1]);
                // SAFETY: AVX2, FMA and F16C checked above.
                let a = unsafe { avx2::<$t>(row, acts, blocks) };
                assert!(a.is_finite());
                #[cfg(runllama_avx512)]
                if f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni {
                    // SAFETY: the features checked.
                    let v = unsafe { vnni::<$t>(row, acts, blocks) };
                    assert_eq!(v.to_bits(), a.to_bits(), "{wt:?}: {v} against {a}");
                    if f.gfni {
                        // SAFETY: the features checked.
                        let v = unsafe { vnni_gfni::<$t>(row, acts, blocks) };
                        assert_eq!(v.to_bits(), a.to_bits(), "{wt:?} with GFNI: {v} against {a}");
                    }
                }
                #[cfg(runllama_avx512)]
                if f.avxvnni && f.gfni {
                    // SAFETY: the features checked.
                    let v = unsafe { avxvnni_gfni::<$t>(row, acts, blocks) };
                    assert_eq!(v.to_bits(), a.to_bits(), "{wt:?} with AVX-VNNI and GFNI: {v} against {a}");
                }
            })*};
        }
        check!(Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K);
    }

    /// Every row exactly once, whatever the count; one stream in order, two with the halves
    /// interleaved.
    #[test]
    fn stream_order_visits_every_row_once() {
        for rows in 0..12 {
            for two in [false, true] {
                let mut seen = [0u8; 12];
                for (k, r) in stream_order(rows, two).enumerate() {
                    seen[r] += 1;
                    if !two {
                        assert_eq!(r, k);
                    }
                }
                assert!(seen[..rows].iter().all(|&n| n == 1) && seen[rows..].iter().all(|&n| n == 0));
            }
        }
        assert!(stream_order(5, true).eq([0, 2, 1, 3, 4]));
    }
}
