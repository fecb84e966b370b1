//! Tensor descriptions shared by every loader: name, dtype, shape, and where the bytes live in
//! the memory-mapped file. Loaders never copy tensor data; they only describe it.

use crate::error::{Error, Result};

/// Element types of stored tensors that the forward pass can read in place: the kernels
/// crate's one weight-type descriptor (name, block size, row bytes).
pub use runllama_kernels::WeightType as DType;

/// Bytes of a tensor of `shape` (row-major, rows of the last dimension's elements) stored as
/// `dtype`: `None` when a row is not a whole number of the type's blocks or the size overflows.
pub fn tensor_bytes(dtype: DType, shape: &[usize]) -> Option<usize> {
    let (cols, outer) = match shape.split_last() {
        Some((&cols, outer)) => (cols, outer),
        None => (1, &[][..]),
    };
    let rows = outer.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    dtype.row_bytes(cols)?.checked_mul(rows)
}

/// One tensor of a model file: what it is and where its bytes are. No data is held here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The name exactly as stored in the file.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Row-major shape, outermost dimension first (a `[rows, cols]` matrix has rows of `cols`
    /// contiguous elements). GGUF's innermost-first `ne` order is reversed into this order.
    pub shape: Vec<usize>,
    /// Index of the file holding the bytes (for sharded models; 0 for single-file models).
    pub file: usize,
    /// Absolute byte offset of the first element within that file.
    pub offset: usize,
    /// Number of bytes ([`tensor_bytes`] of the shape).
    pub nbytes: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// `a * b * ...` with overflow reported as a format error naming `what`.
pub fn checked_product(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d).ok_or_else(|| Error::format(format!("{what}: shape {dims:?} overflows")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_bytes_are_rows_of_whole_blocks() {
        assert_eq!(tensor_bytes(DType::F16, &[3, 5]), Some(30));
        assert_eq!(tensor_bytes(DType::F32, &[7]), Some(28));
        assert_eq!(tensor_bytes(DType::BF16, &[]), Some(2));
        assert_eq!(tensor_bytes(DType::F32, &[usize::MAX, 2]), None);
        assert_eq!(tensor_bytes(DType::F32, &[2, usize::MAX / 2]), None);
        for t in [DType::F32, DType::F16, DType::BF16] {
            assert_eq!(t.row_bytes(10), Some(10 * t.block_bytes() / t.block_elems()));
            assert_eq!(t.c_name().to_str(), Ok(t.name()));
        }
    }
}
