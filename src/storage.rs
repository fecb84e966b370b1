//! The bytes of a model file: memory-mapped (the default; weights are used in place) or, when
//! the caller turns mmap off, read once into one heap buffer.

use std::io::Read;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result, Status};

/// One model file's bytes.
#[derive(Debug)]
pub enum Storage {
    /// A read-only shared mapping of the whole file.
    Mapped(Mmap),
    /// The whole file read into memory (`use_mmap = 0`).
    Heap(Vec<u8>),
}

impl Storage {
    /// Open `path` and map it (or read it when `use_mmap` is false).
    pub fn open(path: &Path, use_mmap: bool) -> Result<Storage> {
        let shown = path.display();
        let mut file = crate::fsio::open_regular(path, "the model file")?;
        let len = file.metadata().map_err(|e| Error::io(format!("{shown}: cannot stat: {e}")))?.len();
        if len == 0 {
            return Err(Error::format(format!("{shown}: the file is empty")));
        }
        if !use_mmap {
            let mut bytes = Vec::new();
            bytes.try_reserve_exact(len as usize).map_err(|_| {
                Error::new(
                    Status::OutOfMemory,
                    format!("{shown}: cannot allocate {len} bytes to read the file (use_mmap = 0)"),
                )
            })?;
            file.read_to_end(&mut bytes).map_err(|e| Error::io(format!("{shown}: cannot read: {e}")))?;
            return Ok(Storage::Heap(bytes));
        }
        // SAFETY: the mapping is read-only and private to this process's view of the file. The
        // usual memmap caveat applies: another process truncating or rewriting the file while it
        // is mapped is outside what we can defend against (as for every mmap-based loader).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(format!("{shown}: mmap failed: {e}")))?;
        // Ask for huge pages (Linux, a hint): weights the kernel reads in through this mapping
        // then come in 2 MiB folios mapped by one TLB entry each, which decode, streaming every
        // weight once per token, reads faster. Ignored where THP is off or unsupported.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok(Storage::Mapped(map))
    }

    /// All bytes of the file.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Heap(v) => v,
        }
    }
}
