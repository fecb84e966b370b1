//! The boundary every export goes through: panics caught, errors turned into a status and a
//! per-thread message for `llama_last_error()`.
//!
//! Host callbacks may run inside an export (the log callback when it reports the error, the
//! progress callback during a load) and may themselves call the API, which replaces the
//! thread's message. So [`guard`] writes the outer call's message again once the log callback
//! has returned, and clears a message a nested call left behind when the outer call succeeds:
//! after any call, `llama_last_error()` describes that call.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once};

use crate::error::{Result, Status};

use super::{llama_status, LLAMA_ERR_INTERNAL, LLAMA_OK};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// Guarded calls running on this thread (they nest through host callbacks).
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// The message and place of the last panic in the library's own code, as the panic hook saw
/// it (a panic in a worker thread reaches the guard on the calling thread by unwinding).
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// Install, once, a panic hook that keeps the library's panics (in a guarded call or on one of
/// its worker threads) off the host's stderr: their text goes to `llama_last_error()` and the
/// log callback instead. Every other panic goes to the hook that was there before.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = GUARDED.get() > 0
                || std::thread::current().name().is_some_and(|n| n.starts_with(crate::backend::cpu::WORKER_NAME));
            if !ours {
                return previous(info);
            }
            let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let text = format!("{}{place}", panic_message(info.payload()));
            *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = text;
        }));
    });
}

/// Counts a guarded call while it runs.
struct Guarded;

impl Guarded {
    fn enter() -> Guarded {
        install_panic_hook();
        GUARDED.set(GUARDED.get() + 1);
        Guarded
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        GUARDED.set(GUARDED.get().saturating_sub(1));
    }
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

/// What the panic hook saw of the panic whose payload is `p` (its message and place), or the
/// payload's message.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let seen = std::mem::take(&mut *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()));
    if seen.is_empty() {
        panic_message(p)
    } else {
        seen
    }
}

/// Run `f`, turning errors into a status and a message for `llama_last_error`, and a panic into
/// `LLAMA_ERR_INTERNAL`. The one wrapper every fallible export goes through.
pub(super) fn guard(name: &str, f: impl FnOnce() -> Result<()>) -> llama_status {
    set_last_error("");
    let guarded = Guarded::enter();
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(guarded);
    match result {
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
            let msg = format!("{name}: internal error (a bug; please report it): {}", panic_text(p.as_ref()));
            set_last_error(&msg);
            crate::log::emit(3, &msg);
            set_last_error(&msg);
            LLAMA_ERR_INTERNAL
        }
    }
}

/// The value of a query export (`name`), or on an error `fallback` with the error as this
/// thread's `llama_last_error()` (a query has no status to return).
pub(super) fn reported<T>(name: &str, fallback: T, r: Result<T>) -> T {
    match r {
        Ok(v) => {
            set_last_error("");
            v
        }
        Err(e) => {
            set_last_error(&format!("{name}: {}", e.message));
            fallback
        }
    }
}

/// [`guard`] for exports that return a value instead of a status: a panic gives `fallback`,
/// with its text as `llama_last_error()` and on the log.
pub(super) fn guard_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    let guarded = Guarded::enter();
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(guarded);
    result.unwrap_or_else(|p| {
        let msg = format!("internal error (a bug; please report it): {}", panic_text(p.as_ref()));
        set_last_error(&msg);
        crate::log::emit(3, &msg);
        set_last_error(&msg);
        fallback
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::{c_char, c_void, CStr};
    use std::sync::Mutex;

    use super::*;

    static LOGGED: Mutex<String> = Mutex::new(String::new());

    unsafe extern "C" fn log_to_string(_level: i32, line: *const c_char, _user: *mut c_void) {
        // SAFETY: the library passes a NUL-terminated line valid for the call.
        let line = unsafe { CStr::from_ptr(line) }.to_string_lossy();
        LOGGED.lock().unwrap().push_str(&line);
    }

    fn last_error() -> String {
        // SAFETY: a NUL-terminated string owned by this thread until its next guarded call.
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    /// A panic in a guarded call, on one of the library's worker threads, or in a query export:
    /// its text reaches `llama_last_error()` and the log callback, never the host's stderr. Run
    /// in a child process (this test binary again, on this test alone) whose stderr is read.
    #[test]
    fn panics_reach_the_error_and_the_log_but_not_stderr() {
        const TEST: &str = "ffi::guard::tests::panics_reach_the_error_and_the_log_but_not_stderr";
        if std::env::var_os("RUNLLAMA_GUARD_CHILD").is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
                .env("RUNLLAMA_GUARD_CHILD", "1")
                .output()
                .unwrap();
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && stdout.contains("child: all caught"), "{stdout}\n{stderr}");
            assert!(!stderr.contains("boom") && !stderr.contains("panicked"), "on stderr: {stderr}");
            return;
        }
        crate::log::set(Some(log_to_string), std::ptr::null_mut());
        assert_eq!(guard("llama_test", || panic!("boom in a call")), LLAMA_ERR_INTERNAL);
        assert!(last_error().starts_with("llama_test: internal error") && last_error().contains("boom in a call"));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|i| format!("{}{i}", crate::backend::cpu::WORKER_NAME))
            .build()
            .unwrap();
        assert_eq!(guard("llama_test", || pool.install(|| panic!("boom on a worker"))), LLAMA_ERR_INTERNAL);
        assert!(last_error().contains("boom on a worker") && last_error().contains("guard.rs"), "{}", last_error());
        assert_eq!(guard_or(7, || panic!("boom in a query")), 7);
        assert!(last_error().contains("boom in a query"), "{}", last_error());
        crate::log::set(None, std::ptr::null_mut());
        let logged = LOGGED.lock().unwrap().clone();
        for what in ["boom in a call", "boom on a worker", "boom in a query"] {
            assert!(logged.contains(what), "{what} not logged: {logged}");
        }
        println!("child: all caught");
    }
}
