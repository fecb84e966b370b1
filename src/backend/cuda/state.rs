//! A session's state on the GPU: its stream and cuBLAS handle, the KV cache, the activations of
//! a pass, pinned host memory for the step's inputs and logits, and the captured decode graph.

use std::any::Any;
use std::sync::Arc;

use super::driver::{Blas, Context, DeviceBuffer, Graph, PinnedBuffer, Stream};
use super::kernels::{GpuType, ATT_MIN_SPLIT, QGEMV_TOKENS};
use crate::backend::{KvType, SessionState};
use crate::error::{Error, Result};
use crate::model::Hparams;

/// Most tokens one batched pass computes (longer prompts run in pieces).
pub(super) const UBATCH: usize = 512;

/// Activations of one pass, on the GPU.
pub(super) struct Activations {
    /// Residual stream, `[UBATCH, n_embd]` f32.
    pub x: DeviceBuffer,
    /// A product's input in the weights' type, `[UBATCH, max(n_embd, q_dim, n_ff)]`.
    pub xb: DeviceBuffer,
    /// `[q | k | v]` per token, f32.
    pub qkv: DeviceBuffer,
    /// Attention output, `[UBATCH, q_dim]` f32.
    pub att: DeviceBuffer,
    /// Interleaved (gate, up) per token, `[UBATCH, 2 n_ff]` f32.
    pub gate_up: DeviceBuffer,
    /// One token's SwiGLU output, `[n_ff]` f32 (decode).
    pub hidden: DeviceBuffer,
    /// The inputs of a product over quantized rows (up to [`QGEMV_TOKENS`] tokens) quantized to
    /// 8 bits: the values, then at [`q8_scales_at`] an f32 pair (scale, scale × sum) per 32.
    pub q8: DeviceBuffer,
    /// A decode step's split attention: (max, sum, accumulator) per head and split (one token
    /// has too few heads to fill the GPU, so each head's positions are split over blocks).
    pub part: DeviceBuffer,
    /// Per head, how many of a decode step's attention splits have finished (i32, zero
    /// between steps: the last split merges the head and resets it).
    pub tickets: DeviceBuffer,
    /// Logits, `[n_vocab]` f32.
    pub logits: DeviceBuffer,
    /// The pass's inputs: position, then token ids (i32).
    pub io: DeviceBuffer,
}

/// Where the scales of 8-bit inputs of `len` values in all start in [`Activations::q8`]
/// (16-byte aligned).
pub(super) fn q8_scales_at(len: usize) -> usize {
    len.next_multiple_of(16)
}

/// Bytes a session may hold for the scores of a batch's cuBLAS attention (whole KV heads at a
/// time; a session whose single head would not fit uses the tiled kernel).
const ATTN_SCRATCH: usize = 32 << 20;

/// Most bytes of a session's f16 copy of quantized rows (a batch's products dequantize a
/// matrix into it in pieces of whole rows).
const DEQUANT_SCRATCH: usize = 32 << 20;

/// Scratch of a batch's cuBLAS attention.
pub(super) struct AttnScratch {
    /// q, scaled and packed head-major in the cache's type, `[n_head, UBATCH, head_dim]`.
    pub q: DeviceBuffer,
    /// Scores (f32) of `heads` KV heads' query rows: up to `[heads, group * UBATCH, n_ctx]`.
    pub s: DeviceBuffer,
    /// The probabilities in the cache's type, as large (`None`: f32, written over the scores).
    pub p: Option<DeviceBuffer>,
    /// KV heads per round of products.
    pub heads: usize,
}

/// A session's state on the GPU.
pub(super) struct CudaState {
    /// Positions the cache holds.
    pub n_ctx: usize,
    /// Cache element type (F32 or F16).
    pub kv_type: GpuType,
    /// Every layer's K then V cache, head-major (`[n_head_kv, n_ctx, head_dim]` each).
    pub kv: DeviceBuffer,
    /// `theta^(-2i/head_dim)`, as the CPU computes them.
    pub inv_freq: DeviceBuffer,
    /// The pass's activations.
    pub act: Activations,
    /// Scratch of a batch's cuBLAS attention (`None`: one KV head's scores would not fit).
    pub attn: Option<AttnScratch>,
    /// Quantized rows dequantized to f16 for a batch's products, some rows at a time (`None`:
    /// the model has no quantized matrix).
    pub dequant: Option<DeviceBuffer>,
    /// Most position splits of a decode step's attention (at most 32: the merge gives each
    /// split a lane; the kernel uses as many as give each at least [`ATT_MIN_SPLIT`] positions).
    pub splits: usize,
    /// Host side of `act.io`.
    pub host_io: PinnedBuffer,
    /// Host side of the logits.
    pub host_logits: PinnedBuffer,
    /// The decode step, captured on the first single-token step.
    pub graph: Option<Graph>,
    /// cuBLAS on `stream` (batched passes).
    pub blas: Blas,
    /// The session's stream: all its work runs in order on it.
    pub stream: Stream,
}

impl CudaState {
    /// State for `n_ctx` positions with a cache of `kv` (sizes from `hp`), and room to
    /// dequantize up to `dequant` bytes of f16 rows (0: no quantized matrix; capped at
    /// [`DEQUANT_SCRATCH`] but at least `row` bytes); `OutOfMemory` names the bytes asked for
    /// and free, and frees what was allocated.
    pub(super) fn new(
        ctx: &Arc<Context>,
        hp: &Hparams,
        n_ctx: usize,
        (k, v): (KvType, KvType),
        (dequant, row): (usize, usize),
    ) -> Result<CudaState> {
        let kv_type = match (k, v) {
            (KvType::F16, KvType::F16) => GpuType::F16,
            (KvType::F32, KvType::F32) => GpuType::F32,
            _ => {
                return Err(Error::unsupported(format!(
                    "the CUDA backend keeps K and V caches in f16 or f32 (both the same), not {k:?}/{v:?}"
                )))
            }
        };
        let (d, hd, qd, kvd, ff) = (hp.n_embd, hp.head_dim(), hp.n_head * hp.head_dim(), hp.kv_dim(), hp.n_ff);
        if hd > 256 {
            return Err(Error::unsupported(format!("the CUDA attention kernel takes heads of up to 256, not {hd}")));
        }
        let kv_bytes = n_ctx
            .checked_mul(2 * hp.n_layer * kvd * kv_type.size())
            .ok_or_else(|| Error::invalid(format!("n_ctx {n_ctx} is too large")))?;
        let splits = n_ctx.div_ceil(ATT_MIN_SPLIT).min(32);
        let f = 4;
        let stream = ctx.stream()?;
        let blas = Blas::new(&stream)?;
        let act = Activations {
            x: ctx.alloc(UBATCH * d * f, "the activations")?,
            xb: ctx.alloc(UBATCH * d.max(qd).max(ff) * f, "the activations")?,
            qkv: ctx.alloc(UBATCH * (qd + 2 * kvd) * f, "the activations")?,
            att: ctx.alloc(UBATCH * qd * f, "the activations")?,
            gate_up: ctx.alloc(UBATCH * 2 * ff * f, "the activations")?,
            hidden: ctx.alloc(ff * f, "the activations")?,
            q8: {
                let len = QGEMV_TOKENS * d.max(qd).max(ff);
                ctx.alloc(q8_scales_at(len) + len / 4, "the activations")?
            },
            part: ctx.alloc(hp.n_head * splits * (hd + 2) * f, "the attention partials")?,
            tickets: ctx.alloc(hp.n_head * 4, "the attention tickets")?,
            logits: ctx.alloc(hp.n_vocab * f, "the logits")?,
            io: ctx.alloc((UBATCH + 1) * 4, "the step's tokens")?,
        };
        let kv = ctx.alloc(kv_bytes, &format!("the KV cache ({n_ctx} positions)"))?;
        let rows = hp.n_head / hp.n_head_kv * UBATCH;
        let p_size = if kv_type == GpuType::F16 { 2 } else { 0 };
        let heads = (ATTN_SCRATCH / (rows * n_ctx * (4 + p_size)).max(1)).min(hp.n_head_kv);
        let attn = match heads {
            0 => None,
            _ => {
                let what = "the attention scratch";
                Some(AttnScratch {
                    q: ctx.alloc(hp.n_head * UBATCH * hd * kv_type.size(), what)?,
                    s: ctx.alloc(heads * rows * n_ctx * 4, what)?,
                    p: (p_size > 0).then(|| ctx.alloc(heads * rows * n_ctx * p_size, what)).transpose()?,
                    heads,
                })
            }
        };
        let dequant = match dequant {
            0 => None,
            b => Some(ctx.alloc(b.min(DEQUANT_SCRATCH).max(row), "the dequantization scratch")?),
        };
        let inv: Vec<u8> = (0..hd / 2)
            .map(|i| 1.0f32 / hp.rope_theta.powf((2 * i) as f32 / hd as f32))
            .flat_map(f32::to_le_bytes)
            .collect();
        let inv_freq = ctx.alloc(inv.len(), "the RoPE frequencies")?;
        let zeros = vec![0u8; hp.n_head * 4];
        // SAFETY: `inv` and `zeros` live until the stream is synchronised below; `inv_freq` and
        // `tickets` hold their bytes.
        unsafe {
            stream.upload(inv_freq.ptr(), inv.as_ptr(), inv.len())?;
            stream.upload(act.tickets.ptr(), zeros.as_ptr(), zeros.len())?;
        }
        stream.sync()?;
        Ok(CudaState {
            n_ctx,
            kv_type,
            kv,
            inv_freq,
            act,
            attn,
            dequant,
            splits,
            host_io: ctx.alloc_pinned((UBATCH + 1) * 4)?,
            host_logits: ctx.alloc_pinned(hp.n_vocab * 4)?,
            graph: None,
            blas,
            stream,
        })
    }

    /// Device addresses of layer `l`'s K and V caches (`kvd * n_ctx` values each).
    pub(super) fn layer_kv(&self, l: usize, kvd: usize) -> (u64, u64) {
        let per = kvd * self.n_ctx * self.kv_type.size();
        (self.kv.at(2 * l * per), self.kv.at((2 * l + 1) * per))
    }
}

impl Drop for CudaState {
    fn drop(&mut self) {
        // The buffers are freed after the stream's last work.
        let _ = self.stream.sync();
    }
}

impl SessionState for CudaState {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }
}
