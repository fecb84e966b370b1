//! Every kernel path this CPU can run against the scalar reference, through the explicit
//! per-path entry points of `runllama_kernels::paths` (the process-wide cap is not touched, so
//! these tests run in parallel safely): odd lengths, unaligned rows, every weight type, batch
//! sizes 1..9 and past the SIMD block sizes, extreme (NaN-free) magnitudes, f16 subnormals.

use half::{bf16, f16};
use runllama_kernels::paths;
use runllama_kernels::{Path, WeightType};

const TYPES: [WeightType; 3] = [WeightType::F32, WeightType::F16, WeightType::BF16];

/// Lengths around every SIMD width (8, 16), the 4-row and 4x4 tiles, and the 256-column block.
const LENS: &[usize] = &[
    1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49, 63, 64, 65, 95, 96, 97, 127, 128, 129,
    191, 255, 256, 257, 299, 300, 511, 513, 777,
];

/// SplitMix64-style generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The paths to compare with the scalar reference (the SIMD ones this CPU runs).
fn simd_paths() -> Vec<Path> {
    let v: Vec<Path> = paths::available().filter(|&p| p != Path::Scalar).collect();
    eprintln!("detected {:?}; comparing {:?} with scalar", runllama_kernels::detected(), v);
    v
}

/// How values are drawn.
#[derive(Clone, Copy, Debug)]
enum Dist {
    /// Uniform in [-1, 1).
    Unit,
    /// Magnitudes spread over the type's range (weights) and the inverse range (activations),
    /// so products stay finite; f16 weights include subnormals and values near 65504.
    Extreme,
}

/// A weight value for type `wt` under `d` (rounded to the type by `encode`).
fn weight(rng: &mut Rng, wt: WeightType, d: Dist) -> f32 {
    match d {
        Dist::Unit => rng.unit(),
        Dist::Extreme => match wt {
            WeightType::F16 => match rng.below(4) {
                // Subnormal f16: bits 0x0001..=0x03FF, either sign.
                0 => {
                    let b = (1 + rng.below(0x3FF) as u16) | if rng.below(2) == 0 { 0 } else { 0x8000 };
                    f16::from_bits(b).to_f32()
                }
                1 => rng.unit() * 65504.0,
                2 => rng.unit() * 1e-4,
                _ => rng.unit() * 100.0,
            },
            _ => rng.unit() * 10f32.powi(rng.below(61) as i32 - 30),
        },
    }
}

fn activation(rng: &mut Rng, wt: WeightType, d: Dist) -> f32 {
    match (d, wt) {
        (Dist::Unit, _) => rng.unit(),
        (Dist::Extreme, WeightType::F16) => rng.unit() * 10f32.powi(rng.below(9) as i32 - 4),
        // |w| <= 1e30 and |x| <= 1e6: products <= 1e36, sums of <= 800 of them stay finite.
        (Dist::Extreme, _) => rng.unit() * 10f32.powi(rng.below(37) as i32 - 30),
    }
}

/// `count` weights of type `wt`, stored from byte offset `skew`; also their exact f32 values.
fn encode(rng: &mut Rng, wt: WeightType, count: usize, skew: usize, d: Dist) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = vec![0xA5u8; skew];
    let mut exact = Vec::with_capacity(count);
    for _ in 0..count {
        let v = weight(rng, wt, d);
        match wt {
            WeightType::F32 => {
                bytes.extend_from_slice(&v.to_le_bytes());
                exact.push(v);
            }
            WeightType::F16 => {
                let h = f16::from_f32(v);
                bytes.extend_from_slice(&h.to_bits().to_le_bytes());
                exact.push(h.to_f32());
            }
            WeightType::BF16 => {
                let h = bf16::from_f32(v);
                bytes.extend_from_slice(&h.to_bits().to_le_bytes());
                exact.push(h.to_f32());
            }
            _ => unreachable!("element types only (block types: tests/quant.rs)"),
        }
    }
    (bytes, exact)
}

/// `|a - b| <= 1e-5 * sum|w*x| + 1e-6` (reassociation and FMA rounding of a sum of products).
fn close(a: f32, b: f32, abs_sum: f64) -> bool {
    close_within(a, b, abs_sum, 1e-5)
}

/// `|a - b| <= rel * sum|w*x| + 1e-6`.
fn close_within(a: f32, b: f32, abs_sum: f64, rel: f64) -> bool {
    a.is_finite() && b.is_finite() && ((a as f64) - (b as f64)).abs() <= rel * abs_sum + 1e-6
}

/// The bound for AMX products: each term's activation is `x_hi + x_lo` within `2^-16 |x|`,
/// and for f16 weights the dropped `w_lo * x_lo` is within `2^-16 |w x|` (see amx.rs), plus
/// the f32 rounding of the sums.
const AMX_REL: f64 = 4e-5;

fn abs_dot(w: &[f32], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum()
}

#[test]
fn matvec_and_dot_row_every_path_type_length_and_alignment() {
    let simd = simd_paths();
    let mut rng = Rng(1);
    for d in [Dist::Unit, Dist::Extreme] {
        for wt in TYPES {
            for &cols in LENS {
                for rows in [1usize, 3, 4, 5, 9] {
                    let skew = rng.below(4) as usize;
                    let (bytes, exact) = encode(&mut rng, wt, rows * cols, skew, d);
                    let w = &bytes[skew..];
                    let x: Vec<f32> = (0..cols).map(|_| activation(&mut rng, wt, d)).collect();
                    let mut want = vec![0f32; rows];
                    paths::matvec(Path::Scalar, wt, w, &x, &mut want);
                    for &p in &simd {
                        let mut got = vec![f32::NAN; rows];
                        paths::matvec(p, wt, w, &x, &mut got);
                        for r in 0..rows {
                            let s = abs_dot(&exact[r * cols..(r + 1) * cols], &x);
                            assert!(
                                close(got[r], want[r], s),
                                "{p:?} {wt:?} {d:?} {rows}x{cols} skew {skew} row {r}: {} vs scalar {}",
                                got[r],
                                want[r]
                            );
                            let row = &w[r * cols * wt.size()..(r + 1) * cols * wt.size()];
                            let one = paths::dot_row(p, wt, row, &x);
                            assert_eq!(one.to_bits(), got[r].to_bits(), "{p:?} dot_row == matvec row, bit for bit");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_every_path_batch_sizes_and_blocks() {
    let simd = simd_paths();
    let mut rng = Rng(2);
    // Rows across the 6-row tile and the 48-row super-block; columns across the 128-column
    // block; batches across the 16-token panel, the 1-4 panel tile and (two shapes) the
    // 256-token pass. Multiples of 32 columns run on AMX tiles (f16/bf16): rows across its
    // 32-row strip, columns across its 256-column block.
    let shapes: &[(usize, usize)] = &[
        (1, 1),
        (1, 17),
        (5, 7),
        (6, 16),
        (7, 33),
        (13, 63),
        (48, 128),
        (49, 129),
        (97, 257),
        (20, 300),
        (9, 513),
        (70, 31),
        (131, 129),
        (37, 64),
        (33, 288),
        (64, 544),
    ];
    for d in [Dist::Unit, Dist::Extreme] {
        for wt in TYPES {
            for &(rows, cols) in shapes {
                let long = if matches!((rows, cols), (13, 63) | (37, 64)) { &[260usize][..] } else { &[] };
                for n in (1..=9).chain([16, 17, 33, 50, 64, 65, 81]).chain(long.iter().copied()) {
                    let skew = rng.below(4) as usize;
                    let (bytes, exact) = encode(&mut rng, wt, rows * cols, skew, d);
                    let w = &bytes[skew..];
                    let x: Vec<f32> = (0..n * cols).map(|_| activation(&mut rng, wt, d)).collect();
                    let mut want = vec![0f32; n * rows];
                    paths::matmul(Path::Scalar, wt, w, rows, cols, &x, n, &mut want);
                    let mut first_simd: Option<Vec<f32>> = None;
                    // On the AVX-512 path a batch of at most `row_batch()` tokens (f16/bf16
                    // weights), or a last panel of at most 8; on the AVX2 path a batch of at most
                    // 24 (f16/bf16; f32 8), or a last panel that is not full (f16/bf16); on the
                    // AMX path a batch of at most 8, runs as matvec (its bits); the other tokens
                    // are one FMA chain each, whatever the batch: the same bits as in the batch
                    // cut after their panel, on every SIMD path.
                    let tail = if (1..=8).contains(&(n % 16)) { n % 16 } else { 0 };
                    for &p in &simd {
                        let mut got = vec![f32::NAN; n * rows];
                        paths::matmul(p, wt, w, rows, cols, &x, n, &mut got);
                        let rows_tail = match p {
                            Path::Avx512 if n <= runllama_kernels::row_batch() && wt != WeightType::F32 => n,
                            Path::Avx512 => tail,
                            Path::Avx2 | Path::AvxVnni if wt != WeightType::F32 && n <= 24 => n,
                            Path::Avx2 | Path::AvxVnni if wt != WeightType::F32 => n % 16,
                            Path::Avx2 | Path::AvxVnni | Path::Amx if n <= 8 => n,
                            _ => 0,
                        };
                        let mut cut: Option<(usize, Vec<f32>)> = None;
                        for t in 0..n {
                            let xt = &x[t * cols..(t + 1) * cols];
                            let mut alone = vec![0f32; rows];
                            if t >= n - rows_tail {
                                paths::matvec(p, wt, w, xt, &mut alone);
                            } else {
                                // (On AVX-512 a cut of at most `row_batch()` tokens would run
                                // as rows, on AVX2 one of at most 24.)
                                let least = match p {
                                    Path::Avx512 => (runllama_kernels::row_batch() / 16 + 1) * 16,
                                    Path::Avx2 | Path::AvxVnni if wt != WeightType::F32 => 32,
                                    _ => 0,
                                };
                                let end = ((t / 16 + 1) * 16).max(least).min(n);
                                if cut.as_ref().is_none_or(|(e, _)| *e != end) {
                                    let mut o = vec![0f32; end * rows];
                                    paths::matmul(p, wt, w, rows, cols, &x[..end * cols], end, &mut o);
                                    cut = Some((end, o));
                                }
                                if let Some((_, o)) = &cut {
                                    alone.copy_from_slice(&o[t * rows..(t + 1) * rows]);
                                }
                            }
                            for r in 0..rows {
                                let (g, s) = (got[t * rows + r], abs_dot(&exact[r * cols..(r + 1) * cols], xt));
                                let rel = if p == Path::Amx { AMX_REL } else { 1e-5 };
                                assert!(
                                    close_within(g, want[t * rows + r], s, rel),
                                    "{p:?} {wt:?} {d:?} {rows}x{cols} n {n} skew {skew} [{t},{r}]: {g} vs scalar {}",
                                    want[t * rows + r]
                                );
                                assert_eq!(
                                    g.to_bits(),
                                    alone[r].to_bits(),
                                    "{p:?} token {t} of {n} == alone (matvec) or in its panel, bit for bit"
                                );
                            }
                        }
                        // AMX rounds its products differently (bf16 parts; see the crate docs).
                        if p == Path::Amx {
                            continue;
                        }
                        // The tokens every path runs in panels (matvec's lanes differ between
                        // paths, and AVX-512 runs batches of at most `row_batch()` as rows,
                        // AVX2 of 8).
                        let batch_rows = n <= 8 || (n <= runllama_kernels::row_batch() && wt != WeightType::F32);
                        let panels = if batch_rows { 0 } else { (n - tail) * rows };
                        match &first_simd {
                            None => first_simd = Some(got),
                            Some(f) => assert!(
                                f[..panels].iter().zip(&got[..panels]).all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{p:?} {wt:?} {rows}x{cols} n {n}: every SIMD path gives the same panels"
                            ),
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_leaves_output_beyond_n_rows_alone_and_accepts_long_slices() {
    for p in paths::available() {
        let (rows, cols, n) = (5, 19, 3);
        let mut rng = Rng(3);
        let (bytes, _) = encode(&mut rng, WeightType::F16, rows * cols + 7, 1, Dist::Unit);
        let x: Vec<f32> = (0..n * cols + 5).map(|_| rng.unit()).collect();
        let mut out = vec![42f32; n * rows + 4];
        paths::matmul(p, WeightType::F16, &bytes[1..], rows, cols, &x, n, &mut out);
        assert!(out[n * rows..].iter().all(|&v| v == 42.0), "{p:?}");
        assert!(out[..n * rows].iter().all(|&v| v != 42.0), "{p:?}");
    }
}

#[test]
fn row_to_f32_is_exact_for_every_f16_and_bf16_pattern_and_f32() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for wt in [WeightType::F16, WeightType::BF16] {
        // Every non-NaN 16-bit pattern (subnormals, infinities, signed zeros), at each skew.
        let pats: Vec<u16> = all
            .iter()
            .copied()
            .filter(|&b| if wt == WeightType::F16 { !f16::from_bits(b).is_nan() } else { !bf16::from_bits(b).is_nan() })
            .collect();
        for skew in 0..4 {
            let mut bytes = vec![0u8; skew];
            bytes.extend(pats.iter().flat_map(|b| b.to_le_bytes()));
            for &len in LENS.iter().chain(&[pats.len()]) {
                let mut want = vec![0f32; len];
                paths::row_to_f32(Path::Scalar, wt, &bytes[skew..], &mut want);
                for p in paths::available() {
                    let mut got = vec![f32::NAN; len + 1];
                    paths::row_to_f32(p, wt, &bytes[skew..], &mut got[..len]);
                    let same = got[..len].iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{p:?} {wt:?} len {len} skew {skew}");
                    assert!(got[len].is_nan(), "{p:?} wrote past the end");
                }
            }
        }
    }
    let mut rng = Rng(4);
    for &len in LENS {
        let skew = rng.below(4) as usize;
        let (bytes, exact) = encode(&mut rng, WeightType::F32, len, skew, Dist::Extreme);
        for p in paths::available() {
            let mut got = vec![0f32; len];
            paths::row_to_f32(p, WeightType::F32, &bytes[skew..], &mut got);
            assert_eq!(got, exact, "{p:?} f32 len {len}");
        }
    }
}

/// A buffer with `len` random values at element `off` (so starts are not 64-byte aligned) and
/// a guard value (7.5) around them.
fn slice_at(rng: &mut Rng, off: usize, len: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![7.5f32; off + len + 3];
    for e in &mut v[off..off + len] {
        *e = rng.unit() * scale;
    }
    v
}

#[test]
fn small_ops_every_path_and_length() {
    let simd = simd_paths();
    let mut rng = Rng(5);
    for &len in LENS.iter().chain(&[1000, 4096, 11008]) {
        for off in 0..4 {
            let a = slice_at(&mut rng, off, len, 3.0);
            let b = slice_at(&mut rng, off + 1, len, 3.0);
            let (a_, b_) = (&a[off..off + len], &b[off + 1..off + 1 + len]);
            let want_dot = paths::dot_f32(Path::Scalar, a_, b_);
            let mut want_axpy = a.clone();
            paths::axpy(Path::Scalar, &mut want_axpy[off..off + len], -0.37, b_);
            let mut want_norm = vec![0f32; len];
            paths::rmsnorm(Path::Scalar, &mut want_norm, a_, b_, 1e-5);
            let mut want_soft = a.clone();
            paths::softmax(Path::Scalar, &mut want_soft[off..off + len]);
            let mut want_silu = a.clone();
            paths::silu_mul(Path::Scalar, &mut want_silu[off..off + len], b_);
            for &p in &simd {
                let got = paths::dot_f32(p, a_, b_);
                assert!(close(got, want_dot, abs_dot(a_, b_)), "{p:?} dot_f32 len {len}: {got} vs {want_dot}");

                let mut acc = a.clone();
                paths::axpy(p, &mut acc[off..off + len], -0.37, b_);
                for i in 0..acc.len() {
                    let s = (a[i] as f64).abs() + (0.37 * b.get(i + 1).copied().unwrap_or(0.0) as f64).abs();
                    assert!(close(acc[i], want_axpy[i], s), "{p:?} axpy len {len} at {i}");
                }
                assert_eq!(acc[off + len..], a[off + len..], "{p:?} axpy wrote past the end");

                let mut norm = vec![0f32; len];
                paths::rmsnorm(p, &mut norm, a_, b_, 1e-5);
                for i in 0..len {
                    // The scale's relative error (from sum x²) times |x w| (~ up to 3e1).
                    assert!(close(norm[i], want_norm[i], 3.0 * want_norm[i].abs() as f64), "{p:?} rmsnorm len {len}");
                }

                let mut soft = a.clone();
                paths::softmax(p, &mut soft[off..off + len]);
                assert_eq!(soft, want_soft, "{p:?} softmax is exact");

                let mut silu = a.clone();
                paths::silu_mul(p, &mut silu[off..off + len], b_);
                assert_eq!(silu, want_silu, "{p:?} silu_mul is exact");
            }
        }
    }
    for &p in &simd {
        let mut empty: [f32; 0] = [];
        paths::softmax(p, &mut empty);
        assert_eq!(paths::dot_f32(p, &[], &[1.0]), 0.0);
        let mut big = vec![1000.0f32, 1001.0, 999.0, -1e30, f32::NEG_INFINITY];
        paths::softmax(p, &mut big);
        assert!((big[1] - 0.665_240_9).abs() < 1e-6 && big[3] == 0.0 && big[4] == 0.0, "{p:?} {big:?}");
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn detection_agrees_with_std() {
    let f = runllama_kernels::detected();
    assert_eq!(f.avx2, std::arch::is_x86_feature_detected!("avx2"));
    assert_eq!(f.fma, std::arch::is_x86_feature_detected!("fma"));
    assert_eq!(f.f16c, std::arch::is_x86_feature_detected!("f16c"));
    assert_eq!(f.avx512f, std::arch::is_x86_feature_detected!("avx512f"));
    assert_eq!(f.avx512bw, std::arch::is_x86_feature_detected!("avx512bw"));
    assert_eq!(f.avx512vl, std::arch::is_x86_feature_detected!("avx512vl"));
    assert_eq!(f.avx512bf16, std::arch::is_x86_feature_detected!("avx512bf16"));
    assert_eq!(f.avx512fp16, std::arch::is_x86_feature_detected!("avx512fp16"));
    assert_eq!(f.avxvnni, std::arch::is_x86_feature_detected!("avxvnni"));
    for p in Path::ALL {
        assert_eq!(paths::supported(p), p <= f.best_path() && (p != Path::AvxVnni || f.avxvnni));
    }
}

#[test]
fn an_unsupported_path_panics_instead_of_running() {
    let Some(p) = Path::ALL.into_iter().find(|&p| !paths::supported(p)) else {
        return; // this CPU runs every path
    };
    let r = std::panic::catch_unwind(|| paths::dot_f32(p, &[1.0], &[1.0]));
    assert!(r.is_err());
}

#[test]
fn results_do_not_depend_on_the_alignment_of_the_weights() {
    // The same weights read from an aligned file (safetensors) and an unaligned one (.ckpt)
    // must give bit-identical logits: no alignment-dependent peeling anywhere.
    let mut rng = Rng(6);
    let (rows, cols, n) = (37, 301, 6);
    for wt in TYPES {
        let (bytes, _) = encode(&mut rng, wt, rows * cols, 0, Dist::Unit);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.unit()).collect();
        for p in paths::available() {
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
            for skew in 0..8 {
                let mut shifted = vec![0u8; skew];
                shifted.extend_from_slice(&bytes);
                let w = &shifted[skew..];
                let mut mv = vec![0f32; rows];
                paths::matvec(p, wt, w, &x[..cols], &mut mv);
                let mut mm = vec![0f32; n * rows];
                paths::matmul(p, wt, w, rows, cols, &x, n, &mut mm);
                match &first {
                    None => first = Some((mv, mm)),
                    Some((m0, b0)) => {
                        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits());
                        assert!(same(&mv, m0) && same(&mm, b0), "{p:?} {wt:?} skew {skew}");
                    }
                }
            }
        }
    }
}

#[test]
fn q8_quantization_rounds_each_value_to_half_a_step_of_its_block() {
    let mut rng = Rng(7);
    for block in [1, 8, 16, 32, 48] {
        for &len in LENS {
            let mut x: Vec<f32> = (0..len).map(|_| rng.unit() * 40.0).collect();
            if len > 3 {
                x[..block.min(len)].fill(0.0); // an all-zero block
                x[len - 1] = 1e-30; // a scale that underflows f16
            }
            let nb = len.div_ceil(block);
            let (mut qs, mut scales) = (vec![0i8; len], vec![f16::ZERO; nb]);
            runllama_kernels::quantize_q8(&x, block, &mut qs, &mut scales);
            for (b, xb) in x.chunks(block).enumerate() {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert_eq!(scales[b], f16::from_f32(amax / 127.0), "block {block} len {len} scale {b}");
                let d = scales[b].to_f32() as f64;
                for (i, &v) in xb.iter().enumerate() {
                    let q = qs[b * block + i];
                    assert!((-127..=127).contains(&q));
                    // Half a step, plus what the f16 rounding of the scale can add at the top.
                    let err = (v as f64 - d * q as f64).abs();
                    assert!(err <= 0.5 * d + 1e-3 * amax as f64 + 1e-30, "block {block} len {len}: {v} -> {q} x {d}");
                }
            }
        }
    }
}

/// (positions, head size, row stride) of the attention tests: heads of 8 (stories260K) to 128
/// (LLaMA), odd sizes, positions around the 4-row groups, strides of one head up to many.
const ATTN: &[(usize, usize, usize)] = &[
    (1, 8, 8),
    (5, 8, 32),
    (33, 8, 32),
    (7, 16, 48),
    (1, 128, 4096),
    (9, 128, 1024),
    (70, 128, 512),
    (13, 64, 256),
    (6, 40, 160),
    (11, 24, 96),
    (3, 5, 10),
];

#[test]
fn attention_scores_and_weighted_sums_every_path_and_cache_type() {
    simd_paths(); // logs what is compared
    let mut rng = Rng(9);
    for &(n, hd, stride) in ATTN {
        for wt in TYPES {
            let (bytes, exact) = encode(&mut rng, wt, (n - 1) * stride + hd, 0, Dist::Unit);
            let q: Vec<f32> = (0..hd).map(|_| rng.unit() * 2.0).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.unit().abs()).collect();
            for p in paths::available() {
                let mut scores = vec![0f32; n];
                // The V rows as the prefetch hint (the same bytes here): results must not move.
                paths::attn_scores(p, wt, &bytes, stride, &q, 0.25, &mut scores, &bytes);
                let mut out = vec![f32::NAN; hd];
                paths::attn_wsum(p, wt, &bytes, stride, &w, &mut out);
                for j in 0..n {
                    let row = &exact[j * stride..j * stride + hd];
                    let want: f64 = row.iter().zip(&q).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * 0.25;
                    assert!(
                        close(scores[j], want as f32, abs_dot(row, &q)),
                        "{p:?} {wt:?} scores {n}x{hd}/{stride} at {j}"
                    );
                    // Each score is dot_row's sum, bit for bit.
                    let sz = wt.size();
                    let alone = paths::dot_row(p, wt, &bytes[j * stride * sz..(j * stride + hd) * sz], &q) * 0.25;
                    assert_eq!(scores[j].to_bits(), alone.to_bits(), "{p:?} {wt:?} score {j} is not dot_row's");
                }
                // Per element, axpy position after position, bit for bit.
                let mut seq = vec![0f32; hd];
                for (j, &wj) in w.iter().enumerate() {
                    paths::axpy(p, &mut seq, wj, &exact[j * stride..j * stride + hd]);
                }
                for i in 0..hd {
                    let want: f64 = (0..n).map(|j| w[j] as f64 * exact[j * stride + i] as f64).sum();
                    let abs: f64 = (0..n).map(|j| (w[j] as f64 * exact[j * stride + i] as f64).abs()).sum();
                    assert!(close(out[i], want as f32, abs), "{p:?} {wt:?} wsum {n}x{hd}/{stride} at {i}");
                    assert_eq!(out[i].to_bits(), seq[i].to_bits(), "{p:?} {wt:?} wsum {i} is not axpy's");
                }
            }
        }
    }
}

#[test]
fn attention_over_an_8bit_cache_every_path_and_block() {
    simd_paths(); // logs what is compared
    let mut rng = Rng(8);
    for &(n, hd, stride) in ATTN {
        for block in [8, 16, 32, 5, 1] {
            if stride % block != 0 {
                continue;
            }
            let len = (n - 1) * stride + hd;
            let vals: Vec<f32> = (0..len).map(|_| rng.unit() * 4.0).collect();
            let (mut qs, mut scales) = (vec![0i8; len], vec![f16::ZERO; len.div_ceil(block)]);
            runllama_kernels::quantize_q8(&vals, block, &mut qs, &mut scales);
            let deq = |i: usize| scales[i / block].to_f64() * qs[i] as f64;
            let q: Vec<f32> = (0..hd).map(|_| rng.unit() * 2.0).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.unit().abs()).collect();
            for p in paths::available() {
                let mut scores = vec![0f32; n];
                paths::attn_scores_q8(p, &qs, &scales, block, stride, &q, 0.25, &mut scores);
                for (j, &got) in scores.iter().enumerate() {
                    let want: f64 = (0..hd).map(|i| deq(j * stride + i) * q[i] as f64).sum::<f64>() * 0.25;
                    let abs: f64 = (0..hd).map(|i| (deq(j * stride + i) * q[i] as f64).abs()).sum();
                    assert!(close(got, want as f32, abs), "{p:?} scores_q8 {n}x{hd}/{stride} block {block} at {j}");
                }
                let mut out = vec![f32::NAN; hd];
                paths::attn_wsum_q8(p, &qs, &scales, block, stride, &w, &mut out);
                for (i, &got) in out.iter().enumerate() {
                    let want: f64 = (0..n).map(|j| w[j] as f64 * deq(j * stride + i)).sum();
                    let abs: f64 = (0..n).map(|j| (w[j] as f64 * deq(j * stride + i)).abs()).sum();
                    assert!(close(got, want as f32, abs), "{p:?} wsum_q8 {n}x{hd}/{stride} block {block} at {i}");
                }
            }
        }
    }
}

#[test]
fn q4_quantization_is_llama_cpp_q4_0() {
    // One block of 16 whose value of largest magnitude is -8: d = 1, q = trunc(x + 8.5).
    let x: Vec<f32> = [0.0, 1.0, 2.0, 7.0, -8.0, -7.6, 3.49, 0.5, -0.5, 6.2, -1.0, 5.0, 4.0, -2.5, 1.5, 0.25].to_vec();
    let (mut qs, mut scales) = (vec![0u8; 8], vec![f16::ZERO; 1]);
    runllama_kernels::quantize_q4(&x, 16, &mut qs, &mut scales);
    assert_eq!(scales[0], f16::from_f32(1.0));
    let q: Vec<u8> = vec![8, 9, 10, 15, 0, 0, 11, 9, 8, 14, 7, 13, 12, 6, 10, 8];
    let packed: Vec<u8> = (0..8).map(|i| q[i] | q[i + 8] << 4).collect();
    assert_eq!(qs, packed);
    // All zero: scale 0, every value reads back as 0.
    runllama_kernels::quantize_q4(&[0.0; 16], 16, &mut qs, &mut scales);
    assert_eq!((scales[0], qs.clone()), (f16::ZERO, vec![0x88u8; 8]));

    let mut rng = Rng(17);
    for block in [2, 8, 16, 32] {
        let len = block * 9;
        let x: Vec<f32> = (0..len).map(|_| rng.unit() * 30.0).collect();
        let (mut qs, mut scales) = (vec![0u8; len / 2], vec![f16::ZERO; len / block]);
        runllama_kernels::quantize_q4(&x, block, &mut qs, &mut scales);
        for (b, xb) in x.chunks(block).enumerate() {
            let m = xb.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            assert_eq!(scales[b], f16::from_f32(m / -8.0), "block {block} scale {b}");
            let d = scales[b].to_f64();
            for (i, &v) in xb.iter().enumerate() {
                let byte = qs[b * block / 2 + i % (block / 2)];
                let q = if i < block / 2 { byte & 15 } else { byte >> 4 };
                // Within half a step (the f16 rounding of d adds a little at the ends), except
                // that q4_0's grid ends at 7 steps on the side opposite the block's largest
                // value: values beyond it are clipped there, within one step.
                let err = (v as f64 - d * (q as f64 - 8.0)).abs();
                let steps = if q == 15 { 1.0 } else { 0.5 };
                assert!(err <= steps * d.abs() + 2e-3 * m.abs() as f64, "block {block}: {v} -> {q} x {d}");
            }
        }
    }
}

#[test]
fn attention_over_a_4bit_cache_is_the_8bit_kernels_on_its_values() {
    simd_paths(); // logs what is compared
    let mut rng = Rng(4);
    // ATTN's cases, and more rows than one unpacked piece holds (4096 values).
    let cases: Vec<(usize, usize, usize)> =
        ATTN.iter().copied().chain([(300, 8, 32), (70, 128, 128), (40, 128, 4096)]).collect();
    for (n, hd, stride) in cases {
        for block in [8, 16, 32, 2] {
            if hd % block != 0 || stride % block != 0 {
                continue;
            }
            let len = (n - 1) * stride + hd;
            let vals: Vec<f32> = (0..len.next_multiple_of(block)).map(|_| rng.unit() * 4.0).collect();
            let (mut qs, mut scales) = (vec![0u8; vals.len() / 2], vec![f16::ZERO; vals.len() / block]);
            runllama_kernels::quantize_q4(&vals, block, &mut qs, &mut scales);
            // The same values as an 8-bit cache: q - 8 with the same scales.
            let q8: Vec<i8> = (0..vals.len())
                .map(|i| {
                    let (b, k) = (i / block, i % block);
                    let byte = qs[b * block / 2 + k % (block / 2)];
                    (if k < block / 2 { byte & 15 } else { byte >> 4 }) as i8 - 8
                })
                .collect();
            let deq = |i: usize| scales[i / block].to_f64() * q8[i] as f64;
            let q: Vec<f32> = (0..hd).map(|_| rng.unit() * 2.0).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.unit().abs()).collect();
            for p in paths::available() {
                let (mut s4, mut s8) = (vec![0f32; n], vec![0f32; n]);
                paths::attn_scores_q4(p, &qs, &scales, block, stride, &q, 0.25, &mut s4);
                paths::attn_scores_q8(p, &q8, &scales, block, stride, &q, 0.25, &mut s8);
                for j in 0..n {
                    assert_eq!(
                        s4[j].to_bits(),
                        s8[j].to_bits(),
                        "{p:?} scores_q4 {n}x{hd}/{stride} block {block} at {j}"
                    );
                    let want: f64 = (0..hd).map(|i| deq(j * stride + i) * q[i] as f64).sum::<f64>() * 0.25;
                    let abs: f64 = (0..hd).map(|i| (deq(j * stride + i) * q[i] as f64).abs()).sum();
                    assert!(close(s4[j], want as f32, abs), "{p:?} scores_q4 {n}x{hd}/{stride} block {block} at {j}");
                }
                let (mut o4, mut o8) = (vec![f32::NAN; hd], vec![f32::NAN; hd]);
                paths::attn_wsum_q4(p, &qs, &scales, block, stride, &w, &mut o4);
                paths::attn_wsum_q8(p, &q8, &scales, block, stride, &w, &mut o8);
                for i in 0..hd {
                    assert_eq!(
                        o4[i].to_bits(),
                        o8[i].to_bits(),
                        "{p:?} wsum_q4 {n}x{hd}/{stride} block {block} at {i}"
                    );
                    let want: f64 = (0..n).map(|j| w[j] as f64 * deq(j * stride + i)).sum();
                    let abs: f64 = (0..n).map(|j| (w[j] as f64 * deq(j * stride + i)).abs()).sum();
                    assert!(close(o4[i], want as f32, abs), "{p:?} wsum_q4 {n}x{hd}/{stride} block {block} at {i}");
                }
            }
        }
    }
}

/// `exp` on `bits` (as f32) on every SIMD path against the scalar reference (libm), bit for bit
/// (NaNs: NaN).
fn exp_agrees(simd: &[Path], bits: impl Iterator<Item = u32>) {
    let xs: Vec<f32> = bits.map(f32::from_bits).collect();
    let mut want = xs.clone();
    paths::exp(Path::Scalar, &mut want);
    for &p in simd {
        let mut got = xs.clone();
        paths::exp(p, &mut got);
        for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
            assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{p:?} exp({x:e}): {g:e} against {w:e}");
        }
    }
}

/// Where libm's expf changes branch (|x| in bits: tiny, ln2/2, 1.5 ln2, its special-case
/// bounds, infinity), both signs.
const EXP_EDGES: [u32; 7] = [0x3900_0000, 0x3eb1_7218, 0x3f85_1592, 0x42ae_ac50, 0x42b1_7218, 0x42cf_f1b5, 0x7f80_0000];

#[test]
fn exp_is_the_references_bit_for_bit() {
    let simd = simd_paths();
    // Every 997th bit pattern (4.3 million values, all signs and exponents), then 4096 values
    // each side of every branch point, both signs.
    exp_agrees(&simd, (0..=u32::MAX).step_by(997));
    for sign in [0, 0x8000_0000u32] {
        exp_agrees(&simd, EXP_EDGES.iter().flat_map(|&e| (e - 4096..=e + 4096).map(move |b| b | sign)));
    }
}

/// All 2^32 inputs (about a minute in release: `cargo test --release -p runllama-kernels
/// --test paths -- --ignored exp_all_inputs`).
#[test]
#[ignore]
fn exp_all_inputs() {
    let simd = simd_paths();
    for hi in 0..=0xffffu32 {
        exp_agrees(&simd, (0..=0xffffu32).map(|lo| hi << 16 | lo));
    }
}
