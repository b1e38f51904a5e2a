#!/usr/bin/env bash
# Runs bundled probe scripts on the H200, each in its own process with a time limit (a
# driver crash or a hang takes only that probe), writing $OUT/<probe>/<probe>.json and .log.
#   bash .gpu/enter.sh bash benchmarks/gpu/round.sh <seconds-per-probe> probe...
set -u
out=${OUT:-/tmp/out}
limit=$1; shift
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > "$out/gpu.txt" 2>&1
for p in "$@"; do
  mkdir -p "$out/$p"
  start=$(date +%s)
  timeout "$limit" node ".gpu/$p.mjs" --out "$out/$p" > "$out/$p/$p.log" 2>&1
  echo "probe $p exit $? after $(( $(date +%s) - start )) s" | tee -a "$out/$p/$p.log"
done
