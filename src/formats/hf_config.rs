//! A Hugging Face `config.json`: the hyper-parameters beside safetensors shards (or given as
//! `config_path` for a llama2.c or `.ckpt` file), read into what the loader resolves.

use std::path::Path;

use crate::error::{Error, Result};
use crate::loader::Partial;

/// Read an HF `config.json` into `hp` (only the keys present).
pub(crate) fn apply(hp: &mut Partial, path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    let text = crate::fsio::read_small(path, "the config", crate::fsio::CONFIG_LIMIT)?;
    apply_text(hp, &text, &shown)
}

/// [`apply`] of the config's bytes.
fn apply_text(hp: &mut Partial, text: &[u8], shown: &str) -> Result<()> {
    let v = crate::jsonsize::parse(text, 1 << 20, shown)?;
    let obj = v.as_object().ok_or_else(|| Error::format(format!("{shown}: the config is not a JSON object")))?;
    if let Some(mt) = obj.get("model_type").and_then(|m| m.as_str()) {
        if mt != "llama" {
            return Err(Error::unsupported(format!("{shown}: model_type {mt:?} is not \"llama\"")));
        }
    }
    if let Some(rs) = obj.get("rope_scaling") {
        if !rs.is_null() {
            return Err(Error::unsupported(format!("{shown}: rope_scaling {rs} is not supported")));
        }
    }
    let uint = |k: &str| -> Result<Option<usize>> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| Error::format(format!("{shown}: {k:?} is {x}, expected a non-negative integer"))),
        }
    };
    let float = |k: &str| -> Result<Option<f32>> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .map(|n| Some(n as f32))
                .ok_or_else(|| Error::format(format!("{shown}: {k:?} is {x}, expected a number"))),
        }
    };
    // A list of ids (LLaMA 3.1 lists several EOS ids): the first one is "the" EOS.
    let id = |k: &str| -> Result<Option<u32>> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Array(a)) => Ok(a.first().and_then(|x| x.as_u64()).map(|n| n as u32)),
            Some(x) => x
                .as_u64()
                .map(|n| Some(n as u32))
                .ok_or_else(|| Error::format(format!("{shown}: {k:?} is {x}, expected a token id"))),
        }
    };
    let set = |dst: &mut Option<usize>, v: Option<usize>| {
        if v.is_some() {
            *dst = v;
        }
    };
    set(&mut hp.n_vocab, uint("vocab_size")?);
    set(&mut hp.n_embd, uint("hidden_size")?);
    set(&mut hp.n_layer, uint("num_hidden_layers")?);
    set(&mut hp.n_head, uint("num_attention_heads")?);
    set(&mut hp.n_head_kv, uint("num_key_value_heads")?);
    set(&mut hp.n_ff, uint("intermediate_size")?);
    set(&mut hp.n_ctx_train, uint("max_position_embeddings")?);
    set(&mut hp.head_dim, uint("head_dim")?);
    if let Some(t) = float("rope_theta")? {
        hp.rope_theta = Some(t);
    }
    if let Some(e) = float("rms_norm_eps")? {
        hp.norm_eps = Some(e);
    }
    if let Some(t) = obj.get("tie_word_embeddings") {
        hp.tied = Some(t.as_bool().ok_or_else(|| {
            Error::format(format!("{shown}: \"tie_word_embeddings\" is {t}, expected true or false"))
        })?);
    }
    if let Some(b) = id("bos_token_id")? {
        hp.bos = Some(b);
    }
    if let Some(e) = id("eos_token_id")? {
        hp.eos = Some(e);
    }
    Ok(())
}

/// An HF `config.json` (`text`) read as the loader reads it (for the fuzz target).
pub(crate) fn check(text: &[u8]) -> Result<()> {
    apply_text(&mut Partial::default(), text, "config.json")
}
