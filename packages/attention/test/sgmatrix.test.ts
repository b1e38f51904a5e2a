import { afterEach, describe, expect, it } from 'vitest';
import { attention, configureSgPrefill, getPrefillPath, hasF16SubgroupMatrix, setPrefillPath, sgPrefillConfig, sgPrefillSource } from '@attnkit/attention';
import { ArgumentError } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';
import { expectClose, inputs, type Dims } from './oracle.js';

const backends = await backendsForTests();

const defaultPath = getPrefillPath();
afterEach(() => setPrefillPath(defaultPath));

describe('subgroup-matrix prefill', () => {
  it("is chosen automatically ('auto') where the adapter offers it", () => {
    expect(defaultPath).toBe('auto');
  });

  it("defaults to 'auto' (the wide kernel where it fits, else the tiled one); configuration is checked and reported", () => {
    const before = sgPrefillConfig();
    expect(before.kernel).toBe('auto');
    expect(before.tiled).toMatchObject({ NSG: 8, KT: 32, stage: 'smem', pad: 8, rescale: 'lazy', prefetch: true, cols: 'contiguous', sync: 'workgroup' });
    try {
      configureSgPrefill({ tiled: { NSG: 4, reread: true } });
      expect(sgPrefillConfig().tiled).toMatchObject({ NSG: 4, KT: 32, reread: true });
      expect(() => configureSgPrefill({ tiled: { NSG: 2 } })).toThrow(/NSG/);
      expect(() => configureSgPrefill({ tiled: { KT: 40 } })).toThrow(ArgumentError);
      expect(() => configureSgPrefill({ tiled: { stage: 'global', prefetch: 'pv' } })).toThrow(/prefetch/);
      expect(() => configureSgPrefill({ kernel: 'v2' as 'v1' })).toThrow(/'auto', 'wide', 'tiled', 'v1' or 'pingpong'/);
      configureSgPrefill({ kernel: 'pingpong' });
      expect(sgPrefillConfig().kernel).toBe('pingpong');
      configureSgPrefill({ kernel: 'wide' });
      expect(sgPrefillConfig().kernel).toBe('wide');
      expect(() => configureSgPrefill({ keyTile: 48 })).toThrow(/keyTile/);
      expect(sgPrefillConfig().tiled).toMatchObject({ NSG: 4, KT: 32 });
    } finally {
      configureSgPrefill({ kernel: 'auto', tiled: {} });
    }
    expect(sgPrefillConfig()).toEqual(before);
  });

  it('generates WGSL that loads Q once, takes Kᵀ column-major from storage and zero-starts each score tile', () => {
    const src = sgPrefillSource(128, 64, 'barrier', 32, 'ctor');
    expect(src).toContain('enable chromium_experimental_subgroup_matrix;');
    expect(src).toContain('subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kb, kbase + nb * 16u * D + f * 16u, true, D)');
    expect(src).toContain('var acc = subgroup_matrix_result<f32, 16, 16>();');
    expect(src.match(/workgroupBarrier\(\);/g)?.length).toBe(4);
    expect(sgPrefillSource(128, 64, 'none', 32, 'mul')).not.toContain('workgroupBarrier');
  });

  for (const be of backends.filter((b) => b.kind === 'webgpu')) {
    it(`on ${be.name}: runs where f16 subgroup matrices exist (checked against the plain kernel), says why not elsewhere`, async () => {
      const d: Dims = { B: 1, Hq: 2, Hkv: 1, S: 64, L: 128, kvLength: 128, D: 64 };
      const x = await inputs(be, d, 'f16');
      setPrefillPath('plain');
      const plain = await attention(x.q, x.k, x.v, { causal: true }).toArray();
      setPrefillPath('subgroup-matrix');
      if (hasF16SubgroupMatrix(be.caps)) {
        expectClose(await attention(x.q, x.k, x.v, { causal: true }).toArray(), plain, { atol: 4e-3, rtol: 1e-2 }, 'sg vs plain');
      } else {
        expect(() => attention(x.q, x.k, x.v, { causal: true })).toThrow(ArgumentError);
        expect(() => attention(x.q, x.k, x.v, { causal: true })).toThrow(/f16 16x16x16 subgroup-matrix configs/);
      }
    });
  }
});
