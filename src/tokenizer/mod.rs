//! Tokenizers. INTERFACE STUB — owned by the tokenizer helper; signatures are the contract.

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

/// A loaded tokenizer.
#[derive(Debug)]
pub struct Tokenizer {}

impl Tokenizer {
    /// Detect the kind from the file content (SentencePiece protobuf, llama2.c tokenizer .bin, ...).
    pub fn from_file_bytes(_bytes: &[u8], _source: &str) -> Result<Tokenizer> {
        Err(Error::unsupported("stub"))
    }
    /// From a GGUF-embedded vocabulary.
    pub fn from_gguf(_vocab: GgufVocab, _source: &str) -> Result<Tokenizer> {
        Err(Error::unsupported("stub"))
    }
    /// Number of ids.
    pub fn n_vocab(&self) -> usize {
        0
    }
    /// BOS id.
    pub fn bos(&self) -> Option<u32> {
        None
    }
    /// EOS id.
    pub fn eos(&self) -> Option<u32> {
        None
    }
    /// End-of-generation id (eos, <|eot_id|>, <|end_of_text|>).
    pub fn is_eog(&self, _id: u32) -> bool {
        false
    }
    /// Which LLaMA version this vocabulary belongs to (2 or 3).
    pub fn version(&self) -> u32 {
        2
    }
    /// Encode UTF-8 text.
    pub fn encode(&self, _text: &str, _add_bos: bool, _parse_special: bool) -> Result<Vec<u32>> {
        Err(Error::unsupported("stub"))
    }
    /// Decode ids to UTF-8 bytes (ids out of range: InvalidArgument).
    pub fn decode(&self, _ids: &[u32], _skip_special: bool) -> Result<Vec<u8>> {
        Err(Error::unsupported("stub"))
    }
    /// Raw bytes of one token.
    pub fn token_to_piece(&self, _id: u32) -> Result<Vec<u8>> {
        Err(Error::unsupported("stub"))
    }
    /// The chat prompt as ids.
    pub fn chat_tokenize(&self, _messages: &[ChatMessage<'_>], _add_assistant: bool) -> Result<Vec<u32>> {
        Err(Error::unsupported("stub"))
    }
}
