//! The `vdpbf16ps` products of bf16 weights (`bf16_dot.rs`, chosen by [`Products`] with
//! [`Bf16Products::Rounded`]) against an f64 reference.

use half::bf16;
use runllama_kernels::{self as k, paths, Bf16Products, Path, Products, WeightType};

/// A deterministic value in (-1, 1).
fn val(i: usize, salt: u64) -> f32 {
    let mut z = (i as u64).wrapping_add(salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^= z >> 31;
    z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 29;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

#[test]
fn bf16_products_match_f64_within_their_documented_error() {
    if !(k::detected().avx512f && k::detected().avx512bf16) || k::path() < Path::Avx512 {
        eprintln!("skipped: no AVX-512 BF16 path on this CPU");
        return;
    }
    // (rows, cols, tokens): odd row counts, a column block and a pair left over, one token, a
    // partial panel, more than one pass of panels.
    let shapes = [(37, 2, 1), (5, 258, 7), (30, 512, 16), (49, 1000, 17), (24, 4096, 70), (7, 6, 300)];
    let rounded = Products { path: Path::Avx512, bf16: Bf16Products::Rounded };
    // Each term's bound (relative to |w x|), plus f32 accumulation.
    let term = 2f64.powi(-8);
    let mut worst = 0f64;
    for &(rows, cols, n) in &shapes {
        let w: Vec<u8> = (0..rows * cols).flat_map(|i| bf16::from_f32(val(i, 1) * 0.5).to_le_bytes()).collect();
        // Activations over a wide range of magnitudes, some denormal-free tiny ones.
        let x: Vec<f32> = (0..n * cols).map(|i| val(i, 2) * 4f32.powi((i % 7) as i32 - 3)).collect();
        let mut packed = vec![0f32; k::packed_len(n, cols)];
        paths::pack_activations(rounded, WeightType::BF16, &x, n, cols, &mut packed);
        let mut out = vec![f32::NAN; n * rows];
        paths::matmul_packed(rounded, WeightType::BF16, &w, rows, cols, &packed, n, &mut out);
        for t in 0..n {
            for r in 0..rows {
                let (mut exact, mut size) = (0f64, 0f64);
                for c in 0..cols {
                    let wv =
                        f64::from(bf16::from_le_bytes([w[2 * (r * cols + c)], w[2 * (r * cols + c) + 1]]).to_f32());
                    exact += wv * f64::from(x[t * cols + c]);
                    size += (wv * f64::from(x[t * cols + c])).abs();
                }
                let err = (f64::from(out[t * rows + r]) - exact).abs();
                let bound = (term + cols as f64 * 2f64.powi(-24)) * size + 1e-30;
                assert!(err <= bound, "{rows}x{cols} n={n} token {t} row {r}: error {err:e} > {bound:e}");
                worst = worst.max(err / size.max(1e-30));
            }
        }
        // The f32 products on the same path: not these (the choice was honoured).
        let mut exact = vec![0f32; k::packed_len(n, cols)];
        paths::pack_activations(Path::Avx512, WeightType::BF16, &x, n, cols, &mut exact);
        let mut o_exact = vec![f32::NAN; n * rows];
        paths::matmul_packed(Path::Avx512, WeightType::BF16, &w, rows, cols, &exact, n, &mut o_exact);
        assert!(cols < 8 || o_exact != out, "{rows}x{cols} n={n}: the rounded products equal the f32 ones");
        // Weights at an address that is 2 mod 4 (a safetensors row may sit at any even address):
        // the same bits.
        let mut shifted = vec![0u8; w.len() + 2];
        shifted[2..].copy_from_slice(&w);
        let mut o2 = vec![f32::NAN; n * rows];
        paths::matmul_packed(rounded, WeightType::BF16, &shifted[2..], rows, cols, &packed, n, &mut o2);
        assert_eq!(o2, out, "{rows}x{cols} n={n}: weights at an address 2 mod 4 differ");
        // Each output alone: the same bits as a batch of one.
        let t = n - 1;
        let mut one = vec![0f32; k::packed_len(1, cols)];
        paths::pack_activations(rounded, WeightType::BF16, &x[t * cols..], 1, cols, &mut one);
        let mut o1 = vec![0f32; rows];
        paths::matmul_packed(rounded, WeightType::BF16, &w, rows, cols, &one, 1, &mut o1);
        assert_eq!(o1, out[t * rows..], "{rows}x{cols}: token {t} alone differs from its batch");
    }
    eprintln!("rounded: worst error {worst:e} of sum |w x|");
}
