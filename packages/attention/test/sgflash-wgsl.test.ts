import { describe, expect, it } from 'vitest';
import { create, globals } from 'webgpu';
import { sgFlashSource, type SgFlashVariant } from '../src/webgpu/sgflash.js';

// Lavapipe has no subgroup matrices, but Dawn's null backend offers the feature and runs
// Tint's full WGSL validation (types, uniformity, builtins) on shader-module creation:
// every variant the H200 probe sweeps must at least be valid WGSL. The null backend
// computes nothing, so only compilation is checked here.
Object.assign(globalThis, globals);
const adapter = await create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
const want = ['chromium-experimental-subgroup-matrix', 'subgroups', 'shader-f16'] as GPUFeatureName[];
const device = adapter && want.every((f) => adapter.features.has(f)) ? await adapter.requestDevice({ requiredFeatures: want }) : null;

const base: SgFlashVariant = { D: 128, NSG: 4, KT: 32, stage: 'frag', pad: 8, rescale: 'lazy', tau: 8, sgSize: 32 };
const VARIANTS: SgFlashVariant[] = [
  base,
  { ...base, stage: 'smem' },
  { ...base, stage: 'global' },
  { ...base, prefetch: true },
  { ...base, prefetch: true, rescale: 'twopass' },
  { ...base, rescale: 'twopass' },
  { ...base, rescale: 'stats-only' },
  { ...base, NSG: 8, KT: 16 },
  { ...base, NSG: 2, KT: 64, pad: 0 },
  { ...base, D: 64, KT: 64, tau: 0 },
  { ...base, D: 80, NSG: 1, KT: 16 },
];

describe('tiled subgroup-matrix prefill WGSL', () => {
  it('Dawn offers a device with subgroup matrices on its null backend (so the checks below run)', () => {
    expect(device).not.toBeNull();
  });
  for (const v of VARIANTS) {
    it(`is valid WGSL: ${JSON.stringify(v)}`, async () => {
      const module = device!.createShaderModule({ code: sgFlashSource(v) });
      const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      expect(errors).toEqual([]);
    });
  }
});
