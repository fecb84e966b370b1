//! Batched products of K-quant weights (prefill) on CPUs with AVX-512 VNNI, over panels of 16
//! tokens: a 512-bit vector holds one 4-byte group of the 16 tokens' activation quants, and a
//! weight row's 4 quants of that group are broadcast against it (a broadcast operand of the
//! instruction), so one `vpdpbusd` makes 64 products and each i32 lane is one token. Eight rows
//! share each activation load. The weights' quants (0..64; Q3_K's and Q6_K's less their
//! offset, -32..32, so that their products need no activation sums) are the signed operand,
//! the activations the unsigned one, offset by 128; the offset's share is one constant per row
//! and unit, subtracted once.
//!
//! The panel layout ([`pack`], what [`crate::pack_activations`] writes for these types on this
//! path): per 256-column unit, [`UNIT_BYTES`] bytes: the quants plus 128 as 64 vectors (vector
//! `k`: elements `4k .. 4k + 4` of tokens 0..16, 4 bytes each), the tokens' 16 f32 factors `d`,
//! then their sums as vectors of i16 pairs (vector `i`: sums `2i` and `2i + 1` of each token),
//! sums of 32 where the minimums weigh sub-blocks of 32 (Q4_K, Q5_K: 4 vectors), else of 16
//! (8 vectors; read for Q2_K's minimums only). Missing tokens of a panel have zero factors and
//! give zero.
//!
//! A tile of 8 rows is unpacked unit by unit (plain unsigned quants per row, the integer
//! scales and the weights of the sums), once for all the panels. The integer sums are the
//! reference's (`qdot.rs`); a unit's f32 term is added per token lane, the same operations for
//! every token whatever the batch, so a batched product differs from a stepped one by rounding
//! only (the order of the f32 sums), like the 8-row tile kernel's (`qdot_x86_tile.rs`).
//!
//! On CPUs with AMX-INT8 the same layout feeds tiles: a panel unit's 64-column steps are
//! exactly `B` tiles (16 vectors of 4 elements of 16 tokens). A sub-block's scale cannot wait
//! for its sub-block's sum (that would be a tile store and vector work per 16 or 32 columns),
//! so each row's scales are multiplied into its quants and the products (at most 13 bits) are
//! split into bytes, `q * s = lo + 256 * hi` with `lo` unsigned and `hi` signed, 16 rows 256
//! bytes apart (`A` tiles). The two pieces times two panels make a 2 x 2 block of tiles summed
//! over the unit's four steps, and `lo + 256 * hi`'s sum is the VNNI kernel's integer sum, so
//! the results are the same bit for bit.

use core::arch::asm;
use core::arch::x86_64::*;

use crate::amx::{release_tiles, TileConfig};
use crate::qdot::{k_factors, AK_BSUMS, AK_BYTES};
use crate::qdot_x86::{f16_at, scales_k16, scales_k8, unpack_k, wt_of};
use crate::qdot_x86_tile::prefetch_unit;
use crate::quant::QK_K;
use crate::WeightType;

/// Tokens of a panel (the lanes of a vector).
const LANES: usize = 16;
/// Rows of a tile (VNNI).
const ROWS: usize = 8;
/// Rows of a tile on AMX (an `A` tile's rows).
const AMX_ROWS: usize = 16;
/// Where a unit's token factors start.
const D_AT: usize = 64 * 64;
/// Where a unit's sums of 16 start.
const SUMS_AT: usize = D_AT + 4 * LANES;
/// Bytes of one 256-column unit of a panel (the same as 16 tokens' [`AK_BYTES`]).
pub(crate) const UNIT_BYTES: usize = SUMS_AT + 8 * 64;
const _: () = assert!(UNIT_BYTES == LANES * AK_BYTES);

/// Whether batched products of `wt` rows on an AVX-512 path with `vnni` run here (and their
/// activations are packed by [`pack`]): the K-quants.
pub(crate) const fn handles(wt: WeightType, vnni: bool) -> bool {
    vnni && matches!(wt, WeightType::Q2_K | WeightType::Q3_K | WeightType::Q4_K | WeightType::Q5_K | WeightType::Q6_K)
}

/// Write the panel of tokens `x` (at most 16 rows of `cols`, a multiple of 256) into `panel`
/// (at least `cols / 256 * UNIT_BYTES` bytes): each token's unit quantized as
/// `qdot::quantize` does, then spread into the layout above.
pub(crate) fn pack(wt: WeightType, x: &[f32], cols: usize, panel: &mut [u8]) {
    if cols == 0 {
        return;
    }
    let tokens = x.len() / cols;
    assert!(tokens <= LANES && cols.is_multiple_of(QK_K) && panel.len() >= cols / QK_K * UNIT_BYTES);
    let mut one = [0u8; AK_BYTES];
    for (u, unit) in panel.chunks_exact_mut(UNIT_BYTES).take(cols / QK_K).enumerate() {
        for t in 0..LANES {
            if t < tokens {
                crate::qdot::quantize(wt, &x[t * cols + u * QK_K..][..QK_K], &mut one);
            } else {
                one.fill(0);
            }
            for k in 0..64 {
                for (o, &q) in unit[64 * k + 4 * t..][..4].iter_mut().zip(&one[4 + 4 * k..]) {
                    *o = q ^ 0x80;
                }
            }
            unit[D_AT + 4 * t..][..4].copy_from_slice(&one[..4]);
            let sum16 = |j: usize| i16::from_le_bytes([one[AK_BSUMS + 2 * j], one[AK_BSUMS + 2 * j + 1]]);
            for j in 0..2 * sum_pairs(wt) {
                // Sums of 32 (of sums of 16 two by two; at most 32 × 127) where the minimums
                // weigh sub-blocks of 32.
                let sum = if sum_pairs(wt) == 4 { sum16(2 * j) + sum16(2 * j + 1) } else { sum16(j) };
                unit[SUMS_AT + 64 * (j / 2) + 4 * t + 2 * (j % 2)..][..2].copy_from_slice(&sum.to_le_bytes());
            }
        }
    }
}

/// One unit of a tile of `R` rows, unpacked.
#[repr(C, align(64))]
struct Unit<const R: usize> {
    /// Each row's 256 quants, less the type's offset ([`quant_offset`]).
    q: [[u8; QK_K]; R],
    /// Each row's integer scales: by sub-block of 32 for Q4_K/Q5_K (8), else of 16.
    sc: [[i32; 16]; R],
    /// Each row's weights of the activations' sums ([`sum_pairs`]), two per i32 (i16 halves:
    /// sums `2i`, `2i + 1`).
    m: [[i32; 8]; R],
    /// Each row's correction for the activations' offset: 128 × Σ scale × sum of the
    /// sub-block's quants.
    offset: [i32; R],
    /// Each row's `d` and `dmin` (zero without one).
    d: [f32; R],
    dmin: [f32; R],
}

/// Vectors of sum pairs in a panel unit for `wt`: 4 (sums of 32) for the types whose
/// minimums weigh sub-blocks of 32, else 8 (sums of 16).
const fn sum_pairs(wt: WeightType) -> usize {
    128 / sub_elems(wt)
}

/// Whether `wt` has minimums (a second factor, `dmin`): Q2_K, Q4_K, Q5_K.
const fn has_min(wt: WeightType) -> bool {
    k_factors(wt).1.is_some()
}

/// The offset of `wt`'s unsigned quants (Q3_K 4, Q6_K 32), taken off when a tile is unpacked:
/// the weights' signed quants need no sums of the activations.
const fn quant_offset(wt: WeightType) -> i32 {
    match wt {
        WeightType::Q3_K => 4,
        WeightType::Q6_K => 32,
        _ => 0,
    }
}

/// Whether `wt`'s quants, less their offset, are signed (Q3_K, Q6_K).
const fn signed(wt: WeightType) -> bool {
    quant_offset(wt) != 0
}

/// Quants per sub-block of `wt` (the granularity of its scales).
const fn sub_elems(wt: WeightType) -> usize {
    if matches!(wt, WeightType::Q4_K | WeightType::Q5_K) {
        32
    } else {
        16
    }
}

/// Unit `u` of the `nr` rows at `rows` (`rb` bytes apart) into `unit` (rows from `nr` on keep
/// what they held: their results are not stored).
#[inline(always)]
unsafe fn unpack<const T: u8, const R: usize>(rows: *const u8, rb: usize, nr: usize, u: usize, unit: &mut Unit<R>) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let wt = wt_of(T);
        for r in 0..nr {
            // SAFETY (of every access): the caller points `rows` at `nr` rows holding unit `u`.
            let b = rows.add(r * rb + u * wt.block_bytes());
            // The sums of each 8 quants of group g (before their offset), in u64 lanes.
            let mut sums8 = [[0u64; 4]; 8];
            let off = quant_offset(wt);
            for (g, v) in unpack_k::<T, false>(b).iter().enumerate() {
                let q = _mm256_sub_epi8(*v, _mm256_set1_epi8(off as i8));
                _mm256_store_si256(unit.q[r].as_mut_ptr().add(32 * g) as *mut __m256i, q);
                _mm256_storeu_si256(sums8[g].as_mut_ptr() as *mut __m256i, _mm256_sad_epu8(*v, _mm256_setzero_si256()));
            }
            let m16 = if matches!(wt, WeightType::Q4_K | WeightType::Q5_K) {
                let (sc, mn) = scales_k8(b);
                let sc8 = _mm_cvtsi64_si128(sc as i64);
                _mm256_store_si256(unit.sc[r].as_mut_ptr() as *mut __m256i, _mm256_cvtepu8_epi32(sc8));
                let mn8 = _mm_cvtsi64_si128(mn as i64);
                _mm256_zextsi128_si256(_mm_cvtepu8_epi16(mn8))
            } else {
                let (sc, m) = scales_k16::<T>(b);
                let sc32 =
                    if matches!(wt, WeightType::Q2_K) { _mm512_cvtepu8_epi32(sc) } else { _mm512_cvtepi8_epi32(sc) };
                _mm512_store_si512(unit.sc[r].as_mut_ptr() as *mut __m512i, sc32);
                m
            };
            if has_min(wt) {
                _mm256_store_si256(unit.m[r].as_mut_ptr() as *mut __m256i, m16);
            }
            let sub = sub_elems(wt);
            let mut offset = 0;
            for (s, &sc) in unit.sc[r][..QK_K / sub].iter().enumerate() {
                let (g, i) = (s * sub / 32, s * sub % 32 / 8);
                let sum = sums8[g][i..i + sub / 8].iter().sum::<u64>() as i32 - off * sub as i32;
                offset += sc * sum;
            }
            unit.offset[r] = 128 * offset;
            let (d_at, dmin_at) = k_factors(wt);
            unit.d[r] = f16_at(b.add(d_at));
            unit.dmin[r] = dmin_at.map_or(0.0, |at| f16_at(b.add(at)));
        }
    }
}

/// The 8 rows' integer sums of `unit` for the `np` panel units at `a` (`panel_bytes` apart),
/// into `s1[..np]` (16 token lanes each): each sub-block's sums of products weighted by its
/// scale, before the offset's correction. (It needs no scratch: the `()` keeps the signature of
/// [`amx_sums`].)
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI; `a` points at `np` whole panel units.
#[inline(always)]
unsafe fn vnni_sums<const T: u8>(
    unit: &Unit<ROWS>,
    a: *const u8,
    panel_bytes: usize,
    np: usize,
    _: &mut (),
    s1: &mut [[__m512i; ROWS]],
) {
    for (p, s1) in s1[..np].iter_mut().enumerate() {
        // SAFETY: the caller's contract; `a + p * panel_bytes` is panel unit `p`.
        *s1 = unsafe { vnni_panel::<T>(unit, a.wrapping_add(p * panel_bytes)) };
    }
}

/// [`vnni_sums`] for the one panel unit at `a`.
///
/// # Safety
/// As [`vnni_sums`].
#[inline(always)]
unsafe fn vnni_panel<const T: u8>(unit: &Unit<ROWS>, a: *const u8) -> [__m512i; ROWS] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let sub = sub_elems(wt_of(T));
        let zero = _mm512_setzero_si512();
        let mut s1 = [zero; ROWS];
        // SAFETY (of every access): the caller points `a` at a whole panel unit.
        for s in 0..QK_K / sub {
            let mut raw = [zero; ROWS];
            for k in s * sub / 4..(s + 1) * sub / 4 {
                let y = _mm512_loadu_si512(a.add(64 * k) as *const __m512i);
                for (r, acc) in raw.iter_mut().enumerate() {
                    // The weights' quants (below 128) as the signed operand: a broadcast load
                    // within the instruction.
                    let w = (unit.q[r].as_ptr().add(4 * k) as *const i32).read();
                    *acc = _mm512_dpbusd_epi32(*acc, y, _mm512_set1_epi32(w));
                }
            }
            for (r, s1) in s1.iter_mut().enumerate() {
                *s1 = _mm512_add_epi32(*s1, _mm512_mullo_epi32(raw[r], _mm512_set1_epi32(unit.sc[r][s])));
            }
        }
        s1
    }
}

/// A unit's 16 rows with the scales multiplied in, split into bytes: `lo[r][i]` the low byte
/// of `q_i * s_i` (unsigned), `hi[r][i]` the rest (`q_i * s_i >> 8`, signed: at most
/// 31 * 63 >> 8 = 7 for Q5_K, -32 * -128 >> 8 = 16 for Q6_K), rows 256 bytes apart: the `A`
/// tiles of the four 64-column steps.
#[repr(C, align(64))]
struct Folded {
    lo: [[u8; QK_K]; AMX_ROWS],
    hi: [[u8; QK_K]; AMX_ROWS],
}

/// Partial-sum tiles of two panels, stored for the vectors (16 rows x 16 tokens i32 each):
/// panel 0 lo, panel 0 hi, panel 1 lo, panel 1 hi.
#[repr(C, align(64))]
struct CTiles([[[i32; 16]; AMX_ROWS]; 4]);

/// For each 32-quant chunk `g` of a unit, word `i`: the sub-block of quant `32g + i` (`sub`
/// quants each), an index into the 16 sub-blocks' scales.
const fn sub_block_index(sub: usize) -> [[u16; 32]; QK_K / 32] {
    let mut idx = [[0u16; 32]; QK_K / 32];
    let mut i = 0;
    while i < QK_K {
        idx[i / 32][i % 32] = (i / sub) as u16;
        i += 1;
    }
    idx
}

/// Fold `unit`'s scales into its quants (see [`Folded`]), 32 quants at a time in 16-bit words.
///
/// # Safety
/// The CPU supports AVX-512 F and BW.
#[inline(always)]
unsafe fn fold<const T: u8>(unit: &Unit<AMX_ROWS>, f: &mut Folded) {
    let wt = wt_of(T);
    let idx = const { sub_block_index(sub_elems(wt_of(T))) };
    // SAFETY: the caller's contract (the CPU); every load and store is one 32-byte chunk of a
    // 256-byte row, or a row's 16 scales.
    unsafe {
        for r in 0..AMX_ROWS {
            // The row's scales as words, in the low half.
            let sc = _mm512_castsi256_si512(_mm512_cvtepi32_epi16(_mm512_load_si512(unit.sc[r].as_ptr().cast())));
            for (g, idx) in idx.iter().enumerate() {
                let raw = _mm256_load_si256(unit.q[r].as_ptr().add(32 * g).cast());
                let q = if signed(wt) { _mm512_cvtepi8_epi16(raw) } else { _mm512_cvtepu8_epi16(raw) };
                let s = _mm512_permutexvar_epi16(_mm512_loadu_si512(idx.as_ptr().cast()), sc);
                let p = _mm512_mullo_epi16(q, s);
                _mm256_store_si256(f.lo[r].as_mut_ptr().add(32 * g).cast(), _mm512_cvtepi16_epi8(p));
                if !lo_only(wt) {
                    let hi = _mm512_cvtepi16_epi8(_mm512_srai_epi16(p, 8));
                    _mm256_store_si256(f.hi[r].as_mut_ptr().add(32 * g).cast(), hi);
                }
            }
        }
    }
}

/// Whether `wt`'s quants times scales always fit one unsigned byte, so that [`fold`]'s high
/// bytes are all zero and [`amx_sums`] skips their products: Q2_K (2-bit quants, 4-bit scales:
/// at most 45).
const fn lo_only(wt: WeightType) -> bool {
    matches!(wt, WeightType::Q2_K)
}

/// [`vnni_sums`] for 16 rows and the `np` panel units at `a` (`panel_bytes` apart) on AMX
/// tiles (all 16 x 64 bytes), into `s1[..np]`: the unit's scales folded into its quants
/// (`f`), then per pair of panels a 2 x 2 block of tiles (lo and hi bytes x two panels)
/// summed over the unit's four 64-column steps, and `s1 = lo + 256 * hi`: the VNNI kernel's
/// integer sums exactly. Where the high bytes are all zero ([`lo_only`]) their tiles stay
/// zero and only the low bytes' products are made.
///
/// # Safety
/// As [`vnni_sums`] for each panel unit, with the tiles configured as
/// [`TileConfig::all_16x64`] and the CPU having AMX-INT8.
#[inline(always)]
unsafe fn amx_sums<const T: u8>(
    unit: &Unit<AMX_ROWS>,
    a: *const u8,
    panel_bytes: usize,
    np: usize,
    (f, c): &mut (Folded, CTiles),
    s1: &mut [[__m512i; AMX_ROWS]],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        fold::<T>(unit, f);
        let (lo, hi, c0) = (f.lo.as_ptr().cast::<u8>(), f.hi.as_ptr().cast::<u8>(), c.0.as_mut_ptr().cast::<u8>());
        let cp = |j: usize| c0.add(j * AMX_ROWS * 64);
        for p in (0..np).step_by(2) {
            // An odd last panel is paired with itself, its second results dropped.
            let p1 = (p + 1).min(np - 1);
            let (x0, x1) = (a.add(p * panel_bytes), a.add(p1 * panel_bytes));
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, preserves_flags));
            for k in 0..QK_K / 64 {
                if lo_only(wt_of(T)) {
                    // SAFETY: as below, the low bytes only.
                    asm!(
                        "tileloadd tmm4, [{wl} + {sa}*1]",
                        "tileloadd tmm6, [{b0} + {sb}*1]",
                        "tdpbuud tmm0, tmm4, tmm6",
                        "tileloadd tmm7, [{b1} + {sb}*1]",
                        "tdpbuud tmm2, tmm4, tmm7",
                        wl = in(reg) lo.add(64 * k),
                        b0 = in(reg) x0.add(1024 * k), b1 = in(reg) x1.add(1024 * k),
                        sa = in(reg) QK_K, sb = in(reg) 64usize,
                        options(nostack, preserves_flags)
                    );
                    continue;
                }
                // SAFETY: the `A` loads read 16 rows of 64 bytes inside `f` (column step `k`),
                // the `B` loads the 16 quant vectors `16k ..` of panel units `p`, `p1`. The
                // activations are unsigned, the low bytes too (`tdpbuud`), the high ones signed
                // (`tdpbsud`).
                asm!(
                    "tileloadd tmm4, [{wl} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tdpbuud tmm0, tmm4, tmm6",
                    "tileloadd tmm5, [{wh} + {sa}*1]",
                    "tdpbsud tmm1, tmm5, tmm6",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbuud tmm2, tmm4, tmm7",
                    "tdpbsud tmm3, tmm5, tmm7",
                    wl = in(reg) lo.add(64 * k), wh = in(reg) hi.add(64 * k),
                    b0 = in(reg) x0.add(1024 * k), b1 = in(reg) x1.add(1024 * k),
                    sa = in(reg) QK_K, sb = in(reg) 64usize,
                    options(nostack, preserves_flags)
                );
            }
            // SAFETY: 16 rows of 64 bytes inside `c`, four tiles.
            asm!(
                "tilestored [{c0} + {sb}*1], tmm0",
                "tilestored [{c1} + {sb}*1], tmm1",
                "tilestored [{c2} + {sb}*1], tmm2",
                "tilestored [{c3} + {sb}*1], tmm3",
                c0 = in(reg) cp(0), c1 = in(reg) cp(1), c2 = in(reg) cp(2), c3 = in(reg) cp(3),
                sb = in(reg) 64usize,
                options(nostack, preserves_flags)
            );
            for (q, j) in [(p, 0), (p1, 2)] {
                if j == 2 && p1 == p {
                    break;
                }
                for (r, s1) in s1[q].iter_mut().enumerate() {
                    let l = _mm512_load_si512(cp(j).add(64 * r).cast());
                    let h = _mm512_load_si512(cp(j + 1).add(64 * r).cast());
                    *s1 = _mm512_add_epi32(l, _mm512_slli_epi32(h, 8));
                }
            }
        }
    }
}

/// The `R` rows' terms of `unit` for the panel unit at `a`, from their integer sums `s1` (see
/// [`vnni_sums`]), added to `acc[r]` (16 token lanes).
#[inline(always)]
unsafe fn finish<const T: u8, const R: usize>(
    unit: &Unit<R>,
    a: *const u8,
    mut s1: [__m512i; R],
    acc: &mut [__m512; R],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let wt = wt_of(T);
        let zero = _mm512_setzero_si512();
        for (s1, &o) in s1.iter_mut().zip(&unit.offset) {
            *s1 = _mm512_sub_epi32(*s1, _mm512_set1_epi32(o));
        }
        let mut ms = [zero; R];
        if has_min(wt) {
            for i in 0..sum_pairs(wt) {
                let sums = _mm512_loadu_si512(a.add(SUMS_AT + 64 * i) as *const __m512i);
                for (r, ms) in ms.iter_mut().enumerate() {
                    *ms = _mm512_add_epi32(*ms, _mm512_madd_epi16(_mm512_set1_epi32(unit.m[r][i]), sums));
                }
            }
        }
        let yd = _mm512_loadu_ps(a.add(D_AT) as *const f32);
        for r in 0..R {
            let mut term = _mm512_mul_ps(_mm512_set1_ps(unit.d[r]), _mm512_cvtepi32_ps(s1[r]));
            if has_min(wt) {
                term = _mm512_fnmadd_ps(_mm512_set1_ps(unit.dmin[r]), _mm512_cvtepi32_ps(ms[r]), term);
            }
            acc[r] = _mm512_fmadd_ps(term, yd, acc[r]);
        }
    }
}

/// `out[t * rows + r] = dot(row r, token t)` for the `rows` rows of `w` (`blocks` super-blocks
/// of `T` each) and the `n` tokens packed by [`pack`] in panels `panel_bytes` apart from
/// `panels`: tile by tile of `R` rows, unit by unit, each unit unpacked once for all the
/// panels; `sums(unit, a, np, s1)` makes a unit's integer sums for the `np` panel units from
/// `a` on ([`vnni_sums`] or [`amx_sums`]).
///
/// # Safety
/// The CPU supports AVX-512 F, BW, VL and VNNI, AVX2 and F16C, and what `sums` needs; `w`
/// holds `rows` rows of `blocks` super-blocks of `T`; `panels` holds `n.div_ceil(16)` panels
/// of `blocks` units; `out` holds `n * rows`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn products_of<const T: u8, const R: usize>(
    w: *const u8,
    rows: usize,
    blocks: usize,
    panels: *const u8,
    panel_bytes: usize,
    n: usize,
    out: &mut [f32],
    mut sums: impl FnMut(&Unit<R>, *const u8, usize, &mut [[__m512i; R]]),
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let bb = wt_of(T).block_bytes();
        let rb = blocks * bb;
        let n_panels = n.div_ceil(LANES);
        // The tile's sums, panel by panel (at most 16 panels per pass: 256 tokens).
        const MAX_PANELS: usize = 16;
        let mut acc = [[_mm512_setzero_ps(); R]; MAX_PANELS];
        let mut s1 = [[_mm512_setzero_si512(); R]; MAX_PANELS];
        // SAFETY: all-zero bytes are a valid `Unit`.
        let mut unit: Unit<R> = core::mem::zeroed();
        for r0 in (0..rows).step_by(R) {
            let nr = R.min(rows - r0);
            for p0 in (0..n_panels).step_by(MAX_PANELS) {
                let np = MAX_PANELS.min(n_panels - p0);
                for a in &mut acc[..np] {
                    *a = [_mm512_setzero_ps(); R];
                }
                for u in 0..blocks {
                    // SAFETY: the caller's contract: rows `r0 .. r0 + nr` hold every unit.
                    unpack::<T, R>(w.add(r0 * rb), rb, nr, u, &mut unit);
                    if u + 1 < blocks {
                        // The next unit's bytes, while this one's panels run (their first loads
                        // missed the caches: 8 % of a Q6_K product at one instruction).
                        prefetch_unit::<false>(w.add(r0 * rb + (u + 1) * bb), rb, nr, bb);
                    }
                    if p0 == 0 && r0 + R < rows {
                        // And, in the first pass, the next tile's same unit into L2, a tile's
                        // time ahead: Zen 4, 7B, 2 threads, repetitions alternating in one
                        // process, pp8 Q4_K_M 1.13x, Q5_K_M 1.06x, Q6_K 1.05x; Q4_K_M pp32
                        // 1.02x, pp128 1.00x.
                        prefetch_unit::<true>(w.add((r0 + R) * rb + u * bb), rb, R.min(rows - r0 - R), bb);
                    }
                    let at = panels.add(p0 * panel_bytes + u * UNIT_BYTES);
                    sums(&unit, at, np, &mut s1[..np]);
                    for (p, (a, s1)) in acc[..np].iter_mut().zip(&s1).enumerate() {
                        finish::<T, R>(&unit, at.add(p * panel_bytes), *s1, a);
                    }
                }
                for (p, a) in acc[..np].iter().enumerate() {
                    let mut lanes = [[0f32; LANES]; R];
                    for (l, v) in lanes.iter_mut().zip(a) {
                        _mm512_storeu_ps(l.as_mut_ptr(), *v);
                    }
                    let first = (p0 + p) * LANES;
                    for j in 0..LANES.min(n - first) {
                        for (o, l) in out[(first + j) * rows + r0..][..nr].iter_mut().zip(&lanes) {
                            *o = l[j];
                        }
                    }
                }
            }
        }
    }
}

/// [`products_of`] for `wt` (a type [`handles`] takes), `w` holding `rows` whole rows; on AMX
/// tiles when `amx`.
///
/// # Safety
/// As [`products_of`] (with `amx`: the CPU has AMX-INT8 and the OS lets this process use the
/// tile state; the tiles are configured and released here).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn products(
    wt: WeightType,
    w: &[u8],
    rows: usize,
    panels: *const u8,
    panel_bytes: usize,
    n: usize,
    out: &mut [f32],
    amx: bool,
) {
    /// The products of `wt` rows, one of the types `$t`, with the sums `$sums` (given `$c`, their
    /// scratch) over units of `$r` rows.
    macro_rules! by_type {
        ($r:expr, $sums:ident, $c:ident; $($t:ident),*) => {{
            use crate::qdot_x86::tags::*;
            let (blocks, w) = (w.len() / rows.max(1) / wt.block_bytes(), w.as_ptr());
            match wt {
                $(WeightType::$t => products_of::<$t, $r>(w, rows, blocks, panels, panel_bytes, n, out, |u, a, np, s1| {
                    $sums::<$t>(u, a, panel_bytes, np, &mut $c, s1)
                }),)*
                _ => unreachable!("{wt:?} is not for {}", stringify!($sums)),
            }
        }};
    }
    // SAFETY: the caller's contract, for every call; on AMX, the tiles are configured for `wt`
    // between the `load` and the release.
    unsafe {
        if amx {
            TileConfig::all_16x64().load();
            // SAFETY: all-zero bytes are a valid `Folded` and `CTiles`.
            let mut fc: (Folded, CTiles) = core::mem::zeroed();
            by_type!(AMX_ROWS, amx_sums, fc; Q2_K, Q3_K, Q4_K, Q5_K, Q6_K);
            release_tiles();
        } else {
            let mut no_scratch = ();
            by_type!(ROWS, vnni_sums, no_scratch; Q2_K, Q3_K, Q4_K, Q5_K, Q6_K);
        }
    }
}
