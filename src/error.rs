//! The crate's error type: a C status code plus a message that names the file, tensor and
//! byte offset where that applies. Every fallible function returns [`Result`].

use std::ffi::CStr;
use std::fmt;

use crate::ffi;

/// The negative status codes of the C API, as a Rust enum: the values are the `LLAMA_ERR_*`
/// constants of [`crate::ffi`] (cbindgen writes those into the header), the C names are
/// [`Status::c_name`]'s; nothing else spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// Null pointer, bad size or flag, bad UTF-8, token out of range.
    InvalidArgument = ffi::LLAMA_ERR_INVALID_ARGUMENT,
    /// File missing, unreadable, or mmap failed.
    Io = ffi::LLAMA_ERR_IO,
    /// Corrupt, truncated or inconsistent model, tokenizer or config file.
    Format = ffi::LLAMA_ERR_FORMAT,
    /// Well-formed but not supported (dtype, architecture, device).
    Unsupported = ffi::LLAMA_ERR_UNSUPPORTED,
    /// An allocation failed.
    OutOfMemory = ffi::LLAMA_ERR_OUT_OF_MEMORY,
    /// position + n_tokens would exceed n_ctx.
    ContextFull = ffi::LLAMA_ERR_CONTEXT_FULL,
    /// The caller's output buffer is too small.
    BufferTooSmall = ffi::LLAMA_ERR_BUFFER_TOO_SMALL,
    /// A progress or abort callback asked to stop.
    Cancelled = ffi::LLAMA_ERR_CANCELLED,
    /// GPU requested but unavailable, or a CUDA error.
    Device = ffi::LLAMA_ERR_DEVICE,
    /// A bug, e.g. a caught panic.
    Internal = ffi::LLAMA_ERR_INTERNAL,
    /// The session is in use on another thread.
    Busy = ffi::LLAMA_ERR_BUSY,
}

impl Status {
    /// Every status, in the order of their codes (-1 down).
    pub const ALL: [Status; 11] = [
        Status::InvalidArgument,
        Status::Io,
        Status::Format,
        Status::Unsupported,
        Status::OutOfMemory,
        Status::ContextFull,
        Status::BufferTooSmall,
        Status::Cancelled,
        Status::Device,
        Status::Internal,
        Status::Busy,
    ];

    /// The status of a C code (`None` for 0 and for codes this version does not define).
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.into_iter().find(|&s| s as i32 == code)
    }

    /// The C name of the status, e.g. `"LLAMA_ERR_FORMAT"`, NUL-terminated.
    pub fn c_name(self) -> &'static CStr {
        match self {
            Status::InvalidArgument => c"LLAMA_ERR_INVALID_ARGUMENT",
            Status::Io => c"LLAMA_ERR_IO",
            Status::Format => c"LLAMA_ERR_FORMAT",
            Status::Unsupported => c"LLAMA_ERR_UNSUPPORTED",
            Status::OutOfMemory => c"LLAMA_ERR_OUT_OF_MEMORY",
            Status::ContextFull => c"LLAMA_ERR_CONTEXT_FULL",
            Status::BufferTooSmall => c"LLAMA_ERR_BUFFER_TOO_SMALL",
            Status::Cancelled => c"LLAMA_ERR_CANCELLED",
            Status::Device => c"LLAMA_ERR_DEVICE",
            Status::Internal => c"LLAMA_ERR_INTERNAL",
            Status::Busy => c"LLAMA_ERR_BUSY",
        }
    }

    /// The C name of the status, e.g. `"LLAMA_ERR_FORMAT"`.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("LLAMA_ERR_UNKNOWN")
    }
}

/// An error with its C status and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The status the C API returns for this error.
    pub status: Status,
    /// What failed and where (file path, tensor name, byte offset, expected vs found).
    pub message: String,
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with the given status and message.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }
    /// `LLAMA_ERR_INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Status::InvalidArgument, message)
    }
    /// `LLAMA_ERR_IO`.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(Status::Io, message)
    }
    /// `LLAMA_ERR_FORMAT`.
    pub fn format(message: impl Into<String>) -> Self {
        Self::new(Status::Format, message)
    }
    /// `LLAMA_ERR_UNSUPPORTED`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(Status::Unsupported, message)
    }
    /// `LLAMA_ERR_INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Status::Internal, message)
    }
    /// Prefix the message with more context (e.g. the file path), keeping the status.
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for Error {}
