//! The crate's error type: a C status code plus a message that names the file, tensor and
//! byte offset where that applies. Every fallible function returns [`Result`].

use std::fmt;

/// The negative status codes of the C API (`LLAMA_ERR_*`), as a Rust enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// Null pointer, bad size or flag, bad UTF-8, token out of range.
    InvalidArgument = -1,
    /// File missing, unreadable, or mmap failed.
    Io = -2,
    /// Corrupt, truncated or inconsistent model, tokenizer or config file.
    Format = -3,
    /// Well-formed but not supported (dtype, architecture, device).
    Unsupported = -4,
    /// An allocation failed.
    OutOfMemory = -5,
    /// position + n_tokens would exceed n_ctx.
    ContextFull = -6,
    /// The caller's output buffer is too small.
    BufferTooSmall = -7,
    /// A progress or abort callback asked to stop.
    Cancelled = -8,
    /// GPU requested but unavailable, or a CUDA error.
    Device = -9,
    /// A bug, e.g. a caught panic.
    Internal = -10,
    /// The session is in use on another thread.
    Busy = -11,
}

impl Status {
    /// The C name of the status, e.g. `"LLAMA_ERR_FORMAT"`.
    pub fn name(self) -> &'static str {
        match self {
            Status::InvalidArgument => "LLAMA_ERR_INVALID_ARGUMENT",
            Status::Io => "LLAMA_ERR_IO",
            Status::Format => "LLAMA_ERR_FORMAT",
            Status::Unsupported => "LLAMA_ERR_UNSUPPORTED",
            Status::OutOfMemory => "LLAMA_ERR_OUT_OF_MEMORY",
            Status::ContextFull => "LLAMA_ERR_CONTEXT_FULL",
            Status::BufferTooSmall => "LLAMA_ERR_BUFFER_TOO_SMALL",
            Status::Cancelled => "LLAMA_ERR_CANCELLED",
            Status::Device => "LLAMA_ERR_DEVICE",
            Status::Internal => "LLAMA_ERR_INTERNAL",
            Status::Busy => "LLAMA_ERR_BUSY",
        }
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
