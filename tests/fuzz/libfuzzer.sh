#!/usr/bin/env bash
# Coverage-guided runs of the fuzz targets (src/fuzz.rs) with libFuzzer, for development (CI
# runs the short, uninstrumented tests/fuzz.rs instead). Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`); generates its cargo-fuzz project under
# target/libfuzzer (outside the sources), seeds each corpus from tests/data, and runs every
# target for SECS seconds (default 60), JOBS at a time (default 1), printing libFuzzer's final
# statistics (executions, coverage). Crashes stay in target/libfuzzer/artifacts/<target>/.
#
#   tests/fuzz/libfuzzer.sh [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=${SECS:-60}
DIR=target/libfuzzer
mkdir -p "$DIR/fuzz_targets"
TARGETS=(gguf safetensors llama2c ckpt mindformers_yaml tokenizer_file)
[ $# -gt 0 ] && TARGETS=("$@")
{
  echo '[package]'
  echo 'name = "runllama-libfuzzer"'
  echo 'version = "0.0.0"'
  echo 'edition = "2021"'
  echo 'publish = false'
  echo '[package.metadata]'
  echo 'cargo-fuzz = true'
  echo '[dependencies]'
  echo 'libfuzzer-sys = "0.4"'
  echo "runllama = { path = \"$ROOT\", default-features = false }"
  echo '[workspace]'
  for t in "${TARGETS[@]}"; do
    printf '[[bin]]\nname = "%s"\npath = "fuzz_targets/%s.rs"\ntest = false\ndoc = false\n' "$t" "$t"
  done
} > "$DIR/Cargo.toml"
for t in "${TARGETS[@]}"; do
  printf '#![no_main]\nlibfuzzer_sys::fuzz_target!(|data: &[u8]| runllama::fuzz::%s(data));\n' "$t" > "$DIR/fuzz_targets/$t.rs"
done
seed() { mkdir -p "$DIR/corpus/$1"; shift; for f in "$@"; do cp "$f" "$DIR/corpus/${t}/"; done; }
for t in "${TARGETS[@]}"; do
  case $t in
    gguf) seed $t tests/data/stories260K/stories260K-f16.gguf tests/data/quant/k256-q4_k_m.gguf ;;
    safetensors) seed $t tests/data/stories260K/hf/model.safetensors ;;
    llama2c) seed $t tests/data/stories260K/stories260K.bin ;;
    ckpt) seed $t tests/data/mindformers/stories260K.ckpt ;;
    mindformers_yaml) seed $t tests/data/mindformers/*.yaml ;;
    tokenizer_file) seed $t tests/data/stories260K/tok512.model tests/data/stories260K/tok512.bin ;;
  esac
done
cd "$DIR"
for t in "${TARGETS[@]}"; do
  echo "== $t ($SECS s)"
  cargo +nightly fuzz run --fuzz-dir . "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
    -max_len=4194304 -print_final_stats=1 2>&1 | grep -E "^(stat::|#[0-9]+.*DONE|==[0-9]+==|SUMMARY|Done)" || true
done
