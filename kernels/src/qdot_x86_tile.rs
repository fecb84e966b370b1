//! Batched products of quantized weights (prefill) on x86: tiles of 8 rows. Each 256-element
//! unit of a tile (a K-quant super-block, or 8 blocks of a 32-element type) is unpacked once
//! into unsigned quants interleaved four bytes per row (dword `k` of group `g` of the 8 rows
//! side by side) and per-row scale vectors; then every token's product with the tile is a run
//! of byte dot products against the token's activations, four bytes at a time, broadcast: each
//! i32 lane of the result is one row, so no horizontal sums are needed until the end. Tokens go
//! eight (K-quants) or four at a time, so that each weight vector is loaded once for them.
//!
//! The integer sums equal the per-row kernels' (`qdot_x86.rs`); the f32 sums of the units'
//! terms are ordered per row lane, so a batched product differs from a stepped one (matvec) by
//! rounding only. Every token of a batch runs the same operations, whatever the batch.

use core::arch::x86_64::*;

use crate::qdot::{g32_fields, k_factors, k_scales, AK_BSUMS, AK_BYTES, G32, G32_BYTES};
use crate::qdot_x86::{dot_ss, dot_us_acc, f16_at, f32_at, off32, unpack32, unpack_k, wt_of, NO_VNNI};
use crate::quant::QK;
use crate::WeightType;

/// Rows per tile.
const ROWS: usize = 8;

/// One unit of a tile: quants interleaved by row, and the per-row factors.
struct Unit {
    /// `q[g][k]`: dword `k` (elements `4k .. 4k + 4`) of group `g` of each row, row `r` in lane `r`.
    q: [[__m256i; 8]; 8],
    /// Per row: the 32-element types' block scales (by block, f32 bits), or the K-quants'
    /// integer scales (by sub-block of 16, as i32).
    sc: [__m256i; 16],
    /// Per row: the K-quants' weights of the activations' sums of 16, two per lane (sums
    /// `2i` and `2i + 1` as the i16 halves of vector `i`), or the 32-element types' block
    /// minimums (by block, f32 bits).
    m: [__m256i; 8],
    /// Per row: the K-quants' `d` and `dmin` (zero without one).
    d: __m256,
    dmin: __m256,
}

/// Transpose 8 rows' 32-byte vectors into 8 vectors of one dword per row.
#[inline(always)]
unsafe fn interleave(v: [__m256i; 8]) -> [__m256i; 8] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // An 8 x 8 transpose of dwords: pairs, then quads, then 128-bit halves.
        let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
        let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
        let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
        let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
        let t4 = _mm256_unpacklo_epi32(v[4], v[5]);
        let t5 = _mm256_unpackhi_epi32(v[4], v[5]);
        let t6 = _mm256_unpacklo_epi32(v[6], v[7]);
        let t7 = _mm256_unpackhi_epi32(v[6], v[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256(u0, u4, 0x20),
            _mm256_permute2x128_si256(u1, u5, 0x20),
            _mm256_permute2x128_si256(u2, u6, 0x20),
            _mm256_permute2x128_si256(u3, u7, 0x20),
            _mm256_permute2x128_si256(u0, u4, 0x31),
            _mm256_permute2x128_si256(u1, u5, 0x31),
            _mm256_permute2x128_si256(u2, u6, 0x31),
            _mm256_permute2x128_si256(u3, u7, 0x31),
        ]
    }
}

/// Unit `u` of the `nr` rows at `rows` (`rb` bytes apart; rows from `nr` on zero): `n` blocks
/// of a 32-element type (`n` is 8 but in a row's last unit), or one super-block of a K-quant.
#[inline(always)]
unsafe fn unpack<const T: u8, const V: u8>(rows: *const u8, rb: usize, nr: usize, u: usize, n: usize) -> Unit {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let wt = wt_of(T);
        let bb = wt.block_bytes();
        let zero = _mm256_setzero_si256();
        let mut unit =
            Unit { q: [[zero; 8]; 8], sc: [zero; 16], m: [zero; 8], d: _mm256_setzero_ps(), dmin: _mm256_setzero_ps() };
        let mut by_row = [[zero; 8]; ROWS];
        let (mut sc, mut m) = ([[0i32; ROWS]; 16], [[0i32; ROWS]; 16]);
        let (mut d, mut dmin) = ([0f32; ROWS], [0f32; ROWS]);
        // SAFETY (of every access below): the caller points `rows` at `nr` rows holding unit `u`.
        for r in 0..nr {
            let row = rows.add(r * rb);
            if wt.block_elems() == QK {
                let b = row.add(u * G32 * bb);
                for k in 0..n {
                    by_row[r][k] = unpack32::<T, V>(b.add(k * bb));
                    sc[k][r] = f16_at(b.add(k * bb)).to_bits() as i32;
                    if matches!(wt, WeightType::Q4_1 | WeightType::Q5_1) {
                        m[k][r] = f16_at(b.add(k * bb + 2)).to_bits() as i32;
                    }
                }
            } else {
                let b = row.add(u * bb);
                by_row[r] = unpack_k::<T, false>(b);
                let (s16, m16) = k_scales(wt, core::slice::from_raw_parts(b, bb));
                for j in 0..16 {
                    (sc[j][r], m[j][r]) = (s16[j] as i32, m16[j] as i32);
                }
                let (d_at, dmin_at) = k_factors(wt);
                d[r] = f16_at(b.add(d_at));
                dmin[r] = dmin_at.map_or(0.0, |at| f16_at(b.add(at)));
            }
        }
        for (g, qg) in unit.q.iter_mut().enumerate() {
            let mut v = [zero; ROWS];
            for (vr, row) in v.iter_mut().zip(&by_row) {
                *vr = row[g];
            }
            *qg = interleave(v);
        }
        for (us, s) in unit.sc.iter_mut().zip(&sc) {
            *us = _mm256_loadu_si256(s.as_ptr() as *const __m256i);
        }
        for i in 0..8 {
            unit.m[i] = if wt.block_elems() == QK {
                _mm256_loadu_si256(m[i].as_ptr() as *const __m256i)
            } else {
                let pair: [i32; ROWS] = core::array::from_fn(|r| (m[2 * i][r] & 0xffff) | (m[2 * i + 1][r] << 16));
                _mm256_loadu_si256(pair.as_ptr() as *const __m256i)
            };
        }
        unit.d = _mm256_loadu_ps(d.as_ptr());
        unit.dmin = _mm256_loadu_ps(dmin.as_ptr());
        unit
    }
}

/// Group `g`'s byte products for the 8 rows with `M` tokens' 32 activation quants at `y[t]`,
/// as i32 row lanes: `(elements 0..16, elements 16..32)` per token (for the types that add the
/// two, `(all 32, 0)`). Each weight vector is loaded
/// once for the `M` tokens; each token's sums are added in the same order whatever `M`.
#[inline(always)]
unsafe fn group<const T: u8, const V: u8, const M: usize>(q: &[__m256i; 8], y: [*const u8; M]) -> [[__m256i; 2]; M] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let signed = matches!(wt_of(T), WeightType::Q8_0) && V == NO_VNNI;
        // Only the types with scales per 16 elements need the halves apart; the others add
        // them, so they keep one accumulator per token (the second stays zero): half the
        // registers, which AVX2's 16 cannot spare for 8 tokens.
        let split = matches!(wt_of(T), WeightType::Q2_K | WeightType::Q3_K | WeightType::Q6_K);
        let mut halves = [[_mm256_setzero_si256(); 2]; M];
        for (k, qk) in q.iter().enumerate() {
            let i = if split { k / 4 } else { 0 };
            for (h, &yt) in halves.iter_mut().zip(&y) {
                // SAFETY: the caller points each `y` at 32 activation quants.
                let yk = _mm256_set1_epi32((yt.add(4 * k) as *const i32).read_unaligned());
                h[i] =
                    if signed { _mm256_add_epi32(h[i], dot_ss::<V>(*qk, yk)) } else { dot_us_acc::<V>(h[i], *qk, yk) };
            }
        }
        halves
    }
}

/// `M` tokens' terms of unit `u` (`a[t]`: the activations of token `t`'s row), added to
/// `(acc[t], accm[t])`.
#[inline(always)]
unsafe fn tokens<const T: u8, const V: u8, const M: usize>(
    unit: &Unit,
    a: [*const u8; M],
    u: usize,
    n: usize,
    acc: &mut [__m256],
    accm: &mut [__m256],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let wt = wt_of(T);
        // SAFETY (of every access below): the caller points each of `a` at a row's activations
        // with unit `u`.
        if wt.block_elems() == QK {
            let g: [*const u8; M] = core::array::from_fn(|t| a[t].add(u * G32_BYTES));
            let (d_at, s_at, sum_at, qs_at) = g32_fields(n);
            for k in 0..n {
                let y: [*const u8; M] = core::array::from_fn(|t| g[t].add(qs_at + QK * k));
                let halves = group::<T, V, M>(&unit.q[k], y);
                for t in 0..M {
                    let mut s = _mm256_add_epi32(halves[t][0], halves[t][1]);
                    if let Some(shift) = off32(T, V != NO_VNNI) {
                        let ysum = (g[t].add(sum_at + 4 * k) as *const i32).read_unaligned();
                        s = _mm256_sub_epi32(s, _mm256_set1_epi32(ysum << shift));
                    }
                    let dw = _mm256_castsi256_ps(unit.sc[k]);
                    let d = _mm256_mul_ps(dw, _mm256_set1_ps(f32_at(g[t].add(d_at + 4 * k))));
                    acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[t]);
                    if matches!(wt, WeightType::Q4_1 | WeightType::Q5_1) {
                        let mw = _mm256_castsi256_ps(unit.m[k]);
                        accm[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(-f32_at(g[t].add(s_at + 4 * k))), accm[t]);
                    }
                }
            }
            return;
        }
        let a: [*const u8; M] = core::array::from_fn(|t| a[t].add(u * AK_BYTES));
        let mut isum = [_mm256_setzero_si256(); M];
        let sixteen = !matches!(wt, WeightType::Q4_K | WeightType::Q5_K);
        for g in 0..8 {
            let y: [*const u8; M] = core::array::from_fn(|t| a[t].add(4 + 32 * g));
            let halves = group::<T, V, M>(&unit.q[g], y);
            for (is, [lo, hi]) in isum.iter_mut().zip(halves) {
                *is = if sixteen {
                    let s = _mm256_add_epi32(*is, _mm256_mullo_epi32(lo, unit.sc[2 * g]));
                    _mm256_add_epi32(s, _mm256_mullo_epi32(hi, unit.sc[2 * g + 1]))
                } else {
                    _mm256_add_epi32(*is, _mm256_mullo_epi32(_mm256_add_epi32(lo, hi), unit.sc[2 * g]))
                };
            }
        }
        for t in 0..M {
            let mut msum = _mm256_setzero_si256();
            for (i, m) in unit.m.iter().enumerate() {
                // Sums 2i and 2i + 1 in every lane, against each row's two weights.
                let bs = _mm256_set1_epi32((a[t].add(AK_BSUMS + 4 * i) as *const i32).read_unaligned());
                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(*m, bs));
            }
            let yd = _mm256_set1_ps(f32_at(a[t]));
            let mut is = isum[t];
            if k_factors(wt).1.is_none() {
                is = _mm256_sub_epi32(is, msum);
            } else {
                accm[t] = _mm256_fmadd_ps(_mm256_mul_ps(unit.dmin, yd), _mm256_cvtepi32_ps(msum), accm[t]);
            }
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(unit.d, yd), _mm256_cvtepi32_ps(is), acc[t]);
        }
    }
}

/// Prefetch `bytes` from `at` in each of `nr` rows `rb` bytes apart into L1 (`L2`: into L2
/// only). A hint: the addresses may run past a row's last unit, which faults nothing.
#[inline(always)]
pub(crate) fn prefetch_unit<const L2: bool>(at: *const u8, rb: usize, nr: usize, bytes: usize) {
    for r in 0..nr {
        for line in (0..bytes).step_by(64) {
            let p = at.wrapping_add(r * rb + line);
            if L2 {
                crate::x86::prefetch_l2(p);
            } else {
                crate::x86::prefetch(p);
            }
        }
    }
}

/// `out[t * rows + r] = dot(row r, token t)` for the `rows` rows of `w` (`blocks` blocks of `T`
/// each) and the tokens' quantized activations `acts` (at most `MAX_TOKENS`): tile by tile of 8 rows,
/// unit by unit, each unit unpacked once for all the tokens.
///
/// # Safety
/// As `qdot_x86::products`.
#[inline(always)]
pub(crate) unsafe fn products<const T: u8, const V: u8>(
    w: *const u8,
    rows: usize,
    blocks: usize,
    acts: &[*const u8],
    out: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let wt = wt_of(T);
        let rb = blocks * wt.block_bytes();
        let n_tok = acts.len();
        let (units, last) = if wt.block_elems() == QK {
            (blocks.div_ceil(G32), blocks - (blocks.div_ceil(G32) - 1) * G32)
        } else {
            (blocks, 1)
        };
        let unit_bytes = if wt.block_elems() == QK { G32 * wt.block_bytes() } else { wt.block_bytes() };
        for r0 in (0..rows).step_by(ROWS) {
            let nr = ROWS.min(rows - r0);
            let mut acc = [_mm256_setzero_ps(); crate::qdot_x86::MAX_TOKENS];
            let mut accm = [_mm256_setzero_ps(); crate::qdot_x86::MAX_TOKENS];
            for u in 0..units {
                let n = if u + 1 == units { last } else { G32 };
                // SAFETY: the caller's contract: rows `r0 .. r0 + nr` hold every unit.
                let unit = unpack::<T, V>(w.add(r0 * rb), rb, nr, u, n);
                if u + 1 < units {
                    // The next unit's bytes, while this one's tokens run: its loads missed the
                    // caches and stalled the unpacking (17 % of a Q6_K product's time on Zen 4).
                    prefetch_unit::<false>(w.add(r0 * rb + (u + 1) * unit_bytes), rb, nr, unit_bytes);
                }
                if r0 + ROWS < rows {
                    // And the next tile's same unit into L2, a tile's time ahead:
                    // `RUNLLAMA_CPU=avx2` on Zen 4, 7B, 2 threads, repetitions alternating in one
                    // process, pp8 Q4_K_M 1.05-1.06x, Q6_K 1.05x, Q4_0 1.02x, Q8_0 1.00x; pp32
                    // Q4_K_M 1.02x; AVX-512's Q4_0 pp8 1.03x.
                    let next = ROWS.min(rows - r0 - ROWS);
                    prefetch_unit::<true>(w.add((r0 + ROWS) * rb + u * unit_bytes), rb, next, unit_bytes);
                }
                // Eight tokens at a time for the K-quants, four for the 32-element types (whose
                // per-block state would not fit the registers for eight; measured on Zen 4: 95
                // against 125 GMAC/s), each weight vector loaded once for them; then the rest.
                let mut t = 0;
                if wt.block_elems() == QK {
                    while t + 4 <= n_tok {
                        let a: [*const u8; 4] = core::array::from_fn(|k| acts[t + k]);
                        tokens::<T, V, 4>(&unit, a, u, n, &mut acc[t..t + 4], &mut accm[t..t + 4]);
                        t += 4;
                    }
                } else {
                    while t + 8 <= n_tok {
                        let a: [*const u8; 8] = core::array::from_fn(|k| acts[t + k]);
                        tokens::<T, V, 8>(&unit, a, u, n, &mut acc[t..t + 8], &mut accm[t..t + 8]);
                        t += 8;
                    }
                }
                for t in t..n_tok {
                    tokens::<T, V, 1>(&unit, [acts[t]], u, n, &mut acc[t..t + 1], &mut accm[t..t + 1]);
                }
            }
            for t in 0..n_tok {
                let mut v = [0f32; ROWS];
                _mm256_storeu_ps(v.as_mut_ptr(), _mm256_sub_ps(acc[t], accm[t]));
                out[t * rows + r0..t * rows + r0 + nr].copy_from_slice(&v[..nr]);
            }
        }
    }
}
