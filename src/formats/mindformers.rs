//! MindFormers yaml configs: the `model.model_config` hyper-parameters and the
//! `processor.tokenizer` entry that a MindSpore `.ckpt` does not store.
//!
//! The yaml is read with a small, strict parser for the subset MindFormers configs use: block
//! mappings nested by indentation (spaces only), block sequences (`- item`, including
//! `- key: value` items), flow collections (`[a, b]`, `{k: v}`, also over several lines), plain,
//! single- and double-quoted scalars, `|` / `>` block scalars (kept as text, not interpreted),
//! comments, a leading `---`. Anchors, aliases, tags, `?` complex keys and multi-line quoted
//! strings are not supported (anchors and tags on values are ignored; an alias reads as text).
//! Scalars are typed as PyYAML does when a key is read: integers, floats (`1.0e-05`, `1.e-8`,
//! and also `1e-5`), booleans (`True`/`False`/`true`/`false`/`yes`/`no`/`on`/`off`), nulls
//! (`null`, `~`, empty, and the unquoted `None` MindFormers configs use). A quoted scalar is a
//! string. Like PyYAML, a key repeated in one mapping takes its last value, except in `model`
//! and `model_config`, where a key given twice is refused.
//!
//! Checked against PyYAML on every yaml of every MindFormers branch and tag (1,754 files, 1,571
//! with `model.model_config`, 638 of them LLaMA-family; `tests/mindformers_yamls.rs`, whose
//! committed sample runs in CI): every value this reads equals PyYAML's, and the one refusal is
//! a `model_config` key given twice.
//!
//! Why not a YAML crate: the maintained ones were run on the same corpus
//! (`tests/mindformers/yaml_crates`: yaml-rust2 0.13.2 and saphyr-parser 0.3.4, their event
//! parsers, with plain scalars typed by PyYAML's YAML 1.1 rules, which their YAML 1.2 loaders do
//! not apply: `yes`/`on` are strings there and `1e-5` a float, the reverse of PyYAML). Both read
//! 1,740 files as PyYAML does and refuse the other 14 ("invalid indentation"), 2 of them
//! LLaMA-family configs: a multi-line flow sequence whose closing `]` sits at its key's
//! indentation, which PyYAML and this parser accept. 1,310 of the files use anchors and aliases
//! (`*train_dataset`, `*dp`), so aliases cannot be refused, and copying them as the crates' loaders
//! do lets a small file grow without bound; this parser reads an alias as text, and no key it reads
//! is one in the corpus. Both crates bound flow nesting (a recursion limit); block nesting only by
//! the input's size. This parser bounds both (64 block levels, 32 flow levels) and ran 31.8 million
//! libFuzzer inputs without a crash (issue 19's fuzzing); keeping it keeps the 14 files and costs
//! no dependency.

use std::path::Path;

use crate::error::{Error, Result};

/// MindFormers' default `multiple_of` (`LlamaConfig`).
pub const DEFAULT_MULTIPLE_OF: usize = 256;
/// MindFormers' default RoPE `theta` (`LlamaConfig`).
pub const DEFAULT_THETA: f64 = 10000.0;
/// MindFormers' default `rms_norm_eps` (`LlamaConfig`).
pub const DEFAULT_RMS_NORM_EPS: f64 = 1e-5;

/// Row layout of fused `w_qkv` / `w_gate_hidden` tensors (our extension key `qkv_concat_layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkvConcatLayout {
    /// `"grouped"`: MindFormers >= 1.4 (`hf2mg`): q heads of a kv group, then its k and v head;
    /// w1/w3 rows interleaved.
    Grouped,
    /// `"concat"`: MindFormers 1.2-1.3: `[wq; wk; wv]` and `[w1; w3]`.
    Concat,
}

/// `scaling_factor`: a number, or a mapping (Llama 3.1 `extend_method: "LLAMA3"`).
#[derive(Clone, Debug, PartialEq)]
pub enum MfScaling {
    /// `scaling_factor: 1.0`.
    Factor(f64),
    /// `scaling_factor: {factor: 8.0, low_freq_factor: 1.0, ...}`: every entry, in file order.
    /// Entries must be numbers (or null, which is left out).
    Map(Vec<(String, f64)>),
}

impl MfScaling {
    /// The value of a key of the mapping form (`None` for the number form or a missing key).
    pub fn get(&self, key: &str) -> Option<f64> {
        match self {
            MfScaling::Factor(_) => None,
            MfScaling::Map(m) => m.iter().find(|(k, _)| k == key).map(|&(_, v)| v),
        }
    }
}

/// The MindFormers config values a loader needs. Every field is `None` when the key is absent or
/// null; the caller applies MindFormers' defaults (see the `DEFAULT_*` constants and
/// [`MfConfig::ffn_size`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MfConfig {
    /// `model.model_config.type` (e.g. `LlamaConfig`).
    pub config_type: Option<String>,
    /// `model.arch.type` (e.g. `LlamaForCausalLM`).
    pub arch_type: Option<String>,
    /// `hidden_size`.
    pub hidden_size: Option<usize>,
    /// `num_layers`.
    pub num_layers: Option<usize>,
    /// `num_heads`.
    pub num_heads: Option<usize>,
    /// `n_kv_heads` (absent: equal to num_heads).
    pub n_kv_heads: Option<usize>,
    /// `vocab_size`.
    pub vocab_size: Option<usize>,
    /// `intermediate_size` (absent: see [`MfConfig::ffn_size`]).
    pub intermediate_size: Option<usize>,
    /// `multiple_of` (absent: [`DEFAULT_MULTIPLE_OF`]).
    pub multiple_of: Option<usize>,
    /// `ffn_dim_multiplier`.
    pub ffn_dim_multiplier: Option<f64>,
    /// `rms_norm_eps` (absent: [`DEFAULT_RMS_NORM_EPS`]).
    pub rms_norm_eps: Option<f64>,
    /// `theta` (absent: [`DEFAULT_THETA`]).
    pub theta: Option<f64>,
    /// `seq_length`.
    pub seq_length: Option<usize>,
    /// `max_position_embedding` (absent: equal to seq_length).
    pub max_position_embedding: Option<usize>,
    /// `bos_token_id` (MindFormers default 1).
    pub bos_token_id: Option<i64>,
    /// `eos_token_id` (MindFormers default 2); the first id when the yaml gives a list.
    pub eos_token_id: Option<i64>,
    /// `pad_token_id` (MindFormers default 0).
    pub pad_token_id: Option<i64>,
    /// `tie_word_embeddings` (default false).
    pub tie_word_embeddings: Option<bool>,
    /// `qkv_concat` (default false).
    pub qkv_concat: Option<bool>,
    /// Our extension `qkv_concat_layout`: `"grouped"` or `"concat"`.
    pub qkv_concat_layout: Option<QkvConcatLayout>,
    /// `extend_method` as written (MindFormers writes the string `"None"` for no extension).
    pub extend_method: Option<String>,
    /// `scaling_factor`.
    pub scaling_factor: Option<MfScaling>,
    /// `processor.tokenizer.vocab_file`.
    pub tokenizer_vocab_file: Option<String>,
    /// `processor.tokenizer.type` (e.g. `LlamaTokenizer`, `Llama3Tokenizer`).
    pub tokenizer_type: Option<String>,
}

impl MfConfig {
    /// The FFN size: `intermediate_size` when given, else MindFormers' `LlamaFeedForward` rule
    /// for this hidden size: `h = 4·hidden`; with `ffn_dim_multiplier` m, `h = int((m + 0.01)·h)`;
    /// `h = int(2h/3)`; round up to a multiple of `multiple_of` (default 256). 4096 → 11008.
    /// `None` when the numbers are unusable (multiple_of 0, a negative or non-finite multiplier,
    /// overflow).
    pub fn ffn_size(&self, hidden: usize) -> Option<usize> {
        if let Some(n) = self.intermediate_size {
            return Some(n);
        }
        let multiple_of = self.multiple_of.unwrap_or(DEFAULT_MULTIPLE_OF);
        if multiple_of == 0 {
            return None;
        }
        let mut h = hidden.checked_mul(4)?;
        if let Some(m) = self.ffn_dim_multiplier {
            let x = (m + 0.01) * h as f64;
            if !x.is_finite() || x < 0.0 || x >= usize::MAX as f64 {
                return None;
            }
            h = x as usize; // Python int(): truncation
        }
        h = h.checked_mul(2)? / 3;
        h.div_ceil(multiple_of).checked_mul(multiple_of)
    }
}

/// Read and parse a MindFormers yaml file. `Io` when it cannot be read; see [`parse_yaml`].
pub fn read_yaml(path: &Path) -> Result<MfConfig> {
    let shown = path.display().to_string();
    let bytes = crate::fsio::read_small(path, "the yaml config", crate::fsio::CONFIG_LIMIT)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::format(format!("{shown}: byte offset {}: the yaml is not UTF-8", e.valid_up_to())))?;
    parse_yaml(text, &shown)
}

/// Parse a MindFormers yaml config (`path` is used in messages).
///
/// Errors (`Format`, naming the path and line): yaml outside the supported subset or malformed
/// (bad indentation, tabs, a missing `:`, unterminated quotes or flow collections), no
/// `model.model_config` mapping, or a value of the wrong type for a key this reads (e.g. a
/// non-integer `num_heads`, a negative size, a quoted number, an unknown `qkv_concat_layout`).
pub fn parse_yaml(text: &str, path: &str) -> Result<MfConfig> {
    let root = parse_document(text, path)?;
    let ctx = Ctx { path };
    let model = match root.get("model") {
        Some(n @ Node::Map { .. }) => n,
        Some(other) => {
            return Err(ctx.err(other.line(), format!("'model' is {}, expected a mapping", other.kind())));
        }
        None => return Err(ctx.err(1, "no 'model' key: a MindFormers config has model: model_config: ...")),
    };
    let mc = match model.get("model_config") {
        Some(n @ Node::Map { .. }) => n,
        Some(other) => {
            return Err(ctx.err(other.line(), format!("'model.model_config' is {}, expected a mapping", other.kind())));
        }
        None => return Err(ctx.err(model.line(), "no 'model.model_config' mapping under 'model'")),
    };
    // PyYAML lets the last of a repeated key win; in the mappings read here a repeat means the
    // file says two things (num_layers twice ran 2 of 5 layers), so it is refused.
    for (node, what) in [(model, "model"), (mc, "model.model_config")] {
        ctx.unique_keys(node, what)?;
    }
    let k = |key: &'static str| (mc.get(key), key);
    let mut c = MfConfig {
        config_type: ctx.string(k("type"), "model.model_config")?,
        hidden_size: ctx.uint(k("hidden_size"))?,
        num_layers: ctx.uint(k("num_layers"))?,
        num_heads: ctx.uint(k("num_heads"))?,
        n_kv_heads: ctx.uint(k("n_kv_heads"))?,
        vocab_size: ctx.uint(k("vocab_size"))?,
        intermediate_size: ctx.uint(k("intermediate_size"))?,
        multiple_of: ctx.uint(k("multiple_of"))?,
        ffn_dim_multiplier: ctx.float(k("ffn_dim_multiplier"))?,
        rms_norm_eps: ctx.float(k("rms_norm_eps"))?,
        theta: ctx.float(k("theta"))?,
        seq_length: ctx.uint(k("seq_length"))?,
        max_position_embedding: ctx.uint(k("max_position_embedding"))?,
        bos_token_id: ctx.token_id(k("bos_token_id"))?,
        eos_token_id: ctx.token_id(k("eos_token_id"))?,
        pad_token_id: ctx.token_id(k("pad_token_id"))?,
        tie_word_embeddings: ctx.boolean(k("tie_word_embeddings"))?,
        qkv_concat: ctx.boolean(k("qkv_concat"))?,
        extend_method: ctx.string(k("extend_method"), "model.model_config")?,
        ..MfConfig::default()
    };
    if let Some(s) = ctx.string(k("qkv_concat_layout"), "model.model_config")? {
        c.qkv_concat_layout = Some(match s.as_str() {
            "grouped" => QkvConcatLayout::Grouped,
            "concat" => QkvConcatLayout::Concat,
            other => {
                let line = mc.get("qkv_concat_layout").map_or(1, Node::line);
                return Err(ctx.err(
                    line,
                    format!("model.model_config.qkv_concat_layout is {other:?}, expected \"grouped\" (MindFormers >= 1.4) or \"concat\" (1.2-1.3)"),
                ));
            }
        });
    }
    c.scaling_factor = ctx.scaling(mc.get("scaling_factor"))?;
    if let Some(arch) = model.get("arch") {
        match arch {
            Node::Map { .. } => c.arch_type = ctx.string((arch.get("type"), "type"), "model.arch")?,
            n if n.is_null() => {}
            other => return Err(ctx.err(other.line(), format!("'model.arch' is {}, expected a mapping", other.kind()))),
        }
    }
    match root.get("processor") {
        None => {}
        Some(n) if n.is_null() => {}
        Some(p @ Node::Map { .. }) => match p.get("tokenizer") {
            None => {}
            Some(n) if n.is_null() => {}
            Some(t @ Node::Map { .. }) => {
                c.tokenizer_vocab_file = ctx.string((t.get("vocab_file"), "vocab_file"), "processor.tokenizer")?;
                c.tokenizer_type = ctx.string((t.get("type"), "type"), "processor.tokenizer")?;
            }
            Some(other) => {
                return Err(
                    ctx.err(other.line(), format!("'processor.tokenizer' is {}, expected a mapping", other.kind()))
                )
            }
        },
        Some(other) => {
            return Err(ctx.err(other.line(), format!("'processor' is {}, expected a mapping", other.kind())));
        }
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Typed access.

struct Ctx<'a> {
    path: &'a str,
}

impl Ctx<'_> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::format(format!("{}: line {line}: {msg}", self.path))
    }

    /// An error when a key of the mapping `node` (called `what`) appears twice.
    fn unique_keys(&self, node: &Node, what: &str) -> Result<()> {
        if let Node::Map { entries, .. } = node {
            let mut seen = std::collections::HashMap::with_capacity(entries.len());
            for (k, v) in entries {
                if let Some(first) = seen.insert(k.as_str(), v.line()) {
                    return Err(self.err(
                        v.line(),
                        format!(
                            "'{what}.{k}' is given twice (first at line {first}): which one is meant cannot be told"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The scalar of a key (None when absent or null); an error for a mapping or sequence.
    fn scalar<'n>(
        &self,
        (node, key): (Option<&'n Node>, &str),
        parent: &str,
        want: &str,
    ) -> Result<Option<&'n Scalar>> {
        match node {
            None => Ok(None),
            Some(Node::Scalar(s)) if s.is_null() => Ok(None),
            Some(Node::Scalar(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(other.line(), format!("{parent}.{key} is {}, expected {want}", other.kind()))),
        }
    }

    fn int(&self, nk: (Option<&Node>, &str), want: &str) -> Result<Option<(i64, usize)>> {
        let key = nk.1;
        let Some(s) = self.scalar(nk, "model.model_config", want)? else { return Ok(None) };
        match (!s.quoted).then(|| parse_int(&s.text)).flatten() {
            Some(v) => Ok(Some((v, s.line))),
            None => Err(self.err(s.line, format!("model.model_config.{key} is {}, expected {want}", s.shown()))),
        }
    }

    fn uint(&self, nk: (Option<&Node>, &str)) -> Result<Option<usize>> {
        let key = nk.1;
        match self.int(nk, "a non-negative integer")? {
            None => Ok(None),
            Some((v, line)) => usize::try_from(v).map(Some).map_err(|_| {
                self.err(line, format!("model.model_config.{key} is {v}, expected a non-negative integer"))
            }),
        }
    }

    /// A token id, or the first of a list of ids.
    fn token_id(&self, nk: (Option<&Node>, &str)) -> Result<Option<i64>> {
        if let (Some(Node::Seq { items, line }), key) = nk {
            return match items.first() {
                None => Err(self.err(*line, format!("model.model_config.{key} is an empty list"))),
                Some(first) => Ok(self.int((Some(first), key), "a token id")?.map(|(v, _)| v)),
            };
        }
        Ok(self.int(nk, "a token id (an integer or a list of integers)")?.map(|(v, _)| v))
    }

    fn float(&self, nk: (Option<&Node>, &str)) -> Result<Option<f64>> {
        let key = nk.1;
        let Some(s) = self.scalar(nk, "model.model_config", "a number")? else { return Ok(None) };
        match (!s.quoted).then(|| parse_float(&s.text)).flatten() {
            Some(v) => Ok(Some(v)),
            None => {
                Err(self.err(s.line, format!("model.model_config.{key} is {}, expected a finite number", s.shown())))
            }
        }
    }

    fn boolean(&self, nk: (Option<&Node>, &str)) -> Result<Option<bool>> {
        let key = nk.1;
        let Some(s) = self.scalar(nk, "model.model_config", "true or false")? else { return Ok(None) };
        match (!s.quoted).then(|| parse_bool(&s.text)).flatten() {
            Some(v) => Ok(Some(v)),
            None => Err(self.err(s.line, format!("model.model_config.{key} is {}, expected True or False", s.shown()))),
        }
    }

    fn string(&self, nk: (Option<&Node>, &str), parent: &str) -> Result<Option<String>> {
        Ok(self.scalar(nk, parent, "a string")?.map(|s| s.text.clone()))
    }

    fn scaling(&self, node: Option<&Node>) -> Result<Option<MfScaling>> {
        match node {
            None => Ok(None),
            Some(Node::Scalar(s)) if s.is_null() => Ok(None),
            Some(Node::Scalar(_)) => Ok(self.float((node, "scaling_factor"))?.map(MfScaling::Factor)),
            Some(Node::Map { entries, .. }) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    let Some(s) = self.scalar((Some(v), k), "model.model_config.scaling_factor", "a number")? else {
                        continue;
                    };
                    let x = (!s.quoted).then(|| parse_float(&s.text)).flatten().ok_or_else(|| {
                        self.err(
                            s.line,
                            format!("model.model_config.scaling_factor.{k} is {}, expected a finite number", s.shown()),
                        )
                    })?;
                    out.push((k.clone(), x));
                }
                Ok(Some(MfScaling::Map(out)))
            }
            Some(other) => Err(self.err(
                other.line(),
                format!("model.model_config.scaling_factor is {}, expected a number or a mapping", other.kind()),
            )),
        }
    }
}

fn parse_int(t: &str) -> Option<i64> {
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let b = digits.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() || !b.iter().all(|c| c.is_ascii_digit() || *c == b'_') {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    let v: i64 = clean.parse().ok()?;
    Some(if neg { -v } else { v })
}

fn parse_float(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    if !b.iter().any(u8::is_ascii_digit)
        || !b.iter().all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E' | b'_'))
    {
        return None;
    }
    let clean: String = t.chars().filter(|&c| c != '_').collect();
    // Rust does not accept "1." before an exponent ("1.e-8", YAML 1.1 / PyYAML does).
    let clean = clean.replace(".e", ".0e").replace(".E", ".0E");
    let v: f64 = clean.parse().ok()?;
    v.is_finite().then_some(v)
}

fn parse_bool(t: &str) -> Option<bool> {
    match t {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The yaml subset: lines → tree.

#[derive(Clone, Debug)]
struct Scalar {
    text: String,
    quoted: bool,
    line: usize,
}

impl Scalar {
    fn is_null(&self) -> bool {
        !self.quoted && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL" | "None")
    }
    fn shown(&self) -> String {
        if self.quoted {
            format!("the string {:?}", self.text)
        } else {
            format!("{:?}", self.text)
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Scalar(Scalar),
    Map { entries: Vec<(String, Node)>, line: usize },
    Seq { items: Vec<Node>, line: usize },
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar(s) => s.line,
            Node::Map { line, .. } | Node::Seq { line, .. } => *line,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Node::Scalar(_) => "a scalar",
            Node::Map { .. } => "a mapping",
            Node::Seq { .. } => "a list",
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Node::Scalar(s) if s.is_null())
    }
    /// The value of a key of a mapping (the last one when repeated).
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries, .. } => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Line {
    no: usize,
    indent: usize,
    text: String,
}

/// Most nesting of block mappings and sequences.
const MAX_BLOCK_DEPTH: usize = 64;

struct Doc<'a> {
    path: &'a str,
    lines: Vec<Line>,
    i: usize,
    /// Current nesting of blocks.
    depth: usize,
}

fn parse_document(text: &str, path: &str) -> Result<Node> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Vec::new();
    let mut started = false;
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        let rest = &raw[indent..];
        let content = strip_comment(rest).trim_end();
        if content.is_empty() {
            continue;
        }
        if rest.starts_with('\t') {
            return Err(Error::format(format!(
                "{path}: line {no}: a tab in the indentation (yaml indents with spaces)"
            )));
        }
        if indent == 0 && content.starts_with('%') && !started {
            continue; // %YAML / %TAG directive
        }
        if indent == 0 && (content == "---" || content.starts_with("--- ")) {
            if started {
                return Err(Error::format(format!(
                    "{path}: line {no}: a second yaml document ('---') is not supported"
                )));
            }
            started = true;
            let after = content[3..].trim();
            if after.is_empty() {
                continue;
            }
            return Err(Error::format(format!("{path}: line {no}: content after '---' is not supported")));
        }
        if indent == 0 && content == "..." {
            break;
        }
        started = true;
        lines.push(Line { no, indent, text: content.to_owned() });
    }
    let mut d = Doc { path, lines, i: 0, depth: 0 };
    let Some(first) = d.lines.first() else {
        return Err(Error::format(format!("{path}: line 1: the yaml is empty")));
    };
    let (indent, no) = (first.indent, first.no);
    let root = d.block(indent)?;
    if let Some(l) = d.lines.get(d.i) {
        return Err(d.err(l.no, "unexpected indentation: this line does not belong to any enclosing block"));
    }
    match root {
        Node::Map { .. } => Ok(root),
        other => Err(d.err(no, format!("the document is {}, expected a mapping", other.kind()))),
    }
}

/// The part of a line before its comment: a `#` at the start or after a space, outside quotes.
fn strip_comment(s: &str) -> &str {
    let b = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut prev_sig: Option<u8> = None; // previous non-space byte
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(b'"') => {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    quote = None;
                }
            }
            Some(_) => {
                if c == b'\'' {
                    quote = None;
                }
            }
            None => {
                if c == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') {
                    return &s[..i];
                }
                let starts_token = matches!(prev_sig, None | Some(b':' | b'-' | b'[' | b'{' | b',' | b'?'))
                    && (i == 0 || b[i - 1] == b' ' || matches!(b[i - 1], b'[' | b'{' | b','));
                if (c == b'"' || c == b'\'') && starts_token {
                    quote = Some(c);
                }
            }
        }
        if c != b' ' {
            prev_sig = Some(c);
        }
        i += 1;
    }
    s
}

/// True for `- x` / `-` (a block sequence item).
fn is_seq_item(t: &str) -> bool {
    t == "-" || t.starts_with("- ")
}

/// Split `key: rest` (plain or quoted key); `None` when the line is not a mapping entry.
fn split_key(t: &str) -> Option<(String, &str)> {
    let b = t.as_bytes();
    match *b.first()? {
        q @ (b'"' | b'\'') => {
            let (key, end) = quoted(t, q)?;
            let after = t[end..].trim_start_matches(' ');
            let rest = after.strip_prefix(':')?;
            if !(rest.is_empty() || rest.starts_with(' ')) {
                return None;
            }
            Some((key, rest.trim_start()))
        }
        b'[' | b'{' | b'|' | b'>' | b'*' | b'&' | b'!' | b'%' | b'@' | b'`' | b'?' => None,
        _ => {
            let mut i = 0;
            while i < b.len() {
                if b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' ') {
                    let key = t[..i].trim_end();
                    if key.is_empty() {
                        return None;
                    }
                    return Some((key.to_owned(), t[i + 1..].trim_start()));
                }
                i += 1;
            }
            None
        }
    }
}

/// A quoted scalar starting at byte 0 of `t` (`q` is its quote): the text and the index after
/// the closing quote. `None` when unterminated or with a bad escape.
fn quoted(t: &str, q: u8) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = t.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if q == b'\'' {
            if c == '\'' {
                if matches!(chars.peek(), Some((_, '\''))) {
                    chars.next();
                    out.push('\'');
                    continue;
                }
                return Some((out, i + 1));
            }
            out.push(c);
        } else {
            match c {
                '"' => return Some((out, i + 1)),
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        '\\' => '\\',
                        '"' => '"',
                        '/' => '/',
                        ' ' => ' ',
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let mut v = 0u32;
                            for _ in 0..n {
                                let (_, h) = chars.next()?;
                                v = v * 16 + h.to_digit(16)?;
                            }
                            char::from_u32(v)?
                        }
                        _ => return None,
                    });
                }
                _ => out.push(c),
            }
        }
    }
    None
}

impl Doc<'_> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::format(format!("{}: line {line}: {msg}", self.path))
    }

    /// The block (mapping or sequence) whose first line is the current one, at `indent`.
    fn block(&mut self, indent: usize) -> Result<Node> {
        let Some(l) = self.lines.get(self.i) else {
            return Err(self.err(0, "internal: no line for a block"));
        };
        if self.depth >= MAX_BLOCK_DEPTH {
            return Err(self.err(l.no, format!("blocks nested deeper than {MAX_BLOCK_DEPTH} levels")));
        }
        self.depth += 1;
        let r = if is_seq_item(&l.text) { self.seq(indent) } else { self.map(indent) };
        self.depth -= 1;
        r
    }

    fn map(&mut self, indent: usize) -> Result<Node> {
        let first = self.lines[self.i].no;
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(l) = self.lines.get(self.i) {
            if l.indent < indent {
                break;
            }
            let (no, text) = (l.no, l.text.clone());
            if l.indent > indent {
                return Err(self.err(
                    no,
                    format!(
                        "bad indentation: expected a key at column {} (or less), found column {}",
                        indent + 1,
                        l.indent + 1
                    ),
                ));
            }
            if is_seq_item(&text) {
                return Err(self.err(no, "a list item ('- ') where a mapping key was expected"));
            }
            let Some((key, rest)) = split_key(&text) else {
                if text.starts_with('?') {
                    return Err(self.err(no, "complex mapping keys ('? ') are not supported"));
                }
                return Err(self.err(no, format!("expected 'key: value', found {text:?}")));
            };
            self.i += 1;
            let v = self.value(rest, indent, no, true)?;
            entries.push((key, v));
        }
        Ok(Node::Map { entries, line: first })
    }

    fn seq(&mut self, indent: usize) -> Result<Node> {
        let first = self.lines[self.i].no;
        let mut items = Vec::new();
        while let Some(l) = self.lines.get(self.i) {
            if l.indent < indent || (l.indent == indent && !is_seq_item(&l.text)) {
                break;
            }
            let no = l.no;
            if l.indent > indent {
                return Err(self.err(
                    no,
                    format!(
                        "bad indentation: expected a list item at column {}, found column {}",
                        indent + 1,
                        l.indent + 1
                    ),
                ));
            }
            let after = &l.text[1..];
            let rest = after.trim_start_matches(' ');
            if rest.is_empty() {
                self.i += 1;
                items.push(self.value("", indent, no, false)?);
                continue;
            }
            let inner = indent + 1 + (after.len() - rest.len());
            if is_seq_item(rest) || split_key(rest).is_some() {
                // `- key: v` / `- - x`: the item is a block starting at the text's column.
                let rest = rest.to_owned();
                self.lines[self.i].indent = inner;
                self.lines[self.i].text = rest;
                items.push(self.block(inner)?);
            } else {
                let rest = rest.to_owned();
                self.i += 1;
                items.push(self.value(&rest, indent, no, false)?);
            }
        }
        Ok(Node::Seq { items, line: first })
    }

    /// The value after `key:` (or `-`) on line `no` of a block at `indent`; the line has been
    /// consumed. `in_map`: a sequence may follow at the same indent (`key:` then `- x`).
    fn value(&mut self, rest: &str, indent: usize, no: usize, in_map: bool) -> Result<Node> {
        let mut rest = rest.trim();
        // Anchors and tags on a value are ignored.
        while rest.starts_with('&') || rest.starts_with('!') {
            rest = rest.find(' ').map_or("", |p| rest[p..].trim_start());
        }
        if rest.is_empty() {
            return match self.lines.get(self.i) {
                Some(n) if n.indent > indent && (is_seq_item(&n.text) || split_key(&n.text).is_some()) => {
                    let ni = n.indent;
                    self.block(ni)
                }
                Some(n) if n.indent > indent => {
                    // A scalar or flow collection on the following, more indented line(s).
                    let (text, no) = (n.text.clone(), n.no);
                    self.i += 1;
                    self.value(&text, indent, no, false)
                }
                Some(n) if in_map && n.indent == indent && is_seq_item(&n.text) => self.seq(indent),
                _ => Ok(Node::Scalar(Scalar { text: String::new(), quoted: false, line: no })),
            };
        }
        let b0 = rest.as_bytes()[0];
        match b0 {
            b'[' | b'{' => {
                let mut text = rest.to_owned();
                let mut scan = FlowScan::default();
                scan.feed(&text);
                while !scan.closed() {
                    // Continuation lines may go back to the key's column (`key: [` ... `]`), as
                    // PyYAML accepts.
                    match self.lines.get(self.i) {
                        Some(n) if n.indent >= indent => {
                            text.push(' ');
                            text.push_str(&n.text);
                            scan.feed(&n.text);
                            self.i += 1;
                        }
                        _ => {
                            return Err(
                                self.err(no, "unterminated flow collection ('[' or '{' without its closing bracket)")
                            )
                        }
                    }
                }
                let mut f = Flow { s: text.as_bytes(), text: &text, p: 0, line: no, path: self.path, depth: 0 };
                let node = f.node()?;
                f.ws();
                if f.p != f.s.len() {
                    return Err(self.err(no, format!("unexpected text after a flow collection: {:?}", &text[f.p..])));
                }
                Ok(node)
            }
            b'|' | b'>' => {
                // Block scalar: the more-indented lines that follow, kept as text.
                let mut parts = Vec::new();
                while let Some(n) = self.lines.get(self.i) {
                    if n.indent <= indent {
                        break;
                    }
                    parts.push(n.text.clone());
                    self.i += 1;
                }
                let sep = if b0 == b'|' { "\n" } else { " " };
                Ok(Node::Scalar(Scalar { text: parts.join(sep), quoted: true, line: no }))
            }
            b'"' | b'\'' => {
                let Some((s, end)) = quoted(rest, b0) else {
                    return Err(self.err(
                        no,
                        "unterminated or malformed quoted string (multi-line quoted strings are not supported)",
                    ));
                };
                if !rest[end..].trim().is_empty() {
                    return Err(
                        self.err(no, format!("unexpected text after a quoted string: {:?}", rest[end..].trim()))
                    );
                }
                Ok(Node::Scalar(Scalar { text: s, quoted: true, line: no }))
            }
            _ => {
                if rest.contains(": ") || rest.ends_with(':') {
                    return Err(
                        self.err(no, format!("a mapping value is not allowed here: {rest:?} (check the indentation)"))
                    );
                }
                // A plain scalar continues on more indented lines that are not mapping entries
                // (a more indented `key: value` line is reported as bad indentation by the caller).
                let mut text = rest.to_owned();
                while let Some(n) = self.lines.get(self.i) {
                    if n.indent <= indent || is_seq_item(&n.text) || split_key(&n.text).is_some() {
                        break;
                    }
                    if n.text.contains(": ") {
                        return Err(self.err(
                            n.no,
                            format!("a mapping value is not allowed here: {:?} (check the indentation)", n.text),
                        ));
                    }
                    text.push(' ');
                    text.push_str(&n.text);
                    self.i += 1;
                }
                Ok(Node::Scalar(Scalar { text, quoted: false, line: no }))
            }
        }
    }
}

/// Tracks brackets and quotes over the lines of a flow collection, one line at a time.
#[derive(Default)]
struct FlowScan {
    depth: i64,
    quote: Option<u8>,
    escape: bool,
    /// The previous non-space byte outside quotes (a quote only opens at the start of a token).
    prev: Option<u8>,
}

impl FlowScan {
    fn feed(&mut self, t: &str) {
        for &c in t.as_bytes() {
            match self.quote {
                Some(_) if self.escape => self.escape = false,
                Some(b'"') if c == b'\\' => self.escape = true,
                Some(q) if c == q => {
                    self.quote = None;
                    self.prev = Some(c);
                }
                Some(_) => {}
                None => {
                    match c {
                        b'"' | b'\'' if matches!(self.prev, None | Some(b'[' | b'{' | b',' | b':')) => {
                            self.quote = Some(c)
                        }
                        b'[' | b'{' => self.depth += 1,
                        b']' | b'}' => self.depth -= 1,
                        _ => {}
                    }
                    if c != b' ' {
                        self.prev = Some(c);
                    }
                }
            }
        }
    }
    /// Every bracket opened so far is closed.
    fn closed(&self) -> bool {
        self.depth <= 0 && self.quote.is_none()
    }
}

/// Most nesting of flow collections.
const MAX_FLOW_DEPTH: usize = 32;

struct Flow<'a> {
    s: &'a [u8],
    text: &'a str,
    p: usize,
    line: usize,
    path: &'a str,
    depth: usize,
}

impl Flow<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::format(format!("{}: line {}: flow collection: {msg}", self.path, self.line))
    }
    fn ws(&mut self) {
        while self.p < self.s.len() && self.s[self.p] == b' ' {
            self.p += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.p).copied()
    }

    fn node(&mut self) -> Result<Node> {
        self.ws();
        match self.peek() {
            Some(b'[') => {
                self.enter()?;
                self.p += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b']') => {
                            self.p += 1;
                            break;
                        }
                        None => return Err(self.err("missing ']'")),
                        _ => {}
                    }
                    items.push(self.node()?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.p += 1,
                        Some(b']') => {}
                        _ => return Err(self.err(format!("expected ',' or ']' at {:?}", self.rest()))),
                    }
                }
                self.depth -= 1;
                Ok(Node::Seq { items, line: self.line })
            }
            Some(b'{') => {
                self.enter()?;
                self.p += 1;
                let mut entries = Vec::new();
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'}') => {
                            self.p += 1;
                            break;
                        }
                        None => return Err(self.err("missing '}'")),
                        _ => {}
                    }
                    let key = match self.scalar(true)? {
                        Node::Scalar(s) => s.text,
                        _ => return Err(self.err("a mapping key must be a scalar")),
                    };
                    self.ws();
                    let v = if self.peek() == Some(b':') {
                        self.p += 1;
                        self.ws();
                        match self.peek() {
                            Some(b',' | b'}') => {
                                Node::Scalar(Scalar { text: String::new(), quoted: false, line: self.line })
                            }
                            _ => self.node()?,
                        }
                    } else {
                        Node::Scalar(Scalar { text: String::new(), quoted: false, line: self.line })
                    };
                    entries.push((key, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.p += 1,
                        Some(b'}') => {}
                        _ => return Err(self.err(format!("expected ',' or '}}' at {:?}", self.rest()))),
                    }
                }
                self.depth -= 1;
                Ok(Node::Map { entries, line: self.line })
            }
            _ => self.scalar(false),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_FLOW_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_FLOW_DEPTH}")));
        }
        Ok(())
    }

    fn rest(&self) -> &str {
        self.text.get(self.p..).unwrap_or("")
    }

    /// A scalar in a flow collection; `key`: stop at `:` too.
    fn scalar(&mut self, key: bool) -> Result<Node> {
        self.ws();
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                let Some((s, end)) = quoted(self.rest(), q) else {
                    return Err(self.err("unterminated quoted string"));
                };
                self.p += end;
                Ok(Node::Scalar(Scalar { text: s, quoted: true, line: self.line }))
            }
            _ => {
                let start = self.p;
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b']' | b'}' | b'[' | b'{') {
                        break;
                    }
                    if c == b':' && (key || matches!(self.s.get(self.p + 1), None | Some(b' ' | b',' | b']' | b'}'))) {
                        break;
                    }
                    self.p += 1;
                }
                let text = self.text.get(start..self.p).unwrap_or("").trim();
                if matches!(self.peek(), Some(b'[' | b'{')) {
                    return Err(self.err(format!("unexpected bracket at {:?}", self.rest())));
                }
                Ok(Node::Scalar(Scalar { text: text.to_owned(), quoted: false, line: self.line }))
            }
        }
    }
}
