import { CpuBackend, matmul, scale as scaleOp, softmax, tensor, type Backend, type Tensor } from '@attnkit/tensor';
import type { Problem } from './options.js';
import { visible, type AxisSpec } from './window.js';

/** Row-major multi-index of flat token index t over `spatial`. */
export function coordsOf(t: number, spatial: readonly number[]): number[] {
  const c = new Array<number>(spatial.length);
  for (let a = spatial.length - 1; a >= 0; a--) {
    c[a] = t % spatial[a]!;
    t = Math.floor(t / spatial[a]!);
  }
  return c;
}

/**
 * The explicit neighborhood mask over flat tokens: mask[q * N + k] = 1 when query token q
 * sees key token k. Built element by element from window.ts; O(N^2), for tests only.
 */
export function neighborhoodMask(spatial: readonly number[], axes: readonly AxisSpec[]): Uint8Array {
  const N = spatial.reduce((p, s) => p * s, 1);
  const coords = Array.from({ length: N }, (_, t) => coordsOf(t, spatial));
  const m = new Uint8Array(N * N);
  for (let q = 0; q < N; q++) for (let k = 0; k < N; k++) m[q * N + k] = visible(coords[q]!, coords[k]!, axes) ? 1 : 0;
  return m;
}

/**
 * The CPU reference, straight from the definition: for every query, every key the window
 * rule admits, softmax in float64, weighted sum of values. Arrays are [B, H(kv), N, D].
 */
export function neighborhoodReference(p: Problem, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>): Float64Array {
  const { batch: B, heads: H, kvHeads: Hkv, headDim: D, tokens: N, spatial, axes, scale } = p;
  const out = new Float64Array(B * H * N * D);
  const coords = Array.from({ length: N }, (_, t) => coordsOf(t, spatial));
  const logits = new Float64Array(N);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / Hkv));
      const qBase = (b * H + h) * N * D;
      const kBase = (b * Hkv + kvh) * N * D;
      for (let i = 0; i < N; i++) {
        let max = -Infinity;
        for (let j = 0; j < N; j++) {
          if (!visible(coords[i]!, coords[j]!, axes)) { logits[j] = -Infinity; continue; }
          let s = 0;
          for (let e = 0; e < D; e++) s += q[qBase + i * D + e]! * k[kBase + j * D + e]!;
          logits[j] = s * scale;
          if (logits[j]! > max) max = logits[j]!;
        }
        let sum = 0;
        const o = qBase + i * D;
        for (let j = 0; j < N; j++) {
          if (logits[j] === -Infinity) continue;
          const w = Math.exp(logits[j]! - max);
          sum += w;
          for (let e = 0; e < D; e++) out[o + e]! += w * v[kBase + j * D + e]!;
        }
        for (let e = 0; e < D; e++) out[o + e]! /= sum;
      }
    }
  }
  return out;
}

/**
 * A second, independent reference: dense attention with the explicit mask as an additive
 * -inf bias, through @attnkit/tensor's CPU ops (matmul, softmax). Inputs [B, H, N, D]
 * (k/v already expanded to H heads), result as a flat Float32Array.
 */
export async function maskedDenseReference(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>,
  shape: { batch: number; heads: number; tokens: number; headDim: number }, mask: Uint8Array, scale: number,
): Promise<Float32Array> {
  const cpu: Backend = new CpuBackend();
  const { batch: B, heads: H, tokens: N, headDim: D } = shape;
  const qt = tensor(cpu, q, [B, H, N, D]);
  const kt = tensor(cpu, k, [B, H, N, D]);
  const vt = tensor(cpu, v, [B, H, N, D]);
  const bias = new Float32Array(N * N);
  for (let i = 0; i < N * N; i++) bias[i] = mask[i] ? 0 : -Infinity;
  const mt = tensor(cpu, bias, [N, N]);
  const s = scaleOp(matmul(qt, kt, { transB: true }), scale);
  const pr = softmax(s, { mask: mt });
  const o: Tensor = matmul(pr, vt);
  return (await o.toArray()) as Float32Array;
}
