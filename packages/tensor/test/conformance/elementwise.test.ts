import { describe, it } from 'vitest';
import { add, cast, div, exp, gelu, geluTanh, mul, neg, relu, scale, silu, sub, type DType, type Tensor } from '@attnkit/tensor';
import { conform, FLOAT_DTYPES, type Spec } from './harness.js';

const BINARY = { add, sub, mul, div } as const;
const UNARY: Record<string, (x: Tensor) => Tensor> = { silu, gelu, geluTanh, exp, neg, relu, scale: (x) => scale(x, -1.75) };

// Broadcast pairs: same shape, trailing vector, leading ones, both sides broadcasting, scalar-like.
const SHAPES: Array<[number[], number[]]> = [[[7], [7]], [[63, 5], [5]], [[3, 1, 65], [1, 4, 65]], [[2, 3, 1], [7]], [[1], [3, 127]], [[129], [1]]];

function operands(dtype: DType, shape: number[], nonzero: boolean): Spec {
  if (dtype === 'i32') return { shape, dtype, dist: 'int', lo: nonzero ? 1 : -(2 ** 31), hi: 2 ** 31 };
  if (dtype === 'u32') return { shape, dtype, dist: 'int', lo: nonzero ? 1 : 0, hi: 2 ** 32 };
  return { shape, dtype, lo: nonzero ? 0.5 : -2, hi: 2 };
}

describe('elementwise conformance', () => {
  for (const dtype of ['f32', 'f16', 'i32', 'u32'] as const) {
    it(`${dtype}: add/sub/mul/div with broadcasting`, async () => {
      for (const [name, f] of Object.entries(BINARY)) {
        // Every broadcast pattern through add; the other ops share its index code, so two
        // patterns each (each distinct rank is another pipeline to compile on lavapipe).
        for (const [sa, sb] of name === 'add' ? SHAPES : [SHAPES[0]!, SHAPES[2]!]) {
          await conform(`${name} ${dtype} ${JSON.stringify(sa)} ${JSON.stringify(sb)}`, [operands(dtype, sa, false), operands(dtype, sb, name === 'div')], (_, a, b) => f(a, b!));
        }
      }
    });
  }
  it('integer edge cases: wrapping products, division by zero, INT_MIN / -1', async () => {
    const a = [2 ** 31 - 1, -(2 ** 31), 123456789, -7, 7, 0, 5];
    const b = [3, -1, 987654321, 2, -2, 0, 0];
    for (const [name, f] of Object.entries(BINARY)) {
      await conform(`${name} i32 edges`, [{ shape: [7], dtype: 'i32', values: a }, { shape: [7], dtype: 'i32', values: b }], (_, x, y) => f(x, y!));
      await conform(`${name} u32 edges`, [{ shape: [7], dtype: 'u32', values: a.map((v) => v >>> 0) }, { shape: [7], dtype: 'u32', values: b.map((v) => v >>> 0) }], (_, x, y) => f(x, y!));
    }
  });
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: unary ops on odd sizes`, async () => {
      for (const [name, f] of Object.entries(UNARY)) {
        for (const n of [1, 7, 65, 1023]) {
          await conform(`${name} ${dtype} [${n}]`, [{ shape: [n], dtype, lo: -6, hi: 6 }], (_, x) => f(x));
        }
      }
    });
  }
  it('f32 unary ops at extreme inputs (overflow to infinity, underflow to zero)', async () => {
    const values = [-100, -30, -10, -1e-7, 0, 1e-7, 10, 30, 88, 100];
    for (const [name, f] of Object.entries(UNARY)) {
      await conform(`${name} extremes`, [{ shape: [values.length], values }], (_, x) => f(x));
    }
  });
  it('cast between every pair (float to int truncates and saturates, int to int wraps)', async () => {
    const sources: Record<DType, Spec> = {
      f32: { shape: [3, 65], values: Array.from({ length: 195 }, (_, i) => (i % 7 === 0 ? [-3e9, 5e9, -0.5, 2 ** 31][i % 4]! : (i - 97) * 13.37)) },
      f16: { shape: [3, 65], dtype: 'f16', lo: -3000, hi: 3000 },
      i32: { shape: [3, 65], dtype: 'i32', dist: 'int', lo: -(2 ** 31), hi: 2 ** 31 },
      u32: { shape: [3, 65], dtype: 'u32', dist: 'int', lo: 0, hi: 2 ** 32 },
      i8: { shape: [3, 65], dtype: 'i8', dist: 'int', lo: -128, hi: 128 },
      u8: { shape: [3, 65], dtype: 'u8', dist: 'int', lo: 0, hi: 256 },
    };
    for (const [from, spec] of Object.entries(sources)) {
      for (const to of ['f32', 'f16', 'i32', 'u32'] as const) {
        // Integers beyond f16's range would turn into infinities whose sign is all they carry.
        const s = to === 'f16' && (from === 'i32' || from === 'u32' || from === 'f32') ? { ...spec, values: undefined, dist: 'int' as const, lo: from === 'u32' ? 0 : -60000, hi: 60000 } : spec;
        await conform(`cast ${from} -> ${to}`, [s], (_, x) => cast(x, to));
      }
    }
  });
});
