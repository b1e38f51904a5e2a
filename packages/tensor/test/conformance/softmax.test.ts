import { describe, it } from 'vitest';
import { softmax, type Backend, type Tensor } from '@attnkit/tensor';
import { runSoftmax } from '../../src/webgpu/kernels/softmax.js';
import type { WebGpuBackend } from '../../src/webgpu/backend.js';
import { defaultVariant } from '../../src/webgpu/kernels/rowreduce.js';
import { conform, FLOAT_DTYPES, gpus, ODD, type Spec } from './harness.js';

// Every WebGPU reduction variant the adapter offers, each checked on its own.
const variants = gpus.flatMap((g) => [false, ...(defaultVariant(g as WebGpuBackend).subgroups ? [true] : [])].map((sg) => ({ g, sg })));

function viaVariant(sg: boolean) {
  return (be: Backend, x: Tensor, mask?: Tensor, causal = false) => runSoftmax(be as WebGpuBackend, x, { causal, mask: mask ?? null }, { subgroups: sg });
}

describe('softmax conformance', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: odd row lengths, plain`, async () => {
      for (const L of ODD) {
        await conform(`softmax ${dtype} [3, ${L}]`, [{ shape: [3, L], dtype, dist: 'normal', std: 3 }], (_, x) => softmax(x));
      }
    });
    it(`${dtype}: causal with queries at the end of the keys`, async () => {
      for (const [S, L] of [[1, 1], [5, 5], [7, 63], [4, 130]] as const) {
        await conform(`softmax causal ${dtype} [2, ${S}, ${L}]`, [{ shape: [2, S, L], dtype, dist: 'normal' }], (_, x) => softmax(x, { causal: true }));
      }
    });
    it(`${dtype}: broadcast additive masks with -Infinity and fully masked rows`, async () => {
      const S = 5;
      const L = 9;
      const mask = Array.from({ length: S * L }, (_, i) => (i % 4 === 0 ? -Infinity : ((i * 7) % 5) - 2));
      for (let j = 0; j < L; j++) mask[2 * L + j] = -Infinity; // row 2 sees nothing
      const cases: Array<[string, Spec]> = [
        ['[S, L]', { shape: [S, L], values: mask }],
        ['[1, 1, S, L] f16', { shape: [1, 1, S, L], dtype: 'f16', values: mask }],
        ['[L] key padding', { shape: [L], values: mask.slice(0, L) }],
        ['[2, 1, 1, L]', { shape: [2, 1, 1, L], dtype: 'f32', dist: 'normal' }],
      ];
      for (const [name, m] of cases) {
        await conform(`softmax ${dtype} mask ${name}`, [{ shape: [2, 3, S, L], dtype, dist: 'normal' }, m], (_, x, mk) => softmax(x, { mask: mk }));
        await conform(`softmax ${dtype} causal + mask ${name}`, [{ shape: [2, 3, S, L], dtype, dist: 'normal' }, m], (_, x, mk) => softmax(x, { mask: mk, causal: true }));
      }
    });
    it(`${dtype}: -Infinity inside x counts as masked`, async () => {
      const x = [0, -Infinity, 1, -Infinity, -Infinity, -Infinity, 2, 3];
      await conform(`softmax ${dtype} -inf`, [{ shape: [2, 4], dtype, values: x }], (_, t) => softmax(t));
    });
    it(`${dtype}: large and rank-1 rows`, async () => {
      await conform(`softmax ${dtype} [1000]`, [{ shape: [1000], dtype, dist: 'normal', std: 4 }], (_, x) => softmax(x));
      await conform(`softmax ${dtype} [2, 2, 2, 3000]`, [{ shape: [2, 2, 2, 3000], dtype, dist: 'uniform', lo: -30, hi: 30 }], (_, x) => softmax(x));
    });
  }

  for (const { g, sg } of variants) {
    it(`WebGPU variant ${sg ? 'subgroups' : 'workgroup memory'}: plain, causal, masked`, async () => {
      const run = viaVariant(sg);
      for (const L of [...ODD, 256, 1031]) {
        await conform(`softmax ${sg ? 'sg' : 'wg'} [4, ${L}]`, [{ shape: [4, L], dist: 'normal', std: 2 }], (be, x) => (be === g ? run(be, x) : softmax(x)), { on: [g] });
      }
      await conform(`softmax ${sg ? 'sg' : 'wg'} causal f16`, [{ shape: [3, 6, 70], dtype: 'f16', dist: 'normal' }], (be, x) => (be === g ? run(be, x, undefined, true) : softmax(x, { causal: true })), { on: [g] });
      const mask: Spec = { shape: [6, 70], values: Array.from({ length: 420 }, (_, i) => (i % 3 ? 0 : -Infinity)) };
      await conform(`softmax ${sg ? 'sg' : 'wg'} masked`, [{ shape: [3, 6, 70], dist: 'normal' }, mask], (be, x, m) => (be === g ? run(be, x, m) : softmax(x, { mask: m })), { on: [g] });
    });
  }
});

describe('softmax launch shapes', () => {
  it('more rows than one grid dimension holds (65537 rows fold into y)', async () => {
    await conform('softmax [65537, 2]', [{ shape: [65537, 2], dist: 'normal' }], (_, x) => softmax(x));
  });
  it('one decode row over a long key range', async () => {
    await conform('softmax [1, 1, 5000] causal', [{ shape: [1, 1, 5000], dist: 'normal', std: 3 }], (_, x) => softmax(x, { causal: true }));
  });
});
