//! Numeric kernels for runllama, `#![no_std]`: dot products of stored weight rows (f32, f16,
//! bf16, read with unaligned little-endian loads straight from the memory map) with f32
//! activations; of GGUF's block-quantized rows (`quant.rs`) with activations quantized to 8
//! bits as llama.cpp does ([`quantize_acts`]; integer dot products, `qdot.rs`); the small
//! per-token ops of a LLaMA layer (rmsnorm, rope, softmax, silu); and attention over one head's
//! cached positions (f32/f16/bf16 caches, an 8-bit cache written by [`quantize_q8`] and a 4-bit
//! one written by [`quantize_q4`]).
//!
//! Each op has a scalar reference version (module `scalar`; `qdot.rs` for the quantized types)
//! and SIMD versions for x86-64 (AVX2+FMA+F16C, AVX-512 F/BW/VL, and VNNI for the quantized
//! types where the CPU has it: AVX-512 VNNI, or AVX-VNNI on [`Path::AvxVnni`], which is the AVX2
//! path with VEX `vpdpbusd` and the same results), chosen at run time from CPUID/XGETBV, once
//! (see [`path`], [`set_max_path`], [`detected`]). One binary runs on any x86-64; other targets
//! compile to the scalar path only; compilers older than Rust 1.89 (no stable AVX-512 or
//! AVX-VNNI intrinsics) build without those paths (see build.rs). [`paths`] runs one op on a
//! chosen path (for tests and benches); the plain functions use [`path()`].
//!
//! Results differ between paths only by rounding (summation order and FMA). Within one path
//! the summation order of a weight row's dot product is fixed (see `simd.rs`): `matvec` and
//! `dot_row` agree bit for bit, whatever the data's alignment. `matmul` sums each output in
//! one chain over the columns in order: its results do not depend on the batch size or a
//! token's place in the batch, and are the same on the AVX2 and AVX-512 paths; they differ from
//! `matvec`'s (lane-parallel sums) by rounding only. On [`Path::Amx`] (Intel AMX tiles), a
//! product of f16/bf16 weights with a multiple of 32 columns splits the activations (and f16
//! weights) into bf16 parts and sums their exact products in f32 (see `amx.rs`): the same
//! independence of the batch; each term within 2^-15 of `w x` (2^-16 for bf16 weights), at
//! worst 3e-5 of the sum of |w x|, typically far less. The quantized types' integer sums are
//! exact on every path; their f32 sums of block terms are ordered per path (and on Intel's
//! AVX-512 cores, whose decoding runs the K-quants' rows on 512-bit vectors, `qdot_x86_wide.rs`,
//! in that kernel's order), and the batched product (on x86 a tile kernel, `qdot_x86_tile.rs`,
//! or for the K-quants with AVX-512 VNNI one over panels of 16 tokens, `qdot_x86_panel.rs`)
//! orders them differently from `matvec` (rounding only; a token's result does not depend on
//! its batch). softmax and silu use
//! libm's `expf`, in vectors on x86 (`x86_exp.rs`), with the same bits on every path.

#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

use half::{bf16, f16};

/// How stored weight elements are encoded (all little-endian, any alignment): the one
/// description of a weight type that the loaders, the model and the kernels share. A type
/// stores rows as whole blocks of [`WeightType::block_elems`] elements in
/// [`WeightType::block_bytes`] bytes (one element per block for the float types); the kernels
/// convert a row ([`row_to_f32`]) and take its dot product with f32 activations ([`dot_row`],
/// [`matvec`], [`matmul_packed`]). (The KV cache's 8- and 4-bit rows, written by
/// [`quantize_q8`] and [`quantize_q4`], keep their scales apart: they are not weight types.)
///
/// The discriminants are the kernels' const-generic tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(non_camel_case_types)] // ggml's names
pub enum WeightType {
    /// IEEE binary32.
    F32 = 0,
    /// IEEE binary16.
    F16 = 1,
    /// bfloat16.
    BF16 = 2,
    /// GGUF's `Q8_0`: blocks of 32 signed bytes after an f16 scale (34 bytes).
    Q8_0 = 3,
    /// GGUF's `Q4_0`: blocks of 32 4-bit values (offset 8) after an f16 scale (18 bytes).
    Q4_0 = 4,
    /// GGUF's `Q4_1`: blocks of 32 4-bit values, an f16 scale and minimum (20 bytes).
    Q4_1 = 5,
    /// GGUF's `Q5_0`: blocks of 32 5-bit values (offset 16), an f16 scale (22 bytes).
    Q5_0 = 6,
    /// GGUF's `Q5_1`: blocks of 32 5-bit values, an f16 scale and minimum (24 bytes).
    Q5_1 = 7,
    /// GGUF's `Q2_K`: super-blocks of 256 2-bit values, 4-bit scales and minimums (84 bytes).
    Q2_K = 8,
    /// GGUF's `Q3_K`: super-blocks of 256 3-bit values, 6-bit scales (110 bytes).
    Q3_K = 9,
    /// GGUF's `Q4_K`: super-blocks of 256 4-bit values, 6-bit scales and minimums (144 bytes).
    Q4_K = 10,
    /// GGUF's `Q5_K`: super-blocks of 256 5-bit values, 6-bit scales and minimums (176 bytes).
    Q5_K = 11,
    /// GGUF's `Q6_K`: super-blocks of 256 6-bit values, 8-bit scales (210 bytes).
    Q6_K = 12,
}

impl WeightType {
    /// The name used in model descriptions: ggml's (`"F32"`, `"F16"`, `"BF16"`, `"Q4_0"`, ...,
    /// `"Q6_K"`).
    pub const fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "F32",
            WeightType::F16 => "F16",
            WeightType::BF16 => "BF16",
            WeightType::Q8_0 => "Q8_0",
            WeightType::Q4_0 => "Q4_0",
            WeightType::Q4_1 => "Q4_1",
            WeightType::Q5_0 => "Q5_0",
            WeightType::Q5_1 => "Q5_1",
            WeightType::Q2_K => "Q2_K",
            WeightType::Q3_K => "Q3_K",
            WeightType::Q4_K => "Q4_K",
            WeightType::Q5_K => "Q5_K",
            WeightType::Q6_K => "Q6_K",
        }
    }
    /// [`WeightType::name`] as a C string.
    pub const fn c_name(self) -> &'static core::ffi::CStr {
        match self {
            WeightType::F32 => c"F32",
            WeightType::F16 => c"F16",
            WeightType::BF16 => c"BF16",
            WeightType::Q8_0 => c"Q8_0",
            WeightType::Q4_0 => c"Q4_0",
            WeightType::Q4_1 => c"Q4_1",
            WeightType::Q5_0 => c"Q5_0",
            WeightType::Q5_1 => c"Q5_1",
            WeightType::Q2_K => c"Q2_K",
            WeightType::Q3_K => c"Q3_K",
            WeightType::Q4_K => c"Q4_K",
            WeightType::Q5_K => c"Q5_K",
            WeightType::Q6_K => c"Q6_K",
        }
    }
    /// Elements per block (a row holds whole blocks).
    pub const fn block_elems(self) -> usize {
        match self {
            WeightType::F32 | WeightType::F16 | WeightType::BF16 => 1,
            WeightType::Q8_0 | WeightType::Q4_0 | WeightType::Q4_1 | WeightType::Q5_0 | WeightType::Q5_1 => quant::QK,
            WeightType::Q2_K | WeightType::Q3_K | WeightType::Q4_K | WeightType::Q5_K | WeightType::Q6_K => quant::QK_K,
        }
    }
    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 | WeightType::BF16 => 2,
            WeightType::Q8_0 => 34,
            WeightType::Q4_0 => 18,
            WeightType::Q4_1 => 20,
            WeightType::Q5_0 => 22,
            WeightType::Q5_1 => 24,
            WeightType::Q2_K => 84,
            WeightType::Q3_K => 110,
            WeightType::Q4_K => 144,
            WeightType::Q5_K => 176,
            WeightType::Q6_K => 210,
        }
    }
    /// Elements per block of the 8-bit activations that products with rows of this type read
    /// ([`quantize_acts`]): `None` for the float types (f32 activations). Types with the same
    /// value read the same quantized activations.
    pub const fn act_block_elems(self) -> Option<usize> {
        qdot::act_block(self)
    }
    /// Whether elements are stored in blocks of several (with a shared scale).
    pub const fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }
    /// Bytes of a row of `cols` elements; `None` when `cols` is not a whole number of blocks or
    /// the size overflows.
    pub const fn row_bytes(self, cols: usize) -> Option<usize> {
        if !cols.is_multiple_of(self.block_elems()) {
            return None;
        }
        (cols / self.block_elems()).checked_mul(self.block_bytes())
    }
    /// Bytes per element of the float types (the KV caches' element types). Panics for a
    /// block type (use [`WeightType::row_bytes`]).
    pub const fn size(self) -> usize {
        assert!(self.block_elems() == 1, "WeightType::size of a block type");
        self.block_bytes()
    }
    /// [`WeightType::row_bytes`] for a row length the caller knows is whole blocks.
    #[track_caller]
    fn row_len(self, cols: usize) -> usize {
        match self.row_bytes(cols) {
            Some(b) => b,
            None => panic!("a row of {cols} elements is not a whole number of {} blocks", self.name()),
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
        _ => quant::load(wt, row, i),
    }
}

/// Tokens per panel of packed activations (see [`pack_activations`]).
pub const PANEL: usize = 16;

/// Batches of at most this many tokens (f16/bf16 weights) on AMD's AVX-512 cores, and a last
/// panel that holds at most [`ROW_TAIL`] (float weights): on the AVX-512 path, their products
/// take the tokens as rows (see [`pack_activations`]) and compute each as `matvec` does (see
/// [`row_batch`] for Intel's). On the AMX path only whole batches of at most [`ROW_TAIL`] do
/// (on the Xeon, model 207, 7B F16 prefill of 8 tokens: 10.5 tok/s as rows against 5.4 on AMX
/// tiles, even at 16, tiles ahead from 32); on the AVX2 path see [`AVX2_ROW_BATCH`].
pub(crate) const ROW_BATCH: usize = 128;
/// See [`ROW_BATCH`].
pub(crate) const ROW_TAIL: usize = PANEL / 2;
/// On the AVX2 path, batches of at most this many tokens (f16/bf16 weights) run as rows, and a
/// longer batch's last panel when it is not full: the token-panel tile wastes the lanes of a
/// partial panel, and since the rows prefetch their next block (`simd.rs`' `matmul_rows_wt`)
/// they lead it up to 28 tokens. `RUNLLAMA_CPU=avx2` on Zen 4, 4-layer 7B-shape F16, 2
/// threads, repetitions alternating in one process, rows against the tile: pp10 1.55x, pp12
/// 1.30x, pp14 1.17x, pp16 1.03x (the 7B 1.06x), pp20 1.24x, pp24 1.07x, pp28 1.05x, pp32
/// 0.95x (8B-shape BF16 pp20 1.19x); the partial last panel alone as rows: pp20 1.17x, pp28
/// 1.03x, pp40 1.03x (BF16 1.01x), pp100 1.05x. f32 weights (twice the bytes per product):
/// whole batches of at most [`ROW_TAIL`] only, as before these measurements.
pub(crate) const AVX2_ROW_BATCH: usize = PANEL + ROW_TAIL;

/// The most tokens of a batch of f16/bf16 weights whose products run as rows on the AVX-512
/// path of this CPU (128 on AMD's cores: `ROW_BATCH`); a longer batch runs the token-panel
/// tile, its last panel as rows where it holds at most 8. On Intel's AVX-512 cores the rows'
/// widening of each weight vector (once per 8 tokens) takes ports 0 and 5 from the FMAs, and
/// the tile, which widens each weight once per panel of 16, is ahead as soon as a batch fills
/// a second panel beyond 8 tokens: on the Xeon of CPUID model 207 (AMX not
/// exposed), 7B F16 prefill, 2 threads (`e2e --prompt ... --gen 0`), as rows / on the tile:
/// 20 tokens 11.0 / 9.9 tok/s, 24 10.8 / 10.3, 28 11.4 / 13.8, 32 11.1 / 16.1, 64 11.0 / 18.5,
/// 128 11.1 / 19.0. So there, batches of at most [`PANEL`] + 8 (24).
pub fn row_batch() -> usize {
    if detected().intel {
        PANEL + ROW_TAIL
    } else {
        ROW_BATCH
    }
}

/// Distance (f32) between the panels of packed activations of `cols` columns: the panel plus
/// one cache line, so that the panels a matmul tile reads together do not fall in the same
/// L1 sets (their distance would otherwise be a multiple of 4 KiB for LLaMA widths).
pub const fn panel_stride(cols: usize) -> usize {
    cols * PANEL + PANEL
}

/// Length (f32) of the packed form of `n` activation rows of `cols` values.
pub const fn packed_len(n: usize, cols: usize) -> usize {
    n.div_ceil(PANEL) * panel_stride(cols)
}

/// Pack `n` activation rows (`x` is `[n, cols]`) for [`matmul_packed`] of weights of type `wt`
/// on [`path()`] (the same path must run the product: see [`paths::pack_activations`]).
/// `packed` holds at least [`packed_len`]`(n, cols)`.
///
/// The layout: tokens in panels of [`PANEL`], each panel column-major (`packed[p *
/// panel_stride(cols) + k * PANEL + j] = x[p * PANEL + j, k]`), missing tokens of the last panel
/// zero; on [`Path::Amx`], for the products it runs (f16/bf16 weights, `cols` a multiple of
/// 32), each panel's 32-column blocks then hold the same values as bf16 tile operands. On the
/// AVX-512 path the panels of a batch of at most [`row_batch`] tokens (f16/bf16 weights), and a
/// last panel of at most 8 (float weights), hold their tokens as rows (`packed[p *
/// panel_stride(cols) + j * cols + k]`): their products run over whole weight vectors, as
/// `matvec`'s, instead of broadcasting each weight. For a
/// block type, each token's activations quantized as [`quantize_acts`] does, at the start of
/// its panel's place (`cols` must then be whole blocks).
pub fn pack_activations(wt: WeightType, x: &[f32], n: usize, cols: usize, packed: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::pack_activations(path().into(), wt, x, n, cols, packed) }
}

/// The f32 panel layout of [`pack_activations`].
fn pack_f32(x: &[f32], n: usize, cols: usize, packed: &mut [f32]) {
    assert!(x.len() >= n * cols && packed.len() >= packed_len(n, cols), "pack_activations: bad lengths");
    for (p, panel) in packed[..packed_len(n, cols)].chunks_exact_mut(panel_stride(cols)).enumerate() {
        for j in 0..PANEL {
            let t = p * PANEL + j;
            if t < n {
                for (k, &v) in x[t * cols..(t + 1) * cols].iter().enumerate() {
                    panel[k * PANEL + j] = v;
                }
            } else {
                for k in 0..cols {
                    panel[k * PANEL + j] = 0.0;
                }
            }
        }
    }
}

/// For a block type: each token's activations quantized ([`quantize_acts`]), token `j` of a
/// panel at byte `j * act_bytes` of the panel's place.
fn pack_quantized(wt: WeightType, x: &[f32], n: usize, cols: usize, packed: &mut [f32]) {
    assert!(x.len() >= n * cols && packed.len() >= packed_len(n, cols), "pack_activations: bad lengths");
    let ab = imp::act_len(wt, cols);
    for (p, panel) in packed[..packed_len(n, cols)].chunks_exact_mut(panel_stride(cols)).enumerate() {
        let bytes = f32_bytes_mut(panel);
        for t in p * PANEL..n.min((p + 1) * PANEL) {
            let j = t - p * PANEL;
            qdot::quantize(wt, &x[t * cols..(t + 1) * cols], &mut bytes[j * ab..(j + 1) * ab]);
        }
    }
}

/// The bytes of an f32 buffer (a packed panel holding quantized activations).
fn f32_bytes(x: &[f32]) -> &[u8] {
    // SAFETY: the same memory, 4 bytes per f32; u8 has no alignment or validity requirement.
    unsafe { core::slice::from_raw_parts(x.as_ptr() as *const u8, x.len() * 4) }
}

/// [`f32_bytes`], writable (any bit pattern is a valid f32).
fn f32_bytes_mut(x: &mut [f32]) -> &mut [u8] {
    // SAFETY: as `f32_bytes`; the exclusive borrow is carried over.
    unsafe { core::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut u8, x.len() * 4) }
}

#[cfg(all(target_arch = "x86_64", runllama_avx512))]
mod amx;
#[cfg(all(target_arch = "x86_64", runllama_avx512))]
mod bf16_dot;
mod cpu;
mod math;
mod qdot;
#[cfg(target_arch = "x86_64")]
mod qdot_x86;
#[cfg(all(target_arch = "x86_64", runllama_avx512))]
mod qdot_x86_panel;
#[cfg(target_arch = "x86_64")]
mod qdot_x86_tile;
#[cfg(all(target_arch = "x86_64", runllama_avx512))]
mod qdot_x86_wide;
mod quant;
mod scalar;
#[cfg(target_arch = "x86_64")]
#[macro_use]
mod simd;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_exp;

pub use cpu::{detected, path, path_name, set_max_path, Bf16Products, CpuFeatures, Path, Products};

/// Run `$call` (a function of the path modules) on path `$p`.
///
/// Only used behind the `unsafe` of callers that guarantee `$p` is supported by this CPU and
/// that the slices have the lengths the kernel needs.
macro_rules! on_path {
    ($p:expr, $f:ident($($a:expr),*)) => {{
        // The scalar arm alone (other targets) needs no `unsafe`.
        #[allow(unused_unsafe)]
        // SAFETY: used in `imp`'s functions only, whose callers guarantee that this CPU supports
        // `$p` and the lengths the kernel needs.
        let r = unsafe {
            match $p {
                #[cfg(all(target_arch = "x86_64", runllama_avx512))]
                Path::Avx512 | Path::Amx => x86::avx512::$f($($a),*),
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 | Path::AvxVnni => x86::avx2::$f($($a),*),
                _ => scalar::$f($($a),*),
            }
        };
        r
    }};
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

    /// [`matvec_quantized`](crate::matvec_quantized) on path `p`.
    pub fn matvec_quantized(p: Path, wt: WeightType, w: &[u8], acts: &[u8], cols: usize, out: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::matvec_quantized(p, wt, w, acts, cols, out) }
    }

    /// [`pack_activations`](crate::pack_activations) for a product on path `p`, or as
    /// [`Products`] say (the layout depends on them: pack and multiply with the same).
    pub fn pack_activations(
        p: impl Into<Products>,
        wt: WeightType,
        x: &[f32],
        n: usize,
        cols: usize,
        packed: &mut [f32],
    ) {
        let p = p.into();
        check(p.path);
        // SAFETY: `p.path` was checked against the detected features.
        unsafe { imp::pack_activations(p, wt, x, n, cols, packed) }
    }

    /// Panel `q` of [`pack_activations`] for a batch of `n` tokens (`x` holds all their rows)
    /// into `panel` (at least [`panel_stride`]`(cols)` long): the panels
    /// of one batch may be packed apart (on several threads). The layout of a panel depends on
    /// the whole batch's size.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_panel(
        p: impl Into<Products>,
        wt: WeightType,
        x: &[f32],
        n: usize,
        cols: usize,
        q: usize,
        panel: &mut [f32],
    ) {
        let p = p.into();
        check(p.path);
        // SAFETY: `p.path` was checked against the detected features.
        unsafe { imp::pack_panel(p, wt, x, n, cols, q, panel) }
    }

    /// [`matmul_packed`](crate::matmul_packed) on path `p` (or as [`Products`] say), over
    /// activations packed by [`pack_activations`] with the same.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_packed(
        p: impl Into<Products>,
        wt: WeightType,
        w: &[u8],
        rows: usize,
        cols: usize,
        xp: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        matmul_packed_with(p, wt, w, rows, cols, xp, n, out, &mut [])
    }

    /// [`matmul_packed`] with `scratch` for the kernel's buffers: with at least
    /// [`MATMUL_SCRATCH`] f32 it allocates nothing (without, the AMX product allocates its
    /// buffers per call).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_packed_with(
        p: impl Into<Products>,
        wt: WeightType,
        w: &[u8],
        rows: usize,
        cols: usize,
        xp: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let p = p.into();
        check(p.path);
        // SAFETY: `p.path` was checked against the detected features.
        unsafe { imp::matmul_packed(p, wt, w, rows, cols, xp, n, out, scratch) }
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

    /// `x[i] = e^x[i]` on path `p`: the exp of [`softmax`](crate::softmax) and
    /// [`silu_mul`](crate::silu_mul), `libm::expf`'s bits on every path.
    pub fn exp(p: Path, x: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::exp(p, x) }
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

    /// [`attn_scores`](crate::attn_scores) on path `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_scores(
        p: Path,
        wt: WeightType,
        k: &[u8],
        stride: usize,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
        next: &[u8],
    ) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::attn_scores(p, wt, k, stride, q, scale, out, next) }
    }

    /// [`attn_wsum`](crate::attn_wsum) on path `p`.
    pub fn attn_wsum(p: Path, wt: WeightType, v: &[u8], stride: usize, w: &[f32], out: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::attn_wsum(p, wt, v, stride, w, out) }
    }

    /// [`attn_scores_q8`](crate::attn_scores_q8) on path `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_scores_q8(
        p: Path,
        qs: &[i8],
        scales: &[f16],
        block: usize,
        stride: usize,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
    ) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::attn_scores_q8(p, qs, scales, block, stride, q, scale, out) }
    }

    /// [`attn_scores_q4`](crate::attn_scores_q4) on path `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_scores_q4(
        p: Path,
        qs: &[u8],
        scales: &[f16],
        block: usize,
        stride: usize,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
    ) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::attn_scores_q4(p, qs, scales, block, stride, q, scale, out) }
    }

    /// [`attn_wsum_q4`](crate::attn_wsum_q4) on path `p`.
    pub fn attn_wsum_q4(p: Path, qs: &[u8], scales: &[f16], block: usize, stride: usize, w: &[f32], out: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::attn_wsum_q4(p, qs, scales, block, stride, w, out) }
    }

    /// [`attn_wsum_q8`](crate::attn_wsum_q8) on path `p`.
    pub fn attn_wsum_q8(p: Path, qs: &[i8], scales: &[f16], block: usize, stride: usize, w: &[f32], out: &mut [f32]) {
        check(p);
        // SAFETY: `p` was checked against the detected features.
        unsafe { imp::attn_wsum_q8(p, qs, scales, block, stride, w, out) }
    }
}

/// The length checks (the same for every path), then the kernel of path `p`.
///
/// Every function here is `unsafe` with one contract: this CPU supports `p`.
mod imp {
    use super::*;

    pub(super) unsafe fn row_to_f32(p: Path, wt: WeightType, row: &[u8], out: &mut [f32]) {
        assert!(row.len() >= wt.row_len(out.len()), "row_to_f32: row too short");
        if wt.is_quantized() {
            return quant::row_to_f32(wt, row, out);
        }
        on_path!(p, row_to_f32(wt, row, out))
    }

    pub(super) unsafe fn dot_row(p: Path, wt: WeightType, row: &[u8], x: &[f32]) -> f32 {
        let rb = wt.row_len(x.len());
        assert!(row.len() >= rb, "dot_row: row too short");
        if wt.is_quantized() {
            let mut out = [0f32];
            // SAFETY: the caller's contract (`p`); `row` holds `rb` bytes, one row of `x.len()`.
            unsafe { qdot::products_on(p, false, wt, &row[..rb], 1, &[&quantized(wt, x)], &mut out) };
            return out[0];
        }
        on_path!(p, dot_row(wt, row, x))
    }

    pub(super) unsafe fn matvec(p: Path, wt: WeightType, w: &[u8], x: &[f32], out: &mut [f32]) {
        let row_bytes = wt.row_len(x.len());
        assert!(w.len() >= row_bytes * out.len(), "matvec: matrix too short");
        if wt.is_quantized() {
            // SAFETY: the caller's contract (`p`).
            return unsafe { matvec_quantized(p, wt, w, &quantized(wt, x), x.len(), out) };
        }
        on_path!(p, matvec(wt, w, x, out))
    }

    /// The last tokens of a batch of `n` that [`pack_activations`] writes as rows for products
    /// of `wt` made as `p` says: on the AVX-512 path, for float weights (not the bf16 products
    /// of `bf16_dot`), all of a batch of at most [`row_batch`] (f16 and bf16 weights), else a
    /// last panel of 1 to [`ROW_TAIL`] tokens (of `cols`); on the AMX path, a whole batch of at
    /// most [`ROW_TAIL`]; on the AVX2 path, for f16/bf16 weights a whole batch of at most
    /// [`AVX2_ROW_BATCH`] or else a last panel that is not full, for f32 weights a whole batch
    /// of at most [`ROW_TAIL`]. (With AVX2's 16 registers the row tiles are small: reloading the
    /// tokens' activations from L2 bounds them below the token-panel tile over full panels.)
    fn row_tail(p: Products, wt: WeightType, cols: usize, n: usize) -> Option<usize> {
        let float = matches!(wt, WeightType::F32 | WeightType::F16 | WeightType::BF16);
        #[cfg(not(all(target_arch = "x86_64", runllama_avx512)))]
        let _ = cols;
        #[cfg(all(target_arch = "x86_64", runllama_avx512))]
        let float = float && !bf16_dot::handles(p, wt, cols);
        if !float || n == 0 {
            return None;
        }
        let short = n <= ROW_TAIL;
        match p.path {
            Path::Avx512 if cfg!(all(target_arch = "x86_64", runllama_avx512)) => {
                // f32 weights (twice the bytes per product) only for a short last panel: over
                // whole batches the row tiles ran at 72 GFLOP/s against the token-panel tile's
                // 98 (128 tokens).
                let batch = n <= row_batch() && wt != WeightType::F32;
                let tail = if batch { n } else { n % PANEL };
                (tail > 0 && (batch || tail <= ROW_TAIL)).then_some(tail)
            }
            Path::Amx if cfg!(all(target_arch = "x86_64", runllama_avx512)) && short => Some(n),
            Path::Avx2 | Path::AvxVnni if cfg!(target_arch = "x86_64") => {
                let tail = match wt {
                    WeightType::F32 if short => n,
                    WeightType::F32 => 0,
                    _ if n <= AVX2_ROW_BATCH => n,
                    _ => n % PANEL,
                };
                (tail > 0).then_some(tail)
            }
            _ => None,
        }
    }

    /// Whether batched products of `wt` rows on path `p` run over token panels
    /// (`qdot_x86_panel.rs`: the K-quants with AVX-512 VNNI), which then fixes the packing.
    #[cfg(all(target_arch = "x86_64", runllama_avx512))]
    fn token_panels(p: Path, wt: WeightType) -> bool {
        p >= Path::Avx512 && qdot_x86_panel::handles(wt, crate::detected().avx512vnni)
    }

    /// `x` quantized for `wt` (a block type) in a fresh buffer.
    fn quantized(wt: WeightType, x: &[f32]) -> alloc::vec::Vec<u8> {
        let mut acts = alloc::vec![0u8; act_len(wt, x.len())];
        qdot::quantize(wt, x, &mut acts);
        acts
    }

    /// [`act_bytes`] for a block type and whole blocks (panics otherwise).
    #[track_caller]
    pub(super) fn act_len(wt: WeightType, cols: usize) -> usize {
        match act_bytes(wt, cols) {
            Some(b) => b,
            None => panic!("{cols} activations are not whole blocks of {}'s activation format", wt.name()),
        }
    }

    pub(super) unsafe fn matvec_quantized(
        p: Path,
        wt: WeightType,
        w: &[u8],
        acts: &[u8],
        cols: usize,
        out: &mut [f32],
    ) {
        let (rb, ab) = (wt.row_len(cols), act_len(wt, cols));
        assert!(w.len() >= rb * out.len(), "matvec: matrix too short");
        assert!(acts.len() >= ab, "matvec: quantized activations too short");
        if cols == 0 {
            out.fill(0.0);
            return;
        }
        // SAFETY: the caller's contract (`p`); `w` holds `out.len()` rows of `cols` values,
        // `acts[..ab]` their activations.
        unsafe { qdot::products_on(p, false, wt, &w[..rb * out.len()], out.len(), &[&acts[..ab]], out) }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn matmul_packed(
        products: Products,
        wt: WeightType,
        w: &[u8],
        rows: usize,
        cols: usize,
        xp: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let p = products.path;
        let row_bytes = wt.row_len(cols);
        assert!(w.len() >= row_bytes * rows, "matmul: matrix too short");
        assert!(xp.len() >= packed_len(n, cols) && out.len() >= n * rows, "matmul: activations too short");
        if n == 0 || rows == 0 {
            return;
        }
        if cols == 0 {
            out[..n * rows].fill(0.0);
            return;
        }
        #[cfg(all(target_arch = "x86_64", runllama_avx512))]
        if p == Path::Amx && amx::handles(wt, cols) && row_tail(products, wt, cols, n).is_none() {
            if scratch.len() >= amx::SCRATCH {
                // SAFETY: the caller's contract (`p`: AMX tiles enabled); the lengths were
                // checked above and `scratch` holds `amx::SCRATCH`.
                return unsafe { amx::matmul_packed(wt, w, rows, cols, xp, n, out, scratch) };
            }
            let mut own = alloc::vec![0f32; amx::SCRATCH];
            // SAFETY: as above, with `own` as the scratch.
            return unsafe { amx::matmul_packed(wt, w, rows, cols, xp, n, out, &mut own) };
        }
        #[cfg(all(target_arch = "x86_64", runllama_avx512))]
        if bf16_dot::handles(products, wt, cols) {
            // SAFETY: the caller's contract (`p`, which `handles` checked for AVX-512 BF16); `w`
            // holds `rows` rows of `cols` values; `pack_activations` wrote the panels
            // (`packed_len` long, checked above) for this path, type and choice.
            return unsafe { bf16_dot::products(&w[..row_bytes * rows], rows, cols, xp, panel_stride(cols), n, out) };
        }
        #[cfg(all(target_arch = "x86_64", runllama_avx512))]
        if token_panels(p, wt) {
            let bytes = f32_bytes(xp);
            // SAFETY: the caller's contract (`p`, which `token_panels` checked for VNNI); `w`
            // holds `rows` rows of `cols` values; `pack_activations` wrote the panels
            // (`packed_len` long, checked above) for this path and type.
            unsafe {
                qdot_x86_panel::products(
                    wt,
                    &w[..row_bytes * rows],
                    rows,
                    bytes.as_ptr(),
                    4 * panel_stride(cols),
                    n,
                    &mut out[..n * rows],
                    p == Path::Amx && crate::detected().amx_int8,
                )
            };
            return;
        }
        if wt.is_quantized() {
            // Each output is the product matvec computes, over the token's quantized
            // activations in the packed panel.
            let (ab, stride) = (act_len(wt, cols), 4 * panel_stride(cols));
            let bytes = f32_bytes(xp);
            let acts: alloc::vec::Vec<&[u8]> =
                (0..n).map(|t| &bytes[(t / PANEL) * stride + (t % PANEL) * ab..][..ab]).collect();
            // SAFETY: the caller's contract (`p`); `w` holds `rows` rows of `cols` values, `acts`
            // the tokens' activations.
            unsafe { qdot::products_on(p, true, wt, &w[..row_bytes * rows], rows, &acts, &mut out[..n * rows]) };
            return;
        }
        let _ = scratch;
        // The tokens packed as rows (a short batch, or a last panel of at most ROW_TAIL): each
        // weight vector loaded (and widened) once for up to 8 of them, each product `matvec`'s.
        #[cfg(target_arch = "x86_64")]
        if let Some(tail) = row_tail(products, wt, cols, n) {
            let full = n - tail;
            if full > 0 {
                on_path!(p, matmul_packed(wt, w, rows, cols, xp, full, out));
            }
            let xs = &xp[(full / PANEL) * panel_stride(cols)..packed_len(n, cols)];
            let o = &mut out[full * rows..n * rows];
            #[cfg(runllama_avx512)]
            if p >= Path::Avx512 {
                // SAFETY: the caller's contract (`p`: AVX-512, per `row_tail`); `w` holds `rows`
                // rows of `cols`, `xs` the tail's panels (their tokens as rows), `o` their outputs.
                return unsafe { x86::avx512::matmul_rows(wt, w, rows, cols, xs, tail, o) };
            }
            // SAFETY: as above, on AVX2 (per `row_tail`).
            return unsafe { x86::avx2::matmul_rows(wt, w, rows, cols, xs, tail, o) };
        }
        on_path!(p, matmul_packed(wt, w, rows, cols, xp, n, out))
    }

    pub(super) unsafe fn pack_activations(
        products: Products,
        wt: WeightType,
        x: &[f32],
        n: usize,
        cols: usize,
        packed: &mut [f32],
    ) {
        assert!(x.len() >= n * cols && packed.len() >= packed_len(n, cols), "pack_activations: bad lengths");
        for (q, panel) in packed[..packed_len(n, cols)].chunks_exact_mut(panel_stride(cols)).enumerate() {
            // SAFETY: the caller's contract; `q` is a panel of the batch.
            unsafe { pack_panel(products, wt, x, n, cols, q, panel) }
        }
    }

    /// Panel `q` of [`pack_activations`]' layout for a batch of `n` (`x`: all its rows).
    pub(super) unsafe fn pack_panel(
        products: Products,
        wt: WeightType,
        x: &[f32],
        n: usize,
        cols: usize,
        q: usize,
        panel: &mut [f32],
    ) {
        let (t0, p) = (q * PANEL, products.path);
        assert!(t0 < n && x.len() >= n * cols && panel.len() >= panel_stride(cols), "pack_panel: bad lengths");
        let nt = PANEL.min(n - t0);
        let (xs, panel) = (&x[t0 * cols..(t0 + nt) * cols], &mut panel[..panel_stride(cols)]);
        #[cfg(all(target_arch = "x86_64", runllama_avx512))]
        if token_panels(p, wt) {
            return qdot_x86_panel::pack(wt, xs, cols, f32_bytes_mut(panel));
        }
        #[cfg(all(target_arch = "x86_64", runllama_avx512))]
        if bf16_dot::handles(products, wt, cols) {
            return bf16_dot::pack(xs, cols, panel);
        }
        if wt.is_quantized() {
            return pack_quantized(wt, xs, nt, cols, panel);
        }
        if row_tail(products, wt, cols, n).is_some_and(|tail| t0 >= n - tail) {
            return panel[..nt * cols].copy_from_slice(xs);
        }
        pack_f32(xs, nt, cols, panel);
        #[cfg(all(target_arch = "x86_64", runllama_avx512))]
        if p == Path::Amx && amx::handles(wt, cols) {
            // SAFETY: the caller guarantees `p` (AVX-512 F/BW) is supported; `panel` is a whole
            // panel (`cols * PANEL` f32 and the pad).
            unsafe { amx::convert_panel(panel.as_mut_ptr(), cols) };
        }
        #[cfg(not(all(target_arch = "x86_64", runllama_avx512)))]
        let _ = p;
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
        assert!(x.len() >= n * cols, "matmul: activations too short");
        let mut xp = alloc::vec![0f32; packed_len(n, cols)];
        // SAFETY: the caller's contract (`p`), for both calls; `xp` holds the packed tokens.
        unsafe {
            pack_activations(p.into(), wt, x, n, cols, &mut xp);
            matmul_packed(p.into(), wt, w, rows, cols, &xp, n, out, &mut [])
        }
    }

    pub(super) unsafe fn rmsnorm(p: Path, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        assert!(out.len() == x.len() && weight.len() == x.len(), "rmsnorm: length mismatch");
        on_path!(p, rmsnorm(out, x, weight, eps))
    }

    pub(super) unsafe fn softmax(p: Path, x: &mut [f32]) {
        on_path!(p, softmax(x))
    }

    pub(super) unsafe fn exp(p: Path, x: &mut [f32]) {
        on_path!(p, exp_all(x))
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

    /// `n` rows of `hd` elements, `stride` apart, end within `len` elements.
    #[track_caller]
    fn check_rows(what: &str, len: usize, n: usize, hd: usize, stride: usize) {
        let need = if n == 0 { 0 } else { (n - 1).saturating_mul(stride).saturating_add(hd) };
        assert!(n <= 1 || stride >= hd, "{what}: rows of {hd} overlap at stride {stride}");
        assert!(len >= need, "{what}: {n} rows of {hd} at stride {stride} need {need} elements, got {len}");
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn attn_scores(
        p: Path,
        wt: WeightType,
        k: &[u8],
        stride: usize,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
        next: &[u8],
    ) {
        assert!(!wt.is_quantized(), "attn_scores: {} is not a cache element type", wt.name());
        check_rows("attn_scores", k.len() / wt.size(), out.len(), q.len(), stride);
        on_path!(p, attn_scores(wt, k, stride, q, scale, out, next))
    }

    pub(super) unsafe fn attn_wsum(p: Path, wt: WeightType, v: &[u8], stride: usize, w: &[f32], out: &mut [f32]) {
        assert!(!wt.is_quantized(), "attn_wsum: {} is not a cache element type", wt.name());
        check_rows("attn_wsum", v.len() / wt.size(), w.len(), out.len(), stride);
        on_path!(p, attn_wsum(wt, v, stride, w, out))
    }

    /// An 8-bit cache: `n` rows of `hd` values `stride` apart, their scales `stride / block`
    /// apart; rows start on block boundaries.
    #[track_caller]
    #[allow(clippy::too_many_arguments)]
    fn check_q8_rows(what: &str, qs: &[i8], scales: &[f16], block: usize, stride: usize, n: usize, hd: usize) {
        assert!(
            block > 0 && stride.is_multiple_of(block),
            "{what}: stride {stride} is not a whole number of blocks of {block}"
        );
        check_rows(what, qs.len(), n, hd, stride);
        let need = if n == 0 { 0 } else { (n - 1) * (stride / block) + hd.div_ceil(block) };
        assert!(scales.len() >= need, "{what}: {n} rows need {need} scales, got {}", scales.len());
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn attn_scores_q8(
        p: Path,
        qs: &[i8],
        scales: &[f16],
        block: usize,
        stride: usize,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
    ) {
        check_q8_rows("attn_scores_q8", qs, scales, block, stride, out.len(), q.len());
        on_path!(p, attn_scores_q8(qs, scales, block, stride, q, scale, out))
    }

    pub(super) unsafe fn attn_wsum_q8(
        p: Path,
        qs: &[i8],
        scales: &[f16],
        block: usize,
        stride: usize,
        w: &[f32],
        out: &mut [f32],
    ) {
        check_q8_rows("attn_wsum_q8", qs, scales, block, stride, w.len(), out.len());
        on_path!(p, attn_wsum_q8(qs, scales, block, stride, w, out, false))
    }

    /// A 4-bit cache: `n` rows of `hd` values `stride` apart (packed two to a byte), their
    /// scales `stride / block` apart; `block` even, `hd` and `stride` whole blocks.
    #[track_caller]
    #[allow(clippy::too_many_arguments)]
    fn check_q4_rows(what: &str, qs: &[u8], scales: &[f16], block: usize, stride: usize, n: usize, hd: usize) {
        assert!(
            block > 0 && block.is_multiple_of(2) && hd.is_multiple_of(block) && stride.is_multiple_of(block),
            "{what}: block {block} must be even and divide the row length {hd} and the stride {stride}"
        );
        check_rows(what, qs.len() * 2, n, hd, stride);
        let need = if n == 0 { 0 } else { (n - 1) * (stride / block) + hd / block };
        assert!(scales.len() >= need, "{what}: {n} rows need {need} scales, got {}", scales.len());
    }

    /// Run `f(values, scales, j0, c)` over the rows of a 4-bit cache in pieces of `c` rows from
    /// row `j0`, each unpacked to 8-bit values (`q - 8`, the same `stride`) in a buffer that
    /// stays in L1, so the 8-bit kernels compute on them.
    fn q4_chunks(
        qs: &[u8],
        scales: &[f16],
        block: usize,
        stride: usize,
        n: usize,
        hd: usize,
        mut f: impl FnMut(&[i8], &[f16], usize, usize),
    ) {
        const CHUNK: usize = 4096;
        let rows = (CHUNK / stride.max(1)).max(1);
        let need = (rows - 1) * stride + hd;
        let mut stack = [0i8; CHUNK];
        let mut heap = alloc::vec::Vec::new();
        let buf: &mut [i8] = if need <= CHUNK {
            &mut stack[..need]
        } else {
            heap.resize(need, 0);
            &mut heap
        };
        let mut j0 = 0;
        while j0 < n {
            let c = rows.min(n - j0);
            for r in 0..c {
                let at = (j0 + r) * stride;
                scalar::unpack_q4(&qs[at / 2..(at + hd) / 2], block, &mut buf[r * stride..r * stride + hd]);
            }
            f(&buf[..(c - 1) * stride + hd], &scales[j0 * stride / block..], j0, c);
            j0 += c;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn attn_scores_q4(
        p: Path,
        qs: &[u8],
        scales: &[f16],
        block: usize,
        stride: usize,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
    ) {
        check_q4_rows("attn_scores_q4", qs, scales, block, stride, out.len(), q.len());
        q4_chunks(qs, scales, block, stride, out.len(), q.len(), |vals, sc, j0, c| {
            on_path!(p, attn_scores_q8(vals, sc, block, stride, q, scale, &mut out[j0..j0 + c]))
        })
    }

    pub(super) unsafe fn attn_wsum_q4(
        p: Path,
        qs: &[u8],
        scales: &[f16],
        block: usize,
        stride: usize,
        w: &[f32],
        out: &mut [f32],
    ) {
        check_q4_rows("attn_wsum_q4", qs, scales, block, stride, w.len(), out.len());
        if w.is_empty() {
            out.fill(0.0);
        }
        q4_chunks(qs, scales, block, stride, w.len(), out.len(), |vals, sc, j0, c| {
            // Each piece adds onto the sums so far: per element, one chain over the rows in order.
            on_path!(p, attn_wsum_q8(vals, sc, block, stride, &w[j0..j0 + c], out, j0 > 0))
        })
    }

    pub(super) fn quantize_q4(x: &[f32], block: usize, qs: &mut [u8], scales: &mut [f16]) {
        assert!(
            block > 0
                && block.is_multiple_of(2)
                && x.len().is_multiple_of(block)
                && qs.len() * 2 >= x.len()
                && scales.len() >= x.len() / block,
            "quantize_q4: {} values (whole even blocks of {block}) need half as many bytes and {} scales",
            x.len(),
            x.len() / block.max(1)
        );
        scalar::quantize_q4(x, block, qs, scales)
    }

    pub(super) fn quantize_q8(x: &[f32], block: usize, qs: &mut [i8], scales: &mut [f16]) {
        assert!(
            block > 0 && qs.len() >= x.len() && scales.len() >= x.len().div_ceil(block),
            "quantize_q8: {} values need as many quants and {} scales (blocks of {block})",
            x.len(),
            x.len().div_ceil(block.max(1))
        );
        scalar::quantize_q8(x, block, qs, scales)
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
/// A block type's row is multiplied with `x` quantized as [`quantize_acts`] does (what
/// `matvec` computes, bit for bit).
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

/// Bytes of `cols` activations quantized for products with rows of `wt` ([`quantize_acts`]):
/// `None` for the float types (their products take f32 activations) and for a `cols` that is
/// not a whole number of `wt`'s blocks.
pub const fn act_bytes(wt: WeightType, cols: usize) -> Option<usize> {
    qdot::act_bytes(wt, cols)
}

/// Quantize activations `x` for products with rows of the block type `wt`, into `out` (at least
/// [`act_bytes`]): 8-bit blocks as llama.cpp makes them for that type (blocks of 32 with an f16
/// scale, or of 256 with an f32 scale and sums of 16; see `qdot.rs`). Every path makes the
/// same bytes. Panics for a float type or a length that is not whole blocks.
pub fn quantize_acts(wt: WeightType, x: &[f32], out: &mut [u8]) {
    let ab = imp::act_len(wt, x.len());
    assert!(out.len() >= ab, "quantize_acts: {} activations need {ab} bytes", x.len());
    qdot::quantize(wt, x, &mut out[..ab])
}

/// [`matvec`] of a block type over activations already quantized by [`quantize_acts`] (`acts`,
/// `cols` values): for a caller that runs several products on one input, or splits one over
/// threads, and quantizes once. The results equal `matvec`'s bit for bit (which quantizes `x`
/// the same way, then does this).
pub fn matvec_quantized(wt: WeightType, w: &[u8], acts: &[u8], cols: usize, out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::matvec_quantized(path(), wt, w, acts, cols, out) }
}

/// Matrix-matrix product for a batch of `n` activation rows: `x` is `[n, cols]`, `out` is
/// `[n, rows]` with `out[t * rows + r] = dot(w[r, :], x[t, :])`. Packs `x` into a fresh buffer
/// and runs [`matmul_packed`] (the forward pass packs once per product into its own buffer).
pub fn matmul(wt: WeightType, w: &[u8], rows: usize, cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::matmul(path(), wt, w, rows, cols, x, n, out) }
}

/// [`matmul`] over activations packed by [`pack_activations`] (`xp`, `n` tokens of `cols`,
/// packed for `wt` on the path this call runs on). For the float types each weight row is read
/// from `w` once per 256 tokens; every output is one multiply-add chain over the columns in
/// order, so its value depends only on the weight row and the token's activations (not on `n`
/// or the token's place), and is the same on the AVX2 and AVX-512 paths ([`Path::Amx`] rounds
/// differently: see the crate docs). For the block types, integer dot products over each
/// token's quantized activations (tiles of 8 rows on x86), likewise independent of `n` and the
/// token's place.
pub fn matmul_packed(wt: WeightType, w: &[u8], rows: usize, cols: usize, xp: &[f32], n: usize, out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::matmul_packed(path().into(), wt, w, rows, cols, xp, n, out, &mut []) }
}

/// f32 of scratch that [`paths::matmul_packed_with`] needs to allocate nothing (the AMX
/// product's weight and partial-sum buffers; the other products need none).
#[cfg(all(target_arch = "x86_64", runllama_avx512))]
pub const MATMUL_SCRATCH: usize = amx::SCRATCH;
/// f32 of scratch that [`paths::matmul_packed_with`] needs to allocate nothing (none here).
#[cfg(not(all(target_arch = "x86_64", runllama_avx512)))]
pub const MATMUL_SCRATCH: usize = 0;

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

/// `x[i] = e^x[i]`, equal bit for bit to `libm::expf` on every path (so a result built on it
/// does not depend on the CPU).
pub fn exp(x: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::exp(path(), x) }
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

/// 8-bit quantization in blocks of `block` values, as llama.cpp's `q8_0` rounds (there with
/// blocks of 32): per block the scale `d = max|x| / 127` rounded to f16 (capped at f16's
/// largest finite value), and `q[i] = round(x[i] / d)` in -127..=127, so `|x[i] - d * q[i]| <=
/// d / 2`. `qs` holds `x.len()` values, `scales` `x.len().div_ceil(block)`; a final partial
/// block is allowed. (Scalar on every path: the KV cache quantizes one row per token.)
pub fn quantize_q8(x: &[f32], block: usize, qs: &mut [i8], scales: &mut [f16]) {
    imp::quantize_q8(x, block, qs, scales)
}

/// 4-bit quantization as llama.cpp's `q4_0` rounds (there with blocks of 32), in whole blocks
/// of an even `block`: per block `m` the value of largest magnitude, the scale `d = m / -8`
/// (stored rounded to f16), `q[i] = min(15, trunc(x[i] / d + 8.5))`, read back as `d * (q[i] -
/// 8)`. Byte `i` of a block holds `q[i]` in its low nibble and `q[i + block / 2]` in its high
/// one. `qs` holds `x.len() / 2` bytes, `scales` `x.len() / block`. (Scalar on every path.)
pub fn quantize_q4(x: &[f32], block: usize, qs: &mut [u8], scales: &mut [f16]) {
    imp::quantize_q4(x, block, qs, scales)
}

/// [`attn_scores`] over a 4-bit cache written by [`quantize_q4`]: position `j`'s values at
/// byte `j * stride / 2` of `qs`, its scales at `j * stride / block`; `q.len()` and `stride`
/// whole blocks. Computed by [`attn_scores_q8`] on the values `q - 8`, unpacked a few KiB at
/// a time, so the result equals that of an 8-bit cache holding those values and scales.
#[allow(clippy::too_many_arguments)]
pub fn attn_scores_q4(qs: &[u8], scales: &[f16], block: usize, stride: usize, q: &[f32], scale: f32, out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::attn_scores_q4(path(), qs, scales, block, stride, q, scale, out) }
}

/// [`attn_wsum`] over a 4-bit cache (layout as [`attn_scores_q4`]), equal to
/// [`attn_wsum_q8`] on the unpacked values.
pub fn attn_wsum_q4(qs: &[u8], scales: &[f16], block: usize, stride: usize, w: &[f32], out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::attn_wsum_q4(path(), qs, scales, block, stride, w, out) }
}

/// Attention scores of one head over `out.len()` cached positions: `out[j] = scale * dot(q,
/// K_j)` where `K_j` is the `q.len()` elements at element `j * stride` of `k` (a cache of
/// `wt` values, one position per `stride` elements). Each dot is summed as [`dot_row`] sums it.
///
/// `next` (a hint; may be empty) is what the caller reads next, laid out as `k` (the head's V
/// rows, for [`attn_wsum`]): where software prefetches pay ([`CpuFeatures::sw_prefetch`]) its
/// rows are brought into L2 beside `k`'s, so that the two read as two streams. Results do not
/// depend on it.
pub fn attn_scores(wt: WeightType, k: &[u8], stride: usize, q: &[f32], scale: f32, out: &mut [f32], next: &[u8]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::attn_scores(path(), wt, k, stride, q, scale, out, next) }
}

/// The attention output of one head: `out = sum_j w[j] * V_j` over `w.len()` cached positions,
/// `V_j` the `out.len()` elements at element `j * stride` of `v`. Per element, the terms are
/// added in order of `j` (as [`axpy`] position by position would).
pub fn attn_wsum(wt: WeightType, v: &[u8], stride: usize, w: &[f32], out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::attn_wsum(path(), wt, v, stride, w, out) }
}

/// [`attn_scores`] over an 8-bit cache written by [`quantize_q8`]: values `qs` (position `j`
/// at `j * stride`), scales `scales` (position `j` at `j * stride / block`); `stride` and the
/// head's start are multiples of `block`.
#[allow(clippy::too_many_arguments)]
pub fn attn_scores_q8(qs: &[i8], scales: &[f16], block: usize, stride: usize, q: &[f32], scale: f32, out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::attn_scores_q8(path(), qs, scales, block, stride, q, scale, out) }
}

/// [`attn_wsum`] over an 8-bit cache (layout as [`attn_scores_q8`]).
pub fn attn_wsum_q8(qs: &[i8], scales: &[f16], block: usize, stride: usize, w: &[f32], out: &mut [f32]) {
    // SAFETY: `path()` never exceeds the detected features.
    unsafe { imp::attn_wsum_q8(path(), qs, scales, block, stride, w, out) }
}
