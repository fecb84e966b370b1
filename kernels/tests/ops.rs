//! The scalar kernels against straightforward f64 formulas, on odd lengths and unaligned rows.

use half::{bf16, f16};
use runllama_kernels::*;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Encode `v` as `wt` bytes, starting at byte offset `skew` of the returned buffer.
fn encode(wt: WeightType, v: &[f32], skew: usize) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = vec![0xAAu8; skew];
    let mut exact = Vec::new();
    for &x in v {
        match wt {
            WeightType::F32 => {
                bytes.extend_from_slice(&x.to_le_bytes());
                exact.push(x);
            }
            WeightType::F16 => {
                let h = f16::from_f32(x);
                bytes.extend_from_slice(&h.to_bits().to_le_bytes());
                exact.push(h.to_f32());
            }
            WeightType::BF16 => {
                let h = bf16::from_f32(x);
                bytes.extend_from_slice(&h.to_bits().to_le_bytes());
                exact.push(h.to_f32());
            }
            _ => unreachable!("element types only (block types: tests/quant.rs)"),
        }
    }
    (bytes, exact)
}

#[test]
fn matvec_and_matmul_match_f64_on_every_type_odd_sizes_and_unaligned_rows() {
    for wt in [WeightType::F32, WeightType::F16, WeightType::BF16] {
        for &(rows, cols) in &[(1, 1), (3, 7), (17, 33), (64, 100), (5, 257)] {
            for skew in [0, 1, 3] {
                let (bytes, exact) = encode(wt, &values(rows * cols, (rows * cols + skew) as u64), skew);
                let w = &bytes[skew..];
                let n = 3;
                let x = values(n * cols, 99);
                let mut out = vec![0f32; rows];
                matvec(wt, w, &x[..cols], &mut out);
                let mut batch = vec![0f32; n * rows];
                matmul(wt, w, rows, cols, &x, n, &mut batch);
                for r in 0..rows {
                    for t in 0..n {
                        let want: f64 = (0..cols).map(|c| exact[r * cols + c] as f64 * x[t * cols + c] as f64).sum();
                        let tol = 1e-5 * (cols as f64).sqrt().max(1.0);
                        assert!((batch[t * rows + r] as f64 - want).abs() < tol, "{wt:?} {rows}x{cols} skew {skew}");
                    }
                    let want: f64 = (0..cols).map(|c| exact[r * cols + c] as f64 * x[c] as f64).sum();
                    let tol = 1e-5 * (cols as f64).sqrt().max(1.0);
                    assert!((out[r] as f64 - want).abs() < tol, "matvec {wt:?} {rows}x{cols} skew {skew}");
                }
                let mut row = vec![0f32; cols];
                row_to_f32(wt, &w[(rows - 1) * cols * wt.size()..], &mut row);
                assert_eq!(row, exact[(rows - 1) * cols..]);
            }
        }
    }
}

/// The first token of a batch of `n` whose products with `wt` rows the AVX-512 path runs as rows
/// (`matvec`'s): every token of a batch of at most `row_batch()` (f16/bf16 weights), else those
/// of a last panel of at most 8 (`n`: none).
fn avx512_rows_from(wt: WeightType, n: usize) -> usize {
    if n <= row_batch() && wt != WeightType::F32 {
        0
    } else if n % PANEL <= 8 {
        n - n % PANEL
    } else {
        n
    }
}

/// The same for the AVX2 path and f16/bf16 weights: every token of a batch of at most 24, else
/// those of a last panel that is not full.
fn avx2_rows_from(n: usize) -> usize {
    if n <= PANEL + 8 {
        0
    } else {
        n - n % PANEL
    }
}

#[test]
fn packed_activations_are_panels_of_16_tokens_column_major_zero_padded() {
    for n in [37, 45] {
        let cols = 5;
        let x = values(n * cols, 7);
        for p in paths::available() {
            let mut packed = vec![f32::NAN; packed_len(n, cols) + 3];
            // f16 weights: the f32 panel layout on every path.
            paths::pack_activations(p, WeightType::F16, &x, n, cols, &mut packed);
            assert_eq!(packed_len(n, cols), 3 * panel_stride(cols));
            // On the AVX-512 and AVX2 paths some panels hold their tokens as rows.
            let rows_from = match p {
                Path::Avx512 => avx512_rows_from(WeightType::F16, n),
                Path::Avx2 | Path::AvxVnni => avx2_rows_from(n),
                _ => n,
            };
            for q in 0..3 {
                let panel = &packed[q * panel_stride(cols)..];
                if q * PANEL >= rows_from && q * PANEL < n {
                    let t = (q * PANEL..n.min((q + 1) * PANEL)).len();
                    assert_eq!(panel[..t * cols], x[q * PANEL * cols..][..t * cols], "{p:?}: panel {q} as rows");
                    continue;
                }
                for k in 0..cols {
                    for j in 0..PANEL {
                        let t = q * PANEL + j;
                        let want = if t < n { x[t * cols + k] } else { 0.0 };
                        assert_eq!(panel[k * PANEL + j], want, "{p:?} n={n}: panel {q} col {k} token {j}");
                    }
                }
            }
            assert!(packed[packed_len(n, cols)..].iter().all(|v| v.is_nan()), "nothing written past packed_len");
        }
    }
}

#[test]
fn rmsnorm_softmax_silu() {
    let x = values(37, 5);
    let w = values(37, 6);
    let mut out = vec![0f32; 37];
    rmsnorm(&mut out, &x, &w, 1e-5);
    let ms: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 37.0;
    for i in 0..37 {
        let want = x[i] as f64 / (ms + 1e-5).sqrt() * w[i] as f64;
        assert!((out[i] as f64 - want).abs() < 1e-5);
    }
    let mut p = vec![1000.0f32, 1001.0, 999.0, -1e30];
    softmax(&mut p);
    let e = [(-1.0f64).exp(), 1.0, (-2.0f64).exp()];
    let s: f64 = e.iter().sum();
    for i in 0..3 {
        assert!((p[i] as f64 - e[i] / s).abs() < 1e-6, "{p:?}");
    }
    assert_eq!(p[3], 0.0);
    let mut g = vec![-3.0f32, 0.0, 2.5];
    silu_mul(&mut g, &[2.0, 5.0, -1.0]);
    for (i, (&gv, &uv)) in [-3.0f64, 0.0, 2.5].iter().zip(&[2.0f64, 5.0, -1.0]).enumerate() {
        assert!((g[i] as f64 - gv / (1.0 + (-gv).exp()) * uv).abs() < 1e-6);
    }
}

#[test]
fn rope_layouts_are_the_same_rotation_under_the_hf_permutation() {
    // Meta row 2i+c of a head is stored at HF row c*half + i: rotating the Meta layout with
    // Interleaved must equal rotating the permuted vector with Halves, then un-permuting.
    let (hd, heads, theta) = (8usize, 3usize, 10000f32);
    let inv: Vec<f32> = (0..hd / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / hd as f32)).collect();
    let meta = values(hd * heads, 11);
    let mut hf = vec![0f32; hd * heads];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for c in 0..2 {
                hf[h * hd + c * hd / 2 + i] = meta[h * hd + 2 * i + c];
            }
        }
    }
    for pos in [0usize, 1, 7, 300] {
        let mut a = meta.clone();
        rope(&mut a, hd, pos, &inv, RopeLayout::Interleaved);
        let mut b = hf.clone();
        rope(&mut b, hd, pos, &inv, RopeLayout::Halves);
        for h in 0..heads {
            for i in 0..hd / 2 {
                for c in 0..2 {
                    assert_eq!(a[h * hd + 2 * i + c], b[h * hd + c * hd / 2 + i], "pos {pos}");
                }
            }
        }
        // Rotation keeps each pair's norm; position 0 is the identity.
        if pos == 0 {
            assert_eq!(a, meta);
        }
        let (n0, n1): (f32, f32) = (meta[..2].iter().map(|v| v * v).sum(), a[..2].iter().map(|v| v * v).sum());
        assert!((n0 - n1).abs() < 1e-5);
    }
    // A hand-checked value: pair 0 at pos 1 rotates by 1 radian.
    let mut v = vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    rope(&mut v, 8, 1, &inv, RopeLayout::Interleaved);
    assert!((v[0] - 1f32.cos()).abs() < 1e-6 && (v[1] - 1f32.sin()).abs() < 1e-6);
}

#[test]
fn argmax_helpers_dot_and_axpy() {
    let a = values(29, 1);
    let b = values(29, 2);
    let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
    assert!((dot_f32(&a, &b) as f64 - want).abs() < 1e-5);
    let mut acc = vec![1.0f32; 29];
    axpy(&mut acc, 0.5, &b);
    for i in 0..29 {
        assert_eq!(acc[i], 1.0 + 0.5 * b[i]);
    }
}

#[test]
fn short_batches_and_short_last_panels_get_matvecs_bits_on_avx512_and_amx() {
    let (rows, cols) = (13, 37);
    for p in paths::available().filter(|&p| p == Path::Avx512) {
        for wt in [WeightType::F32, WeightType::F16, WeightType::BF16] {
            let vals = values(rows * cols, 3);
            let bytes: Vec<u8> = match wt {
                WeightType::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
                WeightType::F16 => vals.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
                _ => vals.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
            };
            // At an address 2 mod 4, as a row of a safetensors file may be.
            let mut shifted = vec![0u8; bytes.len() + 2];
            shifted[2..].copy_from_slice(&bytes);
            let w = &shifted[2..];
            for n in [1, 3, 8, 17, 24, 40, 128, 129, 136, 137] {
                let x = values(n * cols, 9);
                let mut packed = vec![0f32; packed_len(n, cols)];
                paths::pack_activations(p, wt, &x, n, cols, &mut packed);
                let mut out = vec![f32::NAN; n * rows];
                paths::matmul_packed(p, wt, w, rows, cols, &packed, n, &mut out);
                for t in avx512_rows_from(wt, n)..n {
                    let mut alone = vec![0f32; rows];
                    paths::matvec(p, wt, w, &x[t * cols..(t + 1) * cols], &mut alone);
                    assert_eq!(out[t * rows..(t + 1) * rows], alone, "{p:?} {wt:?} n={n}: token {t}");
                }
            }
        }
    }
    // On the AMX path, whole batches of at most 8 tokens, in a shape the tiles take (columns a
    // multiple of 32).
    let (rows, cols) = (13, 64);
    for p in paths::available().filter(|&p| p == Path::Amx) {
        for wt in [WeightType::F16, WeightType::BF16] {
            let vals = values(rows * cols, 5);
            let w: Vec<u8> = match wt {
                WeightType::F16 => vals.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
                _ => vals.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
            };
            for n in [1, 3, 8] {
                let x = values(n * cols, 11);
                let mut packed = vec![0f32; packed_len(n, cols)];
                paths::pack_activations(p, wt, &x, n, cols, &mut packed);
                let mut out = vec![f32::NAN; n * rows];
                paths::matmul_packed(p, wt, &w, rows, cols, &packed, n, &mut out);
                for t in 0..n {
                    let mut alone = vec![0f32; rows];
                    paths::matvec(p, wt, &w, &x[t * cols..(t + 1) * cols], &mut alone);
                    assert_eq!(out[t * rows..(t + 1) * rows], alone, "{p:?} {wt:?} n={n}: token {t}");
                }
            }
        }
    }
}

/// `exp` never decreases over the sampler's domain, every f32 in [-104, 0] (the sampler takes
/// candidates in the order of their scaled logits, which are at most 0, to be the order of
/// their weights; below -103.97 `expf` is zero): every path gives libm's bits, so one path
/// checks them all.
#[test]
fn exp_never_decreases_on_the_samplers_domain() {
    let (from, to) = ((-0.0f32).to_bits(), (-104.0f32).to_bits());
    let mut chunk = vec![0f32; 1 << 20];
    let mut last = f32::INFINITY;
    let mut bits = from;
    while bits <= to {
        let n = chunk.len().min((to - bits) as usize + 1);
        for (k, v) in chunk[..n].iter_mut().enumerate() {
            *v = f32::from_bits(bits + k as u32);
        }
        runllama_kernels::exp(&mut chunk[..n]);
        for (k, &e) in chunk[..n].iter().enumerate() {
            // Bits rising from -0.0 are ever more negative floats.
            assert!(e <= last, "exp({}) = {e} above exp of the float before, {last}", f32::from_bits(bits + k as u32));
            last = e;
        }
        bits += n as u32;
    }
    assert_eq!(last, 0.0);
}
