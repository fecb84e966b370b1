//! The one byte cursor of the binary readers (GGUF, the protobuf reader behind `.ckpt` and
//! `tokenizer.model`, llama2.c's header and `tokenizer.bin`): little-endian values and byte
//! runs read from a window of the file, never past its end. A read that does not fit returns
//! `None` (a varint its [`VarintError`]) and leaves the position where it was, so the caller
//! words the error with the offset ([`Cursor::pos`]) and the bytes left ([`Cursor::left`]).

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The window ends before the varint's last byte.
    Truncated,
    /// Its tenth byte is above 1: more than 64 bits (no longer varint can end in range).
    TooLong,
}

/// A position in `bytes[..end]`.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over all of `bytes`, at its start.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0, end: bytes.len() }
    }

    /// A cursor over `bytes[start..end]` (clamped to the bytes), at `start`; offsets stay those
    /// of `bytes`.
    pub(crate) fn window(bytes: &'a [u8], start: usize, end: usize) -> Self {
        let end = end.min(bytes.len());
        Cursor { bytes, pos: start.min(end), end }
    }

    /// The offset of the next byte, in `bytes`.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The offset where the window ends.
    pub(crate) fn end(&self) -> usize {
        self.end
    }

    /// Bytes left before the end of the window.
    pub(crate) fn left(&self) -> usize {
        self.end - self.pos
    }

    /// True when no byte is left.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.end
    }

    /// The bytes from offset `start` (at most [`Cursor::pos`]) to the position.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        &self.bytes[start.min(self.pos)..self.pos]
    }

    /// The next `n` bytes (`n` as read from a file: any width), or `None` when fewer are left.
    pub(crate) fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok().filter(|&n| n <= self.left())?;
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Some(a)
    }

    /// A little-endian `u16`.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian `u32`.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A little-endian `i32`.
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_le_bytes)
    }

    /// A little-endian `f32`.
    pub(crate) fn f32(&mut self) -> Option<f32> {
        self.array().map(f32::from_le_bytes)
    }

    /// Protobuf's base-128 varint.
    pub(crate) fn varint(&mut self) -> Result<u64, VarintError> {
        let mut value = 0u64;
        for (i, &b) in self.bytes[self.pos..self.end].iter().take(10).enumerate() {
            if i == 9 && b > 1 {
                return Err(VarintError::TooLong);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(VarintError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(bytes: &[u8], pos: usize, end: usize) -> Result<(u64, usize), VarintError> {
        let mut c = Cursor::window(bytes, pos, end);
        c.varint().map(|v| (v, c.pos()))
    }

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x96, 0x01], 0, 2), Ok((150, 2)));
        assert_eq!(varint(&[0, 0x7f], 1, 2), Ok((127, 2)));
        assert_eq!(varint(&[0x96, 0x01], 0, 1), Err(VarintError::Truncated));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&max, 0, 10), Ok((u64::MAX, 10)));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(varint(&over, 0, 10), Err(VarintError::TooLong));
        assert_eq!(varint(&[0x80; 3], 0, 100), Err(VarintError::Truncated));
        assert_eq!(varint(&[0x80; 12], 0, 12), Err(VarintError::TooLong));
    }

    #[test]
    fn reads_stay_in_the_window() {
        let b = [1u8, 0, 0, 0, 2, 0, 0, 0, 0xff];
        let mut c = Cursor::window(&b, 0, 6);
        assert_eq!(c.u32(), Some(1));
        assert_eq!(c.u32(), None, "two of four bytes left in the window");
        assert_eq!((c.pos(), c.left()), (4, 2), "a failed read does not move");
        assert_eq!(c.take(u64::MAX), None);
        assert_eq!(c.u16(), Some(2));
        assert!(c.at_end());
        let mut c = Cursor::window(&b, 8, 100);
        assert_eq!((c.end(), c.take(1)), (9, Some(&[0xff][..])));
        assert_eq!(Cursor::new(&b[..4]).f32(), Some(f32::from_bits(1)));
        assert_eq!(Cursor::new(&[0xfe, 0xff, 0xff, 0xff]).i32(), Some(-2));
        assert_eq!(Cursor::new(&b).u64(), Some(0x0000_0002_0000_0001));
    }
}
