import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { SgFlashVariant } from '../src/webgpu/sgflash.js';

// Lavapipe has no subgroup matrices, but Dawn's null backend offers the feature and runs
// Tint's full WGSL validation (types, uniformity, builtins) on shader-module creation:
// every variant the H200 probe sweeps must at least be valid WGSL. The null backend
// computes nothing, so only compilation is checked (in a child process: see wgsl-check.ts).
const base: SgFlashVariant = { D: 128, NSG: 4, KT: 32, stage: 'frag', pad: 8, rescale: 'lazy', tau: 8, sgSize: 32 };
const VARIANTS: SgFlashVariant[] = [
  base,
  { ...base, stage: 'smem' },
  { ...base, stage: 'global' },
  { ...base, prefetch: true },
  { ...base, prefetch: 'pv' },
  { ...base, NSG: 8, stage: 'smem', prefetch: 'pv' },
  { ...base, stage: 'smem', prefetch: true, rescale: 'twopass' },
  { ...base, reread: true },
  { ...base, stage: 'fragk', KT: 64, prefetch: 'pv', reread: true },
  { ...base, stage: 'fragk', rescale: 'twopass', prefetch: true },
  { ...base, rescale: 'twopass' },
  { ...base, rescale: 'twopass', reread: true },
  { ...base, rescale: 'stats-only' },
  { ...base, NSG: 8, KT: 16 },
  { ...base, NSG: 8, KT: 64, pad: 0, stage: 'fragk' },
  { ...base, D: 64, KT: 64, tau: 0 },
  { ...base, D: 80, KT: 64, stage: 'global' },
  { ...base, NSG: 8, sync: 'subgroup' },
  { ...base, NSG: 8, scores: 'f16' },
  { ...base, sync: 'subgroup', double: true },
  { ...base, NSG: 8, KT: 16, stage: 'smem', scores: 'f16', sync: 'subgroup', double: true },
  { ...base, KT: 64, stage: 'fragk', scores: 'f16', sync: 'subgroup', prefetch: 'pv' },
  { ...base, NSG: 8, ablate: ['softmax', 'pv', 'qk', 'stage', 'barriers'] },
  { ...base, scores: 'f16', ablate: ['qk'] },
  { ...base, NSG: 8, sync: 'subgroup', qReload: true },
  { ...base, NSG: 8, KT: 16, sync: 'subgroup', double: true, ahead: true },
  { ...base, scores: 'f16', ahead: true },
  { ...base, NSG: 8, stage: 'smem', prefetch: true, cols: 'contiguous', order: 'heads' },
];

const here = dirname(fileURLToPath(import.meta.url));

describe('tiled subgroup-matrix prefill WGSL (Dawn null backend, Tint front end)', () => {
  for (const v of VARIANTS) {
    it(`is valid WGSL: ${JSON.stringify(v)}`, () => {
      // Dawn's process itself aborts now and then (the futex error); that is retried, a
      // validation message is not.
      let line: string | undefined;
      let last = '';
      for (let attempt = 0; attempt < 6 && !line; attempt++) {
        const r = spawnSync(process.execPath, ['--conditions=@attnkit/source', '--import', 'tsx', join(here, 'wgsl-check.ts'), JSON.stringify([v])], { encoding: 'utf8', timeout: 60_000 });
        line = r.stdout.split('\n').find((l) => l.startsWith('WGSL-CHECK '));
        last = `checker exited ${r.status} ${r.signal ?? ''}: ${r.stderr.slice(-300)}`;
      }
      expect(line, last).toBeDefined();
      const { errors } = JSON.parse(line!.slice('WGSL-CHECK '.length)) as { errors: string[][] };
      expect(errors[0]).toEqual([]);
    });
  }
});
