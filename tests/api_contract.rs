//! The C API contract (API.md) exercised through the exported functions themselves: status
//! codes, `llama_last_error` messages, two-call buffers, handle lifetimes, BUSY, abort, and
//! "a failed step leaves the session exactly as it was".

mod common;
use common::*;

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use runllama::ffi::*;

fn last_error() -> String {
    unsafe { CStr::from_ptr(llama_last_error()) }.to_string_lossy().into_owned()
}

fn cstr(p: &std::path::Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

struct Model(*mut llama_model);
// SAFETY: models are thread-safe by contract.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

fn load(rel: &str) -> Model {
    let path = cstr(&data(rel));
    let lp = llama_load_params_default_v2();
    let mut m = null_mut();
    let st = unsafe { llama_load(path.as_ptr(), &lp, Some(&mut m)) };
    assert_eq!(st, LLAMA_OK, "{}", last_error());
    Model(m)
}

fn session(m: &Model, n_ctx: u32) -> *mut llama_session {
    let mut sp = llama_session_params_default_v2();
    sp.n_ctx = n_ctx;
    let mut s = null_mut();
    assert_eq!(unsafe { llama_session_new(m.0, &sp, Some(&mut s)) }, LLAMA_OK, "{}", last_error());
    s
}

fn step(s: *mut llama_session, toks: &[i32]) -> (llama_status, i32) {
    let mut next = -1;
    let st = unsafe { llama_step(s, toks.as_ptr(), toks.len(), Some(&mut next)) };
    (st, next)
}

fn logits(s: *mut llama_session) -> Option<Vec<f32>> {
    let p = unsafe { llama_session_logits(s.as_ref()) };
    (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p, 512) }.to_vec())
}

const GGUF: &str = "stories260K/stories260K-f32.gguf";

#[test]
fn version_info_and_status_names() {
    assert_eq!(llama_api_version(), LLAMA_API_VERSION);
    let v = unsafe { CStr::from_ptr(llama_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    let info = unsafe { CStr::from_ptr(llama_system_info()) }.to_str().unwrap();
    let cuda = if cfg!(feature = "cuda") { "CUDA=1" } else { "CUDA=0" };
    assert!(info.contains(cuda) && info.contains("threads="), "{info}");
    if let Ok(v) = std::env::var("RUNLLAMA_CPU") {
        assert!(info.contains(&format!("kernels={v}")), "RUNLLAMA_CPU={v} not applied: {info}");
    }
    for (code, name) in [
        (LLAMA_OK, "LLAMA_OK"),
        (LLAMA_ERR_FORMAT, "LLAMA_ERR_FORMAT"),
        (LLAMA_ERR_BUSY, "LLAMA_ERR_BUSY"),
        (LLAMA_ERR_CONTEXT_FULL, "LLAMA_ERR_CONTEXT_FULL"),
        (-1000, "LLAMA_ERR_UNKNOWN"),
    ] {
        assert_eq!(unsafe { CStr::from_ptr(llama_status_str(code)) }.to_str().unwrap(), name);
    }
    assert_eq!(last_error(), "", "no error yet on this thread");
}

#[test]
fn load_errors_name_the_file_and_problem() {
    let lp = llama_load_params_default_v2();
    let mut m = null_mut();
    // Missing file.
    let missing = cstr(&data("no/such/model.gguf"));
    assert_eq!(unsafe { llama_load(missing.as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_IO);
    assert!(last_error().contains("no/such/model.gguf"), "{}", last_error());
    assert!(m.is_null());
    // Garbage.
    let dir = std::env::temp_dir().join(format!("runllama-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, b"this is not a model at all, just text").unwrap();
    assert_eq!(unsafe { llama_load(cstr(&junk).as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_FORMAT);
    assert!(last_error().contains("junk.bin"), "{}", last_error());
    // Truncated GGUF: the message names the file and an offset.
    let bytes = std::fs::read(data(GGUF)).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(unsafe { llama_load(cstr(&cut).as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_FORMAT);
    let msg = last_error();
    assert!(msg.contains("cut.gguf") && msg.contains("token_embd.weight") || msg.contains("blk."), "{msg}");
    // Empty file.
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(unsafe { llama_load(cstr(&empty).as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_FORMAT);
    // An encrypted MindSpore checkpoint is reported as unsupported, not as garbage.
    let ckpt = dir.join("model.ckpt");
    std::fs::write(&ckpt, [0xD9, 0x5E, 0x3A, 0x7F, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    assert_eq!(unsafe { llama_load(cstr(&ckpt).as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_UNSUPPORTED);
    assert!(last_error().contains("encrypted"), "{}", last_error());
    // A truncated plain checkpoint is a format error.
    std::fs::write(&ckpt, [0x0A, 0x10, 0x0A, 0x03, b'a', b'b', b'c']).unwrap();
    assert_eq!(unsafe { llama_load(cstr(&ckpt).as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_FORMAT);
    // A directory with nothing loadable.
    assert_eq!(
        unsafe { llama_load(cstr(&dir.join("..").join(dir.file_name().unwrap())).as_ptr(), &lp, Some(&mut m)) },
        LLAMA_ERR_IO
    );
    // llama2.c needs a tokenizer: none beside it in this directory.
    let bin = dir.join("stories260K.bin");
    std::fs::copy(data("stories260K/stories260K.bin"), &bin).unwrap();
    assert_eq!(unsafe { llama_load(cstr(&bin).as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("tokenizer"), "{}", last_error());
    // A tokenizer path that does not exist.
    let mut lp2 = llama_load_params_default_v2();
    let tp = cstr(&dir.join("nope.model"));
    lp2.tokenizer_path = tp.as_ptr();
    assert_eq!(unsafe { llama_load(cstr(&bin).as_ptr(), &lp2, Some(&mut m)) }, LLAMA_ERR_IO);
    assert!(last_error().contains("nope.model"), "{}", last_error());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(m.is_null());
}

#[test]
fn load_argument_errors() {
    let path = cstr(&data(GGUF));
    let mut m = null_mut();
    let lp = llama_load_params_default_v2();
    assert_eq!(unsafe { llama_load(null(), &lp, Some(&mut m)) }, LLAMA_ERR_INVALID_ARGUMENT);
    assert_eq!(unsafe { llama_load(path.as_ptr(), &lp, None) }, LLAMA_ERR_INVALID_ARGUMENT);
    let mut bad = lp;
    bad.size = 10; // inside config_path
    assert_eq!(unsafe { llama_load(path.as_ptr(), &bad, Some(&mut m)) }, LLAMA_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("size"), "{}", last_error());
    let mut bad = lp;
    bad.version = 7;
    assert_eq!(unsafe { llama_load(path.as_ptr(), &bad, Some(&mut m)) }, LLAMA_ERR_INVALID_ARGUMENT);
    let mut bad = lp;
    bad.n_threads = -3;
    assert_eq!(unsafe { llama_load(path.as_ptr(), &bad, Some(&mut m)) }, LLAMA_ERR_INVALID_ARGUMENT);
    let mut bad = lp;
    bad.device = LLAMA_DEVICE_CUDA;
    assert_eq!(unsafe { llama_load(path.as_ptr(), &bad, Some(&mut m)) }, LLAMA_ERR_DEVICE);
    assert!(last_error().contains("CUDA"), "{}", last_error());
    let mut bad = lp;
    bad.device = 5;
    assert_eq!(unsafe { llama_load(path.as_ptr(), &bad, Some(&mut m)) }, LLAMA_ERR_INVALID_ARGUMENT);
    let invalid_utf8 = [0xffu8, 0xfe, 0];
    assert_eq!(
        unsafe { llama_load(invalid_utf8.as_ptr() as *const c_char, &lp, Some(&mut m)) },
        LLAMA_ERR_INVALID_ARGUMENT
    );
    // NULL params = defaults.
    assert_eq!(unsafe { llama_load(path.as_ptr(), null(), Some(&mut m)) }, LLAMA_OK);
    unsafe { llama_model_free(m) };
    // NULL handles everywhere.
    unsafe {
        llama_model_free(null_mut());
        llama_session_free(null_mut());
        llama_session_abort(null_mut());
        assert_eq!(llama_model_n_vocab(None), LLAMA_ERR_INVALID_ARGUMENT);
        assert_eq!(llama_model_n_ctx_train(None), LLAMA_ERR_INVALID_ARGUMENT);
        assert_eq!(llama_token_bos(None), -1);
        assert_eq!(llama_token_eos(None), -1);
        assert_eq!(llama_token_is_eog(None, 2), 0);
        assert_eq!(llama_session_position(None), 0);
        assert!(llama_session_logits(None).is_null());
        assert_eq!(llama_session_reset(null_mut()), LLAMA_ERR_INVALID_ARGUMENT);
        assert_eq!(llama_session_rewind(null_mut(), 0), LLAMA_ERR_INVALID_ARGUMENT);
        let mut next = 0;
        assert_eq!(llama_step(null_mut(), [1].as_ptr(), 1, Some(&mut next)), LLAMA_ERR_INVALID_ARGUMENT);
        let mut s = null_mut();
        assert_eq!(llama_session_new(null_mut(), null(), Some(&mut s)), LLAMA_ERR_INVALID_ARGUMENT);
    }
}

static PROGRESS_CALLS: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn cancel_at_half(f: f32, ud: *mut c_void) -> i32 {
    assert_eq!(ud as usize, 0x1234);
    PROGRESS_CALLS.fetch_add(1, Ordering::SeqCst);
    (f >= 0.5) as i32
}
unsafe extern "C" fn keep_going(_f: f32, _ud: *mut c_void) -> i32 {
    0
}

#[test]
fn progress_callback_reports_and_cancels() {
    let path = cstr(&data(GGUF));
    let mut lp = llama_load_params_default_v2();
    lp.progress = Some(cancel_at_half);
    lp.progress_user_data = 0x1234 as *mut c_void;
    let mut m = null_mut();
    assert_eq!(unsafe { llama_load(path.as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_CANCELLED);
    assert!(m.is_null());
    assert!(PROGRESS_CALLS.load(Ordering::SeqCst) >= 2);
    lp.progress = Some(keep_going);
    assert_eq!(unsafe { llama_load(path.as_ptr(), &lp, Some(&mut m)) }, LLAMA_OK);
    unsafe { llama_model_free(m) };
}

static LOG_LINES: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn count_lines(_level: i32, line: *const c_char, _ud: *mut c_void) {
    assert!(!unsafe { CStr::from_ptr(line) }.to_bytes().is_empty());
    LOG_LINES.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn log_callback_receives_lines_and_can_be_removed() {
    llama_set_log_callback(Some(count_lines), null_mut());
    let m = load(GGUF);
    assert!(LOG_LINES.load(Ordering::SeqCst) >= 1);
    llama_set_log_callback(None, null_mut());
    unsafe { llama_model_free(m.0) };
}

#[test]
fn model_queries_and_describe_json() {
    let m = load(GGUF);
    unsafe {
        assert_eq!(llama_model_n_vocab(m.0.as_ref()), 512);
        assert_eq!(llama_model_n_ctx_train(m.0.as_ref()), 512);
        assert_eq!(llama_token_bos(m.0.as_ref()), 1);
        assert_eq!(llama_token_eos(m.0.as_ref()), 2);
        assert_eq!(llama_token_is_eog(m.0.as_ref(), 2), 1);
        assert_eq!(llama_token_is_eog(m.0.as_ref(), 1), 0);
        assert_eq!(llama_token_is_eog(m.0.as_ref(), -5), 0);
        // Size query, then too small, then exact.
        let mut len = 0usize;
        assert_eq!(llama_model_describe(m.0.as_ref(), null_mut(), 0, Some(&mut len)), LLAMA_ERR_BUFFER_TOO_SMALL);
        assert!(len > 100);
        let mut small = vec![b'#' as c_char; len - 1];
        let mut len2 = 0usize;
        assert_eq!(
            llama_model_describe(m.0.as_ref(), small.as_mut_ptr(), small.len(), Some(&mut len2)),
            LLAMA_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(len2, len);
        assert!(small.iter().all(|&c| c == b'#' as c_char), "a too-small buffer must not be written");
        let mut buf = vec![0 as c_char; len + 1];
        assert_eq!(llama_model_describe(m.0.as_ref(), buf.as_mut_ptr(), buf.len(), Some(&mut len2)), LLAMA_OK);
        let text = CStr::from_ptr(buf.as_ptr()).to_str().unwrap();
        assert_eq!(text.len(), len);
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        for key in [
            "format",
            "version",
            "n_vocab",
            "n_embd",
            "n_layer",
            "n_head",
            "n_head_kv",
            "n_ff",
            "rope_theta",
            "norm_eps",
            "dtype",
            "n_params",
            "device",
            "tensors",
        ] {
            assert!(v.get(key).is_some(), "describe lacks {key}: {text}");
        }
        assert_eq!(v["format"], "gguf");
        assert_eq!(v["n_head_kv"], 4);
        assert_eq!(v["n_params"], 260_032 - 512 * 64 + 512 * 64); // tied: the embedding is stored once
        let tensors = v["tensors"].as_array().unwrap();
        assert_eq!(tensors.len(), 1 + 5 * 9 + 1);
        let k = tensors.iter().find(|t| t["name"] == "blk.0.attn_k.weight").unwrap();
        assert_eq!(k["shape"], serde_json::json!([32, 64]));
        assert_eq!(k["dtype"], "F32");
        assert_eq!(llama_model_describe(m.0.as_ref(), buf.as_mut_ptr(), buf.len(), None), LLAMA_ERR_INVALID_ARGUMENT);
        assert_eq!(llama_model_describe(m.0.as_ref(), null_mut(), 10, Some(&mut len)), LLAMA_ERR_INVALID_ARGUMENT);
        llama_model_free(m.0);
    }
}

#[test]
fn tokenize_detokenize_and_pieces() {
    let m = load(GGUF);
    unsafe {
        let text = "Once upon a time";
        let mut n = 0usize;
        assert_eq!(
            llama_tokenize(
                m.0.as_ref(),
                text.as_ptr() as _,
                text.len(),
                LLAMA_TOKENIZE_ADD_BOS,
                null_mut(),
                0,
                Some(&mut n)
            ),
            LLAMA_ERR_BUFFER_TOO_SMALL
        );
        let mut ids = vec![0i32; n];
        assert_eq!(
            llama_tokenize(
                m.0.as_ref(),
                text.as_ptr() as _,
                text.len(),
                LLAMA_TOKENIZE_ADD_BOS,
                ids.as_mut_ptr(),
                n,
                Some(&mut n)
            ),
            LLAMA_OK
        );
        assert_eq!(ids[0], 1);
        assert_eq!(ids[1..], [403, 407, 261, 378]);
        // Empty text with BOS.
        assert_eq!(
            llama_tokenize(m.0.as_ref(), null(), 0, LLAMA_TOKENIZE_ADD_BOS, ids.as_mut_ptr(), ids.len(), Some(&mut n)),
            LLAMA_OK
        );
        assert_eq!((n, ids[0]), (1, 1));
        // Bad UTF-8, unknown flags, NULL text with a length.
        let bad = [b'a', 0xff, b'b'];
        assert_eq!(
            llama_tokenize(m.0.as_ref(), bad.as_ptr() as _, 3, 0, ids.as_mut_ptr(), ids.len(), Some(&mut n)),
            LLAMA_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("UTF-8"), "{}", last_error());
        assert_eq!(
            llama_tokenize(
                m.0.as_ref(),
                text.as_ptr() as _,
                text.len(),
                0x80,
                ids.as_mut_ptr(),
                ids.len(),
                Some(&mut n)
            ),
            LLAMA_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            llama_tokenize(m.0.as_ref(), null(), 5, 0, ids.as_mut_ptr(), ids.len(), Some(&mut n)),
            LLAMA_ERR_INVALID_ARGUMENT
        );
        // Detokenize round trip, with the two-call pattern.
        let all = [1, 403, 407, 261, 378];
        let mut len = 0usize;
        assert_eq!(
            llama_detokenize(m.0.as_ref(), all.as_ptr(), 5, 0, null_mut(), 0, Some(&mut len)),
            LLAMA_ERR_BUFFER_TOO_SMALL
        );
        let mut buf = vec![0 as c_char; len + 1];
        assert_eq!(
            llama_detokenize(
                m.0.as_ref(),
                all.as_ptr(),
                5,
                LLAMA_DETOKENIZE_SKIP_SPECIAL,
                buf.as_mut_ptr(),
                buf.len(),
                Some(&mut len)
            ),
            LLAMA_OK
        );
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), text);
        let oob = [1, 512];
        assert_eq!(
            llama_detokenize(m.0.as_ref(), oob.as_ptr(), 2, 0, buf.as_mut_ptr(), buf.len(), Some(&mut len)),
            LLAMA_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("512"), "{}", last_error());
        // Pieces: "▁Once" is " Once"; byte tokens are raw bytes.
        let mut piece = [0 as c_char; 16];
        assert_eq!(llama_token_to_piece(m.0.as_ref(), 403, piece.as_mut_ptr(), 16, Some(&mut len)), LLAMA_OK);
        assert_eq!(CStr::from_ptr(piece.as_ptr()).to_str().unwrap(), " Once");
        assert_eq!(llama_token_to_piece(m.0.as_ref(), 3 + 0xC3, piece.as_mut_ptr(), 16, Some(&mut len)), LLAMA_OK);
        assert_eq!((len, piece[0] as u8), (1, 0xC3));
        assert_eq!(
            llama_token_to_piece(m.0.as_ref(), 403, piece.as_mut_ptr(), 2, Some(&mut len)),
            LLAMA_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(len, 5);
        assert_eq!(
            llama_token_to_piece(m.0.as_ref(), -1, piece.as_mut_ptr(), 16, Some(&mut len)),
            LLAMA_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            llama_token_to_piece(m.0.as_ref(), 512, piece.as_mut_ptr(), 16, Some(&mut len)),
            LLAMA_ERR_INVALID_ARGUMENT
        );
        // Chat: user text that looks like a control token stays text.
        let user = CString::new("<s>hi</s>").unwrap();
        let role = CString::new("user").unwrap();
        let msgs = [llama_chat_message { role: role.as_ptr(), content: user.as_ptr() }];
        let mut out = vec![0i32; 128];
        assert_eq!(
            llama_chat_tokenize(
                m.0.as_ref(),
                msgs.as_ptr(),
                1,
                LLAMA_CHAT_ADD_ASSISTANT,
                out.as_mut_ptr(),
                128,
                Some(&mut n)
            ),
            LLAMA_OK
        );
        assert_eq!(out[0], 1);
        assert_eq!(out[1..n].iter().filter(|&&t| t == 1 || t == 2).count(), 0, "{:?}", &out[..n]);
        let bad_role = CString::new("wizard").unwrap();
        let msgs = [llama_chat_message { role: bad_role.as_ptr(), content: user.as_ptr() }];
        assert_eq!(
            llama_chat_tokenize(
                m.0.as_ref(),
                msgs.as_ptr(),
                1,
                LLAMA_CHAT_ADD_ASSISTANT,
                out.as_mut_ptr(),
                128,
                Some(&mut n)
            ),
            LLAMA_ERR_INVALID_ARGUMENT
        );
        let msgs = [llama_chat_message { role: null(), content: user.as_ptr() }];
        assert_eq!(
            llama_chat_tokenize(m.0.as_ref(), msgs.as_ptr(), 1, 0, out.as_mut_ptr(), 128, Some(&mut n)),
            LLAMA_ERR_INVALID_ARGUMENT
        );
        llama_model_free(m.0);
    }
}

#[test]
fn session_params_are_validated() {
    let m = load(GGUF);
    let mut s = null_mut();
    unsafe {
        let mut sp = llama_session_params_default_v2();
        sp.size = 6; // inside n_ctx
        assert_eq!(llama_session_new(m.0, &sp, Some(&mut s)), LLAMA_ERR_INVALID_ARGUMENT);
        for bad in [
            llama_session_params { temperature: -1.0, ..llama_session_params_default_v2() },
            llama_session_params { top_p: 0.0, ..llama_session_params_default_v2() },
            llama_session_params { top_k: -1, ..llama_session_params_default_v2() },
            llama_session_params { repeat_penalty: f32::NAN, ..llama_session_params_default_v2() },
        ] {
            assert_eq!(llama_session_new(m.0, &bad, Some(&mut s)), LLAMA_ERR_INVALID_ARGUMENT);
            assert!(s.is_null());
        }
        assert_eq!(llama_session_new(m.0, null(), Some(&mut s)), LLAMA_OK);
        llama_session_free(s);

        // kv_type: F16 (default), F32, Q8_0, Q4_0 or Q8_0_Q4_0, nothing else.
        for kv in [7, -1, 5] {
            let bad = llama_session_params { kv_type: kv, ..llama_session_params_default_v2() };
            assert_eq!(llama_session_new(m.0, &bad, Some(&mut s)), LLAMA_ERR_INVALID_ARGUMENT);
            assert!(last_error().contains("kv_type"), "{}", last_error());
        }
        for kv in [LLAMA_KV_F16, LLAMA_KV_F32, LLAMA_KV_Q8_0, LLAMA_KV_Q4_0, LLAMA_KV_Q8_0_Q4_0] {
            let sp = llama_session_params { kv_type: kv, ..llama_session_params_default_v2() };
            assert_eq!(llama_session_new(m.0, &sp, Some(&mut s)), LLAMA_OK);
            llama_session_free(s);
        }
        // A host compiled against API.md version 1 passes the struct without kv_type (32 bytes):
        // accepted, with the default cache type; the bytes after it are never read.
        #[repr(C)]
        struct V1 {
            p: [u8; 32],
            poison: [u8; 8],
        }
        let d = llama_session_params_default_v2();
        let mut v1 = V1 { p: [0; 32], poison: [0xff; 8] };
        std::ptr::copy_nonoverlapping((&d as *const llama_session_params).cast::<u8>(), v1.p.as_mut_ptr(), 32);
        v1.p[..4].copy_from_slice(&32u32.to_ne_bytes());
        assert_eq!(llama_session_new(m.0, (&v1 as *const V1).cast(), Some(&mut s)), LLAMA_OK, "{}", last_error());
        llama_session_free(s);
        llama_model_free(m.0);
    }
}

#[test]
fn session_keeps_its_model_alive() {
    let m = load(GGUF);
    let s = session(&m, 0);
    unsafe { llama_model_free(m.0) };
    // The session still works after the caller released the model.
    let expected = expected_ids();
    let (st, mut next) = step(s, &[1]);
    assert_eq!(st, LLAMA_OK);
    let mut got = vec![next as u32];
    for _ in 0..19 {
        let r = step(s, &[next]);
        assert_eq!(r.0, LLAMA_OK);
        next = r.1;
        got.push(next as u32);
    }
    assert_eq!(got, expected[..20]);
    unsafe { llama_session_free(s) };
}

#[test]
fn failed_steps_leave_the_session_unchanged() {
    let m = load(GGUF);
    let s = session(&m, 8);
    assert!(logits(s).is_none(), "no logits before the first step");
    let expected = expected_ids();
    let (st, next) = step(s, &[1, 403, 407]);
    assert_eq!((st, next), (LLAMA_OK, expected[3] as i32 - (expected[3] as i32 - 261)));
    let before = logits(s).unwrap();
    let pos = unsafe { llama_session_position(s.as_ref()) };
    assert_eq!(pos, 3);
    // Out of range, negative, empty, NULL out_next, context full (3 + 6 > 8), abort.
    assert_eq!(step(s, &[512]).0, LLAMA_ERR_INVALID_ARGUMENT);
    assert_eq!(step(s, &[261, -1]).0, LLAMA_ERR_INVALID_ARGUMENT);
    assert_eq!(step(s, &[]).0, LLAMA_ERR_INVALID_ARGUMENT);
    assert_eq!(unsafe { llama_step(s, [261].as_ptr(), 1, None) }, LLAMA_ERR_INVALID_ARGUMENT);
    assert_eq!(step(s, &[261, 1, 1, 1, 1, 1]).0, LLAMA_ERR_CONTEXT_FULL);
    assert!(last_error().contains("exceeds the context"), "{}", last_error());
    unsafe { llama_session_abort(s) };
    assert_eq!(step(s, &[261]).0, LLAMA_ERR_CANCELLED);
    assert_eq!(unsafe { llama_session_position(s.as_ref()) }, pos);
    assert_eq!(logits(s).unwrap(), before);
    // Generation continues exactly as if nothing had happened.
    let (st, next) = step(s, &[261]);
    assert_eq!((st, next as u32), (LLAMA_OK, expected[3]));
    // Rewind: back to 3 and step the same token again gives the same result.
    assert_eq!(unsafe { llama_session_rewind(s, 5) }, LLAMA_ERR_INVALID_ARGUMENT);
    assert_eq!(unsafe { llama_session_rewind(s, 3) }, LLAMA_OK);
    assert_eq!(unsafe { llama_session_position(s.as_ref()) }, 3);
    assert!(logits(s).is_none());
    assert_eq!(step(s, &[261]).1 as u32, expected[3]);
    // Fill the context exactly, then one more is CONTEXT_FULL.
    assert_eq!(step(s, &[378, 432, 383, 286]).0, LLAMA_OK);
    assert_eq!(unsafe { llama_session_position(s.as_ref()) }, 8);
    assert_eq!(step(s, &[1]).0, LLAMA_ERR_CONTEXT_FULL);
    assert_eq!(unsafe { llama_session_reset(s) }, LLAMA_OK);
    assert_eq!(unsafe { llama_session_position(s.as_ref()) }, 0);
    assert!(logits(s).is_none());
    assert_eq!(step(s, &[1]).1 as u32, expected[0]);
    unsafe {
        llama_session_free(s);
        llama_model_free(m.0);
    }
}

struct SendPtr(*mut llama_session);
// SAFETY: the session pointer is used under the contract's own BUSY rule in these tests.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

#[test]
fn concurrent_use_of_one_session_is_busy_not_corruption() {
    let m = load(GGUF);
    let s = Arc::new(SendPtr(session(&m, 512)));
    let ids = expected_ids();
    let prompt: Vec<i32> = std::iter::once(1).chain(ids.iter().chain(&ids).map(|&t| t as i32)).take(150).collect();
    let busy_seen = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (s, busy_seen, stop) = (s.clone(), busy_seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 2_000_000 {
                n += 1;
                if unsafe { llama_session_reset(s.0) } == LLAMA_ERR_BUSY {
                    busy_seen.store(true, Ordering::SeqCst);
                    assert!(last_error().contains("in use"), "{}", last_error());
                }
            }
        })
    };
    let mut mine_busy = 0;
    for _ in 0..200 {
        let (st, _) = step(s.0, &prompt);
        match st {
            LLAMA_OK | LLAMA_ERR_CONTEXT_FULL => {}
            LLAMA_ERR_BUSY => mine_busy += 1,
            other => panic!("unexpected status {other}: {}", last_error()),
        }
        unsafe { llama_session_reset(s.0) };
        if busy_seen.load(Ordering::SeqCst) {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    other.join().unwrap();
    assert!(busy_seen.load(Ordering::SeqCst) || mine_busy > 0, "two threads never collided");
    // The session still computes correctly.
    assert_eq!(unsafe { llama_session_reset(s.0) }, LLAMA_OK);
    let (st, next) = step(s.0, &prompt[..1]);
    assert_eq!((st, next as u32), (LLAMA_OK, expected_ids()[0]));
    unsafe {
        llama_session_free(s.0);
        llama_model_free(m.0);
    }
}

#[test]
fn abort_from_another_thread_cancels_without_damage() {
    let m = load(GGUF);
    let s = Arc::new(SendPtr(session(&m, 512)));
    let expected = expected_ids();
    let stop = Arc::new(AtomicBool::new(false));
    let aborter = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                unsafe { llama_session_abort(s.0) };
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    // Greedy generation that retries cancelled steps: ids must still be the reference ones.
    let mut got = Vec::new();
    let mut next = 1;
    let mut cancelled = 0;
    while got.len() < 100 {
        let pos = unsafe { llama_session_position(s.0.as_ref()) };
        let (st, n) = step(s.0, &[next]);
        match st {
            LLAMA_OK => {
                next = n;
                got.push(n as u32);
            }
            LLAMA_ERR_CANCELLED => {
                cancelled += 1;
                assert_eq!(unsafe { llama_session_position(s.0.as_ref()) }, pos);
            }
            other => panic!("status {other}: {}", last_error()),
        }
    }
    stop.store(true, Ordering::SeqCst);
    aborter.join().unwrap();
    assert!(cancelled > 0, "the aborting thread never hit a step");
    assert_eq!(got, expected[..100]);
    unsafe {
        llama_session_free(s.0);
        llama_model_free(m.0);
    }
}

#[test]
fn many_sessions_of_one_model_step_in_parallel() {
    let m = Arc::new(load(GGUF));
    let expected = expected_ids();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            let expected = expected.clone();
            std::thread::spawn(move || {
                let s = session(&m, 0);
                let (_, mut next) = step(s, &[1]);
                let mut got = vec![next as u32];
                for _ in 0..49 {
                    next = step(s, &[next]).1;
                    got.push(next as u32);
                }
                unsafe { llama_session_free(s) };
                assert_eq!(got, expected[..50]);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    unsafe { llama_model_free(m.0) };
}

#[test]
fn vocab_only_models_tokenize_but_cannot_step() {
    let path = cstr(&data("stories260K/tok512.model"));
    let mut m = null_mut();
    unsafe {
        assert_eq!(llama_load_vocab(path.as_ptr(), 0, Some(&mut m)), LLAMA_OK, "{}", last_error());
        assert_eq!(llama_model_n_vocab(m.as_ref()), 512);
        let text = "Once upon a time";
        let mut ids = [0i32; 8];
        let mut n = 0usize;
        assert_eq!(
            llama_tokenize(
                m.as_ref(),
                text.as_ptr() as _,
                text.len(),
                LLAMA_TOKENIZE_ADD_BOS,
                ids.as_mut_ptr(),
                8,
                Some(&mut n)
            ),
            LLAMA_OK
        );
        assert_eq!(ids[..n], [1, 403, 407, 261, 378]);
        let mut s = null_mut();
        assert_eq!(llama_session_new(m, null(), Some(&mut s)), LLAMA_ERR_UNSUPPORTED);
        assert!(last_error().contains("without weights"), "{}", last_error());
        let mut len = 0;
        let mut buf = vec![0 as c_char; 4096];
        assert_eq!(llama_model_describe(m.as_ref(), buf.as_mut_ptr(), buf.len(), Some(&mut len)), LLAMA_OK);
        assert!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap().contains("\"format\":\"vocab\""));
        llama_model_free(m);
        // Version mismatch, missing file, garbage.
        assert_eq!(llama_load_vocab(path.as_ptr(), 3, Some(&mut m)), LLAMA_ERR_INVALID_ARGUMENT);
        let missing = cstr(&data("nope/tokenizer.model"));
        assert_eq!(llama_load_vocab(missing.as_ptr(), 0, Some(&mut m)), LLAMA_ERR_IO);
        let gguf = cstr(&data(GGUF));
        assert_eq!(llama_load_vocab(gguf.as_ptr(), 0, Some(&mut m)), LLAMA_ERR_FORMAT);
        assert_eq!(llama_load_vocab(null(), 0, Some(&mut m)), LLAMA_ERR_INVALID_ARGUMENT);
        assert!(m.is_null());
    }
}

#[test]
fn tensor_listing_and_hparams() {
    let m = load(GGUF);
    unsafe {
        let n = llama_model_n_tensors(m.0.as_ref());
        assert_eq!(n, 47);
        let mut t = llama_tensor_info {
            size: std::mem::size_of::<llama_tensor_info>() as u32,
            n_dims: 0,
            name: null(),
            dtype: null(),
            shape: [0; 8],
        };
        let mut found = false;
        for i in 0..n {
            assert_eq!(llama_model_tensor(m.0.as_ref(), i, &mut t), LLAMA_OK);
            if CStr::from_ptr(t.name).to_str().unwrap() == "blk.0.attn_k.weight" {
                assert_eq!((t.n_dims, t.shape[0], t.shape[1]), (2, 32, 64));
                assert_eq!(CStr::from_ptr(t.dtype).to_str().unwrap(), "F32");
                found = true;
            }
        }
        assert!(found);
        assert_eq!(llama_model_tensor(m.0.as_ref(), n, &mut t), LLAMA_ERR_INVALID_ARGUMENT);
        assert_eq!(llama_model_tensor(m.0.as_ref(), -1, &mut t), LLAMA_ERR_INVALID_ARGUMENT);
        assert_eq!(llama_model_tensor(m.0.as_ref(), 0, null_mut()), LLAMA_ERR_INVALID_ARGUMENT);
        t.size = 3;
        assert_eq!(llama_model_tensor(m.0.as_ref(), 0, &mut t), LLAMA_ERR_INVALID_ARGUMENT);
        let mut hp: llama_model_hparams = std::mem::zeroed();
        assert_eq!(llama_model_get_hparams(m.0.as_ref(), &mut hp), LLAMA_ERR_INVALID_ARGUMENT, "size not set");
        hp.size = std::mem::size_of::<llama_model_hparams>() as u32;
        assert_eq!(llama_model_get_hparams(m.0.as_ref(), &mut hp), LLAMA_OK);
        assert_eq!(
            (hp.version, hp.n_vocab, hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv, hp.n_ff),
            (2, 512, 64, 5, 8, 4, 172)
        );
        assert_eq!(hp.n_params, 260_032);
        assert_eq!(llama_model_n_tensors(None), LLAMA_ERR_INVALID_ARGUMENT);
        llama_model_free(m.0);
    }
}

/// The versioned structs have no implicit padding (every gap is a named reserved field), so
/// that a size ending at any field boundary is a whole prefix, and hosts that declare structs
/// by hand (C#, `Pack = 1`) cannot misplace a field. Offsets on 64-bit targets.
#[test]
#[cfg(target_pointer_width = "64")]
fn versioned_structs_spell_out_their_padding() {
    use std::mem::{offset_of, size_of};
    assert_eq!(size_of::<llama_load_params>(), 72);
    assert_eq!(
        [
            offset_of!(llama_load_params, version),
            offset_of!(llama_load_params, config_path),
            offset_of!(llama_load_params, tokenizer_path),
            offset_of!(llama_load_params, device),
            offset_of!(llama_load_params, n_threads),
            offset_of!(llama_load_params, use_mmap),
            offset_of!(llama_load_params, reserved0),
            offset_of!(llama_load_params, progress),
            offset_of!(llama_load_params, progress_user_data),
            offset_of!(llama_load_params, device_index),
            offset_of!(llama_load_params, reserved1),
            offset_of!(llama_load_params, bf16_products),
            offset_of!(llama_load_params, reserved2),
        ],
        [4, 8, 16, 24, 28, 32, 36, 40, 48, 56, 60, 64, 68]
    );
    assert_eq!(size_of::<llama_session_params>(), 40);
    assert_eq!(offset_of!(llama_session_params, seed), 24);
    assert_eq!(offset_of!(llama_session_params, kv_type), 32);
    assert_eq!(offset_of!(llama_session_params, reserved0), 36);
    assert_eq!(size_of::<llama_model_hparams>(), 56);
    assert_eq!(offset_of!(llama_model_hparams, reserved0), 44);
    assert_eq!(offset_of!(llama_model_hparams, n_params), 48);
    assert_eq!(size_of::<llama_tensor_info>(), 88);
    // The version-1 by-value defaults keep version 1's sizes.
    assert_eq!(llama_load_params_default().size, 56);
    assert_eq!(llama_session_params_default().size, 32);
}

/// `LLAMA_DEVICE_CUDA` on a machine without a usable GPU (every CI machine): `LLAMA_ERR_DEVICE`
/// naming what is missing, before the file is read; a bad device number is an invalid argument.
#[test]
fn cuda_without_a_gpu_is_a_device_error_naming_what_is_missing() {
    let path = cstr(&data(GGUF));
    let mut m = null_mut();
    let mut lp = llama_load_params_default_v2();
    lp.device = LLAMA_DEVICE_CUDA;
    lp.device_index = 1;
    let st = unsafe { llama_load(path.as_ptr(), &lp, Some(&mut m)) };
    let msg = last_error();
    assert!(m.is_null());
    if cfg!(feature = "cuda") && !msg.contains("not found") && !msg.contains("no CUDA GPU") {
        // A machine with a GPU: the probe passed or named the index.
        assert!(st == LLAMA_ERR_DEVICE || st == LLAMA_ERR_UNSUPPORTED, "{st}: {msg}");
    } else {
        assert_eq!(st, LLAMA_ERR_DEVICE, "{msg}");
        assert!(msg.contains("CUDA device 1"), "{msg}");
        if cfg!(feature = "cuda") {
            assert!(msg.contains("libcuda.so") || msg.contains("nvcuda.dll") || msg.contains("no CUDA GPU"), "{msg}");
        } else {
            assert!(msg.contains("without the `cuda` feature"), "{msg}");
        }
    }
    lp.device = 7;
    assert_eq!(unsafe { llama_load(path.as_ptr(), &lp, Some(&mut m)) }, LLAMA_ERR_INVALID_ARGUMENT);
}
