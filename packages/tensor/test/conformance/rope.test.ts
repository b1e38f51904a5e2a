import { describe, it } from 'vitest';
import { rope } from '@attnkit/tensor';
import { conform, FLOAT_DTYPES } from './harness.js';

describe('rope conformance (HF rotate_half)', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: full and partial rotary, odd sequence lengths`, async () => {
      for (const [shape, rotaryDim] of [[[1, 2], 2], [[7, 8], 8], [[2, 3, 5, 64], 64], [[2, 63, 64], 32], [[1, 65, 6], 4], [[3, 1, 128], 128]] as const) {
        await conform(`rope ${dtype} ${JSON.stringify(shape)} rot ${rotaryDim}`, [{ shape: [...shape], dtype }], (_, x) => rope(x, { rotaryDim }));
      }
    });
    it(`${dtype}: position offsets, linear scaling, theta`, async () => {
      await conform(`rope ${dtype} offset 17`, [{ shape: [2, 9, 16], dtype }], (_, x) => rope(x, { positionOffset: 17 }));
      await conform(`rope ${dtype} linear x4 theta 5e5`, [{ shape: [2, 9, 16], dtype }], (_, x) => rope(x, { linearScale: 4, theta: 500000 }));
    });
  }
  it('positions in the thousands (angles reduced in extended precision)', async () => {
    await conform('rope offset 4093', [{ shape: [1, 7, 128] }], (_, x) => rope(x, { positionOffset: 4093 }));
    await conform('rope offset 20000 partial', [{ shape: [3, 64] }], (_, x) => rope(x, { positionOffset: 20000, rotaryDim: 16, theta: 1e6 }));
  });
  it('caller-given inverse frequencies (llama3-style)', async () => {
    const invFreq = Float32Array.from({ length: 12 }, (_, i) => 0.9 ** i / (1 + (i % 3)));
    await conform('rope invFreq', [{ shape: [2, 11, 24] }], (_, x) => rope(x, { invFreq, positionOffset: 300 }));
    await conform('rope invFreq f16 partial', [{ shape: [5, 30], dtype: 'f16' }], (_, x) => rope(x, { invFreq: invFreq.slice(0, 8), rotaryDim: 16, linearScale: 2 }));
  });
});
