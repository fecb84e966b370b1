//! A minimal protobuf wire-format reader and the parts of sentencepiece's `ModelProto`
//! (`sentencepiece_model.proto`) that encoding needs. Unknown fields of every wire type are
//! skipped; truncated or malformed data is a `Format` error naming the byte offset.

use crate::error::{Error, Result};
use crate::formats::protobuf::VarintError;

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_SGROUP: u8 = 3;
const WIRE_EGROUP: u8 = 4;
const WIRE_I32: u8 = 5;

/// Deepest nesting of (skipped) groups accepted.
const MAX_GROUP_DEPTH: usize = 64;

/// A cursor over one protobuf message; offsets in errors are relative to the whole file.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// File offset of `data[0]`.
    base: usize,
}

fn wire_name(wire: u8) -> &'static str {
    match wire {
        WIRE_VARINT => "varint",
        WIRE_I64 => "64-bit",
        WIRE_LEN => "length-delimited",
        WIRE_SGROUP => "start-group",
        WIRE_EGROUP => "end-group",
        WIRE_I32 => "32-bit",
        _ => "invalid",
    }
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], base: usize) -> Self {
        Reader { data, pos: 0, base }
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// A `Format` error at local offset `at`.
    fn err(&self, at: usize, msg: impl std::fmt::Display) -> Error {
        Error::format(format!("byte offset {}: {msg}", self.base + at))
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.pos;
        let (value, next) =
            crate::formats::protobuf::varint(self.data, start, self.data.len()).map_err(|e| match e {
                VarintError::Truncated => self.err(start, "truncated varint (data ends)"),
                VarintError::TooLong => self.err(start, "varint overflows 64 bits"),
            })?;
        self.pos = next;
        Ok(value)
    }

    /// (field number, wire type).
    fn tag(&mut self) -> Result<(u32, u8)> {
        let at = self.pos;
        let v = self.varint()?;
        let wire = (v & 7) as u8;
        let field = v >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(self.err(at, format!("invalid protobuf field number {field}")));
        }
        if wire > WIRE_I32 {
            return Err(self.err(at, format!("invalid protobuf wire type {wire} (field {field})")));
        }
        Ok((field as u32, wire))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let at = self.pos;
        match self.data.get(self.pos..self.pos + N) {
            Some(s) => {
                self.pos += N;
                let mut a = [0u8; N];
                a.copy_from_slice(s);
                Ok(a)
            }
            None => Err(self.err(at, format!("truncated {N}-byte value ({} bytes left)", self.left()))),
        }
    }

    /// A length-delimited value: (bytes, local offset of its first byte).
    fn bytes(&mut self) -> Result<(&'a [u8], usize)> {
        let at = self.pos;
        let len = self.varint()?;
        let left = self.left();
        if len > left as u64 {
            return Err(
                self.err(at, format!("length {len} runs past the end of the data ({left} bytes left; truncated?)"))
            );
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok((&self.data[start..self.pos], start))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let (b, off) = self.bytes()?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.err(off + e.valid_up_to(), format!("{what} is not valid UTF-8"))),
        }
    }

    /// A sub-message reader over a length-delimited value.
    fn message(&mut self) -> Result<Reader<'a>> {
        let (b, off) = self.bytes()?;
        Ok(Reader::new(b, self.base + off))
    }

    fn expect(&self, at: usize, field: u32, wire: u8, want: u8, what: &str) -> Result<()> {
        if wire == want {
            Ok(())
        } else {
            Err(self.err(
                at,
                format!(
                    "{what} (field {field}) has wire type {} ({wire}), expected {} ({want})",
                    wire_name(wire),
                    wire_name(want)
                ),
            ))
        }
    }

    fn skip_value(&mut self, wire: u8, at: usize) -> Result<()> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.fixed::<8>().map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_I32 => self.fixed::<4>().map(drop),
            _ => Err(self.err(at, "unexpected end-group tag")),
        }
    }

    /// Skip an unknown field whose tag (at local offset `at`) has been read.
    fn skip(&mut self, field: u32, wire: u8, at: usize) -> Result<()> {
        if wire != WIRE_SGROUP {
            return self.skip_value(wire, at);
        }
        let mut open = vec![field];
        while let Some(&top) = open.last() {
            if self.done() {
                return Err(self.err(at, format!("unterminated group (field {field})")));
            }
            let tag_at = self.pos;
            let (f, w) = self.tag()?;
            match w {
                WIRE_SGROUP => {
                    if open.len() >= MAX_GROUP_DEPTH {
                        return Err(self.err(tag_at, "groups nested too deeply"));
                    }
                    open.push(f);
                }
                WIRE_EGROUP => {
                    if f != top {
                        return Err(self.err(tag_at, format!("end-group for field {f} closes a group of field {top}")));
                    }
                    open.pop();
                }
                _ => self.skip_value(w, tag_at)?,
            }
        }
        Ok(())
    }

    fn bool(&mut self) -> Result<bool> {
        Ok(self.varint()? != 0)
    }

    /// A proto `int32` / enum: the low 32 bits of the varint.
    fn int32(&mut self) -> Result<i32> {
        Ok(self.varint()? as u32 as i32)
    }

    fn float(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.fixed::<4>()?))
    }
}

/// `ModelProto.SentencePiece`.
#[derive(Clone, Debug)]
pub(crate) struct PieceProto {
    pub piece: String,
    pub score: f32,
    /// Raw enum value (default 1 = NORMAL).
    pub ty: i32,
    /// File offset of the message (for errors).
    pub offset: usize,
}

/// The `TrainerSpec` fields that matter for encoding.
#[derive(Clone, Debug)]
pub(crate) struct TrainerSpec {
    pub model_type: i32,
    pub byte_fallback: bool,
    pub treat_whitespace_as_suffix: bool,
    pub unk_piece: String,
    pub bos_piece: String,
    pub eos_piece: String,
    pub unk_surface: String,
    pub offset: usize,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: 1,
            byte_fallback: false,
            treat_whitespace_as_suffix: false,
            unk_piece: "<unk>".into(),
            bos_piece: "<s>".into(),
            eos_piece: "</s>".into(),
            unk_surface: " \u{2047} ".into(),
            offset: 0,
        }
    }
}

/// The `NormalizerSpec` fields that matter for encoding.
#[derive(Clone, Debug)]
pub(crate) struct NormalizerSpec {
    pub name: String,
    pub precompiled_charsmap_len: usize,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap_len: 0,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// The parsed `ModelProto` (only the fields we use).
#[derive(Clone, Debug, Default)]
pub(crate) struct ModelProto {
    pub pieces: Vec<PieceProto>,
    pub trainer_spec: Option<TrainerSpec>,
    pub normalizer_spec: Option<NormalizerSpec>,
}

/// Parse a serialized `ModelProto`. Error messages carry the byte offset and the field path.
pub(crate) fn parse_model(data: &[u8]) -> Result<ModelProto> {
    let mut r = Reader::new(data, 0);
    let mut m = ModelProto::default();
    while !r.done() {
        let at = r.pos;
        let (field, wire) = r.tag()?;
        match field {
            1 => {
                let i = m.pieces.len();
                let piece = r
                    .expect(at, field, wire, WIRE_LEN, "field")
                    .and_then(|()| r.message())
                    .and_then(|mut sub| parse_piece(&mut sub, at))
                    .map_err(|e| e.context(format_args!("pieces[{i}]")))?;
                m.pieces.push(piece);
            }
            2 => {
                let spec = m.trainer_spec.get_or_insert_with(|| TrainerSpec { offset: at, ..TrainerSpec::default() });
                r.expect(at, field, wire, WIRE_LEN, "field")
                    .and_then(|()| r.message())
                    .and_then(|mut sub| parse_trainer(&mut sub, spec))
                    .map_err(|e| e.context("trainer_spec"))?;
            }
            3 => {
                let spec = m.normalizer_spec.get_or_insert_with(NormalizerSpec::default);
                r.expect(at, field, wire, WIRE_LEN, "field")
                    .and_then(|()| r.message())
                    .and_then(|mut sub| parse_normalizer(&mut sub, spec))
                    .map_err(|e| e.context("normalizer_spec"))?;
            }
            _ => r.skip(field, wire, at)?,
        }
    }
    Ok(m)
}

fn parse_piece(r: &mut Reader<'_>, offset: usize) -> Result<PieceProto> {
    let mut p = PieceProto { piece: String::new(), score: 0.0, ty: 1, offset };
    while !r.done() {
        let at = r.pos;
        let (field, wire) = r.tag()?;
        match field {
            1 => {
                r.expect(at, field, wire, WIRE_LEN, "piece")?;
                p.piece = r.string("piece")?;
            }
            2 => {
                r.expect(at, field, wire, WIRE_I32, "score")?;
                p.score = r.float()?;
            }
            3 => {
                r.expect(at, field, wire, WIRE_VARINT, "type")?;
                p.ty = r.int32()?;
            }
            _ => r.skip(field, wire, at)?,
        }
    }
    Ok(p)
}

fn parse_trainer(r: &mut Reader<'_>, t: &mut TrainerSpec) -> Result<()> {
    while !r.done() {
        let at = r.pos;
        let (field, wire) = r.tag()?;
        match field {
            3 => {
                r.expect(at, field, wire, WIRE_VARINT, "model_type")?;
                t.model_type = r.int32()?;
            }
            24 => {
                r.expect(at, field, wire, WIRE_VARINT, "treat_whitespace_as_suffix")?;
                t.treat_whitespace_as_suffix = r.bool()?;
            }
            35 => {
                r.expect(at, field, wire, WIRE_VARINT, "byte_fallback")?;
                t.byte_fallback = r.bool()?;
            }
            44 => {
                r.expect(at, field, wire, WIRE_LEN, "unk_surface")?;
                t.unk_surface = r.string("unk_surface")?;
            }
            45 => {
                r.expect(at, field, wire, WIRE_LEN, "unk_piece")?;
                t.unk_piece = r.string("unk_piece")?;
            }
            46 => {
                r.expect(at, field, wire, WIRE_LEN, "bos_piece")?;
                t.bos_piece = r.string("bos_piece")?;
            }
            47 => {
                r.expect(at, field, wire, WIRE_LEN, "eos_piece")?;
                t.eos_piece = r.string("eos_piece")?;
            }
            _ => r.skip(field, wire, at)?,
        }
    }
    Ok(())
}

fn parse_normalizer(r: &mut Reader<'_>, n: &mut NormalizerSpec) -> Result<()> {
    while !r.done() {
        let at = r.pos;
        let (field, wire) = r.tag()?;
        match field {
            1 => {
                r.expect(at, field, wire, WIRE_LEN, "name")?;
                n.name = r.string("name")?;
            }
            2 => {
                r.expect(at, field, wire, WIRE_LEN, "precompiled_charsmap")?;
                n.precompiled_charsmap_len = r.bytes()?.0.len();
            }
            3 => {
                r.expect(at, field, wire, WIRE_VARINT, "add_dummy_prefix")?;
                n.add_dummy_prefix = r.bool()?;
            }
            4 => {
                r.expect(at, field, wire, WIRE_VARINT, "remove_extra_whitespaces")?;
                n.remove_extra_whitespaces = r.bool()?;
            }
            5 => {
                r.expect(at, field, wire, WIRE_VARINT, "escape_whitespaces")?;
                n.escape_whitespaces = r.bool()?;
            }
            _ => r.skip(field, wire, at)?,
        }
    }
    Ok(())
}
