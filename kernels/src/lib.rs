//! Numeric kernels for runllama, `#![no_std]`: dot products of stored weight rows (f32, f16,
//! bf16, read with unaligned little-endian loads straight from the memory map) with f32
//! activations, and the small per-token ops of a LLaMA layer (rmsnorm, rope, softmax, silu).
//!
//! Each op has a scalar reference version (module `scalar`) and SIMD versions for x86-64
//! (AVX2+FMA+F16C, AVX-512 F/BW/VL), chosen at run time from CPUID/XGETBV, once (see
//! [`path`], [`set_max_path`], [`detected`]). One binary runs on any x86-64; other targets
//! compile to the scalar path only; compilers older than Rust 1.89 (no stable AVX-512
//! intrinsics) build without the AVX-512 path (see build.rs). [`paths`] runs one op on a chosen
//! path (for tests and benches); the plain functions use [`path()`].
//!
//! Results differ between paths only by rounding (summation order and FMA). Within one path
//! the summation order of a weight row's dot product is fixed (see `simd.rs`): `matvec`,
//! `matmul` and `dot_row` agree bit for bit, whatever the data's alignment or batch size.

#![no_std]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

use half::{bf16, f16};

/// How stored weight elements are encoded (all little-endian, any alignment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
}

impl WeightType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 | WeightType::BF16 => 2,
        }
    }
}

/// How the query/key rows of a head pair their dimensions for the rotary embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Meta's original order (llama2.c, GGUF): dims `(2i, 2i+1)` rotate together.
    Interleaved,
    /// Hugging Face "rotate_half" order (safetensors, MindFormers): dims `(i, i + head_dim/2)`.
    Halves,
}

#[inline(always)]
fn load_f32(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

#[inline(always)]
fn load_f16(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[2 * i], b[2 * i + 1]])).to_f32()
}

#[inline(always)]
fn load_bf16(b: &[u8], i: usize) -> f32 {
    bf16::from_bits(u16::from_le_bytes([b[2 * i], b[2 * i + 1]])).to_f32()
}

/// Element `i` of a stored row, widened to f32.
#[inline(always)]
pub fn load(wt: WeightType, row: &[u8], i: usize) -> f32 {
    match wt {
        WeightType::F32 => load_f32(row, i),
        WeightType::F16 => load_f16(row, i),
        WeightType::BF16 => load_bf16(row, i),
    }
}

mod cpu;
mod math;
mod scalar;
#[cfg(target_arch = "x86_64")]
#[macro_use]
mod simd;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use cpu::{detected, path, path_name, set_max_path, CpuFeatures, Path};

/// Run `$call` (a function of the path modules) on path `$p`.
///
/// Only used behind the `unsafe` of callers that guarantee `$p` is supported by this CPU and
/// that the slices have the lengths the kernel needs.
macro_rules! on_path {
    ($p:expr, $f:ident($($a:expr),*)) => {
        match $p {
            #[cfg(all(target_arch = "x86_64", runllama_avx512))]
            Path::Avx512 => x86::avx512::$f($($a),*),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => x86::avx2::$f($($a),*),
            _ => scalar::$f($($a),*),
        }
    };
}

/// Each op on an explicitly chosen [`Path`] (tests compare every path with the scalar
/// reference; benches measure each path). Every function panics if this CPU cannot run `p`
/// (see [`CpuFeatures::supports`]), and checks lengths like the plain op.
pub mod paths {
    use super::*;

    /// Whether this CPU can run `p`.
    pub fn supported(p: Path) -> bool {
        detected().supports(p)
    }

    /// The paths this CPU can run, slowest first.
    pub fn available() -> impl Iterator<Item = Path> {
        Path::ALL.into_iter().filter(|&p| supported(p))
    }

    #[inline]
    #[track_caller]
    fn check(p: Path) {
        assert!(supported(p), "kernel path {} is not supported by this CPU", p.name());
    }

    /// [`row_to_f32`](crate::row_to_f32) on path `p`.
    pub fn row_to_f32(p: Path, wt: WeightType, row: &[u8], out: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::row_to_f32(p, wt, row, out) }
    }

    /// [`dot_row`](crate::dot_row) on path `p`.
    pub fn dot_row(p: Path, wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::dot_row(p, wt, row, x) }
    }

    /// [`matvec`](crate::matvec) on path `p`.
    pub fn matvec(p: Path, wt: WeightType, w: &[u8], x: &[f32], out: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::matvec(p, wt, w, x, out) }
    }

    /// [`matmul`](crate::matmul) on path `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(p: Path, wt: WeightType, w: &[u8], rows: usize, cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::matmul(p, wt, w, rows, cols, x, n, out) }
    }

    /// [`rmsnorm`](crate::rmsnorm) on path `p`.
    pub fn rmsnorm(p: Path, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::rmsnorm(p, out, x, weight, eps) }
    }

    /// [`softmax`](crate::softmax) on path `p`.
    pub fn softmax(p: Path, x: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::softmax(p, x) }
    }

    /// [`silu_mul`](crate::silu_mul) on path `p`.
    pub fn silu_mul(p: Path, gate: &mut [f32], up: &[f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::silu_mul(p, gate, up) }
    }

    /// [`axpy`](crate::axpy) on path `p`.
    pub fn axpy(p: Path, acc: &mut [f32], w: f32, v: &[f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::axpy(p, acc, w, v) }
    }

    /// [`dot_f32`](crate::dot_f32) on path `p`.
    pub fn dot_f32(p: Path, a: &[f32], b: &[f32]) -> f32 {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::dot_f32(p, a, b) }
    }
}

/// The length checks (the same for every path), then the kernel of path `p`.
///
/// Every function here is `unsafe` with one contract: this CPU supports `p`.
mod imp {
    use super::*;

    pub(super) unsafe fn row_to_f32(p: Path, wt: WeightType, row: &[u8], out: &mut [f32]) {
        assert!(row.len() >= out.len() * wt.size(), "row_to_f32: row too short");
        on_path!(p, row_to_f32(wt, row, out))
    }

    pub(super) unsafe fn dot_row(p: Path, wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
        assert!(row.len() >= x.len() * wt.size(), "dot_row: row too short");
        on_path!(p, dot_row(wt, row, x))
    }

    pub(super) unsafe fn matvec(p: Path, wt: WeightType, w: &[u8], x: &[f32], out: &mut [f32]) {
        let row_bytes = x.len() * wt.size();
        assert!(w.len() >= row_bytes * out.len(), "matvec: matrix too short");
        on_path!(p, matvec(wt, w, x, out))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn matmul(
        p: Path,
        wt: WeightType,
        w: &[u8],
        rows: usize,
        cols: usize,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        let row_bytes = cols * wt.size();
        assert!(w.len() >= row_bytes * rows, "matmul: matrix too short");
        assert!(x.len() >= n * cols && out.len() >= n * rows, "matmul: activations too short");
        if n == 0 || rows == 0 {
            return;
        }
        on_path!(p, matmul(wt, w, rows, cols, x, n, out))
    }

    pub(super) unsafe fn rmsnorm(p: Path, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        assert!(out.len() == x.len() && weight.len() == x.len(), "rmsnorm: length mismatch");
        on_path!(p, rmsnorm(out, x, weight, eps))
    }

    pub(super) unsafe fn softmax(p: Path, x: &mut [f32]) {
        on_path!(p, softmax(x))
    }

    pub(super) unsafe fn silu_mul(p: Path, gate: &mut [f32], up: &[f32]) {
        assert!(gate.len() == up.len(), "silu_mul: length mismatch");
        on_path!(p, silu_mul(gate, up))
    }

    pub(super) unsafe fn axpy(p: Path, acc: &mut [f32], w: f32, v: &[f32]) {
        on_path!(p, axpy(acc, w, v))
    }

    pub(super) unsafe fn dot_f32(p: Path, a: &[f32], b: &[f32]) -> f32 {
        on_path!(p, dot_f32(a, b))
    }
}

/// Widen a stored row to f32: `out[i] = row[i]`. `row` holds `out.len()` elements.
pub fn row_to_f32(wt: WeightType, row: &[u8], out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::row_to_f32(path(), wt, row, out) }
}

/// Dot product of one stored row (`x.len()` elements) with `x`.
///
/// The scalar path accumulates in 8 independent f32 lanes and sums the lanes pairwise; the
/// SIMD paths in one FMA accumulator of 8 or 16 lanes (the order `matvec` and `matmul` use).
pub fn dot_row(wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::dot_row(path(), wt, row, x) }
}

/// Matrix-vector product: `out[r] = dot(w[r, :], x)` for a row-major `[out.len(), x.len()]`
/// matrix stored in `w`.
pub fn matvec(wt: WeightType, w: &[u8], x: &[f32], out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::matvec(path(), wt, w, x, out) }
}

/// Matrix-matrix product for a batch of `n` activation rows: `x` is `[n, cols]`, `out` is
/// `[n, rows]` with `out[t * rows + r] = dot(w[r, :], x[t, :])`. Each weight row is read once
/// and used for the whole batch. Each element equals `matvec`'s for the same row and `x[t, :]`.
pub fn matmul(wt: WeightType, w: &[u8], rows: usize, cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::matmul(path(), wt, w, rows, cols, x, n, out) }
}

/// RMSNorm: `out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::rmsnorm(path(), out, x, weight, eps) }
}

/// Rotary position embedding of `x` (`x.len() / head_dim` heads of `head_dim`) at `pos`.
///
/// `inv_freq[i] = theta^(-2i/head_dim)` for `i < head_dim/2` (precomputed by the caller, as
/// transformers does in f32). Pair `i` rotates by `pos * inv_freq[i]`; which dims form pair
/// `i` is given by `layout`. (Scalar on every path: the cost is the sin/cos per pair, computed
/// once for all heads.)
pub fn rope(x: &mut [f32], head_dim: usize, pos: usize, inv_freq: &[f32], layout: RopeLayout) {
    let half = head_dim / 2;
    assert!(inv_freq.len() >= half && x.len().is_multiple_of(head_dim), "rope: bad lengths");
    scalar::rope(x, head_dim, pos, inv_freq, layout)
}

/// In-place softmax (max-subtracted).
pub fn softmax(x: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::softmax(path(), x) }
}

/// SwiGLU gate: `gate[i] = silu(gate[i]) * up[i]`, `silu(v) = v / (1 + e^-v)`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::silu_mul(path(), gate, up) }
}

/// `acc[i] += w * v[i]` (fused multiply-add on the SIMD paths).
pub fn axpy(acc: &mut [f32], w: f32, v: &[f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::axpy(path(), acc, w, v) }
}

/// Plain f32 dot product (over the shorter length).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::dot_f32(path(), a, b) }
}
