//! The parts of sentencepiece's `ModelProto` (`sentencepiece_model.proto`) that encoding needs,
//! read with the crate's protobuf reader ([`crate::formats::protobuf`]). Unknown fields of every
//! wire type are passed over; truncated or malformed data is a `Format` error naming the byte
//! offset.

use crate::error::{Error, Result};
use crate::formats::protobuf::{wire_name, Field, Fields, Value, I32, LEN, VARINT};

/// The fields of the message in `data[start..end]`, wire errors as `Format` errors naming the
/// byte offset.
fn fields(data: &[u8], start: usize, end: usize) -> impl Iterator<Item = Result<Field>> + '_ {
    Fields::new(data, start, end).map(|f| f.map_err(|e| Error::format(format!("byte offset {}: {e}", e.at))))
}

/// The error for known field `f` (`what`) stored with another wire type than `want`.
fn wrong_wire(f: &Field, want: u8, what: &str) -> Error {
    let wire = f.value.wire();
    Error::format(format!(
        "byte offset {}: {what} (field {}) has wire type {} ({wire}), expected {} ({want})",
        f.at,
        f.number,
        wire_name(wire),
        wire_name(want)
    ))
}

fn varint(f: &Field, what: &str) -> Result<u64> {
    match f.value {
        Value::Varint(v) => Ok(v),
        _ => Err(wrong_wire(f, VARINT, what)),
    }
}

fn bool(f: &Field, what: &str) -> Result<bool> {
    varint(f, what).map(|v| v != 0)
}

/// A proto `int32` / enum: the low 32 bits of the varint.
fn int32(f: &Field, what: &str) -> Result<i32> {
    varint(f, what).map(|v| v as u32 as i32)
}

fn float(f: &Field, what: &str) -> Result<f32> {
    match f.value {
        Value::I32(bits) => Ok(f32::from_bits(bits)),
        _ => Err(wrong_wire(f, I32, what)),
    }
}

/// A length-delimited value: (start, end).
fn span(f: &Field, what: &str) -> Result<(usize, usize)> {
    match f.value {
        Value::Len { start, len } => Ok((start, start + len)),
        _ => Err(wrong_wire(f, LEN, what)),
    }
}

fn string(data: &[u8], f: &Field, what: &str) -> Result<String> {
    let (start, end) = span(f, what)?;
    match std::str::from_utf8(&data[start..end]) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(Error::format(format!("byte offset {}: {what} is not valid UTF-8", start + e.valid_up_to()))),
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
    let mut m = ModelProto::default();
    for f in fields(data, 0, data.len()) {
        let f = f?;
        match f.number {
            1 => {
                let i = m.pieces.len();
                let piece = span(&f, "field")
                    .and_then(|(start, end)| parse_piece(data, start, end, f.at))
                    .map_err(|e| e.context(format_args!("pieces[{i}]")))?;
                m.pieces.push(piece);
            }
            2 => {
                let spec = m.trainer_spec.get_or_insert_with(|| TrainerSpec { offset: f.at, ..TrainerSpec::default() });
                span(&f, "field")
                    .and_then(|(start, end)| parse_trainer(data, start, end, spec))
                    .map_err(|e| e.context("trainer_spec"))?;
            }
            3 => {
                let spec = m.normalizer_spec.get_or_insert_with(NormalizerSpec::default);
                span(&f, "field")
                    .and_then(|(start, end)| parse_normalizer(data, start, end, spec))
                    .map_err(|e| e.context("normalizer_spec"))?;
            }
            _ => {} // unknown field: passed over
        }
    }
    Ok(m)
}

fn parse_piece(data: &[u8], start: usize, end: usize, offset: usize) -> Result<PieceProto> {
    let mut p = PieceProto { piece: String::new(), score: 0.0, ty: 1, offset };
    for f in fields(data, start, end) {
        let f = f?;
        match f.number {
            1 => p.piece = string(data, &f, "piece")?,
            2 => p.score = float(&f, "score")?,
            3 => p.ty = int32(&f, "type")?,
            _ => {}
        }
    }
    Ok(p)
}

fn parse_trainer(data: &[u8], start: usize, end: usize, t: &mut TrainerSpec) -> Result<()> {
    for f in fields(data, start, end) {
        let f = f?;
        match f.number {
            3 => t.model_type = int32(&f, "model_type")?,
            24 => t.treat_whitespace_as_suffix = bool(&f, "treat_whitespace_as_suffix")?,
            35 => t.byte_fallback = bool(&f, "byte_fallback")?,
            44 => t.unk_surface = string(data, &f, "unk_surface")?,
            45 => t.unk_piece = string(data, &f, "unk_piece")?,
            46 => t.bos_piece = string(data, &f, "bos_piece")?,
            47 => t.eos_piece = string(data, &f, "eos_piece")?,
            _ => {}
        }
    }
    Ok(())
}

fn parse_normalizer(data: &[u8], start: usize, end: usize, n: &mut NormalizerSpec) -> Result<()> {
    for f in fields(data, start, end) {
        let f = f?;
        match f.number {
            1 => n.name = string(data, &f, "name")?,
            2 => n.precompiled_charsmap_len = span(&f, "precompiled_charsmap").map(|(s, e)| e - s)?,
            3 => n.add_dummy_prefix = bool(&f, "add_dummy_prefix")?,
            4 => n.remove_extra_whitespaces = bool(&f, "remove_extra_whitespaces")?,
            5 => n.escape_whitespaces = bool(&f, "escape_whitespaces")?,
            _ => {}
        }
    }
    Ok(())
}
