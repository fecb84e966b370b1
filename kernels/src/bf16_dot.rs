//! Batched products of bf16 weights with AVX-512 BF16 (`vdpbf16ps`: AMD Zen 4 and later, Intel
//! Cooper Lake and Sapphire Rapids), on the [`Path::Avx512`] path, when
//! [`crate::set_bf16_products`] asked for them (the default is the f32 FMA kernel of `simd.rs`).
//!
//! `vdpbf16ps` multiplies bf16 pairs exactly and adds both products to an f32 lane: 32
//! multiply-adds per instruction against 16 for an f32 FMA, at the same rate (measured on Zen 4),
//! and the bf16 weights are used as stored (no widening). Two accuracies:
//! - [`Bf16Products::Split`]: each activation is split as the AMX kernel does (`amx.rs`),
//!   `x = x_hi + x_lo + e` with `|e| <= 2^-16 |x|`, and both parts are multiplied: each term
//!   within `2^-16` of `w x`, near the f32 kernel, at its instruction count (the gain is the
//!   widening saved).
//! - [`Bf16Products::Rounded`]: activations rounded to bf16 (`x_hi` only, within `2^-9` of
//!   `x`), as llama.cpp's bf16 products do: half the instructions.
//!
//! Each output is one fixed chain over the columns in order (per pair the odd column, then the
//! even one; `x_hi` before `x_lo`), so it does not depend on the batch size or the token's place
//! in it. Denormal inputs count as zero (the instruction's rule).
//!
//! Activations ([`pack`]): per panel of [`PANEL`] tokens and column pair `q`, 16 lanes of a
//! `(x[2q], x[2q+1])` bf16 pair (the even column in the low half), `x_hi` and, with `Split`,
//! `x_lo` after it. Weights: per block of [`KC`] columns, the [`RS`] rows of a super-block are
//! copied to a stack buffer (their pairs broadcast from there); partial sums stay in a stack
//! buffer across column blocks, as in `simd.rs`'s `matmul_t`.

use core::arch::x86_64::*;

use crate::{bf16_products, Bf16Products, Path, WeightType, PANEL};

/// Rows per register tile.
const MR: usize = 6;
/// Rows per super-block (a multiple of MR), copied together per column block.
const RS: usize = 24;
/// Columns per block (the super-block's weights and a token tile's activations stay in L1).
const KC: usize = 256;
/// Panels per pass over the weights (their partial sums stay in the stack buffer).
const TBP: usize = 16;

/// Whether batched products of `wt` rows of `cols` columns on path `p` run here: returns the
/// split flag (`Some(true)` for [`Bf16Products::Split`]).
pub(crate) fn handles(p: Path, wt: WeightType, cols: usize) -> Option<bool> {
    let split = match bf16_products() {
        Bf16Products::F32 => return None,
        Bf16Products::Split => true,
        Bf16Products::Rounded => false,
    };
    (p == Path::Avx512 && wt == WeightType::BF16 && cols.is_multiple_of(2) && crate::detected().avx512bf16)
        .then_some(split)
}

/// `v` rounded to bf16 (ties to even), as its 16 bits.
fn bf16_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if v.is_nan() {
        return (b >> 16) | 0x40; // quiet
    }
    (b + 0x7FFF + ((b >> 16) & 1)) >> 16
}

/// The (hi, lo) bf16 parts of `v`, as bits.
fn split_bits(v: f32) -> (u32, u32) {
    let hi = bf16_bits(v);
    (hi, bf16_bits(v - f32::from_bits(hi << 16)))
}

/// Pack one panel: `xs` holds up to [`PANEL`] tokens' rows of `cols` activations; `panel`
/// (f32 storage, at least `cols * PANEL` long) receives the layout of the module docs, tokens
/// past the end zero.
pub(crate) fn pack(xs: &[f32], cols: usize, panel: &mut [f32], split: bool) {
    let tokens = xs.len().checked_div(cols).unwrap_or(0);
    assert!(tokens <= PANEL && panel.len() >= cols * PANEL, "bf16_dot::pack: bad lengths");
    let parts = if split { 2 } else { 1 };
    for q in 0..cols / 2 {
        let at = q * parts * PANEL;
        for j in 0..PANEL {
            let (hi, lo) = if j < tokens {
                let (a, b) = (split_bits(xs[j * cols + 2 * q]), split_bits(xs[j * cols + 2 * q + 1]));
                (a.0 | b.0 << 16, a.1 | b.1 << 16)
            } else {
                (0, 0)
            };
            panel[at + j] = f32::from_bits(hi);
            if split {
                panel[at + PANEL + j] = f32::from_bits(lo);
            }
        }
    }
}

#[repr(C, align(64))]
struct WBlock([u32; RS * KC / 2]);
#[repr(C, align(64))]
struct CBlock([f32; RS * TBP * PANEL]);

/// `c[r][v] (+)= sum over kq pairs of w[r] . x[v]`, for MR rows of `wb` (rows `KC / 2` pairs
/// apart) and `NT` panels of activations from `xp` (panels `ps` u32 apart, pairs `step` apart);
/// `c` rows `cs` f32 apart, tokens contiguous; from zero when `first`.
///
/// # Safety
/// The CPU has AVX-512 F and BF16; the pointers cover what the loops read and write.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const NT: usize, const SPLIT: bool>(
    wb: *const u32,
    xp: *const u32,
    ps: usize,
    kq: usize,
    c: *mut f32,
    cs: usize,
    first: bool,
) {
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let step = if SPLIT { 2 * PANEL } else { PANEL };
        let mut acc = [[_mm512_setzero_ps(); NT]; MR];
        if !first {
            for (r, ar) in acc.iter_mut().enumerate() {
                for (v, a) in ar.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(c.add(r * cs + v * PANEL));
                }
            }
        }
        for q in 0..kq {
            let mut hi = [_mm512_setzero_si512(); NT];
            let mut lo = [_mm512_setzero_si512(); NT];
            for v in 0..NT {
                let x = xp.add(v * ps + q * step);
                hi[v] = _mm512_loadu_si512(x.cast());
                if SPLIT {
                    lo[v] = _mm512_loadu_si512(x.add(PANEL).cast());
                }
            }
            for (r, ar) in acc.iter_mut().enumerate() {
                let w: __m512bh = core::mem::transmute(_mm512_set1_epi32(*wb.add(r * (KC / 2) + q) as i32));
                for (v, a) in ar.iter_mut().enumerate() {
                    *a = _mm512_dpbf16_ps(*a, w, core::mem::transmute::<__m512i, __m512bh>(hi[v]));
                    if SPLIT {
                        *a = _mm512_dpbf16_ps(*a, w, core::mem::transmute::<__m512i, __m512bh>(lo[v]));
                    }
                }
            }
        }
        for (r, ar) in acc.iter().enumerate() {
            for (v, a) in ar.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * cs + v * PANEL), *a);
            }
        }
    }
}

/// `out[t * rows + r] = dot(w[r, :], x[t, :])` for `n` tokens packed by [`pack`] (panels
/// `pstride` f32 apart) and `rows` bf16 rows of `cols` (even) columns in `w`.
///
/// # Safety
/// The CPU has AVX-512 F and BF16; `w` holds `rows * cols` bf16, `xp` the packed panels of `n`
/// tokens (`n.div_ceil(PANEL)` panels), `out` `n * rows` f32.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn products(
    w: &[u8],
    rows: usize,
    cols: usize,
    xp: &[f32],
    pstride: usize,
    n: usize,
    out: &mut [f32],
    split: bool,
) {
    if split {
        // SAFETY: the caller's contract, passed on.
        unsafe { products_t::<true>(w, rows, cols, xp, pstride, n, out) }
    } else {
        // SAFETY: as above.
        unsafe { products_t::<false>(w, rows, cols, xp, pstride, n, out) }
    }
}

/// [`products`] for one accuracy.
///
/// # Safety
/// As [`products`].
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn products_t<const SPLIT: bool>(
    w: &[u8],
    rows: usize,
    cols: usize,
    xp: &[f32],
    pstride: usize,
    n: usize,
    out: &mut [f32],
) {
    let nt = if SPLIT { 2 } else { 4 };
    let parts = if SPLIT { 2 } else { 1 };
    let pairs = cols / 2;
    let panels = n.div_ceil(PANEL);
    debug_assert!(w.len() >= rows * cols * 2 && out.len() >= n * rows && xp.len() >= panels * pstride);
    let (wp, xb, op) = (w.as_ptr(), xp.as_ptr() as *const u32, out.as_mut_ptr());
    let mut wb = WBlock([0; RS * KC / 2]);
    let mut cb = CBlock([0.0; RS * TBP * PANEL]);
    let (wbp, cbp) = (wb.0.as_mut_ptr(), cb.0.as_mut_ptr());
    const CS: usize = TBP * PANEL;
    // SAFETY: every read is inside `w` (rows x pairs x 4 bytes, copied bytewise), `xp`
    // (panels x pstride) and the stack blocks; every write inside `out` or the stack blocks
    // (the caller's contract and the loop bounds).
    unsafe {
        let mut p0 = 0;
        while p0 < panels {
            let np = TBP.min(panels - p0);
            let mut rs0 = 0;
            while rs0 < rows {
                let rsn = RS.min(rows - rs0);
                let rsp = rsn.div_ceil(MR) * MR;
                let mut q0 = 0;
                while q0 < pairs {
                    let kq = (KC / 2).min(pairs - q0);
                    for r in 0..rsp {
                        let dst = wbp.add(r * (KC / 2));
                        if r >= rsn {
                            core::ptr::write_bytes(dst, 0, kq);
                            continue;
                        }
                        // Byte copies: a row of a safetensors file may sit at any even address.
                        let src = wp.add(((rs0 + r) * pairs + q0) * 4);
                        _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(2 * KC).cast());
                        _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(2 * KC + 64).cast());
                        core::ptr::copy_nonoverlapping(src, dst.cast::<u8>(), kq * 4);
                    }
                    let first = q0 == 0;
                    let mut pj = 0;
                    while pj < np {
                        let t = nt.min(np - pj);
                        let xt = xb.add((p0 + pj) * pstride + q0 * parts * PANEL);
                        let mut r0 = 0;
                        while r0 < rsp {
                            let (wt, c) = (wbp.add(r0 * (KC / 2)), cbp.add(r0 * CS + pj * PANEL));
                            match t {
                                1 => tile::<1, SPLIT>(wt, xt, pstride, kq, c, CS, first),
                                2 => tile::<2, SPLIT>(wt, xt, pstride, kq, c, CS, first),
                                3 => tile::<3, SPLIT>(wt, xt, pstride, kq, c, CS, first),
                                _ => tile::<4, SPLIT>(wt, xt, pstride, kq, c, CS, first),
                            }
                            r0 += MR;
                        }
                        pj += t;
                    }
                    q0 += KC / 2;
                }
                let (t0, ntok) = (p0 * PANEL, (np * PANEL).min(n - p0 * PANEL));
                for t in 0..ntok {
                    let o = op.add((t0 + t) * rows + rs0);
                    for r in 0..rsn {
                        *o.add(r) = *cbp.add(r * CS + t);
                    }
                }
                rs0 += RS;
            }
            p0 += TBP;
        }
    }
}
