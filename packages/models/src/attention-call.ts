import { attentionWithStats, decode, HEAD_DIM_MULTIPLE, MAX_DECODE_QUERIES, MAX_HEAD_DIM, type MaskSpec } from '@attnkit/attention';
import { ArgumentError, matmul, scale, slice, softmax, type Tensor } from '@attnkit/tensor';
import type { KvView } from './kv-cache.js';

/*
 * The one place the decoder calls attention. q is [1, Hq, S, D] (the S newest positions),
 * the cache view holds [1, Hkv, capacity, D] with rows [0, length) valid; queries sit at
 * the end of the keys (causal). With GQA, query head h reads KV head floor(h / (Hq/Hkv)).
 *
 * @attnkit/attention does the work: split-K `decode` for a few new tokens, the flash
 * `attentionWithStats` for prefill and whenever a hook wants probabilities. Its kernels
 * take head dims that are multiples of 16 up to 256; other head dims use the composition
 * of tensor ops below, which also serves as an independent oracle in the tests.
 */

export interface AttendOptions {
  scale: number;
  /** Also return the probabilities [1, Hq, S, length] (hooks). */
  probs?: boolean;
  /** Also return max and sum of the probabilities per 16-key block, [1, Hq, S, ceil(length/16)] each. */
  pooled?: boolean;
  /** Sliding window (Mistral): each query sees the last `window` keys. */
  window?: number | null;
}

export interface AttendResult {
  out: Tensor;
  probs?: Tensor;
  pooledMax?: Tensor;
  pooledSum?: Tensor;
}

export function attend(q: Tensor, kv: KvView, opts: AttendOptions): AttendResult {
  const D = q.shape[3]!;
  if (!supportsWindow(D)) {
    if (opts.pooled) throw new ArgumentError('attend', 'pooled', `available for head dims that are multiples of ${HEAD_DIM_MULTIPLE} up to ${MAX_HEAD_DIM}`, `head dim ${D}`);
    return composedAttention(q, kv, opts);
  }
  const mask: MaskSpec = opts.window ? { kind: 'window', window: opts.window } : { kind: 'causal' };
  const common = { scale: opts.scale, kvLength: kv.length, mask };
  if (!opts.probs && !opts.pooled && q.shape[2]! <= MAX_DECODE_QUERIES) return { out: decode(q, kv.k, kv.v, common) };
  const r = attentionWithStats(q, kv.k, kv.v, { ...common, probs: !!opts.probs, pooled: !!opts.pooled });
  const res: AttendResult = { out: r.out };
  if (r.probs) res.probs = r.probs;
  if (r.pooledMax) res.pooledMax = r.pooledMax;
  if (r.pooledSum) res.pooledSum = r.pooledSum;
  return res;
}

/**
 * Attention composed from tensor ops: scores = q kᵀ, causal softmax, probs v. Heads that
 * share a KV head are stacked along the query rows ([Hkv, G*S, D]), so one batched matmul
 * covers GQA without copying K or V. A sliding window is not supported here (the decoder
 * refuses contexts beyond the window on this path).
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

/** Whether `attend` can apply a sliding window for this head dim. */
export function supportsWindow(headDim: number): boolean {
  return headDim % HEAD_DIM_MULTIPLE === 0 && headDim <= MAX_HEAD_DIM;
}
