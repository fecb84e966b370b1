//! Building a LLaMA 3 [`BpeVocab`] from its three sources: a tiktoken BPE file (Meta's
//! `tokenizer.model`), a Hugging Face `tokenizer.json`, and a GGUF `"gpt2"` vocabulary. Every
//! line, id, name and merge is validated; errors name the source and the line / byte offset,
//! JSON key or GGUF index.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::bpe::{self, BpeVocab, BuildError, Entry, BEGIN_OF_TEXT, END_OF_TEXT, LLAMA3_PATTERN};
use super::load::{Kind, Loaded};
use super::{GgufVocab, TokenizerFormat};
use crate::alloc;
use crate::error::{Error, Result};

/// Whether `line` (a first line, `\r` stripped) looks like `<base64> <rank>`.
pub(crate) fn is_tiktoken_line(line: &[u8]) -> bool {
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (b64, rank) = (&line[..sp], &line[sp + 1..]);
    !b64.is_empty()
        && b64.iter().all(|&b| b64_value(b).is_some() || b == b'=')
        && !rank.is_empty()
        && rank.iter().all(u8::is_ascii_digit)
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Standard base64 with `=` padding (as tiktoken files use); `Err(message)` otherwise.
fn decode_base64(s: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(4) {
        return Err(format!("base64 length {} is not a multiple of 4", s.len()));
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return Err("more than two '=' padding characters".to_string());
    }
    let body = &s[..s.len() - pad];
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for (i, &c) in body.iter().enumerate() {
        let v = b64_value(c).ok_or_else(|| format!("{:?} at column {} is not a base64 character", c as char, i + 1))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn build_err(source: &str, what: &str, e: BuildError, at: impl Fn(u32) -> String) -> Error {
    let msg = match e {
        BuildError::DuplicateBytes { first, second } => {
            format!("{} has the same bytes as {}", at(second), at(first))
        }
        BuildError::DuplicateSpecial { first, second } => {
            format!("special token {} has the same name as {}", at(second), at(first))
        }
        BuildError::Empty { id } => format!("{} is empty", at(id)),
        // Well-formed, but not a vocabulary this tokenizer can encode with.
        BuildError::MissingByte(_) => return Error::unsupported(format!("{source}: {what}: {e}")),
        BuildError::OutOfMemory(e) => return e.context(format_args!("{source}: {what}")),
        other => other.to_string(),
    };
    Error::format(format!("{source}: {what}: {msg}"))
}

fn loaded(vocab: BpeVocab, format: TokenizerFormat, add_bos: bool) -> Loaded {
    Loaded { vocab: Kind::Bpe(Arc::new(vocab)), format, add_bos }
}

/// Meta's `tokenizer.model`: lines `<base64 of the token's bytes> <rank>`; ranks must be
/// `0..n` (each once, any order) and every single byte must be a token. Meta's 256 special
/// tokens (Llama 3 names) follow at `n..n + 256`.
pub(crate) fn load_tiktoken(bytes: &[u8], source: &str) -> Result<Loaded> {
    let what = "tiktoken BPE file";
    let ferr = |msg: String| Error::format(format!("{source}: {what}: {msg}"));
    // (rank, bytes, line number, byte offset), in file order.
    let mut lines_read: Vec<(u32, Vec<u8>, usize, usize)> = Vec::new();
    let mut offset = 0usize;
    for (ln, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = offset;
        offset += raw.len() + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let lerr = |msg: String| ferr(format!("line {} (byte offset {at}): {msg}", ln + 1));
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let [b64, rank] = fields[..] else {
            return Err(lerr(format!(
                "expected \"<base64 token> <rank>\", found {} space-separated fields",
                fields.len()
            )));
        };
        let token = decode_base64(b64).map_err(|m| lerr(format!("token {:?}: {m}", String::from_utf8_lossy(b64))))?;
        if token.is_empty() {
            return Err(lerr("empty token".to_string()));
        }
        let rank_text = String::from_utf8_lossy(rank);
        let rank: u32 = match rank_text.parse() {
            Ok(r) if rank.iter().all(u8::is_ascii_digit) => r,
            _ => return Err(lerr(format!("rank {rank_text:?} is not a token id"))),
        };
        lines_read.push((rank, token, ln + 1, at));
    }
    let n = lines_read.len();
    if n == 0 {
        return Err(ferr("no tokens".to_string()));
    }
    if n + bpe::N_SPECIAL >= u32::MAX as usize {
        return Err(ferr(format!("too many tokens ({n})")));
    }
    // Ranks must be 0..n, each once.
    let mut by_rank: Vec<Option<(Vec<u8>, usize, usize)>> = alloc::vec(n, "the ranks")?;
    by_rank.resize_with(n, || None);
    for (rank, token, ln, at) in lines_read {
        let lerr = |msg: String| ferr(format!("line {ln} (byte offset {at}): {msg}"));
        let Some(slot) = by_rank.get_mut(rank as usize) else {
            return Err(lerr(format!("rank {rank} is out of range (the {n} lines must have ranks 0..{})", n - 1)));
        };
        if let Some((_, first_ln, _)) = slot {
            return Err(lerr(format!("rank {rank} was already given on line {first_ln}")));
        }
        *slot = Some((token, ln, at));
    }
    let mut lines = alloc::vec(n, "the tokens' lines")?;
    let mut entries = alloc::vec(n + bpe::N_SPECIAL, "the vocabulary")?;
    for (token, ln, at) in by_rank.into_iter().flatten() {
        lines.push((ln, at));
        entries.push(Entry::Bytes(token));
    }
    entries.extend(bpe::llama3_special_names().into_iter().map(Entry::Special));
    let vocab = BpeVocab::new(entries, None, None).map_err(|e| {
        build_err(source, what, e, |id| match lines.get(id as usize) {
            Some((ln, at)) => format!("rank {id} (line {ln}, byte offset {at})"),
            None => format!("id {id}"),
        })
    })?;
    Ok(loaded(vocab, TokenizerFormat::Tiktoken, true))
}

/// Decode a GPT-2 byte-level vocabulary string, naming `what` in the error.
fn gpt2_bytes(s: &str, what: impl Fn() -> String) -> std::result::Result<Vec<u8>, String> {
    bpe::gpt2_decode(s).map_err(|(i, c)| {
        format!(
            "{} = {s:?}: character {c:?} (U+{:04X}) at byte {i} is not in the GPT-2 byte-level \
             alphabet",
            what(),
            c as u32
        )
    })
}

/// Check that `merges` (pairs of GPT-2 byte-level strings) are those of a tiktoken vocabulary
/// whose ranks are its ids: each merged pair is a token, and merged tokens come in id order.
/// A BPE whose merge order disagrees with the ids would tokenize differently from ranks = ids.
fn check_merges<'a>(
    merges: impl Iterator<Item = std::result::Result<(&'a str, &'a str), String>>,
    by_bytes: &HashMap<&[u8], u32>,
    source: &str,
    key: &str,
) -> Result<()> {
    let ferr = |msg: String| Error::format(format!("{source}: {key}{msg}"));
    let mut last = 0u32;
    let mut merged = Vec::new();
    for (k, m) in merges.enumerate() {
        let (a, b) = m.map_err(|msg| ferr(format!("[{k}]: {msg}")))?;
        merged.clear();
        for part in [a, b] {
            let bytes = gpt2_bytes(part, || format!("[{k}]")).map_err(&ferr)?;
            if !by_bytes.contains_key(bytes.as_slice()) {
                return Err(ferr(format!("[{k}] = {a:?} {b:?}: {part:?} is not a token")));
            }
            merged.extend_from_slice(&bytes);
        }
        let Some(&id) = by_bytes.get(merged.as_slice()) else {
            return Err(ferr(format!("[{k}] = {a:?} {b:?}: the merged token {a}{b:?} is not in the vocabulary")));
        };
        if id < last {
            return Err(Error::unsupported(format!(
                "{source}: {key}[{k}] = {a:?} {b:?} makes token {id} after a merge that made token \
                 {last}: merges are not in token-id order, so this is not a tiktoken-style \
                 (LLaMA 3) vocabulary whose ranks are its ids"
            )));
        }
        last = id;
    }
    Ok(())
}

fn bytes_index(entries: &[Entry]) -> Result<HashMap<&[u8], u32>> {
    let mut m = alloc::map(entries.len(), "the tokens' index")?;
    for (i, e) in entries.iter().enumerate() {
        if let Entry::Bytes(b) = e {
            m.entry(b.as_slice()).or_insert(i as u32);
        }
    }
    Ok(m)
}

/// A short rendering of a JSON value for messages.
fn brief(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// Flatten a `pre_tokenizer` (`Sequence`s inlined).
fn flatten_pre_tokenizers<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    if v.get("type").and_then(Value::as_str) == Some("Sequence") {
        if let Some(list) = v.get("pretokenizers").and_then(Value::as_array) {
            for p in list {
                flatten_pre_tokenizers(p, out);
            }
            return;
        }
    }
    out.push(v);
}

/// Whether a `tokenizer.json` pre-tokenizer is LLaMA 3's: `Split` on Meta's regex (isolated),
/// then `ByteLevel` without its own regex and without a prefix space.
fn is_llama3_pre_tokenizer(v: &Value) -> bool {
    let mut steps = Vec::new();
    flatten_pre_tokenizers(v, &mut steps);
    let [split, byte_level] = steps[..] else {
        return false;
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let b = |v: &Value, k: &str, default: bool| v.get(k).and_then(Value::as_bool).unwrap_or(default);
    s(split, "type").as_deref() == Some("Split")
        && split.get("pattern").and_then(|p| p.get("Regex")).and_then(Value::as_str) == Some(LLAMA3_PATTERN)
        && s(split, "behavior").as_deref().is_none_or(|x| x.eq_ignore_ascii_case("isolated"))
        && !b(split, "invert", false)
        && s(byte_level, "type").as_deref() == Some("ByteLevel")
        && !b(byte_level, "use_regex", true)
        && !b(byte_level, "add_prefix_space", true)
}

/// A Hugging Face `tokenizer.json` of LLaMA 3: a byte-level `BPE` model (`model.vocab` in GPT-2
/// byte-level form, ranks = ids), Meta's pre-tokenizer regex, and the special tokens as
/// `added_tokens`. Anything else (LLaMA 2's SentencePiece-style `tokenizer.json`, GPT-2's
/// pre-tokenizer, merges out of id order) is `Unsupported`.
pub(crate) fn load_hf_json(root: &Map<String, Value>, source: &str) -> Result<Loaded> {
    let ferr = |msg: String| Error::format(format!("{source}: tokenizer.json: {msg}"));
    let unsup = |msg: String| Error::unsupported(format!("{source}: tokenizer.json: {msg}"));
    let Some(model) = root.get("model").and_then(Value::as_object) else {
        return Err(ferr("\"model\" is not an object".to_string()));
    };
    match model.get("type").and_then(Value::as_str) {
        None | Some("BPE") => {}
        Some(t) => return Err(unsup(format!("model.type {t:?} is not supported (LLaMA 3 uses \"BPE\")"))),
    }
    let llama2_hint = "a SentencePiece-style (LLaMA 2) tokenizer.json? Load its tokenizer.model instead";
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(unsup(format!("model.byte_fallback is set: {llama2_hint}")));
    }
    match root.get("normalizer") {
        None | Some(Value::Null) => {}
        Some(n) => return Err(unsup(format!("it has a normalizer ({}): {llama2_hint}", brief(n)))),
    }
    let pre = root.get("pre_tokenizer").unwrap_or(&Value::Null);
    if !is_llama3_pre_tokenizer(pre) {
        return Err(unsup(format!(
            "pre_tokenizer {} is not LLaMA 3's (Split on Meta's regex, then ByteLevel with \
             use_regex false): not a LLaMA 3 tokenizer.json",
            brief(pre)
        )));
    }
    let Some(vocab) = model.get("vocab").and_then(Value::as_object) else {
        return Err(ferr("model.vocab is not an object of token -> id".to_string()));
    };

    // (id, entry, where it was defined), then placed by id: ids must be 0..n, each once.
    let mut defs: Vec<(u64, Entry, String)> = alloc::vec(vocab.len() + 256, "the vocabulary")?;
    for (text, id) in vocab {
        let what = || format!("model.vocab[{text:?}]");
        let Some(id) = id.as_u64() else {
            return Err(ferr(format!("{}: id {id} is not a non-negative integer", what())));
        };
        let bytes = gpt2_bytes(text, what).map_err(ferr)?;
        if bytes.is_empty() {
            return Err(ferr(format!("{}: empty token", what())));
        }
        defs.push((id, Entry::Bytes(bytes), text.clone()));
    }
    let added = match root.get("added_tokens") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => &a[..],
        Some(other) => return Err(ferr(format!("added_tokens is not an array: {}", brief(other)))),
    };
    for (k, t) in added.iter().enumerate() {
        let (Some(id), Some(content)) = (t.get("id").and_then(Value::as_u64), t.get("content").and_then(Value::as_str))
        else {
            return Err(ferr(format!(
                "added_tokens[{k}]: needs an integer \"id\" and a string \"content\": {}",
                brief(t)
            )));
        };
        // An added token that repeats a vocabulary entry adds nothing.
        if vocab.get(content).and_then(Value::as_u64) == Some(id) {
            continue;
        }
        defs.push((id, Entry::Special(content.to_owned()), format!("added_tokens[{k}] {content:?}")));
    }
    let n = defs.len();
    let mut entries: Vec<Option<(Entry, String)>> = Vec::new();
    entries.resize_with(n, || None);
    for (id, e, what) in defs {
        let Some(slot) = usize::try_from(id).ok().and_then(|i| entries.get_mut(i)) else {
            return Err(ferr(format!(
                "{what}: id {id} is out of range (the {n} tokens of model.vocab and added_tokens \
                 must have ids 0..{})",
                n - 1
            )));
        };
        if let Some((_, first)) = slot {
            return Err(ferr(format!("{what}: id {id} is already used by {first}")));
        }
        *slot = Some((e, what));
    }
    let entries: Vec<Entry> = entries.into_iter().flatten().map(|(e, _)| e).collect();
    if !entries.iter().any(|e| matches!(e, Entry::Special(s) if s == BEGIN_OF_TEXT)) {
        return Err(unsup(format!("no {BEGIN_OF_TEXT} added token: not a LLaMA 3 tokenizer.json")));
    }
    let merges = match model.get("merges") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => return Err(ferr("model.merges is missing or empty".to_string())),
    };
    let by_bytes = bytes_index(&entries)?;
    let pairs = merges.iter().map(|m| match m {
        Value::String(s) => match s.split_once(' ') {
            Some((a, b)) if !b.contains(' ') => Ok((a, b)),
            _ => Err(format!("{s:?} is not \"<left> <right>\"")),
        },
        Value::Array(p) => match &p[..] {
            [Value::String(a), Value::String(b)] => Ok((a.as_str(), b.as_str())),
            _ => Err(format!("{} is not a pair of strings", brief(m))),
        },
        other => Err(format!("{} is not a merge", brief(other))),
    });
    check_merges(pairs, &by_bytes, source, "tokenizer.json: model.merges")?;
    drop(by_bytes);
    let vocab = BpeVocab::new(entries, None, None)
        .map_err(|e| build_err(source, "tokenizer.json", e, |id| format!("token id {id}")))?;
    Ok(loaded(vocab, TokenizerFormat::HfTokenizerJson, true))
}

/// A GGUF `"gpt2"` vocabulary of LLaMA 3: `tokenizer.ggml.tokens` in GPT-2 byte-level form
/// (ranks = ids), CONTROL (3) / USER_DEFINED (4) tokens are the special tokens (when
/// `token_type` is absent: tokens of the form `<|...|>`), `merges` in id order when present.
pub(crate) fn from_gguf_bpe(v: GgufVocab, source: &str) -> Result<Loaded> {
    let ferr = |msg: String| Error::format(format!("{source}: {msg}"));
    // llama.cpp names the pre-tokenizer (split regex): only LLaMA 3's is implemented here.
    if let Some(pre) = v.pre.as_deref() {
        if !matches!(pre, "llama-bpe" | "llama3" | "smaug-bpe" | "default") {
            return Err(Error::unsupported(format!(
                "{source}: tokenizer.ggml.pre is {pre:?}: only LLaMA 3's pre-tokenizer (\"llama-bpe\") is supported for \"gpt2\" vocabularies"
            )));
        }
    }
    let n = v.tokens.len();
    if n == 0 {
        return Err(ferr("tokenizer.ggml.tokens is empty".to_string()));
    }
    if n >= u32::MAX as usize {
        return Err(ferr(format!("tokenizer.ggml.tokens has too many entries ({n})")));
    }
    if let Some(t) = &v.token_types {
        if t.len() != n {
            return Err(ferr(format!(
                "tokenizer.ggml.token_type has {} entries, expected one per token ({n})",
                t.len()
            )));
        }
    }
    let in_range = |key: &str, id: Option<u32>| -> Result<Option<u32>> {
        match id {
            Some(id) if id as usize >= n => {
                Err(ferr(format!("tokenizer.ggml.{key} = {id} is out of range ({n} tokens)")))
            }
            other => Ok(other),
        }
    };
    let bos = in_range("bos_token_id", v.bos)?;
    let eos = in_range("eos_token_id", v.eos)?;
    if !v.tokens.iter().any(|t| t == BEGIN_OF_TEXT) {
        return Err(Error::unsupported(format!(
            "{source}: tokenizer.ggml.model \"gpt2\" without a {BEGIN_OF_TEXT} token: only \
             LLaMA 3's byte-level BPE vocabulary is supported"
        )));
    }
    let mut entries = alloc::vec(n, "the vocabulary")?;
    for (i, tok) in v.tokens.into_iter().enumerate() {
        let ty = v.token_types.as_ref().map_or_else(
            || if tok.len() > 4 && tok.starts_with("<|") && tok.ends_with("|>") { 3 } else { 1 },
            |t| t[i],
        );
        let e = match ty {
            0 | 1 => {
                let what = || format!("tokenizer.ggml.tokens[{i}]");
                let bytes = gpt2_bytes(&tok, what).map_err(ferr)?;
                if bytes.is_empty() {
                    return Err(ferr(format!("tokenizer.ggml.tokens[{i}] is empty")));
                }
                Entry::Bytes(bytes)
            }
            3 | 4 => Entry::Special(tok),
            2 | 5 | 6 => {
                let name = ["", "", "UNKNOWN", "", "", "UNUSED", "BYTE"][ty as usize];
                return Err(Error::unsupported(format!(
                    "{source}: tokenizer.ggml.token_type[{i}] = {ty} ({name}) is not used by \
                     LLaMA 3's byte-level BPE (\"gpt2\") vocabulary"
                )));
            }
            _ => return Err(ferr(format!("tokenizer.ggml.token_type[{i}] = {ty} is not a token type (0..=6)"))),
        };
        entries.push(e);
    }
    if !entries.iter().any(|e| matches!(e, Entry::Special(s) if s == BEGIN_OF_TEXT)) {
        return Err(Error::unsupported(format!(
            "{source}: {BEGIN_OF_TEXT} is not a control token: not LLaMA 3's byte-level BPE \
             vocabulary"
        )));
    }
    if !entries.iter().any(|e| matches!(e, Entry::Special(s) if s == END_OF_TEXT)) && eos.is_none() {
        return Err(ferr(format!("no {END_OF_TEXT} control token and no tokenizer.ggml.eos_token_id")));
    }
    if let Some(merges) = &v.merges {
        let by_bytes = bytes_index(&entries)?;
        let pairs = merges.iter().map(|s| match s.split_once(' ') {
            Some((a, b)) if !b.contains(' ') => Ok((a, b)),
            _ => Err(format!("{s:?} is not \"<left> <right>\"")),
        });
        check_merges(pairs, &by_bytes, source, "tokenizer.ggml.merges")?;
    }
    let vocab = BpeVocab::new(entries, bos, eos)
        .map_err(|e| build_err(source, "GGUF vocabulary", e, |id| format!("tokenizer.ggml.tokens[{id}]")))?;
    Ok(loaded(vocab, TokenizerFormat::GgufBpe, v.add_bos.unwrap_or(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64(b"IQ=="), Ok(b"!".to_vec()));
        assert_eq!(decode_base64(b"aGVsbG8="), Ok(b"hello".to_vec()));
        assert_eq!(decode_base64(b"aGVs"), Ok(b"hel".to_vec()));
        assert_eq!(decode_base64(b""), Ok(vec![]));
        assert!(decode_base64(b"aGV").is_err());
        assert!(decode_base64(b"a===").is_err());
        assert!(decode_base64(b"a*==").is_err());
        assert!(decode_base64(b"a=b=").is_err());
        assert!(is_tiktoken_line(b"IQ== 0"));
        assert!(!is_tiktoken_line(b"IQ== x"));
        assert!(!is_tiktoken_line(b"{\"a\": 1}"));
    }
}
