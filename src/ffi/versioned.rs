//! Structs that cross the C ABI by pointer and may grow at their end (API.md v2 §1).
//!
//! Each starts with `uint32_t size`: the `sizeof` the host compiled. The library reads and
//! writes at most that many bytes, so a host built against an older (smaller) header keeps
//! working: fields beyond its size take their defaults on the way in and are not written on
//! the way out. A size must end at a field boundary (every struct spells its padding out as
//! reserved fields, so the boundaries are the fields' offsets and the full size). A host built
//! against a newer header may pass a larger struct: its unknown tail must be zero (the newer
//! fields' defaults), or the call is refused as unsupported.

use crate::error::{Error, Result};

/// Largest `size` taken as a struct's size: anything larger is a wrong value, not a struct.
const MAX_SIZE: usize = 4096;

/// A `#[repr(C)]` struct that starts with `uint32_t size` and has no implicit padding.
///
/// # Safety
/// `FIELD_OFFSETS` lists the offset of every field after the first, in order, and the fields
/// fill the struct with no padding (so every byte belongs to a field); every bit pattern of a
/// prefix that ends at one of those offsets, completed with the bytes of a valid value, is a
/// valid value (the fields are integers, floats, pointers and `Option` of function pointers).
pub(super) unsafe trait Versioned: Copy {
    /// The C name, for messages.
    const NAME: &'static str;
    /// Offsets of the fields after `size`.
    const FIELD_OFFSETS: &'static [usize];
}

/// The byte offsets of the named fields of a struct (for [`Versioned::FIELD_OFFSETS`]).
macro_rules! offsets {
    ($t:ty: $($f:ident),+) => {
        &[$(std::mem::offset_of!($t, $f)),+]
    };
}
pub(super) use offsets;

/// Check the `size` a host gave for a `T`: the number of bytes of `T` to use.
fn valid_size<T: Versioned>(size: usize, what: &str) -> Result<usize> {
    let full = std::mem::size_of::<T>();
    if size > full && size <= MAX_SIZE || size == full || T::FIELD_OFFSETS.contains(&size) {
        return Ok(size.min(full));
    }
    let mut sizes: Vec<String> = T::FIELD_OFFSETS.iter().map(usize::to_string).collect();
    sizes.push(full.to_string());
    Err(Error::invalid(format!(
        "{what}->size is {size}: not a size of {} in any API version (this library knows {}; initialise it with {}_init(p, sizeof *p))",
        T::NAME,
        sizes.join(", "),
        T::NAME
    )))
}

/// Read a host's `T` from `p`: its first `size` bytes over `defaults`.
///
/// # Safety
/// `p` is valid for reads of the `size` bytes its first field says.
pub(super) unsafe fn read<T: Versioned>(p: *const T, defaults: T, what: &str) -> Result<T> {
    // SAFETY: every version of the struct starts with its u32 size.
    let size = unsafe { std::ptr::read_unaligned(p as *const u32) } as usize;
    let used = valid_size::<T>(size, what)?;
    let full = std::mem::size_of::<T>();
    if size > full {
        // SAFETY: the host's struct holds `size` bytes.
        let tail = unsafe { std::slice::from_raw_parts((p as *const u8).add(full), size - full) };
        if let Some(i) = tail.iter().position(|&b| b != 0) {
            return Err(Error::unsupported(format!(
                "{what} has {size} bytes and byte {} is set: fields of a newer API version than this library's ({})",
                full + i,
                super::LLAMA_API_VERSION
            )));
        }
    }
    let mut value = defaults;
    // SAFETY: `used <= size` bytes are readable at `p` and `used <= size_of::<T>()` fit in
    // `value`; the prefix ends at a field boundary, so every field is whole (trait contract).
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, (&mut value as *mut T).cast::<u8>(), used) };
    Ok(value)
}

/// Write `value` into the host's `T` at `p`, whose `size` field the host set: at most that many
/// bytes (the tail of a larger, newer struct is zeroed). The host's `size` is kept.
///
/// # Safety
/// `p` is valid for writes of the `size` bytes its first field says.
pub(super) unsafe fn write<T: Versioned>(p: *mut T, value: &T, what: &str) -> Result<()> {
    // SAFETY: every version of the struct starts with its u32 size.
    let size = unsafe { std::ptr::read_unaligned(p as *const u32) };
    // SAFETY: the host's struct holds `size` bytes.
    unsafe { write_prefix(p, value, valid_size::<T>(size as usize, what)?, size as usize) };
    // SAFETY: as above; the size field is the first 4 bytes.
    unsafe { std::ptr::write_unaligned(p as *mut u32, size) };
    Ok(())
}

/// `*_params_init(p, size)`: the defaults into the host's struct of `size` bytes, and
/// `p->size = size`. A size that is not one of `T`'s is an error and `p` is left untouched.
///
/// # Safety
/// `p` is null or valid for writes of `size` bytes.
pub(super) unsafe fn init<T: Versioned>(p: *mut T, size: usize, defaults: &T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    let used = valid_size::<T>(size, what)?;
    // SAFETY: the host's struct holds `size` bytes; `used` is the part of it that is a `T`.
    unsafe {
        write_prefix(p, defaults, used, size);
        std::ptr::write_unaligned(p as *mut u32, size as u32);
    }
    Ok(())
}

/// Copy the first `used` bytes of `value` to `p` and zero bytes `used..size`.
///
/// # Safety
/// `p` is valid for writes of `size >= used` bytes; `used <= size_of::<T>()`.
unsafe fn write_prefix<T: Versioned>(p: *mut T, value: &T, used: usize, size: usize) {
    // SAFETY: `p` is valid for `size >= used` bytes of writes and `value` holds `used <=
    // size_of::<T>()` bytes (# Safety); `value` is our own, so the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), p as *mut u8, used);
        std::ptr::write_bytes((p as *mut u8).add(used), 0, size - used);
    }
}
