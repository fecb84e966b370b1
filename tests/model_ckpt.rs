//! MindSpore `.ckpt` files written by real MindSpore (MindFormers names): every variant gives the
//! same greedy ids as the other formats of stories260K, and logits match transformers.

mod common;
use common::*;

use std::sync::Arc;

use runllama::error::Status;
use runllama::loader::{load, LoadOptions};
use runllama::session::Session;

fn load_ckpt(file: &str, yaml: &str) -> Arc<runllama::model::Model> {
    let opts = LoadOptions { config_path: Some(data(&format!("mindformers/{yaml}"))), ..Default::default() };
    Arc::new(load(&data(&format!("mindformers/{file}")), opts).unwrap_or_else(|e| panic!("{file}: {e}")))
}

/// (file, yaml, reference tag, greedy ids that must equal EXPECTED.md)
const FIXTURES: &[(&str, &str, &str, usize)] = &[
    ("stories260K.ckpt", "stories260K.yaml", "f32", 200),
    ("stories260K-fp16.ckpt", "stories260K.yaml", "f16", 200),
    ("stories260K-bf16.ckpt", "stories260K.yaml", "bf16", 185),
    ("stories260K-sliced16k.ckpt", "stories260K.yaml", "f32", 200),
    ("stories260K-qkvconcat.ckpt", "stories260K-qkvconcat.yaml", "f32", 200),
    ("stories260K-tied.ckpt", "stories260K-tied.yaml", "f32", 200),
];

#[test]
fn every_mindformers_checkpoint_gives_the_reference_greedy_ids() {
    let expected = expected_ids();
    for &(file, yaml, _, agree) in FIXTURES {
        let m = load_ckpt(file, yaml);
        assert_eq!(m.format, "mindspore-ckpt");
        let got = greedy(&m, 200);
        assert_eq!(got[..agree], expected[..agree], "{file}");
    }
}

#[test]
fn mindformers_logits_match_transformers() {
    let tokens = reference_tokens();
    for &(file, yaml, tag, _) in FIXTURES {
        let reference = reference_logits(tag);
        let m = load_ckpt(file, yaml);
        let s = Session::new(m.clone(), params(0, 0.0, 0)).unwrap();
        let mut worst = 0f32;
        for (p, &t) in tokens.iter().enumerate() {
            s.step(&[t]).unwrap();
            worst = worst.max(max_abs_diff(&s.logits().unwrap().unwrap(), &reference[p]));
        }
        eprintln!("{file}: max |logit - transformers ({tag})| over 32 positions = {worst:e}");
        assert!(worst < 1e-4, "{file}: max |logit - transformers| = {worst}");
        // Batched prefill over split (sliced) and fused tensors agrees with stepping.
        let b = Session::new(m.clone(), params(0, 0.0, 0)).unwrap();
        b.step(&tokens).unwrap();
        let d = max_abs_diff(&b.logits().unwrap().unwrap(), &reference[tokens.len() - 1]);
        assert!(d < batched_bound(1e-4), "{file}: batched prefill differs by {d}");
    }
}

#[test]
fn describe_lists_split_tensors_once_and_the_config_source() {
    let m = load_ckpt("stories260K-sliced16k.ckpt", "stories260K.yaml");
    let v: serde_json::Value = serde_json::from_str(&m.describe_json()).unwrap();
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 48, "92 pieces, 48 tensors");
    let emb = tensors.iter().find(|t| t["name"] == "model.tok_embeddings.embedding_weight").unwrap();
    assert_eq!(emb["shape"], serde_json::json!([512, 64]));
    assert_eq!(v["n_head"], 8);
    assert_eq!(v["n_head_kv"], 4);
    assert_eq!(v["rope_layout"], "halves");
    assert!(v["assumed"].as_array().unwrap().is_empty(), "{}", v["assumed"]);
}

#[test]
fn without_a_yaml_the_values_taken_from_defaults_are_reported() {
    // LLaMA defaults (head_dim 128) do not fit a 64-wide toy model: a clear error, not a crash.
    let e = load(&data("mindformers/stories260K.ckpt"), LoadOptions::default()).unwrap_err();
    assert_eq!(e.status, Status::Format, "{e}");
    // ... that says what to pass.
    assert!(e.message.contains("pass the MindFormers yaml as config_path"), "{e}");
    // With the heads from an HF config.json (any config format works), the rest is assumed.
    let opts = LoadOptions { config_path: Some(data("stories260K/hf/config.json")), ..Default::default() };
    let m = load(&data("mindformers/stories260K.ckpt"), opts).unwrap();
    assert_eq!(greedy(&Arc::new(m), 20), expected_ids()[..20]);
}

#[test]
fn the_concat_layout_is_selected_by_the_yaml() {
    // The fixture is in the grouped (hf2mg) layout; declaring the 1.2-1.3 layout must change the
    // result (and so proves the key is honoured).
    let dir = std::env::temp_dir().join(format!("runllama-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = std::fs::read_to_string(data("mindformers/stories260K-qkvconcat.yaml")).unwrap();
    let yaml = yaml.replace("    qkv_concat: True\n", "    qkv_concat: True\n    qkv_concat_layout: concat\n");
    let p = dir.join("concat.yaml");
    std::fs::write(&p, yaml).unwrap();
    let opts = LoadOptions { config_path: Some(p), ..Default::default() };
    let m = Arc::new(load(&data("mindformers/stories260K-qkvconcat.ckpt"), opts).unwrap());
    assert_ne!(greedy(&m, 20), expected_ids()[..20]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broken_checkpoints_are_errors() {
    let dir = std::env::temp_dir().join(format!("runllama-ckpt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(data("mindformers/stories260K.ckpt")).unwrap();
    let p = dir.join("cut.ckpt");
    let yaml = data("mindformers/stories260K.yaml");
    for cut in [bytes.len() - 3, bytes.len() / 2, 5000, 100] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        std::fs::copy(data("mindformers/tokenizer.model"), dir.join("tokenizer.model")).unwrap();
        let opts = LoadOptions { config_path: Some(yaml.clone()), ..Default::default() };
        let e = load(&p, opts).unwrap_err();
        assert_eq!(e.status, Status::Format, "cut at {cut}: {e}");
        assert!(e.message.contains("cut.ckpt"), "{e}");
    }
    // Encrypted files are reported as such.
    let enc = dir.join("enc.ckpt");
    let mut e_bytes = vec![0xD8, 0x5E, 0x3A, 0x7F];
    e_bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&enc, e_bytes).unwrap();
    let e = load(&enc, LoadOptions::default()).unwrap_err();
    assert_eq!(e.status, Status::Unsupported, "{e}");
    assert!(e.message.contains("encrypt"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
