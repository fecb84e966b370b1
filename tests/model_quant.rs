//! Block-quantized GGUF weights: every block type's dequantization against gguf-py's on random
//! blocks (tests/data/quant/make_blocks.py), and stories260K quantized by gguf-py
//! (tests/data/quant/make_quantized.py) against gguf-py's own dequantization of the same file.

mod common;
use common::*;

use std::sync::Arc;

use runllama::gguf;
use runllama::model::Model;
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
        let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0).collect();
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
            let dot = runllama_kernels::paths::dot_row(path, dtype, bytes, &x) as f64;
            let exact: f64 = want.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            let scale: f64 = want.iter().zip(&x).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
            assert!((dot - exact).abs() <= 1e-6 * scale.max(1.0), "{}: dot {dot} against {exact}", dtype.name());
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

/// Model `q` computes what its dequantized twin `d` computes: logits within `bound` along
/// `[bos] + tokens` (teacher-forced), the same `greedy_n` greedy ids, and a batched prompt of
/// the first `batch_len` of those positions within rounding of stepping them.
fn assert_matches_twin(
    tag: &str,
    q: &Arc<Model>,
    d: &Arc<Model>,
    tokens: &[u32],
    bound: f32,
    greedy_n: usize,
    batch_len: usize,
) {
    let positions: Vec<u32> = [q.bos].into_iter().chain(tokens.iter().copied()).collect();
    let (sq, sd) =
        (Session::new(q.clone(), params(0, 0.0, 0)).unwrap(), Session::new(d.clone(), params(0, 0.0, 0)).unwrap());
    let mut worst = 0f32;
    for &t in &positions {
        sq.step(&[t]).unwrap();
        sd.step(&[t]).unwrap();
        worst = worst.max(max_abs_diff(&sq.logits().unwrap().unwrap(), &sd.logits().unwrap().unwrap()));
    }
    eprintln!(
        "{tag}: largest logit difference from the dequantized twin over {} positions: {worst:e}",
        positions.len()
    );
    assert!(worst < bound, "{tag}: logits differ from the dequantized twin's by {worst}");
    assert_eq!(greedy(q, greedy_n), greedy(d, greedy_n), "{tag}: greedy ids differ from the dequantized twin's");
    let prompt = &positions[..batch_len];
    let batch = Session::new(q.clone(), params(0, 0.0, 0)).unwrap();
    batch.step(prompt).unwrap();
    sq.reset().unwrap();
    for &t in prompt {
        sq.step(&[t]).unwrap();
    }
    let diff = max_abs_diff(&batch.logits().unwrap().unwrap(), &sq.logits().unwrap().unwrap());
    assert!(diff < batched_bound(1e-4), "{tag}: batched prompt against stepping: {diff}");
}

/// stories260K quantized by gguf-py to each 32-value block type against its twin: logits along
/// the reference story within f32 rounding, the same 100 greedy ids, batched = stepping.
#[test]
fn quantized_models_match_their_dequantized_twins() {
    let ids = expected_ids();
    for (tag, dtype) in TYPES {
        let q = load_model(&format!("quant/stories260K-{tag}.gguf"), None);
        let d = load_model(&format!("quant/stories260K-{tag}-dequant.gguf"), None);
        assert_eq!(q.main_dtype(), Some(dtype));
        assert!(q.describe_json().contains(&format!("\"dtype\":\"{}\"", dtype.name())));
        assert_matches_twin(tag, &q, &d, &ids[..63], 5e-5, 100, 48);
    }
}

/// The file `bytes` (a GGUF) with every quantized tensor replaced by its dequantization (by our
/// kernels, in F32; metadata copied verbatim). The twin is only as right as our dequantization:
/// `every_block_type_dequantizes_as_gguf_py` checks that independently, against gguf-py.
fn dequantized_twin(bytes: &[u8], name: &str) -> Vec<u8> {
    let g = gguf::parse(bytes, name).unwrap();
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    // The metadata: from the counts to the first tensor's info (its name's length, then name).
    let first = &g.tensors[0].name;
    let mut key = (first.len() as u64).to_le_bytes().to_vec();
    key.extend_from_slice(first.as_bytes());
    let kv_end = 24 + bytes[24..].windows(key.len()).position(|w| w == key.as_slice()).unwrap();
    let mut out = bytes[..24].to_vec();
    out[8..16].copy_from_slice(&(g.tensors.len() as u64).to_le_bytes());
    assert_eq!(u64_at(8) as usize, g.tensors.len());
    out.extend_from_slice(&bytes[24..kv_end]);
    let mut data = Vec::new();
    for t in &g.tensors {
        out.extend_from_slice(&(t.name.len() as u64).to_le_bytes());
        out.extend_from_slice(t.name.as_bytes());
        out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &d in t.shape.iter().rev() {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes()); // F32
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        let src = &bytes[t.offset..t.offset + t.nbytes];
        if t.dtype == DType::F32 {
            data.extend_from_slice(src);
        } else {
            let cols = *t.shape.last().unwrap();
            let mut row = vec![0f32; cols];
            for r in src.chunks_exact(t.dtype.row_bytes(cols).unwrap()) {
                runllama_kernels::row_to_f32(t.dtype, r, &mut row);
                data.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            }
        }
        data.resize(data.len().next_multiple_of(32), 0);
    }
    out.resize(out.len().next_multiple_of(32), 0);
    out.extend_from_slice(&data);
    out
}

/// llama-quantize's K-quant presets of a 256-wide random model (tests/data/quant/
/// make_kquants.py), against their dequantized twins: logits within f32 rounding over 48
/// positions, the same greedy ids, batched prompt = stepping.
#[test]
fn k_quant_presets_match_their_dequantized_twins() {
    let dir = std::env::temp_dir().join(format!("runllama-kquant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for preset in ["q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k"] {
        let rel = format!("quant/k256-{preset}.gguf");
        let twin = dir.join(format!("k256-{preset}-twin.gguf"));
        std::fs::write(&twin, dequantized_twin(&std::fs::read(data(&rel)).unwrap(), preset)).unwrap();
        let q = load_model(&rel, None);
        let d = Arc::new(
            runllama::loader::load(&twin, runllama::loader::LoadOptions { n_threads: 2, ..Default::default() })
                .unwrap(),
        );
        assert!(q.main_dtype().is_some_and(|t| t.is_quantized()) && d.main_dtype() == Some(DType::F32), "{preset}");
        let toks = greedy(&d, 48);
        assert_matches_twin(preset, &q, &d, &toks[..47], 5e-6, 48, 32);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
