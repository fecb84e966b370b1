//! The block-quantized weight types on every path: dequantization against a from-the-definition
//! decoder (Q8_0, Q4_0; every type against gguf-py in tests/model_quant.rs), activations
//! quantized as ggml defines it, products equal to dequantized weights times dequantized
//! activations (within f32 rounding), every path within rounding of the scalar one, matvec,
//! dot_row and matvec_quantized agreeing bit for bit, and the batched matmul too on the scalar
//! path (within rounding on the SIMD paths, whose tile kernel orders the f32 sums by row; a
//! token's result there does not depend on the batch), on odd shapes and rows at unaligned
//! addresses.

use half::f16;
use runllama_kernels::{packed_len, paths, Path, WeightType};

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
}

/// Every block type, with the byte offsets of its f16 scale fields.
const BLOCK_TYPES: [(WeightType, &[usize]); 10] = [
    (WeightType::Q4_0, &[0]),
    (WeightType::Q4_1, &[0, 2]),
    (WeightType::Q5_0, &[0]),
    (WeightType::Q5_1, &[0, 2]),
    (WeightType::Q8_0, &[0]),
    (WeightType::Q2_K, &[80, 82]),
    (WeightType::Q3_K, &[108]),
    (WeightType::Q4_K, &[0, 2]),
    (WeightType::Q5_K, &[0, 2]),
    (WeightType::Q6_K, &[208]),
];

/// `rows` random rows of `cols` values as `wt` blocks (random bytes, finite small scales),
/// after `offset` bytes of padding.
fn random_rows(wt: WeightType, scales: &[usize], rows: usize, cols: usize, offset: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0u8; offset];
    for _ in 0..rows * cols / wt.block_elems() {
        let mut b: Vec<u8> = (0..wt.block_bytes()).map(|_| rng.next() as u8).collect();
        for &at in scales {
            b[at..at + 2].copy_from_slice(&f16::from_f32(rng.f32() * 0.05).to_bits().to_le_bytes());
        }
        out.extend_from_slice(&b);
    }
    out
}

/// The block format's definition, element by element.
fn decode(wt: WeightType, row: &[u8], cols: usize) -> Vec<f32> {
    (0..cols)
        .map(|i| {
            let b = &row[(i / 32) * wt.block_bytes()..];
            let d = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            let j = i % 32;
            let q = match wt {
                WeightType::Q8_0 => b[2 + j] as i8 as i32,
                WeightType::Q4_0 => (if j < 16 { b[2 + j] & 15 } else { b[2 + j - 16] >> 4 }) as i32 - 8,
                _ => unreachable!(),
            };
            d * q as f32
        })
        .collect()
}

/// Where block `blk`'s fields are in quantized activations of `wt` (the documented layout):
/// `(d, quants, Some((s, Σq)))` for the 32-element format (groups of 8 blocks, the last of the
/// `blocks` left: each field of the group's blocks together), `(d, quants, None)` for the
/// 256-element one.
fn act_fields(wt: WeightType, blk: usize, blocks: usize) -> (usize, usize, Option<(usize, usize)>) {
    if wt.block_elems() == 32 {
        // A group of n blocks: n f32 `d`, n f32 `s`, n i32 sums, n × 32 quants.
        let (g, k, n) = (blk / 8 * 352, blk % 8, 8.min(blocks - blk / 8 * 8));
        (g + 4 * k, g + 12 * n + 32 * k, Some((g + 4 * n + 4 * k, g + 8 * n + 4 * k)))
    } else {
        (blk * 292, blk * 292 + 4, None)
    }
}

/// The activations `quantize_acts` made, decoded: each value `q * d`, and each block's `s`
/// (32-element format) or `None` (256).
fn decode_acts(wt: WeightType, acts: &[u8], cols: usize) -> (Vec<f64>, Vec<Option<f32>>) {
    let f = |at: usize| f32::from_le_bytes(acts[at..at + 4].try_into().unwrap());
    let be = wt.block_elems();
    let mut vals = Vec::new();
    let mut s = Vec::new();
    for blk in 0..cols / be {
        let (d, qs, sum) = act_fields(wt, blk, cols / be);
        for e in 0..be {
            vals.push(f(d) as f64 * acts[qs + e] as i8 as f64);
        }
        s.push(sum.map(|(s, _)| f(s)));
    }
    (vals, s)
}

#[test]
fn activations_quantize_as_llama_cpp_defines() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for (wt, _) in BLOCK_TYPES {
        let be = wt.block_elems();
        let cols = 3 * be;
        assert_eq!(runllama_kernels::act_bytes(wt, cols), Some(3 * if be == 32 { 44 } else { 292 }));
        assert_eq!(runllama_kernels::act_bytes(wt, cols + 1), None);
        let mut x: Vec<f32> = (0..cols).map(|_| rng.f32() * 3.0).collect();
        x[be..2 * be].fill(0.0); // an all-zero block
        x[2 * be + 5] = -4.0; // a block whose largest magnitude is negative, with ties
        x[2 * be + 6] = 2.0;
        x[2 * be + 7] = 4.0;
        let mut acts = vec![0u8; runllama_kernels::act_bytes(wt, cols).unwrap()];
        runllama_kernels::quantize_acts(wt, &x, &mut acts);
        let f = |at: usize| f32::from_le_bytes(acts[at..at + 4].try_into().unwrap());
        for (blk, xs) in x.chunks_exact(be).enumerate() {
            if be == 32 {
                // ggml's x86 Q8_0/Q8_1: d = f16(amax / 127), q = round_even(x * (127 / amax)).
                let (d, qs, Some((s, sum_at))) = act_fields(wt, blk, 3) else { unreachable!() };
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                let id = if amax == 0.0 { 0.0 } else { 127.0 / amax };
                assert_eq!(f(d), f16::from_f32(amax / 127.0).to_f32(), "{wt:?} block {blk}: d");
                let q: Vec<i32> = xs.iter().map(|v| (v * id).round_ties_even() as i32).collect();
                for (e, &qe) in q.iter().enumerate() {
                    assert_eq!(acts[qs + e] as i8 as i32, qe, "{wt:?} block {blk} element {e}");
                }
                let sum: i32 = q.iter().sum();
                assert_eq!(i32::from_le_bytes(acts[sum_at..sum_at + 4].try_into().unwrap()), sum, "{wt:?} {blk}: Σq");
                assert_eq!(f(s), f16::from_f32(amax / 127.0 * sum as f32).to_f32(), "{wt:?} block {blk}: s");
            } else {
                // ggml's Q8_K: scale -127 / (the first value of largest magnitude).
                let at = blk * 292;
                let max = xs.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let iscale = if max == 0.0 { 0.0 } else { -127.0 / max };
                assert_eq!(f(at), if max == 0.0 { 0.0 } else { 1.0 / iscale }, "{wt:?} block {blk}: d");
                for (e, v) in xs.iter().enumerate() {
                    let q = ((iscale * v).round_ties_even() as i32).min(127);
                    assert_eq!(acts[at + 4 + e] as i8 as i32, q, "{wt:?} block {blk} element {e}");
                }
                for j in 0..16 {
                    let sum: i32 = (0..16).map(|e| acts[at + 4 + 16 * j + e] as i8 as i32).sum();
                    let got = i16::from_le_bytes([acts[at + 260 + 2 * j], acts[at + 261 + 2 * j]]);
                    assert_eq!(got as i32, sum, "{wt:?} block {blk}: sum of 16 #{j}");
                }
            }
        }
    }
}

#[test]
fn quantized_rows_agree_on_every_path() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (wt, scales) in BLOCK_TYPES {
        let be = wt.block_elems();
        assert!(
            wt.is_quantized() && wt.row_bytes(be + 1).is_none() && wt.row_bytes(2 * be) == Some(2 * wt.block_bytes())
        );
        for (rows, blocks, n, offset) in [
            (1, 1, 1, 0),
            (7, 3, 3, 1),
            (13, 2, 17, 3),
            (50, 1, 5, 2),
            (3, 9, 2, 1),
            (2, 17, 2, 0),
            (9, 1, 70, 1),
            // Longer than the re-laid activations of the Q4_0 rows hold (32 KiB of quants): the
            // rows fall back to the kernel of the other 32-element types.
            (1, 1024 + 9, 1, 0),
        ] {
            let cols = blocks * be;
            let buf = random_rows(wt, scales, rows, cols, offset, &mut rng);
            let w = &buf[offset..];
            let rb = wt.row_bytes(cols).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
            let ab = runllama_kernels::act_bytes(wt, cols).unwrap();
            // Quantized activations at an odd address too.
            let mut acts = vec![0u8; ab + 1];
            runllama_kernels::quantize_acts(wt, &x[..cols], &mut acts[1..]);
            let (xq, sums) = decode_acts(wt, &acts[1..], cols);
            let mut reference = vec![0f32; rows];
            paths::matvec(Path::Scalar, wt, w, &x[..cols], &mut reference);
            let (mut batched, mut decoded) = (Vec::new(), Vec::new());
            for p in paths::available() {
                let mut mv = vec![0f32; rows];
                let mut row = vec![0f32; cols];
                paths::matvec(p, wt, w, &x[..cols], &mut mv);
                let mut pre = vec![0f32; rows];
                paths::matvec_quantized(p, wt, w, &acts[1..], cols, &mut pre);
                for r in 0..rows {
                    let bytes = &w[r * rb..(r + 1) * rb];
                    paths::row_to_f32(p, wt, bytes, &mut row);
                    if matches!(wt, WeightType::Q8_0 | WeightType::Q4_0) {
                        assert_eq!(row, decode(wt, bytes, cols), "{wt:?} {p:?} row {r}: dequantization");
                    }
                    let d = paths::dot_row(p, wt, bytes, &x[..cols]);
                    assert_eq!(d.to_bits(), mv[r].to_bits(), "{wt:?} {p:?} row {r}: dot_row against matvec");
                    assert_eq!(d.to_bits(), pre[r].to_bits(), "{wt:?} {p:?} row {r}: matvec_quantized");
                    // The product is the dequantized row times the dequantized activations,
                    // up to f32 rounding (and the f16 rounding of the 32-blocks' `s`, which
                    // carries the minimum of Q4_1/Q5_1).
                    let exact: f64 = row.iter().zip(&xq).map(|(&a, &b)| a as f64 * b).sum();
                    let scale: f64 = row.iter().zip(&xq).map(|(&a, &b)| (a as f64 * b).abs()).sum();
                    let s_err: f64 = match wt {
                        WeightType::Q4_1 | WeightType::Q5_1 => (0..blocks)
                            .map(|k| {
                                let m = f16::from_bits(u16::from_le_bytes([
                                    bytes[k * rb / blocks + 2],
                                    bytes[k * rb / blocks + 3],
                                ]));
                                (m.to_f64() * sums[k].unwrap() as f64).abs() * 2f64.powi(-10)
                            })
                            .sum(),
                        _ => 0.0,
                    };
                    assert!(
                        (d as f64 - exact).abs() <= 1e-5 * scale + s_err + 1e-30,
                        "{wt:?} {p:?} row {r}: {d} against {exact}"
                    );
                    // Paths differ only in the order of the f32 sum of the blocks' terms.
                    assert!(
                        (d as f64 - reference[r] as f64).abs() <= 1e-5 * (scale + s_err) + 1e-30,
                        "{wt:?} {p:?} row {r}: {d} against the scalar {}",
                        reference[r]
                    );
                }
                let mut xp = vec![0f32; packed_len(n, cols)];
                paths::pack_activations(p, wt, &x, n, cols, &mut xp);
                let mut mm = vec![0f32; n * rows];
                paths::matmul_packed(p, wt, w, rows, cols, &xp, n, &mut mm);
                for t in 0..n {
                    let xt = &x[t * cols..(t + 1) * cols];
                    let mut one = vec![0f32; rows];
                    paths::matvec(p, wt, w, xt, &mut one);
                    for r in 0..rows {
                        let (a, b) = (mm[t * rows + r], one[r]);
                        if p == Path::Scalar {
                            // The reference: the same computation batched or stepped.
                            assert_eq!(
                                a.to_bits(),
                                b.to_bits(),
                                "{wt:?} {p:?}: matmul token {t} row {r}: {a} against {b}"
                            );
                        } else {
                            // The tile kernel: the same integer sums, the f32 sum in another order.
                            paths::row_to_f32(Path::Scalar, wt, &w[r * rb..(r + 1) * rb], &mut row);
                            let scale: f32 = row.iter().zip(xt).map(|(a, b)| (a * b).abs()).sum();
                            assert!(
                                (a - b).abs() <= 1e-5 * scale + 1e-30,
                                "{wt:?} {p:?}: matmul token {t} row {r}: {a} against {b}"
                            );
                        }
                    }
                }
                // A token's result does not depend on the batch: the last token alone.
                let mut last = vec![0f32; rows];
                let mut xp1 = vec![0f32; packed_len(1, cols)];
                paths::pack_activations(p, wt, &x[(n - 1) * cols..], 1, cols, &mut xp1);
                paths::matmul_packed(p, wt, w, rows, cols, &xp1, 1, &mut last);
                assert!(
                    last.iter().zip(&mm[(n - 1) * rows..]).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{wt:?} {p:?}: the last token batched against alone"
                );
                batched.push((p, mm));
                decoded.push((p, mv));
            }
            // The AMX-INT8 tiles make the integer sums of the AVX-512 VNNI kernel, the rest is
            // shared: the same bits.
            let of = |p: Path| batched.iter().find(|(q, _)| *q == p).map(|(_, mm)| mm);
            if let (Some(amx), Some(avx512)) = (of(Path::Amx), of(Path::Avx512)) {
                let same = amx.iter().zip(avx512).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{wt:?}: AMX and AVX-512 batched products differ ({rows} rows, {blocks} blocks, {n} tokens)"
                );
            }
            // AVX-VNNI's `vpdpbusd` makes the integer sums of AVX2's `vpmaddubsw` + `vpmaddwd`,
            // the rest is the same code: the same bits, decoding and batched.
            let of_mv = |p: Path| decoded.iter().find(|(q, _)| *q == p).map(|(_, mv)| mv);
            for (a, b, what) in
                [(of(Path::AvxVnni), of(Path::Avx2), "batched"), (of_mv(Path::AvxVnni), of_mv(Path::Avx2), "matvec")]
            {
                if let (Some(a), Some(b)) = (a, b) {
                    let same = a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{wt:?}: AVX-VNNI and AVX2 {what} products differ ({rows} rows, {blocks} blocks, {n} tokens)"
                    );
                }
            }
        }
    }
}
