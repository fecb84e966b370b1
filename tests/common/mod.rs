//! Helpers shared by the integration tests: fixture paths, the expected greedy ids, loading.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use runllama::loader::{load, LoadOptions};
use runllama::model::Model;
use runllama::sampler::SamplerParams;
use runllama::session::{KvType, Session, SessionParams};

#[cfg(unix)]
pub mod host;

/// `tests/data/<rel>`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// The bytes of `tests/data/<rel>`.
pub fn data_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The 200 greedy ids of stories260K from BOS (EXPECTED.md, llama2.c's reference).
pub fn expected_ids() -> Vec<u32> {
    let md = std::fs::read_to_string(data("stories260K/EXPECTED.md")).expect("EXPECTED.md");
    let start = md.find("## Token ids").expect("token ids section");
    let block = &md[start..];
    let open = block.find("```").unwrap() + 3;
    let close = open + block[open..].find("```").unwrap();
    let ids: Vec<u32> = block[open..close].split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(ids.len(), 200);
    ids
}

/// Load a fixture (relative to tests/data) with an optional tokenizer (relative too).
pub fn load_model(rel: &str, tokenizer: Option<&str>) -> Arc<Model> {
    let opts = LoadOptions { tokenizer_path: tokenizer.map(data), n_threads: 2, ..LoadOptions::default() };
    Arc::new(load(&data(rel), opts).unwrap_or_else(|e| panic!("loading {rel}: {e}")))
}

/// Session parameters: greedy unless `temperature` > 0.
pub fn params(n_ctx: u32, temperature: f32, seed: u64) -> SessionParams {
    SessionParams {
        n_ctx,
        sampler: SamplerParams { temperature, top_k: 0, top_p: 1.0, repeat_penalty: 1.0 },
        seed,
        kv_type: KvType::F32,
        kv_type_v: None,
    }
}

/// Greedy generation from BOS for `n` positions, one token per step.
pub fn greedy(model: &Arc<Model>, n: usize) -> Vec<u32> {
    greedy_in(&Session::new(model.clone(), params(0, 0.0, 0)).unwrap(), model.bos, n)
}

/// [`greedy`] in an existing session (reset first; it must be greedy, temperature 0).
pub fn greedy_in(s: &Session, bos: u32, n: usize) -> Vec<u32> {
    s.reset().unwrap();
    let mut out = Vec::new();
    let mut next = s.step(&[bos]).unwrap();
    out.push(next);
    while out.len() < n {
        next = s.step(&[next]).unwrap();
        out.push(next);
    }
    out
}

/// Reference logits (32 positions × 512) written by tests/data/reference/make_reference.py.
pub fn reference_logits(tag: &str) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(data(&format!("reference/logits_{tag}.bin"))).unwrap();
    f32s(&bytes).chunks(512).map(|c| c.to_vec()).collect()
}

/// Little-endian f32 values.
pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The 32 tokens the reference logits were computed for.
pub fn reference_tokens() -> Vec<u32> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("reference/reference.json")).unwrap()).unwrap();
    v["tokens"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `bound` for logits of a batched prefill against stepping or a reference, loosened 20x
/// where the batched products run on AMX tiles (bf16 parts of the activations: each term
/// within 2^-15 of `w x`, see kernels/src/amx.rs; seen on stories260K: 7.6e-5 for the f16
/// GGUF against stepping, 1.2e-4 for the fp16 .ckpt against transformers).
pub fn batched_bound(bound: f32) -> f32 {
    if runllama_kernels::path() == runllama_kernels::Path::Amx {
        bound * 20.0
    } else {
        bound
    }
}

/// Run this test binary again with `args` (test names and libtest options) in a child process
/// whose address space is limited to 1 GiB (Linux): an allocation sized by input that the
/// library does not check aborts the child (Rust's reaction to a failed allocation), which
/// fails the caller. Does nothing inside that child.
#[cfg(target_os = "linux")]
pub fn passes_under_a_1_gib_address_space(args: &[&str]) {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("RUNLLAMA_LIMITED_CHILD").is_some() {
        return;
    }
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(args).arg("--test-threads=1").env("RUNLLAMA_LIMITED_CHILD", "1");
    // SAFETY: only an async-signal-safe call between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "under RLIMIT_AS = 1 GiB: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test result: ok") && !stdout.contains("ok. 0 passed"), "{stdout}");
}
