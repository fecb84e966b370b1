//! Batched products of bf16 weights with AVX-512 BF16 (`vdpbf16ps`: AMD Zen 4 and later, Intel
//! Cooper Lake and Sapphire Rapids), on the [`Path::Avx512`] path, when
//! the product's [`Products`] choose [`Bf16Products::Rounded`] (the default is the f32 FMA
//! kernel of `simd.rs`).
//!
//! `vdpbf16ps` multiplies bf16 pairs exactly and adds both products to an f32 lane: 32
//! multiply-adds per instruction against 16 for an f32 FMA, at the same rate (measured on Zen 4),
//! and the bf16 weights are used as stored (no widening). The activations are rounded to bf16
//! (within `2^-9` of their value), as llama.cpp's bf16 products do: that is the accuracy given
//! for the speed. (Also multiplying their bf16 remainders, as the AMX kernel does, kept f32-level
//! accuracy but ran only 2.5 % faster than the FMA kernel: measured and dropped.)
//!
//! Each output is one fixed chain over the columns in order (per pair the odd column, then the
//! even one), so it does not depend on the batch size or the token's place in it. Denormal
//! inputs count as zero (the instruction's rule).
//!
//! Activations ([`pack`]): per panel of [`PANEL`] tokens and column pair `q`, 16 lanes of a
//! `(x[2q], x[2q+1])` bf16 pair (the even column in the low half). Weights: each pair is
//! broadcast straight from the row where it is stored, per block of [`KC`] columns of a
//! super-block of [`RS`] rows (which stays in cache while every panel of the pass uses it;
//! copying the block to an aligned buffer first cost 12 % at 128 tokens and half the speed at
//! 8); partial sums stay in a stack buffer across column blocks, as in `simd.rs`'s `matmul_t`.

use core::arch::x86_64::*;

use crate::{Bf16Products, Path, Products, WeightType, PANEL};

/// Rows per register tile.
const MR: usize = 6;
/// Rows per super-block (a multiple of MR), copied together per column block.
const RS: usize = 24;
/// Columns per block (the super-block's weights and a token tile's activations stay in L1).
const KC: usize = 512;
/// Panels per pass over the weights (their partial sums stay in the stack buffer).
const TBP: usize = 16;

/// Whether batched products of `wt` rows of `cols` columns made as `p` says run here.
pub(crate) fn handles(p: Products, wt: WeightType, cols: usize) -> bool {
    p.bf16 == Bf16Products::Rounded
        && p.path == Path::Avx512
        && wt == WeightType::BF16
        && cols.is_multiple_of(2)
        && crate::detected().avx512bf16
        && crate::detected().avx512vl
}

/// `v` rounded to bf16 (ties to even), as its 16 bits.
fn bf16_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if v.is_nan() {
        return (b >> 16) | 0x40; // quiet
    }
    (b + 0x7FFF + ((b >> 16) & 1)) >> 16
}

/// Pack one panel: `xs` holds up to [`PANEL`] tokens' rows of `cols` activations; `panel`
/// (f32 storage, at least `cols * PANEL / 2` long) receives the layout of the module docs,
/// tokens past the end zero.
pub(crate) fn pack(xs: &[f32], cols: usize, panel: &mut [f32]) {
    let tokens = xs.len().checked_div(cols).unwrap_or(0);
    assert!(tokens <= PANEL && panel.len() >= cols * PANEL / 2, "bf16_dot::pack: bad lengths");
    for q in 0..cols / 2 {
        for j in 0..PANEL {
            let pair = if j < tokens {
                bf16_bits(xs[j * cols + 2 * q]) | bf16_bits(xs[j * cols + 2 * q + 1]) << 16
            } else {
                0
            };
            panel[q * PANEL + j] = f32::from_bits(pair);
        }
    }
}

#[repr(C, align(64))]
struct CBlock([f32; RS * TBP * PANEL]);

/// `c[r][v] (+)= sum over kq pairs of w[r] . x[v]`, for the MR rows at `w` (bf16 pairs, any
/// even address) and `NT` panels of activations from `xp` (panels `ps` u32 apart, pairs `PANEL`
/// apart); `c` rows `cs` f32 apart, tokens contiguous; from zero when `first`. `PF`: prefetch
/// as [`prefetch_next`] says, `l2_ahead` pairs ahead into L2.
///
/// # Safety
/// The CPU has AVX-512 F and BF16; the pointers cover what the loops read and write.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const NT: usize, const PF: bool>(
    w: &[*const u32; MR],
    xp: *const u32,
    ps: usize,
    kq: usize,
    c: *mut f32,
    cs: usize,
    first: bool,
    l2_ahead: usize,
) {
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NT]; MR];
        if !first {
            for (r, ar) in acc.iter_mut().enumerate() {
                for (v, a) in ar.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(c.add(r * cs + v * PANEL));
                }
            }
        }
        for q in 0..kq {
            if PF {
                prefetch_next(w, q, l2_ahead);
            }
            let mut x = [_mm512_setzero_si512(); NT];
            for (v, xv) in x.iter_mut().enumerate() {
                *xv = _mm512_loadu_si512(xp.add(v * ps + q * PANEL).cast());
            }
            for (ar, wr) in acc.iter_mut().zip(w) {
                let wq: __m512bh = core::mem::transmute(_mm512_set1_epi32(wr.add(q).read_unaligned() as i32));
                for (a, xv) in ar.iter_mut().zip(&x) {
                    *a = _mm512_dpbf16_ps(*a, wq, core::mem::transmute::<__m512i, __m512bh>(*xv));
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

/// Where pair `q` of a tile's rows starts a cache line, prefetch into L1 the line one column
/// block ([`KC`]) further along each row (the block the rows' next tile reads), and into L2
/// the line `l2_ahead` pairs further (none if 0; see [`products`]).
#[inline(always)]
fn prefetch_next(w: &[*const u32; MR], q: usize, l2_ahead: usize) {
    if q.is_multiple_of(16) {
        for wr in w {
            crate::x86::prefetch(wr.wrapping_add(q + KC / 2).cast());
            if l2_ahead != 0 {
                crate::x86::prefetch_l2(wr.wrapping_add(q + l2_ahead).cast());
            }
        }
    }
}

/// [`tile`] for one panel's first 8 tokens, in 256-bit vectors: the same products per lane,
/// so the same bits.
///
/// # Safety
/// The CPU has AVX-512 F, VL and BF16; the pointers cover what the loops read and write.
#[target_feature(enable = "avx512f,avx512vl,avx512bf16")]
#[inline]
unsafe fn tile_half<const PF: bool>(
    w: &[*const u32; MR],
    xp: *const u32,
    kq: usize,
    c: *mut f32,
    cs: usize,
    first: bool,
    l2_ahead: usize,
) {
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); MR];
        if !first {
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(c.add(r * cs));
            }
        }
        for q in 0..kq {
            if PF {
                prefetch_next(w, q, l2_ahead);
            }
            let x: __m256bh = core::mem::transmute(_mm256_loadu_si256(xp.add(q * PANEL).cast()));
            for (a, wr) in acc.iter_mut().zip(w) {
                let wq: __m256bh = core::mem::transmute(_mm256_set1_epi32(wr.add(q).read_unaligned() as i32));
                *a = _mm256_dpbf16_ps(*a, wq, x);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * cs), *a);
        }
    }
}

/// `out[t * rows + r] = dot(w[r, :], x[t, :])` for `n` tokens packed by [`pack`] (panels
/// `pstride` f32 apart) and `rows` bf16 rows of `cols` (even) columns in `w`.
///
/// # Safety
/// The CPU has AVX-512 F, VL and BF16; `w` holds `rows * cols` bf16, `xp` the packed panels of
/// `n` tokens (`n.div_ceil(PANEL)` panels), `out` `n * rows` f32.
#[target_feature(enable = "avx512f,avx512vl,avx512bf16")]
pub(crate) unsafe fn products(
    w: &[u8],
    rows: usize,
    cols: usize,
    xp: &[f32],
    pstride: usize,
    n: usize,
    out: &mut [f32],
) {
    /// Panels per register tile.
    const NT: usize = 4;
    let pairs = cols / 2;
    let panels = n.div_ceil(PANEL);
    debug_assert!(w.len() >= rows * cols * 2 && out.len() >= n * rows && xp.len() >= panels * pstride);
    let (wp, xb, op) = (w.as_ptr(), xp.as_ptr() as *const u32, out.as_mut_ptr());
    let mut cb = CBlock([0.0; RS * TBP * PANEL]);
    let cbp = cb.0.as_mut_ptr();
    const CS: usize = TBP * PANEL;
    let pf = crate::detected().sw_prefetch();
    // SAFETY: every read is inside `w` (rows x pairs x 4 bytes, copied bytewise), `xp`
    // (panels x pstride) and the stack blocks; every write inside `out` or the stack blocks
    // (the caller's contract and the loop bounds).
    unsafe {
        let mut p0 = 0;
        while p0 < panels {
            let np = TBP.min(panels - p0);
            // The pass's last panel, holding at most 8 tokens, goes alone in 8-lane vectors (on
            // Zen 4 those issue twice as often as 16-lane ones).
            let short_last = p0 + np == panels && (1..=PANEL / 2).contains(&(n % PANEL));
            let mut rs0 = 0;
            while rs0 < rows {
                let rsn = RS.min(rows - rs0);
                let rsp = rsn.div_ceil(MR) * MR;
                // The first tiles over this super-block also bring the next one into L2 (the
                // same lines RS rows further), so that it is there before its own first tiles
                // start: 4-layer 8B-shape BF16 on Zen 4, 2 threads, repetitions alternating in
                // one process, pp8 1.20x, pp32 1.02x, pp128 1.01x; the 8B's pp8 1.36x. (Four
                // column blocks ahead along the rows instead: pp8 1.06x.)
                let ahead = if rs0 + RS < rows { RS * pairs } else { 0 };
                let mut q0 = 0;
                while q0 < pairs {
                    let kq = (KC / 2).min(pairs - q0);
                    let first = q0 == 0;
                    let mut pj = 0;
                    while pj < np {
                        let mut t = NT.min(np - pj);
                        if short_last && pj + t == np && t > 1 {
                            t -= 1;
                        }
                        let half = short_last && pj + 1 == np;
                        let xt = xb.add((p0 + pj) * pstride + q0 * PANEL);
                        let mut r0 = 0;
                        while r0 < rsp {
                            // Rows past the block's end repeat its last row (their sums are not read).
                            let wt: [*const u32; MR] = core::array::from_fn(|i| {
                                wp.add(((rs0 + (r0 + i).min(rsn - 1)) * pairs + q0) * 4).cast()
                            });
                            let (wt, c) = (&wt, cbp.add(r0 * CS + pj * PANEL));
                            macro_rules! tiles {
                                ($pf:expr) => {
                                    match t {
                                        1 if half => tile_half::<$pf>(wt, xt, kq, c, CS, first, ahead),
                                        1 => tile::<1, $pf>(wt, xt, pstride, kq, c, CS, first, ahead),
                                        2 => tile::<2, $pf>(wt, xt, pstride, kq, c, CS, first, ahead),
                                        3 => tile::<3, $pf>(wt, xt, pstride, kq, c, CS, first, ahead),
                                        _ => tile::<NT, $pf>(wt, xt, pstride, kq, c, CS, first, ahead),
                                    }
                                };
                            }
                            // The first tile of panels over a block reads its weights from
                            // memory (the others from cache): it prefetches the next block.
                            if pf && pj == 0 {
                                tiles!(true)
                            } else {
                                tiles!(false)
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
