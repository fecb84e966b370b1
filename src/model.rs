//! The in-memory model: hyper-parameters, the mapped files, and each layer's weights as views
//! into those files. Nothing here copies a weight matrix; only the tiny norm vectors are widened
//! to f32 on the heap.

use std::borrow::Cow;
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
        if self.n_ctx_train == 0 {
            return bad("the context length (context_length, max_position_embeddings, seq_length) is 0".into());
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

/// A run of a tensor's bytes in one file. A tensor is the concatenation of its spans: one for
/// most formats, several for a MindSpore tensor saved in pieces (which may split mid-row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Index of the file in [`Weights::files`].
    pub file: usize,
    /// Absolute byte offset in that file.
    pub offset: usize,
    /// Byte length.
    pub len: usize,
}

/// A weight matrix `[rows, cols]` living in the model's mapped files.
#[derive(Clone, Debug)]
pub struct Matrix {
    /// The stored tensor (name, dtype, first file and offset).
    pub info: TensorInfo,
    /// Output dimension.
    pub rows: usize,
    /// Input dimension (elements per row).
    pub cols: usize,
    /// The tensor's bytes, in order (their lengths add up to `info.nbytes`).
    pub spans: Vec<Span>,
}

impl Matrix {
    /// Call `f(first_row, bytes)` over rows `r0..r1` in order, in runs of whole rows: rows that
    /// lie in one span come straight from the mapping (one call per span); a row that
    /// straddles a span boundary (MindSpore pieces may split mid-row) is gathered into `buf`
    /// and passed alone. Nothing is copied for single-span tensors.
    pub fn for_each_run(&self, w: &Weights, r0: usize, r1: usize, buf: &mut Vec<u8>, mut f: impl FnMut(usize, &[u8])) {
        let rb = self.row_bytes();
        let (mut r, mut si, mut base) = (r0, 0, 0);
        while r < r1 {
            let start = r * rb;
            while si < self.spans.len() && base + self.spans[si].len <= start {
                base += self.spans[si].len;
                si += 1;
            }
            let Some(s) = self.spans.get(si) else {
                return; // the loader checked that the spans cover every row
            };
            let whole = ((base + s.len - start) / rb).min(r1 - r);
            if whole > 0 {
                let from = s.offset + (start - base);
                f(r, &w.files[s.file].bytes()[from..from + whole * rb]);
                r += whole;
                continue;
            }
            buf.clear();
            self.gather(&w.files, start, start + rb, buf);
            f(r, buf);
            r += 1;
        }
    }

    /// The bytes of rows `r0..r1`: borrowed from the mapping when they lie in one span (always,
    /// for single-span tensors); otherwise the few rows that straddle a span boundary are
    /// gathered into a small buffer.
    pub fn rows<'a>(&self, w: &'a Weights, r0: usize, r1: usize) -> Cow<'a, [u8]> {
        self.rows_in(&w.files, r0, r1)
    }

    /// [`Matrix::rows`] given the files directly (while the weights are being assembled).
    pub fn rows_in<'a>(&self, files: &'a [Storage], r0: usize, r1: usize) -> Cow<'a, [u8]> {
        let rb = self.row_bytes();
        let (start, end) = (r0 * rb, r1 * rb);
        let mut base = 0;
        for s in &self.spans {
            if start >= base && end <= base + s.len {
                let data = files[s.file].bytes();
                let from = s.offset + (start - base);
                return Cow::Borrowed(&data[from..from + (end - start)]);
            }
            base += s.len;
        }
        let mut out = Vec::with_capacity(end - start);
        self.gather(files, start, end, &mut out);
        Cow::Owned(out)
    }

    /// Append bytes `start..end` of the tensor to `out`, piece by piece across its spans.
    fn gather(&self, files: &[Storage], start: usize, end: usize, out: &mut Vec<u8>) {
        let mut base = 0;
        for s in &self.spans {
            let (lo, hi) = (start.max(base), end.min(base + s.len));
            if lo < hi {
                let data = files[s.file].bytes();
                out.extend_from_slice(&data[s.offset + (lo - base)..s.offset + (hi - base)]);
            }
            base += s.len;
            if base >= end {
                break;
            }
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.info.dtype
    }
    /// Bytes of one row (the loader checked that a row is whole blocks of its type).
    pub fn row_bytes(&self) -> usize {
        self.info.dtype.row_bytes(self.cols).unwrap_or(0)
    }
}

/// Projections that MindFormers may store fused in one matrix (`w_qkv`, `w_gate_hidden`).
/// A fused matrix is multiplied once; `order[r]` then says where its output row `r` goes in the
/// unfused `[first | second (| third)]` order.
#[derive(Clone, Debug)]
pub enum Projections {
    /// One matrix per projection (q, k, v or gate, up).
    Separate(Vec<Matrix>),
    /// One fused matrix and the destination of each of its output rows.
    Fused {
        /// The fused matrix.
        w: Matrix,
        /// `order[r]` = index of fused row `r` in the unfused concatenation.
        order: Vec<u32>,
    },
}

impl Projections {
    /// Output rows of the fused matrix (0 when separate).
    pub fn fused_rows(&self) -> usize {
        match self {
            Projections::Separate(_) => 0,
            Projections::Fused { w, .. } => w.rows,
        }
    }

    /// The matrices.
    pub fn matrices(&self) -> Vec<&Matrix> {
        match self {
            Projections::Separate(ms) => ms.iter().collect(),
            Projections::Fused { w, .. } => vec![w],
        }
    }
}

/// The row layouts of MindFormers' fused matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedLayout {
    /// MindFormers 1.2–1.3: plain concatenation `[wq; wk; wv]`, `[w1; w3]`.
    Concat,
    /// MindFormers >= 1.4 ("hf2mg"): per KV head `[its q heads | k head | v head]`; gate/up rows
    /// interleaved `w1[0], w3[0], w1[1], ...`.
    Grouped,
}

impl FusedLayout {
    /// Destination of each `w_qkv` output row in `[q | k | v]` order.
    pub fn qkv_order(self, n_head: usize, n_head_kv: usize, head_dim: usize) -> Vec<u32> {
        let (qd, kvd) = (n_head * head_dim, n_head_kv * head_dim);
        match self {
            FusedLayout::Concat => (0..(qd + 2 * kvd) as u32).collect(),
            FusedLayout::Grouped => {
                let rep = n_head / n_head_kv;
                let mut order = Vec::with_capacity(qd + 2 * kvd);
                for g in 0..n_head_kv {
                    order.extend((g * rep * head_dim..(g + 1) * rep * head_dim).map(|r| r as u32));
                    order.extend((qd + g * head_dim..qd + (g + 1) * head_dim).map(|r| r as u32));
                    order.extend((qd + kvd + g * head_dim..qd + kvd + (g + 1) * head_dim).map(|r| r as u32));
                }
                order
            }
        }
    }
    /// Destination of each `w_gate_hidden` output row in `[gate | up]` order.
    pub fn gate_up_order(self, n_ff: usize) -> Vec<u32> {
        match self {
            FusedLayout::Concat => (0..2 * n_ff as u32).collect(),
            FusedLayout::Grouped => (0..2 * n_ff).map(|r| ((r % 2) * n_ff + r / 2) as u32).collect(),
        }
    }
}

/// The weights of one transformer block.
#[derive(Clone, Debug)]
pub struct Layer {
    /// RMSNorm weight before attention, widened to f32.
    pub attn_norm: Vec<f32>,
    /// Query `[n_head*head_dim, n_embd]`, key and value `[n_head_kv*head_dim, n_embd]`
    /// projections, separate or fused.
    pub qkv: Projections,
    /// Attention output projection `[n_embd, n_head*head_dim]`.
    pub wo: Matrix,
    /// RMSNorm weight before the FFN, widened to f32.
    pub ffn_norm: Vec<f32>,
    /// SwiGLU gate (w1) and up (w3) projections `[n_ff, n_embd]`, separate or fused.
    pub gate_up: Projections,
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
    /// The backend that runs the model, holding its weights; `None` for a vocabulary-only model
    /// (`llama_load_vocab`), which can tokenize but not step.
    pub backend: Option<Box<dyn Backend>>,
    /// Every tensor as stored, in file order (for `llama_model_describe`).
    pub tensors: Vec<TensorInfo>,
    /// The tensor names as C strings, made on first use by `llama_model_tensor`.
    pub c_names: std::sync::OnceLock<Vec<std::ffi::CString>>,
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

    /// Bytes of weights one decode step reads: every layer matrix, the output head and one
    /// embedding row (0 for a vocabulary-only model).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let Some(b) = &self.backend else {
            return 0;
        };
        let w = b.weights();
        let size = |m: &Matrix| (m.rows * m.row_bytes()) as u64;
        let layers: u64 = w
            .layers
            .iter()
            .flat_map(|l| l.qkv.matrices().into_iter().chain([&l.wo]).chain(l.gate_up.matrices()).chain([&l.w_down]))
            .map(size)
            .sum();
        layers + size(&w.output) + w.tok_embd.row_bytes() as u64
    }

    /// The element type of the big matrices (that of layer 0's output projection).
    pub fn main_dtype(&self) -> Option<DType> {
        let w = self.backend.as_ref()?.weights();
        Some(w.layers.first().map_or(w.tok_embd.dtype(), |l| l.wo.dtype()))
    }

    /// The backend (and through it the weights), or `Unsupported` for a vocabulary-only model.
    pub fn backend(&self) -> Result<&dyn Backend> {
        self.backend.as_deref().ok_or_else(|| {
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
            "device": self.backend.as_ref().map_or("none", |b| b.name()),
            "gpu": self.backend.as_ref().and_then(|b| b.device()),
            "tokenizer": self.tokenizer_source,
            "bos": self.bos,
            "eos": self.eos,
            "assumed": self.assumed,
            "tensors": tensors,
        })
        .to_string()
    }
}
