//! Tests of the GGUF, safetensors and llama2.c parsers: the stories260K fixtures in every format,
//! cross-format byte identity, and malformed input (truncation, flipped bytes, huge counts,
//! misaligned or overlapping data, unsupported types, wrong magic or version) that must give an
//! error, never a panic.

mod common;

use runllama::error::{Error, Status};
use runllama::formats::{gguf, llama2c, safetensors};
use runllama::tensor::{DType, TensorInfo};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stories260K");

fn fixture(rel: &str) -> (Vec<u8>, String) {
    let path = format!("{DIR}/{rel}");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    (bytes, path)
}

const GGUF_F32: &str = "stories260K-f32.gguf";
const GGUF_F16: &str = "stories260K-f16.gguf";
const LEGACY_BIN: &str = "stories260K.bin";
const ST_F32: &str = "hf/model.safetensors";
const ST_F16: &str = "hf/fp16/model.safetensors";
const ST_BF16: &str = "hf/bf16/model.safetensors";

fn expect_err<T: std::fmt::Debug>(r: runllama::error::Result<T>, status: Status, needles: &[&str]) -> Error {
    let e = match r {
        Ok(v) => panic!("expected {status:?} error containing {needles:?}, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(e.status, status, "wrong status for error: {e}");
    for n in needles {
        assert!(e.message.contains(n), "error message {:?} lacks {n:?}", e.message);
    }
    e
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Every tensor of an Ok parse lies inside the file.
fn assert_in_bounds(tensors: &[TensorInfo], len: usize) {
    for t in tensors {
        assert!(t.offset + t.nbytes <= len, "{t:?} outside {len} bytes");
        assert_eq!(t.nbytes, t.n_elements() * t.dtype.size());
    }
}

fn bytes_of<'a>(file: &'a [u8], t: &TensorInfo) -> &'a [u8] {
    &file[t.offset..t.offset + t.nbytes]
}

// ---------------------------------------------------------------------------------------------
// GGUF fixtures

/// Byte position of the tensor description of `name` in a GGUF (its name-length field).
fn gguf_tensor_info_pos(b: &[u8], name: &str) -> usize {
    let mut pat = (name.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(name.as_bytes());
    // Tensor descriptions come after the metadata; the name may also occur as a string value,
    // so take the last occurrence followed by a plausible n_dims.
    let mut pos = None;
    let mut start = 0;
    while let Some(p) = find(&b[start..], &pat) {
        let at = start + p;
        let nd = get_u32(b, at + pat.len());
        if (1..=4).contains(&nd) {
            pos = Some(at);
        }
        start = at + 1;
    }
    pos.expect("tensor description not found")
}

/// (type field position, offset field position) of a tensor description.
fn gguf_tensor_fields(b: &[u8], name: &str) -> (usize, usize) {
    let at = gguf_tensor_info_pos(b, name);
    let nd_at = at + 8 + name.len();
    let nd = get_u32(b, nd_at) as usize;
    let ty_at = nd_at + 4 + 8 * nd;
    (ty_at, ty_at + 4)
}

fn layer_names_gguf() -> Vec<String> {
    let mut v = vec!["token_embd.weight".to_string()];
    for i in 0..5 {
        for t in
            ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"]
        {
            v.push(format!("blk.{i}.{t}.weight"));
        }
    }
    v.push("output_norm.weight".to_string());
    v
}

#[test]
fn gguf_f32_fixture() {
    let (b, path) = fixture(GGUF_F32);
    assert!(gguf::is_gguf(&b));
    let g = gguf::parse(&b, &path).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.tensors.len(), 47);
    let mut names: Vec<_> = g.tensors.iter().map(|t| t.name.clone()).collect();
    names.sort();
    let mut want = layer_names_gguf();
    want.sort();
    assert_eq!(names, want);
    for t in &g.tensors {
        assert_eq!(t.dtype, DType::F32, "{}", t.name);
        assert_eq!(t.file, 0);
        assert_eq!(t.offset % 32, 0, "{} misaligned", t.name);
    }
    assert_in_bounds(&g.tensors, b.len());
    let shape = |n: &str| g.tensor(n).unwrap().shape.clone();
    assert_eq!(shape("token_embd.weight"), vec![512, 64]);
    assert_eq!(shape("blk.0.attn_k.weight"), vec![32, 64]);
    assert_eq!(shape("blk.4.attn_v.weight"), vec![32, 64]);
    assert_eq!(shape("blk.0.attn_q.weight"), vec![64, 64]);
    assert_eq!(shape("blk.2.ffn_gate.weight"), vec![172, 64]);
    assert_eq!(shape("blk.2.ffn_up.weight"), vec![172, 64]);
    assert_eq!(shape("blk.2.ffn_down.weight"), vec![64, 172]);
    assert_eq!(shape("blk.3.attn_norm.weight"), vec![64]);
    assert_eq!(shape("output_norm.weight"), vec![64]);
    assert!(g.tensor("output.weight").is_none());

    assert_eq!(g.architecture().unwrap(), Some("llama"));
    assert_eq!(g.get_u32("llama.block_count").unwrap(), Some(5));
    assert_eq!(g.get_u32("llama.embedding_length").unwrap(), Some(64));
    assert_eq!(g.get_u32("llama.feed_forward_length").unwrap(), Some(172));
    assert_eq!(g.get_u32("llama.attention.head_count").unwrap(), Some(8));
    assert_eq!(g.get_u32("llama.attention.head_count_kv").unwrap(), Some(4));
    assert_eq!(g.get_u32("llama.context_length").unwrap(), Some(512));
    assert_eq!(g.get_usize("llama.rope.dimension_count").unwrap(), Some(8));
    assert_eq!(g.get_u64("general.file_type").unwrap(), Some(0));
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), Some(10000.0));
    let eps = g.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap().unwrap();
    assert!((eps - 1e-5).abs() < 1e-9);
    assert_eq!(g.get_u32("no.such.key").unwrap(), None);
    // Type errors name the key.
    expect_err(g.get_u32("general.architecture"), Status::Format, &["general.architecture", "string"]);
    expect_err(g.get_str("llama.block_count"), Status::Format, &["llama.block_count"]);
    expect_err(g.get_f32("general.architecture"), Status::Format, &["general.architecture"]);

    let v = g.vocab().unwrap().expect("vocab");
    assert_eq!(v.model, "llama");
    assert_eq!(v.tokens.len(), 512);
    assert_eq!(v.tokens[0], "<unk>");
    assert_eq!(v.tokens[1], "<s>");
    assert_eq!(v.tokens[2], "</s>");
    assert_eq!(v.tokens[3], "<0x00>");
    assert_eq!(v.scores.as_ref().unwrap().len(), 512);
    let tt = v.token_types.as_ref().unwrap();
    assert_eq!(tt.len(), 512);
    assert_eq!((tt[0], tt[1], tt[2], tt[3], tt[300]), (2, 3, 3, 6, 1));
    assert_eq!(v.bos, Some(1));
    assert_eq!(v.eos, Some(2));
    assert_eq!(v.unk, Some(0));
    assert_eq!(v.add_bos, Some(true));
    assert!(v.merges.is_none());
}

#[test]
fn gguf_f16_fixture() {
    let (b, path) = fixture(GGUF_F16);
    let g = gguf::parse(&b, &path).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.tensors.len(), 47);
    assert_in_bounds(&g.tensors, b.len());
    assert_eq!(g.get_u32("general.file_type").unwrap(), Some(1));
    for t in &g.tensors {
        let want = if t.shape.len() == 2 { DType::F16 } else { DType::F32 };
        assert_eq!(t.dtype, want, "{}", t.name);
    }
    assert_eq!(g.tensor("blk.1.attn_k.weight").unwrap().shape, vec![32, 64]);
    let v = g.vocab().unwrap().unwrap();
    assert_eq!((v.tokens.len(), v.bos, v.eos), (512, Some(1), Some(2)));

    // F16 values round the F32 GGUF's values.
    let (b32, p32) = fixture(GGUF_F32);
    let g32 = gguf::parse(&b32, &p32).unwrap();
    for t in g.tensors.iter().filter(|t| t.dtype == DType::F16) {
        let t32 = g32.tensor(&t.name).unwrap();
        assert_eq!(t32.shape, t.shape);
        let a = bytes_of(&b, t);
        let c = bytes_of(&b32, t32);
        for (h, f) in a.chunks_exact(2).zip(c.chunks_exact(4)) {
            let h = half::f16::from_le_bytes([h[0], h[1]]);
            let f = f32::from_le_bytes([f[0], f[1], f[2], f[3]]);
            assert_eq!(h, half::f16::from_f32(f), "{}", t.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// llama2.c fixture

fn meta_names() -> Vec<String> {
    let mut v = vec!["tok_embeddings.weight".to_string()];
    for i in 0..5 {
        for t in [
            "attention_norm",
            "attention.wq",
            "attention.wk",
            "attention.wv",
            "attention.wo",
            "ffn_norm",
            "feed_forward.w1",
            "feed_forward.w2",
            "feed_forward.w3",
        ] {
            v.push(format!("layers.{i}.{t}.weight"));
        }
    }
    v.push("norm.weight".to_string());
    v
}

fn find_t<'a>(ts: &'a [TensorInfo], name: &str) -> &'a TensorInfo {
    ts.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
}

#[test]
fn llama2c_legacy_fixture() {
    let (b, path) = fixture(LEGACY_BIN);
    assert!(llama2c::is_llama2c(&b));
    assert!(llama2c::is_llama2c_header(&b[..28], b.len() as u64));
    assert!(!llama2c::is_llama2c_header(&b[..28], b.len() as u64 - 4));
    let (cfg, ts) = llama2c::parse(&b, &path).unwrap();
    assert_eq!(
        cfg,
        llama2c::Llama2cConfig {
            dim: 64,
            hidden_dim: 172,
            n_layers: 5,
            n_heads: 8,
            n_kv_heads: 4,
            vocab_size: 512,
            seq_len: 512,
            shared_classifier: true,
            version: 0,
        }
    );
    assert_eq!(llama2c::expected_size(&cfg), Some(b.len()));
    assert_eq!(ts.len(), 47);
    let mut names: Vec<_> = ts.iter().map(|t| t.name.clone()).collect();
    names.sort();
    let mut want = meta_names();
    want.sort();
    assert_eq!(names, want);
    assert!(ts.iter().all(|t| t.dtype == DType::F32 && t.file == 0));
    assert_in_bounds(&ts, b.len());
    assert_eq!(find_t(&ts, "tok_embeddings.weight").offset, 28);
    assert_eq!(find_t(&ts, "tok_embeddings.weight").shape, vec![512, 64]);
    assert_eq!(find_t(&ts, "layers.0.attention_norm.weight").offset, 28 + 512 * 64 * 4);
    assert_eq!(find_t(&ts, "layers.1.attention_norm.weight").offset, 28 + 512 * 64 * 4 + 64 * 4);
    assert_eq!(find_t(&ts, "layers.0.attention.wk.weight").shape, vec![32, 64]);
    assert_eq!(find_t(&ts, "layers.0.attention.wq.weight").shape, vec![64, 64]);
    assert_eq!(find_t(&ts, "layers.4.feed_forward.w1.weight").shape, vec![172, 64]);
    assert_eq!(find_t(&ts, "layers.4.feed_forward.w2.weight").shape, vec![64, 172]);
    let norm = find_t(&ts, "norm.weight");
    // Then two [512, 4] F32 RoPE tables end the file.
    assert_eq!(norm.offset + norm.nbytes + 2 * 512 * 4 * 4, b.len());
    // Contiguous, in file order.
    for w in ts.windows(2) {
        assert_eq!(w[0].offset + w[0].nbytes, w[1].offset, "{} -> {}", w[0].name, w[1].name);
    }
}

/// GGUF name of a Meta tensor name.
fn meta_to_gguf(meta: &str) -> String {
    let map = [
        ("tok_embeddings", "token_embd"),
        ("attention_norm", "attn_norm"),
        ("attention.wq", "attn_q"),
        ("attention.wk", "attn_k"),
        ("attention.wv", "attn_v"),
        ("attention.wo", "attn_output"),
        ("ffn_norm", "ffn_norm"),
        ("feed_forward.w1", "ffn_gate"),
        ("feed_forward.w2", "ffn_down"),
        ("feed_forward.w3", "ffn_up"),
        ("norm", "output_norm"),
    ];
    let (layer, rest) = match meta.strip_prefix("layers.") {
        Some(r) => {
            let (i, r) = r.split_once('.').unwrap();
            (Some(i), r)
        }
        None => (None, meta),
    };
    let base = rest.strip_suffix(".weight").unwrap();
    let g = map.iter().find(|(m, _)| *m == base).unwrap().1;
    match layer {
        Some(i) => format!("blk.{i}.{g}.weight"),
        None => format!("{g}.weight"),
    }
}

fn meta_to_hf(meta: &str) -> String {
    let map = [
        ("attention_norm", "input_layernorm"),
        ("attention.wq", "self_attn.q_proj"),
        ("attention.wk", "self_attn.k_proj"),
        ("attention.wv", "self_attn.v_proj"),
        ("attention.wo", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("feed_forward.w1", "mlp.gate_proj"),
        ("feed_forward.w2", "mlp.down_proj"),
        ("feed_forward.w3", "mlp.up_proj"),
    ];
    match meta {
        "tok_embeddings.weight" => "model.embed_tokens.weight".into(),
        "norm.weight" => "model.norm.weight".into(),
        _ => {
            let r = meta.strip_prefix("layers.").unwrap();
            let (i, r) = r.split_once('.').unwrap();
            let base = r.strip_suffix(".weight").unwrap();
            let h = map.iter().find(|(m, _)| *m == base).unwrap().1;
            format!("model.layers.{i}.{h}.weight")
        }
    }
}

/// The offsets are right: the same weights in three formats have identical bytes (HF q/k rows
/// are permuted, so only their shapes are compared).
#[test]
fn cross_format_bytes_identical() {
    let (bin, bp) = fixture(LEGACY_BIN);
    let (_, lt) = llama2c::parse(&bin, &bp).unwrap();
    let (gb, gp) = fixture(GGUF_F32);
    let g = gguf::parse(&gb, &gp).unwrap();
    let (sb, sp) = fixture(ST_F32);
    let s = safetensors::parse(&sb, &sp, 0).unwrap();
    for t in &lt {
        let gt = g.tensor(&meta_to_gguf(&t.name)).unwrap();
        assert_eq!(gt.shape, t.shape, "{}", t.name);
        assert_eq!(bytes_of(&gb, gt), bytes_of(&bin, t), "GGUF {} differs", gt.name);
        let st = s.tensor(&meta_to_hf(&t.name)).unwrap();
        assert_eq!(st.shape, t.shape, "{}", t.name);
        if !t.name.contains(".wq.") && !t.name.contains(".wk.") {
            assert_eq!(bytes_of(&sb, st), bytes_of(&bin, t), "safetensors {} differs", st.name);
        }
    }
}

/// A version-1 checkpoint built from the legacy one by reordering (export.py `version1_export`).
fn make_v1(bin: &[u8], lt: &[TensorInfo], shared: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0x616b_3432u32.to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&bin[..28]);
    out.push(shared as u8);
    out.resize(256, 0);
    let layers = |what: &'static str| (0..5).map(move |i| format!("layers.{i}.{what}.weight"));
    let mut order: Vec<String> = Vec::new();
    order.extend(layers("attention_norm"));
    order.extend(layers("ffn_norm"));
    order.push("norm.weight".into());
    order.push("tok_embeddings.weight".into());
    for w in ["attention.wq", "attention.wk", "attention.wv", "attention.wo"] {
        order.extend(layers(w));
    }
    for w in ["feed_forward.w1", "feed_forward.w2", "feed_forward.w3"] {
        order.extend(layers(w));
    }
    for n in &order {
        out.extend_from_slice(bytes_of(bin, find_t(lt, n)));
    }
    if !shared {
        // A distinct classifier: the embedding with every byte's low bit flipped.
        let emb = bytes_of(bin, find_t(lt, "tok_embeddings.weight"));
        out.extend(emb.iter().map(|x| x ^ 1));
    }
    out
}

#[test]
fn llama2c_version1_matches_legacy() {
    let (bin, bp) = fixture(LEGACY_BIN);
    let (cfg0, lt) = llama2c::parse(&bin, &bp).unwrap();
    for shared in [true, false] {
        let v1 = make_v1(&bin, &lt, shared);
        assert!(llama2c::is_llama2c(&v1));
        let (cfg, ts) = llama2c::parse(&v1, "v1.bin").unwrap();
        assert_eq!(cfg.version, 1);
        assert_eq!(cfg.shared_classifier, shared);
        assert_eq!(
            (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size, cfg.seq_len),
            (cfg0.dim, cfg0.hidden_dim, cfg0.n_layers, cfg0.n_heads, cfg0.n_kv_heads, cfg0.vocab_size, cfg0.seq_len)
        );
        assert_eq!(llama2c::expected_size(&cfg), Some(v1.len()));
        assert_eq!(ts.len(), if shared { 47 } else { 48 });
        assert_in_bounds(&ts, v1.len());
        assert_eq!(ts[0].offset, 256);
        for t in &lt {
            let t1 = find_t(&ts, &t.name);
            assert_eq!(t1.shape, t.shape);
            assert_eq!(bytes_of(&v1, t1), bytes_of(&bin, t), "{}", t.name);
        }
        if !shared {
            let o = find_t(&ts, "output.weight");
            assert_eq!(o.shape, vec![512, 64]);
            assert_eq!(o.offset + o.nbytes, v1.len());
        } else {
            assert!(ts.iter().all(|t| t.name != "output.weight"));
        }
        // Truncated by one byte.
        expect_err(llama2c::parse(&v1[..v1.len() - 1], "v1.bin"), Status::Format, &["v1.bin", "truncated"]);
    }
}

#[test]
fn llama2c_legacy_separate_classifier() {
    let (bin, _) = fixture(LEGACY_BIN);
    let mut b = bin.clone();
    put_u32(&mut b, 20, (-512i32) as u32);
    b.extend(std::iter::repeat_n(7u8, 512 * 64 * 4));
    assert!(llama2c::is_llama2c(&b));
    let (cfg, ts) = llama2c::parse(&b, "sep.bin").unwrap();
    assert!(!cfg.shared_classifier);
    assert_eq!(cfg.vocab_size, 512);
    let o = find_t(&ts, "output.weight");
    assert_eq!((o.offset, o.nbytes, o.shape.clone()), (bin.len(), 512 * 64 * 4, vec![512, 64]));
    // Without the classifier bytes the file is too short.
    expect_err(llama2c::parse(&b[..bin.len()], "sep.bin"), Status::Format, &["sep.bin", "output.weight"]);
    assert!(!llama2c::is_llama2c(&b[..bin.len()]));
}

#[test]
fn llama2c_versions_and_bad_headers() {
    let (bin, bp) = fixture(LEGACY_BIN);
    let (_, lt) = llama2c::parse(&bin, &bp).unwrap();
    let mut v = make_v1(&bin, &lt, true);
    put_u32(&mut v, 4, 2);
    assert!(llama2c::is_llama2c(&v));
    expect_err(llama2c::parse(&v, "q8.bin"), Status::Unsupported, &["q8.bin", "Q8_0"]);
    put_u32(&mut v, 4, 9);
    expect_err(llama2c::parse(&v, "v9.bin"), Status::Unsupported, &["v9.bin", "9"]);
    put_u32(&mut v, 4, 0);
    expect_err(llama2c::parse(&v, "v0.bin"), Status::Format, &["v0.bin"]);
    put_u32(&mut v, 4, 1);
    v[36] = 5;
    expect_err(llama2c::parse(&v, "flag.bin"), Status::Format, &["flag.bin", "36"]);
    v[36] = 1;
    put_u32(&mut v, 8 + 20, (-512i32) as u32);
    expect_err(llama2c::parse(&v, "neg.bin"), Status::Format, &["neg.bin", "vocab_size"]);
    expect_err(llama2c::parse(&v[..100], "short.bin"), Status::Format, &["short.bin", "256"]);
    expect_err(llama2c::parse(&v[..6], "short.bin"), Status::Format, &["short.bin"]);

    // Legacy header checks, each naming the field.
    let cases: [(usize, i32, &str); 8] = [
        (0, 0, "dim"),
        (0, -64, "dim"),
        (4, 0, "hidden_dim"),
        (8, -1, "n_layers"),
        (12, 7, "n_heads"),     // 8 % ... 4 kv heads don't divide 7
        (16, 3, "n_kv_heads"),  // 3 doesn't divide 8
        (16, 16, "n_kv_heads"), // more kv heads than heads
        (24, 0, "seq_len"),
    ];
    for (at, val, field) in cases {
        let mut b = bin.clone();
        put_u32(&mut b, at, val as u32);
        assert!(!llama2c::is_llama2c(&b), "{field}={val}");
        expect_err(llama2c::parse(&b, "bad.bin"), Status::Format, &["bad.bin", field]);
    }
    // dim not a multiple of n_heads; odd head size.
    let mut b = bin.clone();
    put_u32(&mut b, 0, 60);
    expect_err(llama2c::parse(&b, "bad.bin"), Status::Format, &["bad.bin", "dim"]);
    put_u32(&mut b, 0, 72);
    expect_err(llama2c::parse(&b, "bad.bin"), Status::Format, &["bad.bin", "odd head size"]);
    // vocab_size 0.
    let mut b = bin.clone();
    put_u32(&mut b, 20, 0);
    expect_err(llama2c::parse(&b, "bad.bin"), Status::Format, &["bad.bin", "vocab_size"]);
    // i32::MIN vocab.
    put_u32(&mut b, 20, i32::MIN as u32);
    let e = llama2c::parse(&b, "bad.bin").unwrap_err();
    assert_eq!(e.status, Status::Format);
}

#[test]
fn llama2c_huge_header_values() {
    let (bin, _) = fixture(LEGACY_BIN);
    for (at, val) in [(0usize, 1 << 30), (4, i32::MAX), (8, i32::MAX), (20, i32::MAX), (20, -i32::MAX), (24, i32::MAX)]
    {
        let mut b = bin.clone();
        put_u32(&mut b, at, val as u32);
        assert!(!llama2c::is_llama2c(&b));
        let e = llama2c::parse(&b, "huge.bin").unwrap_err();
        assert_eq!(e.status, Status::Format, "{e}");
        assert!(e.message.contains("huge.bin"), "{e}");
    }
    // All maximal: the size overflows or exceeds the file; either way Format.
    let mut b = bin.clone();
    for i in 0..7 {
        put_u32(&mut b, 4 * i, 1 << 30);
    }
    let e = llama2c::parse(&b, "huge.bin").unwrap_err();
    assert_eq!(e.status, Status::Format, "{e}");
    // Many layers: error without building a huge layout.
    let mut b = bin.clone();
    put_u32(&mut b, 8, i32::MAX as u32);
    let e = llama2c::parse(&b, "huge.bin").unwrap_err();
    assert_eq!(e.status, Status::Format, "{e}");
    assert!(e.message.contains("expected") || e.message.contains("implies"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// safetensors fixtures

fn hf_names() -> Vec<String> {
    let mut v = vec!["model.embed_tokens.weight".to_string(), "model.norm.weight".to_string()];
    for i in 0..5 {
        for t in [
            "input_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "post_attention_layernorm",
            "mlp.gate_proj",
            "mlp.down_proj",
            "mlp.up_proj",
        ] {
            v.push(format!("model.layers.{i}.{t}.weight"));
        }
    }
    v.sort();
    v
}

#[test]
fn safetensors_fixtures() {
    for (rel, dtype) in [(ST_F32, DType::F32), (ST_F16, DType::F16), (ST_BF16, DType::BF16)] {
        let (b, path) = fixture(rel);
        assert!(safetensors::is_safetensors(&b), "{rel}");
        let s = safetensors::parse(&b, &path, 3).unwrap();
        assert_eq!(s.tensors.len(), 47, "{rel}");
        let mut names: Vec<_> = s.tensors.iter().map(|t| t.name.clone()).collect();
        names.sort();
        assert_eq!(names, hf_names());
        let n = get_u64(&b, 0) as usize;
        assert_eq!(s.tensors[0].offset, 8 + n);
        for w in s.tensors.windows(2) {
            assert_eq!(w[0].offset + w[0].nbytes, w[1].offset, "{rel}: sorted and contiguous");
        }
        let last = s.tensors.last().unwrap();
        assert_eq!(last.offset + last.nbytes, b.len());
        for t in &s.tensors {
            assert_eq!(t.dtype, dtype);
            assert_eq!(t.file, 3);
        }
        assert_in_bounds(&s.tensors, b.len());
        let t = s.tensor("model.layers.0.self_attn.k_proj.weight").unwrap();
        assert_eq!(t.shape, vec![32, 64]);
        assert_eq!(s.tensor("model.embed_tokens.weight").unwrap().shape, vec![512, 64]);
        assert_eq!(s.tensor("model.layers.3.mlp.down_proj.weight").unwrap().shape, vec![64, 172]);
        assert_eq!(s.tensor("model.norm.weight").unwrap().shape, vec![64]);
        assert!(s.tensor("lm_head.weight").is_none());
    }
}

#[test]
fn format_detection() {
    let files =
        [GGUF_F32, GGUF_F16, LEGACY_BIN, ST_F32, ST_F16, ST_BF16, "tok512.bin", "tok512.model", "hf/config.json"];
    for rel in files {
        let (b, _) = fixture(rel);
        let is_g = rel.ends_with(".gguf");
        let is_s = rel.ends_with(".safetensors");
        let is_l = rel == LEGACY_BIN;
        assert_eq!(gguf::is_gguf(&b), is_g, "{rel}");
        assert_eq!(safetensors::is_safetensors(&b), is_s, "{rel}");
        assert_eq!(llama2c::is_llama2c(&b), is_l, "{rel}");
    }
    assert!(!gguf::is_gguf(b"GGU"));
    assert!(!safetensors::is_safetensors(b"\x02\0\0\0\0\0\0\0{"));
    assert!(!llama2c::is_llama2c(&[]));
    assert!(llama2c::is_llama2c(b"24ka\x01\0\0\0"));
}

// ---------------------------------------------------------------------------------------------
// Truncation and corruption of every fixture

/// Prefix lengths: every byte through `dense`, then a stride through `header_end`, then some
/// lengths in the data, all below `must_fail_below`.
fn prefix_lengths(dense: usize, header_end: usize, must_fail_below: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..dense.min(must_fail_below)).collect();
    v.extend((dense..header_end.min(must_fail_below)).step_by(7));
    let n = must_fail_below;
    v.extend(
        [header_end, header_end + 1, n / 3, n / 2, n.saturating_sub(4096), n.saturating_sub(33), n - 4, n - 1]
            .into_iter()
            .filter(|&x| x < n),
    );
    v
}

#[test]
fn gguf_truncation() {
    for rel in [GGUF_F32, GGUF_F16] {
        let (b, path) = fixture(rel);
        let g = gguf::parse(&b, &path).unwrap();
        let data_start = g.tensors.iter().map(|t| t.offset).min().unwrap();
        let data_end = g.tensors.iter().map(|t| t.offset + t.nbytes).max().unwrap();
        for n in prefix_lengths(4096, data_start, data_end) {
            let e = expect_err(gguf::parse(&b[..n], &path), Status::Format, &[&path]);
            if n < data_start.saturating_sub(64) {
                assert!(e.message.contains("byte offset"), "{e}");
            }
        }
        // Past the last tensor's data: fine.
        assert!(gguf::parse(&b[..data_end], &path).is_ok());
    }
    // A truncated tensor is named.
    let (b, path) = fixture(GGUF_F32);
    let g = gguf::parse(&b, &path).unwrap();
    let last = g.tensors.iter().max_by_key(|t| t.offset).unwrap();
    expect_err(gguf::parse(&b[..last.offset + 5], &path), Status::Format, &[&path, &last.name, "past the end"]);
}

#[test]
fn safetensors_truncation() {
    for rel in [ST_F32, ST_F16, ST_BF16] {
        let (b, path) = fixture(rel);
        let header_end = 8 + get_u64(&b, 0) as usize;
        for n in prefix_lengths(header_end.min(2048), header_end, b.len()) {
            expect_err(safetensors::parse(&b[..n], &path, 0), Status::Format, &[&path]);
        }
    }
    let (b, path) = fixture(ST_F32);
    let s = safetensors::parse(&b, &path, 0).unwrap();
    let last = s.tensors.last().unwrap();
    expect_err(safetensors::parse(&b[..b.len() - 1], &path, 0), Status::Format, &[&path, &last.name]);
}

#[test]
fn llama2c_truncation() {
    let (b, path) = fixture(LEGACY_BIN);
    for n in prefix_lengths(64, 28, b.len()).into_iter().chain((64..b.len()).step_by(997)) {
        expect_err(llama2c::parse(&b[..n], &path), Status::Format, &[&path]);
        assert!(!llama2c::is_llama2c(&b[..n]));
    }
    expect_err(llama2c::parse(&b[..1_000_000], &path), Status::Format, &[&path, "layers.", "1000000"]);
    // The RoPE tables are required too.
    expect_err(llama2c::parse(&b[..b.len() - 4], &path), Status::Format, &[&path, "RoPE"]);
}

/// Flip bytes all over the headers: never a panic; any Ok result lies inside the file.
#[test]
fn flipped_header_bytes() {
    for rel in [GGUF_F32, GGUF_F16] {
        let (b, path) = fixture(rel);
        let g = gguf::parse(&b, &path).unwrap();
        let data_start = g.tensors.iter().map(|t| t.offset).min().unwrap();
        let positions = (0..512).chain((512..data_start).step_by(5));
        let mut errors = 0;
        let mut m = b.clone();
        for at in positions {
            for mask in [0xFFu8, 0x01, 0x80, 0x10] {
                m[at] ^= mask;
                match gguf::parse(&m, &path) {
                    Ok(g) => {
                        assert_in_bounds(&g.tensors, m.len());
                        let _ = g.vocab();
                    }
                    Err(e) => {
                        errors += 1;
                        assert!(matches!(e.status, Status::Format | Status::Unsupported), "{e}");
                        assert!(e.message.contains(&path), "{e}");
                    }
                }
                m[at] ^= mask;
            }
        }
        assert!(errors > 100, "{errors}");
    }
    for rel in [ST_F32, ST_BF16] {
        let (b, path) = fixture(rel);
        let header_end = 8 + get_u64(&b, 0) as usize;
        let mut m = b.clone();
        for at in 0..header_end {
            for mask in [0xFFu8, 0x01, 0x20] {
                m[at] ^= mask;
                match safetensors::parse(&m, &path, 0) {
                    Ok(s) => assert_in_bounds(&s.tensors, m.len()),
                    Err(e) => {
                        assert!(matches!(e.status, Status::Format | Status::Unsupported), "{e}");
                        assert!(e.message.contains(&path), "{e}");
                    }
                }
                m[at] ^= mask;
            }
        }
    }
    let (b, path) = fixture(LEGACY_BIN);
    let mut m = b.clone();
    for at in 0..28 {
        for mask in [0xFFu8, 0x01, 0x80, 0x40, 0x02] {
            m[at] ^= mask;
            if let Ok((_, ts)) = llama2c::parse(&m, &path) {
                assert_in_bounds(&ts, m.len());
            }
            let _ = llama2c::is_llama2c(&m);
            m[at] ^= mask;
        }
    }
}

#[test]
fn gguf_wrong_magic_and_versions() {
    let (b, path) = fixture(GGUF_F32);
    let mut m = b.clone();
    m[0] = b'X';
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, "magic"]);
    for (v, status) in
        [(1u32, Status::Unsupported), (4, Status::Unsupported), (0, Status::Format), (0x0300_0000, Status::Unsupported)]
    {
        let mut m = b.clone();
        put_u32(&mut m, 4, v);
        let e = expect_err(gguf::parse(&m, &path), status, &[&path]);
        if v == 1 {
            assert!(e.message.contains("version 1"), "{e}");
        }
    }
    // Version 2 has the same layout.
    let mut m = b.clone();
    put_u32(&mut m, 4, 2);
    assert_eq!(gguf::parse(&m, &path).unwrap().version, 2);
}

#[test]
fn gguf_huge_counts() {
    let (b, path) = fixture(GGUF_F32);
    let huge = 1u64 << 60;
    for (at, what) in [(8usize, "tensor count"), (16, "metadata count")] {
        let mut m = b.clone();
        put_u64(&mut m, at, huge);
        expect_err(gguf::parse(&m, &path), Status::Format, &[&path, what, &at.to_string()]);
        put_u64(&mut m, at, u64::MAX);
        expect_err(gguf::parse(&m, &path), Status::Format, &[&path, what]);
    }
    // The largest counts the file size allows: still an error, without reserving memory for them.
    let left = (b.len() - 24) as u64;
    for (at, v) in [(8usize, left / 32), (16, left / 13)] {
        let mut m = b.clone();
        put_u64(&mut m, at, v);
        expect_err(gguf::parse(&m, &path), Status::Format, &[&path]);
    }
    // A uint8 array as long as the rest of the file: parsed item by item, then the tensor
    // descriptions are missing.
    let f = build_gguf(
        3,
        &[(
            "blob",
            V::Raw(9, [0u32.to_le_bytes().to_vec(), 1_000_000u64.to_le_bytes().to_vec(), vec![0; 1_000_000]].concat()),
        )],
        &[],
        32,
        0,
    );
    let g = gguf::parse(&f, "blob.gguf").unwrap();
    assert!(matches!(g.get("blob"), Some(gguf::GgufValue::Array(a)) if a.len() == 1_000_000));
    let mut m = f.clone();
    put_u64(&mut m, 8, 1000); // tensor count
    expect_err(gguf::parse(&m, "blob.gguf"), Status::Format, &["blob.gguf"]);
    // The first key's length.
    let mut m = b.clone();
    put_u64(&mut m, 24, huge);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, "24"]);
    // The token array's length.
    let key = b"tokenizer.ggml.tokens";
    let at = find(&b, key).unwrap() + key.len();
    assert_eq!(get_u32(&b, at), 9); // array
    assert_eq!(get_u32(&b, at + 4), 8); // of strings
    assert_eq!(get_u64(&b, at + 8), 512);
    let mut m = b.clone();
    put_u64(&mut m, at + 8, huge);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, "tokenizer.ggml.tokens", &(at + 8).to_string()]);
    // One token string's length.
    let mut m = b.clone();
    put_u64(&mut m, at + 16, huge);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, "tokenizer.ggml.tokens"]);
    // A dimension: the shape overflows or the data ends past the file.
    let name = "blk.0.attn_k.weight";
    let dims_at = gguf_tensor_info_pos(&b, name) + 8 + name.len() + 4;
    for v in [huge, u64::MAX, 1 << 40] {
        let mut m = b.clone();
        put_u64(&mut m, dims_at, v);
        expect_err(gguf::parse(&m, &path), Status::Format, &[&path, name]);
    }
    // n_dims.
    let mut m = b.clone();
    put_u32(&mut m, dims_at - 4, 5);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, name, "n_dims"]);
    put_u32(&mut m, dims_at - 4, u32::MAX);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, name]);
    put_u32(&mut m, dims_at - 4, 0);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, name]);
}

#[test]
fn gguf_misaligned_out_of_range_and_overlapping_offsets() {
    let (b, path) = fixture(GGUF_F32);
    let name = "blk.0.attn_k.weight";
    let (_, off_at) = gguf_tensor_fields(&b, name);
    let off = get_u64(&b, off_at);
    for delta in [1u64, 4, 16] {
        let mut m = b.clone();
        put_u64(&mut m, off_at, off + delta);
        expect_err(
            gguf::parse(&m, &path),
            Status::Format,
            &[&path, name, "not a multiple of the alignment 32", &off_at.to_string()],
        );
    }
    let mut m = b.clone();
    put_u64(&mut m, off_at, 1 << 40);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, name, "past the end"]);
    let mut m = b.clone();
    put_u64(&mut m, off_at, u64::MAX - 31);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, name]);
    // Point attn_k at attn_q's bytes.
    let (_, q_off_at) = gguf_tensor_fields(&b, "blk.0.attn_q.weight");
    let mut m = b.clone();
    put_u64(&mut m, off_at, get_u64(&b, q_off_at));
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, name, "blk.0.attn_q.weight", "overlaps"]);
}

#[test]
fn gguf_unsupported_tensor_type() {
    let (b, path) = fixture(GGUF_F32);
    let name = "blk.2.ffn_up.weight";
    let (ty_at, _) = gguf_tensor_fields(&b, name);
    assert_eq!(get_u32(&b, ty_at), 0);
    for (t, tname) in [(16u32, "IQ2_XXS"), (39, "MXFP4"), (28, "F64"), (1000, "1000")] {
        let mut m = b.clone();
        put_u32(&mut m, ty_at, t);
        expect_err(gguf::parse(&m, &path), Status::Unsupported, &[&path, name, tname]);
    }
    // BF16, Q8_0 and Q4_0 are supported: the tensor's size follows its type's blocks.
    for (t, dtype, nbytes) in
        [(30u32, DType::BF16, 172 * 64 * 2), (8, DType::Q8_0, 172 * 2 * 34), (2, DType::Q4_0, 172 * 2 * 18)]
    {
        let mut m = b.clone();
        put_u32(&mut m, ty_at, t);
        let g = gguf::parse(&m, &path).unwrap();
        let t = g.tensor(name).unwrap();
        assert_eq!((t.dtype, t.nbytes), (dtype, nbytes));
    }
    // A block type whose rows are not whole blocks (ffn_down's rows hold 172 values): FORMAT.
    let down = "blk.2.ffn_down.weight";
    let (ty_at, _) = gguf_tensor_fields(&b, down);
    let mut m = b.clone();
    put_u32(&mut m, ty_at, 8);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, down, "whole blocks of Q8_0 (32 elements)"]);
    // A K-quant needs rows of whole 256-value super-blocks (this model's rows hold 64).
    let (ty_at, _) = gguf_tensor_fields(&b, name);
    let mut m = b.clone();
    put_u32(&mut m, ty_at, 14);
    expect_err(gguf::parse(&m, &path), Status::Format, &[&path, name, "whole blocks of Q6_K (256 elements)"]);
}

// ---------------------------------------------------------------------------------------------
// Synthetic GGUF files

/// Serialized GGUF value: type tag + payload.
enum V<'a> {
    U32(u32),
    I32(i32),
    U8(u8),
    F32(f32),
    Bool(u8),
    Str(&'a [u8]),
    ArrStr(&'a [&'a str]),
    ArrF32(&'a [f32]),
    ArrI32(&'a [i32]),
    ArrU32(&'a [u32]),
    Raw(u32, Vec<u8>),
}

fn gstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn gval(out: &mut Vec<u8>, v: &V) {
    let arr = |out: &mut Vec<u8>, t: u32, n: usize| {
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
    };
    match v {
        V::U32(x) => {
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        V::I32(x) => {
            out.extend_from_slice(&5u32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        V::U8(x) => {
            out.extend_from_slice(&0u32.to_le_bytes());
            out.push(*x);
        }
        V::F32(x) => {
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        V::Bool(x) => {
            out.extend_from_slice(&7u32.to_le_bytes());
            out.push(*x);
        }
        V::Str(s) => {
            out.extend_from_slice(&8u32.to_le_bytes());
            gstr(out, s);
        }
        V::ArrStr(a) => {
            arr(out, 8, a.len());
            for s in a.iter() {
                gstr(out, s.as_bytes());
            }
        }
        V::ArrF32(a) => {
            arr(out, 6, a.len());
            for x in a.iter() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        V::ArrI32(a) => {
            arr(out, 5, a.len());
            for x in a.iter() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        V::ArrU32(a) => {
            arr(out, 4, a.len());
            for x in a.iter() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        V::Raw(t, bytes) => {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// A GGUF with the given metadata and tensors `(name, ne innermost first, type, offset)`,
/// padded to `align` and followed by `data_len` zero bytes.
fn build_gguf(
    version: u32,
    kvs: &[(&str, V)],
    tensors: &[(&str, &[u64], u32, u64)],
    align: usize,
    data_len: usize,
) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        gstr(&mut out, k.as_bytes());
        gval(&mut out, v);
    }
    for (name, ne, ty, off) in tensors {
        gstr(&mut out, name.as_bytes());
        out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
        for d in ne.iter() {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
    }
    out.resize(out.len().next_multiple_of(align), 0);
    out.resize(out.len() + data_len, 0);
    out
}

#[test]
fn gguf_synthetic_alignment_and_layout() {
    let tensors: &[(&str, &[u64], u32, u64)] =
        &[("a", &[3, 2], 0, 0), ("b", &[5], 1, 64), ("c", &[2, 2, 2, 2], 30, 128)];
    let f = build_gguf(2, &[("general.alignment", V::U32(64))], tensors, 64, 128 + 32);
    let g = gguf::parse(&f, "syn.gguf").unwrap();
    assert_eq!(g.version, 2);
    let header_end = f.len() - 160;
    assert_eq!(header_end % 64, 0);
    let a = g.tensor("a").unwrap();
    assert_eq!((a.shape.clone(), a.dtype, a.offset, a.nbytes), (vec![2, 3], DType::F32, header_end, 24));
    let b = g.tensor("b").unwrap();
    assert_eq!((b.shape.clone(), b.dtype, b.offset, b.nbytes), (vec![5], DType::F16, header_end + 64, 10));
    let c = g.tensor("c").unwrap();
    assert_eq!((c.dtype, c.offset, c.nbytes), (DType::BF16, header_end + 128, 32));
    assert_eq!(g.tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);

    // Offset 32 is misaligned for alignment 64 but fine for the default 32.
    let t2: &[(&str, &[u64], u32, u64)] = &[("a", &[4], 0, 32)];
    let f = build_gguf(3, &[("general.alignment", V::U32(64))], t2, 64, 64);
    expect_err(gguf::parse(&f, "syn.gguf"), Status::Format, &["syn.gguf", "'a'", "alignment 64"]);
    let f = build_gguf(3, &[], t2, 32, 64);
    assert_eq!(gguf::parse(&f, "syn.gguf").unwrap().tensors[0].offset, f.len() - 64 + 32);

    for bad in [0u32, 3, 48] {
        let f = build_gguf(3, &[("general.alignment", V::U32(bad))], &[], 32, 0);
        expect_err(gguf::parse(&f, "syn.gguf"), Status::Format, &["syn.gguf", "general.alignment", "power of two"]);
    }
    let f = build_gguf(3, &[("general.alignment", V::Str(b"32"))], &[], 32, 0);
    expect_err(gguf::parse(&f, "syn.gguf"), Status::Format, &["general.alignment", "uint32"]);

    // Empty file body: no tensors, no metadata.
    let f = build_gguf(3, &[], &[], 1, 0);
    let g = gguf::parse(&f, "e.gguf").unwrap();
    assert!(g.tensors.is_empty() && g.metadata.is_empty());
    assert!(g.vocab().unwrap().is_none());

    // Duplicate names / keys.
    let t3: &[(&str, &[u64], u32, u64)] = &[("a", &[4], 0, 0), ("a", &[4], 0, 32)];
    expect_err(gguf::parse(&build_gguf(3, &[], t3, 32, 64), "d.gguf"), Status::Format, &["d.gguf", "duplicate", "'a'"]);
    let f = build_gguf(3, &[("k", V::U32(1)), ("k", V::U32(2))], &[], 32, 0);
    expect_err(gguf::parse(&f, "d.gguf"), Status::Format, &["d.gguf", "duplicate", "'k'"]);
}

#[test]
fn gguf_synthetic_bad_values() {
    let bad: Vec<(V, &str)> = vec![
        (V::Bool(2), "bool"),
        (V::Raw(13, vec![0; 8]), "invalid value type 13"),
        (
            V::Raw(9, [13u32.to_le_bytes().to_vec(), 1u64.to_le_bytes().to_vec()].concat()),
            "invalid array element type 13",
        ),
        (V::Str(b"\xff\xfe"), "UTF-8"),
    ];
    for (v, needle) in bad {
        let f = build_gguf(3, &[("some.key", v)], &[], 32, 0);
        expect_err(gguf::parse(&f, "v.gguf"), Status::Format, &["v.gguf", "some.key", needle]);
    }
    // Invalid UTF-8 in a key and in a tensor name.
    let mut f = build_gguf(3, &[("k\u{e9}y", V::U32(1))], &[], 32, 0);
    let at = find(&f, "k\u{e9}y".as_bytes()).unwrap();
    f[at + 1] = 0xff;
    expect_err(gguf::parse(&f, "u.gguf"), Status::Format, &["u.gguf", "UTF-8"]);
    let mut f = build_gguf(3, &[], &[("n\u{e9}", &[4], 0, 0)], 32, 16);
    let at = find(&f, "n\u{e9}".as_bytes()).unwrap();
    f[at + 2] = 0x41;
    expect_err(gguf::parse(&f, "u.gguf"), Status::Format, &["u.gguf", "UTF-8"]);

    // Arrays nested deeper than the limit: an error, not a stack overflow.
    let mut nested = Vec::new();
    for _ in 0..100_000 {
        nested.extend_from_slice(&9u32.to_le_bytes());
        nested.extend_from_slice(&1u64.to_le_bytes());
    }
    nested.extend_from_slice(&4u32.to_le_bytes());
    nested.extend_from_slice(&1u64.to_le_bytes());
    nested.extend_from_slice(&7u32.to_le_bytes());
    let f = build_gguf(3, &[("deep", V::Raw(9, nested))], &[], 32, 0);
    expect_err(gguf::parse(&f, "n.gguf"), Status::Format, &["n.gguf", "deep", "nested"]);

    // A shallow nested array is fine.
    let mut nested = Vec::new();
    nested.extend_from_slice(&9u32.to_le_bytes());
    nested.extend_from_slice(&1u64.to_le_bytes());
    nested.extend_from_slice(&0u32.to_le_bytes());
    nested.extend_from_slice(&2u64.to_le_bytes());
    nested.extend_from_slice(&[5, 6]);
    let f = build_gguf(3, &[("nest", V::Raw(9, nested))], &[], 32, 0);
    let g = gguf::parse(&f, "n.gguf").unwrap();
    let Some(gguf::GgufValue::Array(outer)) = g.get("nest") else { panic!("nest: {:?}", g.get("nest")) };
    let inner: Vec<gguf::GgufValue> = outer.iter().collect();
    assert_eq!(inner.len(), 1);
    let gguf::GgufValue::Array(inner) = &inner[0] else { panic!("nest[0]: {:?}", inner[0]) };
    assert_eq!(inner.iter().collect::<Vec<_>>(), [gguf::GgufValue::U8(5), gguf::GgufValue::U8(6)]);
}

#[test]
fn gguf_typed_getters() {
    let f = build_gguf(
        3,
        &[
            ("u8", V::U8(7)),
            ("neg", V::I32(-3)),
            ("big", V::Raw(10, (1u64 << 40).to_le_bytes().to_vec())),
            ("f", V::F32(0.5)),
            ("d", V::Raw(12, 0.25f64.to_le_bytes().to_vec())),
            ("b", V::Bool(1)),
        ],
        &[],
        32,
        0,
    );
    let g = gguf::parse(&f, "t.gguf").unwrap();
    assert_eq!(g.get_u32("u8").unwrap(), Some(7));
    assert_eq!(g.get_i64("neg").unwrap(), Some(-3));
    expect_err(g.get_u32("neg"), Status::Format, &["neg", "-3"]);
    expect_err(g.get_u32("big"), Status::Format, &["big"]);
    assert_eq!(g.get_u64("big").unwrap(), Some(1 << 40));
    assert_eq!(g.get_f32("f").unwrap(), Some(0.5));
    assert_eq!(g.get_f32("d").unwrap(), Some(0.25));
    expect_err(g.get_f32("u8"), Status::Format, &["u8"]);
    assert_eq!(g.get_bool("b").unwrap(), Some(true));
    expect_err(g.get_bool("u8"), Status::Format, &["u8", "bool"]);
}

#[test]
fn gguf_vocab_errors() {
    let toks: &[&str] = &["<unk>", "<s>", "</s>"];
    let base = |extra: Vec<(&'static str, V<'static>)>| {
        let mut kvs: Vec<(&str, V)> = vec![("tokenizer.ggml.model", V::Str(b"gpt2"))];
        kvs.extend(extra);
        kvs
    };
    // Minimal: tokens only, and merges.
    let kvs = base(vec![
        ("tokenizer.ggml.tokens", V::ArrStr(&["a", "b", "ab"])),
        ("tokenizer.ggml.merges", V::ArrStr(&["a b"])),
    ]);
    let g = gguf::parse(&build_gguf(3, &kvs, &[], 32, 0), "v.gguf").unwrap();
    let v = g.vocab().unwrap().unwrap();
    assert_eq!((v.model.as_str(), v.tokens.len(), v.merges.unwrap()), ("gpt2", 3, vec!["a b".to_string()]));
    assert!(v.scores.is_none() && v.token_types.is_none() && v.bos.is_none());

    let cases: Vec<(Vec<(&str, V)>, &str)> = vec![
        (base(vec![]), "tokenizer.ggml.tokens"),
        (base(vec![("tokenizer.ggml.tokens", V::ArrU32(&[1, 2, 3]))]), "tokenizer.ggml.tokens"),
        (base(vec![("tokenizer.ggml.tokens", V::Str(b"x"))]), "tokenizer.ggml.tokens"),
        (
            base(vec![("tokenizer.ggml.tokens", V::ArrStr(toks)), ("tokenizer.ggml.scores", V::ArrF32(&[0.0, 1.0]))]),
            "tokenizer.ggml.scores",
        ),
        (
            base(vec![("tokenizer.ggml.tokens", V::ArrStr(toks)), ("tokenizer.ggml.scores", V::ArrStr(toks))]),
            "tokenizer.ggml.scores",
        ),
        (
            base(vec![("tokenizer.ggml.tokens", V::ArrStr(toks)), ("tokenizer.ggml.token_type", V::ArrI32(&[1]))]),
            "tokenizer.ggml.token_type",
        ),
        (
            base(vec![("tokenizer.ggml.tokens", V::ArrStr(toks)), ("tokenizer.ggml.merges", V::ArrI32(&[1]))]),
            "tokenizer.ggml.merges",
        ),
        (
            base(vec![("tokenizer.ggml.tokens", V::ArrStr(toks)), ("tokenizer.ggml.bos_token_id", V::Str(b"1"))]),
            "tokenizer.ggml.bos_token_id",
        ),
        (
            base(vec![("tokenizer.ggml.tokens", V::ArrStr(toks)), ("tokenizer.ggml.eos_token_id", V::I32(-1))]),
            "tokenizer.ggml.eos_token_id",
        ),
        (
            base(vec![("tokenizer.ggml.tokens", V::ArrStr(toks)), ("tokenizer.ggml.add_bos_token", V::U32(1))]),
            "tokenizer.ggml.add_bos_token",
        ),
    ];
    for (kvs, key) in cases {
        let g = gguf::parse(&build_gguf(3, &kvs, &[], 32, 0), "v.gguf").unwrap();
        expect_err(g.vocab(), Status::Format, &[key]);
    }
    let kvs: Vec<(&str, V)> = vec![("tokenizer.ggml.model", V::U32(1))];
    let g = gguf::parse(&build_gguf(3, &kvs, &[], 32, 0), "v.gguf").unwrap();
    expect_err(g.vocab(), Status::Format, &["tokenizer.ggml.model"]);
}

// ---------------------------------------------------------------------------------------------
// Synthetic safetensors files

fn build_st(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + data_len, 0);
    out
}

#[test]
fn safetensors_synthetic() {
    let ok = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2,3],"data_offsets":[16,28]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"s":{"dtype":"BF16","shape":[],"data_offsets":[28,30]},"z":{"dtype":"F32","shape":[0,5],"data_offsets":[30,30]}}  "#;
    let f = build_st(ok, 30);
    assert!(safetensors::is_safetensors(&f));
    let s = safetensors::parse(&f, "ok.st", 1).unwrap();
    let hdr = 8 + ok.len();
    assert_eq!(s.meta("format"), Some("pt"));
    assert_eq!(s.metadata, vec![("format".to_string(), "pt".to_string())]);
    let names: Vec<_> = s.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "s", "z"]);
    assert_eq!(s.tensor("a").unwrap().offset, hdr);
    let b = s.tensor("b").unwrap();
    assert_eq!((b.offset, b.nbytes, b.shape.clone(), b.dtype), (hdr + 16, 12, vec![2, 3], DType::F16));
    let sc = s.tensor("s").unwrap();
    assert_eq!((sc.nbytes, sc.shape.len(), sc.dtype), (2, 0, DType::BF16));
    assert_eq!(s.tensor("z").unwrap().nbytes, 0);

    let cases: Vec<(&str, usize, Status, Vec<&str>)> = vec![
        // Overlapping ranges.
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
            16,
            Status::Format,
            vec!["overlaps", "'a'", "'b'"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            16,
            Status::Format,
            vec!["overlaps"],
        ),
        // Size mismatch.
        (r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#, 16, Status::Format, vec!["'a'", "12", "16"]),
        (r#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}"#, 16, Status::Format, vec!["'a'", "needs 8"]),
        // Past the end.
        (r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[4,20]}}"#, 16, Status::Format, vec!["'a'", "past the end"]),
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551600,18446744073709551615]}}"#,
            16,
            Status::Format,
            vec!["'a'"],
        ),
        (r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}}"#, 16, Status::Format, vec!["'a'", "begin"]),
        // Huge shapes.
        (
            r#"{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}"#,
            16,
            Status::Format,
            vec!["'a'", "overflows"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}}"#,
            16,
            Status::Format,
            vec!["'a'"],
        ),
        (r#"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#, 16, Status::Format, vec!["'a'", "shape"]),
        (r#"{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}"#, 16, Status::Format, vec!["'a'", "shape"]),
        // Unsupported dtypes.
        (r#"{"a":{"dtype":"I8","shape":[16],"data_offsets":[0,16]}}"#, 16, Status::Unsupported, vec!["'a'", "I8"]),
        (r#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#, 16, Status::Unsupported, vec!["'w'", "F64"]),
        (r#"{"m":{"dtype":"BOOL","shape":[16],"data_offsets":[0,16]}}"#, 16, Status::Unsupported, vec!["'m'", "BOOL"]),
        (
            r#"{"q":{"dtype":"F8_E4M3","shape":[16],"data_offsets":[0,16]}}"#,
            16,
            Status::Unsupported,
            vec!["'q'", "F8_E4M3"],
        ),
        (r#"{"q":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, 16, Status::Unsupported, vec!["'q'", "I64"]),
        // Malformed entries.
        (r#"{"a":{"shape":[4],"data_offsets":[0,16]}}"#, 16, Status::Format, vec!["'a'", "dtype"]),
        (r#"{"a":{"dtype":"F32","data_offsets":[0,16]}}"#, 16, Status::Format, vec!["'a'", "shape"]),
        (r#"{"a":{"dtype":"F32","shape":[4]}}"#, 16, Status::Format, vec!["'a'", "data_offsets"]),
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16,32]}}"#,
            16,
            Status::Format,
            vec!["'a'", "data_offsets"],
        ),
        (r#"{"a":{"dtype":7,"shape":[4],"data_offsets":[0,16]}}"#, 16, Status::Format, vec!["'a'", "dtype"]),
        (r#"{"a":[1,2]}"#, 16, Status::Format, vec!["'a'"]),
        (r#"{"__metadata__":{"x":1}}"#, 0, Status::Format, vec!["__metadata__", "x"]),
        (r#"{"__metadata__":[]}"#, 0, Status::Format, vec!["__metadata__"]),
        // Not JSON / not an object.
        (r#"{"a":{"dtype":"F32""#, 16, Status::Format, vec!["JSON"]),
        (r#"[1, 2, 3]"#, 16, Status::Format, vec!["object"]),
        ("{\"a\":\"\u{e9}\"}", 0, Status::Format, vec![]),
    ];
    for (header, data, status, needles) in cases {
        let f = build_st(header, data);
        let mut n = vec!["bad.st"];
        n.extend(needles);
        expect_err(safetensors::parse(&f, "bad.st", 0), status, &n);
    }
    // Invalid UTF-8 in the header.
    let mut f = build_st(r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#, 0);
    f[10] = 0xff;
    expect_err(safetensors::parse(&f, "u.st", 0), Status::Format, &["u.st"]);
    // Nested JSON bomb: error, not a stack overflow.
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    expect_err(safetensors::parse(&build_st(&deep, 0), "deep.st", 0), Status::Format, &["deep.st"]);
}

#[test]
fn safetensors_header_length() {
    let (b, path) = fixture(ST_F16);
    for n in [1u64 << 60, u64::MAX, b.len() as u64, 200_000_000] {
        let mut m = b.clone();
        put_u64(&mut m, 0, n);
        expect_err(safetensors::parse(&m, &path, 0), Status::Format, &[&path, "header length", &n.to_string()]);
    }
    // Shorter than the real header: invalid JSON.
    let mut m = b.clone();
    let n = get_u64(&b, 0);
    put_u64(&mut m, 0, n - 10);
    expect_err(safetensors::parse(&m, &path, 0), Status::Format, &[&path, "JSON"]);
    // A JSON error reports its byte offset in the file.
    let f = build_st(r#"{"a":  x}"#, 0);
    expect_err(safetensors::parse(&f, "j.st", 0), Status::Format, &["j.st", "byte offset 15"]);
    for short in [&b""[..], b"\x02\0\0", b"\x02\0\0\0\0\0\0\0{"] {
        expect_err(safetensors::parse(short, "s.st", 0), Status::Format, &["s.st"]);
    }
}

/// This file's hostile-input cases again under a 1 GiB address space (see
/// `common::passes_under_a_1_gib_address_space`).
#[cfg(target_os = "linux")]
#[test]
fn hostile_cases_pass_under_a_1_gib_address_space_limit() {
    common::passes_under_a_1_gib_address_space(&["gguf_huge_counts", "llama2c_huge_header_values", "--exact"]);
}
