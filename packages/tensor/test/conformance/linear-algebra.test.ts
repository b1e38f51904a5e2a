import { describe, it } from 'vitest';
import { matmul } from '@attnkit/tensor';
import { conform, FLOAT_DTYPES } from './harness.js';

// The public matmul on small odd shapes (the portable path); the fast variants and their
// forced selection are covered by the matmul-*.test.ts files.
describe('matmul conformance (public op, odd shapes)', () => {
  for (const da of FLOAT_DTYPES) {
    for (const db of FLOAT_DTYPES) {
      it(`${da} x ${db}: transposes and odd sizes`, async () => {
        for (const [M, K, N] of [[1, 1, 1], [7, 5, 9], [1, 63, 65], [17, 33, 3]] as const) {
          for (const transA of [false, true]) {
            for (const transB of [false, true]) {
              const a = transA ? [K, M] : [M, K];
              const b = transB ? [N, K] : [K, N];
              await conform(`matmul ${da}${transA ? 'T' : ''} x ${db}${transB ? 'T' : ''} ${M}x${K}x${N}`, [{ shape: a, dtype: da }, { shape: b, dtype: db }], (_, x, y) => matmul(x, y!, { transA, transB }));
            }
          }
        }
      });
    }
  }
  it('batch broadcast: batched x shared, shared x batched, batch-1 operands, rank mismatch', async () => {
    await conform('matmul [3,7,5] x [5,9]', [{ shape: [3, 7, 5] }, { shape: [5, 9] }], (_, a, b) => matmul(a, b!));
    await conform('matmul [7,5] x [2,3,5,9]', [{ shape: [7, 5] }, { shape: [2, 3, 5, 9] }], (_, a, b) => matmul(a, b!));
    await conform('matmul [1,7,5] x [4,5,9] transB', [{ shape: [1, 7, 5] }, { shape: [4, 9, 5] }], (_, a, b) => matmul(a, b!, { transB: true }));
    await conform('matmul [2,3,4,6] x [2,3,6,5]', [{ shape: [2, 3, 4, 6] }, { shape: [2, 3, 6, 5] }], (_, a, b) => matmul(a, b!));
    await conform('matmul [6,4,2] transA x [6,4,3]', [{ shape: [6, 4, 2] }, { shape: [6, 4, 3] }], (_, a, b) => matmul(a, b!, { transA: true }));
  });
  it('f16 output (f32 accumulation, one rounding)', async () => {
    await conform('matmul f16 out', [{ shape: [9, 33], dtype: 'f16' }, { shape: [33, 7], dtype: 'f16' }], (_, a, b) => matmul(a, b!, { outDtype: 'f16' }));
    await conform('matmul f16 out odd count', [{ shape: [2, 3, 5] }, { shape: [5, 3], dtype: 'f16' }], (_, a, b) => matmul(a, b!, { outDtype: 'f16' }));
  });
  it('a larger product, K = 300 (accumulation error stays inside TOLERANCE)', async () => {
    await conform('matmul 33x300x47', [{ shape: [33, 300] }, { shape: [300, 47] }], (_, a, b) => matmul(a, b!));
  });
});
