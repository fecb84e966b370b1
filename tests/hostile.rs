//! Hostile input that once took the host down or was half-used (issue 19): every case is
//! refused with a clear status and message, in bounded memory, without waiting forever.
//!
//! The heap is counted by this binary's allocator, and the tests take one lock, so a test's
//! peak is its own.

mod common;
use common::*;
#[path = "common/ckpt_writer.rs"]
mod ckpt_writer;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use runllama::ffi::*;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        IN_USE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            IN_USE.fetch_sub(l.size(), Ordering::Relaxed);
            let now = IN_USE.fetch_add(new, Ordering::Relaxed) + new;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One test at a time in this binary, so that the heap counters see one test's allocations.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Heap bytes at the peak of `f` above what was in use before it.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(llama_last_error()) }.to_string_lossy().into_owned()
}

fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("runllama-hostile-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `llama_load` of `path` (with `tokenizer`): the status, and the model when it loaded.
fn load_with(path: &Path, tokenizer: Option<&Path>, n_threads: i32) -> (llama_status, *mut llama_model) {
    load_with_paths(path, tokenizer, None, n_threads)
}

/// `llama_load` of `path` with the optional `tokenizer_path` and `config_path`.
fn load_with_paths(
    path: &Path,
    tokenizer: Option<&Path>,
    config: Option<&Path>,
    n_threads: i32,
) -> (llama_status, *mut llama_model) {
    let c_str = |p: &Path| CString::new(p.to_str().unwrap()).unwrap();
    let (p, t, c) = (c_str(path), tokenizer.map(c_str), config.map(c_str));
    let mut lp = llama_load_params_default_v2();
    lp.n_threads = n_threads;
    if let Some(t) = &t {
        lp.tokenizer_path = t.as_ptr();
    }
    if let Some(c) = &c {
        lp.config_path = c.as_ptr();
    }
    let mut m = null_mut();
    // SAFETY: valid strings and params; `m` receives the model.
    let st = unsafe { llama_load(p.as_ptr(), &lp, Some(&mut m)) };
    (st, m)
}

/// Load `path` (with `tokenizer`) and check that it is refused with `status` and a message
/// containing `needle`.
fn refused(path: &Path, tokenizer: Option<&Path>, status: llama_status, needle: &str) {
    let (st, m) = load_with(path, tokenizer, 1);
    assert!(m.is_null());
    assert_eq!(st, status, "{}: {}", path.display(), last_error());
    assert!(last_error().contains(needle), "{}: {}", path.display(), last_error());
}

const GGUF: &str = "stories260K/stories260K-f32.gguf";

/// The fixture GGUF with the u32 value of `key` replaced.
fn gguf_with_u32(key: &str, value: u32) -> Vec<u8> {
    let mut f = data_bytes(GGUF);
    let at = f.windows(key.len()).position(|w| w == key.as_bytes()).expect("key in the fixture") + key.len();
    assert_eq!(u32::from_le_bytes(f[at..at + 4].try_into().unwrap()), 4, "{key} is a uint32");
    f[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
    f
}

#[test]
fn layer_counts_that_disagree_with_the_tensors_are_format_errors_not_aborts() {
    let _g = serial();
    let dir = scratch_dir("layers");
    for (count, expect) in [(u32::MAX, "blk.5"), (1 << 26, "blk.5"), (4, "4 layers are declared")] {
        let p = dir.join(format!("blocks-{count}.gguf"));
        std::fs::write(&p, gguf_with_u32("llama.block_count", count)).unwrap();
        let ((), peak) = peak_heap(|| refused(&p, None, LLAMA_ERR_FORMAT, expect));
        assert!(peak < 64 << 20, "block_count {count}: {peak} bytes of heap");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn absurd_thread_counts_are_refused() {
    let _g = serial();
    let (st, m) = load_with(&data(GGUF), None, i32::MAX);
    assert!(m.is_null());
    assert_eq!(st, LLAMA_ERR_INVALID_ARGUMENT, "{}", last_error());
    assert!(last_error().contains("n_threads"), "{}", last_error());
}

#[cfg(target_os = "linux")]
#[test]
fn a_fifo_as_model_or_tokenizer_is_refused_without_waiting() {
    let _g = serial();
    let dir = scratch_dir("fifo");
    let fifo = dir.join("model.gguf");
    let c = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for tokenizer in [None, Some(fifo.clone())] {
        let (model, tok) = if tokenizer.is_some() { (data(GGUF), tokenizer) } else { (fifo.clone(), None) };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (st, m) = load_with(&model, tok.as_deref(), 1);
            let _ = tx.send((st, m.is_null(), last_error()));
        });
        let (st, null, msg) = rx.recv_timeout(Duration::from_secs(20)).expect("llama_load returned");
        assert_eq!(st, LLAMA_ERR_IO, "{msg}");
        assert!(null && msg.contains("not a regular file"), "{msg}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Resident memory of this process in bytes (Linux).
#[cfg(target_os = "linux")]
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 4096
}

#[cfg(target_os = "linux")]
#[test]
fn a_long_context_commits_memory_as_it_is_used_and_an_impossible_one_is_out_of_memory() {
    let _g = serial();
    let (st, m) = load_with(&data(GGUF), None, 1);
    assert_eq!(st, LLAMA_OK, "{}", last_error());
    // 2^24 positions of stories260K: 10 GiB of f16 cache if it were all written.
    let before = rss();
    let mut sp = llama_session_params_default_v2();
    sp.n_ctx = 1 << 24;
    let mut s = null_mut();
    // SAFETY: a live model and valid params.
    let st = unsafe { llama_session_new(m, &sp, Some(&mut s)) };
    if st == LLAMA_OK {
        let grew = rss().saturating_sub(before);
        assert!(grew < 256 << 20, "a 2^24-position session made the process grow by {grew} bytes");
        let mut next = 0;
        // SAFETY: a live session; one valid id.
        assert_eq!(unsafe { llama_step(s, [1].as_ptr(), 1, Some(&mut next)) }, LLAMA_OK, "{}", last_error());
        // SAFETY: live, freed once.
        unsafe { llama_session_free(s) };
    } else {
        // A machine with less than 10 GiB of memory and swap says so.
        assert_eq!(st, LLAMA_ERR_OUT_OF_MEMORY, "{}", last_error());
    }
    // 2^30 positions: 687 GB.
    sp.n_ctx = 1 << 30;
    // SAFETY: as above.
    let st = unsafe { llama_session_new(m, &sp, Some(&mut s)) };
    assert_eq!(st, LLAMA_ERR_OUT_OF_MEMORY, "{}", last_error());
    assert!(last_error().contains("bytes"), "{}", last_error());
    // SAFETY: live, freed once.
    unsafe { llama_model_free(m) };
}

#[test]
fn a_step_count_past_the_context_is_refused_before_any_id_is_read() {
    let _g = serial();
    let (st, m) = load_with(&data(GGUF), None, 1);
    assert_eq!(st, LLAMA_OK, "{}", last_error());
    let mut sp = llama_session_params_default_v2();
    sp.n_ctx = 64;
    let mut s = null_mut();
    // SAFETY: a live model and valid params.
    assert_eq!(unsafe { llama_session_new(m, &sp, Some(&mut s)) }, LLAMA_OK, "{}", last_error());
    let ids = [1i32, 2, 3, 4];
    let mut next = 0;
    // SAFETY: a live session; the count lies, and must be refused before `ids` is read past 4.
    let st = unsafe { llama_step(s, ids.as_ptr(), 1 << 40, Some(&mut next)) };
    assert_eq!(st, LLAMA_ERR_CONTEXT_FULL, "{}", last_error());
    // The session still works.
    // SAFETY: 4 valid ids.
    assert_eq!(unsafe { llama_step(s, ids.as_ptr(), 4, Some(&mut next)) }, LLAMA_OK, "{}", last_error());
    // SAFETY: live handles, freed once.
    unsafe {
        llama_session_free(s);
        llama_model_free(m);
    }
}

#[test]
fn detokenize_sizes_the_text_before_building_it() {
    let _g = serial();
    let (st, m) = load_with(&data(GGUF), None, 1);
    assert_eq!(st, LLAMA_OK, "{}", last_error());
    // The longest piece of the vocabulary, many times.
    let n_vocab = 512;
    let mut longest = (0, 0);
    for id in 0..n_vocab {
        let mut len = 0;
        // SAFETY: a live model; a size query.
        unsafe { llama_token_to_piece(m.as_ref(), id, null_mut(), 0, Some(&mut len)) };
        longest = longest.max((len, id));
    }
    let ids = vec![longest.1; 100_000];
    let mut full = vec![0u8; ids.len() * longest.0 + 1];
    let mut need = 0;
    // SAFETY: a live model, valid ids and buffer.
    let st = unsafe {
        llama_detokenize(m.as_ref(), ids.as_ptr(), ids.len(), 0, full.as_mut_ptr().cast(), full.len(), Some(&mut need))
    };
    assert_eq!(st, LLAMA_OK, "{}", last_error());
    assert!(need >= 2 * ids.len(), "{need}");
    let mut small = [0u8; 8];
    let mut len = 0;
    let (st, peak) = peak_heap(|| {
        // SAFETY: as above, with a small buffer.
        unsafe {
            llama_detokenize(
                m.as_ref(),
                ids.as_ptr(),
                ids.len(),
                0,
                small.as_mut_ptr().cast(),
                small.len(),
                Some(&mut len),
            )
        }
    });
    assert_eq!(st, LLAMA_ERR_BUFFER_TOO_SMALL, "{}", last_error());
    assert_eq!(len, need, "the size query gives the whole length");
    // The ids' copy and a little more, not the text.
    assert!(peak < 4 * ids.len() + (64 << 10), "{peak} bytes of heap to refuse a {need}-byte text");
    // SAFETY: live, freed once.
    unsafe { llama_model_free(m) };
}

#[test]
fn gguf_arrays_take_the_memory_of_their_bytes() {
    let _g = serial();
    let n = 8usize << 20;
    let mut f = Vec::new();
    f.extend_from_slice(b"GGUF");
    f.extend_from_slice(&3u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // tensors
    f.extend_from_slice(&1u64.to_le_bytes()); // key/value pairs
    f.extend_from_slice(&4u64.to_le_bytes());
    f.extend_from_slice(b"blob");
    f.extend_from_slice(&9u32.to_le_bytes()); // array
    f.extend_from_slice(&0u32.to_le_bytes()); // of uint8
    f.extend_from_slice(&(n as u64).to_le_bytes());
    f.resize(f.len() + n, 7);
    let (parsed, peak) = peak_heap(|| runllama::formats::gguf::parse(&f, "blob.gguf").map(drop));
    parsed.unwrap();
    assert!(peak < n + (1 << 20), "{peak} bytes of heap for a {n}-byte array");
}

#[test]
fn checkpoint_tensors_without_dimensions_are_format_errors_not_panics() {
    use ckpt_writer::CkptWriter;
    use runllama::formats::ckpt::CkptDType;
    let _g = serial();
    let dir = scratch_dir("ckpt0");
    let emb = vec![0u8; 32 * 64 * 4];
    for name in [
        "model.layers.0.attention.wk.weight",
        "model.layers.0.attention.w_qkv.weight",
        "model.layers.0.feed_forward.w_gate_hidden.weight",
        "model.layers.0.feed_forward.w1.weight",
    ] {
        for dims in [&[][..], &[0][..]] {
            let p = dir.join("zero.ckpt");
            let mut w = CkptWriter::new(std::fs::File::create(&p).unwrap(), 1 << 30, false).unwrap();
            w.tensor("model.tok_embeddings.embedding_weight", &CkptDType::F32, &[32, 64], &emb).unwrap();
            let bytes = if dims.is_empty() { 4 } else { 0 };
            w.tensor(name, &CkptDType::F32, dims, &vec![0u8; bytes]).unwrap();
            w.finish().unwrap();
            let (st, m) = load_with(&p, Some(&data("stories260K/tok512.model")), 1);
            assert!(m.is_null());
            assert_eq!(st, LLAMA_ERR_FORMAT, "{name} {dims:?}: {}", last_error());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_whose_parts_disagree_are_refused() {
    let _g = serial();
    let dir = scratch_dir("disagree");
    let tok = data("stories260K/tok512.model");

    // A llama2.c file with bytes its header does not account for.
    let mut bin = data_bytes("stories260K/stories260K.bin");
    bin.extend_from_slice(&[0; 64]);
    let p = dir.join("trailing.bin");
    std::fs::write(&p, &bin).unwrap();
    refused(&p, Some(&tok), LLAMA_ERR_FORMAT, "64 bytes unaccounted for");

    // The same tensor in two safetensors shards.
    let shards = dir.join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    let hf = data("stories260K/hf");
    for f in ["config.json", "tokenizer.model"] {
        std::fs::copy(hf.join(f), shards.join(f)).unwrap();
    }
    for f in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
        std::fs::copy(hf.join("model.safetensors"), shards.join(f)).unwrap();
    }
    refused(&shards, None, LLAMA_ERR_FORMAT, "is also in");

    // A context length of 0.
    let p = dir.join("ctx0.gguf");
    std::fs::write(&p, gguf_with_u32("llama.context_length", 0)).unwrap();
    refused(&p, None, LLAMA_ERR_FORMAT, "context length");
    // ... in a config.json and in a MindFormers yaml.
    let d = dir.join("ctx0-hf");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["model.safetensors", "tokenizer.model"] {
        std::fs::copy(hf.join(f), d.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(hf.join("config.json")).unwrap();
    let zero = config.replace("\"max_position_embeddings\": 512", "\"max_position_embeddings\": 0");
    assert_ne!(zero, config);
    std::fs::write(d.join("config.json"), zero).unwrap();
    refused(&d, None, LLAMA_ERR_FORMAT, "context length");
    let yaml = String::from_utf8(data_bytes("mindformers/stories260K.yaml")).unwrap();
    assert!(yaml.contains("seq_length: 512"), "{yaml}");
    let y = dir.join("ctx0.yaml");
    std::fs::write(&y, yaml.replace("seq_length: 512", "seq_length: 0")).unwrap();
    let (st, m) = load_with_config(&data("mindformers/stories260K.ckpt"), &y);
    assert!(m.is_null(), "seq_length 0 loaded");
    assert_eq!(st, LLAMA_ERR_FORMAT, "{}", last_error());
    assert!(last_error().contains("context length"), "{}", last_error());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_step_whose_logits_are_not_finite_fails_and_leaves_the_session_as_it_was() {
    let _g = serial();
    let dir = scratch_dir("nan");
    for bad in [f32::NAN, f32::INFINITY] {
        let mut f = data_bytes(GGUF);
        let g = runllama::formats::gguf::parse(&f, "nan.gguf").unwrap();
        let t = g.tensor("output_norm.weight").expect("output_norm.weight");
        f[t.offset..t.offset + 4].copy_from_slice(&bad.to_le_bytes());
        let p = dir.join("nan.gguf");
        std::fs::write(&p, &f).unwrap();
        let (st, m) = load_with(&p, None, 1);
        assert_eq!(st, LLAMA_OK, "{}", last_error());
        let mut sp = llama_session_params_default_v2();
        sp.n_ctx = 16;
        let mut s = null_mut();
        // SAFETY: a live model and valid params.
        assert_eq!(unsafe { llama_session_new(m, &sp, Some(&mut s)) }, LLAMA_OK, "{}", last_error());
        let mut next = -7;
        // SAFETY: a live session, one valid id.
        let st = unsafe { llama_step(s, [1].as_ptr(), 1, Some(&mut next)) };
        assert_eq!(st, LLAMA_ERR_FORMAT, "{bad}: {}", last_error());
        assert!(last_error().contains("NaN or an infinity"), "{bad}: {}", last_error());
        assert_eq!(next, -7, "{bad}: no token is handed out");
        // SAFETY: live handles.
        unsafe {
            assert_eq!(llama_session_position(s.as_ref()), 0);
            assert!(llama_session_logits(s.as_ref()).is_null());
            llama_session_free(s);
            llama_model_free(m);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A llama2.c `tokenizer.bin` of `pieces` (scores 0).
fn tokenizer_bin(pieces: &[&str]) -> Vec<u8> {
    let mut b = 16u32.to_le_bytes().to_vec();
    for p in pieces {
        b.extend_from_slice(&0f32.to_le_bytes());
        b.extend_from_slice(&(p.len() as i32).to_le_bytes());
        b.extend_from_slice(p.as_bytes());
    }
    b
}

/// `llama_load_vocab` of `path`: the status (the model freed when it loaded).
fn load_vocab(path: &Path) -> llama_status {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    // SAFETY: a valid path; `m` receives the model.
    let st = unsafe { llama_load_vocab(c.as_ptr(), 0, Some(&mut m)) };
    if !m.is_null() {
        // SAFETY: loaded above, freed once.
        unsafe { llama_model_free(m) };
    }
    st
}

#[test]
fn vocabularies_with_empty_or_repeated_pieces_are_refused() {
    let _g = serial();
    let dir = scratch_dir("pieces");
    let p = dir.join("tokenizer.bin");
    let base = ["<unk>", "\n<s>\n", "\n</s>\n", "a", "b"];
    std::fs::write(&p, tokenizer_bin(&base)).unwrap();
    assert_eq!(load_vocab(&p), LLAMA_OK, "{}", last_error());
    for (bad, expect) in [
        (["<unk>", "\n<s>\n", "\n</s>\n", "a", "a"], "already id 3"),
        (["<unk>", "\n<s>\n", "\n</s>\n", "a", ""], "[4] is empty"),
    ] {
        std::fs::write(&p, tokenizer_bin(&bad)).unwrap();
        assert_eq!(load_vocab(&p), LLAMA_ERR_FORMAT, "{bad:?}: {}", last_error());
        assert!(last_error().contains(expect), "{}", last_error());
    }
    // A GGUF SentencePiece vocabulary with one byte piece twice.
    let mut f = data_bytes(GGUF);
    let at = f.windows(6).position(|w| w == b"<0x42>").unwrap();
    f[at..at + 6].copy_from_slice(b"<0x41>");
    let p = dir.join("dup.gguf");
    std::fs::write(&p, &f).unwrap();
    refused(&p, None, LLAMA_ERR_FORMAT, "\"<0x41>\" is already id");
    // ... and with an empty piece: the one after "<0xFF>" (the first word piece, X) keeps its
    // place and grows by the length of the next (Y) with 'z's, Y's length becoming 0, so that
    // every offset after them holds.
    let mut f = data_bytes(GGUF);
    let len_at = |f: &[u8], at: usize| u64::from_le_bytes(f[at..at + 8].try_into().unwrap()) as usize;
    let x = f.windows(6).position(|w| w == b"<0xFF>").unwrap() + 6;
    let (lx, ly) = (len_at(&f, x), len_at(&f, x + 8 + len_at(&f, x)));
    assert!(lx > 0 && ly > 0 && lx + ly < 64);
    f[x..x + 8].copy_from_slice(&((lx + ly) as u64).to_le_bytes());
    f[x + 8 + lx..x + 8 + lx + ly].fill(b'z');
    f[x + 8 + lx + ly..x + 16 + lx + ly].fill(0);
    let p = dir.join("empty.gguf");
    std::fs::write(&p, &f).unwrap();
    refused(&p, None, LLAMA_ERR_FORMAT, "is empty");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_mindformers_key_given_twice_is_refused() {
    let _g = serial();
    let yaml =
        "model:\n  model_config:\n    type: LlamaConfig\n    num_layers: 5\n    hidden_size: 64\n    num_layers: 2\n";
    let e = runllama::formats::mindformers::parse_yaml(yaml, "twice.yaml").unwrap_err();
    assert_eq!(e.status, runllama::error::Status::Format, "{e}");
    assert!(e.to_string().contains("'model.model_config.num_layers' is given twice (first at line 4)"), "{e}");
    let once = yaml.replace("    num_layers: 2\n", "");
    runllama::formats::mindformers::parse_yaml(&once, "once.yaml").unwrap();
}

#[test]
fn a_checkpoint_weight_of_an_unread_type_is_named_as_such() {
    use ckpt_writer::CkptWriter;
    use runllama::formats::ckpt::CkptDType;
    let _g = serial();
    let dir = scratch_dir("ckptf64");
    let p = dir.join("f64.ckpt");
    let mut w = CkptWriter::new(std::fs::File::create(&p).unwrap(), 1 << 30, false).unwrap();
    w.tensor("model.tok_embeddings.embedding_weight", &CkptDType::F32, &[32, 64], &vec![0u8; 32 * 64 * 4]).unwrap();
    w.tensor("model.layers.0.attention.wq.weight", &CkptDType::F64, &[64, 64], &vec![0u8; 64 * 64 * 8]).unwrap();
    w.finish().unwrap();
    refused(&p, Some(&data("stories260K/tok512.model")), LLAMA_ERR_UNSUPPORTED, "stored as Float64");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every other case of this file again, in a child process whose address space is limited to
/// 1 GiB: an allocation sized by input that the library does not check would abort the child
/// (Rust's reaction to a failed allocation), which fails this test.
#[cfg(target_os = "linux")]
#[test]
fn every_case_passes_under_a_1_gib_address_space_limit() {
    passes_under_a_1_gib_address_space(&["--skip", "address_space_limit"]);
}

#[test]
fn a_safetensors_header_is_sized_before_it_is_parsed() {
    let _g = serial();
    // A shape of 4 million dims: the header once took 20 times its size as JSON values.
    let dims = vec!["1"; 4 << 20].join(",");
    let header = format!("{{\"a\":{{\"dtype\":\"F32\",\"shape\":[{dims}],\"data_offsets\":[0,4]}}}}");
    let mut f = (header.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(header.as_bytes());
    f.extend_from_slice(&[0; 4]);
    let (r, peak) = peak_heap(|| runllama::formats::safetensors::parse(&f, "shape.safetensors", 0).map(drop));
    let e = r.unwrap_err();
    assert_eq!(e.status, runllama::error::Status::Format, "{e}");
    assert!(e.to_string().contains("more than 16 elements"), "{e}");
    assert!(peak < 1 << 20, "{peak} bytes of heap for an {}-byte header", header.len());
    // Many small values: bounded too.
    let keys: Vec<String> = (0..(1 << 20) + 1).map(|i| format!("\"k{i}\":\"\"")).collect();
    let header = format!("{{\"__metadata__\":{{{}}}}}", keys.join(","));
    let mut f = (header.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(header.as_bytes());
    let e = runllama::formats::safetensors::parse(&f, "many.safetensors", 0).unwrap_err();
    assert!(e.to_string().contains("values"), "{e}");
}

#[test]
fn a_tokenizer_json_of_millions_of_tiny_values_is_refused_before_parsing() {
    let _g = serial();
    let dir = scratch_dir("tokjson");
    let p = dir.join("tokenizer.json");
    let zeros = vec!["0"; (1 << 22) + 1].join(",");
    std::fs::write(&p, format!("{{\"model\":{{\"x\":[{zeros}]}}}}")).unwrap();
    let (st, peak) = peak_heap(|| load_vocab(&p));
    assert_eq!(st, LLAMA_ERR_FORMAT, "{}", last_error());
    assert!(last_error().contains("values"), "{}", last_error());
    // The file's bytes, not 30 bytes per value.
    assert!(peak < 24 << 20, "{peak} bytes of heap");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tokenizer_bin_cut_at_a_token_boundary_does_not_fit_its_model() {
    let _g = serial();
    let dir = scratch_dir("cut");
    let bin = data_bytes("stories260K/tok512.bin");
    // Walk 511 of the 512 tokens (f32 score, i32 length, bytes each) and cut there.
    let mut at = 4;
    for _ in 0..511 {
        let len = i32::from_le_bytes(bin[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    let p = dir.join("tok511.bin");
    std::fs::write(&p, &bin[..at]).unwrap();
    refused(
        &data("stories260K/stories260K.bin"),
        Some(&p),
        LLAMA_ERR_FORMAT,
        "511 tokens but the model's embedding has 512 rows",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn llama3s_tiktoken_file_one_line_short_does_not_fit_a_128256_row_model() {
    let _g = serial();
    let dir = scratch_dir("tiktoken-short");
    // A llama2.c model of LLaMA 3's vocabulary size (dim 16, one layer; shared classifier).
    let (dim, hidden, layers, heads, vocab, seq) = (16usize, 32usize, 1usize, 2usize, 128_256usize, 8usize);
    let floats = vocab * dim + layers * (2 * dim + 4 * dim * dim + 3 * dim * hidden) + dim + seq * dim / heads;
    let mut bin = Vec::with_capacity(28 + 4 * floats);
    for v in [dim, hidden, layers, heads, heads, vocab, seq] {
        bin.extend_from_slice(&(v as i32).to_le_bytes());
    }
    bin.extend((0..floats).flat_map(|i| ((i % 7) as f32 * 0.01).to_le_bytes()));
    let model = dir.join("l3vocab.bin");
    std::fs::write(&model, &bin).unwrap();
    // Meta's file fits (128,000 ranks + 256 special tokens); without its last line every
    // special token would sit one id lower than the model's rows for them.
    let full = data("tokenizers/llama3/tokenizer.model");
    let (st, m) = load_with(&model, Some(&full), 1);
    assert_eq!(st, LLAMA_OK, "{}", last_error());
    // SAFETY: a model this test loaded, freed once.
    unsafe { llama_model_free(m) };
    let text = std::fs::read(&full).unwrap();
    let cut = text[..text.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let short = dir.join("tokenizer.model");
    std::fs::write(&short, &text[..cut]).unwrap();
    refused(&model, Some(&short), LLAMA_ERR_FORMAT, "128255 tokens but the model's embedding has 128256 rows");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Load `path` with a `config_path` (and the stories260K tokenizer): status and model.
fn load_with_config(path: &Path, config: &Path) -> (llama_status, *mut llama_model) {
    load_with_paths(path, Some(&data("stories260K/tok512.model")), Some(config), 1)
}

#[test]
fn layer_counts_of_configs_that_disagree_with_the_tensors_are_format_errors_not_aborts() {
    let _g = serial();
    let dir = scratch_dir("layers-cfg");
    // config.json beside safetensors (stories260K has 5 layers).
    let hf = data("stories260K/hf");
    let config = std::fs::read_to_string(hf.join("config.json")).unwrap();
    assert!(config.contains("\"num_hidden_layers\": 5"), "{config}");
    for n in ["2147483648", "1099511627776", "4", "6"] {
        let d = dir.join(format!("hf-{n}"));
        std::fs::create_dir_all(&d).unwrap();
        for f in ["model.safetensors", "tokenizer.model"] {
            std::fs::copy(hf.join(f), d.join(f)).unwrap();
        }
        std::fs::write(
            d.join("config.json"),
            config.replace("\"num_hidden_layers\": 5", &format!("\"num_hidden_layers\": {n}")),
        )
        .unwrap();
        let ((st, m), peak) = peak_heap(|| load_with(&d, None, 1));
        assert!(m.is_null(), "num_hidden_layers {n} loaded");
        assert_eq!(st, LLAMA_ERR_FORMAT, "num_hidden_layers {n}: {}", last_error());
        assert!(peak < 64 << 20, "num_hidden_layers {n}: {peak} bytes of heap");
    }
    // A MindFormers yaml beside a .ckpt.
    let yaml = data_bytes("mindformers/stories260K.yaml");
    let yaml = String::from_utf8(yaml).unwrap();
    assert!(yaml.contains("num_layers: 5"), "{yaml}");
    for n in ["1099511627776", "2147483648", "4"] {
        let y = dir.join(format!("layers-{n}.yaml"));
        std::fs::write(&y, yaml.replace("num_layers: 5", &format!("num_layers: {n}"))).unwrap();
        let ((st, m), peak) = peak_heap(|| load_with_config(&data("mindformers/stories260K.ckpt"), &y));
        assert!(m.is_null(), "num_layers {n} loaded");
        assert_eq!(st, LLAMA_ERR_FORMAT, "num_layers {n}: {}", last_error());
        assert!(peak < 64 << 20, "num_layers {n}: {peak} bytes of heap");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_and_path_mistakes_get_messages_that_say_what_is_wrong() {
    let _g = serial();
    let dir = scratch_dir("messages");
    let ckpt = data("mindformers/stories260K.ckpt");
    // A yaml that is not UTF-8.
    let y = dir.join("latin1.yaml");
    std::fs::write(&y, b"model:\n  model_config:\n    type: LlamaConfig # caf\xe9\n").unwrap();
    let (st, m) = load_with_config(&ckpt, &y);
    assert!(m.is_null());
    assert_eq!(st, LLAMA_ERR_FORMAT, "{}", last_error());
    assert!(last_error().contains("latin1.yaml") && last_error().contains("not UTF-8"), "{}", last_error());
    // An empty tokenizer path names no file.
    let (st, m) = load_with(&data(GGUF), Some(Path::new("")), 1);
    assert!(m.is_null());
    assert_eq!(st, LLAMA_ERR_INVALID_ARGUMENT, "{}", last_error());
    assert!(last_error().contains("tokenizer_path is an empty string"), "{}", last_error());
    // A tokenizer named by the yaml that is some other file: its bytes are not shown.
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "SECRET-7f3a9c: root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let yaml = String::from_utf8(data_bytes("mindformers/stories260K.yaml")).unwrap();
    let y = dir.join("vocab.yaml");
    let vocab_line = yaml.lines().find(|l| l.trim_start().starts_with("vocab_file:")).expect("vocab_file in the yaml");
    std::fs::write(&y, yaml.replace(vocab_line, &format!("    vocab_file: {}", secret.display()))).unwrap();
    let (st, m) = load_with_paths(&ckpt, None, Some(&y), 1);
    assert!(m.is_null(), "loaded with a text file as tokenizer");
    assert_ne!(st, LLAMA_OK);
    assert!(last_error().contains("secret.txt"), "{}", last_error());
    for shown in ["SECRET", "root", "53 45 43", "0x53"] {
        assert!(!last_error().contains(shown), "the file's bytes are shown: {}", last_error());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_call_functions_set_out_len_and_getters_set_the_error_on_every_failure() {
    let _g = serial();
    let (st, m) = load_with(&data(GGUF), None, 1);
    assert_eq!(st, LLAMA_OK, "{}", last_error());
    // SAFETY: `m` is a live model; buffers are as long as the capacities passed.
    unsafe {
        let model = m.as_ref();
        let text = "Once upon a time";
        let mut ids = [0 as llama_token; 16];
        let mut buf = [0 as std::ffi::c_char; 64];
        let mut n = 777usize;
        let st = llama_tokenize(model, text.as_ptr() as _, text.len(), 0x80, ids.as_mut_ptr(), ids.len(), Some(&mut n));
        assert_eq!((st, n), (LLAMA_ERR_INVALID_ARGUMENT, 0), "bad flags");
        n = 777;
        let st = llama_detokenize(model, [1, 512].as_ptr(), 2, 0, buf.as_mut_ptr(), buf.len(), Some(&mut n));
        assert_eq!((st, n), (LLAMA_ERR_INVALID_ARGUMENT, 0), "an id out of range");
        n = 777;
        let st = llama_token_to_piece(model, -1, buf.as_mut_ptr(), buf.len(), Some(&mut n));
        assert_eq!((st, n), (LLAMA_ERR_INVALID_ARGUMENT, 0), "a negative id");
        n = 777;
        let (role, content) = (CString::new("wizard").unwrap(), CString::new("hi").unwrap());
        let msgs = [llama_chat_message { role: role.as_ptr(), content: content.as_ptr() }];
        let st = llama_chat_tokenize(model, msgs.as_ptr(), 1, 0, ids.as_mut_ptr(), ids.len(), Some(&mut n));
        assert_ne!(st, LLAMA_OK);
        assert_eq!(n, 0, "a bad role");
        n = 777;
        let st = llama_model_describe(None, buf.as_mut_ptr(), buf.len(), Some(&mut n));
        assert_eq!((st, n), (LLAMA_ERR_INVALID_ARGUMENT, 0), "a NULL model");

        // Each getter given NULL right after a call that succeeded: the error is its own.
        let checks: [(&str, &dyn Fn() -> bool); 9] = [
            ("llama_model_n_vocab", &|| llama_model_n_vocab(None) == LLAMA_ERR_INVALID_ARGUMENT),
            ("llama_model_n_ctx_train", &|| llama_model_n_ctx_train(None) == LLAMA_ERR_INVALID_ARGUMENT),
            ("llama_model_n_tensors", &|| llama_model_n_tensors(None) == LLAMA_ERR_INVALID_ARGUMENT),
            ("llama_token_bos", &|| llama_token_bos(None) == -1),
            ("llama_token_eos", &|| llama_token_eos(None) == -1),
            ("llama_token_is_eog", &|| llama_token_is_eog(None, 2) == 0),
            ("llama_session_n_ctx", &|| llama_session_n_ctx(None) == 0),
            ("llama_session_position", &|| llama_session_position(None) == 0),
            ("llama_session_logits", &|| llama_session_logits(None).is_null()),
        ];
        for (name, call) in checks {
            assert_eq!(llama_model_n_vocab(model), 512);
            assert_eq!(last_error(), "", "a call that succeeded leaves no error");
            assert!(call(), "{name}(NULL)");
            assert!(last_error().starts_with(name) && last_error().contains("NULL"), "{name}: {:?}", last_error());
        }
        llama_model_free(m);
    }
}

/// Worker threads the system will not start are a resource error, not a bug: run in the child
/// of [`every_case_passes_under_a_1_gib_address_space_limit`], where 1,000 threads' stacks do
/// not fit the 1 GiB address space.
#[test]
fn worker_threads_the_system_refuses_are_out_of_memory() {
    let _g = serial();
    if std::env::var_os("RUNLLAMA_LIMITED_CHILD").is_none() {
        return;
    }
    let (st, m) = load_with(&data(GGUF), None, 1000);
    assert!(m.is_null());
    assert_eq!(st, LLAMA_ERR_OUT_OF_MEMORY, "{}", last_error());
    assert!(last_error().contains("cannot start 1000 worker threads"), "{}", last_error());
}
