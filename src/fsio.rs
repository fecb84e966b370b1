//! Opening the files a caller names. Only regular files are opened: `open` on a FIFO waits for
//! a writer, and reading a device or socket may never end, which would hang the host's thread.
//! Small files (tokenizers, configs) are read whole only up to a bound, so a wrong path to a
//! huge file is an error instead of gigabytes of heap.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest tokenizer file read (LLaMA 3's `tokenizer.json` is 9 MB).
pub const TOKENIZER_LIMIT: u64 = 64 << 20;
/// Largest config file read (`config.json`, a MindFormers yaml, a safetensors index).
pub const CONFIG_LIMIT: u64 = 16 << 20;

/// Open `path` for reading if it is a regular file; `what` names it in errors ("cannot open
/// the tokenizer").
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    let shown = path.display();
    let file = open_nonblocking(path).map_err(|e| Error::io(format!("{shown}: cannot open {what}: {e}")))?;
    let meta = file.metadata().map_err(|e| Error::io(format!("{shown}: cannot stat {what}: {e}")))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, device or socket?)" };
        return Err(Error::io(format!("{shown}: {what} is {kind}")));
    }
    Ok(file)
}

/// The bytes of the regular file `path`, at most `limit` of them (a longer file is an error).
pub fn read_small(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let shown = path.display();
    let file = open_regular(path, what)?;
    let len = file.metadata().map_err(|e| Error::io(format!("{shown}: cannot stat {what}: {e}")))?.len();
    let too_long = |len: u64| Error::io(format!("{shown}: {what} is {len} bytes, more than the {limit} accepted"));
    if len > limit {
        return Err(too_long(len));
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew while it was read.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(format!("{shown}: cannot read {what}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(too_long(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Open for reading without waiting: on Unix with `O_NONBLOCK`, which makes `open` of a FIFO
/// return at once (and changes nothing for a regular file); elsewhere after checking that the
/// path names a regular file (Windows has no FIFOs in its file system).
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(std::io::Error::other("not a regular file"));
    }
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_are_read_up_to_their_bound() {
        let dir = std::env::temp_dir().join(format!("runllama-fsio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ten.txt");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_small(&p, "the test file", 10).unwrap(), b"0123456789");
        let e = read_small(&p, "the test file", 9).unwrap_err();
        assert!(e.to_string().contains("10 bytes, more than the 9 accepted"), "{e}");
        let e = read_small(&dir, "the test file", 9).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = std::env::temp_dir().join(format!("runllama-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_regular(&p, "the model").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
