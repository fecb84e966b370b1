//! Fallible reservations for memory sized by input (tokenizer tables, copies of caller data):
//! a request the allocator cannot meet is `LLAMA_ERR_OUT_OF_MEMORY` naming what and how many
//! bytes, never Rust's abort on allocation failure.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use crate::error::{Error, Result, Status};

/// `OutOfMemory` for `bytes` of `what`.
pub(crate) fn out_of_memory(bytes: usize, what: &str) -> Error {
    Error::new(Status::OutOfMemory, format!("cannot allocate {bytes} bytes ({} MiB) for {what}", bytes >> 20))
}

/// An empty vector with room for `n` elements.
pub(crate) fn vec<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| out_of_memory(n.saturating_mul(size_of::<T>()), what))?;
    Ok(v)
}

/// An empty string with room for `n` bytes.
pub(crate) fn string(n: usize, what: &str) -> Result<String> {
    let mut s = String::new();
    s.try_reserve_exact(n).map_err(|_| out_of_memory(n, what))?;
    Ok(s)
}

/// An empty map with room for `n` entries.
pub(crate) fn map<K: Eq + Hash, V, S: BuildHasher + Default>(n: usize, what: &str) -> Result<HashMap<K, V, S>> {
    let mut m = HashMap::with_hasher(S::default());
    m.try_reserve(n).map_err(|_| out_of_memory(n.saturating_mul(size_of::<(K, V)>()), what))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_requests_are_out_of_memory() {
        let e = vec::<u64>(usize::MAX / 16, "the test table").unwrap_err();
        assert_eq!(e.status, Status::OutOfMemory);
        assert!(e.message.contains("for the test table"), "{e}");
        assert_eq!(string(usize::MAX, "text").unwrap_err().status, Status::OutOfMemory);
        let e = map::<u64, u64, std::hash::RandomState>(usize::MAX / 4, "ids").unwrap_err();
        assert_eq!(e.status, Status::OutOfMemory);
        assert!(vec::<u64>(1000, "small").unwrap().capacity() >= 1000);
        assert!(map::<u32, u32, std::hash::RandomState>(1000, "small").unwrap().capacity() >= 1000);
    }
}
