import type { Tensor } from '@attnkit/tensor';
import { referenceAttention } from './cpu/reference.js';
import type { AttentionOptions, AttentionStats, StatsOptions } from './options.js';
import { resolveProblem } from './problem.js';
import { asGpu } from './webgpu/common.js';
import { chooseFlashF32Variant, flashF32Enabled, runFlashF32 } from './webgpu/flash-f32.js';
import { runPrefill } from './webgpu/prefill.js';
import { runSgPrefill, sgPrefillSupported } from './webgpu/sgmatrix.js';
import { runStats } from './webgpu/stats.js';

/**
 * Which prefill kernel runs on WebGPU: 'auto' takes the subgroup-matrix (tensor-core)
 * kernel for f16 where the adapter offers f16 configs and the problem fits it, else
 * the plain kernel. Benchmarks and tests set it to compare the two. On the H200 the
 * subgroup-matrix kernel matched the plain one to 4.9e-4 (f16 output) at B1 H32 S4096 D128
 * and ran 3x faster, so 'auto' is the default.
 */
export type PrefillPath = 'auto' | 'plain' | 'subgroup-matrix';
let prefillPath: PrefillPath = 'auto';

export function setPrefillPath(path: PrefillPath): void {
  prefillPath = path;
}

export function getPrefillPath(): PrefillPath {
  return prefillPath;
}

/** q [B,Hq,S,D], k/v [B,Hkv,L,D] -> [B,Hq,S,D] in q's dtype (f32 accumulation). */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const r = attentionWithStats(q, k, v, opts);
  return r.out;
}

/** attention() plus optional log-sum-exp, full probabilities and 16-key pooled max/sum. */
export function attentionWithStats(q: Tensor, k: Tensor, v: Tensor, opts: StatsOptions = {}): AttentionStats {
  const op = 'attention';
  const p = resolveProblem(op, q, k, v, opts);
  const wantProbs = !!opts.probs;
  const wantPooled = !!opts.pooled;
  if (q.backend.kind === 'cpu') {
    return referenceAttention(p, q, k, v, { lse: !!opts.lse, probs: wantProbs, pooled: wantPooled });
  }
  const be = asGpu(q.backend, op);
  const useSg = prefillPath !== 'plain' && sgPrefillSupported(be, p);
  if (prefillPath === 'subgroup-matrix' && !useSg) {
    // Explicitly asked for: say why it cannot run rather than silently using the plain kernel.
    sgPrefillSupported(be, p, true);
  }
  // f32 without block list or bias: the matmul-structured flash kernel where it fits the adapter.
  const flash = !useSg && flashF32Enabled() ? chooseFlashF32Variant(be, p) : null;
  const { out, lse } = useSg ? runSgPrefill(be, p, q, k, v) : flash ? runFlashF32(be, p, q, k, v, flash) : runPrefill(be, p, q, k, v);
  const res: AttentionStats = { out };
  if (wantProbs || wantPooled) Object.assign(res, runStats(be, p, q, k, lse, { probs: wantProbs, pooled: wantPooled }));
  if (opts.lse) res.lse = lse;
  else lse.dispose();
  return res;
}
