//! Tensor descriptions shared by every loader: name, dtype, shape, and where the bytes live in
//! the memory-mapped file. Loaders never copy tensor data; they only describe it.

use crate::error::{Error, Result};

/// Element types of stored tensors that the forward pass can read in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// IEEE binary32, little-endian.
    F32,
    /// IEEE binary16, little-endian.
    F16,
    /// bfloat16 (upper half of an f32), little-endian.
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
    /// The name used in `llama_model_describe` (`"F32"`, `"F16"`, `"BF16"`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }
    /// [`DType::name`] as a C string.
    pub fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            DType::F32 => c"F32",
            DType::F16 => c"F16",
            DType::BF16 => c"BF16",
        }
    }
    /// The kernels crate's name for this weight type.
    pub fn kernel(self) -> runllama_kernels::WeightType {
        match self {
            DType::F32 => runllama_kernels::WeightType::F32,
            DType::F16 => runllama_kernels::WeightType::F16,
            DType::BF16 => runllama_kernels::WeightType::BF16,
        }
    }
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
    /// Number of bytes (= product of shape × dtype size).
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
