import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SG_FLASH_DEFAULT, SG_FLASH_FALLBACKS, type SgFlashVariant } from '../src/webgpu/sgflash.js';

// Lavapipe has no subgroup matrices, but Dawn's null backend offers the feature and runs
// Tint's full WGSL validation (types, uniformity, builtins) on shader-module creation:
// every variant the H200 probe sweeps must at least be valid WGSL. The null backend
// computes nothing, so only compilation is checked (in a child process: see wgsl-check.ts).
const base: SgFlashVariant = { ...SG_FLASH_DEFAULT, D: 128, sgSize: 32 };
const VARIANTS: SgFlashVariant[] = [
  base,
  { ...base, scores: 'f16' },
  { ...base, sync: 'subgroup' },
  { ...SG_FLASH_FALLBACKS[0]!, D: 32, sgSize: 32 },
  { ...SG_FLASH_FALLBACKS[1]!, D: 128, sgSize: 32 },
  { ...SG_FLASH_FALLBACKS[2]!, D: 64, sgSize: 32 },
  { ...base, prefetch: 'pv', cols: 'strided', rescale: 'twopass', reread: true },
  { ...base, NSG: 8, KT: 16, prefetch: undefined, double: true, ahead: true, order: 'heads' },
  { ...base, ablate: ['softmax', 'pv', 'qk', 'stage', 'barriers'] },
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
