//! The LLaMA forward pass, written once: llama2.c's `forward()` batched over the tokens of a
//! step, read top to bottom. A backend supplies the operations ([`LlamaOps`]) over its own
//! activations (host slices, device buffers) and weights; the order of the block lives here.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result, Status};
use crate::model::{Matrix, Projections, Weights};

/// The operations of one batched pass, over the backend's activations of the batch: `x` (the
/// residual stream), `xb` (its normalised copy), `q`, `k`, `v`, `att` (attention output), `gate`
/// and `up` (the feed-forward's hidden values), one row per token. Weights are named by their
/// host description ([`Matrix`], [`Projections`], the norm vectors); a backend that moved them
/// elsewhere maps them to its copies.
pub trait LlamaOps {
    /// Start a batch: `x[t]` = the embedding row of `tokens[t]`.
    fn embed(&mut self, tokens: &[u32]);
    /// `xb = rmsnorm(x) ⊙ weight`, per token.
    fn norm(&mut self, weight: &[f32]);
    /// `q, k, v = xb · (wq, wk, wv)ᵀ` (separate or fused matrices).
    fn qkv(&mut self, p: &Projections);
    /// Rotate `q` and `k` by their positions (`pos` is the first token's).
    fn rope(&mut self, pos: usize);
    /// Write `k` and `v` into the cache of `layer` at positions `pos..`.
    fn store_kv(&mut self, layer: usize, pos: usize);
    /// `att` = causal attention of `q` over the cache of `layer`: token `t` sees positions
    /// `..=pos + t`.
    fn attention(&mut self, layer: usize, pos: usize);
    /// `x += att · woᵀ`.
    fn add_attention_output(&mut self, wo: &Matrix);
    /// `gate, up = xb · (w1, w3)ᵀ` (separate or fused matrices).
    fn gate_up(&mut self, p: &Projections);
    /// `gate = silu(gate) ⊙ up`.
    fn swiglu(&mut self);
    /// `x += gate · w2ᵀ`.
    fn add_ffn_output(&mut self, w_down: &Matrix);
    /// `logits = (rmsnorm(x of the last token) ⊙ norm) · outputᵀ`.
    fn logits(&mut self, norm: &[f32], output: &Matrix, logits: &mut [f32]);
    /// Narrow the batch to its last `keep` tokens (0 or 1) once the last layer's K and V are
    /// stored: the rest of that layer only feeds the logits, which are the last token's. With
    /// 1, that token's `x` and `q` become the batch's only row. Returns whether the backend
    /// did; one that did not runs the whole batch on (the same logits, more work).
    fn keep_last(&mut self, keep: usize) -> bool;
}

/// One batched pass over `tokens` at positions `pos..`: their K/V go into the caches, and with
/// `logits` the last token's logits are computed. The last layer runs its attention and
/// feed-forward for the last token alone, or not at all without `logits` (where the backend
/// narrows the batch: [`LlamaOps::keep_last`]; llama.cpp narrows its last feed-forward).
/// Returns `Cancelled` (before the next layer) once `cancel` is set, consuming it.
pub fn forward(
    ops: &mut impl LlamaOps,
    w: &Weights,
    tokens: &[u32],
    pos: usize,
    logits: Option<&mut [f32]>,
    cancel: &AtomicBool,
) -> Result<()> {
    ops.embed(tokens);
    let n_layer = w.layers.len();
    for (l, layer) in w.layers.iter().enumerate() {
        check_cancel(cancel)?;
        // Attention.
        ops.norm(&layer.attn_norm);
        ops.qkv(&layer.qkv);
        ops.rope(pos);
        ops.store_kv(l, pos);
        let mut first = pos;
        if l + 1 == n_layer {
            if logits.is_none() && ops.keep_last(0) {
                return Ok(());
            }
            if logits.is_some() && tokens.len() > 1 && ops.keep_last(1) {
                first = pos + tokens.len() - 1;
            }
        }
        ops.attention(l, first);
        ops.add_attention_output(&layer.wo);
        // Feed-forward (SwiGLU).
        ops.norm(&layer.ffn_norm);
        ops.gate_up(&layer.gate_up);
        ops.swiglu();
        ops.add_ffn_output(&layer.w_down);
    }
    check_cancel(cancel)?;
    if let Some(logits) = logits {
        ops.logits(&w.output_norm, &w.output, logits);
    }
    Ok(())
}

/// `Cancelled` if `cancel` is set (clearing it: one abort cancels one step).
pub(crate) fn check_cancel(cancel: &AtomicBool) -> Result<()> {
    if cancel.swap(false, Ordering::AcqRel) {
        return Err(Error::new(Status::Cancelled, "llama_step was aborted by llama_session_abort"));
    }
    Ok(())
}
