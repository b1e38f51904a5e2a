import { argmax, type Tensor } from '@attnkit/tensor';
import { ContextLengthError } from './errors.js';
import type { KvCache } from './kv-cache.js';
import type { DecoderHooks, LlamaModel } from './llama.js';
import { isGreedy, Sampler, type SamplingOptions } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Stop when one of these is produced (defaults to the config's eos ids; [] never stops early). */
  stopTokens?: readonly number[];
  /** A cache to use (default: a static cache sized prompt + maxNewTokens). */
  cache?: KvCache;
  hooks?: DecoderHooks;
  /** Called with each new token as soon as it is known. */
  onToken?: (id: number, index: number) => void;
}

export interface GenerateResult {
  tokens: number[];
  promptTokens: number;
  /** Prompt forward pass up to its first token on the host. */
  prefillMs: number;
  /** From the first generated token to the last. */
  decodeMs: number;
  /** Decode-phase throughput: (tokens - 1) / decodeMs (the first token comes from prefill). */
  tokensPerSecond: number;
  kvBytes: number;
  stoppedBy: 'eos' | 'length';
}

/**
 * Prefill the prompt, then decode one token at a time. Greedy decoding takes the argmax
 * on the device and reads back 4 bytes; sampling reads the logits row.
 */
export async function generate(model: LlamaModel, prompt: readonly number[], opts: GenerateOptions): Promise<GenerateResult> {
  const c = model.config;
  if (prompt.length === 0) throw new ContextLengthError('generate (empty prompt)', 0, 0);
  const needed = prompt.length + opts.maxNewTokens;
  if (needed > c.maxPositions) throw new ContextLengthError(`prompt (${prompt.length} tokens) + max new tokens (${opts.maxNewTokens})`, needed, c.maxPositions);
  const ownCache = !opts.cache;
  const cache = opts.cache ?? model.newCache(needed);
  const sampler = new Sampler(opts);
  const greedy = isGreedy(opts);
  const stops = new Set(opts.stopTokens ?? c.eosTokenIds);
  const tokens: number[] = [];

  const pick = async (logits: Tensor): Promise<number> => {
    if (greedy) {
      const idx = argmax(logits);
      logits.dispose();
      const v = (await idx.toArray())[0]!;
      idx.dispose();
      return v;
    }
    const row = await logits.toArray();
    logits.dispose();
    return sampler.next(row);
  };

  try {
    const t0 = performance.now();
    let next = await pick(model.forward(prompt, cache, { hooks: opts.hooks }).logits);
    const t1 = performance.now();
    let stoppedBy: GenerateResult['stoppedBy'] = 'length';
    while (tokens.length < opts.maxNewTokens) {
      tokens.push(next);
      opts.onToken?.(next, tokens.length - 1);
      if (stops.has(next)) {
        stoppedBy = 'eos';
        break;
      }
      if (tokens.length === opts.maxNewTokens) break;
      next = await pick(model.forward([next], cache, { hooks: opts.hooks }).logits);
    }
    const t2 = performance.now();
    const decodeMs = t2 - t1;
    return {
      tokens,
      promptTokens: prompt.length,
      prefillMs: t1 - t0,
      decodeMs,
      tokensPerSecond: tokens.length > 1 ? ((tokens.length - 1) * 1000) / decodeMs : 0,
      kvBytes: cache.bytes(),
      stoppedBy,
    };
  } finally {
    if (ownCache) cache.dispose();
  }
}
