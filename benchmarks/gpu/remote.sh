#!/usr/bin/env bash
# Runs on the H200 (through .gpu/enter.sh): the PyTorch peers first, then our suites,
# both in the same machine session, writing JSON under $OUT.
#   bash .gpu/enter.sh bash benchmarks/gpu/remote.sh matmul softmax
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
suites=("$@")
args=()
for s in "${suites[@]}"; do args+=(--suite "$s"); done
export ATTNKIT_BENCH_WARMUP_MS=${ATTNKIT_BENCH_WARMUP_MS:-1500}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > "$out/gpu.txt" 2>&1
PYTHONUNBUFFERED=1 python3 benchmarks/baselines/run_all.py --out "$out/peers.json" "${args[@]}" 2>&1 | tee "$out/peers.log"
node .gpu/bench.mjs --big --backend webgpu --peers "$out/peers.json" --out "$out" "${args[@]}" 2>&1 | tee "$out/bench.log"
