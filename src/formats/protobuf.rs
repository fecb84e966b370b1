//! Protobuf's wire format read in place: the one reader behind the `.ckpt` parser and
//! `tokenizer.model`'s. [`Fields`] walks the fields of one message, every length checked
//! against the end of the message that encloses it; unknown groups are passed over. Each format
//! words the [`WireError`]s in its own messages (file, tensor, field path).

use std::fmt;

use super::cursor::{Cursor, VarintError};

/// Deepest nesting of groups passed over.
const MAX_GROUP_DEPTH: usize = 64;

/// Wire type of a varint.
pub(crate) const VARINT: u8 = 0;
/// Wire type of a fixed 64-bit value.
pub(crate) const I64: u8 = 1;
/// Wire type of a length-delimited value (bytes, string, sub-message, packed repeated).
pub(crate) const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
/// Wire type of a fixed 32-bit value.
pub(crate) const I32: u8 = 5;

/// The protobuf name of wire type `wire`.
pub(crate) fn wire_name(wire: u8) -> &'static str {
    match wire {
        VARINT => "varint",
        I64 => "64-bit",
        LEN => "length-delimited",
        SGROUP => "start-group",
        EGROUP => "end-group",
        I32 => "32-bit",
        _ => "invalid",
    }
}

/// A field's value where it sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// A varint.
    Varint(u64),
    /// A fixed 64-bit value.
    I64(u64),
    /// A length-delimited value: `len` bytes from offset `start`.
    Len { start: usize, len: usize },
    /// A fixed 32-bit value.
    I32(u32),
    /// A group (deprecated; nothing we read is one), passed over.
    Group,
}

impl Value {
    /// The wire type this value was stored with.
    pub(crate) fn wire(self) -> u8 {
        match self {
            Value::Varint(_) => VARINT,
            Value::I64(_) => I64,
            Value::Len { .. } => LEN,
            Value::I32(_) => I32,
            Value::Group => SGROUP,
        }
    }
}

/// One field of a message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    /// The field number.
    pub(crate) number: u32,
    /// The offset of its key.
    pub(crate) at: usize,
    /// Its value.
    pub(crate) value: Value,
}

/// What is wrong with the data at byte offset `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireError {
    /// Where (the key of the field, or the varint that does not end).
    pub(crate) at: usize,
    /// What.
    pub(crate) fault: Fault,
}

/// The kinds of [`WireError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A varint the message ends inside of (at offset `end`).
    TruncatedVarint { end: usize },
    /// A varint of more than 64 bits.
    VarintTooLong,
    /// Field number 0 or above 2^29 - 1.
    FieldNumber(u64),
    /// Wire types 6 and 7.
    WireType { wire: u8, field: u64 },
    /// A value of `need` bytes with `left` before the message's end at `end`.
    PastEnd { field: u32, need: u64, left: usize, end: usize },
    /// A group whose end-group never comes.
    UnterminatedGroup { field: u32 },
    /// Groups nested deeper than we follow.
    GroupsTooDeep,
    /// An end-group that closes another field's group, or none.
    StrayEndGroup { field: u32 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fault {
            Fault::TruncatedVarint { end } => {
                write!(f, "truncated varint: the enclosing data ends at byte offset {end}")
            }
            Fault::VarintTooLong => f.write_str("varint overflows 64 bits or is longer than 10 bytes"),
            Fault::FieldNumber(n) => write!(f, "invalid protobuf field number {n}"),
            Fault::WireType { wire, field } => write!(f, "invalid protobuf wire type {wire} (field {field})"),
            Fault::PastEnd { field, need, left, end } => write!(
                f,
                "field {field} needs {need} bytes, but only {left} remain before the end of the \
                 enclosing data at byte offset {end} (truncated or corrupt)"
            ),
            Fault::UnterminatedGroup { field } => write!(f, "unterminated group (field {field})"),
            Fault::GroupsTooDeep => f.write_str("groups nested too deeply"),
            Fault::StrayEndGroup { field } => write!(f, "end-group for field {field} closes no group it opened"),
        }
    }
}

/// The fields of the message in `bytes[start..end]`, in order; offsets are those of `bytes`.
/// After an error the iteration ends.
pub(crate) struct Fields<'a> {
    cur: Cursor<'a>,
    failed: bool,
}

impl<'a> Fields<'a> {
    /// The fields of `bytes[start..end]`.
    pub(crate) fn new(bytes: &'a [u8], start: usize, end: usize) -> Self {
        Fields { cur: Cursor::window(bytes, start, end), failed: false }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let at = self.cur.pos();
        self.cur.varint().map_err(|e| WireError {
            at,
            fault: match e {
                VarintError::Truncated => Fault::TruncatedVarint { end: self.cur.end() },
                VarintError::TooLong => Fault::VarintTooLong,
            },
        })
    }

    /// A key: (field number, wire type).
    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let at = self.cur.pos();
        let key = self.varint()?;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        if number == 0 || number > (1 << 29) - 1 {
            return Err(WireError { at, fault: Fault::FieldNumber(number) });
        }
        if wire > I32 {
            return Err(WireError { at, fault: Fault::WireType { wire, field: number } });
        }
        Ok((number as u32, wire))
    }

    /// The error for a value of field `field` (key at `at`) needing `need` bytes.
    fn past_end(&self, need: u64, at: usize, field: u32) -> WireError {
        WireError { at, fault: Fault::PastEnd { field, need, left: self.cur.left(), end: self.cur.end() } }
    }

    /// A fixed-width value of field `field`.
    fn fixed<const N: usize>(&mut self, at: usize, field: u32) -> Result<[u8; N], WireError> {
        self.cur.array().ok_or_else(|| self.past_end(N as u64, at, field))
    }

    /// The value of a non-group field of wire type `wire`.
    fn value(&mut self, wire: u8, at: usize, field: u32) -> Result<Value, WireError> {
        Ok(match wire {
            VARINT => Value::Varint(self.varint()?),
            I64 => Value::I64(u64::from_le_bytes(self.fixed(at, field)?)),
            I32 => Value::I32(u32::from_le_bytes(self.fixed(at, field)?)),
            LEN => {
                let need = self.varint()?;
                let start = self.cur.pos();
                let len = self.cur.take(need).ok_or_else(|| self.past_end(need, at, field))?.len();
                Value::Len { start, len }
            }
            _ => return Err(WireError { at, fault: Fault::StrayEndGroup { field } }),
        })
    }

    /// Pass over the group of field `field` whose start-group key is at `at`.
    fn skip_group(&mut self, field: u32, at: usize) -> Result<(), WireError> {
        let mut open = vec![field];
        while let Some(&top) = open.last() {
            if self.cur.at_end() {
                return Err(WireError { at, fault: Fault::UnterminatedGroup { field } });
            }
            let key_at = self.cur.pos();
            match self.key()? {
                (f, SGROUP) if open.len() < MAX_GROUP_DEPTH => open.push(f),
                (_, SGROUP) => return Err(WireError { at: key_at, fault: Fault::GroupsTooDeep }),
                (f, EGROUP) if f == top => drop(open.pop()),
                (f, wire) => drop(self.value(wire, key_at, f)?),
            }
        }
        Ok(())
    }

    fn field(&mut self) -> Result<Field, WireError> {
        let at = self.cur.pos();
        let (number, wire) = self.key()?;
        let value = if wire == SGROUP {
            self.skip_group(number, at)?;
            Value::Group
        } else {
            self.value(wire, at, number)?
        };
        Ok(Field { number, at, value })
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.cur.at_end() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

/// The varints of a packed repeated field in `bytes[start..start + len]`, in order.
pub(crate) fn packed_varints(
    bytes: &[u8],
    start: usize,
    len: usize,
) -> impl Iterator<Item = Result<u64, WireError>> + '_ {
    let mut fields = Fields::new(bytes, start, start + len);
    std::iter::from_fn(move || {
        (!fields.failed && !fields.cur.at_end()).then(|| {
            let v = fields.varint();
            fields.failed = v.is_err();
            v
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(b: &[u8]) -> Result<Vec<(u32, Value)>, WireError> {
        Fields::new(b, 0, b.len()).map(|f| f.map(|f| (f.number, f.value))).collect()
    }

    fn fault(b: &[u8]) -> Fault {
        all(b).expect_err("malformed").fault
    }

    #[test]
    fn every_wire_type() {
        let b = [0x08, 0x96, 0x01, 0x11, 1, 0, 0, 0, 0, 0, 0, 0, 0x1a, 2, b'h', b'i', 0x25, 2, 0, 0, 0];
        let want = vec![
            (1, Value::Varint(150)),
            (2, Value::I64(1)),
            (3, Value::Len { start: 14, len: 2 }),
            (4, Value::I32(2)),
        ];
        assert_eq!(all(&b), Ok(want));
        // A group (field 5) holding a varint and a nested group, passed over.
        let g = [0x2b, 0x08, 1, 0x33, 0x34, 0x2c, 0x08, 7];
        assert_eq!(all(&g), Ok(vec![(5, Value::Group), (1, Value::Varint(7))]));
        let packed = [0x96, 0x01, 0x07];
        let v: Result<Vec<u64>, _> = packed_varints(&packed, 0, 3).collect();
        assert_eq!(v, Ok(vec![150, 7]));
    }

    #[test]
    fn malformed() {
        assert_eq!(fault(&[0x08]), Fault::TruncatedVarint { end: 1 });
        assert_eq!(fault(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), Fault::VarintTooLong);
        assert_eq!(fault(&[0x00]), Fault::FieldNumber(0));
        assert_eq!(fault(&[0x0e]), Fault::WireType { wire: 6, field: 1 });
        assert_eq!(fault(&[0x0a, 5, 1]), Fault::PastEnd { field: 1, need: 5, left: 1, end: 3 });
        assert_eq!(fault(&[0x0d, 1, 2]), Fault::PastEnd { field: 1, need: 4, left: 2, end: 3 });
        assert_eq!(fault(&[0x0b, 0x08, 1]), Fault::UnterminatedGroup { field: 1 });
        assert_eq!(fault(&[0x0b, 0x14]), Fault::StrayEndGroup { field: 2 });
        assert_eq!(fault(&[0x0c]), Fault::StrayEndGroup { field: 1 });
        assert_eq!(fault(&[0x0b; 65]), Fault::GroupsTooDeep);
        // A length inside a sub-message is checked against the sub-message, not the file.
        let b = [0x0a, 2, 0x0a, 3];
        let Ok(v) = all(&b) else { panic!("the outer message is sound") };
        let (1, Value::Len { start, len }) = v[0] else { panic!("{v:?}") };
        let inner = Fields::new(&b, start, start + len).next();
        assert_eq!(
            inner.map(|r| r.map_err(|e| e.fault)).and_then(Result::err),
            Some(Fault::PastEnd { field: 1, need: 3, left: 0, end: 4 })
        );
        // The iteration stops at the first error.
        assert_eq!(Fields::new(&[0x00, 0x08, 1], 0, 3).count(), 1);
        let v: Vec<_> = packed_varints(&[0x80], 0, 1).collect();
        assert_eq!(v, vec![Err(WireError { at: 0, fault: Fault::TruncatedVarint { end: 1 } })]);
    }
}
