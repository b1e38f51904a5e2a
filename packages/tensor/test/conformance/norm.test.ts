import { describe, it } from 'vitest';
import { layernorm, rmsnorm, type Backend, type Tensor } from '@attnkit/tensor';
import { runLayernorm, runRmsnorm } from '../../src/webgpu/kernels/norm.js';
import type { WebGpuBackend } from '../../src/webgpu/backend.js';
import { defaultVariant } from '../../src/webgpu/kernels/rowreduce.js';
import { conform, FLOAT_DTYPES, gpus, ODD } from './harness.js';

const variants = gpus.flatMap((g) => [false, ...(defaultVariant(g as WebGpuBackend).subgroups ? [true] : [])].map((sg) => ({ g, sg })));

describe('rmsnorm / layernorm conformance', () => {
  for (const dtype of FLOAT_DTYPES) {
    for (const wd of FLOAT_DTYPES) {
      it(`x ${dtype}, weight ${wd}: odd widths`, async () => {
        for (const D of [...ODD, 1000]) {
          const specs = [{ shape: [3, D], dtype, dist: 'normal' as const, std: 2 }, { shape: [D], dtype: wd, lo: 0.5, hi: 1.5 }, { shape: [D], dtype: wd }];
          await conform(`rmsnorm ${dtype}/${wd} D=${D}`, specs.slice(0, 2), (_, x, w) => rmsnorm(x, w!, 1e-6));
          await conform(`layernorm ${dtype}/${wd} D=${D}`, specs, (_, x, w, b) => layernorm(x, w!, b, 1e-5));
          await conform(`layernorm no bias ${dtype}/${wd} D=${D}`, specs.slice(0, 2), (_, x, w) => layernorm(x, w!));
        }
      });
    }
  }
  it('layernorm on rows with a large mean (two-pass variance)', async () => {
    await conform('layernorm offset', [{ shape: [4, 64], lo: 1000, hi: 1001 }, { shape: [64], lo: 0.5, hi: 1.5 }], (_, x, w) => layernorm(x, w!));
  });
  it('rank-1 and rank-4 inputs, a large eps', async () => {
    await conform('rmsnorm rank 1', [{ shape: [65] }, { shape: [65] }], (_, x, w) => rmsnorm(x, w!, 0.5));
    await conform('layernorm rank 4', [{ shape: [2, 3, 2, 33] }, { shape: [33] }, { shape: [33] }], (_, x, w, b) => layernorm(x, w!, b, 0.25));
  });
  for (const { g, sg } of variants) {
    it(`WebGPU variant ${sg ? 'subgroups' : 'workgroup memory'}`, async () => {
      const v = { subgroups: sg };
      for (const D of [1, 65, 300]) {
        const specs = [{ shape: [5, D], dist: 'normal' as const }, { shape: [D] }, { shape: [D], dtype: 'f16' as const }];
        await conform(`rmsnorm ${sg ? 'sg' : 'wg'} D=${D}`, specs.slice(0, 2), (be: Backend, x: Tensor, w?: Tensor) => (be === g ? runRmsnorm(g as WebGpuBackend, x, w!, 1e-6, v) : rmsnorm(x, w!)), { on: [g] });
        await conform(`layernorm ${sg ? 'sg' : 'wg'} D=${D}`, specs, (be: Backend, x: Tensor, w?: Tensor, b?: Tensor) => (be === g ? runLayernorm(g as WebGpuBackend, x, w!, b!, 1e-5, v) : layernorm(x, w!, b)), { on: [g] });
      }
    });
  }
});
