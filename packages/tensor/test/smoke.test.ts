import { describe, expect, it } from 'vitest';
import { add, matmul, random, silu, tensor } from '@attnkit/tensor';
import { backendsForTests, compareClose } from '@attnkit/tensor/testing';

const backends = await backendsForTests();

describe.each(backends.map((b) => [b.name, b] as const))('smoke on %s', (_, be) => {
  it('adds with broadcast', async () => {
    const a = tensor(be, [1, 2, 3, 4, 5, 6], [2, 3]);
    const b = tensor(be, [10, 20, 30], [3]);
    expect(Array.from(await add(a, b).toArray())).toEqual([11, 22, 33, 14, 25, 36]);
  });
  it('matmul f16 x f32', async () => {
    const a = random(be, [7, 5], { seed: 1, dtype: 'f16' });
    const b = random(be, [5, 9], { seed: 2 });
    const c = await matmul(a, b).toArray();
    const A = await a.toArray();
    const B = await b.toArray();
    const want = new Float64Array(63);
    for (let i = 0; i < 7; i++) for (let j = 0; j < 9; j++) for (let k = 0; k < 5; k++) want[i * 9 + j]! += A[i * 5 + k]! * B[k * 9 + j]!;
    expect(compareClose(c, want, 1e-5, 1e-5).message).toBe('ok');
  });
  it('silu on f16', async () => {
    const x = tensor(be, [-1, 0, 1, 2, 3], [5], 'f16');
    const y = await silu(x).toArray();
    expect(compareClose(y, [-0.2689, 0, 0.7311, 1.7616, 2.8577], 2e-3, 2e-3).message).toBe('ok');
  });
});
