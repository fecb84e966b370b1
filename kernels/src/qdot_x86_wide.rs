//! Decoding's row products (`qdot_x86.rs`'s per-row kernels) on 512-bit vectors, for AVX-512
//! VNNI CPUs (Intel's, whose 512-bit integer units issue two instructions a cycle, and Zen 4,
//! where fewer instructions pay though each is split in two: see `CpuFeatures::wide_int`). The
//! integer sums are those of the 256-bit kernels (exact). The 32-element types give the 256-bit
//! kernel's bits; the K-quants' f32 sums of super-block terms are ordered differently.
//!
//! A vector holds 64 quants, two sub-blocks (or blocks) whose activations are contiguous:
//! - `Q4_K`/`Q5_K`: 64 packed bytes, loaded once, give two vectors: their low nibbles (two
//!   sub-blocks) and their high nibbles (the next two; on CPUs with GFNI one
//!   `vgf2p8affineqb` each, else a mask, or a shift and a mask), whose activations are re-laid
//!   to match once per call ([`lay_q45k`]); one `vpdpbusd` against 64 activation bytes sums each
//!   four products. Those sums fit in i16, so one `vpackssdw` packs two vectors' and one
//!   `vpdpwssd` weighs them by their four sub-blocks' scales (spread by one byte shuffle): per
//!   super-block four `vpdpbusd`, two packs and two `vpdpwssd`, where a `vpmaddubsw` and a
//!   `vpdpwssd` per chunk took four of each.
//! - `Q6_K`: 64 bytes of low nibbles are two chunks (low and high nibbles), the high bits
//!   brought into place per half (one `vgf2p8affineqb` per chunk with GFNI, else rotations);
//!   as for `Q4_K`, `vpdpbusd` per chunk, a pack per two, and the sixteen signed scales spread
//!   by `vpermd` for a `vpdpwssd` per two.
//! - `Q8_0`: two blocks, one `vpdpbusd`, then a tree that makes 8 blocks' sums the lanes of one
//!   vector for the 256-bit kernel's own finish.
//! - `Q4_0`: four blocks' packed bytes gathered into one vector (a word permute), whose low and
//!   high nibbles meet activations re-laid to match (per token, once per call), in two
//!   `vpdpbusd` ([`row_q4_0`]).
//!
//! What bounds these loops is the count of vector instructions: ports 0 and 5 each issue one
//! 512-bit multiply, `and` or add a cycle, shuffles go to port 5 alone, shifts to port 0 alone,
//! and loads, broadcast loads of 32 to 256 bits included, to neither (measured on the Xeon of
//! CPUID model 207, loops of independent instructions). So the K-quants' scales and f16 factors
//! are stored once per super-block and broadcast back by loads where a register broadcast would
//! be a shuffle (volatile loads, which the compiler does not replace by the stored values), and
//! `vpdpwssd` is one instruction (`qdot_x86::dpwssd512`). One thread, 160 rows from L2, best of
//! 12 short runs alternating with the code before (GiB/s): Q4_K 19.4 -> 23.1, Q5_K 18.4 ->
//! 21.7, Q6_K 23.5 -> 28.2; `llvm-mca` (LLVM 16, Ice Lake server) of the Q4_K loop 17.3 -> 13.7
//! cycles.

use core::arch::x86_64::*;

use crate::qdot::{g32_fields, k_factors, AK_BSUMS, AK_BYTES, G32, G32_BYTES};
use crate::qdot_x86::tags::Q6_K;
use crate::qdot_x86::{
    bits_to, dpwssd512, f32_at, group32_at, group32_finish, group32_scaled, k8_words, ld, min_sums, pick,
    prefetch_ahead, scales_k16, stored, wt_of, LAID_GROUP, VNNI_EVEX,
};
use crate::WeightType;

/// A vector whose 256-bit halves repeat the i32 `lo` and `hi`.
#[inline(always)]
unsafe fn halves(lo: i32, hi: i32) -> __m512i {
    // SAFETY: the caller compiled for AVX-512 F.
    unsafe { _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set1_epi32(lo)), _mm256_set1_epi32(hi)) }
}

/// A vector whose 128-bit lanes repeat the i32 `a, a, b, b` (the lower 256 bits) and `c, c, d, d`
/// (the upper).
#[inline(always)]
unsafe fn halves_pairs(a: i32, b: i32, c: i32, d: i32) -> __m512i {
    // SAFETY: the caller compiled for AVX-512 F.
    unsafe { _mm512_set_epi32(d, d, c, c, d, d, c, c, b, b, a, a, b, b, a, a) }
}

/// A `vgf2p8affineqb` matrix ([`bits_to`]) for the lower and one for the upper 256 bits of a
/// vector.
#[inline(always)]
unsafe fn affine_halves(lo: i64, hi: i64) -> __m512i {
    // SAFETY: the caller compiled for AVX-512 F.
    unsafe { _mm512_set_epi64(hi, hi, hi, hi, lo, lo, lo, lo) }
}

/// The 16 bytes at `p` in both 128-bit lanes of a vector.
#[inline(always)]
unsafe fn twice(p: *const u8) -> __m256i {
    // SAFETY: the caller points `p` at 16 readable bytes.
    unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i)) }
}

/// The 32 bytes at `p`, in both halves of a vector.
#[inline(always)]
unsafe fn both_halves(p: *const u8) -> __m512i {
    // SAFETY: the caller points `p` at 32 readable bytes.
    unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i)) }
}

/// Bytes of re-laid activation quants per `Q4_K`/`Q5_K` super-block ([`lay_q45k`]).
pub(crate) const LAID_K: usize = 256;

/// Re-lay the quants of a token's K-quant activations (`blocks` super-blocks at `acts`) for
/// [`row_q45k`]: per super-block 256 bytes at `out`, its sub-blocks of 32 in the order 0, 2, 1,
/// 3, 4, 6, 5, 7, the order in which 64 packed bytes' low and high nibbles hold them. Done
/// once per call of `products` and token (a thread's piece of a product's rows).
///
/// # Safety
/// AVX2; `acts` points at the activations of `blocks` super-blocks; `out` at `blocks *`
/// [`LAID_K`] writable bytes.
#[inline(always)]
pub(crate) unsafe fn lay_q45k(acts: *const u8, blocks: usize, out: *mut u8) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        for i in 0..blocks {
            let (q, o) = (acts.add(i * AK_BYTES + 4), out.add(i * LAID_K));
            for (k, s) in [0, 2, 1, 3, 4, 6, 5, 7].into_iter().enumerate() {
                let v = _mm256_loadu_si256(q.add(32 * s) as *const __m256i);
                _mm256_storeu_si256(o.add(32 * k) as *mut __m256i, v);
            }
        }
    }
}

/// The dot product of one row of `Q4_K`/`Q5_K` (`T`, `blocks` super-blocks at `row`) with a
/// token's activations `acts` (their quants re-laid at `laid` by [`lay_q45k`]), as
/// `qdot_x86::row_k` computes it. Each 64 packed bytes (sub-blocks `4h .. 4h + 4`) are one
/// load: their low nibbles sub-blocks `4h` and `4h + 2`, their high nibbles `4h + 1` and `4h +
/// 3`, each taken apart by one `vgf2p8affineqb` with GFNI (else a mask, or a shift and a mask),
/// and `Q5_K`'s fifth bits by one more per vector from the high-bit bytes broadcast once. Each
/// vector's sums of four by one `vpdpbusd`; two of them packed to i16 (`vpackssdw`: sums of four
/// are at most 4 · 31 · 128) and weighed by their four sub-blocks' scales (spread by one byte
/// shuffle) in one `vpdpwssd`. The integer sums are the same with and without GFNI.
///
/// Measured: one thread on the Xeon of CPUID model 207, 160 rows from L2 (`cargo bench --bench
/// kernels -- qmatvec_l2`, 3 runs alternating, GiB/s), GFNI against shifts: Q4_K 25.0-25.3 ->
/// 26.3-31.1, Q5_K 24.0-25.0 -> 26.1-29.0. On Zen 4 (one thread, best of 5 runs of 4000
/// products, binaries alternating 3 times, GB/s): packing the sums for the scales' `vpdpwssd`,
/// Q4_K 27.3-27.6 -> 26.9-27.8, Q5_K 28.0-28.2 -> 29.9-30.3. One 64-byte load per two chunks,
/// where each chunk's 32 bytes had been broadcast to both halves (`vbroadcasti64x4`, which
/// costs Zen 4 an issue slot besides the load, and which matched the activations as they are
/// laid): `cargo bench --bench kernels -- qmatvec_l2/avx512` on Zen 4, binaries alternating 3
/// times, GiB/s: Q4_K 27.9-28.2 -> 31.5-32.0, Q5_K 28.4-28.8 -> 31.4-32.1; a 7B Q4_K_M decode
/// switching between the two every 2 tokens 2-6 % faster with one thread, and no faster with
/// two (0.94-1.06 per repetition).
///
/// # Safety
/// The CPU supports AVX-512 F, BW, VL and VNNI, AVX2, FMA and F16C, and GFNI where `G`; `row`
/// points at `blocks` super-blocks of `T`, `acts` at their activation blocks and `laid` at
/// those activations' quants re-laid by [`lay_q45k`].
#[inline(always)]
pub(crate) unsafe fn row_q45k<const T: u8, const G: bool>(
    row: *const u8,
    acts: *const u8,
    laid: *const u8,
    blocks: usize,
    pf: bool,
) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let five = matches!(wt_of(T), WeightType::Q5_K);
        let bb = wt_of(T).block_bytes();
        let qs_at = if five { 48 } else { 16 };
        let nib = _mm512_set1_epi8(0x0F);
        // The low and the high nibbles of each byte, as affine transforms.
        let nibbles = [_mm512_set1_epi64(bits_to(0, 4, 0)), _mm512_set1_epi64(bits_to(4, 4, 0))];
        // The byte shuffle that spreads the scales of sub-blocks 4h .. 4h + 4 (bytes 0-3 of
        // word h of `k8_words`) over the i16 lanes of two vectors' packed sums (0x80: a zero
        // high byte): in each 128-bit lane, the low nibbles' four sums then the high nibbles',
        // the lower half's of sub-blocks 4h and 4h + 1, the upper half's of 4h + 2, 4h + 3.
        let spread = halves_pairs(pick(0), pick(1), pick(2), pick(3));
        // Q5_K: the shifts that bring bit j (lower half) and j + 2 (upper) of the high-bit
        // bytes to bit 4, for the vectors of sub-blocks j, j + 2 (j = 0, 1, 4, 5): left for
        // the first half of a super-block, right for the second.
        let fifth = [
            halves(0x0004_0004, 0x0002_0002),
            halves(0x0003_0003, 0x0001_0001),
            halves(0, 0x0002_0002),
            halves(0x0001_0001, 0x0003_0003),
        ];
        let bit4 = _mm512_set1_epi8(0x10);
        // The same as affine transforms, which also clear the other bits.
        let fifth_g = [
            affine_halves(bits_to(0, 1, 4), bits_to(2, 1, 4)),
            affine_halves(bits_to(1, 1, 4), bits_to(3, 1, 4)),
            affine_halves(bits_to(4, 1, 4), bits_to(6, 1, 4)),
            affine_halves(bits_to(5, 1, 4), bits_to(7, 1, 4)),
        ];
        let (mut acc, mut accm) = (_mm512_setzero_ps(), _mm256_setzero_ps());
        for i in 0..blocks {
            // SAFETY (of every access): the caller's contract, super-block `i` and its activations.
            let (b, a, l) = (row.add(i * bb), acts.add(i * AK_BYTES), laid.add(i * LAID_K));
            if pf {
                prefetch_ahead(b, bb);
            }
            // The scales and minimums: each word of `k8_words` broadcast from memory
            // ([`stored`]), and the two blended for `min_sums` (loads and a blend, where moving
            // them into registers took six shuffles).
            let mut at = core::mem::MaybeUninit::uninit();
            let w: *const i64 = stored(k8_words(b), &mut at);
            let words = [_mm512_set1_epi64(w.read_volatile()), _mm512_set1_epi64(w.add(1).read_volatile())];
            let k8 =
                _mm256_blend_epi32::<0b1100_1100>(_mm512_castsi512_si256(words[0]), _mm512_castsi512_si256(words[1]));
            let msum = min_sums(a, k8);
            let high = if five { both_halves(b.add(16)) } else { _mm512_setzero_si512() };
            let mut isum = _mm512_setzero_si512();
            for (h, &word) in words.iter().enumerate() {
                let q = _mm512_loadu_si512(b.add(qs_at + 64 * h) as *const __m512i);
                let mut sums = [_mm512_setzero_si512(); 2];
                for (n, sum) in sums.iter_mut().enumerate() {
                    let mut u = if G {
                        _mm512_gf2p8affine_epi64_epi8::<0>(q, nibbles[n])
                    } else if n == 0 {
                        _mm512_and_si512(q, nib)
                    } else {
                        _mm512_and_si512(_mm512_srli_epi16::<4>(q), nib)
                    };
                    let j = 2 * h + n;
                    if five && G {
                        u = _mm512_or_si512(u, _mm512_gf2p8affine_epi64_epi8::<0>(high, fifth_g[j]));
                    } else if five {
                        let f =
                            if h == 0 { _mm512_sllv_epi16(high, fifth[j]) } else { _mm512_srlv_epi16(high, fifth[j]) };
                        u = _mm512_ternarylogic_epi32::<0xF8>(u, f, bit4);
                    }
                    *sum = _mm512_dpbusd_epi32(
                        _mm512_setzero_si512(),
                        u,
                        _mm512_loadu_si512(l.add(128 * h + 64 * n) as *const __m512i),
                    );
                }
                let p = _mm512_packs_epi32(sums[0], sums[1]);
                isum = dpwssd512(isum, p, _mm512_shuffle_epi8(word, spread));
            }
            // [d, dmin] times the activations' d (the conversion reading its operand from the
            // super-block), each broadcast from memory ([`stored`]): no shuffle.
            let dd = _mm_cvtph_ps(_mm_loadl_epi64(b as *const __m128i));
            let mut at = core::mem::MaybeUninit::uninit();
            let dd: *const f32 = stored(_mm_mul_ps(dd, _mm_set1_ps(f32_at(a))), &mut at);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(dd.read_volatile()), _mm512_cvtepi32_ps(isum), acc);
            accm = _mm256_fmadd_ps(_mm256_set1_ps(dd.add(1).read_volatile()), _mm256_cvtepi32_ps(msum), accm);
        }
        _mm512_reduce_add_ps(acc) - crate::qdot_x86::hsum(accm)
    }
}

/// `vpermd` indices for the two halves of a `Q6_K` super-block, each the sums of two chunks
/// packed to i16 (`vpackssdw`): in 128-bit lane `l` of half `h`, i32 lanes 0 and 1 (chunk
/// `2h`'s sums) take scale `8h + l`, lanes 2 and 3 (chunk `2h + 1`'s) scale `8h + 4 + l`.
const SPREAD_PAIRS: [[i32; 16]; 2] = {
    let mut t = [[0; 16]; 2];
    let mut i = 0;
    while i < 32 {
        let (h, l, j) = (i / 16, i % 16 / 4, i % 4);
        t[h][i % 16] = (8 * h + 4 * (j / 2) + l) as i32;
        i += 1;
    }
    t
};

/// The dot product of one row of `Q6_K` (`blocks` super-blocks at `row`) with a token's
/// activations `acts`, as `qdot_x86::row_k` computes it: each half of a super-block (128
/// quants) is one 64-byte load of low nibbles, taken apart into groups `4h, 4h + 1` (low
/// nibbles) and `4h + 2, 4h + 3` (high), each pair of groups contiguous in the activations;
/// the two high bits brought into place per half (with GFNI, where `G`, one `vgf2p8affineqb`
/// per chunk that also clears the other bits; else a mask per half and a rotation per chunk);
/// each chunk's sums of four products by one `vpdpbusd`, a half's two chunks packed to i16 and
/// weighed by their signed scales (spread by `vpermd`) in one `vpdpwssd`. One thread on Zen 4,
/// 160 rows from L2, best of 5 runs of 4000 products, binaries alternating 3 times (GB/s):
/// 32.3-32.4 -> 33.9-34.2 (a `vpmaddubsw` and a `vpdpwssd` per chunk before). GFNI against the
/// mask and rotations (`cargo bench --bench kernels -- qmatvec_l2/avx512/Q6_K`, binaries
/// alternating 3 times, GiB/s): 33.5, 33.6, 33.4 -> 35.6, 35.8, 35.7.
///
/// # Safety
/// As [`row_q45k`], for `Q6_K`, and GFNI where `G`.
#[inline(always)]
pub(crate) unsafe fn row_q6k<const G: bool>(row: *const u8, acts: *const u8, blocks: usize, pf: bool) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let bb = WeightType::Q6_K.block_bytes();
        let nib = _mm512_set1_epi8(0x0F);
        // Rotations (within each i32) that bring the high-bit pair of group `4h + s` to bits
        // 4 and 5: s = 0, 1 (lower, upper half) and s = 2, 3; the pairs that the rotations
        // would bring to bits 6 and 7 cleared first (one `and` per half, not one per chunk).
        let rot = [halves(4, 2), halves(0, 30)];
        let keep = halves(0x3333_3333, 0xCCCC_CCCC_u32 as i32);
        // The same as affine transforms: pair 0 (lower half) and 1 (upper), then 2 and 3, to
        // bits 4 and 5, every other bit cleared.
        let pairs_to =
            [affine_halves(bits_to(0, 2, 4), bits_to(2, 2, 4)), affine_halves(bits_to(4, 2, 4), bits_to(6, 2, 4))];
        let load = |h: usize| SPREAD_PAIRS[h].as_ptr() as *const __m512i;
        let spreads = [_mm512_loadu_si512(load(0)), _mm512_loadu_si512(load(1))];
        let mut acc = _mm512_setzero_ps();
        for i in 0..blocks {
            // SAFETY (of every access): the caller's contract, super-block `i` and its activations.
            let (b, a) = (row.add(i * bb), acts.add(i * AK_BYTES));
            if pf {
                prefetch_ahead(b, bb);
            }
            // The sixteen signed scales, and 32 times each as i16 (the offsets' weights).
            let (sc, sc32) = scales_k16::<Q6_K>(b);
            // The scales as i16 pairs in i32 lanes.
            let sc = _mm512_cvtepi8_epi32(sc);
            let pairs = _mm512_ternarylogic_epi32::<0xEC>(sc, _mm512_slli_epi32::<16>(sc), _mm512_set1_epi32(0xFFFF));
            let mut isum = _mm512_setzero_si512();
            for (h, spread) in spreads.iter().enumerate() {
                let low = _mm512_loadu_si512(b.add(64 * h) as *const __m512i);
                let high = both_halves(b.add(128 + 32 * h));
                let high = if G { high } else { _mm512_and_si512(high, keep) };
                let mut sums = [_mm512_setzero_si512(); 2];
                for (k, low) in [low, _mm512_srli_epi16::<4>(low)].into_iter().enumerate() {
                    let pair = if G {
                        _mm512_gf2p8affine_epi64_epi8::<0>(high, pairs_to[k])
                    } else {
                        _mm512_rolv_epi32(high, rot[k])
                    };
                    // Bits 0-3 from the low nibbles, 4-7 from the high bits' pair.
                    let u = _mm512_ternarylogic_epi32::<0xD8>(pair, low, nib);
                    let x = _mm512_loadu_si512(a.add(4 + 128 * h + 64 * k) as *const __m512i);
                    sums[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, x);
                }
                // Each sum of four is at most 4 * 63 * 128 in magnitude: exact as i16.
                let p = _mm512_packs_epi32(sums[0], sums[1]);
                isum = dpwssd512(isum, p, _mm512_permutexvar_epi32(*spread, pairs));
            }
            // The offsets: 32 times each scale against its sum of 16.
            let msum = _mm256_madd_epi16(ld(a, AK_BSUMS), sc32);
            let isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(msum));
            // d (the super-block's last two bytes) as lane 3 of the conversion of its last 8,
            // which reads its operand from memory, times the activations' d, broadcast from
            // memory ([`stored`]): no shuffle.
            let d_at = k_factors(WeightType::Q6_K).0;
            let d = _mm_cvtph_ps(_mm_loadl_epi64(b.add(d_at - 6) as *const __m128i));
            let mut at = core::mem::MaybeUninit::uninit();
            let d: *const f32 = stored(_mm_mul_ps(d, _mm_set1_ps(f32_at(a))), &mut at);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(d.add(3).read_volatile()), _mm512_cvtepi32_ps(isum), acc);
        }
        _mm512_reduce_add_ps(acc)
    }
}

/// The dot product of one row of `Q8_0`/`Q4_0` (`T`; `Q4_0` where its rows are too long for
/// [`row_q4_0`]) with a token's activations, as
/// `qdot_x86::row32` computes it and to the same bits: each full group of 8 blocks as four
/// vectors of two blocks (`Q8_0`: the quants plus 128; `Q4_0`: each block's 16 bytes in two
/// 128-bit lanes, shifted apart into its low and high nibbles), one `vpdpbusd` each against 64
/// contiguous activation bytes, then the blocks' sums as the 8 lanes of one vector (the same
/// integers as `row32`'s), finished by `row32`'s own code; a last group of fewer than 8 blocks
/// by `row32`'s.
///
/// # Safety
/// The CPU supports AVX-512 F, BW, VL and VNNI, AVX2, FMA and F16C; `row` points at `blocks`
/// blocks of `T` and `acts` at their activations.
#[inline(always)]
pub(crate) unsafe fn row32<const T: u8>(row: *const u8, acts: *const u8, blocks: usize, pf: bool) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let bb = wt_of(T).block_bytes();
        let qs_at = g32_fields(G32).3;
        let (nib, flip) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(-128));
        // Per-128-bit-lane shifts: a block's low nibbles, then its high ones.
        let apart = _mm512_set_epi64(
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0,
            0,
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0,
            0,
        );
        let mut acc = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let full = blocks / G32;
        for g in 0..full {
            // SAFETY (of every access): the caller's contract, group `g`'s blocks and activations.
            let (b, a) = group32_at(row, acts, g, bb, pf);
            let mut p = [_mm512_setzero_si512(); 4];
            for (j, pj) in p.iter_mut().enumerate() {
                let (x, y) = (b.add(2 * j * bb), b.add((2 * j + 1) * bb));
                let u = match wt_of(T) {
                    WeightType::Q8_0 => {
                        let q = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(_mm256_loadu_si256(x.add(2) as *const __m256i)),
                            _mm256_loadu_si256(y.add(2) as *const __m256i),
                        );
                        _mm512_xor_si512(q, flip)
                    }
                    WeightType::Q4_0 => {
                        let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(twice(x.add(2))), twice(y.add(2)));
                        _mm512_and_si512(_mm512_srlv_epi16(q, apart), nib)
                    }
                    _ => unreachable!(),
                };
                *pj = _mm512_dpbusd_epi32(
                    _mm512_setzero_si512(),
                    u,
                    _mm512_loadu_si512(a.add(qs_at + 64 * j) as *const __m512i),
                );
            }
            acc = group32_finish::<T, VNNI_EVEX, true>(b, a, G32, sums8(p), acc);
        }
        // SAFETY: the caller's contract, for the blocks after the full groups.
        crate::qdot_x86::row32_tail::<T, VNNI_EVEX>(row, acts, blocks, acc)
    }
}

/// The lane sums of eight blocks' products, two blocks to a vector (`p[j]`: block `2j` in
/// lanes 0-7, `2j + 1` in 8-15), as the 8 lanes of one vector, in block order.
#[inline(always)]
unsafe fn sums8(p: [__m512i; 4]) -> __m256i {
    // SAFETY: the caller compiled for AVX-512 F.
    unsafe {
        // Per 128-bit lane: (p0, p1, p0, p1) and (p2, p3, p2, p3) pairs of lane sums ...
        let a = _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
        let b = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
        // ... then each vector's sum over the 128-bit lane: (p0, p1, p2, p3) ...
        let c = _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
        // ... and over the two 128-bit lanes of a block: blocks 0, 2, 4, 6 in lane 0, 1, 3, 5, 7 in lane 2.
        let d = _mm512_add_epi32(c, _mm512_shuffle_i32x4::<0b10_11_00_01>(c, c));
        _mm512_castsi512_si256(_mm512_permutexvar_epi32(
            _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 11, 3, 10, 2, 9, 1, 8, 0),
            d,
        ))
    }
}

/// `vpermt2w` indices that gather half `h` of a `Q4_0` group's quants (blocks `4h .. 4h + 4`):
/// i32 lane `l` takes bytes `4(l / 4) ..` of block `4h + l % 4`'s 16 bytes, from the group's
/// bytes 0-127 (half 0: two loads at 0 and 64) or 64-143 (half 1: loads at 64 and 80).
const GATHER4: [[u16; 32]; 2] = {
    let mut t = [[0; 32]; 2];
    let mut h = 0;
    while h < 2 {
        let mut i = 0;
        while i < 32 {
            let (l, j) = (i / 2, i % 2);
            let k = 4 * h + l % 4;
            // The word of the group: 2 bytes of scale, then 16 of quants, per block.
            let w = 1 + 9 * k + 2 * (l / 4) + j;
            t[h][i] = match h {
                0 => w as u16,
                _ if w < 64 => (w - 32) as u16,
                _ => (32 + w - 40) as u16,
            };
            i += 1;
        }
        h += 1;
    }
    t
};

/// `vpermt2w` indices that gather a `Q4_0` group's 8 scales (words 0, 9, ... 63 of its bytes
/// 0-127) into the low 128 bits.
const SCALES8: [u16; 32] = {
    let mut t = [0; 32];
    let mut k = 0;
    while k < 8 {
        t[k] = 9 * k as u16;
        k += 1;
    }
    t
};

/// `vpermt2d` indices from the activation quants of blocks `4h, 4h + 1` and `4h + 2, 4h + 3`
/// (two vectors): lane `l` of vector `j` takes block `4h + l % 4`'s i32 `l / 4` of its first
/// (`j` = 0) or second 16 elements.
const LAY4: [[i32; 16]; 2] = {
    let mut t = [[0; 16]; 2];
    let mut i = 0;
    while i < 32 {
        let (j, l) = (i / 16, i % 16);
        t[j][l] = (8 * (l % 4) + l / 4 + 4 * j) as i32;
        i += 1;
    }
    t
};

/// Re-lay the quants of a token's `Q4_0` activations (`blocks` blocks at `acts`) for
/// [`row_q4_0`]: per full group of 8 blocks 256 bytes at `out`, per half `h` (blocks `4h ..
/// 4h + 4`) 64 bytes of elements 0-15 and 64 of elements 16-31, i32 lane `l` of each holding
/// block `4h + l % 4`'s elements `4(l / 4) ..` (of its first or second 16): the order in which
/// [`GATHER4`] lays the weights' nibbles. Done once per call of `products` and token (a
/// thread's piece of a product's rows).
///
/// # Safety
/// The CPU supports AVX-512 F (inlined into a function compiled for it: compiled alone, each
/// intrinsic was a call); `acts` points at the activations of `blocks` blocks; `out` at room for
/// their full groups ([`crate::qdot_x86::laid_fits`]).
#[inline(always)]
pub(crate) unsafe fn lay_q4_0(acts: *const u8, blocks: usize, out: *mut u8) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let qs_at = g32_fields(G32).3;
        let lay = [
            _mm512_loadu_si512(LAY4[0].as_ptr() as *const __m512i),
            _mm512_loadu_si512(LAY4[1].as_ptr() as *const __m512i),
        ];
        for g in 0..blocks / G32 {
            let (q, o) = (acts.add(g * G32_BYTES + qs_at), out.add(LAID_GROUP * g));
            for h in 0..2 {
                let pairs = [q.add(128 * h), q.add(128 * h + 64)].map(|p| _mm512_loadu_si512(p as *const __m512i));
                let to = o.add(128 * h) as *mut __m512i;
                _mm512_storeu_si512(to, _mm512_permutex2var_epi32(pairs[0], lay[0], pairs[1]));
                _mm512_storeu_si512(to.add(1), _mm512_permutex2var_epi32(pairs[0], lay[1], pairs[1]));
            }
        }
    }
}

/// The dot product of one `Q4_0` row with a token's activations (`acts`, their quants re-laid
/// at `laid` by [`lay_q4_0`]), the same bits as [`row32`]: per full group of 8 blocks, each half's
/// quants gathered by one `vpermt2w` ([`GATHER4`]) so that a vector's low and high nibbles
/// meet the activations' halves in two `vpdpbusd` into one sum of four lanes per block; two
/// 128-bit lane shuffles and adds make the 8 block sums (of [`row32`]'s tree, half the
/// shuffles), and one more `vpermt2w` the blocks' scales (instead of 8 scalar loads). With `G`
/// (GFNI) the high nibbles come down by one affine transform instead of a shift and a mask.
///
/// # Safety
/// As [`row32`], and GFNI where `G`; `laid` holds [`lay_q4_0`]'s layout of `acts`.
#[inline(always)]
pub(crate) unsafe fn row_q4_0<const G: bool>(
    row: *const u8,
    acts: *const u8,
    laid: *const u8,
    blocks: usize,
    pf: bool,
) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        use crate::qdot_x86::tags::Q4_0;
        let bb = WeightType::Q4_0.block_bytes();
        let nib = _mm512_set1_epi8(0x0F);
        let gather = [
            _mm512_loadu_si512(GATHER4[0].as_ptr() as *const __m512i),
            _mm512_loadu_si512(GATHER4[1].as_ptr() as *const __m512i),
        ];
        let scales = _mm512_loadu_si512(SCALES8.as_ptr() as *const __m512i);
        let mut acc = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let full = blocks / G32;
        for g in 0..full {
            // SAFETY (of every access): the caller's contract, group `g`'s 144 bytes of blocks,
            // its activations and their re-laid quants.
            let ((b, a), q) = (group32_at(row, acts, g, bb, pf), laid.add(LAID_GROUP * g));
            let z = [b, b.add(64), b.add(80)].map(|p| _mm512_loadu_si512(p as *const __m512i));
            let w =
                [_mm512_permutex2var_epi16(z[0], gather[0], z[1]), _mm512_permutex2var_epi16(z[1], gather[1], z[2])];
            let mut p = [_mm512_setzero_si512(); 2];
            for (h, ph) in p.iter_mut().enumerate() {
                let lo = _mm512_and_si512(w[h], nib);
                let hi = if G {
                    _mm512_gf2p8affine_epi64_epi8::<0>(w[h], _mm512_set1_epi64(bits_to(4, 4, 0)))
                } else {
                    _mm512_and_si512(_mm512_srli_epi16::<4>(w[h]), nib)
                };
                let at = |o: usize| _mm512_loadu_si512(q.add(128 * h + o) as *const __m512i);
                *ph = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, at(0)), hi, at(64));
            }
            // 128-bit lane i of p[h] holds a quarter of blocks 4h .. 4h + 4: sum the quarters.
            let t =
                _mm512_add_epi32(_mm512_shuffle_i32x4::<0x44>(p[0], p[1]), _mm512_shuffle_i32x4::<0xEE>(p[0], p[1]));
            let u = _mm512_add_epi32(_mm512_shuffle_i32x4::<0x08>(t, t), _mm512_shuffle_i32x4::<0x0D>(t, t));
            let dw = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(z[0], scales, z[1])));
            acc.0 = group32_scaled::<Q4_0, VNNI_EVEX, true>(a, G32, _mm512_castsi512_si256(u), dw, acc.0);
        }
        // SAFETY: the caller's contract, for the blocks after the full groups.
        crate::qdot_x86::row32_tail::<Q4_0, VNNI_EVEX>(row, acts, blocks, acc)
    }
}
