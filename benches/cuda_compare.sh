#!/usr/bin/env bash
# runllama's CUDA backend beside llama.cpp's on the same GGUF files, alternating, in one run:
# the GPU's read bandwidth (PyTorch: a 4 GiB sum, median of 20) before and after each round,
# `e2e --device cuda --prompt 512 --gen 128` and `llama-bench -ngl 99 -p 512 -n 128` (flash
# attention on, its default), per round. Writes per-round JSON / logs into $OUT.
#
#   E2E=path/to/e2e LLAMA_BENCH=path/to/llama-bench ROUNDS=2 OUT=dir \
#     benches/cuda_compare.sh model-a.gguf [model-b.gguf ...]
#
# E2E: the bench binary built with the cuda feature (`cargo bench --bench e2e --no-run`, the
# path cargo prints). E2E_BEFORE (optional): another build of it (the code before a change),
# run before E2E in every round, so that a change is measured alternating in the same lease.
# Models: benches/make_random_gguf.py where no real checkpoint is at hand.
set -u
E2E=${E2E:?set E2E to the e2e bench binary}
E2E_BEFORE=${E2E_BEFORE:-}
LLAMA_BENCH=${LLAMA_BENCH:?set LLAMA_BENCH to llama.cpp\'s llama-bench (CUDA build)}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-target/cuda-compare}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

bandwidth() {
  python3 - <<'EOF'
import torch
x = torch.ones(1 << 30, dtype=torch.float32, device="cuda")
ts = []
for i in range(23):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); x.sum(); b.record(); torch.cuda.synchronize()
    if i >= 3: ts.append(a.elapsed_time(b) / 1e3)
ts.sort()
print(f"{x.numel() * 4 / ts[len(ts) // 2] / 1e9:.0f}")
EOF
}

for model in "$@"; do
  name=$(basename "$model" .gguf)
  for r in $(seq 1 "$ROUNDS"); do
    bw=$(bandwidth)
    echo "== $name round $r: read $bw GB/s"
    for which in ${E2E_BEFORE:+before} ours; do
      bin=$E2E
      [ "$which" = before ] && bin=$E2E_BEFORE
      echo "-- $which"
      "$bin" "$model" --device cuda --prompt 512 --gen 128 --reps 3 --gpu-gbps "$bw" \
        --json "$OUT/$name-$which-$r.json" > "$OUT/$name-$which-$r.log" 2>&1
      grep -E "^(load|pp512|tg128|limit|gpu|rep )" "$OUT/$name-$which-$r.log"
    done
    "$LLAMA_BENCH" -m "$model" -ngl 99 -p 512 -n 128 -r 3 -o json > "$OUT/$name-llamacpp-$r.json" 2> "$OUT/$name-llamacpp-$r.log"
    python3 - "$OUT/$name-llamacpp-$r.json" <<'EOF'
import json, sys
for t in json.load(open(sys.argv[1])):
    kind = f"pp{t['n_prompt']}" if t["n_prompt"] else f"tg{t['n_gen']}"
    print(f"llama.cpp {kind} {t['avg_ts']:.1f} tok/s (stddev {t['stddev_ts']:.1f})")
EOF
    echo "read after: $(bandwidth) GB/s"
  done
done
