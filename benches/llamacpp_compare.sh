#!/usr/bin/env bash
# Side by side with llama.cpp on the same GGUF file, same threads, in one run:
#   1. our end-to-end bench (benches/e2e.rs: read bandwidth, also right around each decode run;
#      load, pp, tg, memory),
#   2. llama.cpp's llama-bench (-p PROMPT -n GEN -r REPS -t THREADS),
# alternating ROUNDS times, then a table of medians and the ratios ours / llama.cpp and
# tg / (read bandwidth / weight bytes).
#
#   LLAMA_BENCH=/path/to/llama-bench benches/llamacpp_compare.sh MODEL.gguf [THREADS]
#
# Environment: LLAMA_BENCH (required: a llama-bench binary), ROUNDS (default 1), REPS (3),
# PROMPT (128), GEN (64), KV (f16 | f32 | q8_0 | q4_0 | q8_0_q4_0, default f16 as llama.cpp; llama-bench gets the
# same cache type), OUT (target/llamacpp-compare).
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
KV=${KV:-f16}
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

cargo bench --bench e2e --no-run
for r in $(seq "$ROUNDS"); do
  echo "== round $r of $ROUNDS ($(uptime))"
  cargo bench --bench e2e -- "$MODEL" --threads "$THREADS" --prompt "$PROMPT" --gen "$GEN" \
    --reps "$REPS" --kv "$KV" --json "$OUT/ours-$r.json"
  "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p "$PROMPT" -n "$GEN" -r "$REPS" $LLAMA_KV_ARGS -o json > "$OUT/llamacpp-$r.json"
  python3 - "$OUT/llamacpp-$r.json" <<'PYEOF'
import json, sys
for t in json.load(open(sys.argv[1])):
    print(f"llama.cpp {t.get('build_commit', '?')}: pp{t['n_prompt']} tg{t['n_gen']} "
          f"{t['avg_ts']:.3f} tok/s (samples {', '.join(f'{x:.3f}' for x in t['samples_ts'])})")
PYEOF
done

python3 - "$OUT" "$ROUNDS" <<'PYEOF'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ours = [json.load(open(os.path.join(out, f"ours-{r}.json"))) for r in range(1, rounds + 1)]
theirs = [json.load(open(os.path.join(out, f"llamacpp-{r}.json"))) for r in range(1, rounds + 1)]
def lc(kind):
    vals = []
    for run in theirs:
        for t in run:
            if (kind == "pp" and t["n_prompt"] > 0 and t["n_gen"] == 0) or (kind == "tg" and t["n_gen"] > 0 and t["n_prompt"] == 0):
                vals.append(statistics.median(t["samples_ts"]))
    return statistics.median(vals)
med = lambda key: statistics.median(o[key] for o in ours)
o = ours[0]
# The limit: our runs' probes right before and after each decode run (the 4 GiB probe at the
# start of each run is printed too); llama.cpp's tg / limit uses the same figure.
bw, bw0, wb = med("read_near_gbps"), med("read_gbps"), o["weight_bytes"]
limit = bw * 1e9 / wb
pp_o, tg_o, pp_l, tg_l = med("pp_tps"), med("tg_tps"), lc("pp"), lc("tg")
commit = theirs[0][0].get("build_commit", "?")
print()
print(f"model {o['model']}  threads {o['threads']}  cpu path {o['cpu_path']}  KV {o['kv']}  rounds {rounds}")
print(f"read bandwidth {bw:.1f} GB/s next to decode ({bw0:.1f} GB/s over 4 GiB at the start), "
      f"weights read per token {wb / 1e9:.2f} GB -> decode limit {limit:.3f} tok/s")
print(f"{'':22} {'runllama':>10} {'llama.cpp':>10} {'ours/theirs':>12}")
print(f"{'pp' + str(o['pp_tokens']) + ' tok/s':22} {pp_o:10.2f} {pp_l:10.2f} {pp_o / pp_l:12.2f}")
print(f"{'tg' + str(o['tg_tokens']) + ' tok/s':22} {tg_o:10.3f} {tg_l:10.3f} {tg_o / tg_l:12.2f}")
print(f"{'tg / limit':22} {med('tg_over_limit'):10.2f} {tg_l / limit:10.2f}   (ours: median of each run's ratio)")
print(f"load {med('load_s'):.2f} s (page-cached), memory: file-backed {med('rss_file_mib'):.0f} MiB, "
      f"anonymous {med('rss_anon_mib'):.0f} MiB incl. KV cache {o['kv_mib']:.0f} MiB; llama.cpp {commit}")
PYEOF
