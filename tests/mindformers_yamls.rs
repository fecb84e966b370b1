//! Real MindFormers yamls against PyYAML: every value `parse_yaml` reads must be the value
//! PyYAML (`yaml.safe_load`, what MindFormers itself uses) reads from the same file.
//!
//! `tests/data/mindformers/` holds a sample of real LLaMA-family configs from the MindFormers
//! repository (Apache-2.0; `SOURCES.tsv` says which ref and path each came from), chosen for the
//! YAML they use (anchors and aliases, CRLF, quoted regex keys, flow sequences over several
//! lines, one-space indents, `None`, no final newline ...), and `oracle.jsonl`: what PyYAML read
//! from each. The whole corpus (1,754 yamls of every MindFormers branch and tag, 638 of them
//! LLaMA-family) is checked the same way by the ignored test, given the directory that
//! `tests/mindformers/make_oracle.py` wrote (`RUNLLAMA_MF_CORPUS=DIR`).

use std::path::Path;

use runllama::formats::mindformers::{parse_yaml, MfConfig, MfScaling};
use serde_json::Value;

/// One file's disagreements with the oracle (empty when none), or why it did not parse.
fn compare(c: &MfConfig, mc: &serde_json::Map<String, Value>, top: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut bad = Vec::new();
    // PyYAML's value of `key` as the Option our field holds: `None` for absent/null and for the
    // string "None" (MindFormers' spelling of no value in numeric keys).
    let get = |key: &str| mc.get(key).filter(|v| !v.is_null() && v.as_str() != Some("None"));
    let mut uint = |key: &str, ours: Option<usize>| {
        let want = get(key).map(|v| v.as_u64().map(|n| n as usize));
        if want != ours.map(Some) && !(want.is_none() && ours.is_none()) {
            bad.push(format!("{key}: ours {ours:?}, PyYAML {:?}", mc.get(key)));
        }
    };
    uint("hidden_size", c.hidden_size);
    uint("num_layers", c.num_layers);
    uint("num_heads", c.num_heads);
    uint("n_kv_heads", c.n_kv_heads);
    uint("vocab_size", c.vocab_size);
    uint("intermediate_size", c.intermediate_size);
    uint("multiple_of", c.multiple_of);
    uint("seq_length", c.seq_length);
    uint("max_position_embedding", c.max_position_embedding);
    let mut float = |key: &str, ours: Option<f64>| {
        let want = get(key).and_then(Value::as_f64);
        if want != ours {
            bad.push(format!("{key}: ours {ours:?}, PyYAML {:?}", mc.get(key)));
        }
    };
    float("ffn_dim_multiplier", c.ffn_dim_multiplier);
    float("rms_norm_eps", c.rms_norm_eps);
    float("theta", c.theta);
    let mut int = |key: &str, ours: Option<i64>| {
        let first = |v: &Value| v.as_array().and_then(|a| a.first()).cloned().unwrap_or_else(|| v.clone());
        let want = get(key).map(first).and_then(|v| v.as_i64());
        if want != ours {
            bad.push(format!("{key}: ours {ours:?}, PyYAML {:?}", mc.get(key)));
        }
    };
    int("bos_token_id", c.bos_token_id);
    int("eos_token_id", c.eos_token_id);
    int("pad_token_id", c.pad_token_id);
    let mut boolean = |key: &str, ours: Option<bool>| {
        let want = mc.get(key).and_then(Value::as_bool);
        if want != ours {
            bad.push(format!("{key}: ours {ours:?}, PyYAML {:?}", mc.get(key)));
        }
    };
    boolean("tie_word_embeddings", c.tie_word_embeddings);
    boolean("qkv_concat", c.qkv_concat);
    // Strings too: a plain `None` is no value to us (`vocab_file: None` names no file).
    let mut string = |key: &str, want: Option<&Value>, ours: &Option<String>| {
        let want = want.and_then(Value::as_str).filter(|s| *s != "None" || ours.as_deref() == Some("None"));
        if want != ours.as_deref() {
            bad.push(format!("{key}: ours {ours:?}, PyYAML {want:?}"));
        }
    };
    string("type", mc.get("type"), &c.config_type);
    string("extend_method", mc.get("extend_method"), &c.extend_method);
    string("model.arch.type", top.get("arch_type"), &c.arch_type);
    string("processor.tokenizer.type", top.get("tokenizer_type"), &c.tokenizer_type);
    string("processor.tokenizer.vocab_file", top.get("tokenizer_vocab_file"), &c.tokenizer_vocab_file);
    let scaling_ok = match (get("scaling_factor"), &c.scaling_factor) {
        (None, None) => true,
        (Some(v), Some(MfScaling::Factor(f))) => v.as_f64() == Some(*f),
        (Some(Value::Object(m)), Some(MfScaling::Map(ours))) => {
            let want: Vec<(String, f64)> = m.iter().filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f))).collect();
            let (mut a, mut b) = (want, ours.clone());
            a.sort_by(|x, y| x.0.cmp(&y.0));
            b.sort_by(|x, y| x.0.cmp(&y.0));
            a == b
        }
        _ => false,
    };
    if !scaling_ok {
        bad.push(format!("scaling_factor: ours {:?}, PyYAML {:?}", c.scaling_factor, mc.get("scaling_factor")));
    }
    bad
}

/// Whether PyYAML's values are ones `parse_yaml` accepts (a LLaMA config would load).
fn loadable(mc: &serde_json::Map<String, Value>) -> bool {
    let uint_keys = [
        "hidden_size",
        "num_layers",
        "num_heads",
        "n_kv_heads",
        "vocab_size",
        "intermediate_size",
        "multiple_of",
        "seq_length",
        "max_position_embedding",
    ];
    uint_keys
        .iter()
        .all(|k| mc.get(*k).is_none_or(|v| v.is_null() || v.as_u64().is_some() || v.as_str() == Some("None")))
}

struct Tally {
    /// Files with `model.model_config` compared.
    checked: usize,
    /// Of those, files refused for a key given twice.
    twice: usize,
    /// Files without `model.model_config` that PyYAML reads, parsed too.
    others: usize,
    refused: Vec<String>,
    wrong: Vec<String>,
}

/// Check every file of `oracle.jsonl` in `dir` that has `model.model_config`.
fn check_dir(dir: &Path, only_llama: bool) -> Tally {
    let oracle = std::fs::read_to_string(dir.join("oracle.jsonl")).expect("oracle.jsonl");
    let mut t = Tally { checked: 0, twice: 0, others: 0, refused: Vec::new(), wrong: Vec::new() };
    for line in oracle.lines() {
        let rec: Value = serde_json::from_str(line).expect("oracle line");
        let top = rec.as_object().expect("object");
        let name = top["file"].as_str().expect("file");
        let path = [dir.join("files").join(name), dir.join(name)].into_iter().find(|p| p.exists());
        let text = std::fs::read_to_string(path.unwrap_or_else(|| panic!("{name} missing"))).expect("utf-8");
        if top.get("has_model_config") != Some(&Value::Bool(true)) {
            // Not a model config (or not YAML to PyYAML either): whatever we say, it is not
            // that our subset lacks something PyYAML read.
            if top.get("ok") == Some(&Value::Bool(true)) && !only_llama {
                t.others += 1;
                if let Err(e) = parse_yaml(&text, name) {
                    if !e.message.contains("'model") && !e.message.contains("the yaml is empty") {
                        t.refused.push(format!("{name} (no model_config): {}", e.message));
                    }
                }
            }
            continue;
        }
        let mc = top["model_config"].as_object().expect("model_config");
        let llama = [mc.get("type"), top.get("arch_type")]
            .iter()
            .any(|v| v.and_then(|v| v.as_str()).is_some_and(|s| s.contains("Llama")));
        if only_llama && !llama {
            continue;
        }
        t.checked += 1;
        // A key given twice in model_config: PyYAML keeps the last, we refuse the file.
        let twice = top["duplicate_keys"].as_array().is_some_and(|d| {
            d.iter().filter_map(Value::as_array).any(|path| path.len() == 3 && path[..2] == ["model", "model_config"])
        });
        match parse_yaml(&text, name) {
            Ok(c) => {
                let bad = compare(&c, mc, top);
                if !bad.is_empty() {
                    t.wrong.push(format!("{name}: {}", bad.join("; ")));
                }
            }
            Err(e) if twice && e.message.contains("given twice") => t.twice += 1,
            Err(e) if loadable(mc) => t.refused.push(format!("{name}: {}", e.message)),
            Err(_) => {} // values a LLaMA loader cannot use (e.g. a list of num_heads): refused rightly
        }
    }
    t
}

#[test]
fn real_mindformers_yamls_read_as_pyyaml_reads_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mindformers");
    let t = check_dir(&dir, false);
    assert!(t.checked >= 20, "only {} sample yamls", t.checked);
    assert!(t.refused.is_empty() && t.wrong.is_empty(), "refused: {:#?}\nwrong: {:#?}", t.refused, t.wrong);
}

#[test]
#[ignore = "needs the MindFormers corpus: RUNLLAMA_MF_CORPUS=DIR (see the module doc)"]
fn mindformers_corpus() {
    let dir = std::env::var_os("RUNLLAMA_MF_CORPUS").expect("RUNLLAMA_MF_CORPUS");
    let only_llama = std::env::var_os("RUNLLAMA_MF_ALL").is_none();
    let t = check_dir(Path::new(&dir), only_llama);
    eprintln!(
        "{} yamls with model.model_config checked ({}; {} refused for a key given twice), {} others \
         parsed: {} refused, {} read differently",
        t.checked,
        if only_llama { "LLaMA family" } else { "all" },
        t.twice,
        t.others,
        t.refused.len(),
        t.wrong.len()
    );
    for r in t.refused.iter().chain(&t.wrong).take(40) {
        eprintln!("  {r}");
    }
    assert!(t.refused.is_empty() && t.wrong.is_empty());
}
