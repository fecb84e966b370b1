//! Tokenizers: a pure-Rust LLaMA 2 SentencePiece BPE tokenizer.
//!
//! Sources ([`Tokenizer::from_file_bytes`] detects the kind from the content):
//! * a SentencePiece `tokenizer.model` (`ModelProto` protobuf, `model_type: BPE`, identity
//!   normalization), with its normalizer flags (`add_dummy_prefix`, `remove_extra_whitespaces`,
//!   `escape_whitespaces`);
//! * a llama2.c tokenizer `.bin` (dummy prefix on, whitespace kept as llama2.c's `run.c` does);
//! * a GGUF-embedded vocabulary ([`Tokenizer::from_gguf`], `tokenizer.ggml.model = "llama"`; no
//!   whitespace removal, as llama.cpp).
//!
//! LLaMA 3 vocabularies (tiktoken ranks, Hugging Face `tokenizer.json`, GGUF `"gpt2"`) are
//! recognised and rejected with `Unsupported` for now.
//!
//! Encoding is sentencepiece's BPE `encode` (normalize, add the `▁` dummy prefix, merge the
//! adjacent pair whose merged piece scores highest, leftmost first, then byte fallback), in
//! O(n log n) with a priority queue over a linked list of symbols. Decoding is sentencepiece's
//! `Decode`, except that byte tokens are returned as raw bytes (no U+FFFD substitution), so
//! callers streaming tokens can join partial UTF-8 sequences themselves.

mod load;
mod proto;
mod spm;

use crate::error::{Error, Result};

/// One chat message (role: "system" | "user" | "assistant").
#[derive(Clone, Copy, Debug)]
pub struct ChatMessage<'a> {
    /// "system", "user" or "assistant".
    pub role: &'a str,
    /// The message text.
    pub content: &'a str,
}

/// A vocabulary as a GGUF file embeds it (`tokenizer.ggml.*`), handed over by the GGUF loader.
#[derive(Clone, Debug, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model` ("llama" = SentencePiece, "gpt2" = byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`, if present.
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`, if present (1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`, if present.
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
}

/// The kind of a vocabulary entry: SentencePiece's `ModelProto.SentencePiece.Type`, which GGUF's
/// `tokenizer.ggml.token_type` copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum TokenType {
    /// An ordinary piece, used by BPE merges.
    Normal = 1,
    /// `<unk>`: text the vocabulary cannot represent (never produced with byte fallback).
    Unknown = 2,
    /// A control symbol such as `<s>` / `</s>`: decodes to nothing.
    Control = 3,
    /// A user-defined symbol: always one token when it occurs in the text.
    UserDefined = 4,
    /// A piece that may be merged through but is never emitted (resegmented into its halves).
    Unused = 5,
    /// A byte-fallback piece `<0xNN>`: decodes to that one raw byte.
    Byte = 6,
}

impl TokenType {
    /// The type for its protobuf / GGUF number (1..=6), `None` otherwise.
    pub fn from_i32(v: i32) -> Option<TokenType> {
        Some(match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// Where a [`Tokenizer`]'s vocabulary came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerFormat {
    /// A SentencePiece `tokenizer.model` protobuf (normalizer flags from the file).
    SentencePiece,
    /// A llama2.c tokenizer `.bin` (dummy prefix on, no whitespace removal).
    Llama2cBin,
    /// A GGUF-embedded `"llama"` vocabulary (dummy prefix = `add_space_prefix`, no whitespace
    /// removal).
    Gguf,
}

/// A loaded tokenizer (LLaMA 2 SentencePiece BPE). Immutable, `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    vocab: spm::Vocab,
    format: TokenizerFormat,
    add_bos: bool,
    source: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("format", &self.format)
            .field("n_vocab", &self.vocab.len())
            .field("bos", &self.vocab.bos())
            .field("eos", &self.vocab.eos())
            .field("unk", &self.vocab.unk())
            .field("byte_fallback", &self.vocab.byte_fallback())
            .field("add_dummy_prefix", &self.vocab.add_dummy_prefix())
            .field("remove_extra_whitespaces", &self.vocab.remove_extra_whitespaces())
            .finish()
    }
}

/// Python's `str.strip()` whitespace: Unicode White_Space plus U+001C..U+001F.
fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
}

impl Tokenizer {
    fn new(l: load::Loaded, source: &str) -> Tokenizer {
        Tokenizer { vocab: l.vocab, format: l.format, add_bos: l.add_bos, source: source.to_owned() }
    }

    /// Detect the kind from the file content (SentencePiece protobuf, llama2.c tokenizer .bin, ...).
    ///
    /// `source` names the file in error messages. Errors: `Format` for truncated, corrupt or
    /// unrecognized content (with the byte offset where it applies); `Unsupported` for a
    /// non-BPE SentencePiece model, a non-identity normalizer, or a LLaMA 3 tokenizer (tiktoken
    /// ranks file or Hugging Face `tokenizer.json`).
    pub fn from_file_bytes(bytes: &[u8], source: &str) -> Result<Tokenizer> {
        load::from_file_bytes(bytes, source).map(|l| Tokenizer::new(l, source))
    }

    /// From a GGUF-embedded vocabulary.
    ///
    /// `"llama"` builds the SentencePiece tokenizer (dummy prefix = `add_space_prefix`, default
    /// true; no whitespace removal); `"gpt2"` (LLaMA 3) is `Unsupported`. Inconsistent lengths
    /// or out-of-range ids are `Format` errors naming the key. Missing ids default to llama.cpp's
    /// (unk: the UNKNOWN-typed token or 0, BOS 1, EOS 2); missing scores are 0, missing types
    /// are inferred (`<0xNN>` byte, unk, BOS/EOS control, others normal).
    pub fn from_gguf(vocab: GgufVocab, source: &str) -> Result<Tokenizer> {
        load::from_gguf(vocab, source).map(|l| Tokenizer::new(l, source))
    }

    /// Number of ids.
    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    /// BOS id.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos()
    }

    /// EOS id.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos()
    }

    /// The id unknown text maps to (with byte fallback, encode never produces it).
    pub fn unk(&self) -> u32 {
        self.vocab.unk()
    }

    /// End-of-generation id (eos, <|eot_id|>, <|end_of_text|>). For LLaMA 2: EOS only.
    pub fn is_eog(&self, id: u32) -> bool {
        Some(id) == self.vocab.eos()
    }

    /// Which LLaMA version this vocabulary belongs to (2 or 3). Always 2 for now.
    pub fn version(&self) -> u32 {
        2
    }

    /// Where the vocabulary came from.
    pub fn format(&self) -> TokenizerFormat {
        self.format
    }

    /// The `source` name given when loading.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether prompts should start with BOS by default (GGUF `add_bos_token`; true otherwise).
    pub fn add_bos_default(&self) -> bool {
        self.add_bos
    }

    /// The vocabulary text of `id` (with `▁` for spaces; `<0xNN>` for byte tokens), or `None`
    /// when out of range.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.vocab.piece(id)
    }

    /// The merge score of `id`, or `None` when out of range.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.vocab.score(id)
    }

    /// The type of `id`, or `None` when out of range.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.token_type(id)
    }

    /// Encode UTF-8 text.
    ///
    /// `add_bos` prepends BOS (ignored when the vocabulary has none). With `parse_special`,
    /// text equal to a control, user-defined or unknown piece (`<s>`, `</s>`, `<unk>`; longest
    /// match, leftmost first) becomes that id, and each stretch of text between them is encoded
    /// on its own, dummy prefix included (as llama.cpp and Hugging Face's legacy LlamaTokenizer
    /// do); byte pieces such as `<0x41>` stay text. Without it, all text is plain text, as in
    /// sentencepiece and Meta's reference. The empty string gives `[]` (or `[BOS]`).
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if add_bos {
            out.extend(self.vocab.bos());
        }
        let encode = |part: &str, out: &mut Vec<u32>| {
            self.vocab.encode_text(part, out).map_err(|len| {
                Error::invalid(format!(
                    "encode: text too long ({len} bytes after normalization; at most {} per \
                     stretch of text)",
                    spm::MAX_BPE_BYTES
                ))
            })
        };
        if !parse_special {
            encode(text, &mut out)?;
            return Ok(out);
        }
        let mut last = 0;
        let mut skip_to = 0;
        for (i, _) in text.char_indices() {
            if i < skip_to {
                continue;
            }
            if let Some((len, id)) = self.vocab.match_special(&text[i..]) {
                encode(&text[last..i], &mut out)?;
                out.push(id);
                last = i + len;
                skip_to = last;
            }
        }
        encode(&text[last..], &mut out)?;
        Ok(out)
    }

    fn check_id(&self, id: u32, what: impl std::fmt::Display) -> Result<()> {
        if (id as usize) < self.vocab.len() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{what}: token id {id} is out of range (vocabulary of {} has {} tokens)",
                self.source,
                self.vocab.len()
            )))
        }
    }

    /// Decode ids to UTF-8 bytes (ids out of range: InvalidArgument).
    ///
    /// As sentencepiece's `Decode`: pieces are concatenated with `▁` turned into a space, byte
    /// tokens give their raw byte, control tokens (`<s>`, `</s>`) give nothing, and when the
    /// vocabulary adds a dummy prefix the leading space of the first text piece is dropped
    /// (with `remove_extra_whitespaces`, every leading space). Unknown ids give the model's
    /// `unk_surface` (`" ⁇ "` unless a `tokenizer.model` sets another).
    /// `skip_special = true` additionally drops unknown ids; control ids never produce text for
    /// SentencePiece vocabularies, whatever `skip_special` says. The result is raw bytes: byte
    /// tokens that do not form valid UTF-8 are passed through (sentencepiece would write U+FFFD).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>> {
        for (i, &id) in ids.iter().enumerate() {
            self.check_id(id, format_args!("decode: ids[{i}]"))?;
        }
        let mut out = Vec::new();
        self.vocab.decode(ids, skip_special, &mut out);
        Ok(out)
    }

    /// Raw bytes of one token.
    ///
    /// `▁` becomes a space (no leading-space stripping), a byte token is its one byte, a control
    /// token is empty, the unknown token is its `unk_surface` (`" ⁇ "`). Out of range:
    /// `InvalidArgument`.
    pub fn token_to_piece(&self, id: u32) -> Result<Vec<u8>> {
        self.check_id(id, "token_to_piece")?;
        let mut out = Vec::new();
        self.vocab.token_bytes(id, &mut out);
        Ok(out)
    }

    /// The chat prompt as ids.
    ///
    /// LLaMA 2 chat, exactly as Meta's `chat_completion`: an optional leading system message is
    /// folded into the first user message as `"<<SYS>>\n{system}\n<</SYS>>\n\n{user}"`; each
    /// finished (user, assistant) exchange is
    /// `BOS + encode("[INST] {user} [/INST] {answer} ") + EOS`; a final user message is
    /// `BOS + encode("[INST] {user} [/INST]")`. Contents are
    /// stripped (Python `str.strip()`) and always encoded as plain text, so `<s>` or `[INST]`
    /// inside a message never become special ids (Meta's reference refuses such messages; this
    /// does not).
    ///
    /// Roles must be `user`, `assistant`, `user`, ... after an optional `system`. With
    /// `add_assistant = true` the last message must be a user message and the ids end with the
    /// open `[/INST]` that asks for the reply (Meta's prompt). LLaMA 2 has no separate assistant
    /// header, so `add_assistant = false` only relaxes the check: the dialog may also end with
    /// an assistant message, in which case every exchange is closed with EOS (the form used to
    /// score or cache a finished conversation); ending with a user message gives the same ids as
    /// `true`. Anything else is `InvalidArgument`.
    pub fn chat_tokenize(&self, messages: &[ChatMessage<'_>], add_assistant: bool) -> Result<Vec<u32>> {
        const B_INST: &str = "[INST]";
        const E_INST: &str = "[/INST]";
        const B_SYS: &str = "<<SYS>>\n";
        const E_SYS: &str = "\n<</SYS>>\n\n";
        let bad = |msg: String| Error::invalid(format!("chat_tokenize: {msg}"));
        if messages.is_empty() {
            return Err(bad("no messages".to_string()));
        }
        for (i, m) in messages.iter().enumerate() {
            if !matches!(m.role, "system" | "user" | "assistant") {
                return Err(bad(format!(
                    "message {i} has role {:?}; expected \"system\", \"user\" or \"assistant\"",
                    m.role
                )));
            }
        }
        let (system, rest, first) = match messages[0].role {
            "system" => (Some(messages[0].content), &messages[1..], 1),
            _ => (None, messages, 0),
        };
        if rest.is_empty() {
            return Err(bad("a system message must be followed by a user message".to_string()));
        }
        for (k, m) in rest.iter().enumerate() {
            let want = if k % 2 == 0 { "user" } else { "assistant" };
            if m.role != want {
                return Err(bad(format!(
                    "message {} has role {:?} where {want:?} was expected: roles must alternate \
                     user/assistant, starting with user, after an optional leading system message",
                    first + k,
                    m.role
                )));
            }
        }
        let ends_with_user = rest.len() % 2 == 1;
        if add_assistant && !ends_with_user {
            return Err(bad("the last message must be a user message when add_assistant is set".to_string()));
        }
        let user_text = |k: usize| -> String {
            match (k, system) {
                (0, Some(sys)) => format!("{B_SYS}{sys}{E_SYS}{}", rest[0].content),
                _ => rest[k].content.to_owned(),
            }
        };
        let mut ids = Vec::new();
        let mut k = 0;
        while k + 1 < rest.len() {
            let Some(eos) = self.vocab.eos() else {
                return Err(Error::unsupported(format!(
                    "chat_tokenize: {} has no EOS token to close an exchange",
                    self.source
                )));
            };
            let user = user_text(k);
            let text = format!("{B_INST} {} {E_INST} {} ", py_strip(&user), py_strip(rest[k + 1].content));
            ids.extend(self.encode(&text, true, false)?);
            ids.push(eos);
            k += 2;
        }
        if k < rest.len() {
            let user = user_text(k);
            let text = format!("{B_INST} {} {E_INST}", py_strip(&user));
            ids.extend(self.encode(&text, true, false)?);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strip_whitespace() {
        assert_eq!(py_strip("\u{1c}\u{1f} a b\u{3000}\u{85}\u{a0}"), "a b");
        assert_eq!(py_strip("\u{200b}x\u{feff}"), "\u{200b}x\u{feff}");
    }
}
