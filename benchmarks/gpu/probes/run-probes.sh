#!/usr/bin/env bash
# Runs every staged subgroup-matrix probe in its own process (a driver crash takes only
# that probe) and prints its exit status: 0 ok, 134 abort, 139 segfault, 124 hung.
#   bash .gpu/enter.sh bash benchmarks/gpu/probes/run-probes.sh [probe...]
set -u
probes=("$@")
if [ ${#probes[@]} -eq 0 ]; then
  probes=(global staged staged-1sg staged-norobust staged-big-norobust staged-big-bk64-norobust global-barrier staged-once staged-loop-nobarrier staged-loop-fromglobal staged-noinit staged-norobust-noinit staged-async staged-vec staged-vec-norobust)
fi
for p in "${probes[@]}"; do
  # Tint's deprecation warnings are long: keep the probe's own lines and errors.
  timeout 25 node .gpu/sgmatrix-staged.mjs "$p" time 2>&1 | grep -E '^\[|rror|ault|futex' | head -n 20
  echo "probe $p exit ${PIPESTATUS[0]}"
done
