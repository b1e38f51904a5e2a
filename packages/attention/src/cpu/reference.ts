import { decodeF16, tensor, type Tensor } from '@attnkit/tensor';
import { POOL_BLOCK, type AttentionStats } from '../options.js';
import { queryPos, type Problem } from '../problem.js';

/** Float64 values of a CPU tensor (f16 widened). */
function valuesOf(t: Tensor): Float64Array | Float32Array {
  const raw = t.handle() as ArrayLike<number>;
  if (t.dtype === 'f16') return decodeF16(raw as Uint16Array);
  return raw as Float32Array;
}

export interface ReferenceWants {
  lse?: boolean;
  probs?: boolean;
  pooled?: boolean;
}

/** Per (b, hkv): the allowed 16-key block ids (decode over a selection), or null for all. */
export type KeySelection = ((b: number, hk: number) => Set<number>) | null;

/**
 * The float64 reference: scores, mask, softmax and P·V written as directly as possible.
 * One visibility rule (visibleKey) serves every mask kind, so the GPU kernels' tile
 * skipping is checked against plain per-element logic.
 */
export function referenceAttention(p: Problem, q: Tensor, k: Tensor, v: Tensor, want: ReferenceWants, selection: KeySelection = null): AttentionStats {
  const Q = valuesOf(q);
  const K = valuesOf(k);
  const V = valuesOf(v);
  const { B, Hq, Hkv, S, cap, kvLength: Lk, D, scale } = p;
  const group = Hq / Hkv;
  const nPool = Math.ceil(Lk / POOL_BLOCK);
  const out = new Float64Array(B * Hq * S * D);
  const lse = new Float64Array(B * Hq * S);
  const probs = want.probs ? new Float64Array(B * Hq * S * Lk) : null;
  const pmax = want.pooled ? new Float64Array(B * Hq * S * nPool) : null;
  const psum = want.pooled ? new Float64Array(B * Hq * S * nPool) : null;
  const biasVals = p.bias ? valuesOf(p.bias.tensor) : null;
  const blockIds = p.blocks ? (p.blocks.indices.handle() as Int32Array) : null;
  const s = new Float64Array(Lk);
  const vis = new Uint8Array(Lk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      const sel = selection ? selection(b, hk) : null;
      for (let i = 0; i < S; i++) {
        const pos = queryPos(p, i);
        const allowedBlocks = blockIds ? blockRow(p, blockIds, b, h, i) : null;
        const row = (b * Hq + h) * S + i;
        let m = -Infinity;
        for (let j = 0; j < Lk; j++) {
          vis[j] = 0;
          if (p.causal && j > pos) continue;
          if (p.window > 0 && !(j > pos - p.window || j < p.sinks)) continue;
          if (allowedBlocks && !allowedBlocks.has(Math.floor(j / p.blocks!.keyBlock))) continue;
          if (sel && !sel.has(Math.floor(j / POOL_BLOCK))) continue;
          let dot = 0;
          const qo = row * D;
          const ko = ((b * Hkv + hk) * cap + j) * D;
          for (let d = 0; d < D; d++) dot += Q[qo + d]! * K[ko + d]!;
          let sc = dot * scale;
          if (biasVals) {
            const st = p.bias!.strides;
            const bv = biasVals[b * st[0] + h * st[1] + i * st[2] + j * st[3]]!;
            if (!(bv > -1e30)) continue;
            sc += bv;
          }
          vis[j] = 1;
          s[j] = sc;
          if (sc > m) m = sc;
        }
        if (m === -Infinity) {
          lse[row] = -Infinity; // no visible key: output row of zeros
          continue;
        }
        let l = 0;
        for (let j = 0; j < Lk; j++) if (vis[j]) l += Math.exp(s[j]! - m);
        const o = out.subarray(row * D, row * D + D);
        for (let j = 0; j < Lk; j++) {
          if (!vis[j]) continue;
          const pj = Math.exp(s[j]! - m) / l;
          const vo = ((b * Hkv + hk) * cap + j) * D;
          for (let d = 0; d < D; d++) o[d]! += pj * V[vo + d]!;
          if (probs) probs[row * Lk + j] = pj;
          if (pmax && psum) {
            const pb = row * nPool + Math.floor(j / POOL_BLOCK);
            pmax[pb] = Math.max(pmax[pb]!, pj);
            psum[pb]! += pj;
          }
        }
        lse[row] = m + Math.log(l);
      }
    }
  }
  const be = q.backend;
  const res: AttentionStats = { out: tensor(be, out, [B, Hq, S, D], p.dtype) };
  if (want.lse) res.lse = tensor(be, lse, [B, Hq, S], 'f32');
  if (probs) res.probs = tensor(be, probs, [B, Hq, S, Lk], 'f32');
  if (pmax && psum) {
    res.pooledMax = tensor(be, pmax, [B, Hq, S, nPool], 'f32');
    res.pooledSum = tensor(be, psum, [B, Hq, S, nPool], 'f32');
  }
  return res;
}

function blockRow(p: Problem, ids: Int32Array, b: number, h: number, i: number): Set<number> {
  const bl = p.blocks!;
  const qb = Math.floor(i / bl.queryBlock);
  const base = (((bl.Bm === 1 ? 0 : b) * bl.Hm + (bl.Hm === 1 ? 0 : h)) * bl.nQB + qb) * bl.maxSel;
  const set = new Set<number>();
  for (let s = 0; s < bl.maxSel; s++) {
    const id = ids[base + s]!;
    if (id >= 0 && id < bl.nKB) set.add(id);
  }
  return set;
}
