//! The SentencePiece BPE vocabulary and its `encode` / `decode`, reproducing sentencepiece's
//! `bpe_model.cc`, `normalizer.cc` (identity rules) and `SentencePieceProcessor::Decode`.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::{ByteSink, TokenType};

/// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's stand-in for a space.
pub(crate) const SPACE_SYMBOL: &str = "\u{2581}";

/// Everything a loader hands over to build a [`Vocab`].
pub(crate) struct VocabSpec {
    /// Piece texts, with `▁` for spaces.
    pub pieces: Vec<String>,
    /// One score per piece (higher merges first).
    pub scores: Vec<f32>,
    /// One type per piece.
    pub types: Vec<TokenType>,
    /// The id that stands for unknown text.
    pub unk: u32,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
    /// Unknown characters become their UTF-8 byte tokens.
    pub byte_fallback: bool,
    /// Prepend `▁` to non-empty text.
    pub add_dummy_prefix: bool,
    /// Strip leading/trailing spaces and collapse runs of spaces.
    pub remove_extra_whitespaces: bool,
    /// Replace spaces by `▁`.
    pub escape_whitespaces: bool,
    /// What an unknown token decodes to (SentencePiece default `" ⁇ "`).
    pub unk_surface: String,
}

/// The Fx hash (as in rustc): much faster than SipHash for the many short piece lookups of BPE.
/// Keys come from the vocabulary file, not from the text being encoded.
#[derive(Clone, Copy, Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
type FxSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

fn bigram(a: char, b: char) -> u64 {
    u64::from(a) << 32 | u64::from(b)
}

/// Longest-prefix matcher over a small set of pieces (user-defined or special tokens).
#[derive(Clone, Debug, Default)]
struct Matcher {
    /// First char -> (piece, id), longest piece first.
    by_first: HashMap<char, Vec<(String, u32)>>,
}

impl Matcher {
    fn insert(&mut self, piece: &str, id: u32) {
        if let Some(c) = piece.chars().next() {
            let list = self.by_first.entry(c).or_default();
            if !list.iter().any(|(p, _)| p == piece) {
                list.push((piece.to_owned(), id));
                // Longest first; equal lengths keep insertion (id) order.
                list.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_first.is_empty()
    }

    /// The longest piece that `s` starts with: (byte length, id).
    fn longest(&self, s: &str) -> Option<(usize, u32)> {
        let c = s.chars().next()?;
        let list = self.by_first.get(&c)?;
        list.iter().find(|(p, _)| s.starts_with(p.as_str())).map(|(p, id)| (p.len(), *id))
    }
}

/// A SentencePiece BPE vocabulary ready to encode and decode.
#[derive(Clone)]
pub(crate) struct Vocab {
    pieces: Vec<String>,
    scores: Vec<f32>,
    /// `score_key` of each score (the BPE priority).
    score_keys: Vec<u32>,
    types: Vec<TokenType>,
    /// For `Byte` pieces: the byte value (0 for other types).
    byte_values: Vec<u8>,
    /// sentencepiece's `pieces_`: normal, user-defined and unused pieces.
    normal: FxMap<String, u32>,
    /// Byte length of the longest key of `normal` (longer merges cannot exist).
    max_normal_len: usize,
    /// Adjacent character pairs occurring inside pieces of `normal`, as `a << 32 | b`; `None`
    /// when the vocabulary has unused pieces (their resegmentation needs one global pass).
    /// A boundary between two characters not in this set is never merged across, so the text
    /// splits there into stretches that BPE can process one by one, with small heaps.
    inner_bigrams: Option<FxSet<u64>>,
    /// sentencepiece's `reserved_id_map_`: control, unknown and byte pieces.
    reserved: FxMap<String, u32>,
    /// `piece_to_id` of every one-character string in the Basic Multilingual Plane, by code
    /// point ([`NONE`] = no such piece): most unmerged symbols (CJK text) are looked up here
    /// instead of by string hash.
    bmp_ids: Vec<u32>,
    /// Some piece is in both `normal` and `reserved` (possible in GGUF / llama2.c vocabularies);
    /// then every lookup must try `reserved` first, as sentencepiece does.
    overlap: bool,
    /// Id written for each byte under byte fallback.
    byte_ids: [u32; 256],
    user_defined: Matcher,
    specials: Matcher,
    unk: u32,
    bos: Option<u32>,
    eos: Option<u32>,
    byte_fallback: bool,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    unk_surface: String,
}

/// `<0xNN>` (hex digits of either case) -> the byte.
pub(crate) fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A candidate merge of two adjacent symbols, ordered for a max-heap by `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    /// `score_key(score) << 32 | (u32::MAX - left)`: higher score first, then leftmost.
    key: u64,
    right: u32,
    /// Byte length of the merged piece.
    size: u32,
    /// Id of the merged piece in `normal`.
    id: u32,
}

impl Pair {
    fn left(&self) -> u32 {
        u32::MAX - self.key as u32
    }
}

/// A u32 whose unsigned order is the total order of the f32 scores.
fn score_key(score: f32) -> u32 {
    let bits = score.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

const NONE: u32 = u32::MAX;

/// The longest normalized text one BPE run handles (symbol indices and offsets are u32).
pub(crate) const MAX_BPE_BYTES: usize = u32::MAX as usize - 1;

/// The character of a one-character string.
fn single_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// One symbol of the BPE linked list: a byte range of the normalized text.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
    freeze: bool,
    /// Id of a merged symbol (from `normal`), or [`NONE`] for an unmerged one (looked up later).
    id: u32,
}

/// Working state of one BPE run.
struct Bpe<'v, 's> {
    vocab: &'v Vocab,
    text: &'s str,
    symbols: Vec<Symbol>,
    agenda: BinaryHeap<Pair>,
    /// sentencepiece's `rev_merge`: merged unused piece -> its two halves.
    rev_merge: FxMap<&'s str, (&'s str, &'s str)>,
}

impl<'s> Bpe<'_, 's> {
    fn piece(&self, start: u32, len: u32) -> Option<&'s str> {
        let start = start as usize;
        self.text.get(start..start + len as usize)
    }

    /// sentencepiece's `MaybeAddNewSymbolPair`.
    fn maybe_add_pair(&mut self, left: u32, right: u32) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (self.symbols[left as usize], self.symbols[right as usize]);
        let size = l.len as usize + r.len as usize;
        if l.freeze || r.freeze || size > self.vocab.max_normal_len {
            return;
        }
        let Some(merged) = self.piece(l.start, size as u32) else {
            return;
        };
        let Some(&id) = self.vocab.normal.get(merged) else {
            return;
        };
        let id = id as usize;
        self.agenda.push(Pair {
            key: u64::from(self.vocab.score_keys[id]) << 32 | u64::from(u32::MAX - left),
            right,
            size: size as u32,
            id: id as u32,
        });
        if self.vocab.types[id] == TokenType::Unused {
            if let (Some(a), Some(b)) = (self.piece(l.start, l.len), self.piece(r.start, r.len)) {
                self.rev_merge.insert(merged, (a, b));
            }
        }
    }

    /// Run the BPE merges over symbols `begin..end`.
    fn merge(&mut self, begin: u32, end: u32) {
        for i in begin.saturating_add(1)..end {
            self.maybe_add_pair(i - 1, i);
        }
        while let Some(top) = self.agenda.pop() {
            let (left, right) = (top.left(), top.right);
            let (l, r) = (self.symbols[left as usize], self.symbols[right as usize]);
            if l.len == 0 || r.len == 0 || l.len + r.len != top.size || l.next != right {
                continue;
            }
            self.symbols[left as usize].len += r.len;
            self.symbols[left as usize].next = r.next;
            self.symbols[left as usize].id = top.id;
            if r.next != NONE {
                self.symbols[r.next as usize].prev = left;
            }
            self.symbols[right as usize].len = 0;
            self.maybe_add_pair(l.prev, left);
            self.maybe_add_pair(left, r.next);
        }
    }
}

impl Vocab {
    /// Build the lookup tables (`OutOfMemory` when they cannot be allocated). The loaders have
    /// validated lengths and ids.
    pub(crate) fn new(spec: VocabSpec) -> crate::error::Result<Vocab> {
        let n = spec.pieces.len();
        let mut normal: FxMap<String, u32> = crate::alloc::map(n, "the vocabulary's index")?;
        let mut reserved = FxMap::default();
        let mut byte_values = crate::alloc::vec(n, "the vocabulary's byte values")?;
        byte_values.resize(n, 0u8);
        let mut byte_by_value: [Option<u32>; 256] = [None; 256];
        let mut user_defined = Matcher::default();
        let mut specials = Matcher::default();
        for (i, (piece, ty)) in spec.pieces.iter().zip(&spec.types).enumerate() {
            let id = i as u32;
            if piece.is_empty() {
                continue;
            }
            let map = match ty {
                TokenType::Normal | TokenType::UserDefined | TokenType::Unused => &mut normal,
                TokenType::Unknown | TokenType::Control | TokenType::Byte => &mut reserved,
            };
            map.entry(piece.clone()).or_insert(id);
            match ty {
                TokenType::Byte => {
                    if let Some(b) = parse_byte_piece(piece) {
                        byte_values[i] = b;
                        byte_by_value[b as usize].get_or_insert(id);
                    }
                }
                TokenType::UserDefined => {
                    user_defined.insert(piece, id);
                    specials.insert(piece, id);
                }
                TokenType::Control | TokenType::Unknown => specials.insert(piece, id),
                TokenType::Normal | TokenType::Unused => {}
            }
        }
        let scores = spec.scores;
        let has_unused = spec.types.contains(&TokenType::Unused);
        let mut v = Vocab {
            pieces: spec.pieces,
            // -0.0 and 0.0 compare equal in sentencepiece; the total order would separate them.
            score_keys: scores.iter().map(|&s| score_key(if s == 0.0 { 0.0 } else { s })).collect(),
            scores,
            types: spec.types,
            byte_values,
            max_normal_len: normal.keys().map(String::len).max().unwrap_or(0),
            inner_bigrams: if has_unused {
                None
            } else {
                let mut set = FxSet::default();
                for piece in normal.keys() {
                    let mut chars = piece.chars();
                    if let Some(mut prev) = chars.next() {
                        for c in chars {
                            set.insert(bigram(prev, c));
                            prev = c;
                        }
                    }
                }
                Some(set)
            },
            bmp_ids: Vec::new(),
            overlap: reserved.keys().any(|k| normal.contains_key(k)),
            normal,
            reserved,
            byte_ids: [spec.unk; 256],
            user_defined,
            specials,
            unk: spec.unk,
            bos: spec.bos,
            eos: spec.eos,
            byte_fallback: spec.byte_fallback,
            add_dummy_prefix: spec.add_dummy_prefix,
            remove_extra_whitespaces: spec.remove_extra_whitespaces,
            escape_whitespaces: spec.escape_whitespaces,
            unk_surface: spec.unk_surface,
        };
        let mut bmp_ids = vec![NONE; 0x10000];
        for piece in v.normal.keys().chain(v.reserved.keys()) {
            if let Some(slot) = single_char(piece).and_then(|c| bmp_ids.get_mut(c as usize)) {
                *slot = v.piece_to_id(piece).unwrap_or(NONE);
            }
        }
        v.bmp_ids = bmp_ids;
        for (b, by_value) in byte_by_value.iter().enumerate() {
            // sentencepiece: PieceToId("<0xNN>"), i.e. the piece or else unk.
            v.byte_ids[b] = by_value.or_else(|| v.piece_to_id(&format!("<0x{b:02X}>"))).unwrap_or(v.unk);
        }
        Ok(v)
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.pieces.len()
    }
    pub(crate) fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub(crate) fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub(crate) fn unk(&self) -> u32 {
        self.unk
    }
    pub(crate) fn add_dummy_prefix(&self) -> bool {
        self.add_dummy_prefix
    }
    pub(crate) fn remove_extra_whitespaces(&self) -> bool {
        self.remove_extra_whitespaces
    }
    pub(crate) fn byte_fallback(&self) -> bool {
        self.byte_fallback
    }
    pub(crate) fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }
    pub(crate) fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }
    pub(crate) fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// sentencepiece's `PieceToId` without the unk fallback: reserved pieces win over normal ones.
    fn piece_to_id(&self, piece: &str) -> Option<u32> {
        if self.overlap {
            return self.reserved.get(piece).or_else(|| self.normal.get(piece)).copied();
        }
        // No piece is in both maps, so the order does not matter; text pieces are normal.
        self.normal.get(piece).or_else(|| self.reserved.get(piece)).copied()
    }

    /// [`Vocab::piece_to_id`], through `bmp_ids` for a one-character piece.
    fn lookup(&self, piece: &str) -> Option<u32> {
        if let Some(&id) = single_char(piece).and_then(|c| self.bmp_ids.get(c as usize)) {
            return (id != NONE).then_some(id);
        }
        self.piece_to_id(piece)
    }

    /// The longest control / user-defined / unknown piece that `s` starts with.
    pub(crate) fn match_special(&self, s: &str) -> Option<(usize, u32)> {
        if self.specials.is_empty() {
            return None;
        }
        self.specials.longest(s)
    }

    /// sentencepiece's `Normalizer::Normalize` with identity rules.
    fn normalize(&self, text: &str) -> String {
        let mut input = text;
        if self.remove_extra_whitespaces {
            input = input.trim_start_matches(' ');
        }
        if input.is_empty() {
            return String::new();
        }
        let ws = if self.escape_whitespaces { SPACE_SYMBOL } else { " " };
        let mut out = String::with_capacity(input.len() + 3);
        if self.add_dummy_prefix {
            out.push_str(ws);
        }
        let mut is_prev_space = self.remove_extra_whitespaces;
        for c in input.chars() {
            if !(is_prev_space && c == ' ') {
                if c == ' ' {
                    out.push_str(ws);
                } else {
                    out.push(c);
                }
                is_prev_space = c == ' ';
            }
            if !self.remove_extra_whitespaces {
                is_prev_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(ws) {
                out.truncate(out.len() - ws.len());
            }
        }
        out
    }

    /// Encode one piece of plain text (no special-token parsing, no BOS), appending to `out`.
    /// Fails only when the normalized text exceeds [`MAX_BPE_BYTES`].
    pub(crate) fn encode_text(&self, text: &str, out: &mut Vec<u32>) -> Result<(), usize> {
        let normalized = self.normalize(text);
        if normalized.len() > MAX_BPE_BYTES {
            return Err(normalized.len());
        }
        if !normalized.is_empty() {
            self.bpe(&normalized, out);
        }
        Ok(())
    }

    /// sentencepiece's `bpe::Model::SampleEncode` (alpha 0) plus the unknown / byte-fallback
    /// handling of `SentencePieceProcessor::PopulateSentencePieceText`.
    /// `text.len()` is at most [`MAX_BPE_BYTES`].
    fn bpe(&self, text: &str, out: &mut Vec<u32>) {
        let mut st =
            Bpe { vocab: self, text, symbols: Vec::new(), agenda: BinaryHeap::new(), rev_merge: FxMap::default() };
        // Split into characters; user-defined pieces are single frozen symbols.
        let mut skip_to = 0;
        for (i, c) in text.char_indices() {
            if i < skip_to {
                continue;
            }
            let user_defined = match self.user_defined.is_empty() {
                true => None,
                false => self.user_defined.longest(&text[i..]),
            };
            let (len, freeze) = match user_defined {
                Some((len, _)) => (len, true),
                None => (c.len_utf8(), false),
            };
            let idx = st.symbols.len() as u32;
            st.symbols.push(Symbol {
                start: i as u32,
                len: len as u32,
                prev: if idx == 0 { NONE } else { idx - 1 },
                next: idx + 1,
                freeze,
                id: NONE,
            });
            skip_to = i + len;
        }
        let Some(last) = st.symbols.last_mut() else {
            return;
        };
        last.next = NONE;

        // Merge stretch by stretch (no merge can cross a boundary whose character pair occurs
        // in no piece; merges in different stretches commute), or all at once.
        let n = st.symbols.len() as u32;
        let mut begin = 0u32;
        let mut last_char = None;
        for i in 0..n {
            let sym = st.symbols[i as usize];
            let mut chars = st.piece(sym.start, sym.len).unwrap_or("").chars();
            let (first, last) = (chars.next(), chars.next_back());
            if let (Some(set), Some(a), Some(b)) = (&self.inner_bigrams, last_char, first) {
                if !set.contains(&bigram(a, b)) {
                    st.merge(begin, i);
                    begin = i;
                }
            }
            last_char = last.or(first);
        }
        st.merge(begin, n);

        let mut is_prev_unk = false;
        let mut stack: Vec<&str> = Vec::new();
        let mut index = 0;
        while index != NONE {
            let sym = st.symbols[index as usize];
            index = sym.next;
            let Some(piece) = st.piece(sym.start, sym.len) else {
                continue;
            };
            // Resegment merged unused pieces into their halves (sentencepiece `resegment`).
            stack.push(piece);
            let mut known = if self.overlap { NONE } else { sym.id };
            while let Some(w) = stack.pop() {
                // A merged symbol carries its `normal` id; sentencepiece's lookup would give the
                // same id unless the piece is also reserved (`overlap`).
                let id = if known != NONE { Some(known) } else { self.lookup(w) };
                known = NONE;
                if let Some(id) = id {
                    if self.types[id as usize] == TokenType::Unused {
                        if let Some(&(a, b)) = st.rev_merge.get(w) {
                            stack.push(b);
                            stack.push(a);
                            continue;
                        }
                    }
                }
                let id = id.unwrap_or(self.unk);
                let is_unk = self.types[id as usize] == TokenType::Unknown;
                if is_unk && self.byte_fallback {
                    out.extend(w.bytes().map(|b| self.byte_ids[b as usize]));
                } else if !(is_unk && is_prev_unk) {
                    // A run of unknown pieces becomes one unknown id.
                    out.push(id);
                }
                is_prev_unk = is_unk;
            }
        }
    }

    /// sentencepiece's `Decode`, appending raw bytes (byte pieces are not UTF-8 validated).
    /// Ids must be in range (checked by the caller).
    pub(crate) fn decode(&self, ids: &[u32], skip_special: bool, out: &mut impl ByteSink) {
        let strip_bos_ws = self.add_dummy_prefix || self.remove_extra_whitespaces;
        let start_len = out.count();
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        for &id in ids {
            let i = id as usize;
            let ty = self.types[i];
            if ty == TokenType::Byte {
                out.put(&[self.byte_values[i]]);
                continue;
            }
            if bos_ws_seen || out.count() > start_len {
                is_bos_ws = false;
            }
            bos_ws_seen = false;
            match ty {
                TokenType::Control => {}
                TokenType::Unknown => {
                    if !skip_special {
                        out.put(self.unk_surface.as_bytes());
                    }
                }
                _ => {
                    let mut piece = self.pieces[i].as_str();
                    if is_bos_ws && strip_bos_ws {
                        if let Some(rest) = piece.strip_prefix(SPACE_SYMBOL) {
                            piece = rest;
                            // With remove_extra_whitespaces every leading space goes.
                            bos_ws_seen = !self.remove_extra_whitespaces;
                        }
                    }
                    push_unescaped(piece, out);
                }
            }
        }
    }

    /// The bytes of one piece alone (no leading-space handling).
    pub(crate) fn token_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let i = id as usize;
        match self.types[i] {
            TokenType::Byte => out.push(self.byte_values[i]),
            TokenType::Control => {}
            TokenType::Unknown => out.extend_from_slice(self.unk_surface.as_bytes()),
            _ => push_unescaped(&self.pieces[i], out),
        }
    }
}

/// Append `piece` with every `▁` turned into a space.
fn push_unescaped(piece: &str, out: &mut impl ByteSink) {
    for (k, part) in piece.split(SPACE_SYMBOL).enumerate() {
        if k > 0 {
            out.put(b" ");
        }
        out.put(part.as_bytes());
    }
}
