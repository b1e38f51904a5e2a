import { CpuBackend, random, WebGpuBackend, type Backend, type Capabilities } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { describeProblem, hasF16SubgroupMatrix, sgBox, sgConfigFor, sgProgram, sgUnsupported, sgWorkgroupBytes, type SgConfig } from '../src/index.js';

// The subgroup-matrix kernel itself runs only where the adapter has f16 subgroup matrices
// (checked on the H200 by benchmarks/gpu/probes/na-sweep.ts against the CPU definition).
// Here: the key-box arithmetic, the support decision and the generated WGSL's structure.

let gpu: WebGpuBackend | undefined;
beforeAll(async () => {
  gpu = (await backendsForTests()).find((b: Backend): b is WebGpuBackend => b instanceof WebGpuBackend);
});

const CFG: SgConfig = { sub: [1, 4, 4], chunkBlocks: 16, subgroups: 1, sDtype: 'f32' };
const H200_CAPS: Partial<Capabilities> = {
  shaderF16: true, subgroups: true, subgroupMinSize: 32, subgroupMaxSize: 32,
  subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }],
};

describe('subgroup-matrix neighborhood kernel: host side', () => {
  it('a 4x4 subtile of a 13x13 window needs 16 rows of 16 keys, one chunk', () => {
    const box = sgBox(CFG, { D: 64, k: [1, 13, 13] });
    expect(box.span).toEqual([1, 16, 16]);
    expect(box.blocks * 16).toBe(256);
    expect(box.chunks).toBe(1);
    // f32 S + f16 P, each row padded by 16 bytes against bank conflicts; unpadded 16 x 256 x 6 bytes.
    expect(sgWorkgroupBytes(CFG, { D: 64, k: [1, 13, 13] })).toBe(16 * 260 * 4 + 16 * 264 * 2);
    expect(sgWorkgroupBytes({ ...CFG, pad: false }, { D: 64, k: [1, 13, 13] })).toBe(16 * 256 * 6);
    // f16 S with P in place and f16 O staged there too: one 16 x 264 f16 slice per subgroup.
    expect(sgWorkgroupBytes({ ...CFG, sDtype: 'f16', oDtype: 'f16', subgroups: 2 }, { D: 64, k: [1, 13, 13] })).toBe(2 * 16 * 264 * 2);
    // 3-D 7x7x7 with 2x2x4 subtiles: 8 x 8 rows of 16 keys, four chunks of 16 blocks.
    const b3 = sgBox({ ...CFG, sub: [2, 2, 4] }, { D: 64, k: [7, 7, 7] });
    expect(b3.span).toEqual([8, 8, 16]);
    expect(b3.chunks).toBe(4);
  });

  it('only adapters with f16 16x16x16 subgroup matrices and 32-wide subgroups qualify', () => {
    expect(hasF16SubgroupMatrix({ ...new CpuBackend().caps, ...H200_CAPS } as Capabilities)).toBe(true);
    expect(hasF16SubgroupMatrix({ ...new CpuBackend().caps, ...H200_CAPS, subgroupMinSize: 16 } as Capabilities)).toBe(false);
    expect(hasF16SubgroupMatrix({ ...new CpuBackend().caps, ...H200_CAPS, subgroupMatrixConfigs: [] } as Capabilities)).toBe(false);
  });

  it('the support decision names what is missing; the library choice per rank and window', () => {
    expect(gpu, 'a WebGPU adapter for the tests').toBeDefined();
    const be = gpu!;
    const q = random(be, [1, 2, 16, 16, 32], { dtype: 'f16' });
    const p = describeProblem('test', 2, q, q, q, { kernelSize: 5 });
    if (!hasF16SubgroupMatrix(be.caps)) {
      expect(sgUnsupported(be, p, CFG)).toMatch(/subgroup matrices/);
      expect(sgConfigFor(be, p, 2)).toBeNull();
    }
    // A problem-side reason on a (pretend) capable adapter: the group is shorter than the box.
    const fake = { caps: { ...be.caps, ...H200_CAPS, maxComputeWorkgroupStorageSize: 65536 } } as unknown as WebGpuBackend;
    const small = random(be, [1, 2, 12, 12, 32], { dtype: 'f16' });
    expect(sgUnsupported(fake, describeProblem('test', 2, small, small, small, { kernelSize: 3 }), CFG)).toMatch(/axis 2: a dilation group is shorter than the 16-key box/);
    expect(sgUnsupported(fake, p, CFG)).toBe('');
    const f32 = random(be, [1, 2, 16, 16, 32]);
    expect(sgUnsupported(fake, describeProblem('test', 2, f32, f32, f32, { kernelSize: 5 }), CFG)).toMatch(/f16/);
    expect(sgUnsupported(fake, p, { ...CFG, stack: 2, chunkBlocks: 4 })).toMatch(/one chunk/);
    expect(sgUnsupported(fake, p, { ...CFG, oDtype: 'f16', chunkBlocks: 4 })).toMatch(/f16 O needs the key box in one chunk/);
    expect(sgUnsupported(fake, p, { ...CFG, oDtype: 'f16', sDtype: 'f16' })).toBe('');
    // Library choice on a capable adapter: 2-D takes the sg kernel for any window whose box fits the groups,
    // with f16 O where the box is one chunk and f32 O (online rescale) beyond; 3-D takes two-subgroup 2x2x4 subtiles.
    const big = random(be, [1, 2, 64, 64, 32], { dtype: 'f16' });
    const c13 = sgConfigFor(fake, describeProblem('test', 2, big, big, big, { kernelSize: 13 }), 2);
    expect([c13?.sub, c13?.oDtype]).toEqual([[1, 4, 4], 'f16']);
    expect(sgConfigFor(fake, describeProblem('test', 2, big, big, big, { kernelSize: 17 }), 2)?.oDtype).toBe('f32');
    expect(sgConfigFor(fake, describeProblem('test', 2, small, small, small, { kernelSize: 3 }), 2)).toBeNull();
    const vol = random(be, [1, 2, 8, 16, 16, 32], { dtype: 'f16' });
    const c3 = sgConfigFor(fake, describeProblem('test', 3, vol, vol, vol, { kernelSize: 3 }), 3);
    expect([c3?.sub, c3?.subgroups]).toEqual([[2, 2, 4], 2]);
    vol.dispose();
    for (const t of [q, small, f32, big]) t.dispose();
  });

  it('generated WGSL: every barrier outside lane-dependent control flow, one program per configuration', () => {
    for (const cfg of [CFG, { ...CFG, chunkBlocks: 8, subgroups: 2 }, { ...CFG, sDtype: 'f16' as const }, { ...CFG, stack: 2 }, { ...CFG, sDtype: 'f16' as const, oDtype: 'f16' as const }]) {
      const prog = sgProgram(cfg, { D: 64, k: [1, 13, 13] });
      const src = prog.source();
      expect(src).toContain('enable chromium_experimental_subgroup_matrix;');
      expect(src).toContain(`@workgroup_size(${cfg.subgroups * 32})`);
      // Loops over lanes use uniform trip counts (a barrier inside a lane-dependent loop would not compile).
      expect(src).not.toMatch(/for \(var \w+ = lane/);
      // Accumulators start from a constructor or a product, never from a bare declaration inside a loop.
      expect(src).not.toMatch(/var \w+: subgroup_matrix_result/);
    }
    const keys = new Set([CFG, { ...CFG, sDtype: 'f16' as const }, { ...CFG, stack: 2 }].map((c) => sgProgram(c, { D: 64, k: [1, 13, 13] }).key));
    expect(keys.size).toBe(3);
  });
});
