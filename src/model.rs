//! The in-memory model: hyper-parameters, the mapped files, and each layer's weights as views
//! into those files. Nothing here copies a weight matrix; only the tiny norm vectors are widened
//! to f32 on the heap.

use std::sync::Arc;

use runllama_kernels::RopeLayout;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::{DType, TensorInfo};
use crate::tokenizer::Tokenizer;

/// LLaMA hyper-parameters, resolved from the file's metadata, a config file, or defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Hparams {
    /// Vocabulary size (rows of the embedding).
    pub n_vocab: usize,
    /// Model width.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when < n_head).
    pub n_head_kv: usize,
    /// SwiGLU hidden width.
    pub n_ff: usize,
    /// Training context length.
    pub n_ctx_train: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon (added to mean(x²) inside the square root).
    pub norm_eps: f32,
    /// How q/k rows pair their dims for RoPE (depends on the file format).
    pub rope_layout: RopeLayout,
}

impl Hparams {
    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
    /// Width of the K (and V) projections.
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_head_kv
    }
    /// Reject impossible combinations before any tensor is bound.
    pub fn validate(&self, path: &str) -> Result<()> {
        let bad = |what: String| Err(Error::format(format!("{path}: {what}")));
        if self.n_vocab == 0 || self.n_embd == 0 || self.n_layer == 0 || self.n_head == 0 || self.n_ff == 0 {
            return bad(format!("hyper-parameters must be positive: {self:?}"));
        }
        if self.n_head_kv == 0 || !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!("n_head {} is not a multiple of n_head_kv {}", self.n_head, self.n_head_kv));
        }
        if !self.n_embd.is_multiple_of(self.n_head) || !self.head_dim().is_multiple_of(2) {
            return bad(format!("n_embd {} does not split into {} heads of even width", self.n_embd, self.n_head));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("rope_theta {} must be a positive number", self.rope_theta));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return bad(format!("norm_eps {} must be a non-negative number", self.norm_eps));
        }
        Ok(())
    }
}

/// A weight matrix `[rows, cols]` living in one of the model's mapped files.
#[derive(Clone, Debug)]
pub struct Matrix {
    /// The stored tensor (name, dtype, file, offset).
    pub info: TensorInfo,
    /// Output dimension.
    pub rows: usize,
    /// Input dimension (elements per row).
    pub cols: usize,
}

impl Matrix {
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.info.dtype
    }
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.cols * self.info.dtype.size()
    }
}

/// The weights of one transformer block.
#[derive(Clone, Debug)]
pub struct Layer {
    /// RMSNorm weight before attention, widened to f32.
    pub attn_norm: Vec<f32>,
    /// Query projection `[n_head*head_dim, n_embd]`.
    pub wq: Matrix,
    /// Key projection `[n_head_kv*head_dim, n_embd]`.
    pub wk: Matrix,
    /// Value projection `[n_head_kv*head_dim, n_embd]`.
    pub wv: Matrix,
    /// Attention output projection `[n_embd, n_head*head_dim]`.
    pub wo: Matrix,
    /// RMSNorm weight before the FFN, widened to f32.
    pub ffn_norm: Vec<f32>,
    /// SwiGLU gate `[n_ff, n_embd]` (w1).
    pub w_gate: Matrix,
    /// SwiGLU up `[n_ff, n_embd]` (w3).
    pub w_up: Matrix,
    /// SwiGLU down `[n_embd, n_ff]` (w2).
    pub w_down: Matrix,
}

/// All weights of a model, as views into its files.
#[derive(Debug)]
pub struct Weights {
    /// The files the views point into (mapped, or read to the heap when mmap is off).
    pub files: Vec<Storage>,
    /// Token embedding `[n_vocab, n_embd]`.
    pub tok_embd: Matrix,
    /// The transformer blocks.
    pub layers: Vec<Layer>,
    /// Final RMSNorm weight, widened to f32.
    pub output_norm: Vec<f32>,
    /// Output head `[n_vocab, n_embd]` (the embedding itself when tied).
    pub output: Matrix,
}

impl Weights {
    /// The bytes of a matrix, in place in its file.
    pub fn bytes(&self, m: &Matrix) -> &[u8] {
        let data = self.files[m.info.file].bytes();
        &data[m.info.offset..m.info.offset + m.info.nbytes]
    }
}

/// A loaded model: immutable, shared by all its sessions (`Arc<Model>`).
pub struct Model {
    /// The path it was loaded from.
    pub path: String,
    /// `"gguf"`, `"safetensors"`, `"llama2c"`.
    pub format: &'static str,
    /// 2 or 3.
    pub version: u32,
    /// Hyper-parameters.
    pub hparams: Hparams,
    /// Weights (views into the files) and the backend that runs them; `None` for a
    /// vocabulary-only model (`llama_load_vocab`), which can tokenize but not step.
    pub compute: Option<Compute>,
    /// Every tensor as stored, in file order (for `llama_model_describe`).
    pub tensors: Vec<TensorInfo>,
    /// Values that came from defaults rather than the files (for `llama_model_describe`).
    pub assumed: Vec<String>,
    /// Where the tokenizer came from (a path, or "embedded").
    pub tokenizer_source: String,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// BOS id.
    pub bos: u32,
    /// EOS id.
    pub eos: u32,
}

/// What a model needs to run: its weights and a backend.
pub struct Compute {
    /// Weights (views into the files).
    pub weights: Weights,
    /// The compute backend.
    pub backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("hparams", &self.hparams)
            .finish_non_exhaustive()
    }
}

/// A shared handle to a model.
pub type ModelRef = Arc<Model>;

impl Model {
    /// Total parameter count of the stored tensors.
    pub fn n_params(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements() as u64).sum()
    }

    /// The element type of the big matrices (that of layer 0's query projection).
    pub fn main_dtype(&self) -> Option<DType> {
        let w = &self.compute.as_ref()?.weights;
        Some(w.layers.first().map_or(w.tok_embd.dtype(), |l| l.wq.dtype()))
    }

    /// The weights and backend, or `Unsupported` for a vocabulary-only model.
    pub fn compute(&self) -> Result<&Compute> {
        self.compute.as_ref().ok_or_else(|| {
            Error::unsupported(format!(
                "{}: this model was loaded without weights (llama_load_vocab): it can tokenize but not run",
                self.path
            ))
        })
    }

    /// True for end-of-generation ids.
    pub fn is_eog(&self, t: u32) -> bool {
        t == self.eos || self.tokenizer.is_eog(t)
    }

    /// The `llama_model_describe` JSON document.
    pub fn describe_json(&self) -> String {
        let hp = &self.hparams;
        let tensors: Vec<serde_json::Value> = self
            .tensors
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "dtype": t.dtype.name(), "shape": t.shape}))
            .collect();
        serde_json::json!({
            "format": self.format,
            "path": self.path,
            "version": self.version,
            "n_vocab": hp.n_vocab,
            "n_embd": hp.n_embd,
            "n_layer": hp.n_layer,
            "n_head": hp.n_head,
            "n_head_kv": hp.n_head_kv,
            "n_ff": hp.n_ff,
            "n_ctx_train": hp.n_ctx_train,
            "rope_theta": hp.rope_theta,
            "rope_layout": match hp.rope_layout { RopeLayout::Interleaved => "interleaved", RopeLayout::Halves => "halves" },
            "norm_eps": hp.norm_eps,
            "dtype": self.main_dtype().map(DType::name),
            "n_params": self.n_params(),
            "device": self.compute.as_ref().map_or("none", |c| c.backend.name()),
            "tokenizer": self.tokenizer_source,
            "bos": self.bos,
            "eos": self.eos,
            "assumed": self.assumed,
            "tensors": tensors,
        })
        .to_string()
    }
}
