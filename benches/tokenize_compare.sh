#!/usr/bin/env bash
# Encode throughput, ours vs the Python references, on the same texts and one core:
#   1. `cargo bench --bench tokenize` (criterion; writes target/tokenize-bench/*.txt and our ids),
#   2. benches/tokenize_python.py (python sentencepiece for LLaMA 2, tiktoken for LLaMA 3),
#   3. a table of medians in MB/s and the ratios ours / python per model and text.
#
#   python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install sentencepiece tiktoken
#   PYTHON=/tmp/tokvenv/bin/python benches/tokenize_compare.sh
#
# TOKENIZE_BENCH_CPU picks the core both run on (default: the last one; needs taskset).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TARGET=${CARGO_TARGET_DIR:-target}
OUT="$TARGET/tokenize-bench"
pin=()
if command -v taskset >/dev/null 2>&1; then
  cpu=${TOKENIZE_BENCH_CPU:-$(($(nproc) - 1))}
  pin=(taskset -c "$cpu")
  echo "pinned to cpu $cpu"
fi
"$PY" -c 'import sentencepiece, tiktoken' || {
  echo "$PY lacks sentencepiece / tiktoken: set PYTHON to a venv with both (see the top of this file)" >&2
  exit 1
}

cargo bench --bench tokenize --no-run
rm -rf "$TARGET/criterion/tokenize_encode"
"${pin[@]}" cargo bench --bench tokenize -- --noplot
"${pin[@]}" "$PY" benches/tokenize_python.py --dir "$OUT" --json "$OUT/python.json"

python3 - "$TARGET/criterion/tokenize_encode" "$OUT/python.json" <<'PYEOF'
import json, os, sys
crit, pyjson = sys.argv[1], sys.argv[2]
py = {(r["model"], r["impl"], r["text"]): r for r in json.load(open(pyjson))}
refs = {"llama2": ["sentencepiece"], "llama3": ["tiktoken", "meta"]}
print()
print(f"{'model':7} {'text':8} {'ours MB/s':>10}   {'python (impl)':>26}   {'ours/python':>11}  ids")
for model in ["llama2", "llama3"]:
    for text in ["english", "chinese", "code"]:
        est = os.path.join(crit, model, text, "new", "estimates.json")
        ours = None
        if os.path.exists(est):
            ns = json.load(open(est))["median"]["point_estimate"]
            ours = py[(model, refs[model][0], text)]["bytes"] / ns * 1e3
        for impl in refs[model]:
            r = py.get((model, impl, text))
            if r is None:
                continue
            ratio = f"{ours / r['mb_per_s']:11.2f}" if ours else f"{'n/a':>11}"
            o = f"{ours:10.2f}" if ours else f"{'skipped':>10}"
            print(f"{model:7} {text:8} {o}   {r['mb_per_s']:10.2f} ({impl:13})   {ratio}  {r['ids_check']}")
PYEOF
