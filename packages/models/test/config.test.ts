import * as E from 'fp-ts/lib/Either.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseLlamaConfig, ropeInvFreq, type LlamaConfig } from '../src/index.js';
import { tinyConfig } from './helpers.js';

const ok = (json: unknown): LlamaConfig => {
  const r = parseLlamaConfig('config.json', json);
  if (E.isLeft(r)) throw r.left;
  return r.right;
};
const err = (json: unknown): ConfigError => {
  const r = parseLlamaConfig('config.json', json);
  if (E.isRight(r)) throw new Error('expected a ConfigError');
  return r.left;
};

describe('HF config.json for the Llama family', () => {
  it('Llama with GQA, defaults for absent keys', () => {
    const c = ok(tinyConfig());
    expect(c).toMatchObject({ architecture: 'LlamaForCausalLM', numHeads: 4, numKvHeads: 2, headDim: 16, qkvBias: false, oBias: false, tieWordEmbeddings: false, slidingWindow: null, eosTokenIds: [2], bosTokenId: 1 });
    const { num_key_value_heads: _, ...noKv } = tinyConfig();
    expect(ok(noKv).numKvHeads).toBe(4);
  });

  it('Qwen2 has q/k/v bias and no o bias; its sliding window only counts when use_sliding_window', () => {
    const q = ok(tinyConfig({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', sliding_window: 32, use_sliding_window: false }));
    expect([q.qkvBias, q.oBias, q.slidingWindow]).toEqual([true, false, null]);
    expect(ok(tinyConfig({ architectures: ['Qwen2ForCausalLM'], use_sliding_window: true, sliding_window: 32 })).slidingWindow).toBe(32);
    const m = ok(tinyConfig({ architectures: ['MistralForCausalLM'], sliding_window: 4096 }));
    expect(m.slidingWindow).toBe(4096);
    const l = ok(tinyConfig({ attention_bias: true, mlp_bias: true, eos_token_id: [2, 7], head_dim: 16 }));
    expect([l.qkvBias, l.oBias, l.mlpBias, l.eosTokenIds, l.headDim]).toEqual([true, true, true, [2, 7], 16]);
  });

  it('transformers 5 rope_parameters carry theta and scaling', () => {
    const { rope_theta: _, ...rest } = tinyConfig();
    expect(ok({ ...rest, rope_parameters: { rope_theta: 1e6, rope_type: 'default' } })).toMatchObject({ ropeTheta: 1e6, ropeScaling: { kind: 'none' } });
    expect(ok({ ...rest, rope_parameters: { rope_theta: 5e5, rope_type: 'linear', factor: 4 } }).ropeScaling).toEqual({ kind: 'linear', factor: 4 });
    expect(err({ ...rest, rope_parameters: { rope_theta: 5e5, rope_type: 'dynamic', factor: 4 } }).key).toBe('rope_parameters.rope_type');
  });

  it('rope scaling: linear and llama3 (inverse frequencies as HF computes them)', () => {
    expect(ok(tinyConfig({ rope_scaling: { type: 'linear', factor: 2 } })).ropeScaling).toEqual({ kind: 'linear', factor: 2 });
    const c = ok(tinyConfig({ hidden_size: 512, num_attention_heads: 4, rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } }));
    const inv = ropeInvFreq(c);
    const base = ropeInvFreq({ ...c, ropeScaling: { kind: 'none' } });
    expect(inv[0]).toBe(base[0]); // high frequency: untouched
    expect(inv[63]).toBeCloseTo(base[63]! / 32, 12); // low frequency: divided by factor
    // in between: a smooth blend strictly between the two
    const mid = [...inv].findIndex((v, i) => v !== base[i] && Math.abs(v - base[i]! / 32) > 1e-12);
    expect(inv[mid]!).toBeLessThan(base[mid]!);
    expect(inv[mid]!).toBeGreaterThan(base[mid]! / 32);
  });

  it('each unsupported or invalid value is a ConfigError naming the file and key', () => {
    expect(err(tinyConfig({ architectures: ['GPTNeoXForCausalLM'] })).key).toBe('architectures');
    expect(err(tinyConfig({ num_key_value_heads: 3 })).message).toMatch(/config\.json: 'num_key_value_heads' must be a divisor of num_attention_heads \(4\), got 3/);
    expect(err(tinyConfig({ hidden_act: 'gelu' })).key).toBe('hidden_act');
    expect(err(tinyConfig({ rope_scaling: { rope_type: 'yarn', factor: 4 } })).key).toBe('rope_scaling.rope_type');
    expect(err(tinyConfig({ vocab_size: 0 })).key).toBe('vocab_size');
    expect(err(tinyConfig({ hidden_size: 30 })).key).toBe('hidden_size');
    expect(err([1, 2]).key).toBe('(root)');
  });

  it('property: any JSON value gives a config or a ConfigError, never a throw', () => {
    fc.assert(fc.property(fc.jsonValue(), (j) => {
      const r = parseLlamaConfig('c.json', j);
      return E.isRight(r) || r.left instanceof ConfigError;
    }), { numRuns: 300 });
    const keys = Object.keys(tinyConfig());
    fc.assert(fc.property(fc.constantFrom(...keys), fc.jsonValue(), (k, v) => {
      const r = parseLlamaConfig('c.json', { ...tinyConfig(), [k]: v });
      return E.isRight(r) || r.left instanceof ConfigError;
    }), { numRuns: 500 });
  });
});
