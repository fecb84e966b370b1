//! The process-wide log callback (`llama_set_log_callback`): whole lines, level 0 = debug ..
//! 3 = error. Silent until a host installs a callback.
//!
//! The callback is called with no lock held (the sink is copied out first), so it may call
//! back into the API, `llama_set_log_callback` included, and a host callback that never
//! returns normally (an exception unwinding past us, a `longjmp`) leaves nothing locked.
//!
//! Lines logged by API calls the callback itself makes are not delivered (every failing call
//! logs, so a callback whose own call fails would otherwise recurse until the stack overflows;
//! the callback gets that call's status and `llama_last_error()` anyway). "Inside the callback"
//! is told by stack depth, not by a flag: a callback that escapes (a `longjmp`, an exception;
//! the contract forbids it) leaves its mark behind, which a flag would turn into a thread
//! silenced for good. A stale depth mark only holds back lines logged from frames deeper than
//! the escaped one, and is cleared by the next line logged from a frame at or above it.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::sync::Mutex;

/// The C callback type: `void (*)(int32_t level, const char *line, void *user_data)`.
pub type LogFn = unsafe extern "C" fn(level: i32, line: *const c_char, user_data: *mut c_void);

#[derive(Clone, Copy)]
struct Sink {
    f: LogFn,
    user_data: usize,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

thread_local! {
    /// The stack address of the `emit` frame whose callback runs on this thread (0: none).
    static CALLING_OUT_AT: Cell<usize> = const { Cell::new(0) };
}

fn sink() -> Option<Sink> {
    *SINK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Install (or with `None`, remove) the callback.
pub fn set(f: Option<LogFn>, user_data: *mut c_void) {
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = f.map(|f| Sink { f, user_data: user_data as usize });
}

/// Send one line at `level` to the callback, if any, on this thread.
pub fn emit(level: i32, line: &str) {
    let Some(s) = sink() else { return };
    let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
    // Stacks grow down on every target we build for: a frame below the one calling out is
    // nested inside the callback.
    let here = &c as *const CString as usize;
    let outer = CALLING_OUT_AT.get();
    if outer != 0 && here < outer {
        return;
    }
    CALLING_OUT_AT.set(here);
    // SAFETY: the host installed `f` with this `user_data`; `c` outlives the call; no lock is
    // held.
    unsafe { (s.f)(level, c.as_ptr(), s.user_data as *mut c_void) };
    // `outer` was 0 or a stale mark (a live one is above us, and we returned early).
    CALLING_OUT_AT.set(0);
}

/// Info-level line.
pub fn info(line: &str) {
    emit(1, line);
}
