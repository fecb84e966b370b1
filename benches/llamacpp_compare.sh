#!/usr/bin/env bash
# Side by side with llama.cpp on the same GGUF file, same threads, in one run:
#   1. our end-to-end bench (benches/e2e.rs: read bandwidth, also right around each decode run;
#      load, pp, tg, memory),
#   2. llama.cpp's llama-bench (-p PROMPT -d DEPTH -r REPS -t THREADS, then -n GEN alone
#      between two runs of the same read probe, `e2e --read-probe`),
# alternating ROUNDS times, then a table of medians and the ratios ours / llama.cpp and
# tg / (read bandwidth / weight bytes), one row per test (prompt length or decode, at each depth);
# each program's tg / limit uses the probes read next to its own decode.
#
#   LLAMA_BENCH=/path/to/llama-bench benches/llamacpp_compare.sh MODEL.gguf [THREADS]
#
# Environment: LLAMA_BENCH (required: a llama-bench binary), ROUNDS (default 1), REPS (3),
# PROMPT (prompt lengths, comma-separated: default 128; e.g. 8,32,128,512), GEN (64; 0: no
# decode), DEPTH (tokens already in the context, comma-separated: default 0; e.g. 0,4096),
# KV (f16 | f32 | q8_0 | q4_0 | q8_0_q4_0, default f16 as llama.cpp; llama-bench gets the
# same cache type), BF16_PRODUCTS (f32 | rounded, default f32: our load option for bf16
# weights; llama.cpp always rounds), OUT (target/llamacpp-compare), E2E (a built e2e bench
# binary to run instead of `cargo bench --bench e2e`: for a machine without Rust), EVICT (1:
# drop MODEL from the page cache first, so that our first run reads it back in through its
# huge-page-advised mapping in 2 MiB folios, which llama.cpp then reads too; the memory line
# says how much of the file decode saw in 2 MiB pages either way).
# Building llama-bench from PyPI sources only (CPU, native): download the source distribution
# llama_cpp_python-0.3.36.tar.gz of llama-cpp-python 0.3.36 from PyPI as a file (its release
# files list; `pip download --no-binary :all:` gets it too but first builds the package's build
# dependencies, which can hang), then:
#   tar xf llama_cpp_python-0.3.36.tar.gz
#   cmake -S llama_cpp_python-0.3.36/vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
#   cmake --build build --target llama-bench -j
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: LLAMA_BENCH=... $0 MODEL.gguf [THREADS]}
THREADS=${2:-$(nproc)}
: "${LLAMA_BENCH:?set LLAMA_BENCH to a llama.cpp llama-bench binary}"
ROUNDS=${ROUNDS:-1}
REPS=${REPS:-3}
PROMPT=${PROMPT:-128}
GEN=${GEN:-64}
DEPTH=${DEPTH:-0}
KV=${KV:-f16}
BF16_PRODUCTS=${BF16_PRODUCTS:-f32}
# The same cache type for llama.cpp (its quantized V cache needs flash attention).
case "$KV" in
  f16) LLAMA_KV_ARGS="" ;;
  f32) LLAMA_KV_ARGS="-ctk f32 -ctv f32" ;;
  q8_0) LLAMA_KV_ARGS="-ctk q8_0 -ctv q8_0 -fa 1" ;;
  q4_0) LLAMA_KV_ARGS="-ctk q4_0 -ctv q4_0 -fa 1" ;;
  q8_0_q4_0) LLAMA_KV_ARGS="-ctk q8_0 -ctv q4_0 -fa 1" ;;
  *) echo "KV=$KV: f16, f32, q8_0, q4_0 or q8_0_q4_0" >&2; exit 2 ;;
esac
OUT=${OUT:-target/llamacpp-compare}
mkdir -p "$OUT"
rm -f "$OUT"/ours-*.json "$OUT"/llamacpp-*.json

E2E=${E2E:-}
ours() {
  if [ -n "$E2E" ]; then "$E2E" "$@"; else cargo bench --bench e2e -- "$@"; fi
}
[ -n "$E2E" ] || cargo bench --bench e2e --no-run
theirs() {
  "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -d "$DEPTH" -r "$REPS" $LLAMA_KV_ARGS -o json "$@"
}
probe() {
  ours --read-probe "$THREADS" | awk '$1 == "read-probe" {print $2}'
}
if [ "${EVICT:-0}" = 1 ]; then
  python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$MODEL"
fi
for r in $(seq "$ROUNDS"); do
  echo "== round $r of $ROUNDS ($(uptime))"
  ours "$MODEL" --threads "$THREADS" --prompt "$PROMPT" --gen "$GEN" \
    --depth "$DEPTH" --reps "$REPS" --kv "$KV" --bf16-products "$BF16_PRODUCTS" --json "$OUT/ours-$r.json"
  echo "[]" > "$OUT/llamacpp-$r-pp.json"
  echo "[]" > "$OUT/llamacpp-$r-tg.json"
  [ "$PROMPT" = 0 ] || theirs -p "$PROMPT" -n 0 > "$OUT/llamacpp-$r-pp.json"
  if [ "$GEN" != 0 ]; then
    before=$(probe)
    theirs -p 0 -n "$GEN" > "$OUT/llamacpp-$r-tg.json"
    after=$(probe)
    echo "{\"before\": $before, \"after\": $after}" > "$OUT/llamacpp-$r-probe.json"
  fi
  python3 - "$OUT/llamacpp-$r-pp.json" "$OUT/llamacpp-$r-tg.json" <<'PYEOF'
import json, sys
for t in json.load(open(sys.argv[1])) + json.load(open(sys.argv[2])):
    print(f"llama.cpp {t.get('build_commit', '?')}: pp{t['n_prompt']} tg{t['n_gen']} d{t.get('n_depth', 0)} "
          f"{t['avg_ts']:.3f} tok/s (samples {', '.join(f'{x:.3f}' for x in t['samples_ts'])})")
PYEOF
  [ "$GEN" = 0 ] || echo "read probe around llama.cpp's decode: before/after $before/$after GB/s"
done

python3 - "$OUT" "$ROUNDS" <<'PYEOF'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ours = [json.load(open(os.path.join(out, f"ours-{r}.json"))) for r in range(1, rounds + 1)]
theirs = [sum((json.load(open(os.path.join(out, f"llamacpp-{r}-{k}.json"))) for k in ("pp", "tg")), [])
          for r in range(1, rounds + 1)]
def probe_theirs(r):
    p = os.path.join(out, f"llamacpp-{r}-probe.json")
    return (lambda j: (j["before"] + j["after"]) / 2)(json.load(open(p))) if os.path.exists(p) else None
def key_of_theirs(t):
    kind = "pp" if t["n_gen"] == 0 else "tg"
    return kind, t["n_prompt"] if kind == "pp" else t["n_gen"], t.get("n_depth", 0)
def med_ours(key, field="tps"):
    return statistics.median(x[field] for o in ours for x in o["tests"] if (x["kind"], x["n"], x["depth"]) == key)
def med_theirs(key):
    return statistics.median(statistics.median(t["samples_ts"]) for run in theirs for t in run if key_of_theirs(t) == key)
def per_round(key):
    return ", ".join(
        f"{x['tps'] / statistics.median(t['samples_ts']):.2f}"
        for o, run in zip(ours, theirs)
        for x in o["tests"] if (x["kind"], x["n"], x["depth"]) == key
        for t in run if key_of_theirs(t) == key)
o = ours[0]
wb = o["weight_bytes"]
commit = next((t.get("build_commit", "?") for run in theirs for t in run), "?")
print()
print(f"model {o['model']}  threads {o['threads']}  cpu path {o['cpu_path']}  KV {o['kv']}  rounds {rounds}  "
      f"llama.cpp {commit}")
print(f"read bandwidth {statistics.median(x['read_gbps'] for x in ours):.1f} GB/s over 4 GiB at the start of each run; "
      f"weights read per token {wb / 1e9:.2f} GB")
print(f"{'test':16} {'runllama':>10} {'llama.cpp':>10} {'ours/theirs':>12}  {'per round':16} tg/limit (ours, llama.cpp; each read next to its decode)")
for x in o["tests"]:
    key = (x["kind"], x["n"], x["depth"])
    name = f"{x['kind']}{x['n']}" + (f" @ d{x['depth']}" if x["depth"] else "")
    a, b = med_ours(key), med_theirs(key)
    line = f"{name:16} {a:10.3f} {b:10.3f} {a / b:12.2f}  {per_round(key):16}"
    if x["kind"] == "tg":
        limit = med_ours(key, "read_near_gbps") * 1e9 / wb
        theirs_ratio = statistics.median(
            statistics.median(t["samples_ts"]) / (probe_theirs(r) * 1e9 / wb)
            for r, run in enumerate(theirs, 1) for t in run if key_of_theirs(t) == key)
        theirs_gbps = statistics.median(probe_theirs(r) for r in range(1, rounds + 1))
        line += (f" {med_ours(key, 'tg_over_limit'):.2f}, {theirs_ratio:.2f} (limit {limit:.3f} tok/s at "
                 f"{med_ours(key, 'read_near_gbps'):.1f} GB/s next to ours, {theirs_gbps:.1f} next to llama.cpp's)")
    print(line)
print(f"load {statistics.median(x['load_s'] for x in ours):.2f} s (page-cached), memory: file-backed "
      f"{statistics.median(x['rss_file_mib'] for x in ours):.0f} MiB "
      f"({statistics.median(x.get('file_pmd_mapped_mib', 0) for x in ours):.0f} MiB of it in 2 MiB pages), anonymous "
      f"{statistics.median(x['rss_anon_mib'] for x in ours):.0f} MiB incl. KV cache {o['kv_mib']:.0f} MiB")
PYEOF
