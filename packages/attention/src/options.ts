import type { Tensor } from '@attnkit/tensor';

/**
 * Which keys a query may see, as data (FlexAttention's mask_mod/score_mod, without the
 * compiler). Positions are absolute key indices j in [0, kvLength); query i of S sits at
 * absolute position p = kvLength - S + i (queries are the last S positions).
 *
 * - causal:  j <= p.
 * - window:  causal sliding window of `window` keys: p - window < j <= p; with `sinks`,
 *            the first `sinks` keys are also visible (j < sinks and j <= p).
 * - blocks:  block-sparse: query block qb = floor(i / queryBlock) sees the key blocks
 *            (kb = floor(j / keyBlock)) listed in indices[b, h, qb, :]; -1 pads a row.
 *            With causal: true, j <= p is applied inside the listed blocks as well.
 * - bias:    an additive f32/f16 tensor broadcastable to [B, Hq, S, kvLength] added to the
 *            scaled score; -Infinity (or anything <= -1e30) hides a key. With causal: true
 *            the causal rule applies too.
 */
export type MaskSpec =
  | { kind: 'none' }
  | { kind: 'causal' }
  | { kind: 'window'; window: number; sinks?: number }
  | { kind: 'blocks'; queryBlock: number; keyBlock: number; indices: Tensor; causal?: boolean }
  | { kind: 'bias'; bias: Tensor; causal?: boolean };

export interface AttentionOptions {
  /** Softmax scale; default 1/sqrt(D). */
  scale?: number;
  /** Queries are the LAST S positions of the kvLength keys; shorthand for mask {kind:'causal'}. */
  causal?: boolean;
  /** Use keys [0, kvLength) of K/V whose axis 2 is a capacity >= kvLength; default L. */
  kvLength?: number;
  mask?: MaskSpec;
}

export interface StatsOptions extends AttentionOptions {
  /** Log-sum-exp of the scaled, masked scores per query: [B, Hq, S] f32. */
  lse?: boolean;
  /** Full probabilities [B, Hq, S, kvLength] f32 (small problems: analysis). */
  probs?: boolean;
  /** Max and sum of the probabilities per 16-key block: [B, Hq, S, ceil(kvLength/16)] f32 each. */
  pooled?: boolean;
}

export interface AttentionStats {
  out: Tensor;
  lse?: Tensor;
  probs?: Tensor;
  pooledMax?: Tensor;
  pooledSum?: Tensor;
}

export interface DecodeOptions extends AttentionOptions {
  /** i32 [B, Hkv, nSel]: ids of 16-key blocks to attend to, any order, -1 pads; no duplicates. */
  blocks?: Tensor;
  /** Force the number of KV splits (testing, tuning); default chosen from the problem size. */
  splits?: number;
}

/** Key block size of pooled statistics and of decode's selected-block lists. */
export const POOL_BLOCK = 16;
