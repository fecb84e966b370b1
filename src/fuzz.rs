//! Fuzz targets: one per parser, each taking arbitrary bytes. Every input must come back (an
//! error is the expected answer) without a panic, an abort, a hang or unbounded memory.
//! `tests/fuzz.rs` runs them over the fixtures and mutations of them in every test run; a
//! coverage-guided fuzzer can call the same functions.

use crate::tokenizer::Tokenizer;

/// A fuzz target: parse `data`, ignoring the result.
pub type Target = fn(&[u8]);

/// The targets by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("hf_json", hf_json),
    ("llama2c", llama2c),
    ("ckpt", ckpt),
    ("mindformers_yaml", mindformers_yaml),
    ("tokenizer_file", tokenizer_file),
];

/// A GGUF file: the header, then its embedded vocabulary as a tokenizer.
pub fn gguf(data: &[u8]) {
    if let Ok(f) = crate::formats::gguf::parse(data, "fuzz.gguf") {
        if let Ok(Some(v)) = f.vocab() {
            let _ = Tokenizer::from_gguf(v, "fuzz.gguf");
        }
        let _ = (f.get_u32("llama.block_count"), f.get_f32("llama.rope.freq_base"), f.architecture());
    }
}

/// A safetensors file's header.
pub fn safetensors(data: &[u8]) {
    let _ = crate::formats::safetensors::parse(data, "fuzz.safetensors", 0);
}

/// An HF JSON file beside safetensors shards: as `model.safetensors.index.json` and as
/// `config.json`.
pub fn hf_json(data: &[u8]) {
    let _ = crate::formats::safetensors::index_shards(data, "fuzz.index.json");
    let _ = crate::formats::hf_config::check(data);
}

/// A llama2.c `.bin` header and layout.
pub fn llama2c(data: &[u8]) {
    let _ = crate::formats::llama2c::parse(data, "fuzz.bin");
}

/// A MindSpore `.ckpt` (protobuf records, CRC trailer checked).
pub fn ckpt(data: &[u8]) {
    let _ = crate::formats::ckpt::parse(data, "fuzz.ckpt", true);
}

/// A MindFormers yaml config.
pub fn mindformers_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::formats::mindformers::parse_yaml(text, "fuzz.yaml");
    }
}

/// Any tokenizer file (`tokenizer.model` protobuf or tiktoken, `tokenizer.json`, llama2.c
/// `tokenizer.bin`); when it loads, the input also as text to tokenize and as ids to decode.
pub fn tokenizer_file(data: &[u8]) {
    if let Ok(t) = Tokenizer::from_file_bytes(data, "fuzz.tokenizer") {
        text(&t, data);
    }
}

/// `data` as text to tokenize (with and without special tokens) and as little-endian ids to
/// detokenize, with `t`.
pub fn text(t: &Tokenizer, data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    for (bos, special) in [(true, false), (false, true)] {
        if let Ok(ids) = t.encode(&s, bos, special) {
            let _ = t.decode(&ids, false);
        }
    }
    let n = t.n_vocab().max(1) as u32;
    let ids: Vec<u32> =
        data.chunks(2).map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32 % n).collect();
    let _ = t.decode_capped(&ids, true, 1 << 16);
    if let Some(&id) = ids.first() {
        let _ = t.token_to_piece(id);
    }
}
