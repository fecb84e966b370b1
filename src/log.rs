//! The process-wide log callback (`llama_set_log_callback`): whole lines, level 0 = debug ..
//! 3 = error, from any thread. Silent until a host installs a callback.

use std::ffi::{c_char, c_void, CString};
use std::sync::RwLock;

/// The C callback type: `void (*)(int32_t level, const char *line, void *user_data)`.
pub type LogFn = unsafe extern "C" fn(level: i32, line: *const c_char, user_data: *mut c_void);

struct Sink {
    f: LogFn,
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Install (or with `None`, remove) the callback.
pub fn set(f: Option<LogFn>, user_data: *mut c_void) {
    let mut g = SINK.write().unwrap_or_else(|p| p.into_inner());
    *g = f.map(|f| Sink { f, user_data: user_data as usize });
}

/// Send one line at `level` to the callback, if any.
pub fn emit(level: i32, line: &str) {
    let g = SINK.read().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = g.as_ref() {
        let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host installed `f` with this `user_data` and promised it may be called
        // from any thread; `c` outlives the call.
        unsafe { (s.f)(level, c.as_ptr(), s.user_data as *mut c_void) };
    }
}

/// Info-level line.
pub fn info(line: &str) {
    emit(1, line);
}
