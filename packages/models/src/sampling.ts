import { ArgumentError, mulberry32 } from '@attnkit/tensor';

/** How the next token is chosen from the logits. temperature 0 (default) is greedy. */
export interface SamplingOptions {
  temperature?: number;
  /** Keep only the k most likely tokens (0 or absent: no limit). */
  topK?: number;
  /** Keep the smallest set whose probability reaches p (1 or absent: no limit). */
  topP?: number;
  seed?: number;
}

export function validateSampling(o: SamplingOptions): void {
  const t = o.temperature ?? 0;
  if (!(Number.isFinite(t) && t >= 0)) throw new ArgumentError('sampling', 'temperature', 'a number >= 0', t);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new ArgumentError('sampling', 'topK', 'a non-negative integer', o.topK);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new ArgumentError('sampling', 'topP', 'a number in (0, 1]', o.topP);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw new ArgumentError('sampling', 'seed', 'an integer', o.seed);
}

export function isGreedy(o: SamplingOptions): boolean {
  return !(o.temperature && o.temperature > 0);
}

/** Index of the largest logit; ties pick the lowest index (as torch.argmax). */
export function argmaxHost(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/**
 * Samples as HF's generate does: temperature, then top-k, then top-p (nucleus) filtering,
 * then a draw from the renormalised distribution, from a seeded generator.
 */
export class Sampler {
  private readonly rand: () => number;
  constructor(readonly opts: SamplingOptions) {
    validateSampling(opts);
    this.rand = mulberry32(opts.seed ?? 0);
  }

  next(logits: ArrayLike<number>): number {
    if (isGreedy(this.opts)) return argmaxHost(logits);
    const t = this.opts.temperature!;
    const n = logits.length;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
    let keep = this.opts.topK && this.opts.topK > 0 ? Math.min(this.opts.topK, n) : n;
    const top = logits[order[0]!]! / t;
    const p = new Float64Array(keep);
    let sum = 0;
    for (let i = 0; i < keep; i++) sum += p[i] = Math.exp(logits[order[i]!]! / t - top);
    const topP = this.opts.topP ?? 1;
    if (topP < 1) {
      let acc = 0;
      for (let i = 0; i < keep; i++) {
        acc += p[i]! / sum;
        if (acc >= topP) {
          keep = i + 1;
          break;
        }
      }
      sum = 0;
      for (let i = 0; i < keep; i++) sum += p[i]!;
    }
    let r = this.rand() * sum;
    for (let i = 0; i < keep; i++) {
      r -= p[i]!;
      if (r < 0) return order[i]!;
    }
    return order[keep - 1]!;
  }
}
