//! Writes MindSpore `.ckpt` files exactly as MindSpore 2.10's synchronous `save_checkpoint`
//! does (test fixtures and hostile variants of them; not part of the library, which only reads).
#![allow(dead_code)]

use std::io::{self, Read, Write};

use runllama::formats::ckpt::{CkptDType, Crc32, CRC_TAG, CRC_TRAILER_LEN};

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `.ckpt` files exactly as MindSpore 2.10's synchronous `save_checkpoint` does, one
/// tensor at a time (so a many-GB file never has to be in memory).
///
/// Each tensor is written as one serialized one-entry `Checkpoint` per piece: a tensor of more
/// than `slice_bytes` bytes is cut into `slice_bytes` pieces plus the remainder (the rule of
/// `_write_parameter_bytes_data`), every piece repeating the full dims and dtype. With `crc`,
/// [`CkptWriter::finish`] appends the `crc_num` trailer; the CRC is computed as bytes are written.
pub struct CkptWriter<W: Write> {
    out: W,
    slice_bytes: usize,
    crc: Option<Crc32>,
}

impl<W: Write> CkptWriter<W> {
    /// A writer splitting at `slice_bytes` ([`SLICE_BYTES`] is MindSpore's value); `crc` adds
    /// the trailer. `slice_bytes == 0` is an `InvalidInput` error.
    pub fn new(out: W, slice_bytes: usize, crc: bool) -> io::Result<Self> {
        if slice_bytes == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "ckpt writer: slice_bytes must be positive"));
        }
        Ok(CkptWriter { out, slice_bytes, crc: crc.then(Crc32::new) })
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(c) = self.crc.as_mut() {
            c.update(bytes);
        }
        self.out.write_all(bytes)
    }

    /// Everything of one piece's record up to (not including) its content bytes.
    fn piece_header(name: &str, dtype: &CkptDType, dims: &[usize], content_len: usize) -> Vec<u8> {
        let ty = dtype.name().as_bytes();
        let dims_len: usize = dims.iter().map(|&d| 1 + varint_len(d as u64)).sum();
        let tp_len =
            dims_len + 1 + varint_len(ty.len() as u64) + ty.len() + 1 + varint_len(content_len as u64) + content_len;
        let value_len = 1 + varint_len(name.len() as u64) + name.len() + 1 + varint_len(tp_len as u64) + tp_len;
        let mut h = Vec::with_capacity(32 + name.len() + ty.len() + 11 * dims.len());
        h.push(0x0A); // Checkpoint.value
        put_varint(&mut h, value_len as u64);
        h.push(0x0A); // Value.tag
        put_varint(&mut h, name.len() as u64);
        h.extend_from_slice(name.as_bytes());
        h.push(0x12); // Value.tensor
        put_varint(&mut h, tp_len as u64);
        for &d in dims {
            h.push(0x08); // TensorProto.dims, unpacked
            put_varint(&mut h, d as u64);
        }
        h.push(0x12); // TensorProto.tensor_type
        put_varint(&mut h, ty.len() as u64);
        h.extend_from_slice(ty);
        h.push(0x1A); // TensorProto.tensor_content
        put_varint(&mut h, content_len as u64);
        h
    }

    fn check_size(dtype: &CkptDType, dims: &[usize], nbytes: usize, name: &str) -> io::Result<()> {
        if let Some(w) = dtype.element_size() {
            let want = dims.iter().try_fold(w, |a, &d| a.checked_mul(d));
            if want != Some(nbytes) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "ckpt writer: tensor '{name}': {} {dims:?} needs {want:?} bytes, got {nbytes}",
                        dtype.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Write one tensor (its C-order bytes). A zero-byte tensor is written as one empty piece.
    pub fn tensor(&mut self, name: &str, dtype: &CkptDType, dims: &[usize], data: &[u8]) -> io::Result<()> {
        Self::check_size(dtype, dims, data.len(), name)?;
        if data.is_empty() {
            let h = Self::piece_header(name, dtype, dims, 0);
            return self.emit(&h);
        }
        for chunk in data.chunks(self.slice_bytes) {
            let h = Self::piece_header(name, dtype, dims, chunk.len());
            self.emit(&h)?;
            self.emit(chunk)?;
        }
        Ok(())
    }

    /// Write one tensor of `nbytes` bytes read from `data` (exactly `nbytes` are read), copying
    /// through a small buffer: the tensor is never held in memory whole.
    pub fn tensor_from_reader<R: Read>(
        &mut self,
        name: &str,
        dtype: &CkptDType,
        dims: &[usize],
        nbytes: usize,
        data: &mut R,
    ) -> io::Result<()> {
        Self::check_size(dtype, dims, nbytes, name)?;
        let mut buf = vec![0u8; self.slice_bytes.min(1 << 20)];
        let mut left = nbytes;
        loop {
            let piece = left.min(self.slice_bytes);
            let h = Self::piece_header(name, dtype, dims, piece);
            self.emit(&h)?;
            let mut n = piece;
            while n > 0 {
                let k = n.min(buf.len());
                data.read_exact(&mut buf[..k])?;
                self.emit(&buf[..k])?;
                n -= k;
            }
            left -= piece;
            if left == 0 {
                return Ok(());
            }
        }
    }

    /// Write the CRC trailer (if requested), flush, and return the output.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(c) = self.crc.take() {
            let mut t = Vec::with_capacity(CRC_TRAILER_LEN);
            t.extend_from_slice(CRC_TAG);
            t.extend_from_slice(&u128::from(c.value()).to_be_bytes()[6..]);
            self.out.write_all(&t)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Write a whole checkpoint: `(name, dtype, dims, C-order bytes)` per tensor, in order. See
/// [`CkptWriter`].
pub fn write_ckpt<W: Write>(
    out: W,
    tensors: &[(&str, CkptDType, &[usize], &[u8])],
    slice_bytes: usize,
    crc: bool,
) -> io::Result<()> {
    let mut w = CkptWriter::new(out, slice_bytes, crc)?;
    for (name, dtype, dims, data) in tensors {
        w.tensor(name, dtype, dims, data)?;
    }
    w.finish().map(|_| ())
}
