//! A short fuzz run of every parser (`runllama::fuzz`), in every test run: each target gets its
//! fixtures, then mutations of them (bit flips, bytes set to edge values, little-endian counts
//! and offsets replaced by 0, 1, 2^31, 2^32 - 1, 2^40 ..., cuts, inserted and repeated runs) for
//! `RUNLLAMA_FUZZ_SECS` seconds per target (default 2), from a fixed seed (`RUNLLAMA_FUZZ_SEED`
//! to vary it). A panic or an input that takes more than 10 s fails the test; the input is kept
//! in `target/fuzz-failures/` to become a regression case.

mod common;
use common::*;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use runllama::fuzz;
use runllama::tokenizer::Tokenizer;

/// xorshift64*: a fixed, dependency-free sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EDGE_U64: [u64; 9] = [0, 1, 2, 0x7f, 0x8000_0000, 0xffff_ffff, 1 << 32, 1 << 40, u64::MAX];

/// One mutation of `seed` (a few edits, chosen by `r`).
fn mutate(seed: &[u8], r: &mut Rng) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + r.below(4) {
        if d.is_empty() {
            d.push(r.next() as u8);
            continue;
        }
        // Most edits near the start, where the headers are.
        let span = if r.below(4) == 0 { d.len() } else { d.len().min(4096) };
        let at = r.below(span);
        match r.below(8) {
            0 => d[at] ^= 1 << r.below(8),
            1 => d[at] = [0, 0xff, 0x7f, 0x80, b'{', b'"', b'\n', b':'][r.below(8)],
            2 => {
                let v = EDGE_U64[r.below(EDGE_U64.len())].to_le_bytes();
                let n = if r.below(2) == 0 { 4 } else { 8 };
                let end = (at + n).min(d.len());
                d[at..end].copy_from_slice(&v[..end - at]);
            }
            3 => d.truncate(at),
            4 => {
                let n = 1 + r.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
                d.splice(at..at, bytes);
            }
            5 => {
                let len = (1 + r.below(64)).min(d.len() - at);
                let chunk = d[at..at + len].to_vec();
                let to = r.below(d.len());
                d.splice(to..to, chunk);
            }
            6 => {
                let len = (1 + r.below(64)).min(d.len() - at);
                d.drain(at..at + len);
            }
            _ => {
                let v = r.below(3) as u8 * 0x7f;
                let len = (1 + r.below(32)).min(d.len() - at);
                d[at..at + len].fill(v);
            }
        }
    }
    d
}

fn budget() -> Duration {
    let secs = std::env::var("RUNLLAMA_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn seed() -> u64 {
    std::env::var("RUNLLAMA_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_abcd_0001) | 1
}

/// Run `target` over `seeds` and their mutations for the time budget; panics and slow inputs
/// are saved and fail the test. Returns the number of inputs run.
fn run(name: &str, target: &dyn Fn(&[u8]), seeds: &[Vec<u8>]) -> usize {
    let mut r = Rng(seed() ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)));
    let start = Instant::now();
    let mut n = 0;
    let mut i = 0;
    loop {
        let input = if i < seeds.len() { seeds[i].clone() } else { mutate(&seeds[r.below(seeds.len())], &mut r) };
        i += 1;
        let t = Instant::now();
        let ok = catch_unwind(AssertUnwindSafe(|| target(&input))).is_ok();
        let slow = t.elapsed() > Duration::from_secs(10);
        n += 1;
        if !ok || slow {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join(format!("{name}-{n}.bin"));
            std::fs::write(&p, &input).unwrap();
            panic!(
                "fuzz target {name}: input {n} {} (saved to {})",
                if ok { "took > 10 s" } else { "panicked" },
                p.display()
            );
        }
        if i >= seeds.len() && start.elapsed() > budget() {
            return n;
        }
    }
}

/// A sharded checkpoint's `model.safetensors.index.json`, the shape HF writes.
const SHARD_INDEX: &[u8] = br#"{"metadata": {"total_size": 1048576}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", "model.embed_tokens.weight": "model-00001-of-00002.safetensors", "model.norm.weight": "model-00002-of-00002.safetensors"}}"#;

#[test]
fn every_parser_survives_its_fixtures_and_their_mutations() {
    let seeds = |target: &str| -> Vec<Vec<u8>> {
        match target {
            "gguf" => vec![data_bytes("stories260K/stories260K-f16.gguf"), data_bytes("quant/k256-q4_k_m.gguf")],
            "safetensors" => vec![data_bytes("stories260K/hf/model.safetensors")],
            "hf_json" => vec![data_bytes("stories260K/hf/config.json"), SHARD_INDEX.to_vec()],
            "llama2c" => vec![data_bytes("stories260K/stories260K.bin")],
            "ckpt" => {
                vec![data_bytes("mindformers/stories260K.ckpt"), data_bytes("mindformers/stories260K-sliced16k.ckpt")]
            }
            "mindformers_yaml" => {
                vec![data_bytes("mindformers/stories260K.yaml"), data_bytes("mindformers/stories260K-qkvconcat.yaml")]
            }
            "tokenizer_file" => vec![
                data_bytes("stories260K/tok512.model"),
                data_bytes("stories260K/tok512.bin"),
                data_bytes("tokenizers/llama2/tokenizer.model"),
                data_bytes("tokenizers/llama3/tokenizer.model"),
                br#"{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"added_tokens":[]}"#.to_vec(),
            ],
            other => panic!("no seeds for fuzz target {other}"),
        }
    };
    let mut report = Vec::new();
    for &(name, target) in fuzz::TARGETS {
        let n = run(name, &target, &seeds(name));
        report.push(format!("{name} {n}"));
    }
    // Text to tokenize and ids to decode, with a LLaMA 2-style and a LLaMA 3 vocabulary.
    let texts = vec![
        "Hello world, once upon a time".as_bytes().to_vec(),
        "<s>[INST] hi [/INST]</s>\u{0}\u{feff}  \t\n日本語 🦀".as_bytes().to_vec(),
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>".as_bytes().to_vec(),
    ];
    for (name, file) in [
        ("text_llama2", data_bytes("stories260K/tok512.model")),
        ("text_llama3", data_bytes("tokenizers/llama3/tokenizer.model")),
    ] {
        let t = Tokenizer::from_file_bytes(&file, name).unwrap();
        let n = run(name, &|d: &[u8]| fuzz::text(&t, d), &texts);
        report.push(format!("{name} {n}"));
    }
    eprintln!("fuzz inputs run per target: {}", report.join(", "));
}

/// This file's hostile-input cases again under a 1 GiB address space (see
/// `common::passes_under_a_1_gib_address_space`).
#[cfg(target_os = "linux")]
#[test]
fn hostile_cases_pass_under_a_1_gib_address_space_limit() {
    common::passes_under_a_1_gib_address_space(&["every_parser_survives_its_fixtures_and_their_mutations", "--exact"]);
}
