import { createBackend, CpuBackend, type Backend } from '@attnkit/tensor';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { peerKey, writeRows, type BenchRow } from './harness.js';
import { SUITES } from './suites/index.js';

// Runs the suites on the local backends and writes one JSON file per suite and backend:
//   npm run bench                       -> benchmarks/results/cpu-machine/*.json
//   node .gpu/bench.mjs --big --peers p.json --out $OUT   (on the H200, see gpu/run.sh)
const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'all' },
    suite: { type: 'string', multiple: true },
    big: { type: 'boolean', default: false },
    out: { type: 'string' },
    peers: { type: 'string' },
    machine: { type: 'string' },
  },
});

const peers = new Map<string, { name: string; medianMs: number }>();
if (values.peers && existsSync(values.peers)) {
  for (const p of JSON.parse(readFileSync(values.peers, 'utf8')) as Array<{ kernel: string; shape: string; dtype: string; name: string; medianMs: number }>) {
    peers.set(peerKey(p.kernel, p.shape, p.dtype), { name: p.name, medianMs: p.medianMs });
  }
}

const backends: Backend[] = [];
if (values.backend === 'all' || values.backend === 'cpu') backends.push(new CpuBackend());
if (values.backend === 'all' || values.backend === 'webgpu') {
  const gpu = await createBackend({ backend: values.backend === 'webgpu' ? 'webgpu' : 'auto', dawnFlags: values.big ? ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness,disable_workgroup_init'] : [] });
  if (gpu.kind === 'webgpu') backends.push(gpu);
}
const machine = values.machine ?? (values.big ? 'h200' : 'cpu-machine');
const outDir = values.out ?? join(import.meta.dirname, '..', 'results', machine);
const suites = values.suite ? SUITES.filter((s) => values.suite!.includes(s.name)) : SUITES;

for (const be of backends) {
  const device = be.kind === 'cpu' ? `cpu (${hostname()})` : be.name;
  for (const suite of suites) {
    if (be.kind === 'cpu' && values.big) continue; // the GPU machine's shapes are far too big for the CPU reference
    let rows: BenchRow[] = [];
    try {
      rows = await suite.run(be, { big: !!values.big, device, peers });
    } catch (e) {
      console.error(`bench ${suite.name} on ${be.name} failed: ${(e as Error).stack}`);
      process.exitCode = 1;
      continue;
    }
    for (const r of rows) console.log(`${r.package} ${r.kernel} ${r.shape} ${r.dtype} ${r.backend}: ${r.medianMs.toFixed(4)} ms${r.gflops ? ` ${r.gflops.toFixed(1)} GFLOP/s` : ''}${r.gbps ? ` ${r.gbps.toFixed(1)} GB/s` : ''}${r.ratio ? ` ratio ${r.ratio.toFixed(3)} vs ${r.peer?.name}` : ''}`);
    writeRows(join(outDir, `${suite.name}-${be.kind}.json`), rows);
  }
}
for (const be of backends) be.destroy();
