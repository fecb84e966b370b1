//! `llama_load`: detect the format from the content, open the file through its format's
//! adapter (`open` in `formats/`, which hands back a `Source`), resolve hyper-parameters and
//! the tokenizer, and bind every tensor the forward pass needs, checking names, shapes and
//! bounds. Weights stay in the mapped files; the result is a [`Model`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use runllama_kernels::RopeLayout;

use crate::backend::{self, Device};
use crate::error::{Error, Result, Status};
use crate::formats::{ckpt, gguf, llama2c, safetensors};
use crate::model::{FusedLayout, Hparams, Layer, Matrix, Model, Projections, Span, Weights};
use crate::storage::Storage;
use crate::tensor::{tensor_bytes, TensorInfo};
use crate::tokenizer::Tokenizer;

/// What `llama_load` was asked for.
pub struct LoadOptions<'a> {
    /// 0 = detect, 2, 3.
    pub version: i32,
    /// A config file (HF `config.json`) to use instead of the one found beside the weights.
    pub config_path: Option<PathBuf>,
    /// A tokenizer file to use instead of the embedded one or the one beside the weights.
    pub tokenizer_path: Option<PathBuf>,
    /// Where the model runs.
    pub device: Device,
    /// Worker threads (0 = one per core).
    pub n_threads: usize,
    /// Map the files (true) or read them into memory.
    pub use_mmap: bool,
    /// What the CPU's batched products of bf16 weights use (prompts; decode is unchanged).
    pub bf16_products: runllama_kernels::Bf16Products,
    /// Called with the load fraction; returning true cancels the load.
    pub progress: Option<&'a mut dyn FnMut(f32) -> bool>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            version: 0,
            config_path: None,
            tokenizer_path: None,
            device: Device::Cpu,
            n_threads: 0,
            use_mmap: true,
            bf16_products: runllama_kernels::Bf16Products::F32,
            progress: None,
        }
    }
}

/// How a format names the tensors of a LLaMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// llama.cpp: `blk.N.attn_q.weight`.
    Gguf,
    /// Hugging Face: `model.layers.N.self_attn.q_proj.weight`.
    Hf,
    /// Meta / llama2.c: `layers.N.attention.wq.weight`.
    Meta,
    /// MindFormers `.ckpt`: `model.layers.N.attention.wq.weight`, fused `w_qkv` / `w_gate_hidden`.
    MindFormers,
}

/// The tensors of one layer, by role.
#[derive(Clone, Copy)]
enum Role {
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
    /// Fused q/k/v (MindFormers `w_qkv`).
    Qkv,
    /// Fused gate/up (MindFormers `w_gate_hidden`).
    GateUp,
}

impl Scheme {
    fn layer_name(self, role: Role, i: usize) -> String {
        // (GGUF, HF, Meta and MindFormers share the per-layer part of the name)
        let (gguf, hf, meta) = match role {
            Role::AttnNorm => ("attn_norm", "input_layernorm", "attention_norm"),
            Role::Q => ("attn_q", "self_attn.q_proj", "attention.wq"),
            Role::K => ("attn_k", "self_attn.k_proj", "attention.wk"),
            Role::V => ("attn_v", "self_attn.v_proj", "attention.wv"),
            Role::O => ("attn_output", "self_attn.o_proj", "attention.wo"),
            Role::FfnNorm => ("ffn_norm", "post_attention_layernorm", "ffn_norm"),
            Role::Gate => ("ffn_gate", "mlp.gate_proj", "feed_forward.w1"),
            Role::Up => ("ffn_up", "mlp.up_proj", "feed_forward.w3"),
            Role::Down => ("ffn_down", "mlp.down_proj", "feed_forward.w2"),
            Role::Qkv => ("attn_qkv", "self_attn.qkv_proj", "attention.w_qkv"),
            Role::GateUp => ("ffn_gate_up", "mlp.gate_up_proj", "feed_forward.w_gate_hidden"),
        };
        match self {
            Scheme::Gguf => format!("blk.{i}.{gguf}.weight"),
            Scheme::Hf => format!("model.layers.{i}.{hf}.weight"),
            Scheme::Meta => format!("layers.{i}.{meta}.weight"),
            Scheme::MindFormers => format!("model.layers.{i}.{meta}.weight"),
        }
    }
    /// The embedding's names, preferred first (MindFormers' Meta-converter writes the alias).
    fn embedding(self) -> &'static [&'static str] {
        match self {
            Scheme::Gguf => &["token_embd.weight"],
            Scheme::Hf => &["model.embed_tokens.weight"],
            Scheme::Meta => &["tok_embeddings.weight"],
            Scheme::MindFormers => &["model.tok_embeddings.embedding_weight", "model.tok_embeddings.weight"],
        }
    }
    fn output_norm(self) -> &'static str {
        match self {
            Scheme::Gguf => "output_norm.weight",
            Scheme::Hf => "model.norm.weight",
            Scheme::Meta => "norm.weight",
            Scheme::MindFormers => "model.norm_out.weight",
        }
    }
    fn output(self) -> &'static str {
        match self {
            Scheme::Gguf => "output.weight",
            Scheme::Hf | Scheme::MindFormers => "lm_head.weight",
            Scheme::Meta => "output.weight",
        }
    }
}

/// Hyper-parameters as far as the file and its config say; the rest comes from defaults.
#[derive(Default, Debug)]
pub(crate) struct Partial {
    pub(crate) n_vocab: Option<usize>,
    pub(crate) n_embd: Option<usize>,
    pub(crate) n_layer: Option<usize>,
    pub(crate) n_head: Option<usize>,
    pub(crate) n_head_kv: Option<usize>,
    pub(crate) n_ff: Option<usize>,
    pub(crate) n_ctx_train: Option<usize>,
    pub(crate) rope_theta: Option<f32>,
    pub(crate) norm_eps: Option<f32>,
    pub(crate) head_dim: Option<usize>,
    pub(crate) tied: Option<bool>,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
}

/// Most worker threads a model may ask for.
const MAX_THREADS: usize = 1024;

/// What a format reader hands to the binder.
pub(crate) struct Source {
    pub(crate) format: &'static str,
    pub(crate) scheme: Scheme,
    pub(crate) rope_layout: RopeLayout,
    pub(crate) files: Vec<Storage>,
    pub(crate) file_names: Vec<String>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) hp: Partial,
    pub(crate) tokenizer: Option<(Tokenizer, String)>,
    /// Tokenizer files to try, in order, when none is embedded or given.
    pub(crate) tokenizer_files: Vec<PathBuf>,
    /// Tensors stored in several pieces (MindSpore slices), by name.
    pub(crate) spans: HashMap<String, Vec<Span>>,
    /// Row layout of fused matrices, where the format has them.
    pub(crate) fused_layout: FusedLayout,
    /// Values the reader took from defaults.
    pub(crate) assumed: Vec<String>,
}

/// Load a model: see `llama_load` in `include/runllama.h`.
pub fn load(path: &Path, mut opts: LoadOptions<'_>) -> Result<Model> {
    crate::cpu::init();
    let shown = path.display().to_string();
    backend::check_available(opts.device)?;
    if !matches!(opts.version, 0 | 2 | 3) {
        return Err(Error::invalid(format!("version {} is not 0 (detect), 2 or 3", opts.version)));
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(format!("{shown}: {e}")))?;
    let mut src = if meta.is_dir() {
        safetensors::open_dir(path, &opts)?
    } else {
        let storage = Storage::open(path, opts.use_mmap)?;
        let bytes = storage.bytes();
        if gguf::is_gguf(bytes) {
            gguf::open(path, storage)?
        } else if safetensors::is_safetensors(bytes) {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            safetensors::open(vec![(path.to_path_buf(), storage)], &dir, &opts)?
        } else if llama2c::is_llama2c(bytes) || path.extension().is_some_and(|e| e == "bin") {
            // A .bin that is not recognised gets llama2.c's own precise error (e.g. truncation).
            llama2c::open(path, storage, &opts)?
        } else if ckpt::is_ckpt(bytes) {
            ckpt::open(path, storage, &opts)?
        } else {
            // The file's bytes are not echoed: the path may name anything.
            return Err(Error::format(format!(
                "{shown}: not a model file this library knows (GGUF, safetensors, llama2.c .bin, MindSpore .ckpt; this {}-byte file is none of them)",
                bytes.len()
            )));
        }
    };

    // The tokenizer: an explicit path wins over an embedded one, which wins over one beside the weights.
    if let Some(tp) = &opts.tokenizer_path {
        src.tokenizer = Some((read_tokenizer(tp)?, tp.display().to_string()));
    }
    if src.tokenizer.is_none() {
        for cand in &src.tokenizer_files {
            if cand.is_file() {
                src.tokenizer = Some((read_tokenizer(cand)?, cand.display().to_string()));
                break;
            }
        }
    }
    let (tokenizer, tokenizer_source) = src.tokenizer.take().ok_or_else(|| {
        Error::invalid(format!(
            "{shown}: no tokenizer found (none embedded, no tokenizer.model beside the weights): pass tokenizer_path"
        ))
    })?;

    let guessed = src.format == "mindspore-ckpt" && opts.config_path.is_none();
    bind(&shown, src, tokenizer, tokenizer_source, &mut opts).map_err(|mut e| {
        if guessed && e.status == Status::Format {
            // A checkpoint carries no hyper-parameters: the guess may be what is wrong.
            e.message.push_str(" (no config_path was given, so the hyper-parameters were guessed from the tensor shapes: pass the MindFormers yaml as config_path)");
        }
        e
    })
}

/// A vocabulary-only model from a tokenizer file (`llama_load_vocab`): it tokenizes, detokenizes
/// and builds chat prompts, but has no weights, so sessions cannot be made from it.
pub fn load_vocab(tokenizer_path: &Path, version: i32) -> Result<Model> {
    if !matches!(version, 0 | 2 | 3) {
        return Err(Error::invalid(format!("version {version} is not 0 (detect), 2 or 3")));
    }
    let shown = tokenizer_path.display().to_string();
    let tokenizer = read_tokenizer(tokenizer_path)?;
    let detected = tokenizer.version();
    if version != 0 && version as u32 != detected {
        return Err(Error::invalid(format!(
            "{shown}: version {version} was requested but this is a LLaMA {detected} vocabulary"
        )));
    }
    let n_vocab = tokenizer.n_vocab();
    Ok(Model {
        path: shown.clone(),
        format: "vocab",
        version: detected,
        hparams: Hparams {
            n_vocab,
            n_embd: 0,
            n_layer: 0,
            n_head: 0,
            n_head_kv: 0,
            n_ff: 0,
            n_ctx_train: 0,
            rope_theta: 0.0,
            norm_eps: 0.0,
            rope_layout: RopeLayout::Interleaved,
        },
        tensors: Vec::new(),
        c_names: Default::default(),
        assumed: Vec::new(),
        bos: tokenizer.bos().unwrap_or(1),
        eos: tokenizer.eos().unwrap_or(2),
        tokenizer_source: shown,
        tokenizer,
        backend: None,
    })
}

fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let shown = path.display().to_string();
    let bytes = crate::fsio::read_small(path, "the tokenizer", crate::fsio::TOKENIZER_LIMIT)?;
    Tokenizer::from_file_bytes(&bytes, &shown)
}

/// Resolve the hyper-parameters and bind every tensor.
fn bind(
    shown: &str,
    mut src: Source,
    tokenizer: Tokenizer,
    tokenizer_source: String,
    opts: &mut LoadOptions<'_>,
) -> Result<Model> {
    let by_name: HashMap<&str, &TensorInfo> = src.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let scheme = src.scheme;
    let mut assumed = std::mem::take(&mut src.assumed);
    let emb_name = *scheme
        .embedding()
        .iter()
        .find(|n| by_name.contains_key(*n))
        .ok_or_else(|| Error::format(format!("{shown}: tensor {:?} is missing", scheme.embedding()[0])))?;
    let emb = by_name[emb_name];
    if emb.shape.len() != 2 {
        return Err(Error::format(format!(
            "{shown}: tensor {:?} has shape {:?}, expected [n_vocab, n_embd]",
            emb.name, emb.shape
        )));
    }
    let p = &src.hp;
    let need = |v: Option<usize>, what: &str| {
        v.ok_or_else(|| Error::format(format!("{shown}: {what} is not given by the file or its config")))
    };
    let n_layer = match p.n_layer {
        Some(n) => n,
        None => {
            // Count the layers present.
            let mut n = 0;
            while by_name.contains_key(scheme.layer_name(Role::O, n).as_str()) {
                n += 1;
            }
            assumed.push(format!("n_layer={n} (counted from the tensors)"));
            n
        }
    };
    let mut default = |v: Option<f32>, d: f32, what: &str| {
        v.unwrap_or_else(|| {
            assumed.push(format!("{what}={d} (default)"));
            d
        })
    };
    let rope_theta = default(p.rope_theta, 10000.0, "rope_theta");
    let norm_eps = default(p.norm_eps, 1e-5, "norm_eps");
    let n_head = need(p.n_head, "the number of attention heads")?;
    let n_ctx_train = match p.n_ctx_train {
        Some(n) => n,
        None => {
            assumed.push("n_ctx_train=2048 (default)".into());
            2048
        }
    };
    let hp = Hparams {
        n_vocab: p.n_vocab.unwrap_or(emb.shape[0]),
        n_embd: p.n_embd.unwrap_or(emb.shape[1]),
        n_layer,
        n_head,
        n_head_kv: p.n_head_kv.unwrap_or(n_head),
        n_ff: need(p.n_ff, "the feed-forward width")?,
        n_ctx_train,
        rope_theta,
        norm_eps,
        rope_layout: src.rope_layout,
    };
    hp.validate(shown)?;
    if let Some(hd) = p.head_dim {
        if hd != hp.head_dim() {
            return Err(Error::unsupported(format!(
                "{shown}: head/rope dimension {hd} differs from n_embd/n_head = {}",
                hp.head_dim()
            )));
        }
    }
    if tokenizer.n_vocab() != hp.n_vocab {
        // A vocabulary one line short shifts every special token's id: the pair does not belong
        // together.
        return Err(Error::format(format!(
            "{tokenizer_source}: the tokenizer has {} tokens but the model's embedding has {} rows: they do not belong together",
            tokenizer.n_vocab(),
            hp.n_vocab
        )));
    }

    let files = std::mem::take(&mut src.files);
    let file_names = &src.file_names;
    let spans_of = |t: &TensorInfo| -> Result<Vec<Span>> {
        let spans = src
            .spans
            .get(&t.name)
            .cloned()
            .unwrap_or_else(|| vec![Span { file: t.file, offset: t.offset, len: t.nbytes }]);
        check_bounds(t, &spans, &files, file_names)?;
        Ok(spans)
    };
    let tensor = |name: &str, shape: &[usize]| -> Result<(&TensorInfo, Vec<Span>)> {
        let t = *by_name.get(name).ok_or_else(|| Error::format(format!("{shown}: tensor {name:?} is missing")))?;
        if t.shape != shape {
            return Err(Error::format(format!(
                "{}: tensor {name:?} has shape {:?}, expected {shape:?}",
                file_names[t.file], t.shape
            )));
        }
        Ok((t, spans_of(t)?))
    };
    let matrix = |name: &str, rows: usize, cols: usize| -> Result<Matrix> {
        let (t, spans) = tensor(name, &[rows, cols])?;
        Ok(Matrix { info: t.clone(), rows, cols, spans })
    };
    let vector = |name: &str, len: usize| -> Result<Vec<f32>> {
        let (t, spans) = tensor(name, &[len])?;
        let m = Matrix { info: t.clone(), rows: 1, cols: len, spans };
        let mut out = vec![0f32; len];
        runllama_kernels::row_to_f32(t.dtype, &m.rows_in(&files, 0, 1), &mut out);
        Ok(out)
    };
    let layout = src.fused_layout;
    let (n_head, n_head_kv, head_dim) = (hp.n_head, hp.n_head_kv, hp.head_dim());

    let (d, qd, kvd, ff) = (hp.n_embd, hp.n_head * hp.head_dim(), hp.kv_dim(), hp.n_ff);
    let tok_embd = matrix(emb_name, hp.n_vocab, d)?;
    // Grown as the layers are found: `n_layer` comes from the file and is not checked yet.
    let mut layers = Vec::new();
    // On a GPU most of the load is the upload, reported by the backend after this.
    let assembly_share = if opts.device == Device::Cpu { 1.0 } else { 0.05 };
    for i in 0..hp.n_layer {
        if let Some(cb) = opts.progress.as_mut() {
            if cb(assembly_share * i as f32 / hp.n_layer as f32) {
                return Err(Error::new(
                    Status::Cancelled,
                    format!("{shown}: loading was cancelled by the progress callback"),
                ));
            }
        }
        let name = |r| scheme.layer_name(r, i);
        layers.push(Layer {
            attn_norm: vector(&name(Role::AttnNorm), d)?,
            qkv: if by_name.contains_key(name(Role::Qkv).as_str()) {
                Projections::Fused {
                    w: matrix(&name(Role::Qkv), qd + 2 * kvd, d)?,
                    order: layout.qkv_order(n_head, n_head_kv, head_dim),
                }
            } else {
                Projections::Separate(vec![
                    matrix(&name(Role::Q), qd, d)?,
                    matrix(&name(Role::K), kvd, d)?,
                    matrix(&name(Role::V), kvd, d)?,
                ])
            },
            wo: matrix(&name(Role::O), d, qd)?,
            ffn_norm: vector(&name(Role::FfnNorm), d)?,
            gate_up: if by_name.contains_key(name(Role::GateUp).as_str()) {
                Projections::Fused { w: matrix(&name(Role::GateUp), 2 * ff, d)?, order: layout.gate_up_order(ff) }
            } else {
                Projections::Separate(vec![matrix(&name(Role::Gate), ff, d)?, matrix(&name(Role::Up), ff, d)?])
            },
            w_down: matrix(&name(Role::Down), d, ff)?,
        });
    }
    // A layer past the declared count: the file and its config disagree, and running the first
    // `n_layer` layers would be a different model.
    for role in [Role::AttnNorm, Role::Down] {
        let extra = scheme.layer_name(role, hp.n_layer);
        if by_name.contains_key(extra.as_str()) {
            return Err(Error::format(format!(
                "{shown}: tensor {extra:?} is stored, but {} layers are declared (block_count, num_hidden_layers or num_layers): the file and its config disagree",
                hp.n_layer
            )));
        }
    }
    let output_norm = vector(scheme.output_norm(), d)?;
    let output = if by_name.contains_key(scheme.output()) && p.tied != Some(true) {
        matrix(scheme.output(), hp.n_vocab, d)?
    } else if p.tied == Some(false) {
        return Err(Error::format(format!(
            "{shown}: tensor {:?} is missing and the embeddings are not tied",
            scheme.output()
        )));
    } else {
        tok_embd.clone()
    };
    let version = match opts.version {
        0 => {
            if tokenizer.version() == 3 || hp.n_vocab >= 128_000 {
                3
            } else {
                2
            }
        }
        v => v as u32,
    };
    let bos = tokenizer.bos().or(p.bos).unwrap_or(1);
    let eos = tokenizer.eos().or(p.eos).unwrap_or(2);
    if opts.n_threads > MAX_THREADS {
        return Err(Error::invalid(format!("n_threads {} is more than {MAX_THREADS}", opts.n_threads)));
    }
    let n_threads =
        if opts.n_threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.n_threads };
    let weights = Weights { files, tok_embd, layers, output_norm, output };
    let mut upload_progress = opts
        .progress
        .as_mut()
        .map(|cb| move |f: f32| -> bool { cb(assembly_share + (1.0 - assembly_share) * f.min(1.0) * 0.999) });
    let backend = backend::create(
        opts.device,
        n_threads,
        opts.bf16_products,
        weights,
        upload_progress.as_mut().map(|f| f as &mut dyn FnMut(f32) -> bool),
    )
    .map_err(|e| e.context(shown))?;
    if let Some(cb) = opts.progress.as_mut() {
        if cb(1.0) {
            return Err(Error::new(
                Status::Cancelled,
                format!("{shown}: loading was cancelled by the progress callback"),
            ));
        }
    }
    crate::log::info(&format!(
        "loaded {shown}: {} LLaMA {version}, {} layers, n_embd {}, n_vocab {}, {} threads",
        src.format, hp.n_layer, hp.n_embd, hp.n_vocab, n_threads
    ));
    Ok(Model {
        path: shown.to_string(),
        format: src.format,
        version,
        hparams: hp,
        backend: Some(backend),
        tensors: src.tensors.clone(),
        c_names: Default::default(),
        assumed,
        tokenizer_source,
        tokenizer,
        bos,
        eos,
    })
}

/// Every span of `t` lies inside its file and the spans add up to the tensor's size.
fn check_bounds(t: &TensorInfo, spans: &[Span], files: &[Storage], names: &[String]) -> Result<()> {
    let total: usize = spans.iter().map(|s| s.len).sum();
    let needed = tensor_bytes(t.dtype, &t.shape);
    if total != t.nbytes || Some(t.nbytes) != needed {
        return Err(Error::format(format!(
            "{}: tensor {:?} has {total} bytes in the file, its shape {:?} of {} needs {}",
            names.get(t.file).map_or("?", |s| s.as_str()),
            t.name,
            t.shape,
            t.dtype.name(),
            needed.map_or_else(|| "a whole number of blocks per row".to_string(), |n| n.to_string())
        )));
    }
    for s in spans {
        let len = files.get(s.file).map_or(0, |f| f.bytes().len());
        if s.offset.checked_add(s.len).is_none_or(|e| e > len) {
            return Err(Error::format(format!(
                "{}: tensor {:?} at byte {} with {} bytes does not fit the file of {len} bytes",
                names.get(s.file).map_or("?", |s| s.as_str()),
                t.name,
                s.offset,
                s.len
            )));
        }
    }
    Ok(())
}
