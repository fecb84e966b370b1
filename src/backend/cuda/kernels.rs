//! The kernels of `kernels.cu` and `quant.cu`, compiled by NVRTC for the GPU in hand when a
//! model is loaded, and the weight types they are instantiated for.

use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute as Attr;

use super::driver::{device_error, BlasType, Context, Function, Module};
use crate::error::Result;
use crate::tensor::DType;

/// The kernels' source: the float kernels, then the quantized weights' (which use them).
const SOURCE: &str = concat!(include_str!("kernels.cu"), include_str!("quant.cu"));

/// Element type of weights, KV cache values and cuBLAS inputs on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GpuType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
}

impl GpuType {
    /// The GPU type of weights stored as `d` (`None`: quantized, not run on the GPU).
    pub(super) fn of(d: DType) -> Option<GpuType> {
        match d {
            DType::F32 => Some(GpuType::F32),
            DType::F16 => Some(GpuType::F16),
            DType::BF16 => Some(GpuType::BF16),
            _ => None,
        }
    }
    /// Bytes per value.
    pub(super) fn size(self) -> usize {
        match self {
            GpuType::F32 => 4,
            GpuType::F16 | GpuType::BF16 => 2,
        }
    }
    /// The operand type of a cuBLAS product.
    pub(super) fn blas(self) -> BlasType {
        match self {
            GpuType::F32 => BlasType::F32,
            GpuType::F16 => BlasType::F16,
            GpuType::BF16 => BlasType::BF16,
        }
    }
    fn index(self) -> usize {
        self as usize
    }
    fn suffix(self) -> &'static str {
        match self {
            GpuType::F32 => "f32",
            GpuType::F16 => "f16",
            GpuType::BF16 => "bf16",
        }
    }
}

/// How a matrix is stored on the GPU: in a float type, or in one of GGUF's block types (as in
/// the file: products read 8-bit activations, a batch's products dequantize to f16 first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GpuWeight {
    /// Values of a float type.
    Float(GpuType),
    /// Blocks of a quantized type.
    Quant(DType),
}

impl GpuWeight {
    /// The GPU storage of weights stored as `d`.
    pub(super) fn of(d: DType) -> GpuWeight {
        GpuType::of(d).map_or(GpuWeight::Quant(d), GpuWeight::Float)
    }
    /// The type of a batch's cuBLAS product with these weights (its input's type too).
    pub(super) fn compute(self) -> GpuType {
        match self {
            GpuWeight::Float(t) => t,
            GpuWeight::Quant(_) => GpuType::F16,
        }
    }
}

/// The quantized types, in the order of [`Kernels`]' per-type kernels.
const QUANT_TYPES: [DType; 10] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Kernels over the weights of one type.
pub(super) struct Products {
    /// `out = W x` (x normalised first when a norm weight is given).
    pub gemv: Function,
    /// `out += W x`.
    pub gemv_add: Function,
    /// `out[r/2] = silu(W x)[r] * (W x)[r+1]` over row pairs.
    pub gemv_swiglu: Function,
    /// Embedding rows to f32 activations.
    pub embed: Function,
    /// Quantized types: the kernels only they have.
    pub quant: Option<QuantKernels>,
}

/// The kernels of a quantized type besides its decode products.
#[derive(Clone, Copy)]
pub(super) struct QuantKernels {
    /// Rows dequantized to f16 (a batch's cuBLAS products).
    pub to_f16: Function,
    /// Rows dequantized to f32 (the tests: exact values to compare).
    #[cfg_attr(not(test), allow(dead_code))]
    pub to_f32: Function,
    /// `out[t] = W x[t]` for up to [`QGEMV_TOKENS`] tokens whose inputs are quantized.
    pub batch: Function,
    /// `out[t] += W x[t]`, likewise.
    pub batch_add: Function,
}

impl Products {
    fn load(module: &Module, suffix: &str, quant: bool) -> Result<Products> {
        let f = |base: &str| module.function(&format!("{base}_{suffix}"));
        let quant = match quant {
            true => Some(QuantKernels {
                to_f16: f("dequant_f16")?,
                to_f32: f("dequant_f32")?,
                batch: f("gemv_batch")?,
                batch_add: f("gemv_batch_add")?,
            }),
            false => None,
        };
        Ok(Products {
            gemv: f("gemv")?,
            gemv_add: f("gemv_add")?,
            gemv_swiglu: f("gemv_swiglu")?,
            embed: f("embed")?,
            quant,
        })
    }
}

/// The element-wise kernels instantiated for one float type (of a batch's products' inputs).
pub(super) struct TypedKernels {
    /// RMSNorm of f32 activations, narrowed to this type.
    pub rmsnorm: Function,
    /// f32 activations narrowed to this type.
    pub convert: Function,
    /// SwiGLU of interleaved (gate, up) values, narrowed to this type.
    pub swiglu: Function,
    /// Head-major attention output narrowed to this type, token-major.
    pub attn_out: Function,
}

/// How a batch computes attention (`RUNLLAMA_CUDA_ATTN=gemm|tiled|warp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PrefillAttention {
    /// Scores and outputs as cuBLAS products per head, a softmax kernel between (the default,
    /// where the session's scratch for it fits; else `Tiled`).
    Gemm,
    /// `attention_tiled`: 32-query tiles, K/V chunks in shared memory.
    Tiled,
    /// The decode kernel, a block per (query, head).
    Warp,
}

/// The compiled module and its kernels.
pub(super) struct Kernels {
    /// Per float type, indexed by [`GpuType`].
    typed: [TypedKernels; 3],
    /// Products per float type, indexed by [`GpuType`].
    float_products: [Products; 3],
    /// Products per quantized type, in the order of [`QUANT_TYPES`].
    quant_products: Vec<Products>,
    /// A decode product's f32 input (normalised where asked) quantized to 8 bits per 32 values
    /// for the products over quantized rows.
    pub quantize_input: Function,
    /// A batch's f16 inputs quantized likewise.
    pub quantize_input_f16: Function,
    /// RoPE and cache write, per cache type (f32, f16).
    rope_store: [Function; 2],
    /// Attention, a block per (query, head, split), per cache type (f32, f16).
    attention: [Function; 2],
    /// Batched attention over query tiles, per cache type (f32, f16).
    attention_tiled: [Function; 2],
    /// q scaled and packed head-major for cuBLAS attention, per cache type (f32, f16).
    q_pack: [Function; 2],
    /// The causal softmax of score rows, per cache type (f32, f16).
    softmax_causal: [Function; 2],
    /// How batches (prompts) compute attention.
    pub prefill_attention: PrefillAttention,
    /// Multiprocessors of the GPU.
    pub n_sm: usize,
    /// Whether a decode step's kernels are launched to overlap the end of the kernel before
    /// (programmatic dependent launch: compute capability 9.0 on; `RUNLLAMA_CUDA_PDL=0` turns
    /// it off).
    pub pdl: bool,
    /// Warps per row of every matrix-vector product over float rows, where
    /// `RUNLLAMA_CUDA_GEMV_SPLIT` (1, 4 or 8) imposes one (for tests of each split); else chosen
    /// per product.
    pub gemv_split: Option<usize>,
    /// Kept loaded while the functions are used.
    _module: Module,
}

impl Kernels {
    /// Compile and load the kernels for the context's GPU; the product kernels over float
    /// weights may take rows of up to `float_cols` values (0: none).
    pub(super) fn load(ctx: &Arc<Context>, float_cols: usize) -> Result<Kernels> {
        let major = ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let ptx = compile(&format!("compute_{major}{minor}"))?;
        let module = Module::load(ctx, &ptx)?;
        let typed = [GpuType::F32, GpuType::F16, GpuType::BF16].map(|t| {
            let f = |base: &str| module.function(&format!("{base}_{}", t.suffix()));
            Ok::<_, crate::error::Error>(TypedKernels {
                rmsnorm: f("rmsnorm")?,
                convert: f("convert")?,
                swiglu: f("swiglu")?,
                attn_out: f("attn_out")?,
            })
        });
        let [a, b, c] = typed;
        let typed = [a?, b?, c?];
        let [a, b, c] = [GpuType::F32, GpuType::F16, GpuType::BF16].map(|t| Products::load(&module, t.suffix(), false));
        let float_products = [a?, b?, c?];
        let quant_products = QUANT_TYPES
            .iter()
            .map(|t| Products::load(&module, &t.name().to_ascii_lowercase(), true))
            .collect::<Result<Vec<_>>>()?;
        let limit = ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)? as usize;
        // The float products hold their f32 input in shared memory.
        if float_cols * 4 + 1024 > limit {
            return Err(crate::error::Error::unsupported(format!(
                "rows of {float_cols} values do not fit the GPU's {limit} bytes of shared memory per block"
            )));
        }
        for p in &float_products {
            for f in [p.gemv, p.gemv_add, p.gemv_swiglu] {
                f.allow_shared(float_cols * 4)?;
            }
        }
        let attention_tiled = [module.function("attention_tiled_f32")?, module.function("attention_tiled_f16")?];
        for f in attention_tiled {
            f.allow_shared(attn_tiled_shared(TILED_MAX_HEAD))?;
        }
        Ok(Kernels {
            attention_tiled,
            q_pack: [module.function("q_pack_f32")?, module.function("q_pack_f16")?],
            softmax_causal: [module.function("softmax_causal_f32")?, module.function("softmax_causal_f16")?],
            prefill_attention: match std::env::var("RUNLLAMA_CUDA_ATTN").as_deref() {
                Ok("warp") => PrefillAttention::Warp,
                Ok("tiled") => PrefillAttention::Tiled,
                _ => PrefillAttention::Gemm,
            },
            rope_store: [module.function("rope_store_f32")?, module.function("rope_store_f16")?],
            attention: [module.function("attention_f32")?, module.function("attention_f16")?],
            gemv_split: std::env::var("RUNLLAMA_CUDA_GEMV_SPLIT")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|k| GEMV_SPLITS.contains(k)),
            pdl: major >= 9 && std::env::var("RUNLLAMA_CUDA_PDL").as_deref() != Ok("0"),
            n_sm: ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as usize,
            typed,
            float_products,
            quant_products,
            quantize_input: module.function("quantize_input")?,
            quantize_input_f16: module.function("quantize_input_f16")?,
            _module: module,
        })
    }

    /// The element-wise kernels whose outputs are of type `t`.
    pub(super) fn typed(&self, t: GpuType) -> &TypedKernels {
        &self.typed[t.index()]
    }

    /// The product and embedding kernels for weights stored as `w`.
    pub(super) fn products(&self, w: GpuWeight) -> Result<&Products> {
        match w {
            GpuWeight::Float(t) => Ok(&self.float_products[t.index()]),
            GpuWeight::Quant(d) => QUANT_TYPES
                .iter()
                .position(|&q| q == d)
                .map(|i| &self.quant_products[i])
                .ok_or_else(|| crate::error::Error::internal(format!("no CUDA kernels for {}", d.name()))),
        }
    }

    /// RoPE + cache write for a cache of `t` (F32 or F16).
    pub(super) fn rope_store(&self, t: GpuType) -> Function {
        self.rope_store[by_cache(t)]
    }

    /// Attention over a cache of `t` (F32 or F16).
    pub(super) fn attention(&self, t: GpuType) -> Function {
        self.attention[by_cache(t)]
    }

    /// Batched attention over query tiles with a cache of `t` (F32 or F16), if it takes heads
    /// of `hd` and the warp-per-query kernel is not asked for.
    pub(super) fn attention_tiled(&self, t: GpuType, hd: usize) -> Option<Function> {
        (self.prefill_attention != PrefillAttention::Warp && hd.is_multiple_of(8) && hd <= TILED_MAX_HEAD)
            .then(|| self.attention_tiled[by_cache(t)])
    }

    /// q packing for cuBLAS attention with a cache of `t` (F32 or F16).
    pub(super) fn q_pack(&self, t: GpuType) -> Function {
        self.q_pack[by_cache(t)]
    }

    /// The causal softmax into probabilities of the cache's type `t` (F32 or F16).
    pub(super) fn softmax_causal(&self, t: GpuType) -> Function {
        self.softmax_causal[by_cache(t)]
    }
}

/// Index of a per-cache-type pair of kernels (f32, f16) for a cache of `t`.
fn by_cache(t: GpuType) -> usize {
    (t == GpuType::F16) as usize
}

/// Warps per row (or row pair) a matrix-vector product may split its rows over (kernels.cu's
/// `gemv_rows`: a group of k warps meets at a named barrier, 15 at most per block).
pub(super) const GEMV_SPLITS: [usize; 3] = [1, 4, 8];

/// Most tokens one product over quantized rows takes (`QGEMV_TOKENS` in quant.cu).
pub(super) const QGEMV_TOKENS: usize = 8;

/// Fewest positions a decode attention split takes (`ATT_MIN_SPLIT` in kernels.cu).
pub(super) const ATT_MIN_SPLIT: usize = 32;

/// Largest head `attention_tiled` takes (TILE_MAX_DPT * 8 in kernels.cu).
const TILED_MAX_HEAD: usize = 128;
/// Queries and keys per tile of `attention_tiled` (TQ, TK in kernels.cu).
pub(super) const TILE_QUERIES: usize = 32;
const TILE_KEYS: usize = 32;
/// Threads of an `attention_tiled` block (TILE_THREADS in kernels.cu).
pub(super) const TILE_THREADS: u32 = 128;

/// Dynamic shared memory of `attention_tiled` for heads of `hd`: the Q, K and V tiles (rows
/// of hd + 4 floats) and the probabilities.
pub(super) fn attn_tiled_shared(hd: usize) -> usize {
    ((TILE_QUERIES + 2 * TILE_KEYS) * (hd + 4) + TILE_QUERIES * TILE_KEYS) * 4
}

/// PTX for `arch` (NUL-terminated), or the compiler's log as a device error.
pub(super) fn compile(arch: &str) -> Result<Vec<u8>> {
    let opts = cudarc::nvrtc::CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some("runllama_kernels.cu".into()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => {
            device_error(format!("NVRTC could not compile the CUDA kernels for {arch}: {}", log.to_string_lossy()))
        }
        e => device_error(format!("NVRTC could not compile the CUDA kernels for {arch}: {e}")),
    })?;
    let mut image = ptx.to_src().into_bytes();
    image.push(0);
    Ok(image)
}

#[cfg(test)]
mod tests {
    /// The kernels compile wherever NVRTC can be loaded (no GPU needed); skipped otherwise.
    #[test]
    fn kernels_compile_with_nvrtc() {
        // SAFETY: only tries to open the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            eprintln!("skipped: NVRTC not found");
            return;
        }
        for arch in ["compute_80", "compute_90"] {
            let ptx = super::compile(arch).unwrap_or_else(|e| panic!("{e}"));
            // For `ptxas -v` (registers, spills) during development.
            if let Some(dir) = std::env::var_os("RUNLLAMA_PTX_DIR") {
                std::fs::write(std::path::Path::new(&dir).join(format!("{arch}.ptx")), &ptx[..ptx.len() - 1]).unwrap();
            }
            let text = String::from_utf8_lossy(&ptx);
            for k in [
                "gemv_f16",
                "gemv_swiglu_bf16",
                "attention_f16",
                "rope_store_f32",
                "gemv_add_f16",
                "attention_tiled_f16",
                "gemv_q4_k",
                "gemv_swiglu_q6_k",
                "embed_q2_k",
                "dequant_f16_q5_0",
            ] {
                assert!(text.contains(&format!(".entry {k}(")), "{k} missing for {arch}");
            }
        }
    }
}
