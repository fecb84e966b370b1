//! The C# binding (`include/RunLlama.cs`) and its programs (`examples-c/csharp/`), built with
//! Mono's `mcs` (C# 7.2) and run with `mono` against the library cargo built for this test run:
//!
//! - `Chat.exe` (the example) with no arguments prints the bundled model's reference story
//!   byte for byte, then one newline (as `run_model`), also with a prompt; a timeout cancels it.
//! - `BindingTest.exe` (the C# acceptance test: errors as exceptions, threads, cancellation,
//!   non-ASCII text and paths, log/progress callbacks that throw, the streaming detokenizer,
//!   disposal order) prints PASS/FAIL lines and must pass.
//! - Drift: every function `include/runllama.h` declares has a `[DllImport]` in RunLlama.cs's
//!   `Native` class with as many parameters, of compatible types (the mapping is spelled out in
//!   `allowed_cs_types`), and RunLlama.cs imports nothing the header lacks; every integer
//!   `#define` of the header is a C# constant of the same value; every struct of the header has
//!   the same size and field offsets in C (`cc` on a generated program) and in C#
//!   (`Marshal.SizeOf` / `Marshal.OffsetOf`, printed by `BindingTest.exe layout`). C# struct
//!   names are the C names in PascalCase (`llama_load_params` -> `LlamaLoadParams`), field names
//!   are the C names.
//!
//! The library is found beside the test executable (see tests/c_examples.rs) and reaches mono
//! through `LD_LIBRARY_PATH` (`[DllImport("runllama")]` -> `librunllama.so`). The C# programs are
//! compiled once per test process into a scratch directory. Without `mcs`/`mono` (Debian:
//! `mono-mcs mono-runtime`) the tests fail, unless `RUNLLAMA_SKIP_CSHARP_TESTS=1` is set; the
//! declaration drift test needs neither and always runs.

#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::host::{assert_ok_with_stdout, lib_dir, run_cmd, show, work_dir};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data_dir() -> PathBuf {
    root().join("tests/data")
}

fn stories_dir() -> PathBuf {
    data_dir().join("stories260K")
}

/// expected.txt and the newline Chat.exe ends its output with.
fn expected_stdout() -> Vec<u8> {
    let mut t = std::fs::read(stories_dir().join("expected.txt")).expect("tests/data/stories260K/expected.txt");
    assert_eq!(t.len(), 464, "expected.txt must be EXPECTED.md's 464-byte text");
    t.push(b'\n');
    t
}

fn skip() -> bool {
    std::env::var_os("RUNLLAMA_SKIP_CSHARP_TESTS").is_some_and(|v| v == "1")
}

struct Built {
    chat: PathBuf,
    test: PathBuf,
}

/// mcs RunLlama.cs into a library, then Chat.exe and BindingTest.exe against it (once).
fn built() -> &'static Built {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        for tool in ["mcs", "mono"] {
            match Command::new(tool).arg("--version").output() {
                Ok(o) if o.status.success() => {}
                _ => {
                    return Err(format!(
                        "`{tool}` is not installed (Debian: apt-get install mono-mcs mono-runtime); \
                         set RUNLLAMA_SKIP_CSHARP_TESTS=1 to skip the C# tests"
                    ))
                }
            }
        }
        let dir = work_dir().join("build");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let csharp = root().join("examples-c/csharp");
        let dll = dir.join("RunLlama.dll");
        let common = ["-langversion:7.2", "-warn:4", "-warnaserror+", "-debug", "-nologo"];
        let mut steps: Vec<Command> = Vec::new();
        let mut c = Command::new("mcs");
        c.args(common)
            .arg("-target:library")
            .arg(format!("-out:{}", dll.display()))
            .arg(root().join("include/RunLlama.cs"));
        steps.push(c);
        for (exe, src) in [("Chat.exe", "Chat.cs"), ("BindingTest.exe", "BindingTest.cs")] {
            let mut c = Command::new("mcs");
            c.args(common)
                .arg(format!("-r:{}", dll.display()))
                .arg("-r:System.Core.dll")
                .arg(format!("-out:{}", dir.join(exe).display()))
                .arg(csharp.join(src));
            steps.push(c);
        }
        for mut c in steps {
            let o = c.output().map_err(|e| format!("cannot run {c:?}: {e}"))?;
            if !o.status.success() {
                return Err(format!("{c:?} failed\n{}", show(&o)));
            }
        }
        Ok(Built { chat: dir.join("Chat.exe"), test: dir.join("BindingTest.exe") })
    });
    r.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

/// `mono <exe>` from the scratch dir, with this build's library first on the loader path.
fn mono(exe: &Path) -> Command {
    let mut ld = lib_dir().as_os_str().to_owned();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
        ld.push(":");
        ld.push(old);
    }
    let mut c = Command::new("mono");
    c.arg("--debug")
        .arg(exe)
        .current_dir(work_dir())
        .env("LD_LIBRARY_PATH", ld)
        .env_remove("RUNLLAMA_DATA_DIR")
        .stdin(Stdio::null());
    c
}

#[test]
fn csharp_example_prints_the_reference_story() {
    if skip() {
        return;
    }
    let chat = &built().chat;
    let expected = expected_stdout();
    // The bundled model found through RUNLLAMA_DATA_DIR ...
    let o = run_cmd(mono(chat).env("RUNLLAMA_DATA_DIR", stories_dir()));
    assert_ok_with_stdout(&o, &expected, "Chat.exe (RUNLLAMA_DATA_DIR)");
    assert!(String::from_utf8_lossy(&o.stderr).contains("generated 200 tokens"), "{}", show(&o));
    // ... and from the repository root, with no hint.
    let o = run_cmd(mono(chat).current_dir(root()));
    assert_ok_with_stdout(&o, &expected, "Chat.exe (from the repository root)");
    // A prompt that tokenizes to the reference's first ids: echoed, then continued.
    let o = run_cmd(mono(chat).env("RUNLLAMA_DATA_DIR", stories_dir()).args(["-p", "Once upon a time"]));
    assert_ok_with_stdout(&o, &expected, "Chat.exe -p \"Once upon a time\"");
    assert!(String::from_utf8_lossy(&o.stderr).contains("generated 196 tokens"), "{}", show(&o));
    // Explicit paths, another format (safetensors directory, its own tokenizer).
    let o = run_cmd(mono(chat).arg("-M").arg(stories_dir().join("hf")));
    assert_ok_with_stdout(&o, &expected, "Chat.exe -M hf");
    // A chat prompt runs (the story model makes no sense of it, but the template is applied).
    let o = run_cmd(mono(chat).env("RUNLLAMA_DATA_DIR", stories_dir()).args([
        "-u",
        "Hi 你好",
        "-S",
        "Be brief.",
        "-n",
        "80",
    ]));
    assert!(o.status.success(), "{}", show(&o));
    // A timeout cancels through the CancellationToken: exit 130, "cancelled".
    let o = run_cmd(mono(chat).env("RUNLLAMA_DATA_DIR", stories_dir()).args(["--timeout-ms", "0"]));
    assert_eq!(o.status.code(), Some(130), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cancelled"), "{}", show(&o));
    // Errors: status and message on stderr, exit 1; bad usage exit 2.
    let missing = work_dir().join("no-such-model.gguf").display().to_string();
    let o = run_cmd(mono(chat).args(["-M", &missing]));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("LLAMA_ERR_IO") && err.contains(&missing), "{}", show(&o));
    let o = run_cmd(mono(chat).args(["-n", "abc"]));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn csharp_binding_test_passes() {
    if skip() {
        return;
    }
    let scratch = work_dir().join("binding-test");
    let o = run_cmd(mono(&built().test).arg(data_dir()).arg(&scratch));
    let out = String::from_utf8_lossy(&o.stdout);
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(o.status.success() && failed.is_empty(), "BindingTest failed: {failed:#?}\n{}", show(&o));
    assert!(out.contains("checks passed"), "{}", show(&o));
    assert!(out.lines().filter(|l| l.starts_with("PASS")).count() >= 100, "too few checks ran\n{}", show(&o));
}

// ---------------------------------------------------------------------------------------------
// Parsing the C header and RunLlama.cs.

/// `snake_case` -> `PascalCase`.
fn pascal(s: &str) -> String {
    s.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// A C or C# source without its comments (string literals are not special-cased: neither file
/// has comment markers inside strings that matter here).
fn strip_comments(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            match s[i + 2..].find("*/") {
                Some(end) => i += end + 4,
                None => break,
            }
            out.push(' ');
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// A macro-like token: ALL_CAPS (LLAMA_API, LLAMA_CALL, ...).
fn is_macro(tok: &str) -> bool {
    tok.len() > 1
        && tok.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && tok.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Identifiers and single punctuation characters.
fn c_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            cur.push(ch);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !ch.is_whitespace() {
                out.push(ch.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A C type: its base name (typedefs resolved for scalars), pointer depth, and whether the
/// outermost pointee is const.
#[derive(Clone, Debug, PartialEq)]
struct CType {
    base: String,
    ptr: usize,
    written: String,
}

#[derive(Debug)]
struct CFunc {
    name: String,
    ret: CType,
    params: Vec<(String, CType)>,
}

#[derive(Default, Debug)]
struct Header {
    funcs: Vec<CFunc>,
    /// struct name -> field names in order.
    structs: BTreeMap<String, Vec<String>>,
    opaque: BTreeSet<String>,
    fn_ptrs: BTreeSet<String>,
    /// typedef name -> the type it names (scalar typedefs such as llama_status).
    aliases: BTreeMap<String, String>,
    /// integer #defines.
    defines: BTreeMap<String, i64>,
}

/// Type tokens (no name) -> CType; `const`, `struct` and macros dropped, arrays as pointers.
fn c_type(tokens: &[String], written: &str) -> CType {
    let mut base = String::new();
    let mut ptr = 0;
    for t in tokens {
        match t.as_str() {
            "*" | "[" => ptr += 1,
            "const" | "struct" | "volatile" | "]" | "extern" | "static" | "inline" => {}
            t if is_macro(t) => {}
            t if t.chars().all(|c| c.is_ascii_digit()) => {}
            t if base.is_empty() => base = t.to_string(),
            t => base = format!("{base} {t}"), // "unsigned int": kept as written, unmapped
        }
    }
    CType { base, ptr, written: written.split_whitespace().collect::<Vec<_>>().join(" ") }
}

/// Split `s` at top-level commas (not inside parentheses).
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for ch in s.chars() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// A parameter "const struct llama_model *model" -> ("model", CType).
fn c_param(p: &str) -> (String, CType) {
    let toks: Vec<String> = c_tokens(p).into_iter().filter(|t| !is_macro(t)).collect();
    let words: Vec<usize> = (0..toks.len())
        .filter(|&i| {
            toks[i].chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !matches!(toks[i].as_str(), "const" | "struct")
        })
        .collect();
    // The name is the last identifier when at least two "word" tokens exist (type + name).
    let (name, ty_toks) = if words.len() >= 2 {
        let last = *words.last().unwrap();
        let mut t = toks.clone();
        let name = t.remove(last);
        (name, t)
    } else {
        (String::new(), toks.clone())
    };
    (name, c_type(&ty_toks, p))
}

fn parse_header(text: &str) -> Header {
    let mut h = Header::default();
    let no_comments = strip_comments(text);
    let mut body = String::new();
    for line in no_comments.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('#') {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            if parts.len() == 3 && parts[0] == "define" {
                if let Ok(v) = parts[2].trim_matches(|c| c == '(' || c == ')').parse::<i64>() {
                    h.defines.insert(parts[1].to_string(), v);
                }
            }
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    let body = body.replace("extern \"C\" {", " ");
    // Statements at brace depth 0, ended by ';'.
    let mut stmts = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for ch in body.chars() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    depth = 0; // the end of extern "C"
                    continue;
                }
            }
            ';' if depth == 0 => {
                stmts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    for s in stmts {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        let toks = c_tokens(s);
        if toks.first().map(String::as_str) == Some("typedef") {
            if let (Some(open), Some(close)) = (s.find('{'), s.rfind('}')) {
                // typedef struct X { fields } X;
                let name = c_tokens(&s[..open]).last().cloned().unwrap_or_default();
                let mut fields = Vec::new();
                for f in s[open + 1..close].split(';') {
                    let ft = c_tokens(f);
                    if ft.is_empty() {
                        continue;
                    }
                    let field = if let Some(star) =
                        ft.iter().position(|t| t == "*").filter(|_| ft.contains(&"(".to_string()))
                    {
                        ft[star + 1..].iter().find(|t| !is_macro(t)).cloned().unwrap_or_default()
                    } else {
                        ft.iter()
                            .rev()
                            .find(|t| t.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
                            .cloned()
                            .unwrap_or_default()
                    };
                    fields.push(field);
                }
                h.structs.insert(name, fields);
            } else if toks.contains(&"(".to_string()) {
                // typedef R (CALL *name)(...);
                let star = toks.iter().position(|t| t == "*").expect("function pointer typedef");
                let name = toks[star + 1..].iter().find(|t| !is_macro(t)).cloned().unwrap_or_default();
                h.fn_ptrs.insert(name);
            } else if toks.get(1).map(String::as_str) == Some("struct") && toks.len() == 4 {
                h.opaque.insert(toks[3].clone());
            } else {
                let name = toks.last().cloned().unwrap_or_default();
                h.aliases.insert(name, toks[1..toks.len() - 1].join(" "));
            }
            continue;
        }
        if let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) {
            let head: Vec<String> = c_tokens(&s[..open]).into_iter().filter(|t| !is_macro(t)).collect();
            let name = head.last().cloned().expect("function name");
            let ret = c_type(&head[..head.len() - 1], &s[..open]);
            let inner = &s[open + 1..close];
            let params: Vec<(String, CType)> = if inner.trim() == "void" || inner.trim().is_empty() {
                Vec::new()
            } else {
                split_top(inner).iter().map(|p| c_param(p)).collect()
            };
            h.funcs.push(CFunc { name, ret, params });
        }
    }
    h
}

#[derive(Debug)]
struct CsFunc {
    name: String,
    ret: String,
    params: Vec<String>,
    attribute: String,
}

/// Attributes `[...]` removed (but not array brackets `[]`).
fn strip_attributes(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if depth == 0 && c == '[' && chars.get(i + 1) != Some(&']') {
            depth = 1;
        } else if depth > 0 {
            if c == '[' {
                depth += 1;
            } else if c == ']' {
                depth -= 1;
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// "ref Native.LlamaLoadParams p" -> "ref LlamaLoadParams".
fn cs_param_type(p: &str) -> String {
    let p = strip_attributes(p);
    let mut words: Vec<String> = p.split_whitespace().map(|w| w.trim_start_matches("Native.").to_string()).collect();
    words.pop(); // the name
    words.retain(|w| w != "this");
    words.join(" ")
}

/// Every `static extern` declaration of RunLlama.cs, with the [DllImport] attribute before it.
fn parse_cs(text: &str) -> Vec<CsFunc> {
    let src = strip_comments(text);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = src[from..].find("static extern ") {
        let at = from + pos;
        let end = at + src[at..].find(';').expect("; after a static extern");
        let decl = &src[at + "static extern ".len()..end];
        let attr_start = src[..at].rfind("[DllImport").unwrap_or(at);
        let attribute = src[attr_start..at].to_string();
        let decl = strip_attributes(decl);
        let open = decl.find('(').expect("(");
        let close = decl.rfind(')').expect(")");
        let mut head: Vec<&str> = decl[..open].split_whitespace().collect();
        let name = head.pop().expect("name").to_string();
        let ret = head.join(" ").trim_start_matches("Native.").to_string();
        let params = split_top(&decl[open + 1..close]).iter().map(|p| cs_param_type(p)).collect();
        out.push(CsFunc { name, ret, params, attribute });
        from = end;
    }
    out
}

/// The C# spellings a C type may have in `Native` (parameter or return).
fn allowed_cs_types(t: &CType, h: &Header, is_return: bool) -> Vec<String> {
    let scalar = |b: &str| -> Option<&'static str> {
        Some(match b {
            "int8_t" => "sbyte",
            "uint8_t" => "byte",
            "int16_t" => "short",
            "uint16_t" => "ushort",
            "int32_t" => "int",
            "uint32_t" => "uint",
            "int64_t" => "long",
            "uint64_t" => "ulong",
            "float" => "float",
            "double" => "double",
            "size_t" => "UIntPtr",
            "uintptr_t" => "UIntPtr",
            "intptr_t" => "IntPtr",
            _ => return None,
        })
    };
    let base = h.aliases.get(&t.base).cloned().unwrap_or_else(|| t.base.clone());
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let handle = |b: &str| format!("{}Handle", pascal(b.strip_prefix("llama_").unwrap_or(b)));
    match t.ptr {
        0 if base == "void" => v(&["void"]),
        0 => {
            if let Some(cs) = scalar(&base) {
                let mut r = v(&[cs]);
                if t.base == "llama_status" {
                    r.push("LlamaStatus".into());
                }
                r
            } else if h.fn_ptrs.contains(&t.base) {
                vec![pascal(&t.base), "IntPtr".into()]
            } else {
                Vec::new() // structs by value: not for hosts
            }
        }
        _ if is_return => v(&["IntPtr"]), // strings and arrays the library owns
        1 if base == "char" => v(&["byte[]", "IntPtr"]),
        1 if base == "void" => v(&["IntPtr"]),
        1 if h.opaque.contains(&base) => vec![handle(&base), "IntPtr".into()],
        1 if h.structs.contains_key(&base) => {
            let p = pascal(&base);
            vec![format!("ref {p}"), format!("out {p}"), format!("{p}[]"), "IntPtr".into()]
        }
        1 => match scalar(&base) {
            Some(cs) => vec![format!("ref {cs}"), format!("out {cs}"), format!("{cs}[]"), "IntPtr".into()],
            None => Vec::new(),
        },
        2 if h.opaque.contains(&base) => {
            let hd = handle(&base);
            vec![format!("out {hd}"), format!("ref {hd}"), "out IntPtr".into(), "ref IntPtr".into(), "IntPtr".into()]
        }
        _ => v(&["IntPtr"]),
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn csharp_native_declarations_match_the_header() {
    let h = parse_header(&read("include/runllama.h"));
    let cs_text = read("include/RunLlama.cs");
    let cs = parse_cs(&cs_text);
    assert!(h.funcs.len() >= 30, "only {} functions parsed from the header: {:#?}", h.funcs.len(), h.funcs);
    assert!(h.structs.contains_key("llama_load_params") && h.opaque.contains("llama_model"), "{h:#?}");
    let by_name: BTreeMap<&str, &CsFunc> = cs.iter().map(|f| (f.name.as_str(), f)).collect();
    assert_eq!(by_name.len(), cs.len(), "a function is imported twice in RunLlama.cs");
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in &h.funcs {
        // Structs returned by value (the *_default conveniences for C) are not for hosts: the
        // binding uses llama_*_params_init.
        if f.ret.ptr == 0 && h.structs.contains_key(&f.ret.base) {
            if by_name.contains_key(f.name.as_str()) {
                problems.push(format!("{}: returns a struct by value; RunLlama.cs must not import it", f.name));
            }
            continue;
        }
        let Some(c) = by_name.get(f.name.as_str()) else {
            problems.push(format!("{}: declared in runllama.h, missing from RunLlama.cs", f.name));
            continue;
        };
        checked += 1;
        if !(c.attribute.contains("CallingConvention.Cdecl") && c.attribute.contains("ExactSpelling = true")) {
            problems.push(format!(
                "{}: its [DllImport] lacks CallingConvention.Cdecl / ExactSpelling: {}",
                f.name, c.attribute
            ));
        }
        let ok_ret = allowed_cs_types(&f.ret, &h, true);
        if !ok_ret.contains(&c.ret) {
            problems
                .push(format!("{}: returns `{}` in C#, `{}` in C (allowed: {ok_ret:?})", f.name, c.ret, f.ret.written));
        }
        if c.params.len() != f.params.len() {
            problems.push(format!("{}: {} parameters in C#, {} in C", f.name, c.params.len(), f.params.len()));
            continue;
        }
        for (i, ((pname, pt), cst)) in f.params.iter().zip(&c.params).enumerate() {
            let ok = allowed_cs_types(pt, &h, false);
            if !ok.contains(cst) {
                problems.push(format!(
                    "{}: parameter {i} ({pname}): `{cst}` in C#, `{}` in C (allowed: {ok:?})",
                    f.name, pt.written
                ));
            }
        }
    }
    let c_names: BTreeSet<&str> = h.funcs.iter().map(|f| f.name.as_str()).collect();
    for c in &cs {
        if !c_names.contains(c.name.as_str()) {
            problems.push(format!("{}: imported by RunLlama.cs, not declared in runllama.h", c.name));
        }
    }
    let dllimports = strip_comments(&cs_text).matches("[DllImport(").count();
    if dllimports != cs.len() {
        problems.push(format!("{dllimports} [DllImport] attributes for {} extern declarations", cs.len()));
    }
    // Integer constants: every #define of the header, same value.
    let cs_src = strip_comments(&cs_text);
    for (name, value) in &h.defines {
        let decl = cs_src.lines().find(|l| l.contains("const ") && l.contains(&format!(" {name} =")));
        match decl.and_then(|l| l.split('=').nth(1)).map(|v| v.trim().trim_end_matches(';').trim().to_string()) {
            Some(v) if v.parse::<i64>().ok() == Some(*value) => {}
            Some(v) => problems.push(format!("constant {name}: {v} in C#, {value} in C")),
            None => problems.push(format!("constant {name} = {value}: missing from RunLlama.cs")),
        }
    }
    assert!(problems.is_empty(), "RunLlama.cs and runllama.h disagree:\n  {}", problems.join("\n  "));
    assert!(checked >= 30, "only {checked} functions compared");
}

#[test]
fn csharp_struct_layouts_match_the_c_header() {
    if skip() {
        return;
    }
    let h = parse_header(&read("include/runllama.h"));
    assert!(h.structs.len() >= 5, "{:#?}", h.structs);
    // C: sizeof and offsetof of every field of every struct, from the header's own parse.
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"runllama.h\"\nint main(void) {\n");
    for (s, fields) in &h.structs {
        c += &format!("    printf(\"struct {} %lu\\n\", (unsigned long)sizeof(struct {s}));\n", pascal(s));
        for f in fields {
            c +=
                &format!("    printf(\"field {} {f} %lu\\n\", (unsigned long)offsetof(struct {s}, {f}));\n", pascal(s));
        }
    }
    c += "    return 0;\n}\n";
    let dir = work_dir();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, c).unwrap();
    let cc = std::env::var("CC").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "cc".into());
    let o = run_cmd(
        Command::new(&cc)
            .args(["-std=c99", "-Wall", "-Werror", "-I"])
            .arg(root().join("include"))
            .arg(&src)
            .arg("-o")
            .arg(&exe),
    );
    assert!(o.status.success(), "compiling the layout probe failed\n{}", show(&o));
    let c_out = run_cmd(&mut Command::new(&exe));
    assert!(c_out.status.success(), "{}", show(&c_out));
    let cs_out = run_cmd(mono(&built().test).arg("layout"));
    assert!(cs_out.status.success(), "{}", show(&cs_out));
    let parse = |o: &Output| -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut m: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["struct", s, size] => {
                    m.entry(s.to_string()).or_default().insert("<sizeof>".into(), size.parse().unwrap());
                }
                ["field", s, f, off] => {
                    m.entry(s.to_string()).or_default().insert(f.to_string(), off.parse().unwrap());
                }
                _ => panic!("unexpected layout line {l:?}"),
            }
        }
        m
    };
    let (cl, csl) = (parse(&c_out), parse(&cs_out));
    let mut problems = Vec::new();
    for (s, fields) in &cl {
        let Some(csf) = csl.get(s) else {
            problems.push(format!("struct {s}: missing from RunLlama.cs's Native class"));
            continue;
        };
        for (f, off) in fields {
            match csf.get(f) {
                Some(o) if o == off => {}
                Some(o) => problems.push(format!("{s}.{f}: {o} in C#, {off} in C")),
                None => problems.push(format!("{s}.{f} (C {off}): missing in C#")),
            }
        }
        for f in csf.keys() {
            if !fields.contains_key(f) {
                problems.push(format!("{s}.{f}: in C# only"));
            }
        }
    }
    for s in csl.keys() {
        if !cl.contains_key(s) {
            problems.push(format!("struct {s}: in C# only"));
        }
    }
    assert!(
        problems.is_empty(),
        "struct layouts differ:\n  {}\n--- C ---\n{}--- C# ---\n{}",
        problems.join("\n  "),
        String::from_utf8_lossy(&c_out.stdout),
        String::from_utf8_lossy(&cs_out.stdout)
    );
    // This header's sizes (x86-64 and other LP64 targets; the load parameters grew from 64 bytes
    // with `bf16_products`).
    if cfg!(target_pointer_width = "64") {
        assert_eq!(cl["LlamaLoadParams"]["<sizeof>"], 72);
        assert_eq!(cl["LlamaSessionParams"]["<sizeof>"], 40);
        assert_eq!(cl["LlamaModelHparams"]["<sizeof>"], 56);
    }
}

#[test]
fn header_parser_understands_macros_and_multiline_declarations() {
    let h = parse_header(
        "#define X_OK 0\n#define X_ERR -3\n#define LLAMA_API\ntypedef struct llama_model llama_model;\n\
         typedef int32_t llama_status;\ntypedef void (LLAMA_CALL *llama_log_fn)(int32_t level, const char *line, void *ud);\n\
         typedef struct s { uint32_t size; int64_t shape[8]; const char *name; } s;\n\
         #ifdef __cplusplus\nextern \"C\" {\n#endif\n\
         LLAMA_API\nllama_status LLAMA_CALL f(const struct llama_model *model,\n   char *out, size_t *out_len);\n\
         LLAMA_API const char *LLAMA_CALL g(void);\n#ifdef __cplusplus\n}\n#endif\n",
    );
    assert_eq!(h.defines.get("X_ERR"), Some(&-3));
    assert!(h.opaque.contains("llama_model") && h.fn_ptrs.contains("llama_log_fn"));
    assert_eq!(h.structs["s"], vec!["size", "shape", "name"]);
    assert_eq!(h.funcs.len(), 2, "{:#?}", h.funcs);
    let f = &h.funcs[0];
    assert_eq!(f.name, "f");
    assert_eq!(f.ret.base, "llama_status");
    assert_eq!(
        f.params.iter().map(|(n, t)| (n.as_str(), t.base.as_str(), t.ptr)).collect::<Vec<_>>(),
        [("model", "llama_model", 1), ("out", "char", 1), ("out_len", "size_t", 1)]
    );
    assert_eq!(
        (h.funcs[1].name.as_str(), h.funcs[1].ret.base.as_str(), h.funcs[1].ret.ptr, h.funcs[1].params.len()),
        ("g", "char", 1, 0)
    );
    let cs = parse_cs(
        "[DllImport(L, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]\n\
         public static extern int f(ModelHandle model, [Out] byte[] @out, out UIntPtr out_len);",
    );
    assert_eq!(cs[0].params, ["ModelHandle", "byte[]", "out UIntPtr"]);
    assert!(allowed_cs_types(&f.params[2].1, &h, false).contains(&"out UIntPtr".to_string()));
    assert!(allowed_cs_types(&f.ret, &h, true).contains(&"LlamaStatus".to_string()));
}
