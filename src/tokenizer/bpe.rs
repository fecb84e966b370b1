//! LLaMA 3's tokenizer: tiktoken byte-level BPE (rank = id = merge priority) behind Meta's
//! pre-tokenizer regex, the 256 special tokens, Meta's input slicing, and the GPT-2
//! byte <-> unicode mapping that `tokenizer.json` and GGUF `"gpt2"` vocabularies use.
//!
//! The regex split and the merge loop are `tiktoken-rs`'s [`CoreBPE`] (the same Rust code that
//! python `tiktoken`, and so Meta's reference, runs). Around it this module reproduces what
//! Meta's `Tokenizer.encode` adds: the input is cut into chunks of at most 400,000 characters and
//! wherever a run of whitespace or non-whitespace characters would exceed 25,000 characters,
//! which keeps fancy-regex's backtracking bounded (a single run of ~1M spaces makes it fail) and
//! encoding linear in the input length.

use std::collections::{HashMap, HashSet};

use tiktoken_rs::CoreBPE;

use super::{py_is_space, ByteSink};
use crate::alloc;

/// Meta's pre-tokenizer regex for Llama 3 (`pat_str` in `tokenizer.py`), also the `Split`
/// pattern of the Hugging Face `tokenizer.json`.
pub(crate) const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Meta's `TIKTOKEN_MAX_ENCODE_CHARS`: the input is encoded in chunks of this many characters.
pub(crate) const MAX_CHUNK_CHARS: usize = 400_000;

/// Meta's `MAX_NO_WHITESPACES_CHARS`: longest run of whitespace / non-whitespace characters
/// handed to tiktoken in one piece.
pub(crate) const MAX_RUN_CHARS: usize = 25_000;

/// Number of special tokens Meta appends after the ranks.
pub(crate) const N_SPECIAL: usize = 256;

/// `<|begin_of_text|>`: BOS.
pub(crate) const BEGIN_OF_TEXT: &str = "<|begin_of_text|>";
/// `<|end_of_text|>`: EOS of a base-model text.
pub(crate) const END_OF_TEXT: &str = "<|end_of_text|>";
/// `<|start_header_id|>`: opens a chat role header.
pub(crate) const START_HEADER: &str = "<|start_header_id|>";
/// `<|end_header_id|>`: closes a chat role header.
pub(crate) const END_HEADER: &str = "<|end_header_id|>";
/// `<|eot_id|>`: end of a chat turn.
pub(crate) const EOT: &str = "<|eot_id|>";
/// `<|eom_id|>`: end of a tool-call message (Llama 3.1+ namings only).
pub(crate) const EOM: &str = "<|eom_id|>";

/// The names of ids `n_base .. n_base + 256` in Meta's original Llama 3 `tokenizer.py`
/// (Meta-Llama-3-8B): `<|begin_of_text|>`, `<|end_of_text|>`, `<|reserved_special_token_0..3|>`,
/// `<|start_header_id|>`, `<|end_header_id|>`, `<|reserved_special_token_4|>`, `<|eot_id|>`,
/// then `<|reserved_special_token_5..250|>`.
pub(crate) fn llama3_special_names() -> Vec<String> {
    let reserved = |k: usize| format!("<|reserved_special_token_{k}|>");
    let mut names = vec![BEGIN_OF_TEXT.to_string(), END_OF_TEXT.to_string()];
    names.extend((0..4).map(reserved));
    names.push(START_HEADER.to_string());
    names.push(END_HEADER.to_string());
    names.push(reserved(4));
    names.push(EOT.to_string());
    names.extend((5..251).map(reserved));
    debug_assert_eq!(names.len(), N_SPECIAL);
    names
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte <-> unicode mapping

/// Bytes GPT-2's `bytes_to_unicode` keeps as the character of the same code point.
const fn gpt2_keeps(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
}

/// Code point of each byte in GPT-2's byte-level alphabet.
const BYTE_TO_CODE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut extra = 0;
    let mut b = 0;
    while b < 256 {
        if gpt2_keeps(b) {
            t[b as usize] = b;
        } else {
            t[b as usize] = 256 + extra;
            extra += 1;
        }
        b += 1;
    }
    t
};

/// Number of bytes GPT-2 moves to U+0100 and up.
const N_MOVED: usize = 68;

/// The byte of each code point U+0100 .. U+0100 + 68.
const MOVED_BYTES: [u8; N_MOVED] = {
    let mut t = [0u8; N_MOVED];
    let mut b = 0;
    while b < 256 {
        let c = BYTE_TO_CODE[b];
        if c >= 256 {
            t[(c - 256) as usize] = b as u8;
        }
        b += 1;
    }
    t
};

/// The GPT-2 byte-level character of `b` (`' '` is `Ġ`, `'\n'` is `Ċ`).
pub(crate) fn gpt2_char(b: u8) -> char {
    char::from_u32(BYTE_TO_CODE[b as usize]).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The byte a GPT-2 byte-level character stands for, `None` for characters outside the alphabet.
pub(crate) fn gpt2_byte(c: char) -> Option<u8> {
    let u = c as u32;
    if gpt2_keeps(u) {
        return Some(u as u8);
    }
    let k = u.checked_sub(256)? as usize;
    MOVED_BYTES.get(k).copied()
}

/// Decode a GPT-2 byte-level string to raw bytes; `Err((byte offset, char))` at the first
/// character outside the alphabet.
pub(crate) fn gpt2_decode(s: &str) -> Result<Vec<u8>, (usize, char)> {
    let mut out = Vec::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        out.push(gpt2_byte(c).ok_or((i, c))?);
    }
    Ok(out)
}

/// Encode raw bytes as a GPT-2 byte-level string.
pub(crate) fn gpt2_encode(bytes: &[u8], out: &mut String) {
    out.extend(bytes.iter().map(|&b| gpt2_char(b)));
}

// ---------------------------------------------------------------------------------------------
// Special-token matcher

/// A byte trie over the special-token names: longest name starting at a position.
#[derive(Default)]
struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Default)]
struct TrieNode {
    next: Vec<(u8, u32)>,
    id: Option<u32>,
}

impl Trie {
    fn insert(&mut self, key: &[u8], id: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut at = 0usize;
        for &b in key {
            let found = self.nodes[at].next.iter().find(|(c, _)| *c == b).map(|&(_, n)| n as usize);
            at = match found {
                Some(n) => n,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[at].next.push((b, n as u32));
                    n
                }
            };
        }
        self.nodes[at].id.get_or_insert(id);
    }

    /// The longest key that `s` starts with: (byte length, id).
    fn longest(&self, s: &[u8]) -> Option<(usize, u32)> {
        let mut at = 0usize;
        let mut best = None;
        for (i, &b) in s.iter().enumerate() {
            let node = self.nodes.get(at)?;
            match node.next.iter().find(|(c, _)| *c == b) {
                Some(&(_, n)) => at = n as usize,
                None => break,
            }
            if let Some(id) = self.nodes.get(at).and_then(|n| n.id) {
                best = Some((i + 1, id));
            }
        }
        best
    }
}

// ---------------------------------------------------------------------------------------------
// The vocabulary

/// One id of a byte-level BPE vocabulary, as a loader hands it over.
pub(crate) enum Entry {
    /// An ordinary token: its raw bytes (its id is its merge rank).
    Bytes(Vec<u8>),
    /// A special (control) token: its name, e.g. `<|eot_id|>`.
    Special(String),
}

/// Why [`BpeVocab::new`] refused a vocabulary (ids; the loader adds file positions).
#[derive(Debug)]
pub(crate) enum BuildError {
    /// Two ordinary tokens with the same bytes.
    DuplicateBytes { first: u32, second: u32 },
    /// Two special tokens with the same name.
    DuplicateSpecial { first: u32, second: u32 },
    /// An ordinary token with no bytes, or a special token with an empty name.
    Empty { id: u32 },
    /// A single byte that no ordinary token covers (some text could not be encoded).
    MissingByte(u8),
    /// More ids than fit a `u32` token id.
    TooMany(usize),
    /// No special token at all (LLaMA 3 has 256).
    NoSpecial,
    /// tiktoken refused to build (e.g. the regex does not compile).
    Core(String),
    /// A table could not be allocated.
    OutOfMemory(crate::error::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::DuplicateBytes { first, second } => {
                write!(f, "token {second} has the same bytes as token {first}")
            }
            BuildError::DuplicateSpecial { first, second } => {
                write!(f, "special token {second} has the same name as special token {first}")
            }
            BuildError::Empty { id } => write!(f, "token {id} is empty"),
            BuildError::MissingByte(b) => write!(
                f,
                "no token for the single byte 0x{b:02x}: not a complete byte-level BPE vocabulary \
                 like LLaMA 3's (which has all 256 single-byte tokens), so some text could not be \
                 encoded"
            ),
            BuildError::TooMany(n) => write!(f, "too many tokens ({n})"),
            BuildError::NoSpecial => write!(f, "no special tokens (LLaMA 3 has 256, <|begin_of_text|> first)"),
            BuildError::Core(msg) => write!(f, "cannot build the BPE: {msg}"),
            BuildError::OutOfMemory(e) => write!(f, "{}", e.message),
        }
    }
}

/// A LLaMA 3 byte-level BPE vocabulary ready to encode and decode. Immutable, `Send + Sync`.
pub(crate) struct BpeVocab {
    core: CoreBPE,
    /// Bytes of id `i`: `data[offsets[i]..offsets[i + 1]]` (a special token: its name).
    data: Vec<u8>,
    offsets: Vec<usize>,
    /// Vocabulary text of id `i` (GPT-2 byte-level form; a special token: its name), as
    /// `pieces[piece_offsets[i]..piece_offsets[i + 1]]`.
    pieces: String,
    piece_offsets: Vec<usize>,
    special: Vec<bool>,
    specials: Trie,
    special_ids: HashMap<String, u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
}

impl BpeVocab {
    /// Build from one entry per id (ordinary tokens: rank = id). `bos` / `eos` default to
    /// `<|begin_of_text|>` / `<|end_of_text|>` when given as `None`; the loader checks ranges.
    pub(crate) fn new(entries: Vec<Entry>, bos: Option<u32>, eos: Option<u32>) -> Result<BpeVocab, BuildError> {
        let n = entries.len();
        if n >= u32::MAX as usize {
            return Err(BuildError::TooMany(n));
        }
        let oom = BuildError::OutOfMemory;
        let mut encoder = alloc::map(n, "the BPE encoder").map_err(oom)?;
        let mut special_encoder = HashMap::with_capacity_and_hasher(N_SPECIAL, Default::default());
        let mut special_ids: HashMap<String, u32> = HashMap::with_capacity(N_SPECIAL);
        let mut data = alloc::vec(n.saturating_mul(8), "the tokens' bytes").map_err(oom)?;
        let mut offsets = alloc::vec(n + 1, "the tokens' offsets").map_err(oom)?;
        let mut pieces = alloc::string(n.saturating_mul(10), "the tokens' GPT-2 spellings").map_err(oom)?;
        let mut piece_offsets = alloc::vec(n + 1, "the spellings' offsets").map_err(oom)?;
        let mut special = alloc::vec(n, "the special-token flags").map_err(oom)?;
        let mut specials = Trie::default();
        let mut bytes_seen = [false; 256];
        offsets.push(0);
        piece_offsets.push(0);
        for (i, e) in entries.into_iter().enumerate() {
            let id = i as u32;
            match e {
                Entry::Bytes(b) => {
                    if b.is_empty() {
                        return Err(BuildError::Empty { id });
                    }
                    if let [single] = b[..] {
                        bytes_seen[single as usize] = true;
                    }
                    data.extend_from_slice(&b);
                    gpt2_encode(&b, &mut pieces);
                    if let Some(first) = encoder.insert(b, id) {
                        return Err(BuildError::DuplicateBytes { first, second: id });
                    }
                    special.push(false);
                }
                Entry::Special(name) => {
                    if name.is_empty() {
                        return Err(BuildError::Empty { id });
                    }
                    data.extend_from_slice(name.as_bytes());
                    pieces.push_str(&name);
                    specials.insert(name.as_bytes(), id);
                    if let Some(first) = special_ids.insert(name.clone(), id) {
                        return Err(BuildError::DuplicateSpecial { first, second: id });
                    }
                    special_encoder.insert(name, id);
                    special.push(true);
                }
            }
            offsets.push(data.len());
            piece_offsets.push(pieces.len());
        }
        if let Some(b) = bytes_seen.iter().position(|seen| !seen) {
            return Err(BuildError::MissingByte(b as u8));
        }
        // (tiktoken's special-token regex is the names joined by `|`: it must not be empty.)
        if special_encoder.is_empty() {
            return Err(BuildError::NoSpecial);
        }
        let core =
            CoreBPE::new(encoder, special_encoder, LLAMA3_PATTERN).map_err(|e| BuildError::Core(e.to_string()))?;
        let named = |name: &str| special_ids.get(name).copied();
        let bos = bos.or_else(|| named(BEGIN_OF_TEXT));
        let eos = eos.or_else(|| named(END_OF_TEXT));
        let mut eog: Vec<u32> =
            eos.into_iter().chain([END_OF_TEXT, EOT, EOM].iter().filter_map(|s| named(s))).collect();
        eog.sort_unstable();
        eog.dedup();
        Ok(BpeVocab { core, data, offsets, pieces, piece_offsets, special, specials, special_ids, bos, eos, eog })
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.special.len()
    }
    pub(crate) fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub(crate) fn eos(&self) -> Option<u32> {
        self.eos
    }
    /// EOS, `<|end_of_text|>`, `<|eot_id|>` and `<|eom_id|>` (those present).
    pub(crate) fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
    /// Whether `id` is a special (control) token.
    pub(crate) fn is_special(&self, id: u32) -> Option<bool> {
        self.special.get(id as usize).copied()
    }
    /// The id of a special token by name.
    pub(crate) fn special_id(&self, name: &str) -> Option<u32> {
        self.special_ids.get(name).copied()
    }
    /// Number of special tokens.
    pub(crate) fn n_special(&self) -> usize {
        self.special_ids.len()
    }
    /// The vocabulary text of `id`: GPT-2 byte-level form, or a special token's name.
    pub(crate) fn piece(&self, id: u32) -> Option<&str> {
        let i = id as usize;
        let (a, b) = (*self.piece_offsets.get(i)?, *self.piece_offsets.get(i + 1)?);
        self.pieces.get(a..b)
    }
    /// The raw bytes of `id` (a special token: its name).
    pub(crate) fn bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (a, b) = (*self.offsets.get(i)?, *self.offsets.get(i + 1)?);
        self.data.get(a..b)
    }

    /// Meta's `Tokenizer.encode` without BOS/EOS, appending to `out`: special-token text is
    /// plain text unless `parse_special` (tiktoken `allowed_special="all"`). Fails only if
    /// tiktoken's regex engine reports an error (not expected within Meta's slice limits).
    pub(crate) fn encode(&self, text: &str, parse_special: bool, out: &mut Vec<u32>) -> Result<(), String> {
        for_each_slice(text, |slice| {
            if !parse_special {
                return self.encode_ordinary(slice, out);
            }
            // tiktoken's `encode(slice, allowed_special="all")`: the leftmost special-token name
            // (the longest one there) is its id; the text between is ordinary text.
            let b = slice.as_bytes();
            let (mut last, mut i) = (0, 0);
            while i < b.len() {
                if slice.is_char_boundary(i) {
                    if let Some((len, id)) = self.specials.longest(&b[i..]) {
                        if slice.is_char_boundary(i + len) {
                            self.encode_ordinary(slice.get(last..i).unwrap_or(""), out)?;
                            out.push(id);
                            i += len;
                            last = i;
                            continue;
                        }
                    }
                }
                i += 1;
            }
            self.encode_ordinary(slice.get(last..).unwrap_or(""), out)
        })
    }

    /// tiktoken's `encode_ordinary` (through `encode` with no allowed special token, which
    /// reports regex errors instead of panicking).
    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>) -> Result<(), String> {
        if text.is_empty() {
            return Ok(());
        }
        let (ids, _) = self.core.encode(text, &HashSet::new()).map_err(|e| e.message)?;
        out.extend(ids);
        Ok(())
    }

    /// Concatenated bytes of `ids` (in range, checked by the caller); special tokens give their
    /// name, or nothing with `skip_special`.
    pub(crate) fn decode(&self, ids: &[u32], skip_special: bool, out: &mut impl ByteSink) {
        for &id in ids {
            if skip_special && self.is_special(id) == Some(true) {
                continue;
            }
            out.put(self.bytes(id).unwrap_or(&[]));
        }
    }
}

/// Python's `str.isspace()` for an ASCII byte (`\t\n\v\f\r`, 0x1c..=0x1f and space); false
/// for any byte >= 0x80. Branch-free, so that [`no_cut_needed`]'s loop vectorizes.
const fn is_ascii_py_space(b: u8) -> bool {
    (b == b' ') | (b.wrapping_sub(0x09) < 5) | (b.wrapping_sub(0x1c) < 4)
}

/// Bytes per block of the [`no_cut_needed`] check (a window of [`MAX_RUN_CHARS`] bytes always
/// holds a whole block).
const CHECK_BLOCK: usize = 4096;
const _: () = assert!(MAX_RUN_CHARS >= 2 * CHECK_BLOCK);

/// True when [`for_each_slice`] would hand over the whole text in one slice, decided without
/// decoding characters: the text has at most [`MAX_CHUNK_CHARS`] bytes (so as many characters
/// at most), and it is short or every [`CHECK_BLOCK`]-byte block holds both an ASCII
/// whitespace byte and an ASCII non-whitespace byte. A run longer than [`MAX_RUN_CHARS`]
/// characters spans more bytes than that, so it covers a whole block; every byte of a
/// whitespace run is ASCII whitespace or non-ASCII, and no byte of a non-whitespace run is
/// ASCII whitespace, so that block would fail the test. False only means "scan it".
fn no_cut_needed(bytes: &[u8]) -> bool {
    if bytes.len() > MAX_CHUNK_CHARS {
        return false;
    }
    if bytes.len() <= MAX_RUN_CHARS {
        return true;
    }
    bytes.chunks(CHECK_BLOCK).all(|block| {
        // Bit 0 = some ASCII whitespace, bit 1 = some ASCII non-whitespace.
        let seen = block.iter().fold(0u8, |acc, &b| {
            let ws = is_ascii_py_space(b);
            let ascii_other = (b < 0x80) & !ws;
            acc | u8::from(ws) | (u8::from(ascii_other) << 1)
        });
        seen == 3
    })
}

/// Call `f` on each slice Meta's `Tokenizer.encode` hands to tiktoken: chunks of at most
/// [`MAX_CHUNK_CHARS`] characters, each cut further wherever a run of whitespace
/// (`str.isspace()`) or non-whitespace characters would exceed [`MAX_RUN_CHARS`]
/// (`_split_whitespaces_or_nonwhitespaces`). The empty text gives no slice.
pub(crate) fn for_each_slice<E>(text: &str, mut f: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    if text.is_empty() {
        return Ok(());
    }
    if no_cut_needed(text.as_bytes()) {
        return f(text);
    }
    scan_slices(text, f)
}

/// [`for_each_slice`] by walking every character.
fn scan_slices<E>(text: &str, mut f: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    let mut slice_start = 0;
    let mut chunk_chars = 0;
    let mut run = 0;
    let mut run_is_space = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        // ASCII (most of English and code) without decoding a char.
        let (is_space, len) = match byte {
            0..=0x7f => (is_ascii_py_space(byte), 1),
            _ => match text.get(i..).and_then(|t| t.chars().next()) {
                Some(c) => (py_is_space(c), c.len_utf8()),
                None => (false, 1), // unreachable: `i` is always a char boundary
            },
        };
        if chunk_chars == MAX_CHUNK_CHARS {
            f(&text[slice_start..i])?;
            slice_start = i;
            chunk_chars = 0;
        }
        if chunk_chars == 0 || is_space != run_is_space {
            run_is_space = is_space;
            run = 1;
        } else {
            run += 1;
            if run > MAX_RUN_CHARS {
                f(&text[slice_start..i])?;
                slice_start = i;
                run = 1;
            }
        }
        chunk_chars += 1;
        i += len;
    }
    if slice_start < text.len() {
        f(&text[slice_start..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_alphabet_round_trips() {
        let mut seen = HashSet::new();
        for b in 0..=255u8 {
            let c = gpt2_char(b);
            assert!(seen.insert(c));
            assert_eq!(gpt2_byte(c), Some(b));
        }
        assert_eq!(gpt2_char(b' '), '\u{120}');
        assert_eq!(gpt2_char(b'\n'), '\u{10a}');
        assert_eq!(gpt2_char(0xad), '\u{143}');
        assert_eq!(gpt2_byte('\u{144}'), None);
        assert_eq!(gpt2_byte(' '), None);
        assert_eq!(gpt2_decode("a\u{120}b"), Ok(b"a b".to_vec()));
        assert_eq!(gpt2_decode("a b"), Err((1, ' ')));
    }

    #[test]
    fn the_no_cut_shortcut_agrees_with_the_scan() {
        // Texts over MAX_RUN_CHARS bytes with long runs of every kind placed at block edges.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        let pieces = ["a", " ", "\u{3000}", "中", "\n", "x y ", "\u{85}", "\t\u{3000}"];
        let (mut short, mut cut) = (0, 0);
        for _ in 0..300 {
            let mut t = String::new();
            while t.len() < 60_000 {
                let p = pieces[next(pieces.len() as u64) as usize];
                let reps = if next(8) == 0 { 5_000 + next(25_000) } else { 1 + next(40) };
                for _ in 0..reps {
                    t.push_str(p);
                }
            }
            let mut slices = Vec::new();
            scan_slices(&t, |s: &str| -> Result<(), ()> {
                slices.push(s.len());
                Ok(())
            })
            .unwrap();
            if no_cut_needed(t.as_bytes()) {
                short += 1;
                assert_eq!(slices, [t.len()]);
            } else if slices.len() > 1 {
                cut += 1;
            }
        }
        assert!(short > 20 && cut > 20, "both cases exercised: {short} {cut}");
    }

    #[test]
    fn ascii_space_test_is_py_is_space() {
        for b in 0..128u8 {
            assert_eq!(is_ascii_py_space(b), py_is_space(char::from(b)), "byte {b:#x}");
        }
        assert!((0x80..=0xffu8).all(|b| !is_ascii_py_space(b)));
    }

    #[test]
    fn special_names() {
        let names = llama3_special_names();
        assert_eq!(names.len(), 256);
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 256);
        assert_eq!(names[0], "<|begin_of_text|>");
        assert_eq!(names[6], "<|start_header_id|>");
        assert_eq!(names[9], "<|eot_id|>");
        assert_eq!(names[10], "<|reserved_special_token_5|>");
        assert_eq!(names[255], "<|reserved_special_token_250|>");
    }

    fn slices(text: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_slice(text, |s| {
            v.push(s.to_string());
            Ok::<(), ()>(())
        })
        .unwrap();
        v
    }

    #[test]
    fn meta_slicing() {
        assert!(slices("").is_empty());
        assert_eq!(slices("ab  c"), ["ab  c"]);
        let spaces = " ".repeat(MAX_RUN_CHARS * 2 + 3);
        let got = slices(&format!("x{spaces}y"));
        assert_eq!(got.iter().map(|s| s.chars().count()).collect::<Vec<_>>(), [MAX_RUN_CHARS + 1, MAX_RUN_CHARS, 4]);
        assert_eq!(got.concat(), format!("x{spaces}y"));
        // Characters, not bytes: 400,000 two-byte characters make one chunk.
        let text = "é".repeat(MAX_CHUNK_CHARS) + "ab";
        let got = slices(&text);
        let lens: Vec<usize> = got.iter().map(|s| s.chars().count()).collect();
        assert_eq!(lens.iter().sum::<usize>(), MAX_CHUNK_CHARS + 2);
        assert_eq!(lens[lens.len() - 1], 2);
        assert!(lens.iter().all(|&l| l <= MAX_RUN_CHARS));
    }

    #[test]
    fn trie_longest() {
        let mut t = Trie::default();
        t.insert(b"<|a|>", 1);
        t.insert(b"<|ab|>", 2);
        t.insert(b"<|a", 3);
        assert_eq!(t.longest(b"<|ab|>x"), Some((6, 2)));
        assert_eq!(t.longest(b"<|a|>"), Some((5, 1)));
        assert_eq!(t.longest(b"<|ax"), Some((3, 3)));
        assert_eq!(t.longest(b"<|"), None);
        assert_eq!(Trie::default().longest(b"<|a"), None);
    }
}
