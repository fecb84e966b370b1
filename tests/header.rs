//! `include/runllama.h` must be exactly what cbindgen generates from the sources today.
//! Regenerate it with `RUNLLAMA_BLESS=1 cargo test --test header`.

use std::path::Path;

#[test]
fn header_matches_fresh_generation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_src(root.join("src/ffi.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generation")
        .write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("utf-8 header");
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
        "#define LLAMA_API_VERSION 1",
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
        "llama_load_params_default(void)",
        "llama_session_params_default(void)",
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
        "typedef int32_t (*llama_progress_fn)(float fraction, void *user_data);",
        "typedef void (*llama_log_fn)(int32_t level, const char *line, void *user_data);",
    ] {
        assert!(h.contains(name), "include/runllama.h lacks {name:?}");
    }
}
