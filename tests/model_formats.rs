//! Loader behaviour on model files made at test time from the stories260K fixtures: sharded
//! safetensors directories, GGUF v2, tokenizers in `original/`, and inconsistent files.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use runllama::error::Status;
use runllama::loader::{load, LoadOptions};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("runllama-formats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Tensors of a safetensors file: (name, dtype, shape, bytes).
type Tensors = Vec<(String, String, Vec<u64>, Vec<u8>)>;

fn read_safetensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = Tensors::new();
    for (name, v) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let off: Vec<usize> =
            v["data_offsets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        let shape = v["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        out.push((name.clone(), v["dtype"].as_str().unwrap().to_string(), shape, data[off[0]..off[1]].to_vec()));
    }
    out
}

fn write_safetensors(path: &Path, tensors: &[(String, String, Vec<u64>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend_from_slice(bytes);
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    file.extend_from_slice(&data);
    std::fs::write(path, file).unwrap();
}

fn greedy_from(path: &Path, opts: LoadOptions<'_>, n: usize) -> Vec<u32> {
    let m = Arc::new(load(path, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    greedy(&m, n)
}

#[test]
fn sharded_safetensors_directory_with_index_and_tokenizer_in_original() {
    let dir = tmpdir("sharded");
    let tensors = read_safetensors(&data("stories260K/hf/model.safetensors"));
    let (a, b) = tensors.split_at(tensors.len() / 2);
    write_safetensors(&dir.join("model-00001-of-00002.safetensors"), a);
    write_safetensors(&dir.join("model-00002-of-00002.safetensors"), b);
    let mut map = serde_json::Map::new();
    for (t, f) in a.iter().map(|t| (t, 1)).chain(b.iter().map(|t| (t, 2))) {
        map.insert(t.0.clone(), format!("model-0000{f}-of-00002.safetensors").into());
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map}).to_string(),
    )
    .unwrap();
    std::fs::copy(data("stories260K/hf/config.json"), dir.join("config.json")).unwrap();
    std::fs::create_dir_all(dir.join("original")).unwrap();
    std::fs::copy(data("stories260K/tok512.model"), dir.join("original/tokenizer.model")).unwrap();
    assert_eq!(greedy_from(&dir, LoadOptions::default(), 200), expected_ids());
    let m = load(&dir, LoadOptions::default()).unwrap();
    assert_eq!(m.backend().unwrap().weights().files.len(), 2, "two shards mapped");
    assert!(m.tokenizer_source.ends_with("original/tokenizer.model"), "{}", m.tokenizer_source);

    // A shard name that escapes the directory is refused.
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map": {"x": "../evil.safetensors"}}"#)
        .unwrap();
    let e = load(&dir, LoadOptions::default()).unwrap_err();
    assert_eq!(e.status, Status::Format, "{e}");
    // A missing shard is an I/O error naming it.
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map": {"x": "model-9.safetensors"}}"#)
        .unwrap();
    let e = load(&dir, LoadOptions::default()).unwrap_err();
    assert_eq!(e.status, Status::Io, "{e}");
    assert!(e.message.contains("model-9.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inconsistent_or_incomplete_safetensors_models_are_format_errors() {
    let dir = tmpdir("inconsistent");
    let tensors = read_safetensors(&data("stories260K/hf/model.safetensors"));
    std::fs::copy(data("stories260K/tok512.model"), dir.join("tokenizer.model")).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("stories260K/hf/config.json")).unwrap()).unwrap();

    // The config disagrees with the tensors.
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let mut c = config.clone();
    c["intermediate_size"] = 200.into();
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    let e = load(&dir, LoadOptions::default()).unwrap_err();
    assert_eq!(e.status, Status::Format);
    assert!(e.message.contains("mlp.gate_proj") && e.message.contains("[200, 64]"), "{e}");

    // A missing tensor is named.
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let fewer: Tensors = tensors.iter().filter(|t| t.0 != "model.layers.3.self_attn.v_proj.weight").cloned().collect();
    write_safetensors(&dir.join("model.safetensors"), &fewer);
    let e = load(&dir, LoadOptions::default()).unwrap_err();
    assert_eq!(e.status, Status::Format);
    assert!(e.message.contains("model.layers.3.self_attn.v_proj.weight"), "{e}");

    // Untied embeddings without lm_head.
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let mut c = config.clone();
    c["tie_word_embeddings"] = false.into();
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    let e = load(&dir, LoadOptions::default()).unwrap_err();
    assert!(e.status == Status::Format && e.message.contains("lm_head.weight"), "{e}");

    // A config that is not JSON, one for another architecture, RoPE scaling.
    std::fs::write(dir.join("config.json"), "{not json").unwrap();
    assert_eq!(load(&dir, LoadOptions::default()).unwrap_err().status, Status::Format);
    let mut c = config.clone();
    c["model_type"] = "mistral".into();
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    assert_eq!(load(&dir, LoadOptions::default()).unwrap_err().status, Status::Unsupported);
    let mut c = config.clone();
    c["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    assert_eq!(load(&dir, LoadOptions::default()).unwrap_err().status, Status::Unsupported);

    // heads that do not divide the width.
    let mut c = config.clone();
    c["num_attention_heads"] = 7.into();
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    assert_eq!(load(&dir, LoadOptions::default()).unwrap_err().status, Status::Format);

    // An explicit config path wins over the one beside the weights.
    std::fs::write(dir.join("good.json"), config.to_string()).unwrap();
    let opts = LoadOptions { config_path: Some(dir.join("good.json")), ..Default::default() };
    assert_eq!(greedy_from(&dir, opts, 20), expected_ids()[..20]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_version_2_loads_like_version_3() {
    let dir = tmpdir("gguf2");
    let mut bytes = std::fs::read(data("stories260K/stories260K-f16.gguf")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let p = dir.join("v2.gguf");
    std::fs::write(&p, &bytes).unwrap();
    assert_eq!(greedy_from(&p, LoadOptions::default(), 200), expected_ids());
    // A tokenizer file given by path replaces the embedded vocabulary.
    let opts = LoadOptions { tokenizer_path: Some(data("stories260K/tok512.bin")), ..Default::default() };
    let m = load(&p, opts).unwrap();
    assert!(m.tokenizer_source.ends_with("tok512.bin"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_model_files_are_format_errors_with_the_path() {
    let dir = tmpdir("truncated");
    for rel in ["stories260K/stories260K-f32.gguf", "stories260K/hf/model.safetensors", "stories260K/stories260K.bin"] {
        let bytes = std::fs::read(data(rel)).unwrap();
        let name = Path::new(rel).file_name().unwrap();
        let p = dir.join(name);
        for cut in [bytes.len() - 1, bytes.len() * 3 / 4, bytes.len() / 3, 1000, 40, 9] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let opts = LoadOptions { tokenizer_path: Some(data("stories260K/tok512.bin")), ..Default::default() };
            let e = load(&p, opts).expect_err("truncated file loaded");
            assert_eq!(e.status, Status::Format, "{rel} cut at {cut}: {e}");
            assert!(e.message.contains(name.to_str().unwrap()), "{rel} cut at {cut}: {e}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
