//! Full-size LLaMA3-8B-shaped bf16 checkpoint (issue: MindSpore .ckpt at real scale). Ignored by
//! default: it writes ~16 GB. Run it with
//!
//! ```text
//! python3 ../shared/tools/make_random_llama.py --preset llama3-8b --dtype bfloat16 --out /work/big/l3 \
//!     --tokenizer ../shared/tokenizers/llama3/tokenizer.model --no-tokenizer-json
//! RUNLLAMA_BIG_HF=/work/big/l3 cargo test --release --test big_ckpt -- --ignored --nocapture
//! ```
//!
//! It converts the safetensors model to a MindFormers `.ckpt` with the repo's MindSpore-exact
//! writer (so the 1,050,673,152-byte embedding and lm_head are split in two pieces at MindSpore's
//! 512 MiB threshold), loads both, and checks that 16 decode steps give the same logits; it
//! prints load times and the process's anonymous (not file-backed) memory.

mod common;

#[path = "common/ckpt_writer.rs"]
mod ckpt_writer;
use ckpt_writer::CkptWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use runllama::formats::ckpt::CkptDType;
use runllama::loader::{load, LoadOptions};
use runllama::session::Session;

fn anon_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mindformers_name(hf: &str) -> String {
    hf.replace("model.embed_tokens.weight", "model.tok_embeddings.embedding_weight")
        .replace("model.norm.weight", "model.norm_out.weight")
        .replace(".self_attn.q_proj.", ".attention.wq.")
        .replace(".self_attn.k_proj.", ".attention.wk.")
        .replace(".self_attn.v_proj.", ".attention.wv.")
        .replace(".self_attn.o_proj.", ".attention.wo.")
        .replace(".mlp.gate_proj.", ".feed_forward.w1.")
        .replace(".mlp.down_proj.", ".feed_forward.w2.")
        .replace(".mlp.up_proj.", ".feed_forward.w3.")
        .replace(".input_layernorm.", ".attention_norm.")
        .replace(".post_attention_layernorm.", ".ffn_norm.")
}

/// Write `dir`'s safetensors as a MindFormers ckpt at `out` (tensors streamed from the mmap).
fn convert(dir: &Path, out: &Path) {
    let m = load(dir, LoadOptions { n_threads: 1, ..Default::default() }).expect("load safetensors");
    let files = &m.backend().unwrap().weights().files;
    let f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(out).unwrap());
    let mut w = CkptWriter::new(f, runllama::formats::ckpt::SLICE_BYTES, true).unwrap();
    for t in &m.tensors {
        let bytes = &files[t.file].bytes()[t.offset..t.offset + t.nbytes];
        let dt = match t.dtype {
            runllama::tensor::DType::BF16 => CkptDType::BF16,
            runllama::tensor::DType::F16 => CkptDType::F16,
            runllama::tensor::DType::F32 => CkptDType::F32,
            other => panic!("a safetensors model has no {other:?} tensors"),
        };
        w.tensor(&mindformers_name(&t.name), &dt, &t.shape, bytes).unwrap();
    }
    w.finish().unwrap();
}

const YAML: &str = "model:\n  model_config:\n    type: LlamaConfig\n    seq_length: 8192\n    hidden_size: 4096\n    num_layers: 32\n    num_heads: 32\n    n_kv_heads: 8\n    vocab_size: 128256\n    intermediate_size: 14336\n    rms_norm_eps: 1.0e-05\n    theta: 500000\n    bos_token_id: 128000\n    eos_token_id: 128001\n    pad_token_id: 128002\n    extend_method: \"None\"\nprocessor:\n  tokenizer:\n    vocab_file: \"tokenizer.model\"\n    type: Llama3Tokenizer\n";

fn run(path: &Path, opts: LoadOptions<'_>, tokens: &[u32]) -> (f64, u64, Vec<Vec<f32>>, u64) {
    let anon0 = anon_kib();
    let t0 = Instant::now();
    let m = Arc::new(load(path, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let load_s = t0.elapsed().as_secs_f64();
    let anon_load = anon_kib().saturating_sub(anon0);
    let s = Session::new(m.clone(), common::params(64, 0.0, 0)).unwrap();
    let mut logits = Vec::new();
    for &t in tokens {
        s.step(&[t]).unwrap();
        logits.push(s.logits().unwrap().unwrap());
    }
    let anon_steps = anon_kib().saturating_sub(anon0);
    println!(
        "{}: process RssAnon {} MiB before load, {} MiB after 16 steps",
        path.display(),
        anon0 >> 10,
        anon_kib() >> 10
    );
    (load_s, anon_load, logits, anon_steps)
}

#[test]
#[ignore = "writes a 16 GB checkpoint; see the file's doc comment"]
fn llama3_8b_bf16_ckpt_matches_safetensors() {
    let hf = PathBuf::from(std::env::var("RUNLLAMA_BIG_HF").unwrap_or_else(|_| "/work/big/l3".into()));
    let ckpt = hf.with_extension("ckpt");
    let t0 = Instant::now();
    if !ckpt.exists() {
        convert(&hf, &ckpt);
        println!("wrote {} in {:.1} s", ckpt.display(), t0.elapsed().as_secs_f64());
    }
    let yaml = hf.with_extension("yaml");
    std::fs::write(&yaml, YAML).unwrap();
    std::fs::copy(hf.join("original/tokenizer.model"), ckpt.parent().unwrap().join("tokenizer.model")).ok();
    let tokens: Vec<u32> =
        vec![128000, 9906, 1917, 11, 420, 374, 264, 1296, 315, 279, 26173, 1887, 13, 578, 4062, 14198];
    let tok = Some(hf.join("original/tokenizer.model"));
    let (st_load, st_anon, st_logits, st_anon_steps) =
        run(&hf, LoadOptions { tokenizer_path: tok.clone(), n_threads: 2, ..Default::default() }, &tokens);
    println!(
        "safetensors: load {st_load:.2} s, anonymous memory after load {} MiB, after 16 steps {} MiB",
        st_anon >> 10,
        st_anon_steps >> 10
    );
    let opts = LoadOptions { config_path: Some(yaml), tokenizer_path: tok, n_threads: 2, ..Default::default() };
    let (ck_load, ck_anon, ck_logits, ck_anon_steps) = run(&ckpt, opts, &tokens);
    println!(
        "ckpt:        load {ck_load:.2} s, anonymous memory after load {} MiB, after 16 steps {} MiB",
        ck_anon >> 10,
        ck_anon_steps >> 10
    );
    let mut worst = 0f32;
    for (a, b) in st_logits.iter().zip(&ck_logits) {
        worst = worst.max(common::max_abs_diff(a, b));
    }
    println!("max |logit(ckpt) - logit(safetensors)| over 16 steps: {worst}");
    assert_eq!(worst, 0.0, "the same weights must give bit-identical logits");
    assert!(ck_anon_steps < (1 << 20), "anonymous memory {} MiB: weights were copied?", ck_anon_steps >> 10);
}
