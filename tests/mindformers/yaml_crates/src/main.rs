//! The maintained YAML crates against PyYAML on the MindFormers corpus (issue 19: "try a
//! maintained YAML crate against the real MindFormers yamls and keep whichever is sounder").
//!
//! Each crate's event parser (`yaml-rust2`, `saphyr-parser`) builds a tree; plain scalars are
//! typed by PyYAML's YAML 1.1 rules (`resolve`: what MindFormers' `yaml.SafeLoader` does, which
//! neither crate's YAML 1.2 loader does), aliases are resolved by copying the anchored node (as
//! PyYAML does; fine for this corpus, quadratic or worse on hostile input), and the same record
//! that `make_oracle.py` wrote from PyYAML is built and compared with `oracle.jsonl`.
//!
//! cargo run --release --manifest-path tests/mindformers/yaml_crates/Cargo.toml -- CORPUS_DIR
//! (CORPUS_DIR as written by `make_oracle.py`). Development only; nothing here runs in CI.
use serde_json::{Map, Value};
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Node {
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Scalar { text: String, plain: bool, tag: Option<String> },
}

#[derive(Debug)]
enum Ev {
    Alias(usize),
    Scalar(String, bool, usize, Option<String>),
    SeqStart(usize),
    MapStart(usize),
    End,
    Other,
}

struct Builder {
    stack: Vec<(Node, usize, Option<Node>)>, // container, anchor, pending key
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    aliases: usize,
}

impl Builder {
    fn put(&mut self, n: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, n.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(n)
                }
            }
            Some((Node::Seq(v), _, _)) => v.push(n),
            Some((Node::Map(m), _, k)) => match k.take() {
                None => *k = Some(n),
                Some(key) => m.push((key, n)),
            },
            _ => unreachable!(),
        }
    }
    fn ev(&mut self, e: Ev) {
        match e {
            Ev::Alias(id) => {
                self.aliases += 1;
                let n = self.anchors.get(&id).cloned().unwrap_or(Node::Scalar {
                    text: String::new(),
                    plain: true,
                    tag: None,
                });
                self.put(n, 0)
            }
            Ev::Scalar(t, plain, a, tag) => self.put(Node::Scalar { text: t, plain, tag }, a),
            Ev::SeqStart(a) => self.stack.push((Node::Seq(vec![]), a, None)),
            Ev::MapStart(a) => self.stack.push((Node::Map(vec![]), a, None)),
            Ev::End => {
                let (n, a, _) = self.stack.pop().unwrap();
                self.put(n, a)
            }
            Ev::Other => {}
        }
    }
}

fn strip_us(s: &str) -> String {
    s.replace('_', "")
}

/// PyYAML SafeLoader implicit resolution of a plain scalar.
fn resolve(t: &str) -> Value {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => return Value::Bool(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => return Value::Bool(false),
        _ => {}
    }
    let b = t.as_bytes();
    let (sign, body) = match b[0] {
        b'-' => (-1i128, &t[1..]),
        b'+' => (1, &t[1..]),
        _ => (1, t),
    };
    let digits_us = |s: &str, f: fn(u8) -> bool| !s.is_empty() && s.bytes().all(|c| f(c) || c == b'_');
    // ints
    if body == "0" {
        return Value::from(0);
    }
    if let Some(h) = body.strip_prefix("0x") {
        if digits_us(h, |c| c.is_ascii_hexdigit()) {
            if let Ok(v) = i128::from_str_radix(&strip_us(h), 16) {
                return Value::from((sign * v) as i64);
            }
        }
    }
    if let Some(h) = body.strip_prefix("0b") {
        if digits_us(h, |c| c == b'0' || c == b'1') {
            if let Ok(v) = i128::from_str_radix(&strip_us(h), 2) {
                return Value::from((sign * v) as i64);
            }
        }
    }
    if body.len() > 1 && body.starts_with('0') && digits_us(&body[1..], |c| (b'0'..=b'7').contains(&c)) {
        if let Ok(v) = i128::from_str_radix(&strip_us(&body[1..]), 8) {
            return Value::from((sign * v) as i64);
        }
    }
    if body.as_bytes().first().is_some_and(|c| (b'1'..=b'9').contains(c)) && digits_us(body, |c| c.is_ascii_digit()) {
        if let Ok(v) = strip_us(body).parse::<i128>() {
            return Value::from((sign * v) as i64);
        }
    }
    // floats: [-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9_]+([eE][-+][0-9]+)? | inf | nan
    match body {
        ".inf" | ".Inf" | ".INF" => return Value::String(if sign < 0 { "-inf".into() } else { "inf".into() }),
        _ => {}
    }
    if matches!(t, ".nan" | ".NaN" | ".NAN") {
        return Value::String("nan".into());
    }
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let exp_ok = exp.is_none_or(|e| {
        e.len() > 1 && (e.starts_with('-') || e.starts_with('+')) && e[1..].bytes().all(|c| c.is_ascii_digit())
    });
    if exp_ok {
        if let Some(dot) = mant.find('.') {
            let (ip, fp) = (&mant[..dot], &mant[dot + 1..]);
            let ip_ok = if ip.is_empty() {
                t.starts_with('.') && !fp.is_empty() && digits_us(fp, |c| c.is_ascii_digit())
            } else {
                ip.as_bytes()[0].is_ascii_digit() && digits_us(ip, |c| c.is_ascii_digit())
            };
            let fp_ok = fp.bytes().all(|c| c.is_ascii_digit() || c == b'_');
            if ip_ok && fp_ok {
                let s = strip_us(t);
                if let Ok(v) = s.parse::<f64>() {
                    return serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null);
                }
            }
        }
    }
    Value::String(t.to_string())
}

fn to_json(n: &Node) -> Value {
    match n {
        Node::Scalar { text, plain, tag } => match tag.as_deref() {
            Some(t) if t.ends_with("str") => Value::String(text.clone()),
            _ if *plain => resolve(text),
            _ => Value::String(text.clone()),
        },
        Node::Seq(v) => Value::Array(v.iter().map(to_json).collect()),
        Node::Map(m) => {
            let mut o = Map::new();
            for (k, v) in m {
                let ks = match to_json(k) {
                    Value::String(s) => s,
                    Value::Bool(b) => {
                        if b {
                            "True".into()
                        } else {
                            "False".into()
                        }
                    }
                    Value::Null => "None".into(),
                    other => other.to_string(),
                };
                o.insert(ks, to_json(v));
            }
            Value::Object(o)
        }
    }
}

fn key_text(n: &Node) -> String {
    match n {
        Node::Scalar { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

fn dups(n: &Node, path: &mut Vec<Value>, out: &mut Vec<Value>) {
    match n {
        Node::Map(m) => {
            let mut seen = std::collections::HashSet::new();
            for (k, v) in m {
                let kt = key_text(k);
                path.push(Value::String(kt.clone()));
                if !seen.insert(kt) {
                    out.push(Value::Array(path.clone()));
                }
                dups(v, path, out);
                path.pop();
            }
        }
        Node::Seq(v) => {
            for (i, x) in v.iter().enumerate() {
                path.push(Value::from(i));
                dups(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

const KEYS: &[&str] = &[
    "type",
    "hidden_size",
    "num_layers",
    "num_heads",
    "n_kv_heads",
    "vocab_size",
    "intermediate_size",
    "multiple_of",
    "ffn_dim_multiplier",
    "rms_norm_eps",
    "theta",
    "seq_length",
    "max_position_embedding",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "tie_word_embeddings",
    "qkv_concat",
    "extend_method",
    "scaling_factor",
];

fn get<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut d = v;
    for k in keys {
        d = d.as_object()?.get(*k)?;
    }
    Some(d)
}

fn record(name: &str, root: Result<Option<Node>, String>) -> Value {
    let mut rec = Map::new();
    rec.insert("file".into(), name.into());
    match root {
        Err(e) => {
            rec.insert("ok".into(), false.into());
            rec.insert("has_model_config".into(), false.into());
            rec.insert("model_config".into(), Value::Object(Map::new()));
            rec.insert("duplicate_keys".into(), Value::Array(vec![]));
            rec.insert("error".into(), e.into());
        }
        Ok(root) => {
            rec.insert("ok".into(), true.into());
            let doc = root.as_ref().map(to_json).unwrap_or(Value::Null);
            let mut d = vec![];
            if let Some(r) = &root {
                dups(r, &mut vec![], &mut d);
            }
            let mc = get(&doc, &["model", "model_config"]).and_then(Value::as_object);
            rec.insert("has_model_config".into(), mc.is_some().into());
            let mut m = Map::new();
            if let Some(mc) = mc {
                for k in KEYS {
                    if let Some(v) = mc.get(*k) {
                        m.insert(k.to_string(), v.clone());
                    }
                }
            }
            rec.insert("model_config".into(), Value::Object(m));
            rec.insert("duplicate_keys".into(), Value::Array(d));
            for (key, path) in [
                ("arch_type", &["model", "arch", "type"][..]),
                ("tokenizer_type", &["processor", "tokenizer", "type"]),
                ("tokenizer_vocab_file", &["processor", "tokenizer", "vocab_file"]),
            ] {
                if let Some(v) = get(&doc, path).filter(|v| !v.is_null()) {
                    rec.insert(key.into(), v.clone());
                }
            }
        }
    }
    Value::Object(rec)
}

fn run_yaml_rust2(text: &str) -> (Result<Option<Node>, String>, usize) {
    use yaml_rust2::parser::{Event, Parser};
    use yaml_rust2::scanner::TScalarStyle;
    let mut p = Parser::new_from_str(text);
    let mut b = Builder { stack: vec![], anchors: HashMap::new(), root: None, aliases: 0 };
    let mut docs = 0;
    loop {
        match p.next_token() {
            Err(e) => return (Err(e.to_string()), b.aliases),
            Ok((ev, _)) => {
                let e = match ev {
                    Event::StreamEnd => break,
                    Event::DocumentStart => {
                        docs += 1;
                        Ev::Other
                    }
                    Event::Alias(a) => Ev::Alias(a),
                    Event::Scalar(s, st, a, tag) => {
                        Ev::Scalar(s, st == TScalarStyle::Plain, a, tag.map(|t| format!("{}{}", t.handle, t.suffix)))
                    }
                    Event::SequenceStart(a, _) => Ev::SeqStart(a),
                    Event::MappingStart(a, _) => Ev::MapStart(a),
                    Event::SequenceEnd | Event::MappingEnd => Ev::End,
                    _ => Ev::Other,
                };
                b.ev(e);
            }
        }
    }
    if docs > 1 {
        return (Err(format!("{docs} documents")), b.aliases);
    }
    (Ok(b.root), b.aliases)
}

fn run_saphyr(text: &str) -> (Result<Option<Node>, String>, usize) {
    use saphyr_parser::{Event, Parser, ScalarStyle};
    let p = Parser::new_from_str(text);
    let mut b = Builder { stack: vec![], anchors: HashMap::new(), root: None, aliases: 0 };
    let mut docs = 0;
    for r in p {
        match r {
            Err(e) => return (Err(e.to_string()), b.aliases),
            Ok((ev, _)) => {
                let e = match ev {
                    Event::StreamEnd => break,
                    Event::DocumentStart(_) => {
                        docs += 1;
                        Ev::Other
                    }
                    Event::Alias(a) => Ev::Alias(a),
                    Event::Scalar(s, st, a, tag) => Ev::Scalar(
                        s.into_owned(),
                        st == ScalarStyle::Plain,
                        a,
                        tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                    ),
                    Event::SequenceStart(a, _) => Ev::SeqStart(a),
                    Event::MappingStart(a, _) => Ev::MapStart(a),
                    Event::SequenceEnd | Event::MappingEnd => Ev::End,
                    _ => Ev::Other,
                };
                b.ev(e);
            }
        }
    }
    if docs > 1 {
        return (Err(format!("{docs} documents")), b.aliases);
    }
    (Ok(b.root), b.aliases)
}

fn check(dir: &str, which: &str) {
    let oracle = std::fs::read_to_string(format!("{dir}/oracle.jsonl")).expect("oracle.jsonl");
    let (mut same, mut differ, mut refused, mut llama_differ, mut alias_files, mut mc_files, mut mc_same) =
        (0, 0, 0, 0, 0, 0, 0);
    let t0 = std::time::Instant::now();
    for line in oracle.lines() {
        let want: Value = serde_json::from_str(line).expect("oracle line");
        let name = want["file"].as_str().expect("file name");
        let bytes = std::fs::read(format!("{dir}/files/{name}")).expect("corpus file");
        let Ok(text) = std::str::from_utf8(&bytes) else {
            println!("{which}: {name}: not UTF-8, skipped");
            continue;
        };
        let text = text.trim_start_matches('\u{feff}');
        let (root, aliases) = if which == "yaml-rust2" { run_yaml_rust2(text) } else { run_saphyr(text) };
        alias_files += usize::from(aliases > 0);
        let was_refused = root.is_err();
        let got = record(name, root);
        let without_error = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().map(|o| o.remove("error"));
            v
        };
        let has_mc = want["has_model_config"] == true;
        mc_files += usize::from(has_mc);
        if without_error(&want) == without_error(&got) {
            same += 1;
            mc_same += usize::from(has_mc);
        } else {
            differ += 1;
            refused += usize::from(was_refused);
            let llama = [&want["model_config"]["type"], &want["arch_type"]]
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.contains("Llama")));
            llama_differ += usize::from(llama && has_mc);
            println!("{which}: {name}\n  PyYAML {want}\n  crate  {got}");
        }
    }
    println!(
        "{which}: {same} files as PyYAML, {differ} not ({refused} of them refused; {llama_differ} LLaMA-family \
         configs); with model.model_config: {mc_same} of {mc_files}; files with aliases: {alias_files}; {:.2?}",
        t0.elapsed()
    );
}

/// Time and outcome of each crate's parser on inputs built to be costly (no tree typing).
fn hostile(which: &str) {
    let cases: Vec<(&str, String)> = vec![
        ("100,000 nested [", "a: ".to_string() + &"[".repeat(100_000)),
        ("100,000 nested {a:", "a: ".to_string() + &"{a: ".repeat(100_000)),
        ("5,000 nested block sequences", (0..5_000).map(|i| format!("{}- \n", " ".repeat(i))).collect()),
        ("5,000 nested block mappings", (0..5_000).map(|i| format!("{}k:\n", " ".repeat(i))).collect()),
        ("a 10 MB plain scalar", format!("a: {}\n", "x".repeat(10_000_000))),
        ("1,000,000 keys", (0..1_000_000).map(|i| format!("k{i}: {i}\n")).collect()),
    ];
    for (name, text) in cases {
        let t0 = std::time::Instant::now();
        let events = if which == "yaml-rust2" { count_yaml_rust2(&text) } else { count_saphyr(&text) };
        println!("{which}: {name} ({} bytes): {:.2?}, {events:?}", text.len(), t0.elapsed());
    }
}

fn count_yaml_rust2(text: &str) -> Result<usize, String> {
    let mut p = yaml_rust2::parser::Parser::new_from_str(text);
    let mut n = 0;
    loop {
        match p.next_token().map_err(|e| e.to_string())? {
            (yaml_rust2::parser::Event::StreamEnd, _) => return Ok(n),
            _ => n += 1,
        }
    }
}

fn count_saphyr(text: &str) -> Result<usize, String> {
    let mut n = 0;
    for ev in saphyr_parser::Parser::new_from_str(text) {
        ev.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: yaml-crates-vs-pyyaml CORPUS_DIR");
        std::process::exit(2);
    };
    for which in ["yaml-rust2", "saphyr-parser"] {
        check(&dir, which);
        hostile(which);
    }
}
