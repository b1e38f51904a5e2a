import { describe, expect, it } from 'vitest';
import { dequantizeInt8, quantizeInt8, random, tensor } from '@attnkit/tensor';
import { runQuantizeInt8 } from '../../src/webgpu/kernels/quant.js';
import type { WebGpuBackend } from '../../src/webgpu/backend.js';
import { defaultVariant } from '../../src/webgpu/kernels/rowreduce.js';
import { backends, conform, FLOAT_DTYPES, gpus } from './harness.js';

describe('int8 quantization conformance', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: per-row and per-block scales, odd sizes`, async () => {
      for (const [shape, blockSize] of [[[1, 1], undefined], [[3, 7], undefined], [[2, 63], 9], [[5, 130], 13], [[2, 3, 64], 32], [[4, 129], 1]] as const) {
        await conform(`quantizeInt8 ${dtype} ${JSON.stringify(shape)} bs ${blockSize}`, [{ shape: [...shape], dtype, dist: 'normal', std: 3 }], (_, x) => quantizeInt8(x, { blockSize }));
      }
    });
  }
  it('round trip: every value comes back within half a quantization step, on every backend', async () => {
    for (const be of backends) {
      for (const blockSize of [7, 21]) {
        const x = random(be, [3, 21], { seed: 5, distribution: 'normal' });
        const { q, scales } = quantizeInt8(x, { blockSize });
        const back = await dequantizeInt8(q, scales, { blockSize }).toArray();
        const xs = await x.toArray();
        const s = await scales.toArray();
        xs.forEach((v, i) => expect(Math.abs(back[i]! - v), `${be.name} element ${i}`).toBeLessThanOrEqual(s[Math.floor(i / blockSize)]! * 0.5 * (1 + 1e-5)));
      }
    }
  });
  it('dequantizeInt8 of given codes and scales is exact', async () => {
    const codes = Array.from({ length: 3 * 12 }, (_, i) => ((i * 37) % 255) - 127);
    await conform('dequantizeInt8', [{ shape: [3, 12], dtype: 'i8', values: codes }, { shape: [3, 3], values: [0.5, 1, 2, 0.25, 3, 0, 1e-3, 7, 1.5] }], (_, q, s) => dequantizeInt8(q, s!, { blockSize: 4 }));
  });
  it('codes agree exactly with the reference away from rounding ties; all-zero blocks get scale 0', async () => {
    for (const be of backends) {
      const x = tensor(be, [0, 0, 0, 0, 1.27, -2.54, 0.3, 0.01], [2, 4]);
      const { q, scales } = quantizeInt8(x);
      expect(Array.from(await q.toArray())).toEqual([0, 0, 0, 0, 64, -127, 15, 1]);
      expect(Array.from(await scales.toArray())).toEqual([0, Math.fround(2.54 / 127)].map(Math.fround));
    }
  });
  for (const g of gpus.filter((b) => defaultVariant(b as WebGpuBackend).subgroups)) {
    it('WebGPU scale pass, workgroup-memory variant', async () => {
      await conform('quantizeInt8 wg', [{ shape: [6, 300], dist: 'normal' }], (be, x) => (be === g ? runQuantizeInt8(g as WebGpuBackend, x, { blockSize: 100 }, { subgroups: false }) : Object.values(quantizeInt8(x, { blockSize: 100 }))), { on: [g] });
    });
  }
});
