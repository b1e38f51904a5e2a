import { random, type Backend, type Tensor } from '@attnkit/tensor';
import { compareClose, TOLERANCE } from '@attnkit/tensor/testing';
import { expect } from 'vitest';

/**
 * An independent float64 oracle for the tests: materialises every score, masks with a
 * plain predicate, and takes a dense softmax. It shares no code with the package, so the
 * CPU reference backend is checked by it too.
 */
export interface Dims {
  B: number;
  Hq: number;
  Hkv: number;
  S: number;
  /** K/V capacity (axis 2). */
  L: number;
  kvLength: number;
  D: number;
}

export type Visible = (b: number, h: number, i: number, j: number) => boolean;
export type BiasFn = (b: number, h: number, i: number, j: number) => number;

export interface OracleResult {
  out: Float64Array;
  lse: Float64Array;
  probs: Float64Array;
  pmax: Float64Array;
  psum: Float64Array;
}

export function oracle(Q: ArrayLike<number>, K: ArrayLike<number>, V: ArrayLike<number>, d: Dims, scale: number, visible: Visible, bias?: BiasFn): OracleResult {
  const { B, Hq, Hkv, S, L, kvLength: n, D } = d;
  const g = Hq / Hkv;
  const nPool = Math.ceil(n / 16);
  const out = new Float64Array(B * Hq * S * D);
  const lse = new Float64Array(B * Hq * S);
  const probs = new Float64Array(B * Hq * S * n);
  const pmax = new Float64Array(B * Hq * S * nPool);
  const psum = new Float64Array(B * Hq * S * nPool);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < S; i++) {
        const row = (b * Hq + h) * S + i;
        const kvh = Math.floor(h / g);
        const sc: number[] = [];
        for (let j = 0; j < n; j++) {
          let x = -Infinity;
          const bv = bias ? bias(b, h, i, j) : 0;
          if (visible(b, h, i, j) && bv !== -Infinity) {
            x = 0;
            for (let e = 0; e < D; e++) x += Q[row * D + e]! * K[((b * Hkv + kvh) * L + j) * D + e]!;
            x = x * scale + bv;
          }
          sc.push(x);
        }
        const m = Math.max(...sc);
        if (m === -Infinity) {
          lse[row] = -Infinity;
          continue;
        }
        const ex = sc.map((x) => Math.exp(x - m));
        const sum = ex.reduce((a, c) => a + c, 0);
        lse[row] = m + Math.log(sum);
        for (let j = 0; j < n; j++) {
          const p = ex[j]! / sum;
          probs[row * n + j] = p;
          const pb = row * nPool + Math.floor(j / 16);
          pmax[pb] = Math.max(pmax[pb]!, p);
          psum[pb]! += p;
          for (let e = 0; e < D; e++) out[row * D + e]! += p * V[((b * Hkv + kvh) * L + j) * D + e]!;
        }
      }
  return { out, lse, probs, pmax, psum };
}

export interface Inputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  Q: Float32Array;
  K: Float32Array;
  V: Float32Array;
}

let seed = 1;
/** Same seeded values on every backend; the oracle reads the (f16-rounded) values back. */
export async function inputs(be: Backend, d: Dims, dtype: 'f32' | 'f16', s = seed++): Promise<Inputs> {
  const q = random(be, [d.B, d.Hq, d.S, d.D], { seed: s * 3, dtype });
  const k = random(be, [d.B, d.Hkv, d.L, d.D], { seed: s * 3 + 1, dtype });
  const v = random(be, [d.B, d.Hkv, d.L, d.D], { seed: s * 3 + 2, dtype });
  return { q, k, v, Q: (await q.toArray()) as Float32Array, K: (await k.toArray()) as Float32Array, V: (await v.toArray()) as Float32Array };
}

/** Output tolerance: the dtype's, plus f32 rounding of exp/sum over long rows. */
export function tol(dtype: 'f32' | 'f16'): { atol: number; rtol: number } {
  return dtype === 'f32' ? { atol: 2e-5, rtol: 1e-4 } : TOLERANCE.f16;
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, t: { atol: number; rtol: number }, what: string): void {
  const r = compareClose(actual, expected, t.atol, t.rtol);
  expect(r.message, what).toBe('ok');
}

export function causalVis(d: Dims): Visible {
  return (_b, _h, i, j) => j <= d.kvLength - d.S + i;
}
