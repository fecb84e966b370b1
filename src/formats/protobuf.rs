//! Protobuf's base-128 varint: the one decoder behind both protobuf readers (the `.ckpt`
//! parser and `tokenizer.model`'s), which word their own errors.

/// Why a varint could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The data ends (at `end`) before the varint's last byte.
    Truncated,
    /// Its tenth byte is above 1: more than 64 bits (no longer varint can end in range).
    TooLong,
}

/// The varint at `pos` of `bytes`, read no further than `end` (at most `bytes.len()`): its
/// value and the position after it.
pub(crate) fn varint(bytes: &[u8], pos: usize, end: usize) -> Result<(u64, usize), VarintError> {
    let end = end.min(bytes.len());
    let mut value = 0u64;
    for i in 0..10 {
        let p = pos + i;
        if p >= end {
            return Err(VarintError::Truncated);
        }
        let b = bytes[p];
        if i == 9 && b > 1 {
            return Err(VarintError::TooLong);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok((value, p + 1));
        }
    }
    unreachable!("a tenth byte of at most 1 ends the varint")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
