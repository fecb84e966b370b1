//! The C examples (`examples-c/`) built by the system C compiler against `include/runllama.h`
//! and the library cargo built for this very test run, then run on the bundled stories260K
//! model: `run_model` must print llama2.c's reference story, `run_tokenizer` the reference ids,
//! and `api_test` (the C acceptance test of the contract) must pass, also under ASan + UBSan.
//!
//! Finding the library: `cargo test` compiles the `runllama` lib unit once with all its crate
//! types (`--crate-type cdylib --crate-type staticlib --crate-type rlib`, see Cargo.toml), into
//! `target/<profile>/deps/` (the cdylib and staticlib file names carry no hash) before it links
//! the integration tests, which live in the same `deps/` directory. So the test looks beside its
//! own executable (`std::env::current_exe()`), then one level up (cargo's uplifted copies). It
//! never runs cargo itself.
//!
//! The C compiler is `$CC` (default `cc`) and `$CXX` (default `c++`). With no C compiler the
//! tests fail, unless `RUNLLAMA_SKIP_C_TESTS=1` is set.

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::host::{assert_ok_with_stdout, lib_dir, run_cmd, show, work_dir};

const CFLAGS: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g"];
const CXXFLAGS: &[&str] = &["-x", "c++", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g"];
const SANITIZE: &[&str] = &["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data_dir() -> PathBuf {
    root().join("tests/data/stories260K")
}

fn data(rel: &str) -> String {
    data_dir().join(rel).display().to_string()
}

/// tests/data/stories260K/expected.txt: EXPECTED.md's text, 464 bytes, no final newline.
fn expected_text() -> Vec<u8> {
    let t = std::fs::read(data_dir().join("expected.txt")).expect("tests/data/stories260K/expected.txt");
    assert_eq!(t.len(), 464, "expected.txt must be EXPECTED.md's 464-byte text");
    t
}

/// What run_model prints for the reference run: the text and one final newline (as llama2.c).
fn expected_stdout() -> Vec<u8> {
    let mut t = expected_text();
    t.push(b'\n');
    t
}

fn skip() -> bool {
    std::env::var_os("RUNLLAMA_SKIP_C_TESTS").is_some_and(|v| v == "1")
}

fn compiler(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| default.to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Shared,
    Static,
    SharedCxx,
    SharedSanitized,
    /// Against the frozen version-1 header (tests/c/v1/runllama.h).
    SharedV1Header,
    /// Not linked: the program loads the library at run time.
    Runtime,
}

/// Compile `examples-c/<src>.c` (or `tests/c/<src>.c`) into the scratch dir (once per process
/// and variant).
fn build(src: &str, link: Link) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Result<PathBuf, String>>>> =
        OnceLock::new();
    let key = format!(
        "{src}{}",
        match link {
            Link::Shared => "",
            Link::Static => "-static",
            Link::SharedCxx => "-cxx",
            Link::SharedSanitized => "-asan",
            Link::SharedV1Header => "-v1",
            Link::Runtime => "-runtime",
        }
    );
    let map = BUILT.get_or_init(Default::default);
    // Compile outside the lock would allow parallel builds of different programs, but a second
    // request for the same one must wait: keep it simple and serialize.
    let mut g = map.lock().unwrap_or_else(|p| p.into_inner());
    let r = g
        .entry(key.clone())
        .or_insert_with(|| {
            let lib = lib_dir();
            let out = work_dir().join(&key);
            let (cc, flags): (String, &[&str]) = if link == Link::SharedCxx {
                (compiler("CXX", "c++"), CXXFLAGS)
            } else {
                (compiler("CC", "cc"), CFLAGS)
            };
            let include = if link == Link::SharedV1Header { "tests/c/v1" } else { "include" };
            let file = ["examples-c", "tests/c"]
                .map(|d| root().join(d).join(format!("{src}.c")))
                .into_iter()
                .find(|f| f.is_file())
                .ok_or_else(|| format!("{src}.c is in neither examples-c/ nor tests/c/"))?;
            let mut cmd = Command::new(&cc);
            cmd.args(flags)
                .arg("-I")
                .arg(root().join(include))
                .arg(format!("-DRUNLLAMA_DATA_DIR=\"{}\"", data_dir().display()));
            if link == Link::SharedSanitized {
                cmd.args(SANITIZE);
            }
            cmd.arg(file).arg("-o").arg(&out);
            match link {
                Link::Static => {
                    cmd.arg(lib.join("librunllama.a")).args(["-lpthread", "-ldl", "-lm"]);
                }
                Link::Runtime => {
                    cmd.arg("-ldl");
                }
                _ => {
                    cmd.arg("-L").arg(lib).arg(format!("-Wl,-rpath,{}", lib.display())).args(["-lrunllama", "-lm"]);
                }
            }
            let o = cmd.output().map_err(|e| format!("cannot run the compiler {cc:?}: {e}"))?;
            if !o.status.success() {
                return Err(format!("compiling {key} failed: {cmd:?}\n{}", show(&o)));
            }
            Ok(out)
        })
        .clone();
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A command for a built program, from the scratch dir (not the repo) and without the loader
/// path cargo sets for tests, so that it must find the library through its rpath and the model
/// through its compile-time data dir.
fn program(path: &Path) -> Command {
    let mut c = Command::new(path);
    c.current_dir(work_dir())
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("DYLD_LIBRARY_PATH")
        .env_remove("DYLD_FALLBACK_LIBRARY_PATH")
        .env_remove("RUNLLAMA_DATA_DIR")
        .stdin(Stdio::null());
    c
}

fn run_model(args: &[&str]) -> Output {
    run_cmd(program(&build("run_model", Link::Shared)).args(args))
}

#[test]
fn run_model_with_no_arguments_prints_the_reference_story() {
    if skip() {
        return;
    }
    let o = run_model(&[]);
    assert_ok_with_stdout(&o, &expected_stdout(), "run_model (defaults)");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tokens/s"), "no tokens/s on stderr:\n{err}");
    assert!(err.contains("load "), "no load time on stderr:\n{err}");
    assert!(err.contains("generated 200 tokens"), "not 200 generated tokens:\n{err}");
    assert!(err.contains("prefill 1 tokens"), "the prefill is not BOS alone:\n{err}");
}

#[test]
fn run_model_gives_the_reference_story_on_every_f32_and_f16_format() {
    if skip() {
        return;
    }
    let expected = expected_stdout();
    for rel in ["stories260K-f32.gguf", "stories260K-f16.gguf", "hf", "hf/model.safetensors", "hf/fp16"] {
        let o = run_model(&["-M", &data(rel), "-T", "2"]);
        assert_ok_with_stdout(&o, &expected, rel);
    }
    // The llama2.c .bin with an explicit tokenizer: the same as the defaults.
    let o = run_model(&["-M", &data("stories260K.bin"), "-F", &data("tok512.bin"), "-V", "2"]);
    assert_ok_with_stdout(&o, &expected, "stories260K.bin -F tok512.bin -V 2");
    // ... and with the SentencePiece model instead of the llama2.c tokenizer.
    let o = run_model(&["-M", &data("stories260K.bin"), "-F", &data("tok512.model")]);
    assert_ok_with_stdout(&o, &expected, "stories260K.bin -F tok512.model");
}

#[test]
fn run_model_on_bf16_weights_agrees_for_the_first_150_tokens() {
    if skip() {
        return;
    }
    // EXPECTED.md: BF16 weights with f32 compute give the reference ids for 185 positions.
    let f32_150 = run_model(&["-M", &data("hf"), "-n", "150"]);
    assert!(f32_150.status.success(), "{}", show(&f32_150));
    let text = &f32_150.stdout[..f32_150.stdout.len() - 1];
    assert!(expected_text().starts_with(text), "-n 150 is not a prefix of the reference story\n{}", show(&f32_150));
    assert!(String::from_utf8_lossy(&f32_150.stderr).contains("generated 150 tokens"), "{}", show(&f32_150));
    let bf16_150 = run_model(&["-M", &data("hf/bf16"), "-n", "150"]);
    assert_ok_with_stdout(&bf16_150, &f32_150.stdout, "hf/bf16 -n 150");
    let bf16_200 = run_model(&["-M", &data("hf/bf16")]);
    assert!(bf16_200.status.success(), "{}", show(&bf16_200));
    assert!(bf16_200.stdout.starts_with(text), "hf/bf16 (200): the first 150 tokens differ\n{}", show(&bf16_200));
}

#[test]
fn run_model_with_a_prompt_prefills_it_and_continues_the_story() {
    if skip() {
        return;
    }
    // "Once upon a time" tokenizes to the first four reference ids, so greedy decoding after a
    // batched prefill of [BOS, 403, 407, 261, 378] must continue with the reference story.
    let o = run_model(&["-p", "Once upon a time"]);
    assert_ok_with_stdout(&o, &expected_stdout(), "run_model -p \"Once upon a time\"");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("prefill 5 tokens"), "the prompt was not one 5-token step:\n{err}");
    assert!(err.contains("generated 196 tokens"), "{err}");
    // -n counts positions, prompt included: 10 positions = the prompt's 5 + 6 tokens.
    let o = run_model(&["-p", "Once upon a time", "-n", "10"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("generated 6 tokens"), "{}", show(&o));
    let mut want = expected_text();
    let o_text = String::from_utf8_lossy(&o.stdout).to_string();
    want.truncate(o_text.len() - 1);
    assert_eq!(o_text.trim_end_matches('\n').as_bytes(), &want[..], "-n 10");
}

#[test]
fn run_model_sampling_is_reproducible_with_a_seed() {
    if skip() {
        return;
    }
    let args = ["-t", "0.9", "-s", "7", "-k", "40", "-P", "0.95", "-r", "1.1", "-n", "80", "-c", "128"];
    let a = run_model(&args);
    let b = run_model(&args);
    assert!(a.status.success() && b.status.success(), "{}\n{}", show(&a), show(&b));
    assert_eq!(a.stdout, b.stdout, "same seed, different text");
    let greedy = run_model(&["-n", "80"]);
    assert_ne!(a.stdout, greedy.stdout, "sampling at temperature 0.9 gave the greedy text");
    let c = run_model(&["-t", "0.9", "-s", "8", "-n", "80"]);
    assert!(c.status.success(), "{}", show(&c));
}

#[test]
fn run_model_compiled_as_cxx_and_linked_statically_behaves_the_same() {
    if skip() {
        return;
    }
    let expected = expected_stdout();
    for (what, link) in [("C++ build", Link::SharedCxx), ("static link", Link::Static)] {
        let o = run_cmd(&mut program(&build("run_model", link)));
        assert_ok_with_stdout(&o, &expected, what);
    }
    // The other programs compile as C++ too.
    build("run_tokenizer", Link::SharedCxx);
    build("api_test", Link::SharedCxx);
}

#[test]
fn run_tokenizer_prints_ids_and_pieces() {
    if skip() {
        return;
    }
    let exe = build("run_tokenizer", Link::Shared);
    let hello = "ids: 1 346 306 414 263 304 341\n1\t\n346\t He\n306\tll\n414\to\n263\t w\n304\tor\n341\tld\n";
    let o = run_cmd(program(&exe).args(["-F", &data("tok512.model"), "Hello world"]));
    assert_ok_with_stdout(&o, hello.as_bytes(), "run_tokenizer -F tok512.model \"Hello world\"");
    // The llama2.c tokenizer file, and the bundled one by default, agree.
    let o = run_cmd(program(&exe).args(["-F", &data("tok512.bin"), "Hello world"]));
    assert_ok_with_stdout(&o, hello.as_bytes(), "run_tokenizer -F tok512.bin");
    let o = run_cmd(program(&exe).arg("Hello world"));
    assert_ok_with_stdout(&o, hello.as_bytes(), "run_tokenizer (bundled tokenizer)");
    // The real LLaMA 2 tokenizer alone (a vocabulary-only load: no model needed).
    let llama2 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizers/llama2/tokenizer.model");
    let o = run_cmd(program(&exe).args(["-V", "2", "-F", llama2.to_str().unwrap(), "Hello world"]));
    assert_ok_with_stdout(
        &o,
        "ids: 1 15043 3186\n1\t\n15043\t Hello\n3186\t world\n".as_bytes(),
        "run_tokenizer -F llama2/tokenizer.model",
    );
    // A model's own tokenizer (GGUF-embedded).
    let o = run_cmd(program(&exe).args(["-M", &data("stories260K-f32.gguf"), "Hello world"]));
    assert_ok_with_stdout(&o, hello.as_bytes(), "run_tokenizer -M stories260K-f32.gguf");
    // From stdin (one trailing newline dropped), without BOS.
    let mut cmd = program(&exe);
    cmd.args(["-F", &data("tok512.model"), "--no-bos"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn run_tokenizer");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"Hello world\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let no_bos = "ids: 346 306 414 263 304 341\n346\t He\n306\tll\n414\to\n263\t w\n304\tor\n341\tld\n";
    assert_ok_with_stdout(&o, no_bos.as_bytes(), "run_tokenizer --no-bos < stdin");
    // Byte fallback and escapes: "é ü\" -> ▁ é ▁ <0xC3> <0xBC> \ ; special text parsed with --special.
    let o = run_cmd(program(&exe).args(["--special", "<s>\u{e9} \u{fc}\\"]));
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("ids: 1 1 410 485 410 198 191 "), "{out}");
    assert!(
        out.contains("\n485\t\u{e9}\n") && out.contains("\n198\t\\xC3\n") && out.contains("\n191\t\\xBC\n"),
        "{out}"
    );
    assert!(out.contains("\t\\x5C\n"), "a backslash is not escaped: {out}");
}

#[test]
fn bad_usage_exits_2() {
    if skip() {
        return;
    }
    let rm_exe = build("run_model", Link::Shared);
    let rt_exe = build("run_tokenizer", Link::Shared);
    let (rm, rt) = (rm_exe.as_path(), rt_exe.as_path());
    let cases: &[(&Path, &[&str])] = &[
        (rm, &["-n"]),
        (rm, &["-n", "abc"]),
        (rm, &["-n", "-5"]),
        (rm, &["-x", "1"]),
        (rm, &["positional"]),
        (rm, &["-V", "7"]),
        (rm, &["-t", "hot"]),
        (rm, &["-P", "0"]),
        (rm, &["-s", "-1"]),
        (rt, &["--bogus"]),
        (rt, &["-F"]),
        (rt, &["-V", "1", "x"]),
        (rt, &["one", "two"]),
    ];
    for (exe, args) in cases {
        let o = run_cmd(program(exe).args(*args));
        assert_eq!(o.status.code(), Some(2), "{} {args:?}\n{}", exe.display(), show(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("usage:"), "{args:?}: no usage message\n{}", show(&o));
        assert!(o.stdout.is_empty(), "{args:?}: printed to stdout\n{}", show(&o));
    }
    // Asking for help is not an error.
    for exe in [rm, rt] {
        let o = run_cmd(program(exe).arg("--help"));
        assert_eq!(o.status.code(), Some(0), "{} --help\n{}", exe.display(), show(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("usage:"), "{}", show(&o));
    }
}

#[test]
fn api_errors_exit_1_with_the_status_and_message() {
    if skip() {
        return;
    }
    let missing = work_dir().join("no-such-model.gguf").display().to_string();
    let o = run_model(&["-M", &missing]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("LLAMA_ERR_IO") && err.contains(&missing), "{err}");
    assert!(o.stdout.is_empty(), "{}", show(&o));

    // A context shorter than the prompt.
    let o = run_model(&["-p", "Once upon a time", "-c", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));

    // Not a model.
    let junk = work_dir().join("junk.bin");
    std::fs::write(&junk, b"definitely not a model file, just some text bytes\n".repeat(20)).unwrap();
    let o = run_model(&["-M", &junk.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("LLAMA_ERR_FORMAT"), "{}", show(&o));

    // run_tokenizer: a missing tokenizer file.
    let o = run_cmd(program(&build("run_tokenizer", Link::Shared)).args(["-F", &missing, "x"]));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("LLAMA_ERR_IO"), "{}", show(&o));
}

#[test]
fn api_test_passes() {
    if skip() {
        return;
    }
    let exe = build("api_test", Link::Shared);
    let o = run_cmd(program(&exe).arg(data_dir()).arg(work_dir()));
    assert!(o.status.success(), "api_test failed\n{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("all"), "{}", show(&o));
}

/// Whether `cc -fsanitize=address,undefined` builds and runs a program here (None) or why not.
fn sanitizers_unavailable() -> Option<String> {
    let dir = work_dir();
    let src = dir.join("sanitizer_probe.c");
    let exe = dir.join("sanitizer_probe");
    std::fs::write(&src, "#include <stdlib.h>\nint main(void) { char *p = malloc(4); p[0] = 1; free(p); return 0; }\n")
        .ok()?;
    let cc = compiler("CC", "cc");
    let o = Command::new(&cc).args(SANITIZE).arg(&src).arg("-o").arg(&exe).output();
    match o {
        Err(e) => return Some(format!("cannot run {cc}: {e}")),
        Ok(o) if !o.status.success() => {
            return Some(format!(
                "{cc} -fsanitize=address,undefined does not link: {}",
                String::from_utf8_lossy(&o.stderr)
            ))
        }
        _ => {}
    }
    match Command::new(&exe).output() {
        Err(e) => Some(format!("the sanitized probe does not start: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "the sanitized probe fails here (ptrace or ASLR limits?): {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        _ => None,
    }
}

#[test]
fn api_test_passes_under_address_and_undefined_behaviour_sanitizers() {
    if skip() {
        return;
    }
    if let Some(why) = sanitizers_unavailable() {
        eprintln!("skipping the ASan/UBSan run of api_test: {why}");
        return;
    }
    // Only the C program is instrumented; the Rust library's allocations go through the
    // intercepted malloc, so use-after-free and leaks across the boundary are still caught.
    let exe = build("api_test", Link::SharedSanitized);
    let o = run_cmd(
        program(&exe)
            .arg(data_dir())
            .arg(work_dir())
            .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
            .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() && err.contains("LeakSanitizer has encountered a fatal error") {
        eprintln!("LeakSanitizer cannot run here (ptrace?); rerunning with detect_leaks=0");
        let o = run_cmd(program(&exe).arg(data_dir()).arg(work_dir()).env("ASAN_OPTIONS", "detect_leaks=0"));
        assert!(o.status.success(), "api_test under ASan/UBSan failed\n{}", show(&o));
        return;
    }
    assert!(o.status.success(), "api_test under ASan/UBSan failed\n{}", show(&o));
}

#[test]
fn run_model_and_ckpt_info_on_mindspore_checkpoints() {
    if skip() {
        return;
    }
    let mf = |f: &str| root().join("tests/data/mindformers").join(f).to_string_lossy().into_owned();
    let expected = expected_stdout();
    // Split (16 KiB slices, some mid-row) and fused-QKV checkpoints with their MindFormers yaml;
    // the tokenizer.model beside the weights is found without -F.
    for (ckpt, yaml) in [
        ("stories260K-sliced16k.ckpt", "stories260K.yaml"),
        ("stories260K-qkvconcat.ckpt", "stories260K-qkvconcat.yaml"),
        ("stories260K-tied.ckpt", "stories260K-tied.yaml"),
    ] {
        let o = run_model(&["-M", &mf(ckpt), "-C", &mf(yaml)]);
        assert_ok_with_stdout(&o, &expected, ckpt);
    }
    let exe = build("ckpt_info", Link::Shared);
    let o = run_cmd(program(&exe).args(["-C", &mf("stories260K.yaml"), &mf("stories260K-sliced16k.ckpt")]));
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(": 48 tensors"), "{out}");
    assert!(out.contains("model.tok_embeddings.embedding_weight") && out.contains("F32   [512, 64]"), "{out}");
    assert!(out.contains("n_head 8, n_head_kv 4, n_ff 172"), "{out}");
    // Every line of the listing: index, name, dtype, shape.
    assert_eq!(out.lines().filter(|l| l.trim_end().ends_with(']')).count(), 48, "{out}");
    let o = run_cmd(program(&exe).arg(data("stories260K-f16.gguf")));
    assert!(o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("blk.0.attn_k.weight"), "{}", show(&o));
    let o = run_cmd(&mut program(&exe));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn run_tokenizer_llama3_chinese_matches_meta() {
    if skip() {
        return;
    }
    let exe = build("run_tokenizer", Link::Shared);
    let llama3 = root().join("tests/data/tokenizers/llama3/tokenizer.model");
    let text = "为了解决广大人民群众玩不了大模型推理的根本问题";
    // Meta's tokenizer (tiktoken, as /work/shared/tokenizers/make_cases.py runs it).
    let meta = "ids: 128000 109002 114914 82042 27384 104733 104336 107463 106738 124609 27384 123123 84851 22649 9554 119045 87219\n";
    for v in ["3", "0"] {
        let o = run_cmd(program(&exe).args(["-V", v, "-F", llama3.to_str().unwrap(), text]));
        assert!(o.status.success(), "{}", show(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with(meta), "-V {v}: {out}");
    }
    // A LLaMA 3 vocabulary named as version 2 is refused.
    let o = run_cmd(program(&exe).args(["-V", "2", "-F", llama3.to_str().unwrap(), text]));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
}

#[test]
fn run_model_with_an_8bit_kv_cache_keeps_the_story_for_100_tokens() {
    if skip() {
        return;
    }
    // tests/model_stories.rs: with -K q8_0 the greedy ids follow the reference for 118 of 200.
    let exact = run_model(&["-n", "100"]);
    assert!(exact.status.success(), "{}", show(&exact));
    let q8 = run_model(&["-n", "100", "-K", "q8_0"]);
    assert_ok_with_stdout(&q8, &exact.stdout, "-K q8_0 -n 100");
    let bad = run_model(&["-K", "q4"]);
    assert!(!bad.status.success(), "-K q4 was accepted\n{}", show(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("q8_0"), "{}", show(&bad));
}

/// The path of this test run's shared library.
fn shared_library() -> PathBuf {
    lib_dir().join(format!("{}runllama{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

#[test]
fn header_is_ascii_c89_and_cxx98() {
    if skip() {
        return;
    }
    let header = std::fs::read(root().join("include/runllama.h")).expect("include/runllama.h");
    if let Some(i) = header.iter().position(|b| !b.is_ascii()) {
        panic!("include/runllama.h has a non-ASCII byte at offset {i} (MSVC reads headers in the local code page)");
    }
    let src = work_dir().join("header_only.c");
    std::fs::write(&src, "#include \"runllama.h\"\nint main(void) { return LLAMA_API_VERSION == 2 ? 0 : 1; }\n")
        .expect("write the probe");
    for (cc, lang) in [
        (compiler("CC", "cc"), &["-std=c89"][..]),
        (compiler("CC", "cc"), &["-std=c99"][..]),
        (compiler("CXX", "c++"), &["-x", "c++", "-std=c++98"][..]),
    ] {
        let o = run_cmd(
            Command::new(&cc)
                .args(lang)
                .args(["-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I"])
                .arg(root().join("include"))
                .arg(&src),
        );
        assert!(o.status.success(), "the header does not compile with {cc} {lang:?} -pedantic -Werror\n{}", show(&o));
    }
}

#[test]
fn a_host_built_against_the_version_1_header_still_works() {
    if skip() {
        return;
    }
    let exe = build("v1_host", Link::SharedV1Header);
    let o = run_cmd(program(&exe).arg(data_dir()));
    assert!(o.status.success(), "v1_host failed\n{}", show(&o));
}

#[test]
fn the_library_unloads_cleanly_ten_times() {
    if skip() {
        return;
    }
    let exe = build("unload_test", Link::Runtime);
    let o = run_cmd(program(&exe).arg(shared_library()).arg(data_dir()).arg("10"));
    assert!(o.status.success(), "unload_test failed\n{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("10 load/step/free/unload cycles passed"), "{}", show(&o));
}

#[test]
fn callbacks_that_escape_leave_the_library_usable() {
    if skip() {
        return;
    }
    let exe = build("callback_unwind", Link::Shared);
    let o = run_cmd(program(&exe).arg(data_dir()).env("RUNLLAMA_CPU", "not-a-path"));
    assert!(o.status.success(), "callback_unwind failed (killed by SIGALRM = a call blocked)\n{}", show(&o));
}
