//! Block-quantized GGUF weights (Q8_0, Q4_0): stories260K quantized by gguf-py
//! (tests/data/quant/make_quantized.py), against gguf-py's own dequantization of the same file.

mod common;
use common::*;

use runllama::gguf;
use runllama::session::Session;
use runllama::tensor::DType;

const TYPES: [(&str, DType); 2] = [("q8_0", DType::Q8_0), ("q4_0", DType::Q4_0)];

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
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

/// The quantized model computes what its dequantized twin computes: logits along the reference
/// story within f32 rounding (our quantized dot products sum a block's integers, then scale),
/// the same greedy ids, and a batched prompt gives what stepping gives.
#[test]
fn quantized_models_match_their_dequantized_twins() {
    let ids = expected_ids();
    for (tag, dtype) in TYPES {
        let q = load_model(&format!("quant/stories260K-{tag}.gguf"), None);
        let d = load_model(&format!("quant/stories260K-{tag}-dequant.gguf"), None);
        assert_eq!(q.main_dtype(), Some(dtype));
        assert!(q.describe_json().contains(&format!("\"dtype\":\"{}\"", dtype.name())));
        let (sq, sd) =
            (Session::new(q.clone(), params(0, 0.0, 0)).unwrap(), Session::new(d.clone(), params(0, 0.0, 0)).unwrap());
        let mut worst = 0f32;
        for &t in [q.bos].iter().chain(&ids[..63]) {
            sq.step(&[t]).unwrap();
            sd.step(&[t]).unwrap();
            worst = worst.max(max_abs_diff(&sq.logits().unwrap().unwrap(), &sd.logits().unwrap().unwrap()));
        }
        eprintln!("{tag}: largest logit difference from the dequantized twin over 64 positions: {worst:e}");
        assert!(worst < 2e-4, "{tag}: logits differ from the dequantized twin's by {worst}");
        let (gq, gd) = (greedy(&q, 100), greedy(&d, 100));
        assert_eq!(gq, gd, "{tag}: greedy ids differ from the dequantized twin's");
        // A 48-token batched prompt against stepping the same tokens.
        let prompt: Vec<u32> = [q.bos].into_iter().chain(ids[..47].iter().copied()).collect();
        let batch = Session::new(q.clone(), params(0, 0.0, 0)).unwrap();
        batch.step(&prompt).unwrap();
        let diff = max_abs_diff(&batch.logits().unwrap().unwrap(), &{
            sq.reset().unwrap();
            for &t in &prompt {
                sq.step(&[t]).unwrap();
            }
            sq.logits().unwrap().unwrap()
        });
        assert!(diff < batched_bound(1e-4), "{tag}: batched prompt against stepping: {diff}");
    }
}
