import { describe, it } from 'vitest';
import { concat, DTYPES, gatherRows, permute, slice, transpose, type DType } from '@attnkit/tensor';
import { conform, type Spec } from './harness.js';

// Data movement copies bits, so it must match the reference exactly for every dtype.

const RANGES: Record<DType, Pick<Spec, 'dist' | 'lo' | 'hi'>> = {
  f32: { dist: 'normal' },
  f16: { dist: 'normal' },
  i8: { dist: 'int', lo: -128, hi: 128 },
  u8: { dist: 'int', lo: 0, hi: 256 },
  i32: { dist: 'int', lo: -(2 ** 31), hi: 2 ** 31 },
  u32: { dist: 'int', lo: 0, hi: 2 ** 32 },
};
const spec = (shape: number[], dtype: DType): Spec => ({ shape, dtype, ...RANGES[dtype] });

describe('layout conformance (every dtype, bit-exact)', () => {
  for (const dtype of DTYPES) {
    it(`${dtype}: permute and transpose`, async () => {
      await conform(`permute ${dtype} [3,5,7] (2,0,1)`, [spec([3, 5, 7], dtype)], (_, x) => permute(x, [2, 0, 1]), { exact: true });
      await conform(`transpose ${dtype} [2,7,65]`, [spec([2, 7, 65], dtype)], (_, x) => transpose(x), { exact: true });
      await conform(`permute ${dtype} [2,3,1,5,3] (4,2,0,3,1)`, [spec([2, 3, 1, 5, 3], dtype)], (_, x) => permute(x, [4, 2, 0, 3, 1]), { exact: true });
      await conform(`permute ${dtype} rank 1`, [spec([63], dtype)], (_, x) => permute(x, [0]), { exact: true });
    });
    it(`${dtype}: slice`, async () => {
      await conform(`slice ${dtype} rows`, [spec([9, 7], dtype)], (_, x) => slice(x, [2], [7]), { exact: true });
      await conform(`slice ${dtype} odd window`, [spec([3, 9, 13], dtype)], (_, x) => slice(x, [1, 3, 1], [3, -1, 12]), { exact: true });
      await conform(`slice ${dtype} single element`, [spec([5, 5], dtype)], (_, x) => slice(x, [3, 1], [4, 2]), { exact: true });
    });
    it(`${dtype}: concat on every axis, odd sizes (shared packed words)`, async () => {
      await conform(`concat ${dtype} axis 0`, [spec([1, 7], dtype), spec([3, 7], dtype), spec([1, 7], dtype)], (_, a, b, c) => concat([a!, b!, c!], 0), { exact: true });
      await conform(`concat ${dtype} last axis, 1+3`, [spec([5, 1], dtype), spec([5, 3], dtype)], (_, a, b) => concat([a!, b!], -1), { exact: true });
      await conform(`concat ${dtype} middle axis`, [spec([2, 3, 5], dtype), spec([2, 1, 5], dtype), spec([2, 2, 5], dtype)], (_, a, b, c) => concat([a!, b!, c!], 1), { exact: true });
      await conform(`concat ${dtype} single`, [spec([7, 3], dtype)], (_, a) => concat([a!], 1), { exact: true });
    });
  }
  for (const dtype of ['f32', 'f16'] as const) {
    for (const idx of ['i32', 'u32'] as const) {
      it(`gatherRows ${dtype} table, ${idx} ids, out-of-range ids give zero rows`, async () => {
        const ids = idx === 'i32' ? [0, 6, -1, 3, 7, 3, 100] : [0, 6, 2 ** 32 - 1, 3, 7, 3, 100];
        await conform(`gatherRows ${dtype}/${idx}`, [spec([7, 5], dtype), { shape: [7], dtype: idx, values: ids }], (_, t, i) => gatherRows(t, i!), { exact: true });
        await conform(`gatherRows ${dtype}/${idx} 2-d ids`, [spec([65, 3], dtype), { shape: [2, 3], dtype: idx, values: [64, 0, 1, 2, 63, 5] }], (_, t, i) => gatherRows(t, i!), { exact: true });
      });
    }
  }
});
