//! Block-quantized GGUF weights: every block type's dequantization against gguf-py's on random
//! blocks (tests/data/quant/make_blocks.py) and on stories260K quantized by gguf-py
//! (tests/data/quant/make_quantized.py); those files and llama-quantize's K-quant presets of a
//! 256-wide model (make_kquants.py) against llama.cpp's logits on the same files.

mod common;
use common::*;

use runllama::formats::gguf;
use runllama::session::Session;
use runllama::tensor::DType;

const TYPES: [(&str, DType); 5] =
    [("q8_0", DType::Q8_0), ("q4_0", DType::Q4_0), ("q4_1", DType::Q4_1), ("q5_0", DType::Q5_0), ("q5_1", DType::Q5_1)];

/// The ggml type ids of blocks.bin, in its order.
const BLOCK_TYPES: [(u32, DType); 10] = [
    (2, DType::Q4_0),
    (3, DType::Q4_1),
    (6, DType::Q5_0),
    (7, DType::Q5_1),
    (8, DType::Q8_0),
    (10, DType::Q2_K),
    (11, DType::Q3_K),
    (12, DType::Q4_K),
    (13, DType::Q5_K),
    (14, DType::Q6_K),
];

/// Random blocks of every type, dequantized by our kernels (the scalar path and the run-time
/// path) bit for bit as gguf-py does; dot products within rounding of the exact sum.
#[test]
fn every_block_type_dequantizes_as_gguf_py() {
    let all = std::fs::read(data("quant/blocks.bin")).unwrap();
    let mut at = 0;
    for (id, dtype) in BLOCK_TYPES {
        let u32_at = |i: usize| u32::from_le_bytes([all[i], all[i + 1], all[i + 2], all[i + 3]]);
        assert_eq!(u32_at(at), id, "blocks.bin out of order at {}", dtype.name());
        let n = u32_at(at + 4) as usize;
        let cols = n * dtype.block_elems();
        let bytes = &all[at + 8..at + 8 + n * dtype.block_bytes()];
        let want = f32s(&all[at + 8 + bytes.len()..at + 8 + bytes.len() + 4 * cols]);
        at += 8 + bytes.len() + 4 * cols;
        for path in [runllama_kernels::Path::Scalar, runllama_kernels::path()] {
            let mut got = vec![0f32; cols];
            runllama_kernels::paths::row_to_f32(path, dtype, bytes, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{} on {path:?}: element {i} is {a}, gguf-py says {b}",
                    dtype.name()
                );
            }
        }
    }
    assert_eq!(at, all.len(), "blocks.bin has more types than the test knows");
}

/// Every quantized tensor, dequantized row by row by our kernels (the scalar reference and the
/// run-time path), is bit for bit gguf-py's dequantization of it.
#[test]
fn dequantization_is_bit_exact_with_gguf_py() {
    for (tag, dtype) in TYPES {
        let qpath = data(&format!("quant/stories260K-{tag}.gguf"));
        let dpath = data(&format!("quant/stories260K-{tag}-dequant.gguf"));
        let (qb, db) = (std::fs::read(&qpath).unwrap(), std::fs::read(&dpath).unwrap());
        let (q, d) = (gguf::parse(&qb, tag).unwrap(), gguf::parse(&db, tag).unwrap());
        let mut quantized = 0;
        for t in &q.tensors {
            let r = d.tensor(&t.name).unwrap();
            let reference = f32s(&db[r.offset..r.offset + r.nbytes]);
            if t.dtype != dtype {
                assert_eq!(t.dtype, DType::F32, "{tag}: {}", t.name);
                continue;
            }
            quantized += 1;
            let cols = *t.shape.last().unwrap();
            let rb = dtype.row_bytes(cols).unwrap();
            let mut row = vec![0f32; cols];
            for (i, (bytes, want)) in
                qb[t.offset..t.offset + t.nbytes].chunks_exact(rb).zip(reference.chunks_exact(cols)).enumerate()
            {
                for path in [runllama_kernels::Path::Scalar, runllama_kernels::path()] {
                    runllama_kernels::paths::row_to_f32(path, dtype, bytes, &mut row);
                    let same = row.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{tag}: {} row {i} on {path:?} differs from gguf-py", t.name);
                }
            }
        }
        assert!(quantized >= 20, "{tag}: only {quantized} tensors are quantized");
    }
}

/// The llama.cpp oracle of a fixture (tests/data/quant/llama_logits.c): the tokens llama.cpp
/// fed (BOS, then its greedy choices) and its logits after each.
fn llama_cpp_oracle(rel: &str) -> (Vec<u32>, Vec<Vec<f32>>) {
    let b = std::fs::read(data(rel)).unwrap();
    let u32_at = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
    let (n, nv) = (u32_at(0) as usize, u32_at(1) as usize);
    let tokens = (0..n).map(|i| u32_at(2 + i)).collect();
    let logits = f32s(&b[4 * (2 + n)..]).chunks_exact(nv).map(<[f32]>::to_vec).collect();
    (tokens, logits)
}

/// Every quantized fixture against llama.cpp on the same file (its greedy run of 64 positions,
/// teacher-forced): logits within the bounds below, the same greedy choice at every position
/// for the types the issue holds to it (Q8_0, Q5_K, Q6_K), and a batched prompt of 48 held to
/// the same bound.
///
/// The bounds come from llama.cpp's own spread: its native SIMD build (AVX-512 on the Zen 4
/// machine that made the fixtures) against its scalar build, on the same files with the same
/// tool, differ by at most 3.3e-6 after BOS, and over the 64 positions by up to 0.398 on the
/// 32-element types (stories260K) and 0.0107 on the K-quant presets (k256): with 8-bit
/// activations, a rounding-level difference upstream can move an activation across a
/// rounding boundary, and such steps grow along the run. After BOS our paths are within
/// 3.4e-6 of llama.cpp (the kernels and the activations' quantization are the same maths);
/// along the run, within 0.398 (Q4_0, as llama.cpp's own spread on that file; 0.24 on the
/// other 32-element types) and 0.021 (K-quants: twice llama.cpp's own). The bounds leave room
/// for other CPUs' rounding.
#[test]
fn quantized_models_match_llama_cpp() {
    /// After BOS alone.
    const AT_BOS: f32 = 1e-5;
    /// Along the run, 32-element types and K-quant presets.
    const RUN_32: f32 = 0.6;
    const RUN_K: f32 = 0.05;
    // (fixture, same greedy ids required, bound along the run)
    const FIXTURES: [(&str, bool, f32); 10] = [
        ("stories260K-q8_0", true, RUN_32),
        ("stories260K-q4_0", false, RUN_32),
        ("stories260K-q4_1", false, RUN_32),
        ("stories260K-q5_0", false, RUN_32),
        ("stories260K-q5_1", false, RUN_32),
        ("k256-q2_k", false, RUN_K),
        ("k256-q3_k_m", false, RUN_K),
        ("k256-q4_k_m", false, RUN_K),
        ("k256-q5_k_m", true, RUN_K),
        ("k256-q6_k", true, RUN_K),
    ];
    for (name, same_greedy, bound) in FIXTURES {
        let model = load_model(&format!("quant/{name}.gguf"), None);
        assert!(model.main_dtype().is_some_and(|t| t.is_quantized()), "{name}");
        let (tokens, want) = llama_cpp_oracle(&format!("quant/{name}.llama-logits"));
        let s = Session::new(model.clone(), params(0, 0.0, 0)).unwrap();
        let (mut worst, mut first, mut other_choices) = (0f32, 0f32, 0);
        for (i, (&t, want)) in tokens.iter().zip(&want).enumerate() {
            s.step(&[t]).unwrap();
            let got = s.logits().unwrap().unwrap();
            worst = worst.max(max_abs_diff(&got, want));
            if i == 0 {
                first = max_abs_diff(&got, want);
            }
            let ours = argmax(&got);
            if i + 1 < tokens.len() && ours != tokens[i + 1] {
                other_choices += 1;
                assert!(!same_greedy, "{name}: position {i}: we choose {ours}, llama.cpp {}", tokens[i + 1]);
            }
        }
        eprintln!(
            "{name}: largest logit difference from llama.cpp over {} positions {worst:e} (at BOS {first:e}); {other_choices} other greedy choices",
            tokens.len()
        );
        assert!(first <= AT_BOS, "{name}: logits after BOS differ from llama.cpp's by {first} (bound {AT_BOS})");
        assert!(worst <= bound, "{name}: logits differ from llama.cpp's by {worst} (bound {bound})");
        // A batched prompt rounds its attention differently from stepping, and 8-bit
        // activations can turn that into a step of a quant: held to the same bound.
        let batch = Session::new(model.clone(), params(0, 0.0, 0)).unwrap();
        batch.step(&tokens[..48]).unwrap();
        let diff = max_abs_diff(&batch.logits().unwrap().unwrap(), &want[47]);
        eprintln!("{name}: batched prompt of 48 against llama.cpp: {diff:e}");
        assert!(diff <= bound, "{name}: batched prompt of 48 against llama.cpp: {diff} (bound {bound})");
    }
}

/// The index of the largest value (the first of equals).
fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b }) as u32
}
