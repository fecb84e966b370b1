//! The SIMD kernels, written once as a template over a small set of vector primitives and
//! instantiated per instruction set (`x86::avx2`, `x86::avx512`). Each instantiation compiles
//! every kernel with `#[target_feature(enable = ...)]`, so one binary carries all of them and
//! `lib.rs` picks one at run time.
//!
//! The including module defines, all `#[target_feature]` + `#[inline]`:
//! `type V` (L f32 lanes), `const L`, `zero()`, `splat(f32)`, `add`, `mul`, `div`, `max`,
//! `fma(a, b, c) = a*b + c`, `ldx(p)` / `ldx_tail(p, n)` (f32 loads; the tail form reads only
//! `n < L` elements and zeroes the other lanes), `ldw::<WT>(p)` / `ldw_tail::<WT>(p, n)` (the
//! same for stored weights, widened to f32), `ldq(p)` (L i8 widened to f32), `h2f(bits)` (an
//! f16 widened), `st(p, v)` / `st_tail(p, v, n)`, `hsum(v)`, `prefetch(p)` and
//! `prefetch_l2(p)` (hints into L1 and L2, any address). All loads and stores are unaligned.
//!
//! Summation order (what makes results reproducible): a dot product of a weight row with `x`
//! in `matvec` / `dot_row` keeps one L-lane accumulator per row, adds chunk `c` (elements
//! `c*L..c*L+L`, the last one zero-padded) in increasing `c` with one FMA each, then reduces
//! the lanes with `hsum`: the same bits whatever the alignment of the data or the row's place.
//! `matmul` (compute-bound) vectorises over tokens instead: each output is one FMA chain over
//! the columns in increasing order, kept in f32 across column blocks, so its value does not
//! depend on the blocking, the batch size or the token's place in the batch, and is the same
//! on every SIMD path. The exception (`row_kernels`), on AVX-512, is a batch of at most
//! `row_batch()` tokens over f16/bf16 weights (128 on AMD's cores, 24 on Intel's) and a last
//! panel of at most 8, and on AVX2 a batch of at most
//! 8: those tokens' products run as `matvec`'s, each weight vector loaded and widened once for
//! up to 8 tokens (AVX2: 4), and give `matvec`'s bits (one thread, 4096 x 4096 f16 on the Zen 4
//! VM: 8 tokens 49 -> 82 GFLOP/s, 32 tokens 81 -> 97, 128 tokens 103 either way). (Each
//! path rounds differently from the scalar reference, which has no FMA: tests compare with a
//! tolerance.)

use crate::WeightType;

/// Weight-type tags for const generics: [`WeightType`]'s discriminants.
pub(crate) const WF32: u8 = WeightType::F32 as u8;
pub(crate) const WF16: u8 = WeightType::F16 as u8;
pub(crate) const WBF16: u8 = WeightType::BF16 as u8;

/// Bytes per element of a weight-type tag.
pub(crate) const fn wsize(wt: u8) -> usize {
    if wt == WF32 {
        WeightType::F32.size()
    } else {
        WeightType::F16.size()
    }
}

/// Instantiate the kernels. `$feat`: the target features; `$nv`: vectors of tokens in the
/// matmul register tile (MR = 6 weight rows x `$nv` vectors: sized to the register file).
macro_rules! simd_kernels {
    ($feat:literal, $nv:literal) => {
        use crate::simd::{wsize, WBF16, WF16, WF32};
        use crate::WeightType;
        use crate::PANEL;

        // Tuned on a 2-core AVX-512 Xeon VM (260 MiB L3) and checked on a 2-core AMD EPYC
        // (Zen 4) VM; see benches/kernels.rs.

        /// Rows matvec processes together (independent FMA chains, one load of x for all).
        const G: usize = 4;
        /// Software prefetch distance (bytes) along each weight row in matvec, where
        /// `CpuFeatures::sw_prefetch` says it pays (measured on the Xeon: 12.9 -> 15.3 GiB/s
        /// best case for f16 4096x11008; its hardware prefetcher alone lets too few lines be in
        /// flight when 32 bytes of f16 feed one FMA).
        const PF: usize = 1024;
        /// Distance (bytes) of the prefetches into L2 that go with those (`prefetcht1`): more
        /// lines in flight per core (Xeon model 207, e2e tg16 of 7B F16, 2 threads, 4 rounds
        /// alternating: 2.22-2.33 -> 2.30-2.43 tok/s, tg/limit 0.87-0.93 -> 0.91-0.98).
        const PF_L2: usize = 4 * PF;
        /// Vectors per packed activation panel (`PANEL` tokens).
        const VP: usize = PANEL / L;
        /// matmul register tile: MR weight rows x at most NV vectors of tokens (NV * L tokens).
        const MR: usize = 6;
        const NV: usize = $nv;
        /// Weight rows widened to f32 together: a super-block whose column blocks every token
        /// tile reuses (a multiple of MR).
        const RS: usize = 24;
        /// Columns per block: a tile's activations (KC x NV*L f32, 32 KiB for AVX-512) stay in
        /// L1 while every MR-row tile of the super-block runs over them.
        const KC: usize = 128;
        /// Panels per pass over the weights (256 tokens): the partial sums of a super-block,
        /// RS x TBP*PANEL f32 (96 KiB), stay in `cbuf` across column blocks.
        const TBP: usize = 16;
        /// Column blocks ahead that [`matmul_t`]'s widening prefetches each row into L1 (and
        /// twice as far into L2). On Zen 4, 4-layer 7B-shape F16, 2 threads, repetitions
        /// alternating in one process (`e2e --prompt N --gen 0 --reps 20`, medians), against
        /// one block ahead into L1 alone: `RUNLLAMA_CPU=avx2` pp32 1.044, 1.059, 1.068, pp128
        /// 1.014, pp512 1.003; AVX-512 pp512 1.018, 1.031. (Two and eight ahead: 0.967 of
        /// this; four and eight: 0.944; these two once per cache line instead of once per
        /// vector: avx2 pp32 0.991, 0.992, AVX-512 pp512 0.989, 0.980.)
        const WIDEN_PF: usize = 2;
        #[allow(clippy::modulo_one)] // VP is 1 for AVX-512
        const _: () = assert!(PANEL % L == 0 && NV % VP == 0 && RS % MR == 0 && KC % L == 0);

        /// Dot products of `R` weight rows `stride` bytes apart with `x` (`cols` elements):
        /// `out[r * ostride]`, `r < R`. One accumulator per row (see module docs). `PFR`:
        /// prefetch [`PF`] bytes ahead along each row (long weight rows; not the short rows of
        /// attention, whose next bytes belong to other heads).
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn dot_rows<const WT: u8, const R: usize, const PFR: bool>(
            w: *const u8,
            stride: usize,
            x: *const f32,
            cols: usize,
            out: *mut f32,
            ostride: usize,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let sz = wsize(WT);
                let mut acc = [zero(); R];
                let full = cols / L;
                for c in 0..full {
                    let xv = ldx(x.add(c * L));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let p = w.add(r * stride + c * L * sz);
                        if PFR {
                            prefetch(p.wrapping_add(PF));
                            prefetch_l2(p.wrapping_add(PF_L2));
                        }
                        *a = fma(ldw::<WT>(p), xv, *a);
                    }
                }
                let rem = cols - full * L;
                if rem > 0 {
                    let xv = ldx_tail(x.add(full * L), rem);
                    for (r, a) in acc.iter_mut().enumerate() {
                        *a = fma(ldw_tail::<WT>(w.add(r * stride + full * L * sz), rem), xv, *a);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    *out.add(r * ostride) = hsum(*a);
                }
            }
        }

        /// `PFR`: prefetch along the rows (see `CpuFeatures::sw_prefetch`).
        #[target_feature(enable = $feat)]
        unsafe fn matvec_t<const WT: u8, const PFR: bool>(
            w: *const u8,
            x: *const f32,
            cols: usize,
            out: *mut f32,
            rows: usize,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let stride = cols * wsize(WT);
                // Row i of each of G equal parts of the matrix: each of the G memory streams runs
                // sequentially through its part instead of jumping at every group of G rows.
                // (Results do not depend on the grouping: one accumulator per row.)
                let q = rows / G;
                for i in 0..q {
                    dot_rows::<WT, G, PFR>(w.add(i * stride), q * stride, x, cols, out.add(i), q);
                }
                for r in G * q..rows {
                    dot_rows::<WT, 1, PFR>(w.add(r * stride), stride, x, cols, out.add(r), 1);
                }
            }
        }

        /// The register tile: for `MR` weight rows and `NVT` vectors of tokens,
        /// `c[r][v] += sum_k wb[r][k] * xp[v][k]` over `kc` columns, one FMA per k in increasing
        /// k (from zero instead if `first`). `wb`: rows `KC` f32 apart; `xp`: the tile's first
        /// packed panel at the block's first column (panels `pstride` f32 apart, each column's
        /// `PANEL` tokens together); `c`: rows `cs` f32 apart, tokens contiguous.
        #[target_feature(enable = $feat)]
        #[inline]
        #[allow(clippy::modulo_one)] // VP is 1 for AVX-512
        unsafe fn tile<const NVT: usize>(
            wb: *const f32,
            xp: *const f32,
            pstride: usize,
            kc: usize,
            c: *mut f32,
            cs: usize,
            first: bool,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let mut a = [[zero(); NVT]; MR];
                if !first {
                    for (r, ar) in a.iter_mut().enumerate() {
                        for (v, acc) in ar.iter_mut().enumerate() {
                            *acc = ldx(c.add(r * cs + v * L));
                        }
                    }
                }
                let mut xrow: [*const f32; NVT] = [xp; NVT];
                for (v, p) in xrow.iter_mut().enumerate() {
                    *p = xp.add((v / VP) * pstride + (v % VP) * L);
                }
                for k in 0..kc {
                    let mut xv = [zero(); NVT];
                    for (v, x) in xv.iter_mut().enumerate() {
                        *x = ldx(xrow[v].add(k * PANEL));
                    }
                    for (r, ar) in a.iter_mut().enumerate() {
                        let wv = bcast(wb.add(r * KC + k));
                        for (v, acc) in ar.iter_mut().enumerate() {
                            *acc = fma(wv, xv[v], *acc);
                        }
                    }
                }
                for (r, ar) in a.iter().enumerate() {
                    for (v, acc) in ar.iter().enumerate() {
                        st(c.add(r * cs + v * L), *acc);
                    }
                }
            }
        }

        #[repr(C, align(64))]
        struct WBlock([f32; RS * KC]);
        #[repr(C, align(64))]
        struct CBlock([f32; RS * TBP * PANEL]);

        /// Blocked matmul over packed activations (see `crate::pack_activations`). Rows go in
        /// super-blocks of RS, tokens in passes of TBP panels, columns in blocks of KC. Per
        /// column block, the super-block's weights are widened to f32 once into `wb`; then for
        /// each tile of NV vectors of tokens (its KC columns stay in L1) every MR-row register
        /// tile runs. Partial sums stay in `cb` across column blocks, so each output is one
        /// FMA chain over the columns in order: the same value whatever the blocking, the
        /// batch size or the token's place in it, on every SIMD path.
        #[target_feature(enable = $feat)]
        unsafe fn matmul_t<const WT: u8>(
            w: *const u8,
            rows: usize,
            cols: usize,
            xp: *const f32,
            n: usize,
            out: *mut f32,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let sz = wsize(WT);
                let row_bytes = cols * sz;
                let pstride = crate::panel_stride(cols);
                let panels = n.div_ceil(PANEL);
                let mut wb = WBlock([0.0; RS * KC]);
                let mut cb = CBlock([0.0; RS * TBP * PANEL]);
                let (wbp, cbp) = (wb.0.as_mut_ptr(), cb.0.as_mut_ptr());
                const CS: usize = TBP * PANEL;
                let mut p0 = 0;
                while p0 < panels {
                    let np = TBP.min(panels - p0);
                    let mut rs0 = 0;
                    while rs0 < rows {
                        let rsn = RS.min(rows - rs0);
                        let rsp = rsn.div_ceil(MR) * MR;
                        let mut k0 = 0;
                        while k0 < cols {
                            let kc = KC.min(cols - k0);
                            let (full, tail) = (kc / L, kc % L);
                            for r in 0..rsp {
                                let dst = wbp.add(r * KC);
                                if r >= rsn {
                                    for c in 0..kc.div_ceil(L) {
                                        st(dst.add(c * L), zero());
                                    }
                                    continue;
                                }
                                let src = w.add((rs0 + r) * row_bytes + k0 * sz);
                                for c in 0..full {
                                    // This row's column blocks two ahead (into L1) and four
                                    // ahead (into L2): the rows of a super-block are RS
                                    // interleaved short runs, which the hardware prefetcher
                                    // follows badly. See [`WIDEN_PF`].
                                    prefetch(src.wrapping_add((c * L + WIDEN_PF * KC) * sz));
                                    prefetch_l2(src.wrapping_add((c * L + 2 * WIDEN_PF * KC) * sz));
                                    st(dst.add(c * L), ldw::<WT>(src.add(c * L * sz)));
                                }
                                if tail > 0 {
                                    st(dst.add(full * L), ldw_tail::<WT>(src.add(full * L * sz), tail));
                                }
                            }
                            let first = k0 == 0;
                            let mut pj = 0;
                            while pj < np {
                                // Vectors holding tokens (the last panel's empty ones are skipped).
                                let live = (n - (p0 + pj) * PANEL).div_ceil(L);
                                let nvt = ((NV / VP).min(np - pj) * VP).min(live);
                                let xt = xp.add((p0 + pj) * pstride + k0 * PANEL);
                                let mut r0 = 0;
                                while r0 < rsp {
                                    let (wt, c) = (wbp.add(r0 * KC), cbp.add(r0 * CS + pj * PANEL));
                                    match nvt {
                                        1 => tile::<1>(wt, xt, pstride, kc, c, CS, first),
                                        2 => tile::<2>(wt, xt, pstride, kc, c, CS, first),
                                        3 => tile::<3>(wt, xt, pstride, kc, c, CS, first),
                                        _ => tile::<NV>(wt, xt, pstride, kc, c, CS, first),
                                    }
                                    r0 += MR;
                                }
                                pj += NV / VP;
                            }
                            k0 += KC;
                        }
                        let (t0, nt) = (p0 * PANEL, (np * PANEL).min(n - p0 * PANEL));
                        for t in 0..nt {
                            let o = out.add((t0 + t) * rows + rs0);
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

        #[target_feature(enable = $feat)]
        unsafe fn row_to_f32_t<const WT: u8>(row: *const u8, out: *mut f32, len: usize) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let sz = wsize(WT);
                let full = len / L;
                for c in 0..full {
                    st(out.add(c * L), ldw::<WT>(row.add(c * L * sz)));
                }
                let rem = len - full * L;
                if rem > 0 {
                    st_tail(out.add(full * L), ldw_tail::<WT>(row.add(full * L * sz), rem), rem);
                }
            }
        }

        /// `sum a[i]*b[i]`, four accumulators.
        #[target_feature(enable = $feat)]
        unsafe fn dot_ptr(a: *const f32, b: *const f32, len: usize) -> f32 {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let mut acc = [zero(); 4];
                let mut i = 0;
                while i + 4 * L <= len {
                    for (k, s) in acc.iter_mut().enumerate() {
                        *s = fma(ldx(a.add(i + k * L)), ldx(b.add(i + k * L)), *s);
                    }
                    i += 4 * L;
                }
                while i + L <= len {
                    acc[0] = fma(ldx(a.add(i)), ldx(b.add(i)), acc[0]);
                    i += L;
                }
                if i < len {
                    acc[1] = fma(ldx_tail(a.add(i), len - i), ldx_tail(b.add(i), len - i), acc[1]);
                }
                hsum(add(add(acc[0], acc[1]), add(acc[2], acc[3])))
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; `w` holds `out.len()` rows of `x.len()` elements.
        pub(crate) unsafe fn matvec(wt: WeightType, w: &[u8], x: &[f32], out: &mut [f32]) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (w, x, cols, rows, o) = (w.as_ptr(), x.as_ptr(), x.len(), out.len(), out.as_mut_ptr());
                match (wt, crate::detected().sw_prefetch()) {
                    (WeightType::F32, true) => matvec_t::<WF32, true>(w, x, cols, o, rows),
                    (WeightType::F16, true) => matvec_t::<WF16, true>(w, x, cols, o, rows),
                    (WeightType::BF16, true) => matvec_t::<WBF16, true>(w, x, cols, o, rows),
                    (WeightType::F32, false) => matvec_t::<WF32, false>(w, x, cols, o, rows),
                    (WeightType::F16, false) => matvec_t::<WF16, false>(w, x, cols, o, rows),
                    (WeightType::BF16, false) => matvec_t::<WBF16, false>(w, x, cols, o, rows),
                    _ => unreachable!("block types run in quant.rs and qdot.rs"),
                }
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; `row` holds `x.len()` elements.
        pub(crate) unsafe fn dot_row(wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let mut o = 0f32;
                let (w, xp, cols) = (row.as_ptr(), x.as_ptr(), x.len());
                match wt {
                    WeightType::F32 => dot_rows::<WF32, 1, true>(w, 0, xp, cols, &mut o, 1),
                    WeightType::F16 => dot_rows::<WF16, 1, true>(w, 0, xp, cols, &mut o, 1),
                    WeightType::BF16 => dot_rows::<WBF16, 1, true>(w, 0, xp, cols, &mut o, 1),
                    _ => unreachable!("block types run in quant.rs and qdot.rs"),
                }
                o
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; `w` holds `rows` x `cols` elements, `xp` the packed
        /// activations of `n > 0` tokens of `cols` (`crate::packed_len`), `out` `n * rows`.
        pub(crate) unsafe fn matmul_packed(
            wt: WeightType,
            w: &[u8],
            rows: usize,
            cols: usize,
            xp: &[f32],
            n: usize,
            out: &mut [f32],
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (w, x, o) = (w.as_ptr(), xp.as_ptr(), out.as_mut_ptr());
                match wt {
                    WeightType::F32 => matmul_t::<WF32>(w, rows, cols, x, n, o),
                    WeightType::F16 => matmul_t::<WF16>(w, rows, cols, x, n, o),
                    WeightType::BF16 => matmul_t::<WBF16>(w, rows, cols, x, n, o),
                    _ => unreachable!("block types run in quant.rs and qdot.rs"),
                }
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; `row` holds `out.len()` elements.
        pub(crate) unsafe fn row_to_f32(wt: WeightType, row: &[u8], out: &mut [f32]) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (r, o, len) = (row.as_ptr(), out.as_mut_ptr(), out.len());
                match wt {
                    WeightType::F32 => row_to_f32_t::<WF32>(r, o, len),
                    WeightType::F16 => row_to_f32_t::<WF16>(r, o, len),
                    WeightType::BF16 => row_to_f32_t::<WBF16>(r, o, len),
                    _ => unreachable!("block types run in quant.rs and qdot.rs"),
                }
            }
        }

        /// # Safety
        /// The CPU supports `$feat`.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe { dot_ptr(a.as_ptr(), b.as_ptr(), a.len().min(b.len())) }
        }

        /// # Safety
        /// The CPU supports `$feat`.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn axpy(acc: &mut [f32], w: f32, v: &[f32]) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let len = acc.len().min(v.len());
                let (a, b, wv) = (acc.as_mut_ptr(), v.as_ptr(), splat(w));
                let mut i = 0;
                while i + L <= len {
                    st(a.add(i), fma(wv, ldx(b.add(i)), ldx(a.add(i))));
                    i += L;
                }
                if i < len {
                    let n = len - i;
                    st_tail(a.add(i), fma(wv, ldx_tail(b.add(i), n), ldx_tail(a.add(i), n)), n);
                }
            }
        }

        /// Prefetch the `bytes` of a cache row into L1, or with `L2` into L2 (a hint: any
        /// address).
        #[target_feature(enable = $feat)]
        #[inline]
        fn prefetch_row<const L2: bool>(p: *const u8, bytes: usize) {
            let mut o = 0;
            while o < bytes {
                if L2 {
                    prefetch_l2(p.wrapping_add(o));
                } else {
                    prefetch(p.wrapping_add(o));
                }
                o += 64;
            }
        }

        /// Rows attention prefetches ahead (each row of a head is a few lines, one cache row
        /// apart: a stride the hardware prefetchers do not follow across pages).
        const AHEAD: usize = 8;

        /// Bytes ahead of the K row being summed that attention also prefetches into L2, where
        /// `CpuFeatures::sw_prefetch` says software prefetches pay (Intel, Zen 4: there
        /// whole tokens with / without, one process switching every 2 tokens, 4-layer 7B-shape
        /// F16, 1.02, 1.01, 0.98 at depth 2048 and 1.00, 0.99, 0.99 at depth 4096), beside the
        /// V rows of the same positions (`next`): two streams per thread, as decode's weight
        /// rows read. Measured on the Xeon (CPUID model 207), 2
        /// threads, one process switching between without and with every token (attention's
        /// wall time per layer, 32-token blocks; 4-layer 7B-shape F16, f16 cache): depth 4096
        /// 4.02-4.08 -> 3.63-3.65 ms, depth 2048 2.06-2.21 -> 1.76-1.90 ms, depth 512
        /// 0.59-0.62 -> 0.47-0.51 ms; 7B Q4_0 at contexts up to 128 28-118 -> 25-113 us. At
        /// depth 2048 the V rows alone gave 2.35-2.43 -> 2.01-2.05 ms, the rows 24 KiB ahead
        /// alone 2.42-2.54 -> 2.13-2.19 (12 KiB: 2.12-2.23 -> 1.98-2.03).
        const PF_KV_L2: usize = 24 * 1024;

        /// `out[j] = scale * dot(q, row j)` for `n` cache rows of `hd` elements `stride` bytes
        /// apart: each dot in `dot_row`'s order, so equal to it bit for bit. With `L2` the rows
        /// [`PF_KV_L2`] ahead and the first `next_rows` rows of `next` (laid out as `k`) are
        /// prefetched into L2 as they go.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn attn_scores_t<const WT: u8, const L2: bool>(
            k: *const u8,
            stride: usize,
            q: *const f32,
            hd: usize,
            scale: f32,
            out: *mut f32,
            n: usize,
            (next, next_rows): (*const u8, usize),
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let rb = hd * wsize(WT);
                let mut j = 0;
                while j + G <= n {
                    for r in 0..G {
                        prefetch_row::<false>(k.wrapping_add((j + AHEAD + r) * stride), rb);
                        if L2 {
                            prefetch_row::<true>(k.wrapping_add((j + r) * stride + PF_KV_L2), rb);
                            if j + r < next_rows {
                                prefetch_row::<true>(next.wrapping_add((j + r) * stride), rb);
                            }
                        }
                    }
                    dot_rows::<WT, G, false>(k.add(j * stride), stride, q, hd, out.add(j), 1);
                    j += G;
                }
                while j < n {
                    dot_rows::<WT, 1, false>(k.add(j * stride), stride, q, hd, out.add(j), 1);
                    j += 1;
                }
                for j in 0..n {
                    *out.add(j) *= scale;
                }
            }
        }

        /// `out = sum_j p[j] * row j` over `n` cache rows of `hd` elements `stride` bytes
        /// apart: per lane one FMA chain over `j` in order from zero (what `axpy` row by row
        /// computes, bit for bit), four rows per pass over `out`.
        #[target_feature(enable = $feat)]
        unsafe fn attn_wsum_t<const WT: u8>(
            v: *const u8,
            stride: usize,
            p: *const f32,
            n: usize,
            out: *mut f32,
            hd: usize,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let sz = wsize(WT);
                let (full, tail) = (hd / L, hd % L);
                for c in 0..full {
                    st(out.add(c * L), zero());
                }
                if tail > 0 {
                    st_tail(out.add(full * L), zero(), tail);
                }
                let mut j = 0;
                while j < n {
                    let g = G.min(n - j);
                    for r in 0..g {
                        prefetch_row::<false>(v.wrapping_add((j + AHEAD + r) * stride), hd * sz);
                    }
                    let rows = v.add(j * stride);
                    for c in 0..full {
                        let mut a = ldx(out.add(c * L));
                        for r in 0..g {
                            a = fma(splat(*p.add(j + r)), ldw::<WT>(rows.add(r * stride + c * L * sz)), a);
                        }
                        st(out.add(c * L), a);
                    }
                    if tail > 0 {
                        let mut a = ldx_tail(out.add(full * L), tail);
                        for r in 0..g {
                            a = fma(
                                splat(*p.add(j + r)),
                                ldw_tail::<WT>(rows.add(r * stride + full * L * sz), tail),
                                a,
                            );
                        }
                        st_tail(out.add(full * L), a, tail);
                    }
                    j += g;
                }
            }
        }

        /// Scores of `R` rows of an 8-bit cache (blocks of `B`, a multiple of `L`; `hd` and
        /// `stride` multiples of `B`): per row and block one FMA chain of vectors from zero,
        /// then one FMA into the row's accumulator with the block's scale.
        #[target_feature(enable = $feat)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn scores_q8_rows<const B: usize, const R: usize>(
            qs: *const i8,
            sc: *const half::f16,
            stride: usize,
            q: *const f32,
            hd: usize,
            scale: f32,
            out: *mut f32,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let mut acc = [zero(); R];
                for b in 0..hd / B {
                    for (r, a) in acc.iter_mut().enumerate() {
                        let row = qs.add(r * stride + b * B);
                        let mut s = zero();
                        for i in 0..B / L {
                            s = fma(ldq(row.add(i * L)), ldx(q.add(b * B + i * L)), s);
                        }
                        *a = fma(splat(h2f((*sc.add(r * (stride / B) + b)).to_bits())), s, *a);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    *out.add(r) = hsum(*a) * scale;
                }
            }
        }

        /// `out += sum_r p[r] * row r` for `R` rows of an 8-bit cache (layout as
        /// [`scores_q8_rows`]): per lane one FMA chain over the rows in order, each term
        /// `(p[r] * d) * q` with `d` its block's scale.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn wsum_q8_rows<const B: usize, const R: usize>(
            qs: *const i8,
            sc: *const half::f16,
            stride: usize,
            p: *const f32,
            out: *mut f32,
            hd: usize,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                for b in 0..hd / B {
                    let mut s = [zero(); R];
                    for (r, sr) in s.iter_mut().enumerate() {
                        *sr = splat(*p.add(r) * h2f((*sc.add(r * (stride / B) + b)).to_bits()));
                    }
                    for i in 0..B / L {
                        let o = out.add(b * B + i * L);
                        let mut a = ldx(o);
                        for (r, sr) in s.iter().enumerate() {
                            a = fma(*sr, ldq(qs.add(r * stride + b * B + i * L)), a);
                        }
                        st(o, a);
                    }
                }
            }
        }

        /// [`attn_scores_t`] and [`attn_wsum_t`] over an 8-bit cache with blocks of `B`.
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn attn_q8_t<const B: usize>(
            qs: *const i8,
            sc: *const half::f16,
            stride: usize,
            hd: usize,
            n: usize,
            scores: Option<(*const f32, f32, *mut f32)>,
            wsum: Option<(*const f32, *mut f32, bool)>,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                if let Some((_, out, false)) = wsum {
                    for c in 0..hd / L {
                        st(out.add(c * L), zero());
                    }
                }
                let ss = stride / B;
                let mut j = 0;
                while j < n {
                    let g = G.min(n - j);
                    for r in 0..g {
                        prefetch_row::<false>(qs.wrapping_add((j + AHEAD + r) * stride).cast(), hd);
                    }
                    let (rows, srows) = (qs.add(j * stride), sc.add(j * ss));
                    if let Some((q, scale, out)) = scores {
                        if g == G {
                            scores_q8_rows::<B, G>(rows, srows, stride, q, hd, scale, out.add(j));
                        } else {
                            for r in 0..g {
                                scores_q8_rows::<B, 1>(
                                    rows.add(r * stride),
                                    srows.add(r * ss),
                                    stride,
                                    q,
                                    hd,
                                    scale,
                                    out.add(j + r),
                                );
                            }
                        }
                    }
                    if let Some((p, out, _)) = wsum {
                        if g == G {
                            wsum_q8_rows::<B, G>(rows, srows, stride, p.add(j), out, hd);
                        } else {
                            for r in 0..g {
                                wsum_q8_rows::<B, 1>(
                                    rows.add(r * stride),
                                    srows.add(r * ss),
                                    stride,
                                    p.add(j + r),
                                    out,
                                    hd,
                                );
                            }
                        }
                    }
                    j += g;
                }
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; `k` holds `out.len()` rows of `q.len()` elements, `stride`
        /// elements apart (`next`: a prefetch hint, any bytes).
        pub(crate) unsafe fn attn_scores(
            wt: WeightType,
            k: &[u8],
            stride: usize,
            q: &[f32],
            scale: f32,
            out: &mut [f32],
            next: &[u8],
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (kp, sb, qp, hd, o, n) =
                    (k.as_ptr(), stride * wt.size(), q.as_ptr(), q.len(), out.as_mut_ptr(), out.len());
                // The rows of `next` that lie wholly within it.
                let next = (next.as_ptr(), (next.len() + sb).saturating_sub(hd * wt.size()) / sb);
                macro_rules! by_type {
                    ($l2:expr) => {
                        match wt {
                            WeightType::F32 => attn_scores_t::<WF32, $l2>(kp, sb, qp, hd, scale, o, n, next),
                            WeightType::F16 => attn_scores_t::<WF16, $l2>(kp, sb, qp, hd, scale, o, n, next),
                            WeightType::BF16 => attn_scores_t::<WBF16, $l2>(kp, sb, qp, hd, scale, o, n, next),
                            _ => unreachable!("block types run in quant.rs and qdot.rs"),
                        }
                    };
                }
                if crate::detected().sw_prefetch() {
                    by_type!(true)
                } else {
                    by_type!(false)
                }
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; `v` holds `p.len()` rows of `out.len()` elements, `stride`
        /// elements apart.
        pub(crate) unsafe fn attn_wsum(wt: WeightType, v: &[u8], stride: usize, p: &[f32], out: &mut [f32]) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (vp, sb, pp, n, o, hd) =
                    (v.as_ptr(), stride * wt.size(), p.as_ptr(), p.len(), out.as_mut_ptr(), out.len());
                match wt {
                    WeightType::F32 => attn_wsum_t::<WF32>(vp, sb, pp, n, o, hd),
                    WeightType::F16 => attn_wsum_t::<WF16>(vp, sb, pp, n, o, hd),
                    WeightType::BF16 => attn_wsum_t::<WBF16>(vp, sb, pp, n, o, hd),
                    _ => unreachable!("block types run in quant.rs and qdot.rs"),
                }
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; lengths as `crate::attn_scores_q8` checks them.
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn attn_scores_q8(
            qs: &[i8],
            scales: &[half::f16],
            block: usize,
            stride: usize,
            q: &[f32],
            scale: f32,
            out: &mut [f32],
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (hd, n, o) = (q.len(), out.len(), out.as_mut_ptr());
                let sc = Some((q.as_ptr(), scale, o));
                let (qp, sp) = (qs.as_ptr(), scales.as_ptr());
                match block {
                    32 if hd % 32 == 0 => attn_q8_t::<32>(qp, sp, stride, hd, n, sc, None),
                    16 if hd % 16 == 0 && L <= 16 => attn_q8_t::<16>(qp, sp, stride, hd, n, sc, None),
                    8 if hd % 8 == 0 && L <= 8 => attn_q8_t::<8>(qp, sp, stride, hd, n, sc, None),
                    _ => crate::scalar::attn_scores_q8(qs, scales, block, stride, q, scale, out),
                }
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; lengths as `crate::attn_wsum_q8` checks them. `acc`: add
        /// onto `out` instead of starting from zero.
        pub(crate) unsafe fn attn_wsum_q8(
            qs: &[i8],
            scales: &[half::f16],
            block: usize,
            stride: usize,
            p: &[f32],
            out: &mut [f32],
            acc: bool,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (hd, n) = (out.len(), p.len());
                let ws = Some((p.as_ptr(), out.as_mut_ptr(), acc));
                let (qp, sp) = (qs.as_ptr(), scales.as_ptr());
                match block {
                    32 if hd % 32 == 0 => attn_q8_t::<32>(qp, sp, stride, hd, n, None, ws),
                    16 if hd % 16 == 0 && L <= 16 => attn_q8_t::<16>(qp, sp, stride, hd, n, None, ws),
                    8 if hd % 8 == 0 && L <= 8 => attn_q8_t::<8>(qp, sp, stride, hd, n, None, ws),
                    _ => crate::scalar::attn_wsum_q8(qs, scales, block, stride, p, out, acc),
                }
            }
        }

        /// # Safety
        /// The CPU supports `$feat`; the three slices have the same length.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let len = x.len();
                let (o, xp, wp) = (out.as_mut_ptr(), x.as_ptr(), weight.as_ptr());
                let ss = dot_ptr(xp, xp, len);
                let scale = 1.0 / crate::math::libm_sqrt(ss / len as f32 + eps);
                let sv = splat(scale);
                // x * scale * weight, rounded in the reference's order.
                let mut i = 0;
                while i + L <= len {
                    st(o.add(i), mul(mul(ldx(xp.add(i)), sv), ldx(wp.add(i))));
                    i += L;
                }
                if i < len {
                    let n = len - i;
                    st_tail(o.add(i), mul(mul(ldx_tail(xp.add(i), n), sv), ldx_tail(wp.add(i), n)), n);
                }
            }
        }

        /// Vector max, exp and scaling, the sum in the reference's order: the result equals the
        /// reference's bit for bit.
        ///
        /// # Safety
        /// The CPU supports `$feat`.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn softmax(x: &mut [f32]) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let len = x.len();
                if len == 0 {
                    return;
                }
                let p = x.as_mut_ptr();
                let mut i = 0;
                let mut m = f32::NEG_INFINITY;
                if len >= L {
                    let mut mv = ldx(p);
                    i = L;
                    while i + L <= len {
                        mv = max(mv, ldx(p.add(i)));
                        i += L;
                    }
                    let mut lanes = [0f32; L];
                    st(lanes.as_mut_ptr(), mv);
                    m = lanes.iter().copied().fold(m, f32::max);
                }
                m = x[i..].iter().copied().fold(m, f32::max);
                // e^(v - m) in vectors (bit for bit libm's), summed in order as the reference does.
                let (neg_m, mut sum, mut lanes) = (splat(-m), 0f32, [0f32; L]);
                let mut i = 0;
                while i < len {
                    let n = L.min(len - i);
                    let e =
                        if n == L { exp(add(ldx(p.add(i)), neg_m)) } else { exp(add(ldx_tail(p.add(i), n), neg_m)) };
                    st(lanes.as_mut_ptr(), e);
                    for (k, &v) in lanes[..n].iter().enumerate() {
                        *p.add(i + k) = v;
                        sum += v;
                    }
                    i += L;
                }
                let inv = splat(1.0 / sum);
                let mut i = 0;
                while i + L <= len {
                    st(p.add(i), mul(ldx(p.add(i)), inv));
                    i += L;
                }
                if i < len {
                    let n = len - i;
                    st_tail(p.add(i), mul(ldx_tail(p.add(i), n), inv), n);
                }
            }
        }

        /// `x[i] = e^x[i]`, bit for bit the reference's.
        ///
        /// # Safety
        /// The CPU supports `$feat`.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn exp_all(x: &mut [f32]) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (len, p) = (x.len(), x.as_mut_ptr());
                let mut i = 0;
                while i + L <= len {
                    st(p.add(i), exp(ldx(p.add(i))));
                    i += L;
                }
                if i < len {
                    let n = len - i;
                    st_tail(p.add(i), exp(ldx_tail(p.add(i), n)), n);
                }
            }
        }

        /// The reference's operations in vectors (its exp too, bit for bit): equal to the
        /// reference bit for bit.
        ///
        /// # Safety
        /// The CPU supports `$feat`; `gate` and `up` have the same length.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let len = gate.len();
                let (g, u, one, minus) = (gate.as_mut_ptr(), up.as_ptr(), splat(1.0), splat(-1.0));
                let mut i = 0;
                while i < len {
                    let n = L.min(len - i);
                    let (gv, uv) = if n == L {
                        (ldx(g.add(i)), ldx(u.add(i)))
                    } else {
                        (ldx_tail(g.add(i), n), ldx_tail(u.add(i), n))
                    };
                    // -g exactly (a product by -1), as the reference negates.
                    let r = mul(div(gv, add(one, exp(mul(gv, minus)))), uv);
                    if n == L {
                        st(g.add(i), r);
                    } else {
                        st_tail(g.add(i), r, n);
                    }
                    i += L;
                }
            }
        }
    };
}

pub(crate) use simd_kernels;

/// Instantiate the row kernels (`matmul_rows`: products over whole weight vectors for up to
/// a few tokens at a time, `matvec`'s sums) in a module that has instantiated
/// [`simd_kernels`]. `$regs`: the vector registers (32 for AVX-512; AVX2's 16 hold tiles of 2
/// rows x 6 tokens, which pay for short batches only: see `AVX2_ROW_BATCH` in `lib.rs`).
macro_rules! row_kernels {
    ($feat:literal, $regs:literal) => {
        /// Vector registers of this instruction set.
        const REGS: usize = $regs;

        /// Tokens per group over a block of rows: 8 with 32 registers, 6 with 16 (tiles of 2
        /// rows x 6 tokens; for 8 the tile would be one row, whose 8 accumulators alone run
        /// each activation load once per FMA). The first group reads the rows from memory, the
        /// others from L2, so the first should do as much as the registers allow: on Zen 4,
        /// `RUNLLAMA_CPU=avx2`, 4-layer 7B-shape F16, 2 threads, repetitions alternating in one
        /// process (`e2e --prompt N --gen 0 --reps 20`, medians), 6 against 4: pp5 1.077, pp6
        /// 1.051, pp7 0.996, pp8 1.079, 1.058 (8 against 4, one row: pp8 0.807).
        const GROUP: usize = if REGS >= 32 { 8 } else { 6 };

        /// Weight rows per block of `matmul_rows`: every group of tokens runs over the block
        /// while it stays in L2 (24 rows of 4096 f16: 192 KiB), the next block arriving beside
        /// it (see [`matmul_rows_wt`]).
        const ROW_BLOCK: usize = 24;

        /// Rows per [`dot_tile`] for `t` tokens: as many as the registers hold beside `t`
        /// accumulators per row, a weight vector per row and an activation vector, rounded down
        /// to a divisor of [`ROW_BLOCK`] (at most 8).
        const fn rows_for(t: usize) -> usize {
            let fit = (REGS - 2) / (t + 1);
            let mut r = if fit > 8 { 8 } else { fit };
            while r > 1 && ROW_BLOCK % r != 0 {
                r -= 1;
            }
            if r == 0 {
                1
            } else {
                r
            }
        }

        /// `out[t * ostride + r] = dot(w[r, :], x[t, :])` for `R` weight rows `stride` bytes
        /// apart and `T` tokens of `x` (rows of `cols`, contiguous): each a [`dot_rows`] chain
        /// (L-lane accumulator in increasing column chunks, then `hsum`), so the same bits as
        /// `matvec` gives the token alone. Each weight vector is loaded and widened once for
        /// the `T` tokens. `PFR`: once per cache line, prefetch `PF` bytes ahead along the rows
        /// into L1 and `l2_ahead` bytes ahead into L2 (see [`matmul_rows_wt`]).
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn dot_tile<const WT: u8, const R: usize, const T: usize, const PFR: bool>(
            w: *const u8,
            stride: usize,
            x: *const f32,
            cols: usize,
            out: *mut f32,
            ostride: usize,
            l2_ahead: usize,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let sz = wsize(WT);
                let mut acc = [[zero(); T]; R];
                let full = cols / L;
                for c in 0..full {
                    let mut wv = [zero(); R];
                    let line = PFR && (c * L * sz) % 64 == 0;
                    for (r, v) in wv.iter_mut().enumerate() {
                        let p = w.add(r * stride + c * L * sz);
                        if line {
                            prefetch(p.wrapping_add(PF));
                            prefetch_l2(p.wrapping_add(l2_ahead));
                        }
                        *v = ldw::<WT>(p);
                    }
                    for t in 0..T {
                        let xv = ldx(x.add(t * cols + c * L));
                        for (a, v) in acc.iter_mut().zip(&wv) {
                            a[t] = fma(*v, xv, a[t]);
                        }
                    }
                }
                let rem = cols - full * L;
                if rem > 0 {
                    let mut wv = [zero(); R];
                    for (r, v) in wv.iter_mut().enumerate() {
                        *v = ldw_tail::<WT>(w.add(r * stride + full * L * sz), rem);
                    }
                    for t in 0..T {
                        let xv = ldx_tail(x.add(t * cols + full * L), rem);
                        for (a, v) in acc.iter_mut().zip(&wv) {
                            a[t] = fma(*v, xv, a[t]);
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    for (t, v) in a.iter().enumerate() {
                        *out.add(t * ostride + r) = hsum(*v);
                    }
                }
            }
        }

        /// [`dot_tile`] over `rows` rows for `T` tokens: tiles of `R` rows, then single rows;
        /// outputs `ostride` apart per token; `l2_ahead` as [`dot_tile`] takes it.
        #[target_feature(enable = $feat)]
        unsafe fn matmul_rows_t<const WT: u8, const R: usize, const T: usize, const PFR: bool>(
            w: *const u8,
            rows: usize,
            cols: usize,
            x: *const f32,
            out: *mut f32,
            ostride: usize,
            l2_ahead: usize,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let stride = cols * wsize(WT);
                let mut r = 0;
                while r + R <= rows {
                    dot_tile::<WT, R, T, PFR>(w.add(r * stride), stride, x, cols, out.add(r), ostride, l2_ahead);
                    r += R;
                }
                while r < rows {
                    dot_tile::<WT, 1, T, PFR>(w.add(r * stride), stride, x, cols, out.add(r), ostride, l2_ahead);
                    r += 1;
                }
            }
        }

        /// [`matmul_rows_t`] for `t` tokens (at most [`GROUP`]).
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn matmul_group<const WT: u8, const PFR: bool>(
            t: usize,
            w: *const u8,
            rows: usize,
            cols: usize,
            x: *const f32,
            out: *mut f32,
            ostride: usize,
            l2_ahead: usize,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (rb, o, os, a) = (rows, out, ostride, l2_ahead);
                match t {
                    1 => matmul_rows_t::<WT, { rows_for(1) }, 1, PFR>(w, rb, cols, x, o, os, a),
                    2 => matmul_rows_t::<WT, { rows_for(2) }, 2, PFR>(w, rb, cols, x, o, os, a),
                    3 => matmul_rows_t::<WT, { rows_for(3) }, 3, PFR>(w, rb, cols, x, o, os, a),
                    4 => matmul_rows_t::<WT, { rows_for(4) }, 4, PFR>(w, rb, cols, x, o, os, a),
                    5 => matmul_rows_t::<WT, { rows_for(5) }, 5, PFR>(w, rb, cols, x, o, os, a),
                    6 => matmul_rows_t::<WT, { rows_for(6) }, 6, PFR>(w, rb, cols, x, o, os, a),
                    7 => matmul_rows_t::<WT, { rows_for(7) }, 7, PFR>(w, rb, cols, x, o, os, a),
                    _ => matmul_rows_t::<WT, { rows_for(8) }, 8, PFR>(w, rb, cols, x, o, os, a),
                }
            }
        }

        /// [`matmul_rows`] for one weight type. The first group of tokens over a block of rows
        /// issues software prefetches where they pay (`CpuFeatures::sw_prefetch`: 7B F16 pp8
        /// on Zen 4, 2 threads, repetitions alternating in one process, 7.8-8.5 -> 9.3-10.6
        /// tok/s, pp32 12.1-13.7 -> 12.6-14.4): into L1 along its rows, and into L2 the next
        /// block's rows (the same lines one block further; in the last block, `PF_L2` along the
        /// rows), so that every block after the first is in L2 before its first group starts.
        /// One block ahead against `PF_L2` along the rows (4-layer 7B-shape F16, Zen 4, 2
        /// threads, `e2e --prompt N --gen 0 --reps 20` alternating in one process, medians):
        /// pp8 1.17x, pp32 1.05x, pp128 1.02x; with `RUNLLAMA_CPU=avx2` pp4 1.24x, pp8
        /// 1.19-1.20x (8B-shape BF16 1.10x). The other groups find the block in L2.
        #[target_feature(enable = $feat)]
        unsafe fn matmul_rows_wt<const WT: u8>(
            w: *const u8,
            rows: usize,
            cols: usize,
            x: *const f32,
            n: usize,
            out: *mut f32,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let stride = cols * wsize(WT);
                let pf = crate::detected().sw_prefetch();
                let mut r0 = 0;
                while r0 < rows {
                    let rb = ROW_BLOCK.min(rows - r0);
                    let l2_ahead = if r0 + rb < rows { rb * stride } else { PF_L2 };
                    // Groups of up to GROUP tokens over the block (from L2 after the first).
                    let mut t0 = 0;
                    while t0 < n {
                        // A group never straddles two panels.
                        let t = (n - t0).min(GROUP).min(PANEL - t0 % PANEL);
                        let xg = x.add((t0 / PANEL) * crate::panel_stride(cols) + (t0 % PANEL) * cols);
                        let (w, o) = (w.add(r0 * stride), out.add(t0 * rows + r0));
                        if pf && t0 == 0 {
                            matmul_group::<WT, true>(t, w, rb, cols, xg, o, rows, l2_ahead);
                        } else {
                            matmul_group::<WT, false>(t, w, rb, cols, xg, o, rows, l2_ahead);
                        }
                        t0 += t;
                    }
                    r0 += rb;
                }
            }
        }

        /// `out[t * rows + r] = dot(w[r, :], x[t, :])` for `n` tokens whose activations are
        /// panels of rows (token `t` at `(t / PANEL) * panel_stride(cols) + (t % PANEL) *
        /// cols` in `x`): the dot products of `matvec`, each weight vector loaded once for up to
        /// [`GROUP`] tokens.
        ///
        /// # Safety
        /// The CPU supports `$feat`; `wt` is a float type; `w` holds `rows` x `cols` elements,
        /// `x` the `n` tokens' panels, `out` `n * rows`.
        pub(crate) unsafe fn matmul_rows(
            wt: WeightType,
            w: &[u8],
            rows: usize,
            cols: usize,
            x: &[f32],
            n: usize,
            out: &mut [f32],
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe {
                let (w, x, o) = (w.as_ptr(), x.as_ptr(), out.as_mut_ptr());
                match wt {
                    WeightType::F32 => matmul_rows_wt::<WF32>(w, rows, cols, x, n, o),
                    WeightType::F16 => matmul_rows_wt::<WF16>(w, rows, cols, x, n, o),
                    WeightType::BF16 => matmul_rows_wt::<WBF16>(w, rows, cols, x, n, o),
                    _ => unreachable!("block types run in quant.rs and qdot.rs"),
                }
            }
        }
    };
}
pub(crate) use row_kernels;
