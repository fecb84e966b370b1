//! `include/runllama.h` must be exactly what cbindgen generates from the sources today (plus
//! `LLAMA_CALL` before each function name, which cbindgen cannot place). Regenerate it with
//! `RUNLLAMA_BLESS=1 cargo test --test header`.

use std::path::Path;

/// `LLAMA_CALL` (the calling convention) where C puts it: right before the name of each
/// declared function (`LLAMA_API const char *LLAMA_CALL llama_version(void);`) and inside each
/// function pointer typedef (`typedef void (LLAMA_CALL *llama_log_fn)(...)`).
fn with_calling_convention(h: &str) -> String {
    let mut out = String::with_capacity(h.len() + 4096);
    let mut declaring = false;
    for line in h.split_inclusive('\n') {
        if line.trim_end() == "LLAMA_API" {
            // A long declaration: the prefix on a line of its own, the function on the next.
            out.push_str(line);
            declaring = true;
        } else if declaring {
            out.push_str(&before_name(line));
            declaring = false;
        } else if let Some(rest) = line.strip_prefix("LLAMA_API ") {
            out.push_str("LLAMA_API ");
            out.push_str(&before_name(rest));
        } else if line.starts_with("typedef ") && line.contains("(*") {
            out.push_str(&line.replacen("(*", "(LLAMA_CALL *", 1));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `decl` with `LLAMA_CALL ` before the identifier that precedes its first parenthesis.
fn before_name(decl: &str) -> String {
    let paren = decl.find('(').expect("a function declaration");
    let name = decl[..paren].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    format!("{}LLAMA_CALL {}", &decl[..name], &decl[name..])
}

#[test]
fn header_matches_fresh_generation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_src(root.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generation")
        .write(&mut fresh);
    let fresh = with_calling_convention(&String::from_utf8(fresh).expect("utf-8 header"));
    let path = root.join("include/runllama.h");
    if std::env::var_os("RUNLLAMA_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write header");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/runllama.h differs from a fresh cbindgen generation: run RUNLLAMA_BLESS=1 cargo test --test header"
    );
}

#[test]
fn header_declares_the_whole_contract() {
    let h = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/runllama.h")).unwrap();
    for name in [
        "#define LLAMA_API_VERSION 2",
        "typedef int32_t llama_token;",
        "typedef int32_t llama_status;",
        "typedef struct llama_model llama_model;",
        "typedef struct llama_session llama_session;",
        "#define LLAMA_ERR_BUSY -11",
        "#define LLAMA_TOKENIZE_PARSE_SPECIAL 2",
        "extern \"C\"",
        "llama_api_version(void)",
        "llama_version(void)",
        "llama_system_info(void)",
        "llama_last_error(void)",
        "llama_status_str(llama_status s)",
        "llama_set_log_callback(",
        "llama_load_params_init(struct llama_load_params *params, size_t size);",
        "llama_session_params_init(struct llama_session_params *params, size_t size);",
        "#define llama_load_params_default llama_load_params_default_v2",
        "#define llama_session_params_default llama_session_params_default_v2",
        "int32_t device_index;",
        "uint32_t reserved0;",
        "llama_load(const char *path",
        "llama_model_free(",
        "llama_model_n_vocab(",
        "llama_model_n_ctx_train(",
        "llama_token_bos(",
        "llama_token_eos(",
        "llama_token_is_eog(",
        "llama_model_describe(",
        "llama_tokenize(",
        "llama_detokenize(",
        "llama_token_to_piece(",
        "llama_chat_tokenize(",
        "llama_session_new(",
        "llama_session_free(",
        "llama_session_reset(",
        "llama_session_position(",
        "llama_session_rewind(",
        "llama_session_abort(",
        "llama_step(",
        "llama_session_logits(",
        "typedef int32_t (LLAMA_CALL *llama_progress_fn)(float fraction, void *user_data);",
        "typedef void (LLAMA_CALL *llama_log_fn)(int32_t level, const char *line, void *user_data);",
    ] {
        assert!(h.contains(name), "include/runllama.h lacks {name:?}");
    }
}
