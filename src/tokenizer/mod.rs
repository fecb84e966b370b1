//! Tokenizers: LLaMA 2's SentencePiece BPE (pure Rust) and LLaMA 3's tiktoken byte-level BPE
//! (through `tiktoken-rs`), behind one [`Tokenizer`].
//!
//! LLaMA 2 sources ([`Tokenizer::from_file_bytes`] detects the kind from the content):
//! * a SentencePiece `tokenizer.model` (`ModelProto` protobuf, `model_type: BPE`, identity
//!   normalization), with its normalizer flags (`add_dummy_prefix`, `remove_extra_whitespaces`,
//!   `escape_whitespaces`);
//! * a llama2.c tokenizer `.bin` (dummy prefix on, whitespace kept as llama2.c's `run.c` does);
//! * a GGUF-embedded vocabulary ([`Tokenizer::from_gguf`], `tokenizer.ggml.model = "llama"`; no
//!   whitespace removal, as llama.cpp).
//!
//! LLaMA 3 sources (all give the same ids):
//! * Meta's tiktoken `tokenizer.model` (lines `<base64 token> <rank>`), with Meta's 256 special
//!   tokens under their original Llama 3 names at ids `n..n + 256` (`<|begin_of_text|>` 128000,
//!   `<|end_of_text|>` 128001, `<|start_header_id|>` 128006, `<|end_header_id|>` 128007,
//!   `<|eot_id|>` 128009, `<|reserved_special_token_k|>` for the others);
//! * a Hugging Face `tokenizer.json` of LLaMA 3 (byte-level `BPE`, Meta's regex, special tokens
//!   and their names from `added_tokens`);
//! * a GGUF `"gpt2"` vocabulary ([`Tokenizer::from_gguf`]; CONTROL tokens are the special ones).
//!
//! SentencePiece encoding is sentencepiece's BPE `encode` (normalize, add the `▁` dummy prefix,
//! merge the adjacent pair whose merged piece scores highest, leftmost first, then byte
//! fallback), in O(n log n) with a priority queue over a linked list of symbols. Decoding is
//! sentencepiece's `Decode`, except that byte tokens are returned as raw bytes (no U+FFFD
//! substitution), so callers streaming tokens can join partial UTF-8 sequences themselves.
//!
//! LLaMA 3 encoding is Meta's `Tokenizer.encode`: the text is cut as Meta cuts it (chunks of
//! 400,000 characters, runs of more than 25,000 whitespace / non-whitespace characters), each
//! slice is split by Meta's pre-tokenizer regex and each regex piece is merged by lowest rank
//! (tiktoken), so long or hostile inputs stay linear-time and give Meta's exact ids.

mod bpe;
mod load;
mod load_bpe;
mod proto;
mod spm;

use std::sync::Arc;

use crate::error::{Error, Result};
use load::Kind;

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
    /// `tokenizer.ggml.pre` (llama.cpp's pre-tokenizer name, e.g. "llama-bpe" for LLaMA 3).
    pub pre: Option<String>,
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
    /// LLaMA 3: Meta's tiktoken BPE `tokenizer.model` (`<base64 token> <rank>` lines).
    Tiktoken,
    /// LLaMA 3: a Hugging Face `tokenizer.json` (byte-level BPE, Meta's pre-tokenizer regex).
    HfTokenizerJson,
    /// LLaMA 3: a GGUF-embedded `"gpt2"` (byte-level BPE) vocabulary.
    GgufBpe,
}

/// Where decoded bytes go.
pub(crate) trait ByteSink {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Bytes put so far (kept or not).
    fn count(&self) -> usize;
}

impl ByteSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn count(&self) -> usize {
        self.len()
    }
}

/// The first `cap` bytes put, and the count of all of them.
struct Capped {
    kept: Vec<u8>,
    cap: usize,
    total: usize,
}

impl ByteSink for Capped {
    fn put(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.total = self.total.saturating_add(bytes.len());
    }
    fn count(&self) -> usize {
        self.total
    }
}

/// A loaded tokenizer: LLaMA 2 SentencePiece BPE or LLaMA 3 tiktoken byte-level BPE.
/// Immutable, `Send + Sync`; cloning is cheap for LLaMA 3 (the tables are shared).
#[derive(Clone)]
pub struct Tokenizer {
    vocab: Kind,
    format: TokenizerFormat,
    add_bos: bool,
    source: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Tokenizer");
        d.field("source", &self.source).field("format", &self.format).field("n_vocab", &self.n_vocab());
        d.field("bos", &self.bos()).field("eos", &self.eos());
        match &self.vocab {
            Kind::Spm(v) => d
                .field("unk", &v.unk())
                .field("byte_fallback", &v.byte_fallback())
                .field("add_dummy_prefix", &v.add_dummy_prefix())
                .field("remove_extra_whitespaces", &v.remove_extra_whitespaces()),
            Kind::Bpe(v) => d.field("n_special", &v.n_special()),
        };
        d.finish()
    }
}

/// Roles accepted in a LLaMA 3 chat (`ipython` / `tool`: the tool roles of Llama 3.1+).
const LLAMA3_ROLES: [&str; 5] = ["system", "user", "assistant", "ipython", "tool"];

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

    /// Detect the kind from the file content: SentencePiece protobuf, llama2.c tokenizer `.bin`,
    /// tiktoken BPE ranks file (LLaMA 3 `tokenizer.model`) or Hugging Face `tokenizer.json`
    /// (LLaMA 3).
    ///
    /// `source` names the file in error messages. Errors: `Format` for truncated, corrupt or
    /// unrecognized content (with the byte offset, line or JSON key where it applies);
    /// `Unsupported` for a non-BPE SentencePiece model, a non-identity normalizer, or a
    /// `tokenizer.json` that is not LLaMA 3's (another pre-tokenizer, a normalizer, byte
    /// fallback, merges out of token-id order).
    pub fn from_file_bytes(bytes: &[u8], source: &str) -> Result<Tokenizer> {
        load::from_file_bytes(bytes, source).map(|l| Tokenizer::new(l, source))
    }

    /// From a GGUF-embedded vocabulary.
    ///
    /// `"llama"` builds the SentencePiece tokenizer (dummy prefix = `add_space_prefix`, default
    /// true; no whitespace removal). Inconsistent lengths or out-of-range ids are `Format` errors
    /// naming the key. Missing ids default to llama.cpp's (unk: the UNKNOWN-typed token or 0,
    /// BOS 1, EOS 2); missing scores are 0, missing types are inferred (`<0xNN>` byte, unk,
    /// BOS/EOS control, others normal).
    ///
    /// `"gpt2"` builds the LLaMA 3 tokenizer: tokens in GPT-2 byte-level form with rank = id,
    /// CONTROL (3) and USER_DEFINED (4) tokens are the special tokens (without `token_type`:
    /// tokens of the form `<|...|>`), BOS / EOS from the keys or else `<|begin_of_text|>` /
    /// `<|end_of_text|>`. `merges`, when present, must be in token-id order (`Unsupported`
    /// otherwise). A `"gpt2"` vocabulary without a `<|begin_of_text|>` token is not LLaMA 3's:
    /// `Unsupported`.
    pub fn from_gguf(vocab: GgufVocab, source: &str) -> Result<Tokenizer> {
        load::from_gguf(vocab, source).map(|l| Tokenizer::new(l, source))
    }

    /// Number of ids (LLaMA 3: 128,000 ranks + 256 special tokens = 128,256).
    pub fn n_vocab(&self) -> usize {
        match &self.vocab {
            Kind::Spm(v) => v.len(),
            Kind::Bpe(v) => v.len(),
        }
    }

    /// BOS id (LLaMA 3: `<|begin_of_text|>`, 128000).
    pub fn bos(&self) -> Option<u32> {
        match &self.vocab {
            Kind::Spm(v) => v.bos(),
            Kind::Bpe(v) => v.bos(),
        }
    }

    /// EOS id (LLaMA 3: `<|end_of_text|>`, 128001, unless a GGUF `eos_token_id` says otherwise).
    pub fn eos(&self) -> Option<u32> {
        match &self.vocab {
            Kind::Spm(v) => v.eos(),
            Kind::Bpe(v) => v.eos(),
        }
    }

    /// The id unknown text maps to (with byte fallback, encode never produces it). LLaMA 3's
    /// byte-level vocabulary has no unknown token (every byte string is representable):
    /// `u32::MAX`.
    pub fn unk(&self) -> u32 {
        match &self.vocab {
            Kind::Spm(v) => v.unk(),
            Kind::Bpe(_) => u32::MAX,
        }
    }

    /// Whether `id` ends generation. LLaMA 2: EOS only. LLaMA 3: EOS, `<|end_of_text|>`,
    /// `<|eot_id|>` and `<|eom_id|>` (those the vocabulary has; Meta's stop tokens).
    pub fn is_eog(&self, id: u32) -> bool {
        match &self.vocab {
            Kind::Spm(v) => Some(id) == v.eos(),
            Kind::Bpe(v) => v.is_eog(id),
        }
    }

    /// Which LLaMA version this vocabulary belongs to, from its kind: 2 for SentencePiece
    /// (`tokenizer.model` protobuf, llama2.c `.bin`, GGUF `"llama"`), 3 for byte-level BPE
    /// (tiktoken file, `tokenizer.json`, GGUF `"gpt2"`).
    pub fn version(&self) -> u32 {
        match &self.vocab {
            Kind::Spm(_) => 2,
            Kind::Bpe(_) => 3,
        }
    }

    /// The id of a LLaMA 3 special token by name (e.g. `"<|eot_id|>"`); `None` for LLaMA 2 or
    /// an unknown name.
    pub fn special_id(&self, name: &str) -> Option<u32> {
        match &self.vocab {
            Kind::Spm(_) => None,
            Kind::Bpe(v) => v.special_id(name),
        }
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

    /// The vocabulary text of `id`, or `None` when out of range. LLaMA 2: with `▁` for spaces,
    /// `<0xNN>` for byte tokens. LLaMA 3: the GPT-2 byte-level form that `tokenizer.json` and
    /// GGUF store (`Ġ` for a space, `Ċ` for a newline), a special token's name.
    pub fn piece(&self, id: u32) -> Option<&str> {
        match &self.vocab {
            Kind::Spm(v) => v.piece(id),
            Kind::Bpe(v) => v.piece(id),
        }
    }

    /// The merge score of `id` (higher merges first), or `None` when out of range. LLaMA 3:
    /// minus the rank for ordinary tokens, 0 for special tokens.
    pub fn score(&self, id: u32) -> Option<f32> {
        match &self.vocab {
            Kind::Spm(v) => v.score(id),
            Kind::Bpe(v) => v.is_special(id).map(|s| if s { 0.0 } else { -(id as f32) }),
        }
    }

    /// The type of `id`, or `None` when out of range. LLaMA 3: `Control` for special tokens,
    /// `Normal` otherwise.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        match &self.vocab {
            Kind::Spm(v) => v.token_type(id),
            Kind::Bpe(v) => v.is_special(id).map(|s| if s { TokenType::Control } else { TokenType::Normal }),
        }
    }

    /// Encode UTF-8 text.
    ///
    /// `add_bos` prepends BOS (ignored when the vocabulary has none).
    ///
    /// LLaMA 3: Meta's `Tokenizer.encode(text, bos=add_bos, eos=False)`, including its cutting
    /// of the input into 400,000-character chunks and of runs longer than 25,000 whitespace /
    /// non-whitespace characters (so any input is encoded in linear time, with Meta's ids).
    /// Without `parse_special`, text such as `"<|eot_id|>"` is plain text (Meta's default,
    /// `disallowed_special=()`); with it, every special-token name in the text becomes its id
    /// (`allowed_special="all"`). The empty string gives `[]` (or `[BOS]`).
    ///
    /// LLaMA 2: with `parse_special`, text equal to a control, user-defined or unknown piece
    /// (`<s>`, `</s>`, `<unk>`; longest match, leftmost first) becomes that id, and each stretch
    /// of text between them is encoded on its own, dummy prefix included (as llama.cpp and
    /// Hugging Face's legacy LlamaTokenizer do); byte pieces such as `<0x41>` stay text. Without
    /// it, all text is plain text, as in sentencepiece and Meta's reference. The empty string
    /// gives `[]` (or `[BOS]`).
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if add_bos {
            out.extend(self.bos());
        }
        let vocab = match &self.vocab {
            Kind::Spm(v) => &**v,
            Kind::Bpe(v) => {
                out.reserve(text.len() / 3);
                v.encode(text, parse_special, &mut out).map_err(|e| {
                    Error::invalid(format!("encode ({}): the text cannot be tokenized: {e}", self.source))
                })?;
                return Ok(out);
            }
        };
        let encode = |part: &str, out: &mut Vec<u32>| {
            vocab.encode_text(part, out).map_err(|len| {
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
            if let Some((len, id)) = vocab.match_special(&text[i..]) {
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
        if (id as usize) < self.n_vocab() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{what}: token id {id} is out of range (vocabulary of {} has {} tokens)",
                self.source,
                self.n_vocab()
            )))
        }
    }

    /// Decode ids to UTF-8 bytes (ids out of range: InvalidArgument).
    ///
    /// LLaMA 3: the tokens' bytes concatenated, as Meta's `decode` (tiktoken); special tokens
    /// give their name (`"<|eot_id|>"`), or nothing with `skip_special`. The result is raw bytes
    /// (a cut-off sequence may end inside a UTF-8 character).
    ///
    /// LLaMA 2: as sentencepiece's `Decode`: pieces are concatenated with `▁` turned into a space, byte
    /// tokens give their raw byte, control tokens (`<s>`, `</s>`) give nothing, and when the
    /// vocabulary adds a dummy prefix the leading space of the first text piece is dropped
    /// (with `remove_extra_whitespaces`, every leading space). Unknown ids give the model's
    /// `unk_surface` (`" ⁇ "` unless a `tokenizer.model` sets another).
    /// `skip_special = true` additionally drops unknown ids; control ids never produce text for
    /// SentencePiece vocabularies, whatever `skip_special` says. The result is raw bytes: byte
    /// tokens that do not form valid UTF-8 are passed through (sentencepiece would write U+FFFD).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>> {
        Ok(self.decode_capped(ids, skip_special, usize::MAX)?.0)
    }

    /// [`Tokenizer::decode`] keeping at most `cap` bytes: `(the first min(cap, total) bytes,
    /// total)`. The memory used is bounded by `cap` whatever the ids expand to.
    pub fn decode_capped(&self, ids: &[u32], skip_special: bool, cap: usize) -> Result<(Vec<u8>, usize)> {
        for (i, &id) in ids.iter().enumerate() {
            self.check_id(id, format_args!("decode: ids[{i}]"))?;
        }
        let mut out = Capped { kept: Vec::new(), cap, total: 0 };
        match &self.vocab {
            Kind::Spm(v) => v.decode(ids, skip_special, &mut out),
            Kind::Bpe(v) => v.decode(ids, skip_special, &mut out),
        }
        Ok((out.kept, out.total))
    }

    /// Raw bytes of one token (may be part of a UTF-8 character). Out of range:
    /// `InvalidArgument`.
    ///
    /// LLaMA 3: the token's bytes (tiktoken's `decode_single_token_bytes`); a special token
    /// gives its name, as `decode` without `skip_special` does.
    ///
    /// LLaMA 2: `▁` becomes a space (no leading-space stripping), a byte token is its one byte,
    /// a control token is empty, the unknown token is its `unk_surface` (`" ⁇ "`).
    pub fn token_to_piece(&self, id: u32) -> Result<Vec<u8>> {
        self.check_id(id, "token_to_piece")?;
        let mut out = Vec::new();
        match &self.vocab {
            Kind::Spm(v) => v.token_bytes(id, &mut out),
            Kind::Bpe(v) => out.extend_from_slice(v.bytes(id).unwrap_or(&[])),
        }
        Ok(out)
    }

    /// The chat prompt as ids.
    ///
    /// LLaMA 3 instruct, exactly as Meta's `ChatFormat.encode_dialog_prompt`:
    /// `<|begin_of_text|>`, then for each message `<|start_header_id|>`, the role,
    /// `<|end_header_id|>`, `"\n\n"`, the content (Python `str.strip()`ped) and `<|eot_id|>`;
    /// with `add_assistant`, the open header `<|start_header_id|>assistant<|end_header_id|>\n\n`
    /// of the reply. Roles and contents are plain text (never special ids). Roles may be
    /// `system`, `user`, `assistant`, `ipython` or `tool`, in any order (as Meta's); no messages
    /// is `InvalidArgument`.
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
        if let Kind::Bpe(v) = &self.vocab {
            return self.chat_tokenize_llama3(v, messages, add_assistant);
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
            let Some(eos) = self.eos() else {
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

    /// Meta's Llama 3 `ChatFormat.encode_dialog_prompt` (see [`Tokenizer::chat_tokenize`]).
    fn chat_tokenize_llama3(
        &self,
        v: &Arc<bpe::BpeVocab>,
        messages: &[ChatMessage<'_>],
        add_assistant: bool,
    ) -> Result<Vec<u32>> {
        let special = |name: &str| {
            v.special_id(name).ok_or_else(|| {
                Error::unsupported(format!("chat_tokenize: {} has no {name} token for the chat format", self.source))
            })
        };
        let bos = self.bos().ok_or_else(|| {
            Error::unsupported(format!("chat_tokenize: {} has no BOS token for the chat format", self.source))
        })?;
        let (start, end, eot) = (special(bpe::START_HEADER)?, special(bpe::END_HEADER)?, special(bpe::EOT)?);
        for (i, m) in messages.iter().enumerate() {
            if !LLAMA3_ROLES.contains(&m.role) {
                return Err(Error::invalid(format!(
                    "chat_tokenize: message {i} has role {:?}; expected one of {LLAMA3_ROLES:?}",
                    m.role
                )));
            }
        }
        let mut ids = vec![bos];
        let header = |role: &str, ids: &mut Vec<u32>| -> Result<()> {
            ids.push(start);
            ids.extend(self.encode(role, false, false)?);
            ids.push(end);
            ids.extend(self.encode("\n\n", false, false)?);
            Ok(())
        };
        for m in messages {
            header(m.role, &mut ids)?;
            ids.extend(self.encode(py_strip(m.content), false, false)?);
            ids.push(eot);
        }
        if add_assistant {
            header("assistant", &mut ids)?;
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
