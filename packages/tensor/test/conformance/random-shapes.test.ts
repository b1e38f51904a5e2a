import { describe, it } from 'vitest';
import fc from 'fast-check';
import { add, concat, DTYPES, layernorm, matmul, mul, permute, rmsnorm, rope, slice, softmax, type DType } from '@attnkit/tensor';
import { conform, type Spec } from './harness.js';

// ggml test-backend-ops style sweeps over random shapes: fast-check draws shapes and
// options, conform() compares every backend with the reference. The seed is fixed so CI
// is deterministic; a failure prints the counterexample and the seed to replay it.
const RUNS = { numRuns: 12, seed: 20261130 };

const dims = (maxRank: number, maxDim: number) => fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: 1, maxLength: maxRank });
const floatDtype = fc.constantFrom<DType>('f32', 'f16');

function valuesFor(dtype: DType, shape: number[]): Spec {
  if (dtype === 'f32' || dtype === 'f16') return { shape, dtype, dist: 'normal' };
  const range: Record<string, [number, number]> = { i8: [-128, 128], u8: [0, 256], i32: [-(2 ** 31), 2 ** 31], u32: [0, 2 ** 32] };
  const [lo, hi] = range[dtype]!;
  return { shape, dtype, dist: 'int', lo, hi };
}

describe('random-shape sweeps', () => {
  it('permute: any rank <= 4, any dtype', async () => {
    await fc.assert(fc.asyncProperty(dims(4, 9), fc.constantFrom(...DTYPES), fc.infiniteStream(fc.double({ min: 0, max: 1, noNaN: true })), async (shape, dtype, rnd) => {
      const order = shape.map((_, i) => [rnd.next().value!, i] as const).sort((a, b) => a[0] - b[0]).map(([, i]) => i);
      await conform(`permute ${dtype} ${JSON.stringify(shape)} ${JSON.stringify(order)}`, [valuesFor(dtype, shape)], (_, x) => permute(x, order), { exact: true });
    }), RUNS);
  });
  it('slice and concat: random windows and splits, any dtype', async () => {
    await fc.assert(fc.asyncProperty(dims(3, 11), fc.constantFrom(...DTYPES), fc.nat(), async (shape, dtype, r) => {
      const starts = shape.map((d, i) => (r >> i) % d);
      const ends = shape.map((d, i) => starts[i]! + 1 + ((r >> (i + 3)) % (d - starts[i]!)));
      await conform(`slice ${dtype} ${JSON.stringify(shape)} ${JSON.stringify(starts)}..${JSON.stringify(ends)}`, [valuesFor(dtype, shape)], (_, x) => slice(x, starts, ends), { exact: true });
      const axis = r % shape.length;
      const other = [...shape];
      other[axis] = 1 + (r % 5);
      await conform(`concat ${dtype} ${JSON.stringify(shape)} + ${JSON.stringify(other)} axis ${axis}`, [valuesFor(dtype, shape), valuesFor(dtype, other)], (_, a, b) => concat([a!, b!], axis), { exact: true });
    }), RUNS);
  });
  it('softmax: random shapes, causal when rows <= columns, optional row-broadcast mask', async () => {
    const shapes = fc.tuple(fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 3 }), fc.integer({ min: 1, max: 200 })).map(([lead, L]) => [...lead, L]);
    await fc.assert(fc.asyncProperty(shapes, floatDtype, fc.boolean(), fc.boolean(), async (shape, dtype, causalWish, withMask) => {
      const S = shape.length >= 2 ? shape[shape.length - 2]! : 1;
      const L = shape[shape.length - 1]!;
      const causal = causalWish && shape.length >= 2 && S <= L;
      const specs: Spec[] = [{ shape, dtype, dist: 'normal', std: 2 }];
      if (withMask) specs.push({ shape: [L], dtype: 'f32', values: Array.from({ length: L }, (_, j) => (j % 3 === 2 ? -Infinity : j % 2)) });
      await conform(`softmax ${dtype} ${JSON.stringify(shape)} causal=${causal} mask=${withMask}`, specs, (_, x, m) => softmax(x, { causal, mask: m }));
    }), RUNS);
  });
  it('rmsnorm, layernorm and rope: random shapes', async () => {
    await fc.assert(fc.asyncProperty(dims(3, 40), floatDtype, fc.nat(1000), async (shape, dtype, pos) => {
      const D = shape[shape.length - 1]!;
      await conform(`rmsnorm ${dtype} ${JSON.stringify(shape)}`, [{ shape, dtype, dist: 'normal' }, { shape: [D] }], (_, x, w) => rmsnorm(x, w!));
      await conform(`layernorm ${dtype} ${JSON.stringify(shape)}`, [{ shape, dtype, dist: 'normal' }, { shape: [D] }, { shape: [D], dtype }], (_, x, w, b) => layernorm(x, w!, b));
      const ropeShape = [...shape, 2 * (1 + (pos % 8))];
      const rotaryDim = 2 * (1 + (pos % (ropeShape.at(-1)! / 2)));
      await conform(`rope ${dtype} ${JSON.stringify(ropeShape)} rot ${rotaryDim} pos ${pos}`, [{ shape: ropeShape.length >= 2 ? ropeShape : [1, ...ropeShape], dtype }], (_, x) => rope(x, { rotaryDim, positionOffset: pos }));
    }), RUNS);
  });
  it('broadcast add/mul: random compatible shapes', async () => {
    await fc.assert(fc.asyncProperty(dims(4, 9), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), fc.constantFrom<DType>('f32', 'f16', 'i32'), async (shape, ones, dtype) => {
      const other = shape.map((d, i) => (ones[i] ? 1 : d)).slice(ones[3] ? 1 : 0);
      const specs: Spec[] = [valuesFor(dtype, shape), valuesFor(dtype, other.length ? other : [1])];
      await conform(`add ${dtype} ${JSON.stringify(shape)} ${JSON.stringify(other)}`, specs, (_, a, b) => add(a, b!));
      await conform(`mul ${dtype} ${JSON.stringify(other)} ${JSON.stringify(shape)}`, [...specs].reverse(), (_, a, b) => mul(a, b!));
    }), RUNS);
  });
  it('matmul: random M, K, N, transposes, broadcast batch', async () => {
    await fc.assert(fc.asyncProperty(fc.tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 40 })), fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 3 }), floatDtype,
      async ([M, K, N], transA, transB, batch, dtype) => {
        const a = [batch, ...(transA ? [K, M] : [M, K])];
        const b = transB ? [N, K] : [K, N];
        await conform(`matmul ${dtype} ${JSON.stringify(a)} x ${JSON.stringify(b)} tA=${transA} tB=${transB}`, [{ shape: a, dtype }, { shape: b }], (_, x, y) => matmul(x, y!, { transA, transB }));
      }), RUNS);
  });
});
