//! The boundary every export goes through: panics caught, errors turned into a status and a
//! per-thread message for `llama_last_error()`.
//!
//! Host callbacks may run inside an export (the log callback when it reports the error, the
//! progress callback during a load) and may themselves call the API, which replaces the
//! thread's message. So [`guard`] writes the outer call's message again once the log callback
//! has returned, and clears a message a nested call left behind when the outer call succeeds:
//! after any call, `llama_last_error()` describes that call.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Result, Status};

use super::{llama_status, LLAMA_ERR_INTERNAL, LLAMA_OK};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Make `msg` this thread's `llama_last_error()`.
pub(super) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Clear this thread's message if a nested call (from a host callback) left one.
fn clear_last_error() {
    LAST_ERROR.with(|e| {
        if !e.borrow().is_empty() {
            *e.borrow_mut() = CString::default();
        }
    });
}

/// This thread's message; valid until the next call that sets it.
pub(super) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Run `f`, turning errors into a status and a message for `llama_last_error`, and a panic into
/// `LLAMA_ERR_INTERNAL`. The one wrapper every fallible export goes through.
pub(super) fn guard(name: &str, f: impl FnOnce() -> Result<()>) -> llama_status {
    set_last_error("");
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            clear_last_error();
            LLAMA_OK
        }
        Ok(Err(e)) => {
            let msg = format!("{name}: {}", e.message);
            // Set before the log callback runs (should it never return) and after (it may have
            // made calls of its own that replaced the message).
            set_last_error(&msg);
            crate::log::emit(if e.status == Status::BufferTooSmall { 0 } else { 2 }, &format!("{name}: {e}"));
            set_last_error(&msg);
            e.status as i32
        }
        Err(p) => {
            set_last_error(&format!("{name}: internal error (panic): {}", panic_message(p.as_ref())));
            LLAMA_ERR_INTERNAL
        }
    }
}

/// [`guard`] for exports that return a value instead of a status: a panic gives `fallback`.
pub(super) fn guard_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}
