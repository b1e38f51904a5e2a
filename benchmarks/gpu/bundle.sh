#!/usr/bin/env bash
# Prepares .gpu/ for a run on the H200: Node + Dawn (shared/gpu/pack.sh) and this repo's
# benchmark runner bundled into one file (workspace packages are not installed there).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared=${ATTNKIT_SHARED:-$root/../shared}
bash "$shared/gpu/pack.sh" >/dev/null
npx esbuild benchmarks/src/run.ts --bundle --platform=node --format=esm --target=node20 --minify \
  --conditions=@attnkit/source --external:webgpu --outfile=.gpu/bench.mjs --log-level=warning
for extra in "$@"; do
  # extra entry points: path/to/script.ts -> .gpu/script.mjs
  npx esbuild "$extra" --bundle --platform=node --format=esm --target=node20 --minify \
    --conditions=@attnkit/source --external:webgpu --outfile=".gpu/$(basename "${extra%.*}").mjs" --log-level=warning
done
du -sh .gpu
