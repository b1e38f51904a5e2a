import { coordsOf, denseAttention, describeProblem, na2d, na3d, visible, type NeighborhoodOptions } from '@attnkit/neighborhood';
import { random, type Backend, type Tensor } from '@attnkit/tensor';
import { peerKey, timeIt, withPeer, type BenchRow, type Suite } from '../harness.js';

// Neighborhood attention against FlexAttention with the same NATTEN mask (peer_neighborhood.py)
// and against our own dense fused kernel on the same tokens, measured in the same run.
// Work is counted as the useful FLOPs: 4 * queries * window * D per head (QK and PV).

interface Case { kernel: 'na2d' | 'na3d'; spatial: number[]; window: number[]; heads: number; D: number; dtype: 'f32' | 'f16' }

const BIG: Case[] = [
  { kernel: 'na2d', spatial: [128, 128], window: [13, 13], heads: 8, D: 64, dtype: 'f16' },
  { kernel: 'na3d', spatial: [16, 32, 32], window: [7, 7, 7], heads: 8, D: 64, dtype: 'f16' },
];
const SMALL: Case[] = [
  { kernel: 'na2d', spatial: [16, 16], window: [5, 5], heads: 2, D: 32, dtype: 'f32' },
  { kernel: 'na3d', spatial: [4, 8, 8], window: [3, 3, 3], heads: 2, D: 32, dtype: 'f32' },
];

export function caseShape(c: Case): string {
  return `1x${c.heads}x${c.spatial.join('x')}x${c.D}_k${c.window.join('x')}`;
}

/** Max |error| of `out` against the definition on 48 sampled queries (every head, batch 0). */
async function sampledError(q: Tensor, k: Tensor, v: Tensor, out: Tensor, c: Case, opts: NeighborhoodOptions): Promise<number> {
  const p = describeProblem('bench', c.spatial.length, q, k, v, opts);
  const [qa, ka, va, oa] = await Promise.all([q.toArray(), k.toArray(), v.toArray(), out.toArray()]);
  const N = p.tokens;
  const D = c.D;
  let worst = 0;
  for (let s = 0; s < 48; s++) {
    const h = s % c.heads;
    const i = Math.floor(((s * 7919) % 1000) / 1000 * N);
    const xi = coordsOf(i, c.spatial);
    const base = h * N * D;
    const logits: Array<[number, number]> = [];
    for (let j = 0; j < N; j++) {
      if (!visible(xi, coordsOf(j, c.spatial), p.axes)) continue;
      let dot = 0;
      for (let e = 0; e < D; e++) dot += qa[base + i * D + e]! * ka[base + j * D + e]!;
      logits.push([j, dot * p.scale]);
    }
    const mx = Math.max(...logits.map((l) => l[1]));
    let sum = 0;
    const o = new Float64Array(D);
    for (const [j, l] of logits) {
      const w = Math.exp(l - mx);
      sum += w;
      for (let e = 0; e < D; e++) o[e]! += w * va[base + j * D + e]!;
    }
    for (let e = 0; e < D; e++) worst = Math.max(worst, Math.abs(o[e]! / sum - oa[base + i * D + e]!));
  }
  return worst;
}

export const neighborhoodSuite: Suite = {
  name: 'neighborhood',
  async run(be: Backend, ctx) {
    const rows: BenchRow[] = [];
    for (const c of ctx.big ? BIG : SMALL) {
      if (be.kind === 'cpu' && c.kernel === 'na3d') continue; // the float64 reference is too slow to be worth timing
      const shape = [1, c.heads, ...c.spatial, c.D];
      const N = c.spatial.reduce((a, b) => a * b, 1);
      const q = random(be, shape, { seed: 1, dtype: c.dtype });
      const k = random(be, shape, { seed: 2, dtype: c.dtype });
      const v = random(be, shape, { seed: 3, dtype: c.dtype });
      const opts: NeighborhoodOptions = { kernelSize: c.window };
      const op = c.kernel === 'na2d' ? na2d : na3d;
      const win = c.window.reduce((a, b) => a * b, 1);
      const flops = 4 * c.heads * N * win * c.D;
      const t = await timeIt(be, () => op(q, k, v, opts).dispose(), { reps: ctx.big ? 9 : 3 });
      const s = caseShape(c);
      const check = op(q, k, v, opts);
      const err = await sampledError(q, k, v, check, c, opts);
      check.dispose();
      const base: BenchRow = { package: 'neighborhood', kernel: c.kernel, shape: s, dtype: c.dtype, backend: be.kind, device: ctx.device, ...t, gflops: flops / (t.medianMs * 1e6) };
      rows.push(withPeer({ ...base, notes: `peer: FlexAttention with the same NATTEN block mask; max |error| vs the definition on 48 sampled queries ${err.toExponential(2)}` }, ctx.peers.get(peerKey(c.kernel, s, c.dtype)), { flops }));

      // The plain fused kernel (no subgroup matrices) on the same case: variant row, llm.c style.
      if (ctx.big) {
        process.env.ATTNKIT_NA_SG = '0';
        const tp = await timeIt(be, () => op(q, k, v, opts).dispose(), { reps: 9 });
        delete process.env.ATTNKIT_NA_SG;
        rows.push(withPeer({ ...base, kernel: `${c.kernel}-plain`, ...tp, gflops: flops / (tp.medianMs * 1e6), notes: 'variant: the plain fused kernel (ATTNKIT_NA_SG=0)' }, ctx.peers.get(peerKey(c.kernel, s, c.dtype)), { flops }));
      }

      // Our dense fused kernel on the same tokens (no mask).
      const flat = (x: Tensor) => x.reshape([1, c.heads, N, c.D]);
      const [qf, kf, vf] = [flat(q), flat(k), flat(v)];
      const dense = await timeIt(be, () => denseAttention(qf, kf, vf).dispose(), { reps: ctx.big ? 5 : 3, maxInner: 4 });
      const denseFlops = 4 * c.heads * N * N * c.D;
      const dshape = `1x${c.heads}x${N}x${c.D}`;
      const denseRow: BenchRow = { package: 'neighborhood', kernel: 'dense', shape: dshape, dtype: c.dtype, backend: be.kind, device: ctx.device, ...dense, gflops: denseFlops / (dense.medianMs * 1e6), notes: 'our fused dense kernel (no mask); peer: torch SDPA' };
      rows.push(withPeer(denseRow, ctx.peers.get(peerKey('dense', dshape, c.dtype)), { flops: denseFlops }));
      rows.push({ ...base, kernel: `${c.kernel}-vs-dense`, peer: { name: 'attnkit dense fused kernel, same tokens', medianMs: dense.medianMs }, ratio: dense.medianMs / t.medianMs, notes: 'ratio = our dense time / our neighborhood time' });
      for (const x of [q, k, v, qf, kf, vf]) x.dispose();
    }
    return rows;
  },
};
