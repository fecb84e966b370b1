//! The C ABI (`include/runllama.h`, generated from this file by cbindgen).
//!
//! Every exported function runs its body inside `guard` (or `guard_or`), which catches
//! panics (they become `LLAMA_ERR_INTERNAL`) and records the error message for
//! `llama_last_error()` on the calling thread. Models are shared (`Arc`: each session holds a
//! reference, so a model lives until its last session is freed); sessions are owned (`Box`).
//!
//! Handles are typed: `llama_model` and `llama_session` are the boxed Rust values the host
//! holds, so an argument the host promises to be NULL or live arrives as `Option<&T>` (a
//! nullable pointer's ABI) and needs no unsafe code; so do single out-values (`Option<&mut T>`).
//! Raw pointers remain where a reference cannot say it: buffers with a capacity, size-prefixed
//! parameter structs, strings, and handles the header declares mutable but several threads may
//! use at once.

#![allow(non_camel_case_types)]

mod guard;
mod versioned;

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use guard::{guard, guard_or, reported};
use versioned::{offsets, Versioned};

use crate::backend::Device;
use crate::error::{Error, Result, Status};
use crate::loader::{self, LoadOptions};
use crate::model::Model;
use crate::sampler::SamplerParams;
use crate::session::{KvType, Session, SessionParams};
use crate::tokenizer::ChatMessage;
use runllama_kernels::Bf16Products;

/// The version of this C API contract.
pub const LLAMA_API_VERSION: u32 = 2;

/// A token id.
pub type llama_token = i32;
/// A status code: 0 = success, negative = error.
pub type llama_status = i32;

/// Success.
pub const LLAMA_OK: llama_status = 0;
/// Null pointer, bad size/flag, bad UTF-8, token out of range.
pub const LLAMA_ERR_INVALID_ARGUMENT: llama_status = -1;
/// File missing, unreadable, mmap failed.
pub const LLAMA_ERR_IO: llama_status = -2;
/// Corrupt, truncated or inconsistent model/tokenizer/config file.
pub const LLAMA_ERR_FORMAT: llama_status = -3;
/// Well-formed but not supported (dtype, architecture, device).
pub const LLAMA_ERR_UNSUPPORTED: llama_status = -4;
/// An allocation failed.
pub const LLAMA_ERR_OUT_OF_MEMORY: llama_status = -5;
/// position + n_tokens would exceed n_ctx; session unchanged.
pub const LLAMA_ERR_CONTEXT_FULL: llama_status = -6;
/// The output buffer is too small (`*out_len` holds the size needed).
pub const LLAMA_ERR_BUFFER_TOO_SMALL: llama_status = -7;
/// A progress/abort callback asked to stop.
pub const LLAMA_ERR_CANCELLED: llama_status = -8;
/// GPU requested but unavailable, or a CUDA/cuBLAS error.
pub const LLAMA_ERR_DEVICE: llama_status = -9;
/// A bug, e.g. a caught panic.
pub const LLAMA_ERR_INTERNAL: llama_status = -10;
/// The session is in use on another thread.
pub const LLAMA_ERR_BUSY: llama_status = -11;

/// Run on the CPU.
pub const LLAMA_DEVICE_CPU: i32 = 0;
/// KV cache in half precision (the default).
pub const LLAMA_KV_F16: i32 = 0;
/// KV cache in single precision.
pub const LLAMA_KV_F32: i32 = 1;
/// KV cache in 8 bits with an f16 scale per 32 values (llama.cpp's `q8_0`): 17/32 of the f16
/// cache's memory (a 4096-token LLaMA2-7B session: 1.06 GiB instead of 2 GiB).
pub const LLAMA_KV_Q8_0: i32 = 2;
/// KV cache in 4 bits with an f16 scale per 32 values (llama.cpp's `q4_0`), K and V: 9/32 of
/// the f16 cache's memory; attention scores through 4-bit keys move noticeably.
pub const LLAMA_KV_Q4_0: i32 = 3;
/// K cache in `q8_0`, V cache in `q4_0` (llama.cpp's `-ctk q8_0 -ctv q4_0`): 13/32 of the f16
/// cache's memory (a 4096-token LLaMA2-7B session: 0.81 GiB instead of 2 GiB).
pub const LLAMA_KV_Q8_0_Q4_0: i32 = 4;
/// Run on a CUDA GPU.
pub const LLAMA_DEVICE_CUDA: i32 = 1;
/// `llama_load_params.bf16_products`: products of bf16 weights in f32 (the default).
pub const LLAMA_BF16_PRODUCTS_F32: i32 = 0;
/// `llama_load_params.bf16_products`: a prompt's products of bf16 weights on a CPU with
/// AVX512_BF16 use `vdpbf16ps` over activations rounded to bf16, as llama.cpp's do (on the AMX
/// path, whose tile products keep f32 accuracy at more speed, it changes nothing).
pub const LLAMA_BF16_PRODUCTS_ROUNDED: i32 = 1;

/// `llama_tokenize`: prepend BOS.
pub const LLAMA_TOKENIZE_ADD_BOS: u32 = 1;
/// `llama_tokenize`: special-token text (`<s>`, `<|eot_id|>`) becomes special ids; without it,
/// it is tokenized as plain text.
pub const LLAMA_TOKENIZE_PARSE_SPECIAL: u32 = 2;
/// `llama_detokenize`: drop BOS/EOS/other special tokens from the text.
pub const LLAMA_DETOKENIZE_SKIP_SPECIAL: u32 = 1;
/// `llama_chat_tokenize`: end the prompt where the assistant's reply begins.
pub const LLAMA_CHAT_ADD_ASSISTANT: u32 = 1;

/// An immutable model (weights + tokenizer); thread-safe. Sessions keep it alive.
// What llama_load boxes for the host; sessions hold their own `Arc` of the model.
pub struct llama_model {
    model: Arc<Model>,
}

/// A session (KV cache + sampler); one thread at a time.
// What llama_session_new boxes for the host.
pub struct llama_session {
    session: Session,
}

/// One chat message.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llama_chat_message {
    /// "system", "user" or "assistant" (NUL-terminated UTF-8).
    pub role: *const c_char,
    /// NUL-terminated UTF-8.
    pub content: *const c_char,
}

/// One stored tensor, as `llama_model_tensor` reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llama_tensor_info {
    /// sizeof(llama_tensor_info), set by the caller.
    pub size: u32,
    /// Number of dimensions (at most 8).
    pub n_dims: i32,
    /// The name as stored in the file (NUL-terminated; valid while the model lives).
    pub name: *const c_char,
    /// The element type's ggml name: "F32", "F16", "BF16", or a block type ("Q4_0" ... "Q6_K") (static).
    pub dtype: *const c_char,
    /// Dimensions, outermost first (rows before columns).
    pub shape: [i64; 8],
}

/// A model's resolved hyper-parameters, as `llama_model_get_hparams` reports them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llama_model_hparams {
    /// sizeof(llama_model_hparams), set by the caller.
    pub size: u32,
    /// 2 or 3.
    pub version: i32,
    /// Vocabulary size.
    pub n_vocab: i32,
    /// Model width.
    pub n_embd: i32,
    /// Transformer blocks.
    pub n_layer: i32,
    /// Query heads.
    pub n_head: i32,
    /// Key/value heads.
    pub n_head_kv: i32,
    /// SwiGLU hidden width.
    pub n_ff: i32,
    /// Training context length.
    pub n_ctx_train: i32,
    /// RoPE base.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Padding, spelled out (written as 0).
    pub reserved0: u32,
    /// Parameters stored.
    pub n_params: u64,
}

/// Called during load with a fraction from 0 to 1, on the thread that called `llama_load`, with no
/// lock of the library held; return non-zero to cancel (LLAMA_ERR_CANCELLED). It must not
/// unwind (throw) into the library: a C++ exception that reaches the library's frames aborts
/// the process.
pub type llama_progress_fn = Option<unsafe extern "C" fn(fraction: f32, user_data: *mut c_void) -> i32>;
/// Whole log lines (level 0 = debug .. 3 = error), called on the thread whose API call logs,
/// with no lock of the library held. It may call any function of this API (that does not change
/// the caller's `llama_last_error()`); it must not unwind (throw) into the library: a C++
/// exception that reaches the library's frames aborts the process.
pub type llama_log_fn = Option<unsafe extern "C" fn(level: i32, line: *const c_char, user_data: *mut c_void)>;

/// Load parameters. Initialise with `llama_load_params_init(&p, sizeof p)`; the library reads
/// at most `size` bytes (fields beyond them keep their defaults).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llama_load_params {
    /// sizeof(llama_load_params) as the host compiled it.
    pub size: u32,
    /// 0 = detect, 2 = LLaMA 2, 3 = LLaMA 3.
    pub version: i32,
    /// NULL = detect: GGUF metadata, config.json or a MindFormers yaml beside the weights, else
    /// the version's defaults. UTF-8 on every OS.
    pub config_path: *const c_char,
    /// NULL = detect: embedded in GGUF, or tokenizer.model beside the weights. UTF-8.
    pub tokenizer_path: *const c_char,
    /// LLAMA_DEVICE_*.
    pub device: i32,
    /// 0 = one per core.
    pub n_threads: i32,
    /// 1 (default) = map weights, never copy them to the heap; 0 = read the files into memory.
    pub use_mmap: i32,
    /// Padding, spelled out (ignored; 0).
    pub reserved0: u32,
    /// May be NULL.
    pub progress: llama_progress_fn,
    /// Passed to `progress`.
    pub progress_user_data: *mut c_void,
    /// Which GPU with LLAMA_DEVICE_CUDA (0 = the first); ignored on the CPU. (API version 2.)
    pub device_index: i32,
    /// Padding, spelled out (ignored; 0).
    pub reserved1: u32,
    /// LLAMA_BF16_PRODUCTS_F32 (0, the default): products of bf16 weights in f32.
    /// LLAMA_BF16_PRODUCTS_ROUNDED (1): on a CPU with AVX512_BF16 (AMD Zen 4 and later, Intel
    /// Cooper Lake) a prompt's products of bf16 weights round the activations to bf16 and run
    /// `vdpbf16ps`, as llama.cpp does: about twice the prefill speed, for logits that move a
    /// little (stories260K: by at most 0.04, the largest being 18.6; README: The C API).
    /// Decode, other weight types, other CPUs and the GPU are unchanged. (After version 2's
    /// first header: a struct of its size, 64 bytes, gets the default.)
    pub bf16_products: i32,
    /// Padding, spelled out (ignored; 0).
    pub reserved2: u32,
}

/// Session parameters. Initialise with `llama_session_params_init(&p, sizeof p)`; the library
/// reads at most `size` bytes (fields beyond them keep their defaults).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llama_session_params {
    /// sizeof(llama_session_params) as the host compiled it.
    pub size: u32,
    /// 0 = min(model's training context, 4096).
    pub n_ctx: u32,
    /// 0 = greedy (argmax, lowest id on ties).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: i32,
    /// 1.0 = off.
    pub top_p: f32,
    /// 1.0 = off (applied to the last 64 tokens, as llama.cpp does).
    pub repeat_penalty: f32,
    /// Same seed + same inputs = same tokens.
    pub seed: u64,
    /// KV cache element type: LLAMA_KV_F16 (default: half the memory of f32), LLAMA_KV_F32,
    /// LLAMA_KV_Q8_0 (8 bits: 17/32 of f16's memory, logits move by rounding), LLAMA_KV_Q4_0
    /// (4 bits: 9/32) or LLAMA_KV_Q8_0_Q4_0 (K in 8 bits, V in 4: 13/32). (After version 1: a
    /// struct of version 1's size gets the default.)
    pub kv_type: i32,
    /// Padding, spelled out (ignored; 0).
    pub reserved0: u32,
}

// SAFETY: the offsets are every field after `size`; the reserved fields fill what would be
// padding (the layout test in tests/api_contract.rs checks that the sizes add up); all fields
// are integers, floats, pointers and optional function pointers.
unsafe impl Versioned for llama_load_params {
    const NAME: &'static str = "llama_load_params";
    const FIELD_OFFSETS: &'static [usize] = offsets!(llama_load_params: version, config_path, tokenizer_path, device,
        n_threads, use_mmap, reserved0, progress, progress_user_data, device_index, reserved1, bf16_products, reserved2);
}

// SAFETY: as for llama_load_params.
unsafe impl Versioned for llama_session_params {
    const NAME: &'static str = "llama_session_params";
    const FIELD_OFFSETS: &'static [usize] = offsets!(llama_session_params: n_ctx, temperature, top_k, top_p,
        repeat_penalty, seed, kv_type, reserved0);
}

// SAFETY: as for llama_load_params.
unsafe impl Versioned for llama_model_hparams {
    const NAME: &'static str = "llama_model_hparams";
    const FIELD_OFFSETS: &'static [usize] = offsets!(llama_model_hparams: version, n_vocab, n_embd, n_layer, n_head,
        n_head_kv, n_ff, n_ctx_train, rope_theta, norm_eps, reserved0, n_params);
}

// SAFETY: as for llama_load_params.
unsafe impl Versioned for llama_tensor_info {
    const NAME: &'static str = "llama_tensor_info";
    const FIELD_OFFSETS: &'static [usize] = offsets!(llama_tensor_info: n_dims, name, dtype, shape);
}

/// `llama_load_params` as API version 1 laid it out: what the version-1 symbol
/// `llama_load_params_default` returns to binaries built against that header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llama_load_params_v1 {
    /// 56 on 64-bit targets.
    pub size: u32,
    /// As in llama_load_params.
    pub version: i32,
    /// As in llama_load_params.
    pub config_path: *const c_char,
    /// As in llama_load_params.
    pub tokenizer_path: *const c_char,
    /// As in llama_load_params.
    pub device: i32,
    /// As in llama_load_params.
    pub n_threads: i32,
    /// As in llama_load_params.
    pub use_mmap: i32,
    /// Padding.
    pub reserved0: u32,
    /// As in llama_load_params.
    pub progress: llama_progress_fn,
    /// As in llama_load_params.
    pub progress_user_data: *mut c_void,
}

/// `llama_session_params` as API.md version 1 laid it out (no `kv_type`): what the version-1
/// symbol `llama_session_params_default` returns to binaries built against that header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llama_session_params_v1 {
    /// 32.
    pub size: u32,
    /// As in llama_session_params.
    pub n_ctx: u32,
    /// As in llama_session_params.
    pub temperature: f32,
    /// As in llama_session_params.
    pub top_k: i32,
    /// As in llama_session_params.
    pub top_p: f32,
    /// As in llama_session_params.
    pub repeat_penalty: f32,
    /// As in llama_session_params.
    pub seed: u64,
}

fn non_null<T>(p: *const T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    Ok(())
}

/// The model behind a model argument; `InvalidArgument` for NULL.
fn model_of(model: Option<&llama_model>) -> Result<&Arc<Model>> {
    model.map(|m| &m.model).ok_or_else(|| Error::invalid("model is NULL"))
}

/// The session behind a session argument; `InvalidArgument` for NULL.
fn session_of(session: Option<&llama_session>) -> Result<&Session> {
    session.map(|s| &s.session).ok_or_else(|| Error::invalid("session is NULL"))
}

/// A session argument the header declares `llama_session *` (reset, rewind, abort, step) as a
/// shared reference: these may run while `llama_session_abort` runs on another thread, so no
/// `&mut` may exist; `Session` synchronises itself (a mutex and atomics).
///
/// # Safety
/// `p` is NULL or a handle from `llama_session_new` not yet freed.
unsafe fn session_at<'a>(p: *mut llama_session) -> Option<&'a llama_session> {
    // SAFETY: a live handle is the `Box<llama_session>` allocation llama_session_new leaked,
    // valid until llama_session_free; only shared references to it are made.
    unsafe { p.as_ref() }
}

/// Box `value` for the host (its handle) and store the pointer in `*out`.
fn hand_out<T>(out: &mut *mut T, value: T) {
    *out = Box::into_raw(Box::new(value));
}

/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map(Some).map_err(|e| Error::invalid(format!("{what} is not valid UTF-8 ({e})")))
}

/// [`opt_str`] for a path: an empty one is refused (it names no file; NULL asks for the default).
///
/// # Safety
/// As [`opt_str`].
unsafe fn opt_path(p: *const c_char, what: &str) -> Result<Option<PathBuf>> {
    // SAFETY: `p` is NULL or NUL-terminated, this fn's contract and opt_str's.
    match unsafe { opt_str(p, what) }? {
        Some("") => Err(Error::invalid(format!("{what} is an empty string (pass NULL for the default)"))),
        s => Ok(s.map(PathBuf::from)),
    }
}

/// Set `*out_len = 0` when `out_len` is not NULL: a two-call export does this first, so every
/// failure (bad flags, ids, roles ...) leaves a defined length.
fn clear_len(out_len: &mut Option<&mut usize>) {
    if let Some(n) = out_len {
        **n = 0;
    }
}

/// `out` (named `what` in the error) or `InvalidArgument` for NULL.
fn required<'a, T>(out: Option<&'a mut T>, what: &str) -> Result<&'a mut T> {
    out.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// Copy `data` to `out` (capacity `cap` elements) and set `*out_len = data.len()`. With `nul`,
/// a terminating zero is added when there is room for it (it is not counted in `*out_len`).
///
/// # Safety
/// `out` is null or valid for `cap` writes.
unsafe fn write_out<T: Copy + Default>(
    data: &[T],
    out: *mut T,
    cap: usize,
    out_len: Option<&mut usize>,
    nul: bool,
) -> Result<()> {
    *required(out_len, "out_len")? = data.len();
    if cap > 0 {
        non_null(out, "the output buffer (capacity > 0)")?;
    }
    if data.len() > cap {
        return Err(Error::new(
            Status::BufferTooSmall,
            format!("the result needs {} elements, the buffer holds {cap}", data.len()),
        ));
    }
    if cap > 0 {
        // SAFETY: `out` is valid for `cap >= data.len()` writes (this fn's contract; checked
        // non-null) and does not overlap `data`, which is our own allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), out, data.len());
            if nul && cap > data.len() {
                *out.add(data.len()) = T::default();
            }
        }
    }
    Ok(())
}

fn check_flags(flags: u32, allowed: u32, what: &str) -> Result<()> {
    if flags & !allowed != 0 {
        return Err(Error::invalid(format!("{what}: unknown flag bits {:#x}", flags & !allowed)));
    }
    Ok(())
}

fn to_ids(tokens: &[u32]) -> Vec<llama_token> {
    tokens.iter().map(|&t| t as llama_token).collect()
}

/// # Safety
/// `tokens` is null (only with `n == 0`) or valid for `n` reads.
unsafe fn from_ids(tokens: *const llama_token, n: usize, n_vocab: usize) -> Result<Vec<u32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    non_null(tokens, "tokens")?;
    // SAFETY: checked non-null; valid for `n` reads by this fn's contract.
    let s = unsafe { std::slice::from_raw_parts(tokens, n) };
    let mut ids = crate::alloc::vec(n, "a copy of the token ids")?;
    for (i, &t) in s.iter().enumerate() {
        if t < 0 || t as usize >= n_vocab {
            return Err(Error::invalid(format!("token {t} at index {i} is out of range (n_vocab {n_vocab})")));
        }
        ids.push(t as u32);
    }
    Ok(ids)
}

/// The API version the library was built with (== LLAMA_API_VERSION).
#[no_mangle]
pub extern "C" fn llama_api_version() -> u32 {
    LLAMA_API_VERSION
}

/// The library version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn llama_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// What this build and CPU can use, e.g. "AVX2=1 AVX512F=1 AVX512_BF16=1 F16C=1 CUDA=0 threads=2 kernels=scalar".
#[no_mangle]
pub extern "C" fn llama_system_info() -> *const c_char {
    static INFO: OnceLock<CString> = OnceLock::new();
    guard_or(c"".as_ptr(), || {
        if let Some(info) = INFO.get() {
            return info.as_ptr();
        }
        // Made outside the OnceLock's initialiser: it may log, and a log callback may call this
        // function.
        let info = CString::new(crate::system_info()).unwrap_or_default();
        INFO.get_or_init(|| info).as_ptr()
    })
}

/// The message of the last failed call on this thread ("" when none). Valid until the next call
/// of this API on this thread. Never NULL.
#[no_mangle]
pub extern "C" fn llama_last_error() -> *const c_char {
    guard_or(c"".as_ptr(), guard::last_error_ptr)
}

/// The name of a status code, e.g. "LLAMA_ERR_FORMAT" ("LLAMA_OK" for 0, "LLAMA_ERR_UNKNOWN"
/// for codes this version does not define).
#[no_mangle]
pub extern "C" fn llama_status_str(s: llama_status) -> *const c_char {
    let name: &'static CStr = match s {
        LLAMA_OK => c"LLAMA_OK",
        _ => Status::from_code(s).map_or(c"LLAMA_ERR_UNKNOWN", Status::c_name),
    };
    name.as_ptr()
}

/// Install the log callback (NULL = silent, the default). The sink is one per process, shared by
/// every model and thread. The callback runs on the thread whose API call logs, with no lock of
/// the library held: it may call any function of this API, this one included. A call already
/// running the previous callback on another thread may finish with it.
#[no_mangle]
pub extern "C" fn llama_set_log_callback(callback: llama_log_fn, user_data: *mut c_void) {
    guard_or((), || crate::log::set(callback, user_data))
}

/// The default load parameters: detect version, config and tokenizer; CPU (device 0); one
/// thread per core; mmap on.
fn load_params_defaults() -> llama_load_params {
    llama_load_params {
        size: std::mem::size_of::<llama_load_params>() as u32,
        version: 0,
        config_path: std::ptr::null(),
        tokenizer_path: std::ptr::null(),
        device: LLAMA_DEVICE_CPU,
        n_threads: 0,
        use_mmap: 1,
        reserved0: 0,
        progress: None,
        progress_user_data: std::ptr::null_mut(),
        device_index: 0,
        reserved1: 0,
        bf16_products: LLAMA_BF16_PRODUCTS_F32,
        reserved2: 0,
    }
}

/// The default session parameters: context min(training, 4096), greedy, no penalties, seed 0,
/// f16 KV cache.
fn session_params_defaults() -> llama_session_params {
    llama_session_params {
        size: std::mem::size_of::<llama_session_params>() as u32,
        n_ctx: 0,
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        repeat_penalty: 1.0,
        seed: 0,
        kv_type: LLAMA_KV_F16,
        reserved0: 0,
    }
}

/// Write the default load parameters (detect version, config and tokenizer; CPU; one thread
/// per core; mmap on) into the first `size` bytes of `*params` and set `params->size = size`.
/// Pass `sizeof *params` as the host compiled it: the version-safe way to initialise. A NULL
/// `params` or a `size` that is no version's sizeof leaves it untouched (llama_last_error says
/// why).
///
/// # Safety
/// `params` is NULL or valid for writes of `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn llama_load_params_init(params: *mut llama_load_params, size: usize) {
    guard("llama_load_params_init", || {
        // SAFETY: `params` is NULL or valid for `size` bytes (# Safety), what versioned::init needs.
        unsafe { versioned::init(params, size, &load_params_defaults(), "params") }
    });
}

/// Write the default session parameters (context min(training, 4096), greedy, no penalties,
/// seed 0, f16 KV cache) into the first `size` bytes of `*params` and set
/// `params->size = size`; as llama_load_params_init.
///
/// # Safety
/// `params` is NULL or valid for writes of `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn llama_session_params_init(params: *mut llama_session_params, size: usize) {
    guard("llama_session_params_init", || {
        // SAFETY: `params` is NULL or valid for `size` bytes (# Safety), what versioned::init needs.
        unsafe { versioned::init(params, size, &session_params_defaults(), "params") }
    });
}

/// The default load parameters by value, for C programs compiled against this header
/// (`llama_load_params_default()` names this function). Not version-safe across headers: a
/// binary built against API version 1 calls the version-1 symbol, which returns version 1's
/// layout. Other hosts use llama_load_params_init.
#[no_mangle]
pub extern "C" fn llama_load_params_default_v2() -> llama_load_params {
    load_params_defaults()
}

/// The default session parameters by value, for C programs compiled against this header
/// (`llama_session_params_default()` names this function); as llama_load_params_default_v2.
#[no_mangle]
pub extern "C" fn llama_session_params_default_v2() -> llama_session_params {
    session_params_defaults()
}

/// API version 1's `llama_load_params_default`, kept for binaries built against that header:
/// its 56-byte layout and size, so nothing is written past the host's struct. Not in the v2
/// header (there the name is a macro for llama_load_params_default_v2).
#[no_mangle]
pub extern "C" fn llama_load_params_default() -> llama_load_params_v1 {
    let d = load_params_defaults();
    llama_load_params_v1 {
        size: std::mem::size_of::<llama_load_params_v1>() as u32,
        version: d.version,
        config_path: d.config_path,
        tokenizer_path: d.tokenizer_path,
        device: d.device,
        n_threads: d.n_threads,
        use_mmap: d.use_mmap,
        reserved0: 0,
        progress: d.progress,
        progress_user_data: d.progress_user_data,
    }
}

/// API version 1's `llama_session_params_default`, kept for binaries built against that
/// header: API.md v1's 32-byte layout and size (no `kv_type`: such a host gets the default
/// cache type). Not in the v2 header.
#[no_mangle]
pub extern "C" fn llama_session_params_default() -> llama_session_params_v1 {
    let d = session_params_defaults();
    llama_session_params_v1 {
        size: std::mem::size_of::<llama_session_params_v1>() as u32,
        n_ctx: d.n_ctx,
        temperature: d.temperature,
        top_k: d.top_k,
        top_p: d.top_p,
        repeat_penalty: d.repeat_penalty,
        seed: d.seed,
    }
}

/// Load a model. `path`: a .gguf, a .safetensors file or a directory of sharded *.safetensors
/// (+ config.json), or a llama2.c .bin; the format is detected from the content. `params` may be
/// NULL (defaults). On success `*out_model` owns a reference: free it with llama_model_free.
///
/// # Safety
/// `path` is a NUL-terminated string; `params` is NULL or points to a `llama_load_params` whose
/// `size` is set; `out_model` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn llama_load(
    path: *const c_char,
    params: *const llama_load_params,
    out_model: Option<&mut *mut llama_model>,
) -> llama_status {
    guard("llama_load", || {
        let out_model = required(out_model, "out_model")?;
        *out_model = std::ptr::null_mut();
        // SAFETY: `path` is NULL or NUL-terminated (# Safety).
        let path = unsafe { opt_path(path, "path") }?.ok_or_else(|| Error::invalid("path is NULL"))?;
        let p = if params.is_null() {
            load_params_defaults()
        } else {
            // SAFETY: non-null, so a struct whose `size` says how many bytes are valid (# Safety).
            unsafe { versioned::read(params, load_params_defaults(), "params") }?
        };
        if p.n_threads < 0 {
            return Err(Error::invalid(format!("n_threads {} must be >= 0", p.n_threads)));
        }
        if !matches!(p.use_mmap, 0 | 1) {
            return Err(Error::invalid(format!("use_mmap {} must be 0 or 1", p.use_mmap)));
        }
        let bf16_products = match p.bf16_products {
            LLAMA_BF16_PRODUCTS_F32 => Bf16Products::F32,
            LLAMA_BF16_PRODUCTS_ROUNDED => Bf16Products::Rounded,
            v => {
                return Err(Error::invalid(format!(
                    "bf16_products {v} is not LLAMA_BF16_PRODUCTS_F32 ({LLAMA_BF16_PRODUCTS_F32}) or \
                     LLAMA_BF16_PRODUCTS_ROUNDED ({LLAMA_BF16_PRODUCTS_ROUNDED})"
                )))
            }
        };
        let device = match (p.device, usize::try_from(p.device_index)) {
            (_, Err(_)) => return Err(Error::invalid(format!("device_index {} must be >= 0", p.device_index))),
            (LLAMA_DEVICE_CPU, _) => Device::Cpu,
            (LLAMA_DEVICE_CUDA, Ok(index)) => Device::Cuda { index },
            (d, _) => {
                return Err(Error::invalid(format!(
                    "device {d} is not LLAMA_DEVICE_CPU ({LLAMA_DEVICE_CPU}) or LLAMA_DEVICE_CUDA ({LLAMA_DEVICE_CUDA})"
                )))
            }
        };
        // SAFETY: the struct's strings are NULL or NUL-terminated (# Safety of the struct).
        let config = unsafe { opt_path(p.config_path, "config_path") }?;
        // SAFETY: as above.
        let tokenizer = unsafe { opt_path(p.tokenizer_path, "tokenizer_path") }?;
        let mut progress = |f: f32| -> bool {
            match p.progress {
                // SAFETY: the host's callback, called as its type says with the user data the host
                // paired with it.
                Some(cb) => unsafe { cb(f, p.progress_user_data) != 0 },
                None => false,
            }
        };
        let opts = LoadOptions {
            version: p.version,
            config_path: config,
            tokenizer_path: tokenizer,
            device,
            n_threads: p.n_threads as usize,
            use_mmap: p.use_mmap == 1,
            bf16_products,
            progress: Some(&mut progress),
        };
        let model = loader::load(&path, opts)?;
        hand_out(out_model, llama_model { model: Arc::new(model) });
        Ok(())
    })
}

/// Load only a tokenizer file (SentencePiece or tiktoken `tokenizer.model`, HF `tokenizer.json`,
/// llama2.c `tokenizer.bin`)
/// as a vocabulary-only model: the tokenizer functions work on it, `llama_session_new` returns
/// LLAMA_ERR_UNSUPPORTED. `version`: 0 = detect, 2 or 3 (must match the file). Free it with
/// llama_model_free.
///
/// # Safety
/// `tokenizer_path` is a NUL-terminated string; `out_model` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn llama_load_vocab(
    tokenizer_path: *const c_char,
    version: i32,
    out_model: Option<&mut *mut llama_model>,
) -> llama_status {
    guard("llama_load_vocab", || {
        let out_model = required(out_model, "out_model")?;
        *out_model = std::ptr::null_mut();
        // SAFETY: `tokenizer_path` is NULL or NUL-terminated (# Safety).
        let path = unsafe { opt_path(tokenizer_path, "tokenizer_path") }?
            .ok_or_else(|| Error::invalid("tokenizer_path is NULL"))?;
        let model = loader::load_vocab(&path, version)?;
        hand_out(out_model, llama_model { model: Arc::new(model) });
        Ok(())
    })
}

/// Release the caller's reference to a model (NULL is fine). The model stays alive until its
/// last session is freed.
///
/// # Safety
/// `model` is NULL or a pointer from `llama_load` not freed before.
#[no_mangle]
pub unsafe extern "C" fn llama_model_free(model: *mut llama_model) {
    if model.is_null() {
        return;
    }
    guard_or((), || {
        // SAFETY: a handle from llama_load's Box::into_raw (# Safety), dropped once: the host
        // gives it up by this call.
        drop(unsafe { Box::from_raw(model) })
    })
}

/// Vocabulary size (LLAMA_ERR_INVALID_ARGUMENT for a NULL model). `model`: NULL or live.
#[no_mangle]
pub extern "C" fn llama_model_n_vocab(model: Option<&llama_model>) -> i32 {
    guard_or(LLAMA_ERR_INTERNAL, || {
        reported("llama_model_n_vocab", LLAMA_ERR_INVALID_ARGUMENT, model_of(model).map(|m| m.hparams.n_vocab as i32))
    })
}

/// Training context length (LLAMA_ERR_INVALID_ARGUMENT for a NULL model). `model`: NULL or
/// live.
#[no_mangle]
pub extern "C" fn llama_model_n_ctx_train(model: Option<&llama_model>) -> i32 {
    guard_or(LLAMA_ERR_INTERNAL, || {
        let n = model_of(model).map(|m| m.hparams.n_ctx_train.min(i32::MAX as usize) as i32);
        reported("llama_model_n_ctx_train", LLAMA_ERR_INVALID_ARGUMENT, n)
    })
}

/// The BOS id (-1 for a NULL model). `model`: NULL or live.
#[no_mangle]
pub extern "C" fn llama_token_bos(model: Option<&llama_model>) -> llama_token {
    guard_or(-1, || reported("llama_token_bos", -1, model_of(model).map(|m| m.bos as llama_token)))
}

/// The EOS id (-1 for a NULL model). `model`: NULL or live.
#[no_mangle]
pub extern "C" fn llama_token_eos(model: Option<&llama_model>) -> llama_token {
    guard_or(-1, || reported("llama_token_eos", -1, model_of(model).map(|m| m.eos as llama_token)))
}

/// 1 if `t` ends generation (EOS, <|eot_id|>, <|end_of_text|>), else 0 (also for a NULL model
/// or an id out of range). `model`: NULL or live.
#[no_mangle]
pub extern "C" fn llama_token_is_eog(model: Option<&llama_model>, t: llama_token) -> i32 {
    guard_or(0, || reported("llama_token_is_eog", 0, model_of(model).map(|m| (t >= 0 && m.is_eog(t as u32)) as i32)))
}

/// JSON describing the model: "format", "version", "n_vocab", "n_embd", "n_layer", "n_head",
/// "n_head_kv", "n_ff", "rope_theta", "norm_eps", "dtype", "n_params", "device", "assumed" (values
/// that came from defaults) and "tensors": [{"name", "dtype", "shape"}] as stored in the file.
/// Two-call pattern: `*out_len` is always set to the JSON's byte length; a NUL is appended when
/// `capacity > *out_len`.
///
/// # Safety
/// `model` NULL or live; `out` is NULL (with capacity 0) or valid for `capacity` bytes;
/// `out_len` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn llama_model_describe(
    model: Option<&llama_model>,
    out: *mut c_char,
    capacity: usize,
    mut out_len: Option<&mut usize>,
) -> llama_status {
    guard("llama_model_describe", || {
        clear_len(&mut out_len);
        let json = model_of(model)?.describe_json();
        // SAFETY: `out` is NULL or valid for `capacity` bytes (# Safety).
        unsafe { write_out(json.as_bytes(), out as *mut u8, capacity, out_len, true) }
    })
}

/// Number of tensors stored in the model file(s) (pieces of a split tensor count once);
/// LLAMA_ERR_INVALID_ARGUMENT for NULL. `model`: NULL or live.
#[no_mangle]
pub extern "C" fn llama_model_n_tensors(model: Option<&llama_model>) -> i32 {
    guard_or(LLAMA_ERR_INTERNAL, || {
        let n = model_of(model).map(|m| m.tensors.len().min(i32::MAX as usize) as i32);
        reported("llama_model_n_tensors", LLAMA_ERR_INVALID_ARGUMENT, n)
    })
}

/// Describe tensor `index` (0 .. llama_model_n_tensors - 1) into `*out`, whose `size` the caller
/// sets to sizeof(llama_tensor_info): at most that many bytes are written.
///
/// # Safety
/// `model` NULL or live; `out` NULL or valid for writes of the `size` bytes it says.
#[no_mangle]
pub unsafe extern "C" fn llama_model_tensor(
    model: Option<&llama_model>,
    index: i32,
    out: *mut llama_tensor_info,
) -> llama_status {
    guard("llama_model_tensor", || {
        let m = model_of(model)?;
        non_null(out, "out")?;
        let t = usize::try_from(index).ok().and_then(|i| m.tensors.get(i)).ok_or_else(|| {
            Error::invalid(format!("tensor index {index} is out of range (the model has {})", m.tensors.len()))
        })?;
        if t.shape.len() > 8 {
            return Err(Error::unsupported(format!(
                "tensor {:?} has {} dimensions (at most 8)",
                t.name,
                t.shape.len()
            )));
        }
        let names = m.c_names.get_or_init(|| {
            m.tensors.iter().map(|t| CString::new(t.name.replace('\0', " ")).unwrap_or_default()).collect()
        });
        let mut shape = [0i64; 8];
        for (s, &d) in shape.iter_mut().zip(&t.shape) {
            *s = d as i64;
        }
        let info = llama_tensor_info {
            size: std::mem::size_of::<llama_tensor_info>() as u32,
            n_dims: t.shape.len() as i32,
            name: names[index as usize].as_ptr(),
            dtype: t.dtype.c_name().as_ptr(),
            shape,
        };
        // SAFETY: checked non-null, so valid for the `size` bytes it says (# Safety).
        unsafe { versioned::write(out, &info, "out") }
    })
}

/// The model's resolved hyper-parameters into `*out`, whose `size` the caller sets to
/// sizeof(llama_model_hparams): at most that many bytes are written. (Which values were
/// assumed is in llama_model_describe.)
///
/// # Safety
/// `model` NULL or live; `out` NULL or valid for writes of the `size` bytes it says.
#[no_mangle]
pub unsafe extern "C" fn llama_model_get_hparams(
    model: Option<&llama_model>,
    out: *mut llama_model_hparams,
) -> llama_status {
    guard("llama_model_get_hparams", || {
        let m = model_of(model)?;
        non_null(out, "out")?;
        let hp = &m.hparams;
        let i = |v: usize| v.min(i32::MAX as usize) as i32;
        let h = llama_model_hparams {
            size: std::mem::size_of::<llama_model_hparams>() as u32,
            version: m.version as i32,
            n_vocab: i(hp.n_vocab),
            n_embd: i(hp.n_embd),
            n_layer: i(hp.n_layer),
            n_head: i(hp.n_head),
            n_head_kv: i(hp.n_head_kv),
            n_ff: i(hp.n_ff),
            n_ctx_train: i(hp.n_ctx_train),
            rope_theta: hp.rope_theta,
            norm_eps: hp.norm_eps,
            reserved0: 0,
            n_params: m.n_params(),
        };
        // SAFETY: checked non-null, so valid for the `size` bytes it says (# Safety).
        unsafe { versioned::write(out, &h, "out") }
    })
}

/// Tokenize `text_len` bytes of UTF-8 text. Flags: LLAMA_TOKENIZE_ADD_BOS,
/// LLAMA_TOKENIZE_PARSE_SPECIAL. Two-call pattern: `*out_n_tokens` is always set to the count.
///
/// # Safety
/// `model` NULL or live; `text` is valid for `text_len` bytes (may be NULL when 0);
/// `out_tokens` is NULL (capacity 0) or valid for `capacity` ids; `out_n_tokens` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn llama_tokenize(
    model: Option<&llama_model>,
    text: *const c_char,
    text_len: usize,
    flags: u32,
    out_tokens: *mut llama_token,
    capacity: usize,
    mut out_n_tokens: Option<&mut usize>,
) -> llama_status {
    guard("llama_tokenize", || {
        clear_len(&mut out_n_tokens);
        let m = model_of(model)?;
        check_flags(flags, LLAMA_TOKENIZE_ADD_BOS | LLAMA_TOKENIZE_PARSE_SPECIAL, "flags")?;
        let bytes: &[u8] = if text_len == 0 {
            &[]
        } else {
            non_null(text, "text")?;
            // SAFETY: checked non-null, so valid for `text_len` bytes (# Safety).
            unsafe { std::slice::from_raw_parts(text as *const u8, text_len) }
        };
        let s = std::str::from_utf8(bytes).map_err(|e| Error::invalid(format!("text is not valid UTF-8: {e}")))?;
        let ids =
            m.tokenizer.encode(s, flags & LLAMA_TOKENIZE_ADD_BOS != 0, flags & LLAMA_TOKENIZE_PARSE_SPECIAL != 0)?;
        // SAFETY: `out_tokens` is NULL or valid for `capacity` ids (# Safety).
        unsafe { write_out(&to_ids(&ids), out_tokens, capacity, out_n_tokens, false) }
    })
}

/// Turn tokens back into UTF-8 text (LLAMA_DETOKENIZE_SKIP_SPECIAL drops special tokens).
/// Two-call pattern; a NUL is appended when `capacity > *out_len`.
///
/// # Safety
/// `model` NULL or live; `tokens` valid for `n_tokens` ids; `out` NULL (capacity 0) or valid
/// for `capacity` bytes; `out_len` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn llama_detokenize(
    model: Option<&llama_model>,
    tokens: *const llama_token,
    n_tokens: usize,
    flags: u32,
    out: *mut c_char,
    capacity: usize,
    mut out_len: Option<&mut usize>,
) -> llama_status {
    guard("llama_detokenize", || {
        clear_len(&mut out_len);
        let m = model_of(model)?;
        check_flags(flags, LLAMA_DETOKENIZE_SKIP_SPECIAL, "flags")?;
        // SAFETY: `tokens` is valid for `n_tokens` ids (# Safety).
        let ids = unsafe { from_ids(tokens, n_tokens, m.hparams.n_vocab) }?;
        // Only what fits is kept: the length is counted without building a longer text.
        let (text, total) = m.tokenizer.decode_capped(&ids, flags & LLAMA_DETOKENIZE_SKIP_SPECIAL != 0, capacity)?;
        if total > text.len() {
            *required(out_len, "out_len")? = total;
            return Err(Error::new(
                Status::BufferTooSmall,
                format!("the result needs {total} elements, the buffer holds {capacity}"),
            ));
        }
        // SAFETY: `out` is NULL or valid for `capacity` bytes (# Safety).
        unsafe { write_out(&text, out as *mut u8, capacity, out_len, true) }
    })
}

/// Raw bytes of one token (may be part of a UTF-8 character). Two-call pattern; a NUL is
/// appended when `capacity > *out_len`.
///
/// # Safety
/// `model` NULL or live; `out` NULL (capacity 0) or valid for `capacity` bytes; `out_len` NULL
/// or valid.
#[no_mangle]
pub unsafe extern "C" fn llama_token_to_piece(
    model: Option<&llama_model>,
    t: llama_token,
    out: *mut c_char,
    capacity: usize,
    mut out_len: Option<&mut usize>,
) -> llama_status {
    guard("llama_token_to_piece", || {
        clear_len(&mut out_len);
        let m = model_of(model)?;
        let id = u32::try_from(t).ok().filter(|&id| (id as usize) < m.hparams.n_vocab).ok_or_else(|| {
            Error::invalid(format!("token {t} at index 0 is out of range (n_vocab {})", m.hparams.n_vocab))
        })?;
        let piece = m.tokenizer.token_to_piece(id)?;
        // SAFETY: `out` is NULL or valid for `capacity` bytes (# Safety).
        unsafe { write_out(&piece, out as *mut u8, capacity, out_len, true) }
    })
}

/// The model's chat prompt as token ids (LLaMA 2 `[INST]` format or LLaMA 3 headers). Contents are
/// tokenized as plain text. Flag: LLAMA_CHAT_ADD_ASSISTANT. Two-call pattern.
///
/// # Safety
/// `model` NULL or live; `messages` valid for `n_messages` entries with NUL-terminated strings;
/// output as for llama_tokenize.
#[no_mangle]
pub unsafe extern "C" fn llama_chat_tokenize(
    model: Option<&llama_model>,
    messages: *const llama_chat_message,
    n_messages: usize,
    flags: u32,
    out_tokens: *mut llama_token,
    capacity: usize,
    mut out_n_tokens: Option<&mut usize>,
) -> llama_status {
    guard("llama_chat_tokenize", || {
        clear_len(&mut out_n_tokens);
        let m = model_of(model)?;
        check_flags(flags, LLAMA_CHAT_ADD_ASSISTANT, "flags")?;
        let raw: &[llama_chat_message] = if n_messages == 0 {
            &[]
        } else {
            non_null(messages, "messages")?;
            // SAFETY: checked non-null, so valid for `n_messages` entries (# Safety).
            unsafe { std::slice::from_raw_parts(messages, n_messages) }
        };
        let mut msgs = Vec::with_capacity(raw.len());
        for (i, msg) in raw.iter().enumerate() {
            // SAFETY: each message's strings are NULL or NUL-terminated (# Safety).
            let role = unsafe { opt_str(msg.role, &format!("messages[{i}].role")) }?
                .ok_or_else(|| Error::invalid(format!("messages[{i}].role is NULL")))?;
            // SAFETY: as above.
            let content = unsafe { opt_str(msg.content, &format!("messages[{i}].content")) }?
                .ok_or_else(|| Error::invalid(format!("messages[{i}].content is NULL")))?;
            msgs.push(ChatMessage { role, content });
        }
        let ids = m.tokenizer.chat_tokenize(&msgs, flags & LLAMA_CHAT_ADD_ASSISTANT != 0)?;
        // SAFETY: `out_tokens` is NULL or valid for `capacity` ids (# Safety).
        unsafe { write_out(&to_ids(&ids), out_tokens, capacity, out_n_tokens, false) }
    })
}

/// Start a session of `model` (which it keeps alive). `params` may be NULL (defaults).
///
/// # Safety
/// `model` NULL or live; `params` NULL or a sized `llama_session_params`; `out_session` NULL or
/// valid.
#[no_mangle]
pub unsafe extern "C" fn llama_session_new(
    model: *mut llama_model,
    params: *const llama_session_params,
    out_session: Option<&mut *mut llama_session>,
) -> llama_status {
    guard("llama_session_new", || {
        let out_session = required(out_session, "out_session")?;
        *out_session = std::ptr::null_mut();
        // SAFETY: `model` is NULL or a live handle from llama_load (# Safety); the header says
        // `llama_model *` but a model is shared, so only a shared reference is made.
        let model = model_of(unsafe { model.as_ref() })?;
        let p = if params.is_null() {
            session_params_defaults()
        } else {
            // SAFETY: non-null, so a struct whose `size` says how many bytes are valid (# Safety).
            unsafe { versioned::read(params, session_params_defaults(), "params") }?
        };
        let (kv_type, kv_type_v) = match p.kv_type {
            LLAMA_KV_F16 => (KvType::F16, None),
            LLAMA_KV_F32 => (KvType::F32, None),
            LLAMA_KV_Q8_0 => (KvType::Int8, None),
            LLAMA_KV_Q4_0 => (KvType::Int4, None),
            LLAMA_KV_Q8_0_Q4_0 => (KvType::Int8, Some(KvType::Int4)),
            other => {
                return Err(Error::invalid(format!(
                    "params->kv_type is {other}: use LLAMA_KV_F16 ({LLAMA_KV_F16}), LLAMA_KV_F32 ({LLAMA_KV_F32}), LLAMA_KV_Q8_0 ({LLAMA_KV_Q8_0}), LLAMA_KV_Q4_0 ({LLAMA_KV_Q4_0}) or LLAMA_KV_Q8_0_Q4_0 ({LLAMA_KV_Q8_0_Q4_0})"
                )))
            }
        };
        let sp = SessionParams {
            n_ctx: p.n_ctx,
            sampler: SamplerParams {
                temperature: p.temperature,
                top_k: p.top_k,
                top_p: p.top_p,
                repeat_penalty: p.repeat_penalty,
            },
            seed: p.seed,
            kv_type,
            kv_type_v,
        };
        let session = Session::new(model.clone(), sp)?;
        hand_out(out_session, llama_session { session });
        Ok(())
    })
}

/// Free a session (NULL is fine); releases its reference to the model.
///
/// # Safety
/// `session` NULL or from llama_session_new, not freed before, not in use on another thread.
#[no_mangle]
pub unsafe extern "C" fn llama_session_free(session: *mut llama_session) {
    if session.is_null() {
        return;
    }
    guard_or((), || {
        // SAFETY: a handle from llama_session_new's Box::into_raw that no other thread uses
        // (# Safety), dropped once: the host gives it up by this call.
        drop(unsafe { Box::from_raw(session) })
    })
}

/// Empty the KV cache (position 0), restart the sampler from its seed and clear a pending
/// llama_session_abort.
///
/// # Safety
/// `session` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn llama_session_reset(session: *mut llama_session) -> llama_status {
    // SAFETY: `session` is NULL or live (# Safety).
    let session = unsafe { session_at(session) };
    guard("llama_session_reset", || session_of(session)?.reset())
}

/// The session's context length in tokens (0 for NULL). `session`: NULL or live.
#[no_mangle]
pub extern "C" fn llama_session_n_ctx(session: Option<&llama_session>) -> u32 {
    guard_or(0, || reported("llama_session_n_ctx", 0, session_of(session).map(|s| s.n_ctx() as u32)))
}

/// Number of tokens in the session's KV cache (0 for NULL). `session`: NULL or live.
#[no_mangle]
pub extern "C" fn llama_session_position(session: Option<&llama_session>) -> u32 {
    guard_or(0, || reported("llama_session_position", 0, session_of(session).map(|s| s.position())))
}

/// Forget the tokens at positions >= `position` (which must be <= the current position) and
/// clear a pending llama_session_abort.
///
/// # Safety
/// `session` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn llama_session_rewind(session: *mut llama_session, position: u32) -> llama_status {
    // SAFETY: `session` is NULL or live (# Safety).
    let session = unsafe { session_at(session) };
    guard("llama_session_rewind", || session_of(session)?.rewind(position))
}

/// From any thread: the running llama_step of this session, or if none runs the next one,
/// returns LLAMA_ERR_CANCELLED, leaving the session unchanged. llama_session_reset and
/// llama_session_rewind clear an abort that no step has consumed.
///
/// # Safety
/// `session` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn llama_session_abort(session: *mut llama_session) {
    // SAFETY: `session` is NULL or live (# Safety).
    let session = unsafe { session_at(session) };
    guard_or((), || {
        if let Some(s) = session {
            s.session.abort()
        }
    })
}

/// Append `n_tokens` (>= 1) at the session's position and run the model over them (one batched
/// pass when n_tokens > 1); then sample the next token into `*out_next` (not appended: pass it to
/// the next llama_step). On any error the session is left exactly as before the call.
///
/// # Safety
/// `session` NULL or live; `tokens` valid for `n_tokens` ids; `out_next` NULL or valid for one
/// write.
#[no_mangle]
pub unsafe extern "C" fn llama_step(
    session: *mut llama_session,
    tokens: *const llama_token,
    n_tokens: usize,
    out_next: Option<&mut llama_token>,
) -> llama_status {
    // SAFETY: `session` is NULL or live (# Safety).
    let session = unsafe { session_at(session) };
    guard("llama_step", || {
        let s = session_of(session)?;
        let out_next = required(out_next, "out_next")?;
        if n_tokens == 0 {
            return Err(Error::invalid("n_tokens must be >= 1"));
        }
        // Before any id is read: a count past the context is refused without reading that far.
        let room = s.n_ctx().saturating_sub(s.position() as usize);
        if n_tokens > room {
            return Err(Error::new(
                Status::ContextFull,
                format!(
                    "position {} + {n_tokens} tokens exceeds the context of {} (llama_session_reset or rewind to make room)",
                    s.position(),
                    s.n_ctx()
                ),
            ));
        }
        // SAFETY: `tokens` is valid for `n_tokens` ids (# Safety).
        let ids = unsafe { from_ids(tokens, n_tokens, s.model().hparams.n_vocab) }?;
        *out_next = s.step(&ids)? as llama_token;
        Ok(())
    })
}

/// The n_vocab logits of the last position of the last successful step; valid until the next
/// step, reset, rewind or free of that session. NULL before the first step (and for NULL).
/// `session`: NULL or live.
#[no_mangle]
pub extern "C" fn llama_session_logits(session: Option<&llama_session>) -> *const f32 {
    guard_or(std::ptr::null(), || {
        reported("llama_session_logits", std::ptr::null(), session_of(session).map(|s| s.logits_ptr()))
    })
}
