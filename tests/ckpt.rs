//! Tests of the MindSpore `.ckpt` reader/writer and the MindFormers yaml reader: the real
//! MindSpore-written stories260K fixtures in `tests/data/mindformers/` (counts, names, shapes,
//! dtypes, split tensors, byte identity with the HF safetensors and with our writer), small
//! MindSpore-written extras (CRC trailer, scalars, `str`, encrypted files), hand-built protobuf
//! variants (packed dims, field order, unknown fields), malformed input that must give an error
//! and never a panic, and the yaml configs.

mod common;

#[path = "common/ckpt_writer.rs"]
mod ckpt_writer;
use ckpt_writer::CkptWriter;
use runllama::error::{Error, Status};
use runllama::formats::ckpt::{self, CkptDType, CkptFile, CkptTensor, Segment};
use runllama::formats::mindformers::{self, MfConfig, MfScaling, QkvConcatLayout};
use runllama::formats::safetensors;
use runllama::tensor::DType;

const MF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mindformers");
const HF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stories260K/hf");

const F32_CKPT: &str = "stories260K.ckpt";
const F16_CKPT: &str = "stories260K-fp16.ckpt";
const BF16_CKPT: &str = "stories260K-bf16.ckpt";
const SLICED_CKPT: &str = "stories260K-sliced16k.ckpt";
const QKV_CKPT: &str = "stories260K-qkvconcat.ckpt";
const TIED_CKPT: &str = "stories260K-tied.ckpt";
const EXTRAS_CRC: &str = "mindspore-extras/extras-crc.ckpt";

const N_LAYERS: usize = 5;
const DIM: usize = 64;
const FF: usize = 172;
const VOCAB: usize = 512;
const N_HEADS: usize = 8;
const N_KV: usize = 4;
const HD: usize = 8;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn fixture(rel: &str) -> (Vec<u8>, String) {
    let path = format!("{MF}/{rel}");
    (read(&path), path)
}

fn parse_fixture(rel: &str) -> (Vec<u8>, CkptFile) {
    let (b, p) = fixture(rel);
    let f = ckpt::parse(&b, &p, true).unwrap_or_else(|e| panic!("{e}"));
    (b, f)
}

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

/// The tensor's bytes, reassembled from its segments.
fn content(bytes: &[u8], t: &CkptTensor) -> Vec<u8> {
    t.segment_bytes(bytes).expect("segments inside the file").concat()
}

/// Every tensor of an Ok parse lies inside the file and has the size its shape says.
fn assert_sane(f: &CkptFile, len: usize) {
    for t in &f.tensors {
        for s in &t.segments {
            assert!(s.offset + s.len <= len, "{t:?} outside {len} bytes");
        }
        if let Some(w) = t.dtype.element_size() {
            assert_eq!(t.nbytes(), t.n_elements() * w, "{t:?}");
        }
    }
}

/// `(MindFormers name, HF name)` in the order MindFormers' converter writes (HF state_dict
/// order); `lm_head.weight` is a copy of the embedding in the untied files.
fn mf_names(lm_head: bool) -> Vec<(String, String)> {
    let mut v = vec![("model.tok_embeddings.embedding_weight".to_owned(), "model.embed_tokens.weight".to_owned())];
    for i in 0..N_LAYERS {
        let l = |mf: &str, hf: &str| (format!("model.layers.{i}.{mf}.weight"), format!("model.layers.{i}.{hf}.weight"));
        v.push(l("attention.wq", "self_attn.q_proj"));
        v.push(l("attention.wk", "self_attn.k_proj"));
        v.push(l("attention.wv", "self_attn.v_proj"));
        v.push(l("attention.wo", "self_attn.o_proj"));
        v.push(l("feed_forward.w1", "mlp.gate_proj"));
        v.push(l("feed_forward.w3", "mlp.up_proj"));
        v.push(l("feed_forward.w2", "mlp.down_proj"));
        v.push(l("attention_norm", "input_layernorm"));
        v.push(l("ffn_norm", "post_attention_layernorm"));
    }
    v.push(("model.norm_out.weight".to_owned(), "model.norm.weight".to_owned()));
    if lm_head {
        v.push(("lm_head.weight".to_owned(), "model.embed_tokens.weight".to_owned()));
    }
    v
}

fn shape_of(mf: &str) -> Vec<usize> {
    if mf.contains("embedding_weight") || mf == "lm_head.weight" {
        vec![VOCAB, DIM]
    } else if mf.ends_with("wk.weight") || mf.ends_with("wv.weight") {
        vec![N_KV * HD, DIM]
    } else if mf.ends_with("w1.weight") || mf.ends_with("w3.weight") {
        vec![FF, DIM]
    } else if mf.ends_with("w2.weight") {
        vec![DIM, FF]
    } else if mf.ends_with("w_qkv.weight") {
        vec![(N_HEADS + 2 * N_KV) * HD, DIM]
    } else if mf.ends_with("w_gate_hidden.weight") {
        vec![2 * FF, DIM]
    } else if mf.ends_with("norm.weight") || mf.ends_with("norm_out.weight") {
        vec![DIM]
    } else {
        vec![DIM, DIM]
    }
}

/// The HF safetensors file of a dtype, parsed: `(bytes, tensors)`.
struct Hf {
    bytes: Vec<u8>,
    file: safetensors::SafetensorsFile,
}

impl Hf {
    fn open(rel: &str) -> Hf {
        let path = format!("{HF}/{rel}");
        let bytes = read(&path);
        let file = safetensors::parse(&bytes, &path, 0).unwrap();
        Hf { bytes, file }
    }
    fn get(&self, name: &str) -> (&[u8], DType, Vec<usize>) {
        let t = self.file.tensor(name).unwrap_or_else(|| panic!("no {name} in HF file"));
        (&self.bytes[t.offset..t.offset + t.nbytes], t.dtype, t.shape.clone())
    }
}

fn ckpt_dtype(d: DType) -> CkptDType {
    match d {
        DType::F32 => CkptDType::F32,
        DType::F16 => CkptDType::F16,
        DType::BF16 => CkptDType::BF16,
        other => panic!("MindSpore checkpoints have no {other:?} tensors"),
    }
}

/// The unfused MindFormers tensors from an HF file: `(name, dtype, shape, bytes)`.
fn mf_tensors(hf: &Hf, lm_head: bool) -> Vec<(String, CkptDType, Vec<usize>, Vec<u8>)> {
    mf_names(lm_head)
        .into_iter()
        .map(|(mf, hfn)| {
            let (b, d, s) = hf.get(&hfn);
            (mf, ckpt_dtype(d), s, b.to_vec())
        })
        .collect()
}

/// The fused (MindFormers >= 1.4 "hf2mg") tensors, in the qkvconcat file's order.
fn mf_fused_tensors(hf: &Hf) -> Vec<(String, CkptDType, Vec<usize>, Vec<u8>)> {
    let row = DIM * 4;
    let rows = |b: &[u8], r: std::ops::Range<usize>| b[r.start * row..r.end * row].to_vec();
    let mut out = Vec::new();
    let emb = hf.get("model.embed_tokens.weight");
    out.push(("model.tok_embeddings.embedding_weight".to_owned(), CkptDType::F32, emb.2.clone(), emb.0.to_vec()));
    for i in 0..N_LAYERS {
        let g = |n: &str| hf.get(&format!("model.layers.{i}.{n}.weight")).0;
        let (q, k, v) = (g("self_attn.q_proj"), g("self_attn.k_proj"), g("self_attn.v_proj"));
        let n_rep = N_HEADS / N_KV;
        let mut qkv = Vec::new();
        for grp in 0..N_KV {
            qkv.extend(rows(q, grp * n_rep * HD..(grp + 1) * n_rep * HD));
            qkv.extend(rows(k, grp * HD..(grp + 1) * HD));
            qkv.extend(rows(v, grp * HD..(grp + 1) * HD));
        }
        let (w1, w3) = (g("mlp.gate_proj"), g("mlp.up_proj"));
        let mut gh = Vec::new();
        for r in 0..FF {
            gh.extend(rows(w1, r..r + 1));
            gh.extend(rows(w3, r..r + 1));
        }
        let name = |n: &str| format!("model.layers.{i}.{n}.weight");
        out.push((name("attention.w_qkv"), CkptDType::F32, shape_of("w_qkv.weight"), qkv));
        out.push((name("attention.wo"), CkptDType::F32, vec![DIM, DIM], g("self_attn.o_proj").to_vec()));
        out.push((name("feed_forward.w_gate_hidden"), CkptDType::F32, shape_of("w_gate_hidden.weight"), gh));
        out.push((name("feed_forward.w2"), CkptDType::F32, vec![DIM, FF], g("mlp.down_proj").to_vec()));
        out.push((name("attention_norm"), CkptDType::F32, vec![DIM], g("input_layernorm").to_vec()));
        out.push((name("ffn_norm"), CkptDType::F32, vec![DIM], g("post_attention_layernorm").to_vec()));
    }
    let norm = hf.get("model.norm.weight");
    out.push(("model.norm_out.weight".to_owned(), CkptDType::F32, norm.2, norm.0.to_vec()));
    out.push(("lm_head.weight".to_owned(), CkptDType::F32, emb.2, emb.0.to_vec()));
    out
}

fn write_all(tensors: &[(String, CkptDType, Vec<usize>, Vec<u8>)], slice: usize, crc: bool) -> Vec<u8> {
    let mut w = CkptWriter::new(Vec::new(), slice, crc).unwrap();
    for (n, d, s, b) in tensors {
        w.tensor(n, d, s, b).unwrap();
    }
    w.finish().unwrap()
}

fn first_diff(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first difference at byte {i}"),
        None => format!("lengths {} vs {}", a.len(), b.len()),
    }
}

// ---------------------------------------------------------------------------------------------
// The fixtures.

#[test]
fn fixtures_counts_names_shapes_dtypes() {
    let cases: &[(&str, usize, usize, CkptDType)] = &[
        (F32_CKPT, 48, 48, CkptDType::F32),
        (F16_CKPT, 48, 48, CkptDType::F16),
        (BF16_CKPT, 48, 48, CkptDType::BF16),
        (SLICED_CKPT, 48, 92, CkptDType::F32),
        (QKV_CKPT, 33, 33, CkptDType::F32),
        (TIED_CKPT, 47, 47, CkptDType::F32),
    ];
    for (rel, n_tensors, n_values, dtype) in cases {
        let (b, f) = parse_fixture(rel);
        assert!(ckpt::is_ckpt(&b), "{rel}");
        assert_eq!(f.tensors.len(), *n_tensors, "{rel}");
        let values: usize = f.tensors.iter().map(|t| t.segments.len()).sum();
        assert_eq!(values, *n_values, "{rel}");
        assert_eq!(f.crc, None, "{rel}");
        assert_sane(&f, b.len());
        let names: Vec<String> = if *rel == QKV_CKPT {
            mf_fused_tensors(&Hf::open("model.safetensors")).into_iter().map(|t| t.0).collect()
        } else {
            mf_names(*rel != TIED_CKPT).into_iter().map(|t| t.0).collect()
        };
        let got: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(got, names, "{rel}");
        for t in &f.tensors {
            assert_eq!(t.dtype, *dtype, "{rel} {}", t.name);
            assert_eq!(t.shape, shape_of(&t.name), "{rel} {}", t.name);
            assert_eq!(t.dtype.weight_dtype(), Some(ckpt_dtype_back(dtype)));
        }
    }
}

fn ckpt_dtype_back(d: &CkptDType) -> DType {
    d.weight_dtype().unwrap()
}

#[test]
fn fixtures_payloads_are_unaligned() {
    // The reason loaders must use unaligned loads: F32 content at offsets that are not multiples of 4.
    let (_, f) = parse_fixture(F32_CKPT);
    let odd = f.tensors.iter().filter(|t| t.segments[0].offset % 4 != 0).count();
    assert_eq!(odd, 35);
    let (_, f) = parse_fixture(F16_CKPT);
    assert_eq!(f.tensors.iter().filter(|t| t.segments[0].offset % 2 != 0).count(), 26);
}

#[test]
fn sliced_fixture_segments() {
    let (b, f) = parse_fixture(SLICED_CKPT);
    let emb = f.tensor("model.tok_embeddings.embedding_weight").unwrap();
    assert_eq!(emb.segments.len(), 8);
    assert!(emb.segments.iter().all(|s| s.len == 16384));
    // Offsets as the reference walker prints them: content after each record's framing.
    assert_eq!(emb.segments[0], Segment { offset: 65, len: 16384 });
    assert_eq!(emb.segments[1].offset, 16514);
    let lm = f.tensor("lm_head.weight").unwrap();
    assert_eq!(lm.segments.len(), 8);
    for i in 0..N_LAYERS {
        for w in ["w1", "w3", "w2"] {
            let t = f.tensor(&format!("model.layers.{i}.feed_forward.{w}.weight")).unwrap();
            let lens: Vec<usize> = t.segments.iter().map(|s| s.len).collect();
            assert_eq!(lens, [16384, 16384, 11264], "{}", t.name);
            // Segments are not contiguous: each piece after the first follows the next record's framing.
            assert!(t.segments[1].offset > t.segments[0].offset + t.segments[0].len);
        }
        let w2 = f.tensor(&format!("model.layers.{i}.feed_forward.w2.weight")).unwrap();
        let row = w2.shape[1] * 4;
        assert_eq!(row, 688);
        assert_ne!(w2.segments[0].len % row, 0, "w2 pieces split mid-row");
        // Tensors of exactly 16 KiB are not split (the rule is `>`).
        let wq = f.tensor(&format!("model.layers.{i}.attention.wq.weight")).unwrap();
        assert_eq!(wq.segments.len(), 1);
        assert_eq!(wq.nbytes(), 16384);
    }
    // Reassembled, every tensor equals the unsliced file's.
    let (ub, uf) = parse_fixture(F32_CKPT);
    assert_eq!(uf.tensors.len(), f.tensors.len());
    for (t, u) in f.tensors.iter().zip(&uf.tensors) {
        assert_eq!((&t.name, &t.shape, &t.dtype), (&u.name, &u.shape, &u.dtype));
        assert_eq!(u.segments.len(), 1);
        assert_eq!(content(&b, t), content(&ub, u), "{}", t.name);
    }
}

#[test]
fn fixtures_bytes_equal_hf_safetensors() {
    for (rel, hf_rel) in [
        (F32_CKPT, "model.safetensors"),
        (F16_CKPT, "fp16/model.safetensors"),
        (BF16_CKPT, "bf16/model.safetensors"),
        (SLICED_CKPT, "model.safetensors"),
        (TIED_CKPT, "model.safetensors"),
    ] {
        let hf = Hf::open(hf_rel);
        let (b, f) = parse_fixture(rel);
        for (mf, hfn) in mf_names(rel != TIED_CKPT) {
            let t = f.tensor(&mf).unwrap();
            let (hb, hd, hs) = hf.get(&hfn);
            assert_eq!(t.dtype.weight_dtype(), Some(hd), "{rel} {mf}");
            assert_eq!(t.shape, hs, "{rel} {mf}");
            assert!(content(&b, t) == hb, "{rel} {mf}: bytes differ from HF {hfn}");
        }
    }
}

#[test]
fn tied_fixture_has_no_lm_head() {
    let (_, f) = parse_fixture(TIED_CKPT);
    assert!(f.tensor("lm_head.weight").is_none());
    assert!(f.tensor("model.tok_embeddings.embedding_weight").is_some());
}

#[test]
fn qkvconcat_fixture_is_grouped_layout() {
    let (b, f) = parse_fixture(QKV_CKPT);
    let want = mf_fused_tensors(&Hf::open("model.safetensors"));
    for (name, _, shape, bytes) in &want {
        let t = f.tensor(name).unwrap();
        assert_eq!(&t.shape, shape, "{name}");
        assert!(&content(&b, t) == bytes, "{name}: not the grouped (hf2mg) layout");
    }
}

// ---------------------------------------------------------------------------------------------
// The writer against MindSpore's own output.

#[test]
fn writer_is_byte_identical_to_mindspore() {
    let f32 = Hf::open("model.safetensors");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (F32_CKPT, write_all(&mf_tensors(&f32, true), ckpt::SLICE_BYTES, false)),
        (SLICED_CKPT, write_all(&mf_tensors(&f32, true), 16384, false)),
        (TIED_CKPT, write_all(&mf_tensors(&f32, false), ckpt::SLICE_BYTES, false)),
        (QKV_CKPT, write_all(&mf_fused_tensors(&f32), ckpt::SLICE_BYTES, false)),
        (F16_CKPT, write_all(&mf_tensors(&Hf::open("fp16/model.safetensors"), true), ckpt::SLICE_BYTES, false)),
        (BF16_CKPT, write_all(&mf_tensors(&Hf::open("bf16/model.safetensors"), true), ckpt::SLICE_BYTES, false)),
    ];
    for (rel, ours) in cases {
        let (theirs, _) = fixture(rel);
        assert!(ours == theirs, "{rel}: our writer's output differs from MindSpore's: {}", first_diff(&ours, &theirs));
    }
}

#[test]
fn writer_write_ckpt_matches_streaming_writer() {
    let f32 = Hf::open("model.safetensors");
    let ts = mf_tensors(&f32, true);
    let refs: Vec<(&str, CkptDType, &[usize], &[u8])> =
        ts.iter().map(|(n, d, s, b)| (n.as_str(), d.clone(), s.as_slice(), b.as_slice())).collect();
    let mut out = Vec::new();
    ckpt_writer::write_ckpt(&mut out, &refs, 16384, false).unwrap();
    assert!(out == fixture(SLICED_CKPT).0);
    // tensor_from_reader gives the same bytes as tensor().
    let mut w = CkptWriter::new(Vec::new(), 16384, true).unwrap();
    for (n, d, s, b) in &ts {
        w.tensor_from_reader(n, d, s, b.len(), &mut b.as_slice()).unwrap();
    }
    let streamed = w.finish().unwrap();
    assert_eq!(streamed, write_all(&ts, 16384, true));
}

#[test]
fn mindspore_crc_file() {
    // Written by MindSpore 2.10 save_checkpoint(crc_check=True, append_dict=...): see make_extras.py.
    let (b, path) = fixture(EXTRAS_CRC);
    assert!(ckpt::is_ckpt(&b));
    let f = ckpt::parse(&b, &path, true).unwrap();
    assert_eq!(f.crc, Some(834996812));
    assert_eq!(&b[b.len() - 17..b.len() - 10], b"crc_num");
    assert_eq!(ckpt::crc32(&b[..b.len() - 17]), 834996812);
    let summary: Vec<(&str, &CkptDType, &[usize])> =
        f.tensors.iter().map(|t| (t.name.as_str(), &t.dtype, t.shape.as_slice())).collect();
    assert_eq!(
        summary,
        [
            ("a.f16", &CkptDType::F16, &[2usize, 3][..]),
            ("b.bf16", &CkptDType::BF16, &[2, 3][..]),
            ("c.f32", &CkptDType::F32, &[5, 2][..]),
            ("global_step", &CkptDType::I32, &[][..]),
            ("e.i64", &CkptDType::I64, &[4][..]),
            ("epoch_num", &CkptDType::I64, &[][..]),
            ("loss_scale", &CkptDType::F32, &[][..]),
            ("note", &CkptDType::Str, &[0][..]),
        ]
    );
    let val = |n: &str| content(&b, f.tensor(n).unwrap());
    assert_eq!(val("global_step"), 7i32.to_le_bytes());
    assert_eq!(val("epoch_num"), 3i64.to_le_bytes());
    assert_eq!(val("loss_scale"), 1024f32.to_le_bytes());
    let e: Vec<u8> = [-2i64, -1, 0, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(val("e.i64"), e);
    let note: Vec<u8> = "h\u{e9}llo".chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
    assert_eq!(val("note"), note);
    let bf: Vec<u8> =
        [1.5f32, -2.25, 3.0, 0.5, 7.0, -1.0].iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
    assert_eq!(val("b.bf16"), bf);

    // Our writer reproduces the file, trailer included.
    let ts: Vec<(String, CkptDType, Vec<usize>, Vec<u8>)> =
        f.tensors.iter().map(|t| (t.name.clone(), t.dtype.clone(), t.shape.clone(), content(&b, t))).collect();
    let ours = write_all(&ts, ckpt::SLICE_BYTES, true);
    assert!(ours == b, "{}", first_diff(&ours, &b));
}

#[test]
fn encrypted_files_are_unsupported() {
    for (rel, mode) in [
        ("mindspore-extras/extras-enc-gcm.ckpt", "AES-GCM"),
        ("mindspore-extras/extras-enc-aes-cbc.ckpt", "AES-CBC"),
        ("mindspore-extras/extras-enc-sm4-cbc.ckpt", "SM4-CBC"),
    ] {
        let (b, path) = fixture(rel);
        assert!(ckpt::is_ckpt(&b), "{rel}");
        expect_err(ckpt::parse(&b, &path, false), Status::Unsupported, &[&path, "encrypted", mode, "decrypt"]);
    }
    for magic in [ckpt::GCM_MAGIC, ckpt::CBC_MAGIC, ckpt::SM4_CBC_MAGIC] {
        let mut b = magic.to_le_bytes().to_vec();
        b.extend_from_slice(&[0x11; 40]);
        assert!(ckpt::is_ckpt(&b));
        expect_err(ckpt::parse(&b, "enc.ckpt", true), Status::Unsupported, &["enc.ckpt", "encrypted"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Writer round trips.

#[test]
fn writer_round_trip_single_split_crc() {
    let a: Vec<u8> = (0..15u32).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect(); // f32 [3,5]
    let bb: Vec<u8> = (0..7u16).flat_map(|i| (0x3F80 + i).to_le_bytes()).collect(); // bf16 [7]
    let s: Vec<u8> = 42i64.to_le_bytes().to_vec(); // scalar
    let ts = vec![
        ("w.a".to_owned(), CkptDType::F32, vec![3, 5], a.clone()),
        ("w.b".to_owned(), CkptDType::BF16, vec![7], bb.clone()),
        ("step".to_owned(), CkptDType::I64, vec![], s.clone()),
        ("empty".to_owned(), CkptDType::F16, vec![0, 4], vec![]),
    ];
    for slice in [ckpt::SLICE_BYTES, 16, 7, 1] {
        for crc in [false, true] {
            let out = write_all(&ts, slice, crc);
            assert!(ckpt::is_ckpt(&out));
            let f = ckpt::parse(&out, "rt.ckpt", true).unwrap();
            assert_eq!(f.crc.is_some(), crc);
            if crc {
                assert_eq!(f.crc, Some(ckpt::crc32(&out[..out.len() - 17])));
            }
            assert_eq!(f.tensors.len(), 4);
            for ((n, d, shape, data), t) in ts.iter().zip(&f.tensors) {
                assert_eq!((&t.name, &t.dtype, &t.shape), (n, d, shape));
                assert_eq!(&content(&out, t), data);
                let want_pieces = if data.is_empty() { 1 } else { data.len().div_ceil(slice) };
                assert_eq!(t.segments.len(), want_pieces, "{n} slice {slice}");
                for s in &t.segments[..t.segments.len() - 1] {
                    assert_eq!(s.len, slice);
                }
            }
        }
    }
    // Exactly slice_bytes: one piece; one byte more: two.
    let out = write_all(&[("x".into(), CkptDType::U8, vec![16], vec![9; 16])], 16, false);
    assert_eq!(ckpt::parse(&out, "x", false).unwrap().tensors[0].segments.len(), 1);
    let out = write_all(&[("x".into(), CkptDType::U8, vec![17], vec![9; 17])], 16, false);
    assert_eq!(ckpt::parse(&out, "x", false).unwrap().tensors[0].segments.len(), 2);
}

#[test]
fn writer_rejects_bad_input() {
    assert!(CkptWriter::new(Vec::new(), 0, false).is_err());
    let mut w = CkptWriter::new(Vec::new(), 16, false).unwrap();
    let e = w.tensor("t", &CkptDType::F32, &[2, 2], &[0; 15]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("'t'"));
    // A short reader is an error, not a hang or a short file.
    let e = w.tensor_from_reader("t", &CkptDType::U8, &[4], 4, &mut &[1u8, 2][..]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn crc32_known_values() {
    assert_eq!(ckpt::crc32(b""), 0);
    assert_eq!(ckpt::crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(ckpt::crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
    // Incremental over odd splits equals one shot.
    let data: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut c = ckpt::Crc32::new();
    for chunk in data.chunks(37) {
        c.update(chunk);
    }
    assert_eq!(c.value(), ckpt::crc32(&data));
}

#[test]
fn dtype_names() {
    for d in [
        CkptDType::F16,
        CkptDType::BF16,
        CkptDType::F32,
        CkptDType::F64,
        CkptDType::I8,
        CkptDType::U8,
        CkptDType::I16,
        CkptDType::U16,
        CkptDType::I32,
        CkptDType::U32,
        CkptDType::I64,
        CkptDType::U64,
        CkptDType::Bool,
        CkptDType::Int4,
        CkptDType::Str,
    ] {
        assert_eq!(CkptDType::from_name(d.name()), d);
    }
    assert_eq!(CkptDType::from_name("Uint8"), CkptDType::U8);
    assert_eq!(CkptDType::from_name("Uint64"), CkptDType::U64);
    assert_eq!(CkptDType::from_name("Complex64"), CkptDType::Other("Complex64".into()));
    assert_eq!(CkptDType::BF16.element_size(), Some(2));
    assert_eq!(CkptDType::F64.element_size(), Some(8));
    assert_eq!(CkptDType::Str.element_size(), None);
    assert_eq!(CkptDType::I32.weight_dtype(), None);
    assert_eq!(CkptDType::F16.weight_dtype(), Some(DType::F16));
}

// ---------------------------------------------------------------------------------------------
// Hand-built protobuf.

fn vint(mut v: u64) -> Vec<u8> {
    let mut o = Vec::new();
    while v >= 0x80 {
        o.push((v as u8) | 0x80);
        v >>= 7;
    }
    o.push(v as u8);
    o
}
fn fkey(no: u64, wt: u64) -> Vec<u8> {
    vint((no << 3) | wt)
}
fn flen(no: u64, payload: &[u8]) -> Vec<u8> {
    [fkey(no, 2), vint(payload.len() as u64), payload.to_vec()].concat()
}
fn fvar(no: u64, v: u64) -> Vec<u8> {
    [fkey(no, 0), vint(v)].concat()
}
fn tproto(dims: &[u64], ty: &str, data: &[u8]) -> Vec<u8> {
    let mut t: Vec<u8> = dims.iter().flat_map(|&d| fvar(1, d)).collect();
    t.extend(flen(2, ty.as_bytes()));
    t.extend(flen(3, data));
    t
}
fn record_tp(tag: &str, tp: &[u8]) -> Vec<u8> {
    flen(1, &[flen(1, tag.as_bytes()), flen(2, tp)].concat())
}
fn record(tag: &str, dims: &[u64], ty: &str, data: &[u8]) -> Vec<u8> {
    record_tp(tag, &tproto(dims, ty, data))
}
fn f32s(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

#[test]
fn handbuilt_matches_writer() {
    let data = f32s(6);
    let ours = write_all(&[("t".into(), CkptDType::F32, vec![2, 3], data.clone())], 1024, false);
    assert_eq!(ours, record("t", &[2, 3], "Float32", &data));
}

#[test]
fn packed_dims_reverse_order_and_unknown_fields() {
    let data = f32s(6);
    let plain = ckpt::parse(&record("t", &[2, 3], "Float32", &data), "p", false).unwrap();
    let want = &plain.tensors[0];
    assert_eq!(want.shape, [2, 3]);

    // Packed dims.
    let packed_dims = flen(1, &[vint(2), vint(3)].concat());
    let tp = [packed_dims.clone(), flen(2, b"Float32"), flen(3, &data)].concat();
    let b = record_tp("t", &tp);
    let f = ckpt::parse(&b, "packed", false).unwrap();
    assert_eq!((&f.tensors[0].shape, &f.tensors[0].dtype), (&want.shape, &want.dtype));
    assert_eq!(content(&b, &f.tensors[0]), data);

    // Every message's fields in reverse order (tensor before tag; content, type, dims).
    let tp = [flen(3, &data), flen(2, b"Float32"), fvar(1, 2), fvar(1, 3)].concat();
    let b = flen(1, &[flen(2, &tp), flen(1, b"t")].concat());
    let f = ckpt::parse(&b, "reversed", false).unwrap();
    assert_eq!(f.tensors[0].shape, [2, 3]);
    assert_eq!(content(&b, &f.tensors[0]), data);

    // Unknown fields of wire types 0, 1, 2 and 5 at every level.
    let unknown = [fvar(9, 300), fkey(10, 1), vec![1; 8], flen(11, b"xyz"), fkey(12, 5), vec![2; 4]].concat();
    let tp = [
        unknown.clone(),
        fvar(1, 2),
        unknown.clone(),
        fvar(1, 3),
        flen(2, b"Float32"),
        flen(3, &data),
        unknown.clone(),
    ]
    .concat();
    let value = [unknown.clone(), flen(1, b"t"), unknown.clone(), flen(2, &tp), unknown.clone()].concat();
    let b = [unknown.clone(), flen(1, &value), unknown.clone(), record("u", &[1], "Int8", &[5]), unknown].concat();
    let f = ckpt::parse(&b, "unknown", false).unwrap();
    assert_eq!(f.tensors.len(), 2);
    assert_eq!(f.tensors[0].shape, [2, 3]);
    assert_eq!(content(&b, &f.tensors[0]), data);
    assert_eq!(content(&b, &f.tensors[1]), [5]);

    // Mixed packed and unpacked dims make one list.
    let tp = [fvar(1, 2), flen(1, &vint(3)), flen(2, b"Float32"), flen(3, &data)].concat();
    assert_eq!(ckpt::parse(&record_tp("t", &tp), "mixed", false).unwrap().tensors[0].shape, [2, 3]);
}

#[test]
fn scalars_strings_and_maptensors() {
    // dims [] (MindSpore 2.x) and [0] with one element (older MindSpore) are scalars.
    let b = [
        record("s_new", &[], "Int32", &7i32.to_le_bytes()),
        record("s_old", &[0], "Float32", &1.5f32.to_le_bytes()),
        record("empty", &[0], "Float32", &[]),
        record("text", &[0], "str", &[b'h', 0, 0, 0]),
    ]
    .concat();
    let f = ckpt::parse(&b, "scalars", false).unwrap();
    let shapes: Vec<&[usize]> = f.tensors.iter().map(|t| t.shape.as_slice()).collect();
    assert_eq!(shapes, [&[][..], &[][..], &[0][..], &[0][..]]);
    assert_eq!(f.tensors[3].dtype, CkptDType::Str);
    assert_eq!(f.tensors[0].n_elements(), 1);

    // A maptensor Value is skipped.
    let map = flen(1, &[flen(1, b"emb_table"), flen(3, &flen(1, &tproto(&[2], "Int64", &[0; 16])))].concat());
    let b = [record("a", &[1], "Int8", &[1]), map, record("b", &[1], "Int8", &[2])].concat();
    let f = ckpt::parse(&b, "map", false).unwrap();
    let names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn split_pieces_are_checked() {
    let d = f32s(6);
    // Consecutive pieces: one tensor, two segments.
    let b = [record("t", &[2, 3], "Float32", &d[..10]), record("t", &[2, 3], "Float32", &d[10..])].concat();
    let f = ckpt::parse(&b, "split", false).unwrap();
    assert_eq!(f.tensors.len(), 1);
    assert_eq!(f.tensors[0].segments.len(), 2);
    assert_eq!(content(&b, &f.tensors[0]), d);

    // Pieces whose dims or dtype disagree.
    let b = [record("t", &[2, 3], "Float32", &d[..12]), record("t", &[3, 2], "Float32", &d[12..])].concat();
    expect_err(
        ckpt::parse(&b, "dims.ckpt", false),
        Status::Format,
        &["dims.ckpt", "'t'", "[3, 2]", "[2, 3]", "piece 1"],
    );
    let b = [record("t", &[2, 3], "Float32", &d[..12]), record("t", &[2, 3], "Int32", &d[12..])].concat();
    expect_err(ckpt::parse(&b, "dt.ckpt", false), Status::Format, &["'t'", "Int32", "Float32"]);

    // A name repeated in non-consecutive Values.
    let b =
        [record("t", &[1], "Int8", &[1]), record("u", &[1], "Int8", &[2]), record("t", &[1], "Int8", &[3])].concat();
    let at = 2 * record("t", &[1], "Int8", &[1]).len();
    expect_err(
        ckpt::parse(&b, "dup.ckpt", false),
        Status::Format,
        &["dup.ckpt", "'t'", &format!("byte offset {at}"), "consecutive"],
    );

    // Total size different from dims × width, single and split.
    let b = record("t", &[2, 3], "Float32", &d[..20]);
    expect_err(ckpt::parse(&b, "size.ckpt", false), Status::Format, &["size.ckpt", "'t'", "24 bytes", "20 bytes"]);
    let b = [record("t", &[2, 3], "Float32", &d[..12]), record("t", &[2, 3], "Float32", &d[12..16])].concat();
    expect_err(
        ckpt::parse(&b, "size2.ckpt", false),
        Status::Format,
        &["'t'", "needs 24 bytes", "16 bytes", "2 pieces"],
    );
    // The check applies to one half of a split tensor too (the symptom of keying Values by name).
    let (sb, _) = fixture(SLICED_CKPT);
    let f = ckpt::parse(&sb, "s", false).unwrap();
    let emb = f.tensor("model.tok_embeddings.embedding_weight").unwrap();
    let one =
        record("model.tok_embeddings.embedding_weight", &[512, 64], "Float32", &sb[emb.segments[0].offset..][..16384]);
    expect_err(ckpt::parse(&one, "half", false), Status::Format, &["131072 bytes", "16384 bytes"]);
}

#[test]
fn malformed_protobuf() {
    let ok = record("t", &[2], "Int8", &[1, 2]);
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("empty", vec![], &["empty"]),
        ("group", [ok.clone(), fkey(7, 3)].concat(), &["group"]),
        ("wire7", [ok.clone(), fkey(7, 7)].concat(), &["wire type 7"]),
        ("field0", [ok.clone(), vec![0x02, 0x00]].concat(), &["field number 0"]),
        ("overlong varint", [ok.clone(), vec![0x08], vec![0xFF; 11]].concat(), &["varint"]),
        ("varint overflow", [ok.clone(), vec![0x08], vec![0xFF; 9], vec![0x02]].concat(), &["overflows"]),
        ("negative dim", record("n", &[u64::MAX], "Int8", &[]), &["'n'", "negative (-1)"]),
        ("no tag", flen(1, &flen(2, &tproto(&[1], "Int8", &[1]))), &["no tag"]),
        ("no tensor", flen(1, &flen(1, b"x")), &["'x'", "neither"]),
        ("no type", record_tp("x", &[fvar(1, 1), flen(3, &[1])].concat()), &["'x'", "no tensor_type"]),
        ("no content", record_tp("x", &[fvar(1, 1), flen(2, b"Int8")].concat()), &["'x'", "no tensor_content"]),
        (
            "two tags",
            flen(1, &[flen(1, b"x"), flen(1, b"y"), flen(2, &tproto(&[1], "Int8", &[1]))].concat()),
            &["second tag"],
        ),
        ("tag not utf8", flen(1, &[flen(1, &[0xFF, 0xFE]), flen(2, &tproto(&[1], "Int8", &[1]))].concat()), &["UTF-8"]),
        (
            "tag wire type",
            flen(1, &[fvar(1, 5), flen(2, &tproto(&[1], "Int8", &[1]))].concat()),
            &["wire type 0, expected 2"],
        ),
        ("top-level value varint", fvar(1, 5), &["Checkpoint.value"]),
        (
            "dims fixed32",
            record_tp("x", &[fkey(1, 5), vec![0; 4], flen(2, b"Int8"), flen(3, &[])].concat()),
            &["'x'", "dims"],
        ),
        ("too many dims", record("x", &[1; 40], "Int8", &[1]), &["'x'", "dimensions"]),
    ];
    for (what, b, needles) in cases {
        expect_err(ckpt::parse(&b, "bad.ckpt", false), Status::Format, needles);
        let e = ckpt::parse(&b, "bad.ckpt", false).unwrap_err();
        assert!(e.message.starts_with("bad.ckpt: ") && e.message.contains("byte offset"), "{what}: {}", e.message);
    }

    // A length that runs past the enclosing message (but not past the file).
    let data = [1u8, 2];
    let mut tp = tproto(&[2], "Int8", &data);
    let n = tp.len();
    tp[n - 3] = 40; // tensor_content claims 40 bytes
    let b = [record_tp("x", &tp), vec![0; 64]].concat();
    expect_err(ckpt::parse(&b, "len.ckpt", false), Status::Format, &["'x'", "needs 40 bytes", "TensorProto"]);

    // Packed dims whose last varint runs past the field.
    let tp = [flen(1, &[0x80]), flen(2, b"Int8"), flen(3, &[])].concat();
    expect_err(ckpt::parse(&record_tp("x", &tp), "pk", false), Status::Format, &["'x'", "packed dims"]);
}

#[test]
fn crc_trailer_checks() {
    let base = write_all(&[("t".into(), CkptDType::F32, vec![4], f32s(4))], 16, true);
    let n = base.len();
    // A damaged content byte: only detected with verify_crc.
    let mut b = base.clone();
    b[n - 18] ^= 0x40;
    let stored = ckpt::crc32(&base[..n - 17]);
    let got = ckpt::crc32(&b[..n - 17]);
    let e = expect_err(ckpt::parse(&b, "crc.ckpt", true), Status::Format, &["crc.ckpt", "CRC-32 mismatch"]);
    assert!(e.message.contains(&format!("{stored:08X}")) && e.message.contains(&format!("{got:08X}")), "{}", e.message);
    assert_eq!(ckpt::parse(&b, "crc.ckpt", false).unwrap().crc, Some(stored));
    // A wrong trailer value.
    let mut b = base.clone();
    b[n - 1] ^= 1;
    expect_err(ckpt::parse(&b, "crc.ckpt", true), Status::Format, &["CRC-32 mismatch"]);
    // A trailer value wider than 32 bits.
    let mut b = base.clone();
    b[n - 10] = 1;
    expect_err(ckpt::parse(&b, "crc.ckpt", false), Status::Format, &["not a 32-bit CRC"]);
    // verify_crc on a file without a trailer is accepted (nothing to check).
    let plain = write_all(&[("t".into(), CkptDType::F32, vec![4], f32s(4))], 16, false);
    assert_eq!(ckpt::parse(&plain, "p", true).unwrap().crc, None);
}

// ---------------------------------------------------------------------------------------------
// Truncation, garbage, detection.

/// Parse every prefix of `b` at the given lengths: never a panic; an error is Format; an Ok
/// parse only at a record boundary, giving a prefix of the full tensor list.
fn check_truncations(b: &[u8], full: &CkptFile, cuts: impl Iterator<Item = usize>) {
    let ends: Vec<usize> = full.tensors.iter().flat_map(|t| t.segments.iter().map(|s| s.offset + s.len)).collect();
    for cut in cuts {
        let r = ckpt::parse(&b[..cut], "cut.ckpt", false);
        match r {
            Err(e) => {
                assert_eq!(e.status, Status::Format, "cut at {cut}: {e}");
                assert!(e.message.contains("byte offset"), "cut at {cut}: {e}");
            }
            Ok(f) => {
                assert!(ends.contains(&cut), "cut at {cut} parsed Ok but is not a record boundary");
                assert!(f.tensors.len() <= full.tensors.len());
                for (a, t) in f.tensors.iter().zip(&full.tensors) {
                    assert_eq!((&a.name, &a.shape), (&t.name, &t.shape));
                }
                assert_sane(&f, cut);
            }
        }
    }
}

#[test]
fn truncation_never_panics() {
    let (b, f) = parse_fixture(EXTRAS_CRC);
    check_truncations(&b, &f, 0..b.len());
    let (b, f) = parse_fixture(SLICED_CKPT);
    check_truncations(&b, &f, (0..600).chain((600..b.len()).step_by(97)));
    // Cuts a few bytes either side of every record boundary.
    let ends: Vec<usize> = f.tensors.iter().flat_map(|t| t.segments.iter().map(|s| s.offset + s.len)).collect();
    check_truncations(&b, &f, ends.iter().flat_map(|&e| e.saturating_sub(3)..(e + 4).min(b.len())));
    let (b, f) = parse_fixture(BF16_CKPT);
    check_truncations(&b, &f, (0..b.len()).step_by(61));
}

#[test]
fn mutations_never_panic() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for rel in [EXTRAS_CRC, SLICED_CKPT] {
        let (base, _) = fixture(rel);
        let window = base.len().min(2000);
        for _ in 0..3000 {
            let mut b = base.clone();
            for _ in 0..1 + rnd() % 3 {
                let i = (rnd() as usize) % window;
                b[i] = rnd() as u8;
            }
            for verify in [false, true] {
                if let Err(e) = ckpt::parse(&b, "m", verify) {
                    assert!(matches!(e.status, Status::Format | Status::Unsupported), "{e}");
                }
            }
        }
    }
}

#[test]
fn garbage_is_rejected() {
    let mut x = 12345u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let cases: Vec<Vec<u8>> = vec![
        vec![0; 100],
        b"\n\n\nhello world, this is text\n".to_vec(),
        [vec![0x0A], noise.clone()].concat(),
        noise.clone(),
        vec![0x0A],
        vec![0x0A, 0x80],
        vec![0xFF; 64],
    ];
    for b in cases {
        if let Err(e) = ckpt::parse(&b, "g", true) {
            assert_eq!(e.status, Status::Format, "{e}");
        } else {
            panic!("garbage {:?}... parsed", &b[..b.len().min(8)]);
        }
    }
    assert!(!ckpt::is_ckpt(b"\n\n\nhello"));
    assert!(!ckpt::is_ckpt(&[0; 100]));
    assert!(!ckpt::is_ckpt(b""));
}

#[test]
fn detection() {
    for rel in [F32_CKPT, F16_CKPT, BF16_CKPT, SLICED_CKPT, QKV_CKPT, TIED_CKPT, EXTRAS_CRC] {
        let (b, _) = fixture(rel);
        assert!(ckpt::is_ckpt(&b), "{rel}");
        assert!(ckpt::is_ckpt(&b[..60]), "{rel} truncated");
    }
    // Other model and tokenizer files; SentencePiece `tokenizer.model` files are protobufs that
    // start like a checkpoint (`0A len 0A len "<unk>"`).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    for rel in [
        "stories260K/stories260K-f32.gguf",
        "stories260K/stories260K.bin",
        "stories260K/hf/model.safetensors",
        "stories260K/tok512.model",
        "stories260K/tok512.bin",
        "tokenizers/llama2/tokenizer.model",
        "tokenizers/llama3/tokenizer.model",
        "mindformers/tokenizer.model",
    ] {
        let b = read(&format!("{dir}/{rel}"));
        assert!(!ckpt::is_ckpt(&b), "{rel} detected as ckpt");
    }
    assert!(!ckpt::is_ckpt(&read(&format!("{MF}/stories260K.yaml"))));
}

// ---------------------------------------------------------------------------------------------
// A file for MindSpore to read: a bf16 tensor of more than 512 MiB, CRC trailer, streamed.
// `RUNLLAMA_CKPT_BIG=/tmp/big.ckpt cargo test --test ckpt -- --ignored big_file` writes it (optionally
// `RUNLLAMA_CKPT_BIG_ROWS=N`, default 131072); `tests/data/mindformers/mindspore-extras/check_big.py`
// checks it with MindSpore.

/// The bf16 bit pattern of element i (finite, normal): the same formula as check_big.py.
fn big_pattern(i: u64) -> u16 {
    let x = (i as u32).wrapping_mul(2_654_435_761);
    let e = 1 + ((x >> 8) % 126);
    (((x >> 16) & 0x807F) | (e << 7)) as u16
}

struct Pattern {
    next: u64,
    end: u64,
}

impl std::io::Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n + 2 <= buf.len() && self.next < self.end {
            buf[n..n + 2].copy_from_slice(&big_pattern(self.next).to_le_bytes());
            self.next += 1;
            n += 2;
        }
        Ok(n)
    }
}

#[test]
#[ignore = "writes a 1 GiB file; run by hand for the MindSpore check"]
fn big_file_for_mindspore() {
    let Ok(path) = std::env::var("RUNLLAMA_CKPT_BIG") else { return };
    // RUNLLAMA_CKPT_BIG_ROWS=128256 gives llama3-8B's embedding shape (pieces 512 MiB + 490 MiB).
    let rows: usize = std::env::var("RUNLLAMA_CKPT_BIG_ROWS").map_or(131_072, |r| r.parse().unwrap());
    let cols = 4096usize;
    let out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut w = CkptWriter::new(out, ckpt::SLICE_BYTES, true).unwrap();
    let norm: Vec<u8> = (0..cols).flat_map(|i| (i as f32 * 0.25).to_le_bytes()).collect();
    w.tensor("model.norm_out.weight", &CkptDType::F32, &[cols], &norm).unwrap();
    let n = (rows * cols) as u64;
    w.tensor_from_reader(
        "lm_head.weight",
        &CkptDType::BF16,
        &[rows, cols],
        rows * cols * 2,
        &mut Pattern { next: 0, end: n },
    )
    .unwrap();
    w.finish().unwrap();
    // Read it back ourselves too.
    let b = std::fs::read(&path).unwrap();
    let f = ckpt::parse(&b, &path, true).unwrap();
    let t = f.tensor("lm_head.weight").unwrap();
    let nbytes = rows * cols * 2;
    let lens: Vec<usize> = t.segments.iter().map(|s| s.len).collect();
    assert_eq!(lens.len(), nbytes.div_ceil(ckpt::SLICE_BYTES));
    assert!(lens[..lens.len() - 1].iter().all(|&l| l == ckpt::SLICE_BYTES));
    assert_eq!(lens.iter().sum::<usize>(), nbytes);
    let mut i = 0u64;
    for seg in t.segment_bytes(&b).unwrap() {
        for c in seg.chunks_exact(2) {
            assert_eq!(u16::from_le_bytes([c[0], c[1]]), big_pattern(i));
            i += 1;
        }
    }
    assert_eq!(i, n);
}

// ---------------------------------------------------------------------------------------------
// MindFormers yaml.

fn yaml(rel: &str) -> MfConfig {
    mindformers::read_yaml(std::path::Path::new(&format!("{MF}/{rel}"))).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn fixture_yamls() {
    let c = yaml("stories260K.yaml");
    let want = MfConfig {
        config_type: Some("LlamaConfig".into()),
        arch_type: Some("LlamaForCausalLM".into()),
        hidden_size: Some(64),
        num_layers: Some(5),
        num_heads: Some(8),
        n_kv_heads: Some(4),
        vocab_size: Some(512),
        intermediate_size: Some(172),
        multiple_of: Some(4),
        ffn_dim_multiplier: None,
        rms_norm_eps: Some(1e-5),
        theta: Some(10000.0),
        seq_length: Some(512),
        max_position_embedding: None,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
        pad_token_id: Some(0),
        tie_word_embeddings: Some(false),
        qkv_concat: Some(false),
        qkv_concat_layout: None,
        extend_method: Some("None".into()),
        scaling_factor: Some(MfScaling::Factor(1.0)),
        tokenizer_vocab_file: Some("tokenizer.model".into()),
        tokenizer_type: Some("LlamaTokenizer".into()),
    };
    assert_eq!(c, want);
    assert_eq!(c.ffn_size(64), Some(172));
    // Without intermediate_size, MindFormers' rule with multiple_of 4 gives the same 172.
    assert_eq!(MfConfig { intermediate_size: None, ..c.clone() }.ffn_size(64), Some(172));

    let q = yaml("stories260K-qkvconcat.yaml");
    assert_eq!(q, MfConfig { qkv_concat: Some(true), ..want.clone() });
    let t = yaml("stories260K-tied.yaml");
    assert_eq!(t, MfConfig { tie_word_embeddings: Some(true), ..want });
}

#[test]
fn ffn_size_rule() {
    let c = MfConfig::default();
    assert_eq!(c.ffn_size(4096), Some(11008)); // llama2-7B, multiple_of default 256
    let c = MfConfig { multiple_of: Some(256), ..MfConfig::default() };
    assert_eq!(c.ffn_size(5120), Some(13824)); // llama2-13B
    let c = MfConfig { multiple_of: Some(4096), ffn_dim_multiplier: Some(1.3), ..MfConfig::default() };
    assert_eq!(c.ffn_size(8192), Some(28672)); // llama2-70B
    let c = MfConfig { multiple_of: Some(1024), ffn_dim_multiplier: Some(1.3), ..MfConfig::default() };
    assert_eq!(c.ffn_size(4096), Some(14336)); // llama3-8B
    let c = MfConfig { intermediate_size: Some(14336), ..MfConfig::default() };
    assert_eq!(c.ffn_size(4096), Some(14336));
    assert_eq!(MfConfig { multiple_of: Some(0), ..MfConfig::default() }.ffn_size(4096), None);
    assert_eq!(MfConfig { ffn_dim_multiplier: Some(f64::NAN), ..MfConfig::default() }.ffn_size(4096), None);
    assert_eq!(MfConfig::default().ffn_size(usize::MAX), None);
}

/// A config in the style of MindFormers' `configs/llama2/predict_llama2_7b.yaml`: top-level
/// scalars, sequences of mappings, flow collections, comments, `1.e-8` floats.
const LLAMA2_STYLE: &str = r#"seed: 0
output_dir: './output' # path to save checkpoint/strategy
load_checkpoint: ''
auto_trans_ckpt: False  # If true, auto transform load_checkpoint to load in distributed model
run_mode: 'predict'

# trainer config
trainer:
  type: CausalLanguageModelingTrainer
  model_name: 'llama2_7b'

# optimizer
optimizer:
  type: FP32StateAdamWeightDecay
  beta1: 0.9
  eps: 1.e-8 # 1e-8
  learning_rate: 5.e-5

callbacks:
  - type: MFLossMonitor
  - type: CheckpointMointor
    prefix: "llama2_7b"
    save_checkpoint_steps: 100
  - type: ObsMonitor
eval_callbacks:
- type: ObsMonitor
layer_list: [1, 2, [3, 4], {a: b}]
multi_line: {x: 1,
   y: [2,
   3]}
context:
  mode: 0 #0--Graph Mode; 1--Pynative Mode
  device_target: "Ascend"
  max_device_memory: "58GB"
  ascend_config:
    precision_mode: "must_keep_origin_fp32"

model:
  model_config:
    type: LlamaConfig
    batch_size: 1 # add for increase predict
    seq_length: 4096
    hidden_size: 4096
    num_layers: 32
    num_heads: 32
    vocab_size: 32000
    multiple_of: 256
    rms_norm_eps: 1.0e-5
    bos_token_id: 1
    eos_token_id: 2
    pad_token_id: 0
    ignore_token_id: -100
    compute_dtype: "float16"
    use_past: True
    scaling_factor: 1.0
    extend_method: "None" # support "None", "PI", "NTK"
    use_flash_attention: True # FA can accelerate training or finetune
    offset: 0
    checkpoint_name_or_path: "llama2_7b"
    repetition_penalty: 1
    top_k: 3
    top_p: 1
    do_sample: False
  arch:
    type: LlamaForCausalLM

processor:
  return_tensors: ms
  tokenizer:
    unk_token: '<unk>'
    bos_token: '<s>'
    eos_token: '</s>'
    pad_token: '<unk>'
    type: LlamaTokenizer
    vocab_file: "/path/to/tokenizer.model"
  type: LlamaProcessor
"#;

#[test]
fn mindformers_style_yaml() {
    let c = mindformers::parse_yaml(LLAMA2_STYLE, "l2.yaml").unwrap();
    assert_eq!(c.hidden_size, Some(4096));
    assert_eq!(c.num_layers, Some(32));
    assert_eq!(c.num_heads, Some(32));
    assert_eq!(c.n_kv_heads, None);
    assert_eq!(c.vocab_size, Some(32000));
    assert_eq!(c.intermediate_size, None);
    assert_eq!(c.ffn_size(4096), Some(11008));
    assert_eq!(c.rms_norm_eps, Some(1e-5));
    assert_eq!(c.theta, None);
    assert_eq!(c.seq_length, Some(4096));
    assert_eq!(c.tie_word_embeddings, None);
    assert_eq!(c.extend_method.as_deref(), Some("None"));
    assert_eq!(c.tokenizer_vocab_file.as_deref(), Some("/path/to/tokenizer.model"));
    assert_eq!(c.tokenizer_type.as_deref(), Some("LlamaTokenizer"));
    assert_eq!(c.arch_type.as_deref(), Some("LlamaForCausalLM"));
}

#[test]
fn llama3_style_yaml() {
    let text = "model:\n  model_config:\n    type: LlamaConfig\n    hidden_size: 4096\n    num_heads: 32\n    n_kv_heads: 8\n    vocab_size: 128256\n    intermediate_size: 14336\n    theta: 500000\n    rms_norm_eps: 1.0e-5\n    bos_token_id: 128000\n    eos_token_id: [128001, 128008, 128009]\n    pad_token_id: 128002\n    ffn_dim_multiplier: None\n    max_position_embedding: 131072\n    extend_method: \"LLAMA3\"\n    scaling_factor:\n      factor: 8.0\n      low_freq_factor: 1.0\n      high_freq_factor: 4.0\n      original_max_position_embeddings: 8192\n    qkv_concat: True\n    qkv_concat_layout: grouped\nprocessor:\n  tokenizer:\n    type: Llama3Tokenizer\n    vocab_file: tokenizer.model\n";
    let c = mindformers::parse_yaml(text, "l3.yaml").unwrap();
    assert_eq!(c.n_kv_heads, Some(8));
    assert_eq!(c.theta, Some(500000.0));
    assert_eq!(c.eos_token_id, Some(128001));
    assert_eq!(c.ffn_dim_multiplier, None);
    assert_eq!(c.max_position_embedding, Some(131072));
    assert_eq!(c.qkv_concat, Some(true));
    assert_eq!(c.qkv_concat_layout, Some(QkvConcatLayout::Grouped));
    let s = c.scaling_factor.unwrap();
    assert_eq!(s.get("factor"), Some(8.0));
    assert_eq!(s.get("original_max_position_embeddings"), Some(8192.0));
    assert_eq!(c.tokenizer_type.as_deref(), Some("Llama3Tokenizer"));
    // The flow form of the same mapping; the "concat" layout.
    let flow = text
        .replace(
            "    scaling_factor:\n      factor: 8.0\n      low_freq_factor: 1.0\n      high_freq_factor: 4.0\n      original_max_position_embeddings: 8192\n",
            "    scaling_factor: {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}\n",
        )
        .replace("qkv_concat_layout: grouped", "qkv_concat_layout: \"concat\"");
    let d = mindformers::parse_yaml(&flow, "l3flow.yaml").unwrap();
    assert_eq!(d.scaling_factor, Some(s));
    assert_eq!(d.qkv_concat_layout, Some(QkvConcatLayout::Concat));
}

#[test]
fn yaml_scalars() {
    let c = |v: &str| mindformers::parse_yaml(&format!("model:\n  model_config:\n    {v}\n"), "s.yaml");
    assert_eq!(c("rms_norm_eps: 1.0e-05").unwrap().rms_norm_eps, Some(1e-5));
    assert_eq!(c("rms_norm_eps: 1e-6").unwrap().rms_norm_eps, Some(1e-6));
    assert_eq!(c("rms_norm_eps: 1.e-6").unwrap().rms_norm_eps, Some(1e-6));
    assert_eq!(c("theta: 10_000").unwrap().theta, Some(10000.0));
    assert_eq!(c("theta: ~").unwrap().theta, None);
    assert_eq!(c("theta: null").unwrap().theta, None);
    assert_eq!(c("theta:").unwrap().theta, None);
    assert_eq!(c("tie_word_embeddings: true").unwrap().tie_word_embeddings, Some(true));
    assert_eq!(c("tie_word_embeddings: FALSE").unwrap().tie_word_embeddings, Some(false));
    assert_eq!(c("tie_word_embeddings: None").unwrap().tie_word_embeddings, None);
    assert_eq!(c("n_kv_heads: +8").unwrap().n_kv_heads, Some(8));
    assert_eq!(c("pad_token_id: -1").unwrap().pad_token_id, Some(-1));
    assert_eq!(c("extend_method: 'It''s'").unwrap().extend_method.as_deref(), Some("It's"));
    assert_eq!(c("extend_method: \"a # b\" # c").unwrap().extend_method.as_deref(), Some("a # b"));
    assert_eq!(c("extend_method: None").unwrap().extend_method, None);
    assert_eq!(c("num_heads: 8 # eight").unwrap().num_heads, Some(8));
    // A repeated key is refused (PyYAML takes the last value; the file says two things).
    assert!(c("num_heads: 8\n    num_heads: 16").unwrap_err().to_string().contains("given twice"));
    // CRLF line ends and a BOM.
    let crlf = "\u{feff}model:\r\n  model_config:\r\n    num_heads: 4\r\n";
    assert_eq!(mindformers::parse_yaml(crlf, "crlf.yaml").unwrap().num_heads, Some(4));
    // Values on the next, more indented line; a plain scalar over several lines; a flow
    // collection closed at the key's column (all as PyYAML reads them).
    let next_line = "model:\n  model_config:\n    num_heads:\n      16\n    extend_method:\n      'PI'\n    type: Llama\n      Config\n    layers: [\n      1, 2\n    ]\n    scaling_factor:\n      {factor: 2.0,\n       x: 1}\n";
    let c2 = mindformers::parse_yaml(next_line, "n.yaml").unwrap();
    assert_eq!(c2.num_heads, Some(16));
    assert_eq!(c2.extend_method.as_deref(), Some("PI"));
    assert_eq!(c2.config_type.as_deref(), Some("Llama Config"));
    assert_eq!(c2.scaling_factor, Some(MfScaling::Map(vec![("factor".into(), 2.0), ("x".into(), 1.0)])));
    // A leading document marker.
    assert_eq!(
        mindformers::parse_yaml("---\nmodel:\n  model_config:\n    num_heads: 4\n", "d").unwrap().num_heads,
        Some(4)
    );
}

#[test]
fn yaml_errors() {
    let c = |body: &str| mindformers::parse_yaml(body, "bad.yaml");
    let mc = |v: &str| c(&format!("model:\n  model_config:\n    hidden_size: 64\n    {v}\n"));
    expect_err(mc("num_heads: eight"), Status::Format, &["bad.yaml", "line 4", "num_heads", "eight", "integer"]);
    expect_err(mc("num_heads: 8.5"), Status::Format, &["line 4", "num_heads"]);
    expect_err(mc("num_heads: \"8\""), Status::Format, &["line 4", "num_heads", "string"]);
    expect_err(mc("num_heads: -8"), Status::Format, &["line 4", "num_heads", "non-negative"]);
    expect_err(mc("num_heads: [8]"), Status::Format, &["num_heads", "list"]);
    expect_err(mc("num_heads:\n      a: 1"), Status::Format, &["line 5", "num_heads", "mapping"]);
    expect_err(mc("rms_norm_eps: small"), Status::Format, &["line 4", "rms_norm_eps", "number"]);
    expect_err(mc("rms_norm_eps: .inf"), Status::Format, &["rms_norm_eps"]);
    expect_err(mc("rms_norm_eps: nan"), Status::Format, &["rms_norm_eps"]);
    expect_err(mc("tie_word_embeddings: maybe"), Status::Format, &["line 4", "tie_word_embeddings"]);
    expect_err(mc("qkv_concat_layout: interleaved"), Status::Format, &["line 4", "qkv_concat_layout", "grouped"]);
    expect_err(mc("scaling_factor: {factor: big}"), Status::Format, &["line 4", "scaling_factor.factor"]);
    // Bad indentation: deeper than the block, and a dedent to no enclosing level.
    expect_err(mc("  num_layers: 5"), Status::Format, &["line 4", "indentation"]);
    expect_err(
        c("model:\n  model_config:\n    hidden_size: 64\n   num_layers: 5\n"),
        Status::Format,
        &["line 4", "indentation"],
    );
    expect_err(
        c("model:\n    model_config:\n      hidden_size: 64\n  num_layers: 5\n"),
        Status::Format,
        &["line 4", "indentation"],
    );
    expect_err(c("model:\n  model_config:\n\thidden_size: 64\n"), Status::Format, &["line 3", "tab"]);
    expect_err(mc("num_layers 5"), Status::Format, &["line 4", "key: value"]);
    expect_err(mc("num_layers: a: b"), Status::Format, &["line 4", "not allowed"]);
    expect_err(mc("extend_method: \"None"), Status::Format, &["line 4", "quoted"]);
    expect_err(mc("extend_method: \"None\" x"), Status::Format, &["line 4", "after a quoted"]);
    expect_err(mc("layers: [1, 2"), Status::Format, &["line 4", "unterminated flow"]);
    expect_err(mc("layers: [1, 2]]"), Status::Format, &["line 4"]);
    expect_err(mc("- 1"), Status::Format, &["line 4", "list item"]);
    expect_err(mc("? complex"), Status::Format, &["line 4", "complex"]);
    expect_err(c("model:\n  other: 1\n"), Status::Format, &["bad.yaml", "model_config"]);
    expect_err(c("trainer:\n  type: x\n"), Status::Format, &["bad.yaml", "'model'"]);
    expect_err(c("model: 5\n"), Status::Format, &["line 1", "'model'", "mapping"]);
    expect_err(c("model:\n  model_config: 5\n"), Status::Format, &["line 2", "model_config"]);
    expect_err(c(""), Status::Format, &["empty"]);
    expect_err(c("# only a comment\n"), Status::Format, &["empty"]);
    expect_err(c("- a\n- b\n"), Status::Format, &["line 1", "list"]);
    expect_err(c("model:\n  model_config:\n    num_heads: 1\n---\nx: 1\n"), Status::Format, &["line 4", "document"]);
    expect_err(
        c("processor: [1]\nmodel:\n  model_config:\n    num_heads: 1\n"),
        Status::Format,
        &["line 1", "processor"],
    );
    // Hostile nesting is an error, not a stack overflow; a long flow collection is linear.
    let deep: String = (0..5000).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
    expect_err(c(&deep), Status::Format, &["nested deeper"]);
    expect_err(c(&format!("x: {}1\n", "- ".repeat(100_000))), Status::Format, &["line 1"]);
    expect_err(
        c(&format!("x: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000))),
        Status::Format,
        &["line 1", "deeper"],
    );
    let long = format!("model:\n  model_config:\n    l: [\n{}    ]\n    num_heads: 2\n", "      1,\n".repeat(200_000));
    assert_eq!(c(&long).unwrap().num_heads, Some(2));
    let e = mindformers::read_yaml(std::path::Path::new("/nonexistent/x.yaml")).unwrap_err();
    assert_eq!(e.status, Status::Io);
    assert!(e.message.contains("/nonexistent/x.yaml"));
}

#[test]
fn yaml_never_panics_on_mutations() {
    let base = LLAMA2_STYLE.as_bytes();
    let specials = b" \n:-#'\"[]{},|>&*!?\t0aT.";
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut b = base.to_vec();
        for _ in 0..1 + rnd() % 4 {
            let i = (rnd() as usize) % b.len();
            b[i] = specials[(rnd() as usize) % specials.len()];
        }
        let text = String::from_utf8_lossy(&b);
        if let Err(e) = mindformers::parse_yaml(&text, "m.yaml") {
            assert_eq!(e.status, Status::Format, "{e}");
            assert!(e.message.contains("line"), "{e}");
        }
        // Truncated at a random point.
        let cut = (rnd() as usize) % text.len();
        if text.is_char_boundary(cut) {
            let _ = mindformers::parse_yaml(&text[..cut], "t.yaml");
        }
    }
}

/// This file's hostile-input cases again under a 1 GiB address space (see
/// `common::passes_under_a_1_gib_address_space`).
#[cfg(target_os = "linux")]
#[test]
fn hostile_cases_pass_under_a_1_gib_address_space_limit() {
    common::passes_under_a_1_gib_address_space(&["mutations_never_panic", "yaml_never_panics_on_mutations", "--exact"]);
}
