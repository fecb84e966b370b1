//! LLaMA 2 SentencePiece tokenizer: reference ids (sentencepiece / Meta), chat prompts, the
//! stories260K tok512 vocabulary in its three forms, and malformed input.
//!
//! Fixtures live in tests/data/tokenizers (see its README.md for where each file comes from).

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use runllama::error::{Error, Status};
use runllama::tokenizer::{ChatMessage, GgufVocab, TokenType, Tokenizer, TokenizerFormat};
use serde_json::Value;

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizers").join(name)
}

fn read(name: &str) -> Vec<u8> {
    let p = data_path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn load(name: &str) -> Tokenizer {
    Tokenizer::from_file_bytes(&read(name), name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn llama2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("llama2/tokenizer.model"))
}

fn tok512_model() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("tok512.model"))
}

fn tok512_bin() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("tok512.bin"))
}

fn jsonl(name: &str) -> Vec<Value> {
    let text = String::from_utf8(read(name)).expect("utf-8");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
        .collect()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().expect("ids array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn status_of<T: std::fmt::Debug>(r: Result<T, Error>) -> Status {
    r.expect_err("expected an error").status
}

/// A GGUF-style vocabulary carrying the same pieces, scores and types as `t`.
fn gguf_vocab_from(t: &Tokenizer) -> GgufVocab {
    let n = t.n_vocab() as u32;
    GgufVocab {
        model: "llama".into(),
        tokens: (0..n).map(|i| t.piece(i).unwrap().to_owned()).collect(),
        scores: Some((0..n).map(|i| t.score(i).unwrap()).collect()),
        token_types: Some((0..n).map(|i| t.token_type(i).unwrap() as i32).collect()),
        merges: None,
        bos: t.bos(),
        eos: t.eos(),
        unk: Some(t.unk()),
        add_bos: Some(true),
        add_space_prefix: Some(true),
        pre: Some("default".into()),
    }
}

/// Check encode (with and without BOS) and the decode round trip of reference cases.
fn check_cases(t: &Tokenizer, cases: &[Value], model: &str) -> usize {
    let bos = t.bos().expect("bos");
    let mut n = 0;
    for c in cases.iter().filter(|c| c["model"] == model) {
        let text = c["text"].as_str().expect("text");
        let ids = ids_of(&c["ids"]);
        let with_bos = c["bos"].as_bool().unwrap_or(false);
        let body: Vec<u32> = if with_bos { ids[1..].to_vec() } else { ids.clone() };
        if with_bos {
            assert_eq!(ids[0], bos, "{text:?}");
        }
        assert_eq!(t.encode(text, with_bos, false).unwrap(), ids, "encode {text:?} bos={with_bos}");
        assert_eq!(t.encode(text, false, false).unwrap(), body, "encode {text:?} without BOS");
        let mut b = vec![bos];
        b.extend(&body);
        assert_eq!(t.encode(text, true, false).unwrap(), b, "encode {text:?} with BOS");
        let expected = c.get("decoded").and_then(Value::as_str).unwrap_or(text);
        assert_eq!(String::from_utf8(t.decode(&body, false).unwrap()).unwrap(), expected, "decode {body:?}");
        // BOS decodes to nothing.
        assert_eq!(String::from_utf8(t.decode(&ids, false).unwrap()).unwrap(), expected);
        n += 1;
    }
    n
}

#[test]
fn llama2_visible_cases() {
    let cases = jsonl("cases-visible.jsonl");
    let n = check_cases(llama2(), &cases, "llama2");
    assert!(n >= 30, "only {n} llama2 cases");
}

#[test]
fn llama2_extra_cases() {
    // Generated with make_cases.py (python sentencepiece): CJK, emoji, code, whitespace, NUL, ▁.
    let cases = jsonl("cases-extra-llama2.jsonl");
    let n = check_cases(llama2(), &cases, "llama2");
    assert!(n >= 200, "only {n} cases");
}

#[test]
fn llama2_via_gguf_vocab_matches() {
    let t = Tokenizer::from_gguf(gguf_vocab_from(llama2()), "llama2 as gguf").unwrap();
    assert_eq!(t.format(), TokenizerFormat::Gguf);
    assert_eq!(t.n_vocab(), 32000);
    // LLaMA 2's normalizer does not remove whitespace, so the GGUF form agrees everywhere.
    check_cases(&t, &jsonl("cases-visible.jsonl"), "llama2");
    check_cases(&t, &jsonl("cases-extra-llama2.jsonl"), "llama2");
}

/// `t` written as llama2.c's `export.py` writes a tokenizer `.bin`.
fn llama2c_bin_from(t: &Tokenizer) -> Vec<u8> {
    let mut records = Vec::new();
    let mut max_len = 0;
    for id in 0..t.n_vocab() as u32 {
        let piece = match id {
            1 => "\n<s>\n".to_string(),
            2 => "\n</s>\n".to_string(),
            _ => t.piece(id).unwrap().replace('\u{2581}', " "),
        };
        max_len = max_len.max(piece.len());
        records.extend(t.score(id).unwrap().to_le_bytes());
        records.extend((piece.len() as i32).to_le_bytes());
        records.extend(piece.as_bytes());
    }
    [(max_len as u32).to_le_bytes().to_vec(), records].concat()
}

#[test]
fn llama2_as_llama2c_bin_matches() {
    let bin = llama2c_bin_from(llama2());
    let t = Tokenizer::from_file_bytes(&bin, "tokenizer.bin").unwrap();
    assert_eq!(t.format(), TokenizerFormat::Llama2cBin);
    assert_eq!(t.n_vocab(), 32000);
    check_cases(&t, &jsonl("cases-visible.jsonl"), "llama2");
    check_cases(&t, &jsonl("cases-extra-llama2.jsonl"), "llama2");
    // The same .bin construction reproduces tok512.bin byte for byte.
    assert_eq!(llama2c_bin_from(tok512_model()), read("tok512.bin"));
}

#[test]
fn llama2_facts() {
    let t = llama2();
    assert_eq!(t.n_vocab(), 32000);
    assert_eq!(t.bos(), Some(1));
    assert_eq!(t.eos(), Some(2));
    assert_eq!(t.unk(), 0);
    assert_eq!(t.version(), 2);
    assert_eq!(t.format(), TokenizerFormat::SentencePiece);
    assert!(t.is_eog(2));
    assert!(!t.is_eog(1) && !t.is_eog(13));
    assert_eq!(t.token_type(0), Some(TokenType::Unknown));
    assert_eq!(t.token_type(1), Some(TokenType::Control));
    assert_eq!(t.token_type(3), Some(TokenType::Byte));
    assert_eq!(t.token_type(259), Some(TokenType::Normal));
    assert_eq!(t.token_type(32000), None);
    assert_eq!(t.piece(15043), Some("\u{2581}Hello"));
    assert_eq!(t.score(260), Some(-1.0));
    assert!(format!("{t:?}").contains("n_vocab: 32000"));
    assert_eq!(t.encode("", false, false).unwrap(), Vec::<u32>::new());
    assert_eq!(t.encode("", true, false).unwrap(), vec![1]);
    assert_eq!(t.encode("Hello", false, false).unwrap(), vec![15043]);
    assert_eq!(t.encode(" Hello", false, false).unwrap(), vec![29871, 15043]);
    assert_eq!(t.encode("\n", false, false).unwrap(), vec![29871, 13]);
    assert_eq!(t.encode("🦙", false, false).unwrap(), vec![29871, 243, 162, 169, 156]);
    assert_eq!(t.decode(&[], false).unwrap(), b"");
}

#[test]
fn tokenizer_is_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Tokenizer>();
}

#[test]
fn llama2_parse_special() {
    let t = llama2();
    // Plain text by default (Meta / sentencepiece).
    assert_eq!(t.encode("<s>Hello</s>", false, false).unwrap(), vec![529, 29879, 29958, 10994, 829, 29879, 29958]);
    // Parsed: each stretch of text gets its own dummy prefix (llama.cpp / HF legacy).
    assert_eq!(t.encode("<s>Hello</s>", false, true).unwrap(), vec![1, 15043, 2]);
    assert_eq!(t.encode("<s>Hello</s>", true, true).unwrap(), vec![1, 1, 15043, 2]);
    assert_eq!(
        t.encode("Hi<unk>there", false, true).unwrap(),
        [t.encode("Hi", false, false).unwrap(), vec![0], t.encode("there", false, false).unwrap()].concat()
    );
    // Byte pieces stay text.
    assert_eq!(t.encode("<0x41>", false, true).unwrap(), t.encode("<0x41>", false, false).unwrap());
    assert_eq!(t.encode("</s></s>", false, true).unwrap(), vec![2, 2]);
    assert_eq!(t.encode("<s", false, true).unwrap(), t.encode("<s", false, false).unwrap());
    // Decoding drops control tokens either way.
    assert_eq!(t.decode(&[1, 15043, 2], false).unwrap(), b"Hello");
    assert_eq!(t.decode(&[1, 15043, 2], true).unwrap(), b"Hello");
}

#[test]
fn llama2_decode_rules() {
    let t = llama2();
    // Only the very first text piece loses its leading space.
    assert_eq!(t.decode(&[15043, 15043], false).unwrap(), b"Hello Hello");
    assert_eq!(t.decode(&[1, 15043], false).unwrap(), b"Hello");
    assert_eq!(t.decode(&[29871, 15043], false).unwrap(), b" Hello");
    // Bytes before the first text piece count as text.
    assert_eq!(t.decode(&[13, 15043], false).unwrap(), b"\n Hello");
    // Unknown: " ⁇ ", or nothing with skip_special.
    assert_eq!(t.decode(&[0], false).unwrap(), " \u{2047} ".as_bytes());
    assert_eq!(t.decode(&[0, 15043], true).unwrap(), b"Hello");
    // Raw bytes, even when they are not UTF-8 on their own.
    assert_eq!(t.decode(&[243, 162], false).unwrap(), vec![0xF0, 0x9F]);
}

#[test]
fn decode_extra_cases() {
    // Random id sequences (text, ▁, byte, control and unknown ids) decoded by python sentencepiece.
    let cases = jsonl("decode-extra.jsonl");
    for c in &cases {
        let t = match c["model"].as_str().unwrap() {
            "llama2" => llama2(),
            "tok512" => tok512_model(),
            m => panic!("model {m}"),
        };
        let ids = ids_of(&c["ids"]);
        let got = String::from_utf8(t.decode(&ids, false).unwrap()).unwrap();
        assert_eq!(got, c["text"].as_str().unwrap(), "{} {ids:?}", c["model"]);
    }
    assert!(cases.len() >= 200);
}

#[test]
fn token_to_piece_values() {
    let t = llama2();
    assert_eq!(t.token_to_piece(13).unwrap(), b"\n");
    assert_eq!(t.token_to_piece(3).unwrap(), vec![0u8]);
    assert_eq!(t.token_to_piece(258).unwrap(), vec![0xFFu8]);
    assert_eq!(t.token_to_piece(243).unwrap(), vec![0xF0u8]);
    assert_eq!(t.token_to_piece(15043).unwrap(), b" Hello");
    assert_eq!(t.token_to_piece(29871).unwrap(), b" ");
    assert_eq!(t.token_to_piece(259).unwrap(), b"  ");
    assert_eq!(t.token_to_piece(1).unwrap(), b"");
    assert_eq!(t.token_to_piece(2).unwrap(), b"");
    assert_eq!(t.token_to_piece(0).unwrap(), " \u{2047} ".as_bytes());
    assert_eq!(t.token_to_piece(29889).unwrap(), b".");
    // Concatenated pieces = the text with its dummy-prefix space.
    let ids = t.encode("Hello world, 你好🦙", false, false).unwrap();
    let joined: Vec<u8> = ids.iter().flat_map(|&i| t.token_to_piece(i).unwrap()).collect();
    assert_eq!(joined, " Hello world, 你好🦙".as_bytes());
}

#[test]
fn out_of_range_ids() {
    for t in [llama2(), tok512_model(), tok512_bin()] {
        let n = t.n_vocab() as u32;
        let e = t.decode(&[1, n], false).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.message.contains(&n.to_string()), "{e}");
        assert_eq!(status_of(t.decode(&[u32::MAX], true)), Status::InvalidArgument);
        let e = t.token_to_piece(n).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.message.contains(&n.to_string()), "{e}");
        assert_eq!(status_of(t.token_to_piece(u32::MAX)), Status::InvalidArgument);
        assert!(t.token_to_piece(n - 1).is_ok());
    }
}

/// Check every llama2 dialog of a chat cases file; returns how many.
fn check_chat(name: &str) -> usize {
    let t = llama2();
    let mut n = 0;
    for c in jsonl(name).iter().filter(|c| c["model"] == "llama2") {
        let msgs: Vec<ChatMessage<'_>> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage { role: m["role"].as_str().unwrap(), content: m["content"].as_str().unwrap() })
            .collect();
        let ids = ids_of(&c["ids"]);
        assert_eq!(t.chat_tokenize(&msgs, true).unwrap(), ids, "{msgs:?}");
        // A dialog ending with the user gives the same ids without add_assistant.
        assert_eq!(t.chat_tokenize(&msgs, false).unwrap(), ids, "{msgs:?}");
        n += 1;
    }
    n
}

#[test]
fn llama2_chat_cases() {
    assert_eq!(check_chat("chat-visible.jsonl"), 4);
    // Meta's chat_completion re-implemented over python sentencepiece (gen_extra.py): whitespace
    // to strip, empty system/user, several exchanges, CJK, special-looking text.
    assert_eq!(check_chat("chat-extra-llama2.jsonl"), 8);
}

#[test]
fn llama2_chat_rules() {
    let t = llama2();
    let m = |role, content| ChatMessage { role, content };
    let enc = |s: &str, bos| t.encode(s, bos, false).unwrap();
    // Contents are stripped; text in them is never special.
    assert_eq!(t.chat_tokenize(&[m("user", "  <s>hi\n ")], true).unwrap(), enc("[INST] <s>hi [/INST]", true));
    // The system text is folded in before stripping (Meta strips the combined user text).
    assert_eq!(
        t.chat_tokenize(&[m("system", " sys "), m("user", "u ")], true).unwrap(),
        enc("[INST] <<SYS>>\n sys \n<</SYS>>\n\nu [/INST]", true)
    );
    // A finished dialog (add_assistant = false): every exchange closed with EOS.
    let dialog = [m("user", "What is 2+2?"), m("assistant", " 4 ")];
    let mut want = enc("[INST] What is 2+2? [/INST] 4 ", true);
    want.push(2);
    assert_eq!(t.chat_tokenize(&dialog, false).unwrap(), want);
    // Invalid dialogs.
    let bad: Vec<(Vec<ChatMessage<'_>>, bool)> = vec![
        (vec![], true),
        (vec![], false),
        (vec![m("system", "s")], true),
        (vec![m("system", "s")], false),
        (vec![m("assistant", "a")], false),
        (vec![m("user", "a"), m("user", "b")], true),
        (vec![m("user", "a"), m("system", "b"), m("user", "c")], true),
        (vec![m("system", "s"), m("system", "s"), m("user", "c")], true),
        (vec![m("user", "a"), m("assistant", "b")], true),
        (vec![m("tool", "a")], true),
        (vec![m("User", "a")], true),
    ];
    for (msgs, add) in bad {
        let e = t.chat_tokenize(&msgs, add).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument, "{msgs:?}");
        assert!(e.message.contains("chat_tokenize"), "{e}");
    }
}

/// The README table of stories260K (tok512), without BOS.
const TOK512_TABLE: [(&str, &[u32], &[u32]); 4] = [
    // (text, SentencePiece / transformers, llama2.c / llama.cpp)
    ("Hello  world", &[346, 306, 414, 263, 304, 341], &[346, 306, 414, 410, 263, 304, 341]),
    ("  Hi", &[320, 417], &[410, 410, 320, 417]),
    ("Hi  ", &[320, 417], &[320, 417, 410, 410]),
    ("é ü", &[410, 485, 410, 198, 191], &[410, 485, 410, 198, 191]),
];

#[test]
fn tok512_readme_table() {
    let from_model = tok512_model();
    let from_bin = tok512_bin();
    let from_gguf = Tokenizer::from_gguf(gguf_vocab_from(from_model), "tok512 gguf").unwrap();
    assert_eq!(from_model.format(), TokenizerFormat::SentencePiece);
    assert_eq!(from_bin.format(), TokenizerFormat::Llama2cBin);
    for (text, spm, llama2c) in TOK512_TABLE {
        let with_bos = |ids: &[u32]| [&[1u32][..], ids].concat();
        assert_eq!(from_model.encode(text, true, false).unwrap(), with_bos(spm), "{text:?} .model");
        assert_eq!(from_bin.encode(text, true, false).unwrap(), with_bos(llama2c), "{text:?} .bin");
        assert_eq!(from_gguf.encode(text, true, false).unwrap(), with_bos(llama2c), "{text:?} gguf");
    }
    // Whitespace-free text agrees everywhere.
    let text = "Once upon a time, Lily saw a big red ball.";
    let ids = from_model.encode(text, true, false).unwrap();
    assert_eq!(from_bin.encode(text, true, false).unwrap(), ids);
    assert_eq!(from_gguf.encode(text, true, false).unwrap(), ids);
    assert_eq!(from_bin.decode(&ids, false).unwrap(), text.as_bytes());
    assert_eq!(from_model.decode(&ids, false).unwrap(), text.as_bytes());
    // Decoding the llama2.c-style ids keeps the spaces.
    assert_eq!(from_bin.decode(&with_bos_ids(TOK512_TABLE[1].2), false).unwrap(), b"  Hi");
}

fn with_bos_ids(ids: &[u32]) -> Vec<u32> {
    [&[1u32][..], ids].concat()
}

#[test]
fn tok512_bin_matches_model() {
    let (m, b) = (tok512_model(), tok512_bin());
    assert_eq!(m.n_vocab(), 512);
    assert_eq!(b.n_vocab(), 512);
    assert_eq!((b.bos(), b.eos(), b.unk()), (Some(1), Some(2), 0));
    for id in 0..512u32 {
        assert_eq!(m.score(id), b.score(id), "score of {id}");
        assert_eq!(m.token_type(id), b.token_type(id), "type of {id}");
        if id != 0 {
            // tok512.model has a literal (escaped) unk_surface; the .bin uses " ⁇ ".
            assert_eq!(m.piece(id), b.piece(id), "piece {id}");
            assert_eq!(m.token_to_piece(id).unwrap(), b.token_to_piece(id).unwrap(), "{id}");
        }
    }
    assert_eq!(b.piece(1), Some("<s>"));
    assert_eq!(b.piece(2), Some("</s>"));
    assert_eq!(b.token_to_piece(410).unwrap(), b" ");
    assert_eq!(b.token_to_piece(13).unwrap(), b"\n");
    assert_eq!(b.token_to_piece(0).unwrap(), " \u{2047} ".as_bytes());
    assert_eq!(b.encode("<s>x</s>", false, true).unwrap()[0], 1);
}

#[test]
fn tok512_extra_cases() {
    // python sentencepiece on tok512.model (remove_extra_whitespaces: true).
    let cases = jsonl("cases-extra-tok512.jsonl");
    assert!(check_cases(tok512_model(), &cases, "tok512") >= 100);
}

#[test]
fn tok512_variant_models() {
    // tok512.model edited with the protobuf API (user-defined, unused and control pieces; no byte
    // fallback with a custom unk_surface; escape_whitespaces off), encoded / decoded by python
    // sentencepiece.
    for v in ["variant1", "variant2", "variant3"] {
        let t = load(&format!("tok512-{v}.model"));
        let cases = jsonl(&format!("cases-tok512-{v}.jsonl"));
        assert!(cases.len() > 100);
        for c in &cases {
            let expected = c["decoded"].as_str().unwrap();
            if let Some(text) = c.get("text").and_then(Value::as_str) {
                let ids = ids_of(&c["ids"]);
                assert_eq!(t.encode(text, false, false).unwrap(), ids, "{v} encode {text:?}");
                let got = String::from_utf8(t.decode(&ids, false).unwrap()).unwrap();
                assert_eq!(got, expected, "{v} decode {ids:?}");
            } else {
                let ids = ids_of(&c["decode_ids"]);
                let got = String::from_utf8(t.decode(&ids, false).unwrap()).unwrap();
                assert_eq!(got, expected, "{v} decode {ids:?}");
            }
        }
    }
    let t = load("tok512-variant1.model");
    assert_eq!(t.n_vocab(), 514);
    assert_eq!(t.token_type(265), Some(TokenType::Unused));
    assert_eq!(t.token_type(512), Some(TokenType::UserDefined));
    assert_eq!(t.encode("a<ctrl>b", false, true).unwrap()[1], 513);
    assert_eq!(t.encode("<|im_start|>", false, false).unwrap(), vec![410, 512]);
}

#[test]
fn gguf_file_vocab() {
    // The embedded vocabulary of the stories260K GGUF (llama.cpp behaviour: no whitespace removal).
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/stories260K/stories260K-f32.gguf");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("skipping: {} not present", path.display());
        return;
    };
    let gguf = runllama::formats::gguf::parse(&bytes, "stories260K-f32.gguf").unwrap();
    let vocab = gguf.vocab().unwrap().expect("embedded vocab");
    let t = Tokenizer::from_gguf(vocab, "stories260K-f32.gguf").unwrap();
    assert_eq!(t.n_vocab(), 512);
    assert_eq!((t.bos(), t.eos(), t.unk()), (Some(1), Some(2), 0));
    assert!(t.add_bos_default());
    for (text, _, llama_cpp) in TOK512_TABLE {
        assert_eq!(t.encode(text, true, false).unwrap(), with_bos_ids(llama_cpp), "{text:?}");
    }
    for id in 0..512 {
        assert_eq!(t.token_to_piece(id).unwrap(), tok512_bin().token_to_piece(id).unwrap());
    }
}

#[test]
fn gguf_vocab_errors() {
    let good = gguf_vocab_from(tok512_model());
    assert!(Tokenizer::from_gguf(good.clone(), "x").is_ok());
    let with = |f: &dyn Fn(&mut GgufVocab)| {
        let mut v = good.clone();
        f(&mut v);
        Tokenizer::from_gguf(v, "test.gguf")
    };
    let e = with(&|v| v.model = "gpt2".into()).unwrap_err();
    assert_eq!(e.status, Status::Unsupported);
    assert!(e.message.contains("LLaMA 3"), "{e}");
    assert_eq!(status_of(with(&|v| v.model = "bert".into())), Status::Unsupported);
    let e = with(&|v| v.scores.as_mut().unwrap().pop().map(drop).unwrap()).unwrap_err();
    assert_eq!(e.status, Status::Format);
    assert!(e.message.contains("test.gguf") && e.message.contains("scores"), "{e}");
    assert_eq!(status_of(with(&|v| v.token_types.as_mut().unwrap().push(1))), Status::Format);
    assert_eq!(status_of(with(&|v| v.token_types.as_mut().unwrap()[5] = 9)), Status::Format);
    assert_eq!(status_of(with(&|v| v.token_types.as_mut().unwrap()[300] = 6)), Status::Format);
    let e = with(&|v| v.bos = Some(512)).unwrap_err();
    assert_eq!(e.status, Status::Format);
    assert!(e.message.contains("bos_token_id"), "{e}");
    assert_eq!(status_of(with(&|v| v.eos = Some(u32::MAX))), Status::Format);
    assert_eq!(status_of(with(&|v| v.unk = Some(9999))), Status::Format);
    assert_eq!(status_of(with(&|v| v.tokens.clear())), Status::Format);
    // Optional arrays may be missing: defaults, inferred types.
    let t = with(&|v| {
        v.scores = None;
        v.token_types = None;
        v.bos = None;
        v.eos = None;
        v.unk = None;
        v.add_space_prefix = Some(false);
    })
    .unwrap();
    assert_eq!((t.bos(), t.eos(), t.unk()), (Some(1), Some(2), 0));
    assert_eq!(t.token_type(3), Some(TokenType::Byte));
    assert_eq!(t.token_type(1), Some(TokenType::Control));
    assert_eq!(t.encode("é ü", false, false).unwrap()[0], 485);
}

/// About `len` bytes of English-like text with code, digits and non-ASCII mixed in.
fn prose(len: usize) -> String {
    let words = [
        "Once",
        "upon",
        "a",
        "time,",
        "there",
        "was",
        "a",
        "little",
        "girl",
        "named",
        "Lily.",
        "She",
        "loved",
        "to",
        "play",
        "outside",
        "in",
        "the",
        "sunshine!",
        "fn",
        "main()",
        "{",
        "x",
        "=",
        "42;",
        "}",
        "\n",
        "café",
        "你好",
        "🦙",
        "3.14159",
        "\t",
        "    ",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(words[(i * 7 + i / 3) % words.len()]);
        s.push(' ');
        i += 1;
    }
    s
}

#[test]
fn long_inputs_are_fast() {
    let mib = 1 << 20;
    let cases: Vec<(&Tokenizer, String)> = vec![
        (llama2(), " ".repeat(mib)),
        (llama2(), "a".repeat(mib)),
        (llama2(), "ab ".repeat(mib / 3)),
        (llama2(), "中".repeat(mib / 3)),
        (llama2(), prose(mib)),
        (tok512_model(), prose(mib)),
        (tok512_model(), " ".repeat(mib)),
        (tok512_model(), "a".repeat(mib)),
        (tok512_bin(), " ".repeat(mib)),
    ];
    for (t, text) in cases {
        let start = Instant::now();
        let ids = t.encode(&text, true, false).unwrap();
        let took = start.elapsed();
        eprintln!("{} bytes -> {} ids in {took:?}", text.len(), ids.len());
        // Generous for unoptimized builds; release takes well under a second.
        assert!(took < Duration::from_secs(20), "took {took:?}");
        let decoded = t.decode(&ids, false).unwrap();
        let expected = if t.format() == TokenizerFormat::SentencePiece && t.n_vocab() == 512 {
            // tok512.model removes extra whitespace.
            text.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
        } else {
            text
        };
        assert_eq!(decoded.len(), expected.len());
        assert!(decoded == expected.as_bytes());
    }
}

#[test]
fn truncated_sentencepiece_models_are_format_errors() {
    // Every prefix of tok512.model (the normalizer_spec is the last field, so none is valid).
    let full = read("tok512.model");
    for len in 0..full.len() {
        let r = Tokenizer::from_file_bytes(&full[..len], "tok512.model");
        let e = r.expect_err(&format!("prefix of {len} bytes loaded"));
        assert_eq!(e.status, Status::Format, "prefix {len}: {e}");
        assert!(e.message.contains("tok512.model"), "{e}");
    }
    // A spread of prefixes of the LLaMA 2 model, dense near the start and the end.
    let full = read("llama2/tokenizer.model");
    let mut offsets: Vec<usize> = (0..300).collect();
    offsets.extend((300..full.len()).step_by(4999));
    offsets.extend(full.len() - 400..full.len());
    for len in offsets {
        let e = Tokenizer::from_file_bytes(&full[..len], "tokenizer.model")
            .expect_err(&format!("prefix of {len} bytes loaded"));
        assert_eq!(e.status, Status::Format, "prefix {len}: {e}");
    }
    // The error names the byte offset.
    let e = Tokenizer::from_file_bytes(&full[..1000], "tokenizer.model").unwrap_err();
    assert!(e.message.contains("byte offset"), "{e}");
}

#[test]
fn corrupted_sentencepiece_models_never_panic() {
    let full = read("tok512.model");
    for i in 0..full.len() {
        for x in [0xFFu8, 0x80, 0x01] {
            let mut b = full.clone();
            b[i] ^= x;
            if let Err(e) = Tokenizer::from_file_bytes(&b, "tok512.model") {
                assert!(matches!(e.status, Status::Format | Status::Unsupported), "byte {i} ^ {x:#x}: {e}");
            }
        }
    }
    // Pseudo-random garbage, some of it starting like a protobuf or a llama2.c file.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2000 {
        let len = (next() % 600) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match (round % 4, b.len()) {
            (0, n) if n > 0 => b[0] = 0x0a,
            (1, n) if n > 4 => {
                b[0] = 8;
                b[1] = 0;
                b[2] = 0;
                b[3] = 0;
            }
            _ => {}
        }
        if let Err(e) = Tokenizer::from_file_bytes(&b, "garbage") {
            assert_eq!(e.status, Status::Format, "{e}");
        }
    }
}

/// Protobuf encoding helpers for hand-made models.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_len(field: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn field_varint(field: u64, v: u64, out: &mut Vec<u8>) {
    varint(field << 3, out);
    varint(v, out);
}

/// Unknown fields of every wire type, including nested groups.
fn unknown_fields() -> Vec<u8> {
    let mut u = Vec::new();
    field_varint(1000, u64::MAX, &mut u);
    varint(1001 << 3 | 1, &mut u);
    u.extend_from_slice(&7u64.to_le_bytes());
    field_len(1002, b"skip me", &mut u);
    varint(1003 << 3 | 5, &mut u);
    u.extend_from_slice(&7u32.to_le_bytes());
    varint(1004 << 3 | 3, &mut u); // start group 1004
    field_varint(1, 5, &mut u);
    varint(1005 << 3 | 3, &mut u); // nested group 1005
    field_len(2, b"x", &mut u);
    varint(1005 << 3 | 4, &mut u);
    varint(1004 << 3 | 4, &mut u); // end group 1004
    u
}

/// A small model: <unk>, <s>, </s>, then normal pieces; trainer/normalizer as given.
fn small_model(pieces: &[(&str, f32, u64)], trainer: &[u8], normalizer: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for (p, s, t) in pieces {
        let mut sp = Vec::new();
        field_len(1, p.as_bytes(), &mut sp);
        varint(2 << 3 | 5, &mut sp);
        sp.extend_from_slice(&s.to_le_bytes());
        field_varint(3, *t, &mut sp);
        field_len(1, &sp, &mut m);
    }
    field_len(2, trainer, &mut m);
    field_len(3, normalizer, &mut m);
    m
}

fn bpe_trainer() -> Vec<u8> {
    let mut t = Vec::new();
    field_varint(3, 2, &mut t);
    t
}

fn no_ws_normalizer() -> Vec<u8> {
    let mut n = Vec::new();
    field_len(1, b"identity", &mut n);
    field_varint(4, 0, &mut n);
    n
}

const SMALL: [(&str, f32, u64); 8] = [
    ("<unk>", 0.0, 2),
    ("<s>", 0.0, 3),
    ("</s>", 0.0, 3),
    ("\u{2581}", -1.0, 1),
    ("a", -2.0, 1),
    ("b", -3.0, 1),
    ("ab", -0.5, 1),
    ("\u{2581}ab", -0.25, 1),
];

#[test]
fn hand_made_models() {
    let model = small_model(&SMALL, &bpe_trainer(), &no_ws_normalizer());
    let t = Tokenizer::from_file_bytes(&model, "small.model").unwrap();
    assert_eq!(t.encode("ab ab", false, false).unwrap(), vec![7, 7]);
    // No byte fallback: a run of unknown characters is one <unk>.
    assert_eq!(t.encode("abxyz", false, false).unwrap(), vec![7, 0]);
    assert_eq!(t.decode(&[7, 0, 4], false).unwrap(), "ab \u{2047} a".as_bytes());
    assert_eq!(t.decode(&[7, 0, 4], true).unwrap(), b"aba");

    // Unknown fields everywhere are skipped.
    let mut with_unknown = unknown_fields();
    with_unknown.extend(&model);
    with_unknown.extend(unknown_fields());
    let t2 = Tokenizer::from_file_bytes(&with_unknown, "small.model").unwrap();
    assert_eq!(t2.encode("ab ab", false, false).unwrap(), vec![7, 7]);
    let mut trainer = unknown_fields();
    trainer.extend(bpe_trainer());
    let mut normalizer = no_ws_normalizer();
    normalizer.extend(unknown_fields());
    let t3 = Tokenizer::from_file_bytes(&small_model(&SMALL, &trainer, &normalizer), "s").unwrap();
    assert_eq!(t3.encode("ab ab", false, false).unwrap(), vec![7, 7]);

    // A non-BPE model type is Unsupported.
    for ty in [1u64, 3, 4] {
        let mut tr = Vec::new();
        field_varint(3, ty, &mut tr);
        let e = Tokenizer::from_file_bytes(&small_model(&SMALL, &tr, &no_ws_normalizer()), "u.model").unwrap_err();
        assert_eq!(e.status, Status::Unsupported, "{e}");
        assert!(e.message.contains("u.model"), "{e}");
    }
    // Default model_type (absent) is UNIGRAM.
    assert_eq!(
        status_of(Tokenizer::from_file_bytes(&small_model(&SMALL, &[], &no_ws_normalizer()), "u")),
        Status::Unsupported
    );
    // A precompiled_charsmap (NFKC rules) is Unsupported.
    let mut nfkc = Vec::new();
    field_len(1, b"nmt_nfkc", &mut nfkc);
    field_len(2, &[1, 2, 3, 4, 5], &mut nfkc);
    assert_eq!(
        status_of(Tokenizer::from_file_bytes(&small_model(&SMALL, &bpe_trainer(), &nfkc), "n")),
        Status::Unsupported
    );

    // Inconsistent models are Format errors.
    let bad_models: Vec<Vec<(&str, f32, u64)>> = vec![
        vec![("<s>", 0.0, 3), ("a", 0.0, 1)],                  // no <unk>
        vec![("<unk>", 0.0, 2), ("<u2>", 0.0, 2)],             // two <unk>
        vec![("<unk>", 0.0, 2), ("a", 0.0, 1), ("a", 0.0, 1)], // duplicate
        vec![("<unk>", 0.0, 2), ("", 0.0, 1)],                 // empty piece
        vec![("<unk>", 0.0, 2), ("a", 0.0, 9)],                // bad type
        vec![("<unk>", 0.0, 2), ("<0x41>", 0.0, 6)],           // byte piece, byte_fallback off
    ];
    for pieces in bad_models {
        let e = Tokenizer::from_file_bytes(&small_model(&pieces, &bpe_trainer(), &no_ws_normalizer()), "bad.model")
            .unwrap_err();
        assert_eq!(e.status, Status::Format, "{pieces:?}: {e}");
        assert!(e.message.contains("bad.model"), "{e}");
    }
    // byte_fallback without the 256 byte pieces.
    let mut tr = bpe_trainer();
    field_varint(35, 1, &mut tr);
    let pieces = [("<unk>", 0.0, 2), ("<0x41>", 0.0, 6)];
    assert_eq!(
        status_of(Tokenizer::from_file_bytes(&small_model(&pieces, &tr, &no_ws_normalizer()), "b")),
        Status::Format
    );
    // Missing trainer_spec / normalizer_spec.
    let mut only_pieces = Vec::new();
    field_len(1, &[0x0a, 1, b'a'], &mut only_pieces);
    assert_eq!(status_of(Tokenizer::from_file_bytes(&only_pieces, "p")), Status::Format);
    // Wire-level garbage: bad wire type, field 0, unterminated group, overlong varint.
    for junk in [
        vec![0x0a, 0x02, 0x0f, 0x00],
        vec![0x0a, 0x01, 0x00],
        vec![0x12, 0x02, 0x1b, 0x08],
        vec![0x12, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0x1a, 0x02, 0x0c, 0x00],
        vec![0x0a, 0x03, 0x0a, 0x02, 0xff, 0xfe],
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    ] {
        let e = Tokenizer::from_file_bytes(&junk, "junk.model").unwrap_err();
        assert_eq!(e.status, Status::Format, "{junk:?}: {e}");
        assert!(e.message.contains("byte offset"), "{junk:?}: {e}");
    }
}

#[test]
fn llama2c_bin_errors() {
    let full = read("tok512.bin");
    // Record boundaries of the file.
    let mut bounds = vec![4usize];
    let mut pos = 4;
    while pos < full.len() {
        let len = i32::from_le_bytes(full[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 8 + len;
        bounds.push(pos);
    }
    assert_eq!(bounds.len(), 513);
    for len in 0..full.len() {
        let r = Tokenizer::from_file_bytes(&full[..len], "tok512.bin");
        match bounds.iter().position(|&b| b == len) {
            // The vocabulary size is not stored: a cut at a record boundary is a smaller vocab.
            Some(k) if k >= 3 => assert_eq!(r.unwrap().n_vocab(), k),
            _ => {
                let e = r.expect_err(&format!("prefix {len}"));
                assert_eq!(e.status, Status::Format, "prefix {len}: {e}");
                assert!(e.message.contains("tok512.bin"), "{e}");
            }
        }
    }
    let patch = |at: usize, bytes: &[u8]| {
        let mut b = full.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        Tokenizer::from_file_bytes(&b, "tok512.bin")
    };
    // Negative length, length above max_token_length, invalid UTF-8.
    let e = patch(8, &(-1i32).to_le_bytes()).unwrap_err();
    assert_eq!(e.status, Status::Format);
    assert!(e.message.contains("byte offset 4"), "{e}");
    assert_eq!(status_of(patch(8, &1000i32.to_le_bytes())), Status::Format);
    assert_eq!(status_of(patch(12, &[0xff])), Status::Format);
    // max_token_length smaller than the longest token.
    assert_eq!(status_of(patch(0, &2u32.to_le_bytes())), Status::Format);
}

#[test]
fn other_formats_and_garbage() {
    let unsupported = [
        &b"IQ== 0\nIg== 1\nIw== 2\n"[..],
        b"IQ== 0\r\n",
        br#"{"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}"#,
        b"\xef\xbb\xbf\n  {\"model\": {}}",
    ];
    for b in unsupported {
        let e = Tokenizer::from_file_bytes(b, "tok.file").unwrap_err();
        assert_eq!(e.status, Status::Unsupported, "{e}");
        assert!(e.message.contains("LLaMA 3") && e.message.contains("tok.file"), "{e}");
    }
    let garbage = [
        &b""[..],
        b"\x0a",
        b"hello world\n",
        b"{\"not\": \"a tokenizer\"}",
        b"{ broken json",
        b"\x00\x00\x00\x00",
        b"\x05\x00\x00\x00\x00\x00",
        b"GGUF\x03\x00\x00\x00",
        &[0xffu8; 64],
    ];
    for b in garbage {
        let e = Tokenizer::from_file_bytes(b, "junk.bin").unwrap_err();
        assert_eq!(e.status, Status::Format, "{b:?}: {e}");
        assert!(e.message.contains("junk.bin"), "{e}");
    }
}

/// This file's hostile-input cases again under a 1 GiB address space (see
/// `common::passes_under_a_1_gib_address_space`).
#[cfg(target_os = "linux")]
#[test]
fn hostile_cases_pass_under_a_1_gib_address_space_limit() {
    common::passes_under_a_1_gib_address_space(&["corrupted_sentencepiece_models_never_panic", "--exact"]);
}
