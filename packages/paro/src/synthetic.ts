import { mulberry32, normalArray } from '@attnkit/tensor';
import { tokenCount, type VideoLayout } from './layout.js';

export interface SyntheticOptions {
  heads: number;
  headDim: number;
  /** Per head, the axes along which it aggregates broadly ('F', 'H', 'W' or e.g. 'HW'); cycles. */
  broad?: readonly string[];
  /** Peak logit (a query's logit on itself); default 12. */
  gamma?: number;
  /** Kernel widths in tokens for sharp and broad axes; default 0.6 and 3. */
  sharp?: number;
  wide?: number;
  seed?: number;
}

/**
 * Q and K whose attention is a Gaussian neighbourhood in (F, H, W), narrow on some axes and
 * wide on others, built from random Fourier features so every channel stays in [-1, 1]
 * (friendly to int8): softmax(q.k / sqrt(D)) ~ exp(gamma * mean_f cos(w_f . (x - y))).
 * Text tokens get plain random vectors. Returns [H, N, D] arrays.
 */
export function syntheticVideoQK(layout: VideoLayout, o: SyntheticOptions): { q: Float32Array; k: Float32Array } {
  const { heads: H, headDim: D } = o;
  const N = tokenCount(layout);
  const text = layout.text ?? 0;
  const F = D / 2;
  const gamma = o.gamma ?? 12;
  const broad = o.broad ?? ['F', 'H', 'W'];
  const rand = mulberry32(o.seed ?? 7);
  const q = new Float32Array(H * N * D);
  const k = new Float32Array(H * N * D);
  const amp = Math.sqrt(gamma / F);
  for (let h = 0; h < H; h++) {
    const wideAxes = broad[h % broad.length]!;
    const sigma = ['F', 'H', 'W'].map((a) => (wideAxes.includes(a) ? o.wide ?? 3 : o.sharp ?? 0.6));
    const freqs = normalArray(F * 3, Math.floor(rand() * 2 ** 31), 1);
    for (let f = 0; f < F; f++) for (let a = 0; a < 3; a++) freqs[f * 3 + a]! /= sigma[a]!;
    const noise = normalArray(text * D * 2, Math.floor(rand() * 2 ** 31), 0.3);
    for (let t = 0; t < N; t++) {
      const row = (h * N + t) * D;
      if (t < text) {
        for (let e = 0; e < D; e++) {
          q[row + e] = noise[t * D + e]! * Math.sqrt(D);
          k[row + e] = noise[(text + t) * D + e]!;
        }
        continue;
      }
      const v = t - text;
      const x = [Math.floor(v / (layout.height * layout.width)), Math.floor(v / layout.width) % layout.height, v % layout.width];
      for (let f = 0; f < F; f++) {
        const ph = freqs[f * 3]! * x[0]! + freqs[f * 3 + 1]! * x[1]! + freqs[f * 3 + 2]! * x[2]!;
        const c = Math.cos(ph) * amp;
        const s = Math.sin(ph) * amp;
        k[row + 2 * f] = c;
        k[row + 2 * f + 1] = s;
        q[row + 2 * f] = c * Math.sqrt(D);
        q[row + 2 * f + 1] = s * Math.sqrt(D);
      }
    }
  }
  return { q, k };
}
