import { describe, expect, it } from 'vitest';
import { create, globals } from 'webgpu';
import { sgProgram, type SgConfig, type SgShape } from '../src/index.js';

// Lavapipe has no subgroup matrices; Dawn's null backend offers them and runs Tint's full
// WGSL validation (types, uniformity, builtins) when a shader module is created, so every
// variant the H200 probe sweeps is at least valid WGSL before it reaches the GPU. The null
// backend computes nothing: results are checked on the H200 (benchmarks/gpu/probes/na-sweep.ts).
Object.assign(globalThis, globals);
const adapter = await create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
const want = ['chromium-experimental-subgroup-matrix', 'subgroups', 'shader-f16'] as GPUFeatureName[];
const device = adapter && want.every((f) => adapter.features.has(f))
  ? await adapter.requestDevice({ requiredFeatures: want, requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize } })
  : null;

const base: SgConfig = { sub: [1, 4, 4], chunkBlocks: 16, subgroups: 1, sDtype: 'f16', oDtype: 'f16' };
const S2: SgShape = { D: 64, k: [1, 13, 13] };
const S3: SgShape = { D: 64, k: [7, 7, 7] };
const CASES: Array<[SgConfig, SgShape]> = [
  [base, S2],
  [{ ...base, subgroups: 2 }, S2],
  [{ ...base, oDtype: 'f32' }, S2],
  [{ ...base, sDtype: 'f32', oDtype: 'f32' }, S2],
  [{ ...base, sDtype: 'f32', oDtype: 'f32', chunkBlocks: 8, subgroups: 2 }, S2],
  [{ ...base, pad: false }, S2],
  [{ ...base, unroll: true, subgroups: 2 }, S2],
  [{ ...base, stack: 2 }, S2],
  [{ ...base, stack: 2, oDtype: 'f32' }, S2],
  [{ ...base, stack: 4 }, S2],
  [{ ...base, sub: [2, 2, 4], oDtype: 'f32' }, S3],
  [{ ...base, sub: [2, 2, 4], sDtype: 'f32', oDtype: 'f32', chunkBlocks: 8, subgroups: 4 }, S3],
  [{ ...base, sub: [1, 2, 8], oDtype: 'f32', unroll: true }, S3],
  [{ ...base, sub: [1, 1, 16], oDtype: 'f32' }, { D: 32, k: [1, 1, 13] }],
];

describe('subgroup-matrix neighborhood kernel WGSL', () => {
  it('Dawn offers a device with subgroup matrices on its null backend (so the checks below run)', () => {
    expect(device).not.toBeNull();
  });
  for (const [cfg, shape] of CASES) {
    const prog = sgProgram(cfg, shape);
    it(`is valid WGSL: ${prog.key}`, async () => {
      const module = device!.createShaderModule({ code: prog.source() });
      const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      expect(errors).toEqual([]);
    });
  }
});
