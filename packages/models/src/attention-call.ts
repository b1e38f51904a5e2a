import { matmul, scale, slice, softmax, type Tensor } from '@attnkit/tensor';
import type { KvView } from './kv-cache.js';

/*
 * The one place the decoder calls attention. q is [1, Hq, S, D] (the S newest positions),
 * the cache view holds [1, Hkv, capacity, D] with rows [0, length) valid; queries sit at
 * the end of the keys (causal). With GQA, query head h reads KV head floor(h / (Hq/Hkv)).
 */

export interface AttendOptions {
  scale: number;
  /** Also return the probabilities [1, Hq, S, length] (hooks). */
  probs?: boolean;
}

export interface AttendResult {
  out: Tensor;
  probs?: Tensor;
}

/**
 * Attention composed from tensor ops: scores = q kᵀ, causal softmax, probs v. Heads that
 * share a KV head are stacked along the query rows ([Hkv, G*S, D]), so one batched matmul
 * covers GQA without copying K or V.
 */
export function composedAttention(q: Tensor, kv: KvView, opts: AttendOptions): AttendResult {
  const [, Hq, S, D] = q.shape as [number, number, number, number];
  const Hkv = kv.k.shape[1]!;
  const L = kv.length;
  const G = Hq / Hkv;
  const k = L === kv.k.shape[2] ? kv.k : slice(kv.k, [0, 0, 0, 0], [1, Hkv, L, D]);
  const v = L === kv.v.shape[2] ? kv.v : slice(kv.v, [0, 0, 0, 0], [1, Hkv, L, D]);
  const scores = scale(matmul(q.reshape([1, Hkv, G * S, D]), k, { transB: true }), opts.scale);
  const probs = softmax(scores.reshape([1, Hq, S, L]), { causal: true });
  const out = matmul(probs.reshape([1, Hkv, G * S, L]), v).reshape([1, Hq, S, D]);
  return opts.probs ? { out, probs } : { out };
}

export function attend(q: Tensor, kv: KvView, opts: AttendOptions): AttendResult {
  return composedAttention(q, kv, opts);
}
