//! The block-quantized weight types on every path: dequantization against a from-the-definition
//! decoder (Q8_0, Q4_0; every type against gguf-py in tests/model_quant.rs), matvec and dot_row
//! agreeing bit for bit, and the batched matmul too on the scalar path (within rounding on the
//! SIMD paths, which dequantize rows for the f32 kernel), on odd shapes and rows at unaligned
//! addresses.

use half::f16;
use runllama_kernels::{matmul_scratch_len, packed_len, paths, Path, WeightType};

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

#[test]
fn quantized_rows_agree_on_every_path() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (wt, scales) in BLOCK_TYPES {
        let be = wt.block_elems();
        assert!(
            wt.is_quantized() && wt.row_bytes(be + 1).is_none() && wt.row_bytes(2 * be) == Some(2 * wt.block_bytes())
        );
        for (rows, blocks, n, offset) in [(1, 1, 1, 0), (7, 3, 3, 1), (13, 2, 17, 3), (50, 1, 5, 2)] {
            let cols = blocks * be;
            let buf = random_rows(wt, scales, rows, cols, offset, &mut rng);
            let w = &buf[offset..];
            let rb = wt.row_bytes(cols).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
            for p in paths::available() {
                let mut mv = vec![0f32; rows];
                let mut row = vec![0f32; cols];
                paths::matvec(p, wt, w, &x[..cols], &mut mv);
                for r in 0..rows {
                    let bytes = &w[r * rb..(r + 1) * rb];
                    paths::row_to_f32(p, wt, bytes, &mut row);
                    if matches!(wt, WeightType::Q8_0 | WeightType::Q4_0) {
                        assert_eq!(row, decode(wt, bytes, cols), "{wt:?} {p:?} row {r}: dequantization");
                    }
                    let d = paths::dot_row(p, wt, bytes, &x[..cols]);
                    assert_eq!(d.to_bits(), mv[r].to_bits(), "{wt:?} {p:?} row {r}: dot_row against matvec");
                    let exact: f64 = row.iter().zip(&x[..cols]).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let scale: f64 = row.iter().zip(&x[..cols]).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                    assert!(
                        (d as f64 - exact).abs() <= 1e-6 * scale.max(1.0),
                        "{wt:?} {p:?} row {r}: {d} against {exact}"
                    );
                }
                let mut xp = vec![0f32; packed_len(n, cols)];
                paths::pack_activations(p, wt, &x, n, cols, &mut xp);
                let mut mm = vec![0f32; n * rows];
                paths::matmul_packed(p, wt, w, rows, cols, &xp, n, &mut mm);
                // With the caller's scratch (what the model does): the same bits.
                let mut with = vec![0f32; n * rows];
                let mut scratch = vec![0f32; matmul_scratch_len(p, wt, n, cols)];
                paths::matmul_packed_with(p, wt, w, rows, cols, &xp, n, &mut with, &mut scratch);
                assert!(
                    mm.iter().zip(&with).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{wt:?} {p:?}: matmul_packed_with"
                );
                for t in 0..n {
                    let xt = &x[t * cols..(t + 1) * cols];
                    let mut one = vec![0f32; rows];
                    paths::matvec(p, wt, w, xt, &mut one);
                    for r in 0..rows {
                        let (a, b) = (mm[t * rows + r], one[r]);
                        if p == Path::Scalar {
                            // The reference: one order for every product.
                            assert_eq!(a.to_bits(), b.to_bits(), "{wt:?} {p:?}: matmul token {t} row {r}");
                        } else {
                            // Dequantized rows through the f32 kernel: another summation order.
                            paths::row_to_f32(Path::Scalar, wt, &w[r * rb..(r + 1) * rb], &mut row);
                            let scale: f32 = row.iter().zip(xt).map(|(a, b)| (a * b).abs()).sum();
                            assert!(
                                (a - b).abs() <= 1e-5 * scale.max(1.0),
                                "{wt:?} {p:?}: matmul token {t} row {r}: {a} against {b}"
                            );
                        }
                    }
                }
            }
        }
    }
}
