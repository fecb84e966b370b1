#!/usr/bin/env bash
# Encode throughput, ours vs the Python references, on the same texts and one core:
#   1. `cargo bench --bench tokenize` (criterion; writes target/tokenize-bench/*.txt and our ids),
#   2. benches/tokenize_python.py (python sentencepiece for LLaMA 2, tiktoken for LLaMA 3),
#   3. a table of medians in MB/s and the ratios ours / python per model and text.
# With ROUNDS=n (default 3) each text is measured n times, ours then Python's right after it
# (so that both sides of a ratio see the same machine: this shared machine's speed drifts by up
# to 1.6x over minutes); the table shows each side's median over the rounds and the median and
# range of the per-round ratios.
#
#   python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install sentencepiece tiktoken
#   PYTHON=/tmp/tokvenv/bin/python benches/tokenize_compare.sh
#
# TOKENIZE_BENCH_CPU picks the core both run on (default: the last one; needs taskset).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ROUNDS=${ROUNDS:-3}
TARGET=${CARGO_TARGET_DIR:-target}
OUT="$TARGET/tokenize-bench"
CRIT="$TARGET/criterion/tokenize_encode"
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
mkdir -p "$OUT"
rm -f "$OUT"/rust-*.json "$OUT"/python-*.json
# The texts (and our ids, which the Python side checks) come from one full run first.
"${pin[@]}" cargo bench --bench tokenize -- --noplot --list >/dev/null
for r in $(seq "$ROUNDS"); do
  echo "== round $r of $ROUNDS ($(uptime))"
  for model in llama2 llama3; do
    for text in english chinese code; do
      rm -rf "$CRIT/$model/$text"
      "${pin[@]}" cargo bench --bench tokenize -- --noplot --exact "tokenize_encode/$model/$text" | grep -E "thrpt|^tokenize" || true
      # Keep this round's criterion median (ns per call of encode on the whole text).
      python3 - "$CRIT/$model/$text/new/estimates.json" "$OUT/rust-$r.json" "$model/$text" <<'PYEOF'
import json, os, sys
est, out, key = sys.argv[1:4]
res = json.load(open(out)) if os.path.exists(out) else {}
res[key] = json.load(open(est))["median"]["point_estimate"]
json.dump(res, open(out, "w"))
PYEOF
      "${pin[@]}" "$PY" benches/tokenize_python.py --dir "$OUT" --only "$model/$text" --json "$OUT/python-$r-$model-$text.json"
    done
  done
  python3 - "$OUT" "$r" <<'PYEOF'
import glob, json, os, sys
out, r = sys.argv[1], sys.argv[2]
rows = []
for f in sorted(glob.glob(os.path.join(out, f"python-{r}-*.json"))):
    rows += json.load(open(f))
json.dump(rows, open(os.path.join(out, f"python-{r}.json"), "w"))
PYEOF
done

python3 - "$OUT" "$ROUNDS" <<'PYEOF'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rust = [json.load(open(os.path.join(out, f"rust-{r}.json"))) for r in range(1, rounds + 1)]
py = [{(x["model"], x["impl"], x["text"]): x for x in json.load(open(os.path.join(out, f"python-{r}.json")))}
      for r in range(1, rounds + 1)]
refs = {"llama2": ["sentencepiece"], "llama3": ["tiktoken", "meta"]}
print(f"\nmedians over {rounds} round(s), MB/s = 10^6 bytes of UTF-8 text per second, one core;")
print("ours/python = median of the per-round ratios (each round measures ours, then Python right after)")
print(f"{'model':7} {'text':8} {'ours':>8}   {'python':>8} {'(impl)':15} {'ours/python':>11}  {'per-round ratios':>18}  ids")
for model in ["llama2", "llama3"]:
    for text in ["english", "chinese", "code"]:
        for impl in refs[model]:
            key = (model, impl, text)
            if key not in py[0]:
                continue
            nbytes = py[0][key]["bytes"]
            p = [py[r][key]["mb_per_s"] for r in range(rounds)]
            o = [nbytes / rust[r][f"{model}/{text}"] * 1e3 for r in range(rounds) if f"{model}/{text}" in rust[r]]
            pm = statistics.median(p)
            if o:
                om = statistics.median(o)
                ratios = [a / b for a, b in zip(o, p)]
                cols = f"{om:8.2f}   {pm:8.2f} ({impl:13}) {statistics.median(ratios):11.2f}  {min(ratios):8.2f}..{max(ratios):<8.2f}"
            else:
                cols = f"{'skipped':>8}   {pm:8.2f} ({impl:13}) {'n/a':>11}  {'':18}"
            print(f"{model:7} {text:8} {cols}  {py[0][key]['ids_check']}")
PYEOF
