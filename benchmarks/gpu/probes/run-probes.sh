#!/usr/bin/env bash
# Runs every staged subgroup-matrix probe in its own process (a driver crash takes only
# that probe) and prints its exit status: 0 ok, 134 abort, 139 segfault, 124 hung.
#   bash .gpu/enter.sh bash benchmarks/gpu/probes/run-probes.sh [probe...]
set -u
probes=("$@")
if [ ${#probes[@]} -eq 0 ]; then
  probes=(global global-barrier staged-once staged-loop-nobarrier staged-loop-fromglobal staged staged-1sg staged-norobust staged-noinit staged-norobust-noinit staged-async staged-vec staged-vec-norobust staged-big-norobust)
fi
for p in "${probes[@]}"; do
  timeout 25 node .gpu/sgmatrix-staged.mjs "$p" time 2>&1 | tail -n 8
  echo "probe $p exit ${PIPESTATUS[0]}"
done
