import { describe, it } from 'vitest';
import { argmax, topk } from '@attnkit/tensor';
import { conform, FLOAT_DTYPES, ODD } from './harness.js';

// Ties are the interesting case: values drawn from a few integers repeat a lot.
const tied = (n: number) => Array.from({ length: n }, (_, i) => ((i * 7919) % 5) - 2);

describe('argmax / topk conformance', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: argmax over odd lengths, ties pick the lowest index`, async () => {
      for (const L of [...ODD, 1000]) {
        await conform(`argmax ${dtype} [3, ${L}]`, [{ shape: [3, L], dtype, dist: 'normal' }], (_, x) => argmax(x));
        await conform(`argmax ${dtype} tied [2, ${L}]`, [{ shape: [2, L], dtype, values: tied(2 * L) }], (_, x) => argmax(x));
      }
      await conform(`argmax ${dtype} rank 1`, [{ shape: [65], dtype, dist: 'normal' }], (_, x) => argmax(x));
      await conform(`argmax ${dtype} -Infinity everywhere`, [{ shape: [2, 3], dtype, values: [-Infinity, -Infinity, -Infinity, 1, -Infinity, 1] }], (_, x) => argmax(x));
    });
    it(`${dtype}: topk descending, ties by lower index`, async () => {
      for (const [L, k] of [[1, 1], [7, 3], [63, 63], [130, 17], [600, 256]] as const) {
        await conform(`topk ${dtype} L=${L} k=${k}`, [{ shape: [2, L], dtype, dist: 'normal' }], (_, x) => topk(x, k));
        await conform(`topk ${dtype} tied L=${L} k=${k}`, [{ shape: [3, L], dtype, values: tied(3 * L) }], (_, x) => topk(x, k));
      }
      await conform(`topk ${dtype} rank 3`, [{ shape: [2, 3, 9], dtype, dist: 'normal' }], (_, x) => topk(x, 4));
    });
  }
});
