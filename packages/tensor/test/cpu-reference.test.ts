import { describe, expect, it } from 'vitest';
import {
  argmax, cast, CpuBackend, div, f16BitsToF32, f32ToF16Bits, gelu, geluTanh, layernorm, matmul, mul, quantizeInt8, rmsnorm, rope, silu, softmax, tensor, topk,
} from '@attnkit/tensor';
import { erf } from '../src/cpu/math.js';

// The CPU backend is the reference every GPU kernel is judged against, so it is itself
// checked here on cases worked out by hand (values derived in the comments).

const cpu = new CpuBackend();
const close = (got: ArrayLike<number>, want: number[], tol = 1e-6) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(Math.abs(got[i]! - w), `element ${i}: got ${got[i]}, want ${w}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(w))));
};

describe('CPU reference on hand-computed cases', () => {
  it('matmul 2x2: [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]], and with transposes', async () => {
    const a = tensor(cpu, [1, 2, 3, 4], [2, 2]);
    const b = tensor(cpu, [5, 6, 7, 8], [2, 2]);
    expect(Array.from(await matmul(a, b).toArray())).toEqual([19, 22, 43, 50]);
    // a^T b = [[1,3],[2,4]] @ b = [[26,30],[38,44]]; a b^T = [[17,23],[39,53]]
    expect(Array.from(await matmul(a, b, { transA: true }).toArray())).toEqual([26, 30, 38, 44]);
    expect(Array.from(await matmul(a, b, { transB: true }).toArray())).toEqual([17, 23, 39, 53]);
  });

  it('blocked matmul loops equal the plain i-j-k float64 loop bit for bit', async () => {
    for (const [M, K, N] of [[1, 5, 1], [5, 7, 6], [9, 3, 13], [4, 16, 4]] as const) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const A = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 1.7) * 3);
          const B = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.3));
          const want = new Float32Array(M * N);
          for (let i = 0; i < M; i++) {
            for (let j = 0; j < N; j++) {
              let s = 0;
              for (let k = 0; k < K; k++) s += A[transA ? k * M + i : i * K + k]! * B[transB ? j * K + k : k * N + j]!;
              want[i * N + j] = s;
            }
          }
          const got = await matmul(tensor(cpu, A, transA ? [K, M] : [M, K]), tensor(cpu, B, transB ? [N, K] : [K, N]), { transA, transB }).toArray();
          expect(Array.from(got), `${M}x${K}x${N} transA=${transA} transB=${transB}`).toEqual(Array.from(want));
        }
      }
    }
  });

  it('softmax of [0, ln 2] is [1/3, 2/3]; causal rows; masked keys; fully masked row is zeros', async () => {
    close(await softmax(tensor(cpu, [0, Math.LN2], [2])).toArray(), [1 / 3, 2 / 3]);
    // S=2 queries at the end of L=3 keys: row 0 sees keys 0..1, row 1 sees 0..2.
    close(await softmax(tensor(cpu, [0, 0, 0, 0, 0, 0], [2, 3]), { causal: true }).toArray(), [0.5, 0.5, 0, 1 / 3, 1 / 3, 1 / 3]);
    const mask = tensor(cpu, [0, -Infinity, 0, -Infinity, -Infinity, -Infinity], [2, 3]);
    close(await softmax(tensor(cpu, [1, 5, 1, 2, 2, 2], [2, 3]), { mask }).toArray(), [0.5, 0, 0.5, 0, 0, 0]);
  });

  it('rmsnorm of [3, 4] (rms = sqrt(12.5)) and layernorm of [1, 2, 3] (var 2/3)', async () => {
    const r = rmsnorm(tensor(cpu, [3, 4], [2]), tensor(cpu, [1, 2], [2]), 0);
    close(await r.toArray(), [3 / Math.sqrt(12.5), 8 / Math.sqrt(12.5)]); // 0.848528, 2.262742
    const l = layernorm(tensor(cpu, [1, 2, 3], [3]), tensor(cpu, [1, 1, 2], [3]), tensor(cpu, [0, 10, 0], [3]), 0);
    close(await l.toArray(), [-1.224744871391589, 10, 2 * 1.224744871391589]);
  });

  it('rope at position 1, theta 10000, D = 4: frequencies 1 and 10000^(-1/2) = 0.01', async () => {
    // Row 0 is position 0 (unchanged). Row 1 pairs (x0, x2) at angle 1 and (x1, x3) at 0.01:
    // x0 cos1 - x2 sin1 = 0.540302 - 3 * 0.841471 = -1.984111, x2 cos1 + x0 sin1 = 2.462378,
    // x1 cos.01 - x3 sin.01 = 1.959901, x3 cos.01 + x1 sin.01 = 4.019800.
    const y = await rope(tensor(cpu, [1, 2, 3, 4, 1, 2, 3, 4], [2, 4]), { theta: 10000 }).toArray();
    close(y, [1, 2, 3, 4, -1.9841106485555495, 1.959900667496664, 2.4623779024123156, 4.019799668334994]);
    // positionOffset 1 on a single row gives the same numbers; partial rotary leaves dims >= rotaryDim alone.
    close(await rope(tensor(cpu, [1, 2, 3, 4], [1, 4]), { positionOffset: 1 }).toArray(), y.slice(4) as unknown as number[]);
    close(await rope(tensor(cpu, [1, 3, 7, 8], [1, 4]), { positionOffset: 1, rotaryDim: 2 }).toArray(), [0.540302 - 3 * 0.841471, 0.841471 + 3 * 0.540302, 7, 8], 1e-5);
  });

  it('erf, GELU (exact and tanh) and SiLU at known points', async () => {
    expect(Math.abs(erf(0.5) - 0.5204998778130465)).toBeLessThan(1e-15);
    expect(Math.abs(erf(3) - 0.9999779095030014)).toBeLessThan(1e-15); // continued-fraction tail
    expect(erf(-0.5)).toBe(-erf(0.5));
    expect(erf(0)).toBe(0);
    // gelu(x) = x * Phi(x): Phi(1) = 0.841344746, gelu(-1) = -(1 - Phi(1)) = -0.158655254
    close(await gelu(tensor(cpu, [1, -1, 0], [3])).toArray(), [0.8413447460685429, -0.15865525393145707, 0]);
    close(await geluTanh(tensor(cpu, [1], [1])).toArray(), [0.8411919906082768]);
    close(await silu(tensor(cpu, [1, 0], [2])).toArray(), [1 / (1 + Math.exp(-1)), 0]);
  });

  it('f16 rounding: max finite, overflow, subnormals, ties to even, signed zero, NaN', () => {
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65519)).toBe(0x7bff); // below the midpoint to 65536
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // the midpoint ties to even: 65536 = infinity
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // halfway to 0: ties to even (0)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp ties to even (2)
    expect(f32ToF16Bits(1023 * 2 ** -24)).toBe(0x03ff); // largest subnormal
    expect(f32ToF16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie between 1 and 1 + 2^-10 -> even (1)
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even mantissa 2
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x3555)).toBe(0.333251953125);
  });

  it('f16 tensors round once on the way in and out', async () => {
    const t = tensor(cpu, [65504, 65520, 1 + 2 ** -11, 2 ** -25], [4], 'f16');
    expect(Array.from(await t.toArray())).toEqual([65504, Infinity, 1, 0]);
  });

  it('quantizeInt8 of a known row: scale = 1.27 / 127 = 0.01, q = round(x / 0.01)', async () => {
    const { q, scales } = quantizeInt8(tensor(cpu, [0.5, -1, 0.25, 1.27], [1, 4]));
    expect(Array.from(await q.toArray())).toEqual([50, -100, 25, 127]);
    expect(Array.from(await scales.toArray())).toEqual([Math.fround(Math.fround(1.27) / 127)]);
    // Blocks of 2: scales 1/127 and 1.27/127; 0.5 * 127 = 63.5 rounds half up to 64.
    const b = quantizeInt8(tensor(cpu, [0.5, -1, 0.25, 1.27], [4]), { blockSize: 2 });
    expect(Array.from(await b.q.toArray())).toEqual([64, -127, 25, 127]);
  });

  it('argmax/topk ties, integer division and casts', async () => {
    expect(Array.from(await argmax(tensor(cpu, [1, 3, 3, 2], [4])).toArray())).toEqual([1]);
    const { values, indices } = topk(tensor(cpu, [2, 5, 2, 5, 1], [5]), 3);
    expect(Array.from(await values.toArray())).toEqual([5, 5, 2]);
    expect(Array.from(await indices.toArray())).toEqual([1, 3, 0]);
    const a = tensor(cpu, [7, -7, 7, 2 ** 31 - 1], [4], 'i32');
    const b = tensor(cpu, [2, 2, 0, 3], [4], 'i32');
    expect(Array.from(await div(a, b).toArray())).toEqual([3, -3, 0, 715827882]);
    expect(Array.from(await mul(a, b).toArray())).toEqual([14, -14, 0, 2147483645]); // (2^31-1)*3 wraps
    expect(Array.from(await cast(tensor(cpu, [-3.7, 3.7, 5e9, -5e9], [4]), 'i32').toArray())).toEqual([-3, 3, 2 ** 31 - 128, -(2 ** 31)]);
    expect(Array.from(await cast(tensor(cpu, [-5, 70000], [2], 'i32'), 'u32').toArray())).toEqual([2 ** 32 - 5, 70000]);
  });
});
