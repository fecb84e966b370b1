//! Building a vocabulary from a tokenizer file (format detected from the content) or from a
//! GGUF-embedded vocabulary, with every length, id and type validated. The LLaMA 3 sources
//! (tiktoken file, `tokenizer.json`, GGUF `"gpt2"`) are in `load_bpe.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use super::bpe::BpeVocab;
use super::spm::{parse_byte_piece, Vocab, VocabSpec, SPACE_SYMBOL};
use super::{load_bpe, proto};
use super::{GgufVocab, TokenType, TokenizerFormat};
use crate::alloc;
use crate::error::{Error, Result};
use crate::formats::cursor::Cursor;

/// The two tokenizer families.
#[derive(Clone)]
pub(crate) enum Kind {
    /// LLaMA 2: SentencePiece BPE.
    Spm(Arc<Vocab>),
    /// LLaMA 3: tiktoken byte-level BPE (shared: the tables are large).
    Bpe(Arc<BpeVocab>),
}

/// What a loader produces.
pub(crate) struct Loaded {
    pub vocab: Kind,
    pub format: TokenizerFormat,
    pub add_bos: bool,
}

const UNK_SURFACE: &str = " \u{2047} ";

/// Detect the file kind from its content and load it.
pub(crate) fn from_file_bytes(bytes: &[u8], source: &str) -> Result<Loaded> {
    if bytes.is_empty() {
        return Err(Error::format(format!("{source}: empty file, not a tokenizer")));
    }
    if bytes.starts_with(b"GGUF") {
        return Err(Error::format(format!(
            "{source}: a GGUF model file, not a tokenizer file (its embedded vocabulary is \
             loaded with Tokenizer::from_gguf)"
        )));
    }
    if looks_like_llama2c_bin(bytes) {
        return load_llama2c_bin(bytes, source);
    }
    if let Some(loaded) = load_text_formats(bytes, source)? {
        return Ok(loaded);
    }
    // A ModelProto starts with field 1, 2 or 3; anything else must at least parse.
    if matches!(bytes[0], 0x0a | 0x12 | 0x1a) || proto::parse_model(bytes).is_ok() {
        return load_sentencepiece(bytes, source);
    }
    // The file's bytes are not echoed: the path may name anything (a yaml's vocab_file).
    Err(Error::format(format!(
        "{source}: not a recognized tokenizer file (expected a SentencePiece tokenizer.model \
         protobuf, a llama2.c tokenizer .bin, a tiktoken BPE tokenizer.model or a Hugging Face \
         tokenizer.json; this {}-byte file is none of them)",
        bytes.len()
    )))
}

/// A llama2.c tokenizer starts with a little-endian u32 `max_token_length`, in practice small;
/// a SentencePiece protobuf starts with a tag and a varint, never two zero bytes there.
fn looks_like_llama2c_bin(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && bytes[2] == 0 && bytes[3] == 0 && (bytes[0] != 0 || bytes[1] != 0)
}

/// Load a Hugging Face `tokenizer.json` or a tiktoken BPE ranks file; `Ok(None)` when the
/// content is neither.
fn load_text_formats(bytes: &[u8], source: &str) -> Result<Option<Loaded>> {
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let first = text.iter().position(|b| !b.is_ascii_whitespace());
    if let Some(i) = first {
        if text[i] == b'{' {
            // LLaMA 3's tokenizer.json holds ~1.1 million values.
            if let Err((at, msg)) = crate::jsonsize::check(text, 1 << 22, None) {
                return Err(Error::format(format!("{source}: byte offset {at}: the JSON has {msg}")));
            }
            return match serde_json::from_slice::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(o)) if o.contains_key("model") => {
                    load_bpe::load_hf_json(&o, source).map(Some)
                }
                Ok(_) => {
                    Err(Error::format(format!("{source}: JSON file without a \"model\" object, not a tokenizer.json")))
                }
                Err(e) => Err(Error::format(format!("{source}: looks like JSON but does not parse: {e}"))),
            };
        }
    }
    // tiktoken: "<base64> <rank>\n" lines (the very first line; a protobuf starts with 0x0a).
    let line = text.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if load_bpe::is_tiktoken_line(line) {
        return load_bpe::load_tiktoken(text, source).map(Some);
    }
    Ok(None)
}

/// A SentencePiece `ModelProto`.
fn load_sentencepiece(bytes: &[u8], source: &str) -> Result<Loaded> {
    let what = "SentencePiece model";
    let m = proto::parse_model(bytes).map_err(|e| e.context(format_args!("{source}: {what} protobuf")))?;
    let ferr = |msg: String| Error::format(format!("{source}: {what}: {msg}"));
    let Some(trainer) = m.trainer_spec else {
        return Err(ferr(format!("no trainer_spec (field 2) after {} pieces (file truncated?)", m.pieces.len())));
    };
    let Some(norm) = m.normalizer_spec else {
        return Err(ferr("no normalizer_spec (field 3) (file truncated?)".to_string()));
    };
    match trainer.model_type {
        2 => {}
        1 | 3 | 4 => {
            let name = ["", "UNIGRAM", "BPE", "WORD", "CHAR"][trainer.model_type as usize];
            return Err(Error::unsupported(format!(
                "{source}: {what}: model_type {name} is not supported (only BPE, as LLaMA uses)"
            )));
        }
        t => return Err(ferr(format!("trainer_spec at byte offset {}: invalid model_type {t}", trainer.offset))),
    }
    if trainer.treat_whitespace_as_suffix {
        return Err(Error::unsupported(format!("{source}: {what}: treat_whitespace_as_suffix is not supported")));
    }
    if norm.precompiled_charsmap_len > 0 {
        return Err(Error::unsupported(format!(
            "{source}: {what}: normalizer {:?} has a precompiled_charsmap ({} bytes of Unicode \
             normalization rules); only identity normalization is supported",
            norm.name, norm.precompiled_charsmap_len
        )));
    }
    if m.pieces.is_empty() {
        return Err(ferr("no pieces".to_string()));
    }
    if m.pieces.len() >= u32::MAX as usize {
        return Err(ferr(format!("too many pieces ({})", m.pieces.len())));
    }

    let n = m.pieces.len();
    let mut pieces = alloc::vec(n, "the vocabulary's pieces")?;
    let mut scores = alloc::vec(n, "the vocabulary's scores")?;
    let mut types = alloc::vec(n, "the vocabulary's token types")?;
    let mut seen = SeenPieces::with_capacity(n)?;
    let mut unk: Option<usize> = None;
    let mut bytes_found = [false; 256];
    for (i, p) in m.pieces.iter().enumerate() {
        let at = p.offset;
        let ty = TokenType::from_i32(p.ty)
            .ok_or_else(|| ferr(format!("pieces[{i}] at byte offset {at}: invalid type {}", p.ty)))?;
        seen.add(i, &p.piece, ty).map_err(|fault| match fault {
            PieceFault::Empty => ferr(format!("pieces[{i}] at byte offset {at}: empty piece")),
            PieceFault::Repeat(j) => {
                ferr(format!("pieces[{i}] {:?} at byte offset {at} is already defined as id {j}", p.piece))
            }
        })?;
        match ty {
            TokenType::Unknown => {
                if let Some(j) = unk {
                    return Err(ferr(format!(
                        "pieces[{i}] at byte offset {at}: a second UNKNOWN piece (first: id {j})"
                    )));
                }
                unk = Some(i);
            }
            TokenType::Byte => {
                if !trainer.byte_fallback {
                    return Err(ferr(format!(
                        "pieces[{i}] {:?} at byte offset {at} is a BYTE piece but byte_fallback is off",
                        p.piece
                    )));
                }
                match parse_byte_piece(&p.piece) {
                    Some(b) if p.piece == format!("<0x{b:02X}>") => bytes_found[b as usize] = true,
                    _ => {
                        return Err(ferr(format!(
                            "pieces[{i}] {:?} at byte offset {at}: BYTE piece is not <0xNN>",
                            p.piece
                        )))
                    }
                }
            }
            _ => {}
        }
        pieces.push(p.piece.clone());
        scores.push(p.score);
        types.push(ty);
    }
    let Some(unk) = unk else {
        return Err(ferr("no UNKNOWN piece (<unk>)".to_string()));
    };
    if trainer.byte_fallback && bytes_found.iter().any(|f| !f) {
        let missing = bytes_found.iter().filter(|f| !**f).count();
        return Err(ferr(format!("byte_fallback is on but {missing} of the 256 <0xNN> byte pieces are missing")));
    }
    // sentencepiece's bos_id() / eos_id(): the id of bos_piece / eos_piece if it is CONTROL.
    let control =
        |piece: &str| seen.reserved.get(piece).filter(|&&i| types[i] == TokenType::Control).map(|&i| i as u32);
    let bos = control(&trainer.bos_piece);
    let eos = control(&trainer.eos_piece);
    let vocab = Vocab::new(VocabSpec {
        pieces,
        scores,
        types,
        unk: unk as u32,
        bos,
        eos,
        byte_fallback: trainer.byte_fallback,
        add_dummy_prefix: norm.add_dummy_prefix,
        remove_extra_whitespaces: norm.remove_extra_whitespaces,
        escape_whitespaces: norm.escape_whitespaces,
        unk_surface: trainer.unk_surface,
    })?;
    Ok(Loaded { vocab: Kind::Spm(Arc::new(vocab)), format: TokenizerFormat::SentencePiece, add_bos: true })
}

/// The pieces of a vocabulary seen so far, by id: text pieces (normal, user-defined, unused)
/// and reserved ones (control, unknown, byte) apart. The rule every vocabulary is held to
/// (sentencepiece's own for `tokenizer.model`): no piece is empty, and none appears twice
/// within its group.
struct SeenPieces<'a> {
    text: HashMap<&'a str, usize>,
    reserved: HashMap<&'a str, usize>,
}

/// Why [`SeenPieces::add`] refused a piece.
enum PieceFault {
    Empty,
    /// The id that already has the piece.
    Repeat(usize),
}

impl<'a> SeenPieces<'a> {
    fn with_capacity(n: usize) -> Result<Self> {
        Ok(SeenPieces { text: alloc::map(n, "the vocabulary's index")?, reserved: HashMap::new() })
    }

    /// Record piece `i` of type `ty`, or say why it breaks the rule.
    fn add(&mut self, i: usize, piece: &'a str, ty: TokenType) -> std::result::Result<(), PieceFault> {
        if piece.is_empty() {
            return Err(PieceFault::Empty);
        }
        let group = match ty {
            TokenType::Normal | TokenType::UserDefined | TokenType::Unused => &mut self.text,
            _ => &mut self.reserved,
        };
        match group.insert(piece, i) {
            Some(j) => Err(PieceFault::Repeat(j)),
            None => Ok(()),
        }
    }
}

/// [`SeenPieces`]' rule for the formats that are checked after they are read (a GGUF
/// vocabulary, `tokenizer.bin`): `fault` makes the error from the suffix `"[i] ..."`.
fn check_pieces(pieces: &[String], types: &[TokenType], fault: impl Fn(String) -> Error) -> Result<()> {
    let mut seen = SeenPieces::with_capacity(pieces.len())?;
    for (i, (p, &ty)) in pieces.iter().zip(types).enumerate() {
        seen.add(i, p, ty).map_err(|f| match f {
            PieceFault::Empty => fault(format!("[{i}] is empty")),
            PieceFault::Repeat(j) => fault(format!("[{i}] {p:?} is already id {j}")),
        })?;
    }
    Ok(())
}

/// A llama2.c `tokenizer.bin`: u32 max_token_length, then per id f32 score, i32 length, bytes.
fn load_llama2c_bin(bytes: &[u8], source: &str) -> Result<Loaded> {
    let what = "llama2.c tokenizer .bin";
    let ferr = |msg: String| Error::format(format!("{source}: {what}: {msg}"));
    let mut cur = Cursor::new(bytes);
    let Some(max_len) = cur.u32() else {
        return Err(ferr("shorter than its 4-byte header".to_string()));
    };
    let mut pieces: Vec<String> = Vec::new();
    let mut scores = Vec::new();
    while !cur.at_end() {
        let (id, pos) = (pieces.len(), cur.pos());
        let (Some(score), Some(len)) = (cur.f32(), cur.i32()) else {
            return Err(ferr(format!(
                "token {id} at byte offset {pos}: the 8-byte score/length header is cut off \
                 ({} bytes left; truncated?)",
                bytes.len() - pos
            )));
        };
        if len < 0 || len as u32 > max_len {
            return Err(ferr(format!(
                "token {id} at byte offset {pos}: length {len} is outside 0..={max_len} \
                 (max_token_length from the header)"
            )));
        }
        let start = cur.pos();
        let Some(raw) = cur.take(len as u64) else {
            return Err(ferr(format!(
                "token {id} at byte offset {pos}: {len} bytes of text expected, {} left \
                 (truncated?)",
                cur.left()
            )));
        };
        let text = std::str::from_utf8(raw).map_err(|e| {
            ferr(format!("token {id} at byte offset {}: text is not valid UTF-8", start + e.valid_up_to()))
        })?;
        pieces.push(text.to_owned());
        scores.push(score);
    }
    if pieces.len() < 3 {
        return Err(ferr(format!("only {} tokens; ids 0, 1, 2 must be <unk>, <s>, </s>", pieces.len())));
    }
    if pieces.len() >= u32::MAX as usize {
        return Err(ferr(format!("too many tokens ({})", pieces.len())));
    }
    let mut types = Vec::with_capacity(pieces.len());
    let mut byte_fallback = false;
    for (i, piece) in pieces.iter_mut().enumerate() {
        let ty = match i {
            0 => TokenType::Unknown,
            1 | 2 => {
                // Stored as "\n<s>\n" / "\n</s>\n".
                *piece = piece.trim_matches('\n').to_owned();
                TokenType::Control
            }
            _ => match parse_byte_piece(piece) {
                Some(b) if *piece == format!("<0x{b:02X}>") => {
                    byte_fallback = true;
                    TokenType::Byte
                }
                _ => {
                    *piece = piece.replace(' ', SPACE_SYMBOL);
                    TokenType::Normal
                }
            },
        };
        types.push(ty);
    }
    check_pieces(&pieces, &types, |e| ferr(format!("token{e}")))?;
    let vocab = Vocab::new(VocabSpec {
        pieces,
        scores,
        types,
        unk: 0,
        bos: Some(1),
        eos: Some(2),
        byte_fallback,
        add_dummy_prefix: true,
        remove_extra_whitespaces: false,
        escape_whitespaces: true,
        unk_surface: UNK_SURFACE.to_string(),
    })?;
    Ok(Loaded { vocab: Kind::Spm(Arc::new(vocab)), format: TokenizerFormat::Llama2cBin, add_bos: true })
}

/// A GGUF-embedded vocabulary (`tokenizer.ggml.*`).
pub(crate) fn from_gguf(v: GgufVocab, source: &str) -> Result<Loaded> {
    match v.model.as_str() {
        "llama" => {}
        "gpt2" => return load_bpe::from_gguf_bpe(v, source),
        other => {
            return Err(Error::unsupported(format!(
                "{source}: tokenizer.ggml.model {other:?} is not supported (only \"llama\", \
                 SentencePiece BPE, and \"gpt2\", LLaMA 3's byte-level BPE)"
            )))
        }
    }
    let ferr = |msg: String| Error::format(format!("{source}: {msg}"));
    let n = v.tokens.len();
    if n == 0 {
        return Err(ferr("tokenizer.ggml.tokens is empty".to_string()));
    }
    if n >= u32::MAX as usize {
        return Err(ferr(format!("tokenizer.ggml.tokens has too many entries ({n})")));
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
    let unk = in_range("unknown_token_id", v.unk)?;
    let scores = match v.scores {
        Some(s) if s.len() != n => {
            return Err(ferr(format!("tokenizer.ggml.scores has {} entries, expected one per token ({n})", s.len())))
        }
        Some(s) => s,
        None => vec![0.0; n],
    };
    // llama.cpp's defaults for SentencePiece vocabularies: BOS 1, EOS 2.
    let default_id = |id: u32| (n > id as usize).then_some(id);
    let bos = bos.or_else(|| default_id(1));
    let eos = eos.or_else(|| default_id(2));
    let types: Vec<TokenType> = match v.token_types {
        Some(t) if t.len() != n => {
            return Err(ferr(format!(
                "tokenizer.ggml.token_type has {} entries, expected one per token ({n})",
                t.len()
            )))
        }
        Some(t) => t
            .iter()
            .enumerate()
            .map(|(i, &ty)| match ty {
                // 0 is llama.cpp's LLAMA_TOKEN_TYPE_UNDEFINED.
                0 => Ok(TokenType::Normal),
                _ => TokenType::from_i32(ty)
                    .ok_or_else(|| ferr(format!("tokenizer.ggml.token_type[{i}] = {ty} is not a token type (0..=6)"))),
            })
            .collect::<Result<_>>()?,
        None => v
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let id = Some(i as u32);
                if id == unk {
                    TokenType::Unknown
                } else if id == bos || id == eos {
                    TokenType::Control
                } else if parse_byte_piece(t).is_some() {
                    TokenType::Byte
                } else {
                    TokenType::Normal
                }
            })
            .collect(),
    };
    let mut byte_fallback = false;
    for (i, (t, ty)) in v.tokens.iter().zip(&types).enumerate() {
        if *ty == TokenType::Byte {
            if parse_byte_piece(t).is_none() {
                return Err(ferr(format!("tokenizer.ggml.tokens[{i}] = {t:?} has type BYTE but is not <0xNN>")));
            }
            byte_fallback = true;
        }
    }
    check_pieces(&v.tokens, &types, |e| ferr(format!("tokenizer.ggml.tokens{e}")))?;
    let unk = unk.or_else(|| types.iter().position(|&t| t == TokenType::Unknown).map(|i| i as u32)).unwrap_or(0);
    let vocab = Vocab::new(VocabSpec {
        pieces: v.tokens,
        scores,
        types,
        unk,
        bos,
        eos,
        byte_fallback,
        add_dummy_prefix: v.add_space_prefix.unwrap_or(true),
        remove_extra_whitespaces: false,
        escape_whitespaces: true,
        unk_surface: UNK_SURFACE.to_string(),
    })?;
    Ok(Loaded { vocab: Kind::Spm(Arc::new(vocab)), format: TokenizerFormat::Gguf, add_bos: v.add_bos.unwrap_or(true) })
}
