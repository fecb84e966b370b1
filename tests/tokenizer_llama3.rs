//! LLaMA 3 tokenizer (tiktoken byte-level BPE): Meta's reference ids for the visible and
//! generated cases, special-token parsing, decoding, Meta's chat format, the three sources
//! (tiktoken file, `tokenizer.json`, GGUF `"gpt2"`) giving the same ids, hostile inputs, and
//! malformed files.
//!
//! Fixtures live in tests/data/tokenizers (see its README.md): `llama3/tokenizer.model` is Meta's
//! file; `cases-extra-llama3.jsonl` and `hostile-llama3.jsonl` come from `gen_extra_llama3.py`
//! (python tiktoken through make_cases.py). The `tokenizer.json` and GGUF vocabularies are built
//! here from the tiktoken file, as Hugging Face's converter builds them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use runllama::error::{Error, Status};
use runllama::tokenizer::{ChatMessage, GgufVocab, TokenType, Tokenizer, TokenizerFormat};
use serde_json::{json, Value};

const BOS: u32 = 128000;
const EOS: u32 = 128001;
const START_HEADER: u32 = 128006;
const END_HEADER: u32 = 128007;
const EOT: u32 = 128009;

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizers").join(name)
}

fn read(name: &str) -> Vec<u8> {
    let p = data_path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn llama3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let bytes = read("llama3/tokenizer.model");
        let t0 = Instant::now();
        let t = Tokenizer::from_file_bytes(&bytes, "llama3/tokenizer.model").unwrap_or_else(|e| panic!("{e}"));
        eprintln!("llama3 tiktoken file loaded in {:.3} s", t0.elapsed().as_secs_f64());
        t
    })
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

fn text_of(t: &Tokenizer, ids: &[u32], skip_special: bool) -> String {
    String::from_utf8(t.decode(ids, skip_special).unwrap()).expect("decoded text is UTF-8")
}

/// Check encode (as the case says, and with / without BOS), and the decode round trip.
fn check_cases(t: &Tokenizer, cases: &[Value]) -> usize {
    let mut n = 0;
    for c in cases.iter().filter(|c| c["model"] == "llama3") {
        let text = c["text"].as_str().expect("text");
        let ids = ids_of(&c["ids"]);
        let with_bos = c["bos"].as_bool().expect("bos");
        let special = c["special"].as_bool().unwrap_or(false);
        if special {
            assert_eq!(c["names"], "3.0", "special-token naming of {text:?}");
        }
        let body: Vec<u32> = if with_bos { ids[1..].to_vec() } else { ids.clone() };
        if with_bos {
            assert_eq!(ids[0], BOS, "{text:?}");
        }
        assert_eq!(t.encode(text, with_bos, special).unwrap(), ids, "encode {text:?} bos={with_bos} special={special}");
        assert_eq!(t.encode(text, !with_bos, special).unwrap().len(), body.len() + usize::from(!with_bos));
        // Decoding gives the text back (special ids as their names), BOS included as its name.
        let expected = c.get("decoded").and_then(Value::as_str).unwrap_or(text);
        assert_eq!(text_of(t, &body, false), expected, "decode {body:?}");
        if with_bos {
            assert_eq!(text_of(t, &ids, false), format!("<|begin_of_text|>{expected}"));
        }
        // Skipping special tokens drops exactly the special ids.
        let plain: Vec<u32> = ids.iter().copied().filter(|&id| id < BOS).collect();
        assert_eq!(t.decode(&ids, true).unwrap(), t.decode(&plain, false).unwrap(), "{text:?}");
        if !special {
            assert_eq!(text_of(t, &ids, true), expected);
        }
        n += 1;
    }
    n
}

#[test]
fn tiktoken_file_properties() {
    let t = llama3();
    assert_eq!(t.format(), TokenizerFormat::Tiktoken);
    assert_eq!(t.version(), 3);
    assert_eq!(t.n_vocab(), 128_256);
    assert_eq!((t.bos(), t.eos()), (Some(BOS), Some(EOS)));
    assert!(t.add_bos_default());
    assert_eq!(t.unk(), u32::MAX);
    for (name, id) in [
        ("<|begin_of_text|>", 128000),
        ("<|end_of_text|>", 128001),
        ("<|reserved_special_token_0|>", 128002),
        ("<|reserved_special_token_3|>", 128005),
        ("<|start_header_id|>", START_HEADER),
        ("<|end_header_id|>", END_HEADER),
        ("<|reserved_special_token_4|>", 128008),
        ("<|eot_id|>", EOT),
        ("<|reserved_special_token_5|>", 128010),
        ("<|reserved_special_token_250|>", 128255),
    ] {
        assert_eq!(t.special_id(name), Some(id), "{name}");
        assert_eq!(t.piece(id), Some(name));
        assert_eq!(t.token_to_piece(id).unwrap(), name.as_bytes());
        assert_eq!(t.token_type(id), Some(TokenType::Control));
        assert_eq!(t.score(id), Some(0.0));
    }
    // Llama 3.1 names are not Llama 3's.
    assert_eq!(t.special_id("<|eom_id|>"), None);
    assert_eq!(t.special_id("<|python_tag|>"), None);
    // Stop tokens: <|end_of_text|> and <|eot_id|>.
    let eog: Vec<u32> = (0..t.n_vocab() as u32).filter(|&id| t.is_eog(id)).collect();
    assert_eq!(eog, [EOS, EOT]);
    // The first rank is "!" (not byte 0), a space is "Ġ", ranks are scores.
    assert_eq!(t.token_to_piece(0).unwrap(), b"!");
    assert_eq!(t.token_to_piece(220).unwrap(), b" ");
    assert_eq!(t.piece(220), Some("\u{120}"));
    assert_eq!(t.piece(271), Some("\u{10a}\u{10a}"));
    assert_eq!(t.token_type(9906), Some(TokenType::Normal));
    assert_eq!(t.score(9906), Some(-9906.0));
    assert_eq!(t.piece(128_256), None);
    assert_eq!(t.token_type(128_256), None);
    let dbg = format!("{t:?}");
    assert!(dbg.contains("Tiktoken") && dbg.contains("128256"), "{dbg}");
}

#[test]
fn done_criterion_chinese_sentence() {
    // Meta's ids (python tiktoken + Meta's Tokenizer.encode, via make_cases.py), with BOS.
    let ids = llama3().encode("为了解决广大人民群众玩不了大模型推理的根本问题", true, false).unwrap();
    assert_eq!(
        ids,
        [
            128000, 109002, 114914, 82042, 27384, 104733, 104336, 107463, 106738, 124609, 27384, 123123, 84851, 22649,
            9554, 119045, 87219
        ]
    );
}

#[test]
fn meta_unit_test_ids() {
    // meta-llama/llama3 llama/test_tokenizer.py.
    let t = llama3();
    let mut ids = t.encode("This is a test sentence.", true, false).unwrap();
    ids.push(t.eos().unwrap());
    assert_eq!(ids, [128000, 2028, 374, 264, 1296, 11914, 13, 128001]);
    assert_eq!(
        text_of(t, &[128000, 2028, 374, 264, 1296, 11914, 13, 128001], false),
        "<|begin_of_text|>This is a test sentence.<|end_of_text|>"
    );
    assert_eq!(text_of(t, &[128000, 2028, 374, 264, 1296, 11914, 13, 128001], true), "This is a test sentence.");
    assert_eq!(t.encode("", false, false).unwrap(), Vec::<u32>::new());
    assert_eq!(t.encode("", true, true).unwrap(), [BOS]);
    // Digits in groups of at most 3, from the left; the last space of a run joins the word.
    assert_eq!(t.encode("1234567", false, false).unwrap(), [4513, 10961, 22]);
    assert_eq!(t.encode("  a", false, false).unwrap(), [220, 264]);
}

#[test]
fn visible_cases() {
    let n = check_cases(llama3(), &jsonl("cases-visible.jsonl"));
    assert!(n >= 30, "only {n} llama3 cases");
}

#[test]
fn special_visible_cases() {
    let n = check_cases(llama3(), &jsonl("cases-special-visible.jsonl"));
    assert_eq!(n, 4);
}

#[test]
fn extra_cases() {
    // Chinese, Japanese, Korean, emoji (ZWJ, flags, skin tones), code, whitespace runs, numbers,
    // contractions, special-looking text, random mixes; with and without BOS; parse-special lines.
    let cases = jsonl("cases-extra-llama3.jsonl");
    let n = check_cases(llama3(), &cases);
    assert!(n >= 1000, "only {n} cases");
    let specials = cases.iter().filter(|c| c["special"] == true).count();
    assert!(specials >= 30, "only {specials} parse-special cases");
}

#[test]
fn special_text_is_plain_unless_parsed() {
    let t = llama3();
    let plain = t.encode("<|eot_id|>", false, false).unwrap();
    assert!(plain.len() > 1 && plain.iter().all(|&id| id < BOS), "{plain:?}");
    assert_eq!(text_of(t, &plain, true), "<|eot_id|>");
    assert_eq!(t.encode("<|eot_id|>", false, true).unwrap(), [EOT]);
    assert_eq!(t.encode("<|begin_of_text|>", false, false).unwrap(), [27, 91, 7413, 3659, 4424, 91, 29]);
    // A name that is not one of the 256 stays text even when parsing.
    let ids = t.encode("<|eom_id|>", false, true).unwrap();
    assert!(ids.iter().all(|&id| id < BOS), "{ids:?}");
    // Leftmost match; text around it is encoded on its own.
    let ids = t.encode("a<|eot_id|>b<|end_of_text|>", true, true).unwrap();
    assert_eq!(ids, [BOS, t.encode("a", false, false).unwrap()[0], EOT, t.encode("b", false, false).unwrap()[0], EOS]);
}

#[test]
fn decode_and_pieces() {
    let t = llama3();
    // 🦙 is three tokens of partial UTF-8.
    let ids = t.encode("🦙", false, false).unwrap();
    assert_eq!(ids, [9468, 99, 247]);
    let pieces: Vec<Vec<u8>> = ids.iter().map(|&id| t.token_to_piece(id).unwrap()).collect();
    assert_eq!(pieces.concat(), "🦙".as_bytes());
    assert!(std::str::from_utf8(&pieces[0]).is_err());
    assert_eq!(t.decode(&ids[..2], false).unwrap(), &"🦙".as_bytes()[..3]);
    // Every ordinary token's piece is its bytes; decode of all ids = concatenated pieces.
    let all: Vec<u32> = (0..t.n_vocab() as u32).step_by(97).collect();
    let joined: Vec<u8> = all.iter().flat_map(|&id| t.token_to_piece(id).unwrap()).collect();
    assert_eq!(t.decode(&all, false).unwrap(), joined);
    // Out of range.
    assert_eq!(status_of(t.decode(&[1, 128_256], false)), Status::InvalidArgument);
    assert_eq!(status_of(t.token_to_piece(128_256)), Status::InvalidArgument);
    assert_eq!(status_of(t.token_to_piece(u32::MAX)), Status::InvalidArgument);
    let e = t.decode(&[5, u32::MAX], true).unwrap_err();
    assert!(e.message.contains("ids[1]"), "{e}");
    assert!(t.decode(&[], true).unwrap().is_empty());
}

#[test]
fn chat_visible() {
    let t = llama3();
    let mut n = 0;
    for c in jsonl("chat-visible.jsonl").iter().filter(|c| c["model"] == "llama3") {
        let msgs: Vec<ChatMessage<'_>> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage { role: m["role"].as_str().unwrap(), content: m["content"].as_str().unwrap() })
            .collect();
        let ids = ids_of(&c["ids"]);
        assert_eq!(t.chat_tokenize(&msgs, true).unwrap(), ids, "{msgs:?}");
        // Without the open assistant header.
        let open = [START_HEADER, 78191, END_HEADER, 271];
        assert_eq!(t.chat_tokenize(&msgs, false).unwrap(), ids[..ids.len() - 4], "{msgs:?}");
        assert_eq!(ids[ids.len() - 4..], open);
        n += 1;
    }
    assert_eq!(n, 4);
}

#[test]
fn chat_format() {
    let t = llama3();
    let m = |role, content| ChatMessage { role, content };
    // Meta's unit test (llama/test_tokenizer.py).
    let ids =
        t.chat_tokenize(&[m("system", "This is a test sentence."), m("user", "This is a response.")], true).unwrap();
    assert_eq!(
        ids,
        [
            128000, 128006, 9125, 128007, 271, 2028, 374, 264, 1296, 11914, 13, 128009, 128006, 882, 128007, 271, 2028,
            374, 264, 2077, 13, 128009, 128006, 78191, 128007, 271
        ]
    );
    // Contents are stripped (Python str.strip()) and never parsed for special tokens.
    let a = t.chat_tokenize(&[m("user", " \u{3000}\t<|eot_id|>Hi\n\n")], true).unwrap();
    let b = t.chat_tokenize(&[m("user", "<|eot_id|>Hi")], true).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.iter().filter(|&&id| id == EOT).count(), 1);
    let content = t.encode("<|eot_id|>Hi", false, false).unwrap();
    assert_eq!(a[5..5 + content.len()], content[..]);
    // Empty content, a finished exchange, and the reply header the model completes.
    let ids = t.chat_tokenize(&[m("user", ""), m("assistant", "ok")], false).unwrap();
    let ok = t.encode("ok", false, false).unwrap();
    let mut want = vec![BOS, START_HEADER, 882, END_HEADER, 271, EOT, START_HEADER, 78191, END_HEADER, 271];
    want.extend(&ok);
    want.push(EOT);
    assert_eq!(ids, want);
    // Roles in any order (as Meta's); the tool role of Llama 3.1.
    let ids = t.chat_tokenize(&[m("assistant", "a"), m("ipython", "{}")], true).unwrap();
    assert_eq!(&ids[..4], &[BOS, START_HEADER, 78191, END_HEADER]);
    let ipython = t.encode("ipython", false, false).unwrap();
    assert_eq!(ipython, [23799, 4690]);
    // Bad requests.
    assert_eq!(status_of(t.chat_tokenize(&[], true)), Status::InvalidArgument);
    let e = t.chat_tokenize(&[m("user", "a"), m("User", "b")], true).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("message 1") && e.message.contains("User"), "{e}");
    assert_eq!(status_of(t.chat_tokenize(&[m("<|eot_id|>", "a")], true)), Status::InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// The other sources, built from the tiktoken file.

/// GPT-2's byte-level alphabet (bytes_to_unicode).
fn gpt2_chars() -> [char; 256] {
    let keep = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut t = ['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        t[b as usize] = if keep(b) {
            char::from_u32(b).unwrap()
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap()
        };
    }
    t
}

fn gpt2(bytes: &[u8]) -> String {
    let t = gpt2_chars();
    bytes.iter().map(|&b| t[b as usize]).collect()
}

/// The ordinary tokens' bytes of `t` (ids 0..n_base).
fn base_tokens(t: &Tokenizer) -> Vec<Vec<u8>> {
    (0..t.n_vocab() as u32)
        .take_while(|&id| t.token_type(id) == Some(TokenType::Normal))
        .map(|id| t.token_to_piece(id).unwrap())
        .collect()
}

/// Merges as Hugging Face's tiktoken converter derives them: for each token in rank order, every
/// split into two tokens, ordered by the halves' ranks.
fn merges_of(tokens: &[Vec<u8>]) -> Vec<(String, String)> {
    let rank: HashMap<&[u8], usize> = tokens.iter().enumerate().map(|(i, b)| (b.as_slice(), i)).collect();
    let mut merges = Vec::new();
    for tok in tokens.iter().filter(|t| t.len() > 1) {
        let mut local: Vec<(usize, usize, usize)> =
            (1..tok.len()).filter_map(|k| Some((*rank.get(&tok[..k])?, *rank.get(&tok[k..])?, k))).collect();
        local.sort();
        merges.extend(local.into_iter().map(|(_, _, k)| (gpt2(&tok[..k]), gpt2(&tok[k..]))));
    }
    merges
}

/// Ordinary tokens' bytes by rank, and the merges derived from them.
type TokensAndMerges = (Vec<Vec<u8>>, Vec<(String, String)>);

/// An edit of a `tokenizer.json` and what its error message must contain.
type JsonEdit<'a> = (&'a dyn Fn(&mut Value), &'a str);

/// An edit of a GGUF vocabulary, the expected status and what its error message must contain.
type GgufEdit<'a> = (&'a dyn Fn(&mut GgufVocab), Status, &'a str);

fn llama3_tokens() -> &'static TokensAndMerges {
    static T: OnceLock<TokensAndMerges> = OnceLock::new();
    T.get_or_init(|| {
        let tokens = base_tokens(llama3());
        let merges = merges_of(&tokens);
        (tokens, merges)
    })
}

/// A Hugging Face `tokenizer.json` as `tokenizers` writes it for LLaMA 3.
fn tokenizer_json(tokens: &[Vec<u8>], merges: &[(String, String)], specials: &[String], pattern: &str) -> Value {
    let vocab: serde_json::Map<String, Value> =
        tokens.iter().enumerate().map(|(i, b)| (gpt2(b), Value::from(i))).collect();
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(k, s)| {
            json!({"id": tokens.len() + k, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let merges: Vec<Value> = merges.iter().map(|(a, b)| json!([a, b])).collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
        "post_processor": {"type": "TemplateProcessing"},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": true,
                  "vocab": vocab, "merges": merges}
    })
}

const PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn llama3_special_names(t: &Tokenizer) -> Vec<String> {
    (128_000..t.n_vocab() as u32).map(|id| t.piece(id).unwrap().to_owned()).collect()
}

fn gguf_vocab(t: &Tokenizer, merges: &[(String, String)]) -> GgufVocab {
    let n = t.n_vocab() as u32;
    GgufVocab {
        model: "gpt2".into(),
        tokens: (0..n).map(|i| t.piece(i).unwrap().to_owned()).collect(),
        scores: None,
        token_types: Some((0..n).map(|i| t.token_type(i).unwrap() as i32).collect()),
        merges: Some(merges.iter().map(|(a, b)| format!("{a} {b}")).collect()),
        bos: Some(BOS),
        eos: Some(EOS),
        unk: None,
        add_bos: Some(true),
        add_space_prefix: Some(false),
        pre: Some("llama-bpe".into()),
    }
}

/// The cases the other sources are compared on (all generated + visible ones).
fn all_cases() -> Vec<Value> {
    let mut cases = jsonl("cases-visible.jsonl");
    cases.extend(jsonl("cases-special-visible.jsonl"));
    cases.extend(jsonl("cases-extra-llama3.jsonl"));
    cases
}

fn same_as_tiktoken(other: &Tokenizer) {
    let t = llama3();
    assert_eq!(other.version(), 3);
    assert_eq!(other.n_vocab(), t.n_vocab());
    assert_eq!((other.bos(), other.eos()), (t.bos(), t.eos()));
    for id in (0..t.n_vocab() as u32).step_by(101).chain(127_990..128_256) {
        assert_eq!(other.token_to_piece(id).unwrap(), t.token_to_piece(id).unwrap(), "id {id}");
        assert_eq!(other.piece(id), t.piece(id), "id {id}");
        assert_eq!(other.token_type(id), t.token_type(id), "id {id}");
        assert_eq!(other.is_eog(id), t.is_eog(id), "id {id}");
    }
    let n = check_cases(other, &all_cases());
    assert!(n > 1000);
    let msgs = [ChatMessage { role: "system", content: "你好" }, ChatMessage { role: "user", content: "hi 🦙" }];
    assert_eq!(other.chat_tokenize(&msgs, true).unwrap(), t.chat_tokenize(&msgs, true).unwrap());
}

#[test]
fn tokenizer_json_gives_the_same_ids() {
    let (tokens, merges) = llama3_tokens();
    assert!(merges.len() > 250_000, "{} merges", merges.len());
    let json = tokenizer_json(tokens, merges, &llama3_special_names(llama3()), PATTERN);
    let bytes = serde_json::to_vec(&json).unwrap();
    let t0 = Instant::now();
    let t = Tokenizer::from_file_bytes(&bytes, "tokenizer.json").unwrap_or_else(|e| panic!("{e}"));
    eprintln!("tokenizer.json ({} bytes) loaded in {:.3} s", bytes.len(), t0.elapsed().as_secs_f64());
    assert_eq!(t.format(), TokenizerFormat::HfTokenizerJson);
    same_as_tiktoken(&t);
}

#[test]
fn gguf_vocab_gives_the_same_ids() {
    let (_, merges) = llama3_tokens();
    let v = gguf_vocab(llama3(), merges);
    let t0 = Instant::now();
    let t = Tokenizer::from_gguf(v.clone(), "llama3.gguf").unwrap_or_else(|e| panic!("{e}"));
    eprintln!("GGUF vocabulary loaded in {:.3} s", t0.elapsed().as_secs_f64());
    assert_eq!(t.format(), TokenizerFormat::GgufBpe);
    same_as_tiktoken(&t);
    // Without token types (specials inferred from their <|...|> form) and without merges.
    let bare = GgufVocab { token_types: None, merges: None, bos: None, eos: None, ..v.clone() };
    let t = Tokenizer::from_gguf(bare, "bare.gguf").unwrap();
    assert_eq!((t.bos(), t.eos(), t.n_vocab()), (Some(BOS), Some(EOS), 128_256));
    assert_eq!(
        t.encode("<|eot_id|> 中文", true, true).unwrap(),
        llama3().encode("<|eot_id|> 中文", true, true).unwrap()
    );
    // An instruct GGUF whose EOS is <|eot_id|>: both stop generation, add_bos_token is kept.
    let instruct = GgufVocab { eos: Some(EOT), add_bos: Some(false), ..v };
    let t = Tokenizer::from_gguf(instruct, "instruct.gguf").unwrap();
    assert_eq!(t.eos(), Some(EOT));
    assert!(t.is_eog(EOT) && t.is_eog(EOS) && !t.is_eog(BOS));
    assert!(!t.add_bos_default());
}

/// A real `tokenizer.json` (e.g. from Hugging Face or /work/shared/tools/make_random_llama.py),
/// when `RUNLLAMA_TEST_LLAMA3_TOKENIZER_JSON` names one; skipped otherwise.
#[test]
fn external_tokenizer_json_if_given() {
    let Some(path) = std::env::var_os("RUNLLAMA_TEST_LLAMA3_TOKENIZER_JSON") else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let t0 = Instant::now();
    let t = Tokenizer::from_file_bytes(&bytes, &path.to_string_lossy()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{} ({} bytes) loaded in {:.3} s", path.to_string_lossy(), bytes.len(), t0.elapsed().as_secs_f64());
    assert_eq!(t.format(), TokenizerFormat::HfTokenizerJson);
    same_as_tiktoken(&t);
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs

fn fnv1a64(ids: &[u32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for id in ids {
        for b in id.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Rebuild a `hostile-llama3.jsonl` text (as gen_extra_llama3.py builds it).
fn build_hostile(r: &Value) -> String {
    let chars = r["chars"].as_u64().unwrap() as usize;
    if let Some(alphabet) = r["lcg"].as_str() {
        let alphabet: Vec<char> = alphabet.chars().collect();
        let mut x = r["seed"].as_u64().unwrap();
        let mut s = String::with_capacity(chars * 3);
        for _ in 0..chars {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            s.push(alphabet[((x >> 33) % alphabet.len() as u64) as usize]);
        }
        return s;
    }
    let unit = r["unit"].as_str().unwrap();
    unit.repeat(chars / unit.chars().count()) + r["suffix"].as_str().unwrap_or("")
}

#[test]
fn hostile_inputs_are_fast_and_exact() {
    let t = llama3();
    // 1,000,000-character inputs in release builds; 200,000 in debug builds (same code paths:
    // Meta's 25,000-character cuts and 400,000-character chunks apply to both).
    let chars = if cfg!(debug_assertions) { 200_000 } else { 1_000_000 };
    let limit = Duration::from_secs(if cfg!(debug_assertions) { 10 } else { 2 });
    let mut n = 0;
    for r in jsonl("hostile-llama3.jsonl").iter().filter(|r| r["chars"] == chars) {
        let name = r["name"].as_str().unwrap();
        let text = build_hostile(r);
        let special = r["special"].as_bool().unwrap_or(false);
        let t0 = Instant::now();
        let ids = t.encode(&text, false, special).unwrap();
        let took = t0.elapsed();
        let t1 = Instant::now();
        let back = t.decode(&ids, false).unwrap();
        eprintln!(
            "hostile {name:>20} ({chars} chars, {} bytes): {} ids, encode {:.3} s, decode {:.3} s",
            text.len(),
            ids.len(),
            took.as_secs_f64(),
            t1.elapsed().as_secs_f64()
        );
        assert_eq!(ids.len() as u64, r["n_ids"].as_u64().unwrap(), "{name}");
        assert_eq!(ids[..16], ids_of(&r["head"])[..], "{name}");
        assert_eq!(ids[ids.len() - 16..], ids_of(&r["tail"])[..], "{name}");
        assert_eq!(fnv1a64(&ids), r["fnv1a64"].as_u64().unwrap(), "{name}: ids differ from Meta's");
        assert!(back == text.as_bytes(), "{name}: decode round trip");
        assert!(took < limit, "{name}: encoding took {took:?}");
        n += 1;
    }
    assert_eq!(n, 14);
}

#[test]
fn long_runs_are_cut_where_meta_cuts() {
    let t = llama3();
    // 25,000 spaces are one piece; 25,001 are cut into 25,000 + 1 before the regex (Meta).
    for (n, word) in [(24_999usize, "x"), (25_000, "x"), (25_001, "x"), (50_001, "")] {
        let text = " ".repeat(n) + word;
        let ids = t.encode(&text, false, false).unwrap();
        assert_eq!(t.decode(&ids, false).unwrap(), text.as_bytes(), "{n}");
    }
    let a = t.encode(&" ".repeat(25_001), false, false).unwrap();
    let mut b = t.encode(&" ".repeat(25_000), false, false).unwrap();
    b.extend(t.encode(" ", false, false).unwrap());
    assert_eq!(a, b);
}

#[test]
fn concurrent_encoding_agrees() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    let t = llama3();
    let texts = ["Hello world", "为了解决广大人民群众玩不了大模型推理的根本问题", "  \n\t 🦙 1234567 it's"];
    let want: Vec<Vec<u32>> = texts.iter().map(|s| t.encode(s, true, false).unwrap()).collect();
    std::thread::scope(|s| {
        for k in 0..8 {
            let want = &want;
            s.spawn(move || {
                for i in 0..200 {
                    let j = (i + k) % texts.len();
                    assert_eq!(t.encode(texts[j], true, false).unwrap(), want[j]);
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Malformed and foreign files (a small synthetic vocabulary: the 256 bytes + a few merges).

/// Tokens of a small tiktoken vocabulary: bytes in order, then "ab", "abc", " a", "  ".
fn small_tokens() -> Vec<Vec<u8>> {
    let mut t: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    t.extend([b"ab".to_vec(), b"abc".to_vec(), b" a".to_vec(), b"  ".to_vec()]);
    t
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let v =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[((v >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn tiktoken_file(tokens: &[Vec<u8>]) -> String {
    tokens.iter().enumerate().map(|(i, t)| format!("{} {i}\n", b64(t))).collect()
}

#[test]
fn small_tiktoken_file() {
    let file = tiktoken_file(&small_tokens());
    let t = Tokenizer::from_file_bytes(file.as_bytes(), "small.tiktoken").unwrap();
    assert_eq!((t.version(), t.n_vocab(), t.bos(), t.eos()), (3, 260 + 256, Some(260), Some(261)));
    assert_eq!(t.special_id("<|eot_id|>"), Some(269));
    assert_eq!(t.encode("abc ab  a", true, false).unwrap(), [260, 257, 32, 256, 32, 258]);
    assert_eq!(t.encode("abc<|eot_id|>", false, true).unwrap(), [257, 269]);
    // Windows line endings, blank lines and ranks out of order are fine.
    let mut lines: Vec<String> = file.lines().map(|l| format!("{l}\r\n")).collect();
    lines.reverse();
    lines.insert(3, "\r\n".into());
    let t2 = Tokenizer::from_file_bytes(lines.concat().as_bytes(), "crlf.tiktoken").unwrap();
    assert_eq!(t2.encode("abc ab  a", true, false).unwrap(), [260, 257, 32, 256, 32, 258]);
}

#[test]
fn malformed_tiktoken_files() {
    let good = tiktoken_file(&small_tokens());
    let lines: Vec<&str> = good.lines().collect();
    let with_line = |k: usize, line: &str| -> String {
        let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        l[k] = line.to_string();
        l.join("\n") + "\n"
    };
    let offset_of = |k: usize| lines[..k].iter().map(|l| l.len() + 1).sum::<usize>();
    let cases: Vec<(String, Vec<String>)> = vec![
        (with_line(5, "QQ=* 5"), vec!["line 6".into(), format!("byte offset {}", offset_of(5)), "base64".into()]),
        (with_line(5, "QQ== five"), vec!["line 6".into(), "rank".into()]),
        (with_line(5, "QQ== 5 extra"), vec!["line 6".into(), "3 space-separated fields".into()]),
        (with_line(5, "QQ=="), vec!["line 6".into()]),
        (with_line(7, "IQ== 9"), vec!["line 10".into(), "rank 9 was already given on line 8".into()]),
        (with_line(7, "IQ== 7"), vec!["same bytes".into(), "line 34".into(), "line 8".into()]),
        (with_line(7, "IQ== 99999"), vec!["line 8".into(), "out of range".into()]),
        (with_line(7, " 7"), vec!["line 8".into()]),
        (with_line(7, "= 7"), vec!["line 8".into()]),
        (lines[1..].join("\n"), vec!["rank 259 is out of range".into()]),
    ];
    for (file, needles) in cases {
        let e = Tokenizer::from_file_bytes(file.as_bytes(), "bad.model").unwrap_err();
        assert_eq!(e.status, Status::Format, "{e}");
        assert!(e.message.contains("bad.model"), "{e}");
        for n in needles {
            assert!(e.message.contains(&n), "{e:?} lacks {n:?}");
        }
    }
    // Well-formed, but without every single byte: not a vocabulary that can encode any text.
    let e = Tokenizer::from_file_bytes(lines[..200].join("\n").as_bytes(), "short.model").unwrap_err();
    assert_eq!(e.status, Status::Unsupported, "{e}");
    assert!(e.message.contains("short.model") && e.message.contains("0xc8") && e.message.contains("LLaMA 3"), "{e}");
    // Truncated anywhere: an error or a smaller valid vocabulary, never a panic.
    for cut in (0..good.len()).step_by(37) {
        let _ = Tokenizer::from_file_bytes(&good.as_bytes()[..cut], "cut.model");
    }
}

fn small_json() -> Value {
    let tokens = small_tokens();
    let merges = merges_of(&tokens);
    assert_eq!(merges.len(), 4);
    tokenizer_json(
        &tokens,
        &merges,
        &["<|begin_of_text|>".into(), "<|end_of_text|>".into(), "<|eot_id|>".into()],
        PATTERN,
    )
}

fn load_json(v: &Value) -> Result<Tokenizer, Error> {
    Tokenizer::from_file_bytes(serde_json::to_string_pretty(v).unwrap().as_bytes(), "tok.json")
}

#[test]
fn small_tokenizer_json() {
    let t = load_json(&small_json()).unwrap();
    assert_eq!(t.format(), TokenizerFormat::HfTokenizerJson);
    assert_eq!((t.version(), t.n_vocab(), t.bos(), t.eos()), (3, 263, Some(260), Some(261)));
    assert!(t.is_eog(262) && t.is_eog(261) && !t.is_eog(260));
    assert_eq!(t.encode("abc ab  a<|eot_id|>", true, true).unwrap(), [260, 257, 32, 256, 32, 258, 262]);
    // Merges as "a b" strings (older tokenizers versions) work too.
    let mut v = small_json();
    let merges: Vec<Value> = v["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Value::from(format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap())))
        .collect();
    v["model"]["merges"] = merges.into();
    assert_eq!(load_json(&v).unwrap().encode("abc", false, false).unwrap(), [257]);
    // An added token that repeats a vocabulary entry is ignored.
    let mut v = small_json();
    v["added_tokens"].as_array_mut().unwrap().push(json!({"id": 97, "content": "a", "special": false}));
    assert_eq!(load_json(&v).unwrap().n_vocab(), 263);
}

#[test]
fn foreign_or_malformed_tokenizer_json() {
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = small_json();
        f(&mut v);
        load_json(&v)
    };
    let unsupported: Vec<JsonEdit<'_>> = vec![
        // LLaMA 2's tokenizer.json: a normalizer, byte fallback.
        (
            &|v| v["normalizer"] = json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}]}),
            "LLaMA 2",
        ),
        (&|v| v["model"]["byte_fallback"] = true.into(), "byte_fallback"),
        (&|v| v["model"]["type"] = "Unigram".into(), "Unigram"),
        // GPT-2's pre-tokenizer, another regex.
        (
            &|v| v["pre_tokenizer"] = json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}),
            "pre_tokenizer",
        ),
        (&|v| v["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{N}{1,4}|\s+".into(), "pre_tokenizer"),
        (&|v| v["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true.into(), "pre_tokenizer"),
        // Merges that disagree with ranks = ids.
        (&|v| v["model"]["merges"].as_array_mut().unwrap().swap(0, 3), "token-id order"),
        // Not LLaMA 3's specials.
        (&|v| v["added_tokens"][0]["content"] = "<s>".into(), "begin_of_text"),
    ];
    for (f, needle) in unsupported {
        let e = edit(f).unwrap_err();
        assert_eq!(e.status, Status::Unsupported, "{e}");
        assert!(e.message.contains("tok.json") && e.message.contains(needle), "{e:?} lacks {needle:?}");
    }
    let format: Vec<JsonEdit<'_>> = vec![
        (&|v| v["model"]["vocab"]["a b"] = 300.into(), "\"a b\""),
        (&|v| v["model"]["vocab"]["zz"] = 97.into(), "already used"),
        (&|v| v["model"]["vocab"]["zz"] = 9999.into(), "out of range"),
        (&|v| v["model"]["vocab"]["zz"] = (-1).into(), "zz"),
        (&|v| v["added_tokens"][1]["id"] = 400.into(), "out of range"),
        (&|v| v["added_tokens"][1]["id"] = 260.into(), "already used"),
        (&|v| v["added_tokens"][1] = json!({"content": "x"}), "added_tokens[1]"),
        (&|v| v["added_tokens"] = json!({}), "added_tokens"),
        (&|v| v["model"]["vocab"] = json!([]), "model.vocab"),
        (&|v| v["model"]["merges"] = json!([]), "merges"),
        (&|v| v["model"]["merges"][1] = json!(["a", "q"]), "not in the vocabulary"),
        (&|v| v["model"]["merges"][1] = json!("ab"), "merges[1]"),
        (&|v| v["model"]["merges"][1] = json!(["a"]), "merges[1]"),
        (&|v| v["model"]["merges"][1] = json!(["a b", "c"]), "merges[1]"),
        (&|v| v["model"] = json!("BPE"), "model"),
    ];
    for (f, needle) in format {
        let e = edit(f).unwrap_err();
        assert_eq!(e.status, Status::Format, "{e}");
        assert!(e.message.contains("tok.json") && e.message.contains(needle), "{e:?} lacks {needle:?}");
    }
    // A missing single byte.
    let mut v = small_json();
    let vocab = v["model"]["vocab"].as_object_mut().unwrap();
    let key = gpt2(b"q");
    vocab.remove(&key);
    vocab.insert(gpt2(b"qq"), 113.into());
    let e = load_json(&v).unwrap_err();
    assert!(e.status == Status::Unsupported && e.message.contains("0x71"), "{e}");
    // Not JSON / not a tokenizer.json.
    assert_eq!(status_of(Tokenizer::from_file_bytes(b"{\"model\": ", "x.json")), Status::Format);
    assert_eq!(status_of(Tokenizer::from_file_bytes(b"{\"vocab\": {}}", "x.json")), Status::Format);
}

#[test]
fn foreign_or_malformed_gguf_vocab() {
    let t = load_json(&small_json()).unwrap();
    let good = GgufVocab {
        model: "gpt2".into(),
        tokens: (0..t.n_vocab() as u32).map(|i| t.piece(i).unwrap().to_owned()).collect(),
        token_types: Some((0..t.n_vocab() as u32).map(|i| t.token_type(i).unwrap() as i32).collect()),
        merges: Some(merges_of(&small_tokens()).iter().map(|(a, b)| format!("{a} {b}")).collect()),
        ..GgufVocab::default()
    };
    let ok = Tokenizer::from_gguf(good.clone(), "v.gguf").unwrap();
    assert_eq!(ok.encode("abc ab  a<|eot_id|>", true, true).unwrap(), [260, 257, 32, 256, 32, 258, 262]);
    let with = |f: &dyn Fn(&mut GgufVocab)| {
        let mut v = good.clone();
        f(&mut v);
        Tokenizer::from_gguf(v, "v.gguf")
    };
    let cases: Vec<GgufEdit<'_>> = vec![
        (&|v| v.tokens[260] = "<s>".into(), Status::Unsupported, "LLaMA 3"),
        (&|v| v.token_types.as_mut().unwrap()[260] = 1, Status::Unsupported, "control"),
        (&|v| v.token_types.as_mut().unwrap()[5] = 6, Status::Unsupported, "token_type[5]"),
        (&|v| v.token_types.as_mut().unwrap()[5] = 9, Status::Format, "token_type[5]"),
        (&|v| v.token_types.as_mut().unwrap().pop().map(drop).unwrap(), Status::Format, "token_type"),
        (&|v| v.tokens[40] = "a b".into(), Status::Format, "tokens[40]"),
        (&|v| v.tokens[40] = "a".into(), Status::Format, "same bytes"),
        (&|v| v.tokens[40] = String::new(), Status::Format, "tokens[40]"),
        (&|v| v.bos = Some(263), Status::Format, "bos_token_id"),
        (&|v| v.eos = Some(1000), Status::Format, "eos_token_id"),
        (&|v| v.merges.as_mut().unwrap().swap(0, 3), Status::Unsupported, "token-id order"),
        (&|v| v.merges.as_mut().unwrap()[0] = "ab".into(), Status::Format, "merges[0]"),
        (&|v| v.merges.as_mut().unwrap()[0] = "a q".into(), Status::Format, "merges[0]"),
        (&|v| v.tokens.clear(), Status::Format, "empty"),
    ];
    for (f, status, needle) in cases {
        let e = with(f).unwrap_err();
        assert_eq!(e.status, status, "{e}");
        assert!(e.message.contains("v.gguf") && e.message.contains(needle), "{e:?} lacks {needle:?}");
    }
}

#[test]
fn vocab_only_model_detects_llama3() {
    let path = data_path("llama3/tokenizer.model");
    let m = runllama::loader::load_vocab(&path, 0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((m.version, m.bos, m.eos, m.tokenizer.n_vocab()), (3, BOS, EOS, 128_256));
    assert!(m.is_eog(EOT) && m.is_eog(EOS) && !m.is_eog(BOS));
    assert_eq!(runllama::loader::load_vocab(&path, 3).unwrap().version, 3);
    assert_eq!(status_of(runllama::loader::load_vocab(&path, 2)), Status::InvalidArgument);
}

#[test]
fn gguf_vocab_with_another_pre_tokenizer_is_unsupported() {
    let v = GgufVocab { pre: Some("qwen2".into()), ..gguf_vocab(llama3(), &[]) };
    let e = Tokenizer::from_gguf(v, "x.gguf").unwrap_err();
    assert_eq!(e.status, runllama::error::Status::Unsupported, "{e}");
    assert!(e.message.contains("qwen2"), "{e}");
}
