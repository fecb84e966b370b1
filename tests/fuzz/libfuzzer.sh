#!/usr/bin/env bash
# Coverage-guided runs of the fuzz targets (src/fuzz.rs) with libFuzzer, for development (CI
# runs the short, uninstrumented tests/fuzz.rs instead). Works with the stable toolchain: the
# libfuzzer-sys crate builds libFuzzer (a C++ compiler is needed) and rustc's stable codegen
# flags add the coverage instrumentation libFuzzer reads (the sancov pass: 8-bit counters, a PC
# table, comparison tracing), with debug assertions and overflow checks on, so an arithmetic
# overflow is a crash too. No sanitizer (that needs nightly): what is found is a panic, an
# abort, a timeout or memory over the limit. It writes its project under target/libfuzzer
# (outside the sources), seeds each corpus from tests/data, and runs every target for SECS
# seconds (default 60), JOBS at a time (default 1), printing libFuzzer's final statistics
# (executions, coverage). Crashes are written to target/libfuzzer/artifacts/<target>/.
# Besides the parsers of src/fuzz.rs, text_llama2 and text_llama3 fuzz tokenize/detokenize
# (fuzz::text) on arbitrary bytes with a real LLaMA 2 / LLaMA 3 vocabulary.
#
#   [SECS=1800] [JOBS=2] tests/fuzz/libfuzzer.sh [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=${SECS:-60}
JOBS=${JOBS:-1}
DIR=target/libfuzzer
mkdir -p "$DIR/fuzz_targets"
TARGETS=(gguf safetensors hf_json llama2c ckpt mindformers_yaml tokenizer_file text_llama2 text_llama3)
[ $# -gt 0 ] && TARGETS=("$@")
{
  echo '[package]'
  echo 'name = "runllama-libfuzzer"'
  echo 'version = "0.0.0"'
  echo 'edition = "2021"'
  echo 'publish = false'
  echo '[dependencies]'
  echo 'libfuzzer-sys = "0.4"'
  echo "runllama = { path = \"$ROOT\", default-features = false }"
  echo '[profile.release]'
  echo 'debug-assertions = true'
  echo 'overflow-checks = true'
  echo '[workspace]'
  for t in "${TARGETS[@]}"; do
    printf '[[bin]]\nname = "%s"\npath = "fuzz_targets/%s.rs"\ntest = false\ndoc = false\n' "$t" "$t"
  done
} > "$DIR/Cargo.toml"
for t in "${TARGETS[@]}"; do
  case $t in
    text_llama2|text_llama3)
      cat > "$DIR/fuzz_targets/$t.rs" <<EOF
#![no_main]
use runllama::tokenizer::Tokenizer;
static VOCAB: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let t = VOCAB.get_or_init(|| {
        let file = include_bytes!("$ROOT/tests/data/tokenizers/${t#text_}/tokenizer.model");
        Tokenizer::from_file_bytes(file, "tokenizer.model").expect("the fixture loads")
    });
    runllama::fuzz::text(t, data)
});
EOF
      ;;
    *) printf '#![no_main]\nlibfuzzer_sys::fuzz_target!(|data: &[u8]| runllama::fuzz::%s(data));\n' "$t" > "$DIR/fuzz_targets/$t.rs" ;;
  esac
done
seed() { mkdir -p "$DIR/corpus/$1"; local t=$1; shift; for f in "$@"; do cp "$f" "$DIR/corpus/$t/"; done; }
for t in "${TARGETS[@]}"; do
  case $t in
    gguf) seed $t tests/data/stories260K/stories260K-f16.gguf tests/data/quant/k256-q4_k_m.gguf ;;
    safetensors) seed $t tests/data/stories260K/hf/model.safetensors ;;
    hf_json)
      seed $t tests/data/stories260K/hf/config.json
      printf '%s' '{"metadata": {"total_size": 1048576}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", "model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}' > "$DIR/corpus/$t/index.json" ;;
    llama2c) seed $t tests/data/stories260K/stories260K.bin ;;
    ckpt) seed $t tests/data/mindformers/stories260K.ckpt ;;
    mindformers_yaml) seed $t tests/data/mindformers/*.yaml ;;
    tokenizer_file)
      seed $t tests/data/stories260K/tok512.model tests/data/stories260K/tok512.bin tests/data/tokenizers/llama2/tokenizer.model \
        tests/data/tokenizers/llama3/tokenizer.model
      printf '%s' '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"added_tokens":[{"id":3,"content":"<s>","special":true}]}' > "$DIR/corpus/$t/tokenizer.json" ;;
    text_llama2|text_llama3)
      mkdir -p "$DIR/corpus/$t"
      printf '%s' 'Hello world, once upon a time' > "$DIR/corpus/$t/plain"
      printf '<s>[INST] hi [/INST]</s>\0\xef\xbb\xbf  \t\n\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\xa6\x80' > "$DIR/corpus/$t/mixed"
      printf '%s' '<|begin_of_text|><|start_header_id|>user<|end_header_id|>hi<|eot_id|>' > "$DIR/corpus/$t/llama3" ;;
  esac
done
cd "$DIR"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# An explicit target, so that the flags reach the fuzzed code but not build scripts (which run
# without libFuzzer's runtime).
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --bins --target "$TRIPLE"
run() {
  local t=$1
  mkdir -p "artifacts/$t"
  # Before each target's statistics, its name and length (output of parallel jobs is kept per
  # target and printed when it ends).
  ./target/"$TRIPLE"/release/"$t" "corpus/$t" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 \
    -max_len=4194304 -print_final_stats=1 -artifact_prefix="artifacts/$t/" > "$t.log" 2>&1 || true
  echo "== $t ($SECS s)"
  grep -E "^(stat::|#[0-9]+.*DONE|==[0-9]+==|SUMMARY|Done)|panicked|deadly signal" "$t.log" || true
}
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  run "$t" &
done
wait
