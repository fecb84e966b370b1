//! Batched matmul on Intel AMX tiles (AMX-TILE + AMX-BF16: Sapphire Rapids and later), for f16
//! and bf16 weights whose rows are a multiple of 32 columns (every LLaMA matrix).
//!
//! `TDPBF16PS` multiplies bf16 pairs exactly and accumulates in f32, at many times the f32 FMA
//! rate of AVX-512. To keep f32-level accuracy, each operand is split into bf16 parts:
//! - an f32 activation `x = x_hi + x_lo + e`, `x_hi = bf16(x)`, `x_lo = bf16(x - x_hi)`,
//!   `|e| <= 2^-16 |x|` (each rounding to bf16 is within `2^-8` of its value);
//! - an f16 weight `w = w_hi + w_lo` exactly (11 significant bits: 8 in `w_hi`, the rest in
//!   `w_lo`); a bf16 weight is its own `w_hi`.
//!
//! and an output sums `w_hi*x_hi + w_hi*x_lo (+ w_lo*x_hi)` (the dropped `w_lo*x_lo` is at most
//! `2^-16 |w x|`). So each term is within `2^-16` (bf16 weights) or `2^-15` (f16) of `w x`:
//! at worst 3e-5 of the sum of |w x|, typically far less (the errors' signs vary), against
//! `2^-9` for the bf16-rounded activations of other engines. Each output is still one fixed
//! chain over the columns in order, so it does not depend on the batch size or the token's
//! place in it.
//!
//! Layouts. Activations: the f32 panels of [`crate::pack_activations`], converted in place per
//! 32-column block (2 KiB: 32 columns x 16 tokens x f32) into the `B` operand of two tiles:
//! `x_hi` then `x_lo`, each 16 rows (column pairs) x 16 tokens x 2 bf16 (low half the even
//! column). Weights: per strip of [`SR`] rows and block of [`KB`] columns, `w_hi` (and `w_lo`)
//! rows of bf16 in a stack buffer, the `A` operand (16 rows x 32 columns per tile). Partial sums
//! (`C`, 16 rows x 16 tokens f32 per tile) go to a stack buffer between column blocks.
//!
//! Tile registers: tmm0..3 `C` (2 row tiles x 2 token tiles), tmm4/5 `A`, tmm6/7 `B`. Every
//! product starts with `LDTILECFG` and ends with `TILERELEASE` (tile state is per thread).

use core::arch::asm;
use core::arch::x86_64::*;

use crate::simd::{WBF16, WF16};
use crate::{WeightType, PANEL};

/// Columns per tile step: one 64-byte tile row of bf16.
pub(crate) const TK: usize = 32;
/// Weight rows per strip: two 16-row `A` tiles.
const SR: usize = 32;
/// Weight rows per super-strip: converted together per column block, so that the block's
/// activations (L2) serve every strip.
const RS: usize = 128;
/// Columns per weight block (converted once per super-strip, used by every token tile).
const KB: usize = 128;
/// Tokens per pass over the weights (8 panels): the super-strip's partial sums stay in the
/// scratch across column blocks.
const TG: usize = 128;
/// f32 of scratch a product needs: partial sums `RS x TG` f32, then `w_hi` and `w_lo`, each
/// `RS x KB` bf16.
pub(crate) const SCRATCH: usize = RS * TG + RS * KB;
/// Bytes per converted 32-column block of a panel: the `x_hi` tile, then the `x_lo` tile.
const PBLOCK: usize = 2 * 16 * 64;
const _: () = assert!(PANEL == 16 && KB.is_multiple_of(TK) && TG.is_multiple_of(2 * PANEL) && RS.is_multiple_of(SR));

/// Whether the AMX product handles weights of type `wt` with `cols` columns.
pub(crate) const fn handles(wt: WeightType, cols: usize) -> bool {
    matches!(wt, WeightType::F16 | WeightType::BF16) && cols.is_multiple_of(TK) && cols > 0
}

/// The bf16 nearest `v` (ties to even) in the top half of each lane, the bottom half zero:
/// as f32 bits, the value `bf16(v)` exactly. (Infinities stay; NaN payloads may become
/// infinities: not a concern for activations and weights.)
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn round_bf16(v: __m512) -> __m512i {
    let b = _mm512_castps_si512(v);
    let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let r = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), odd);
    _mm512_and_si512(r, _mm512_set1_epi32(0xFFFF_0000u32 as i32))
}

/// `(hi, lo)` bf16 parts of 16 f32, each as f32 bits (see [`round_bf16`]).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn split(v: __m512) -> (__m512i, __m512i) {
    let hi = round_bf16(v);
    (hi, round_bf16(_mm512_sub_ps(v, _mm512_castsi512_ps(hi))))
}

/// Convert one f32 panel of [`crate::pack_activations`] (`cols` columns, a multiple of
/// [`TK`]) in place into the AMX layout (see the module docs).
///
/// # Safety
/// The CPU supports AVX-512 F/BW; `panel` is valid for reading and writing `cols * PANEL` f32.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn convert_panel(panel: *mut f32, cols: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let mut tmp = [_mm512_setzero_ps(); TK];
        for b in 0..cols / TK {
            let blk = panel.add(b * TK * PANEL);
            for (k, t) in tmp.iter_mut().enumerate() {
                *t = _mm512_loadu_ps(blk.add(k * PANEL));
            }
            let out = blk.cast::<u8>();
            for p in 0..TK / 2 {
                let (ha, la) = split(tmp[2 * p]);
                let (hb, lb) = split(tmp[2 * p + 1]);
                _mm512_storeu_si512(out.add(p * 64).cast(), _mm512_or_si512(_mm512_srli_epi32::<16>(ha), hb));
                _mm512_storeu_si512(out.add(1024 + p * 64).cast(), _mm512_or_si512(_mm512_srli_epi32::<16>(la), lb));
            }
        }
    }
}

/// A 64-byte palette-1 tile configuration (`LDTILECFG`'s operand).
#[repr(C, align(64))]
pub(crate) struct TileConfig([u8; 64]);

impl TileConfig {
    /// Tiles `tmm0..tmm7` of `(rows, bytes per row)` each (at most 16 x 64).
    pub(crate) const fn new(shapes: [(u8, u8); 8]) -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            assert!(shapes[t].0 <= 16 && shapes[t].1 <= 64);
            c[16 + 2 * t] = shapes[t].1;
            c[48 + t] = shapes[t].0;
            t += 1;
        }
        TileConfig(c)
    }

    /// All eight tiles 16 rows x 64 bytes.
    pub(crate) const fn all_16x64() -> TileConfig {
        TileConfig::new([(16, 64); 8])
    }

    /// Configure this thread's tiles; [`release_tiles`] ends their use.
    ///
    /// # Safety
    /// The CPU has AMX-TILE and the OS lets this process use the tile state.
    pub(crate) unsafe fn load(&self) {
        // SAFETY: a valid palette-1 configuration, 64-byte aligned; the caller's contract.
        unsafe { asm!("ldtilecfg [{}]", in(reg) self.0.as_ptr(), options(nostack, preserves_flags)) };
    }
}

/// Release this thread's tile state (after [`TileConfig::load`]).
///
/// # Safety
/// The CPU has AMX-TILE.
pub(crate) unsafe fn release_tiles() {
    // SAFETY: `TILERELEASE` is valid in any tile state; the caller's contract.
    unsafe { asm!("tilerelease", options(nostack, preserves_flags)) };
}

/// Widen (f16) or copy (bf16) rows `r0..r0 + nr` (those below `rows`; the rest zero), columns
/// `k0..k0 + kc`, of `w` into `hi` (and, for f16, `lo`): row `r` at `r * KB`.
#[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn convert_weights<const WT: u8>(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    r0: usize,
    k0: usize,
    kc: usize,
    nr: usize,
    hi: *mut u16,
    lo: *mut u16,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        for r in 0..nr {
            let (h, l) = (hi.add(r * KB), lo.add(r * KB));
            if r0 + r >= rows {
                for c in (0..kc).step_by(32) {
                    _mm512_storeu_si512(h.add(c).cast(), _mm512_setzero_si512());
                    if WT == WF16 {
                        _mm512_storeu_si512(l.add(c).cast(), _mm512_setzero_si512());
                    }
                }
                continue;
            }
            let src = w.add((r0 + r) * row_bytes + k0 * 2);
            for c in (0..kc).step_by(16) {
                // This row's next block (the super-strip's rows are RS interleaved short runs).
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(KB * 2 + c * 2).cast());
                let raw = _mm256_loadu_si256(src.add(c * 2).cast());
                if WT == WBF16 {
                    _mm256_storeu_si256(h.add(c).cast(), raw);
                } else {
                    let (hv, lv) = split(_mm512_cvtph_ps(raw));
                    _mm256_storeu_si256(h.add(c).cast(), _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(hv)));
                    _mm256_storeu_si256(l.add(c).cast(), _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(lv)));
                }
            }
        }
    }
}

/// Tile steps over `kc` columns for one strip and one or two token tiles: `C` in tmm0/1 (row
/// tiles 0, 1 of token tile 0) and tmm2/3 (token tile 1); `a` = `w_hi` of row 0 (rows `KB`
/// apart, `w_lo` at `lo_off` elements further), `b0`/`b1` = the token tiles' converted blocks.
/// Per 32 columns: `w_hi * x_lo`, then `w_hi * x_hi` (reloading only `B`), then, for f16,
/// `w_lo * x_hi` (reloading only `A`): tile loads are the bottleneck (no renaming of tiles).
///
/// # Safety
/// Tiles are configured by [`TileConfig::all_16x64`]; the pointers cover `kc` columns.
#[inline]
unsafe fn steps<const WT: u8, const TWO: bool>(a: *const u16, lo_off: usize, b0: *const u8, b1: *const u8, kc: usize) {
    let sa = KB * 2;
    for s in 0..kc / TK {
        // SAFETY: offsets within the weight strip (`s * TK < kc <= KB`, 32 rows) and the converted
        // panel blocks (the caller's `kc` columns).
        let (a0, a1, p0, p1) =
            unsafe { (a.add(s * TK), a.add(16 * KB + s * TK), b0.add(s * PBLOCK), b1.add(s * PBLOCK)) };
        // SAFETY: tile loads read 16 rows of 64 bytes at the given stride, inside the weight
        // buffer (rows `KB` elements apart, `s * TK + 32 <= kc <= KB`) and the converted panel
        // blocks (1 KiB each); the tile registers are the caller's configured tiles.
        unsafe {
            // w_hi * x_lo (both token tiles' operands loaded first, then the products)
            if TWO {
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{p0} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm5, tmm6",
                    "tileloadd tmm7, [{p1} + {sb}*1]",
                    "tdpbf16ps tmm2, tmm4, tmm7",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    // w_hi * x_hi
                    "tileloadd tmm6, [{q0} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm5, tmm6",
                    "tileloadd tmm7, [{q1} + {sb}*1]",
                    "tdpbf16ps tmm2, tmm4, tmm7",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0, a1 = in(reg) a1, p0 = in(reg) p0.add(1024), p1 = in(reg) p1.add(1024),
                    q0 = in(reg) p0, q1 = in(reg) p1, sa = in(reg) sa, sb = in(reg) 64usize,
                    options(nostack, preserves_flags)
                );
            } else {
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{p0} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm5, tmm6",
                    "tileloadd tmm6, [{q0} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm5, tmm6",
                    a0 = in(reg) a0, a1 = in(reg) a1, p0 = in(reg) p0.add(1024), q0 = in(reg) p0,
                    sa = in(reg) sa, sb = in(reg) 64usize,
                    options(nostack, preserves_flags)
                );
            }
            if WT == WF16 {
                // w_lo * x_hi (x_hi still in tmm6/tmm7)
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm5, tmm6",
                    a0 = in(reg) a0.add(lo_off), a1 = in(reg) a1.add(lo_off), sa = in(reg) sa,
                    options(nostack, preserves_flags)
                );
                if TWO {
                    asm!("tdpbf16ps tmm2, tmm4, tmm7", "tdpbf16ps tmm3, tmm5, tmm7", options(nostack, preserves_flags));
                }
            }
        }
    }
}

/// The partial-sum tiles of one strip and token pair, `c0` the first: row tile 1 is `16 * TG`
/// f32 further, token tile 1 `PANEL` further; rows `TG` f32 apart.
fn c_tiles(c0: *mut f32) -> [*mut f32; 4] {
    let at = |d: usize| c0.wrapping_add(d);
    [c0, at(16 * TG), at(PANEL), at(16 * TG + PANEL)]
}

/// Load the partial sums at `c0` into tmm0/1 (and tmm2/3 for the second token tile when
/// `two`), or zero them when `zero` (the first column block).
///
/// # Safety
/// Tiles are configured by [`TileConfig::all_16x64`]; unless `zero`, the tiles (see [`c_tiles`])
/// lie inside the partial-sum scratch.
#[inline]
unsafe fn c_tiles_in(c0: *mut f32, two: bool, zero: bool) {
    let ([c0, c1, c2, c3], cs) = (c_tiles(c0), TG * 4);
    // SAFETY: as the caller guarantees: 16 rows of 64 bytes each, at stride `cs`.
    unsafe {
        if zero {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, preserves_flags));
            return;
        }
        asm!(
            "tileloadd tmm0, [{c0} + {cs}*1]",
            "tileloadd tmm1, [{c1} + {cs}*1]",
            c0 = in(reg) c0, c1 = in(reg) c1, cs = in(reg) cs,
            options(nostack, preserves_flags)
        );
        if two {
            asm!(
                "tileloadd tmm2, [{c2} + {cs}*1]",
                "tileloadd tmm3, [{c3} + {cs}*1]",
                c2 = in(reg) c2, c3 = in(reg) c3, cs = in(reg) cs,
                options(nostack, preserves_flags)
            );
        }
    }
}

/// Store tmm0/1 (and tmm2/3 when `two`) back to the partial sums at `c0`.
///
/// # Safety
/// As [`c_tiles_in`] (the tiles lie inside the partial-sum scratch).
#[inline]
unsafe fn c_tiles_out(c0: *mut f32, two: bool) {
    let ([c0, c1, c2, c3], cs) = (c_tiles(c0), TG * 4);
    // SAFETY: as the caller guarantees: 16 rows of 64 bytes each, at stride `cs`.
    unsafe {
        asm!(
            "tilestored [{c0} + {cs}*1], tmm0",
            "tilestored [{c1} + {cs}*1], tmm1",
            c0 = in(reg) c0, c1 = in(reg) c1, cs = in(reg) cs,
            options(nostack, preserves_flags)
        );
        if two {
            asm!(
                "tilestored [{c2} + {cs}*1], tmm2",
                "tilestored [{c3} + {cs}*1], tmm3",
                c2 = in(reg) c2, c3 = in(reg) c3, cs = in(reg) cs,
                options(nostack, preserves_flags)
            );
        }
    }
}

/// `out[t * rows + r] = dot(w[r, :], x[t, :])` for `n` tokens packed by
/// [`crate::pack_activations`] in the AMX layout (see [`handles`]).
///
/// # Safety
/// The CPU supports AVX-512 F/BW, F16C and AMX-TILE/AMX-BF16, and the OS lets this process
/// use the tile state; `handles(wt, cols)`; `w` holds `rows * cols` elements, `xp` the packed
/// panels of `n` tokens, `out` `n * rows` f32, `scratch` [`SCRATCH`] f32.
#[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul_packed(
    wt: WeightType,
    w: &[u8],
    rows: usize,
    cols: usize,
    xp: &[f32],
    n: usize,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (w, xp, out, s) = (w.as_ptr(), xp.as_ptr(), out.as_mut_ptr(), scratch.as_mut_ptr());
        match wt {
            WeightType::BF16 => matmul_t::<WBF16>(w, rows, cols, xp, n, out, s),
            _ => matmul_t::<WF16>(w, rows, cols, xp, n, out, s),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
unsafe fn matmul_t<const WT: u8>(
    w: *const u8,
    rows: usize,
    cols: usize,
    xp: *const f32,
    n: usize,
    out: *mut f32,
    scratch: *mut f32,
) {
    // SAFETY: the caller's contract (AMX tiles usable).
    unsafe { TileConfig::all_16x64().load() };
    // SAFETY: the caller's contract: `w` holds `rows` rows of `cols` elements, `xp` the packed
    // panels of `n` tokens, `out` `n * rows` values and `scratch` `SCRATCH` f32, the tiles are
    // configured above; every offset below stays within them.
    unsafe {
        let row_bytes = cols * 2;
        let pstride = crate::panel_stride(cols);
        let cp = scratch;
        let hp = scratch.add(RS * TG).cast::<u16>();
        let lo_off = RS * KB;
        let lp = hp.add(lo_off);
        let panels = n.div_ceil(PANEL);
        let mut g0 = 0;
        while g0 < panels {
            let gp = (TG / PANEL).min(panels - g0);
            let mut rs0 = 0;
            while rs0 < rows {
                let nrs = RS.min(rows - rs0).next_multiple_of(SR);
                let mut k0 = 0;
                while k0 < cols {
                    let kc = KB.min(cols - k0);
                    convert_weights::<WT>(w, row_bytes, rows, rs0, k0, kc, nrs, hp, lp);
                    // Token tiles outer: their activations (L1) serve every strip.
                    let mut q = 0;
                    while q < gp {
                        let two = q + 1 < gp;
                        let b0 = xp.add((g0 + q) * pstride + k0 * PANEL).cast::<u8>();
                        let b1 = if two { b0.add(pstride * 4) } else { b0 };
                        for st in 0..nrs / SR {
                            let (hs, c0) = (hp.add(st * SR * KB), cp.add(st * SR * TG + q * PANEL));
                            c_tiles_in(c0, two, k0 == 0);
                            if two {
                                steps::<WT, true>(hs, lo_off, b0, b1, kc);
                            } else {
                                steps::<WT, false>(hs, lo_off, b0, b1, kc);
                            }
                            c_tiles_out(c0, two);
                        }
                        q += 2;
                    }
                    k0 += KB;
                }
                let (t0, nt) = (g0 * PANEL, (gp * PANEL).min(n - g0 * PANEL));
                for t in 0..nt {
                    let o = out.add((t0 + t) * rows + rs0);
                    for r in 0..RS.min(rows - rs0) {
                        *o.add(r) = *cp.add(r * TG + t);
                    }
                }
                rs0 += RS;
            }
            g0 += TG / PANEL;
        }
    }
    // SAFETY: the caller's contract (AMX tiles usable).
    unsafe { release_tiles() };
}
