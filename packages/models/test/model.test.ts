import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { CpuBackend, scale, type Backend, type Tensor } from '@attnkit/tensor';
import { describe, expect, it } from 'vitest';
import { ContextLengthError, ConfigError, generate, loadLlama, WeightMismatchError, type LoadedModel } from '../src/index.js';
import { naiveLlama, relativeMaxDiff, writeTinyCheckpoint, type TinyConfig } from './helpers.js';

const cpu = new CpuBackend();

async function load(dir: string, be: Backend = cpu, weightDtype: 'f16' | 'f32' = 'f32'): Promise<LoadedModel> {
  const r = await loadLlama(dir, be, { weightDtype, tokenizer: false });
  if (E.isLeft(r)) throw r.left;
  return r.right;
}

async function allLogits(m: LoadedModel, ids: number[]): Promise<Float32Array> {
  const cache = m.model.newCache(ids.length);
  const { logits } = m.model.forward(ids, cache, { logits: 'all' });
  const out = (await logits.toArray()) as Float32Array;
  logits.dispose();
  cache.dispose();
  return out;
}

const ids = [1, 5, 9, 3, 17, 40, 22];

describe('Llama-family decoder against a float64 loop oracle (CPU)', () => {
  const cases: Array<[string, Partial<TinyConfig>]> = [
    ['Llama, GQA 4:2', {}],
    ['Llama, multi-head, tied embeddings', { num_key_value_heads: 4, tie_word_embeddings: true }],
    ['Qwen2 with q/k/v bias, MQA', { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', num_key_value_heads: 1, rope_theta: 1e6 }],
    ['Mistral with a sliding window of 4 keys', { architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 4 }],
    ['head dim 8 (the composed-ops attention path)', { hidden_size: 32 }],
  ];
  for (const [name, over] of cases) {
    it(`${name}: all-position logits match`, async () => {
      const ck = writeTinyCheckpoint({ config: over });
      const m = await load(ck.dir);
      const ours = await allLogits(m, ids);
      const ref = naiveLlama(ck.config, ck.weights, ids).flat();
      const d = relativeMaxDiff(ours, ref);
      expect(d.rel).toBeLessThan(1e-5);
      m.model.dispose();
    });
  }

  it('loads f16, bf16 and sharded checkpoints to the same logits as the oracle on their rounded weights', async () => {
    for (const opt of [{ dtype: 'F16' as const }, { dtype: 'BF16' as const }, { shards: 3 }]) {
      const ck = writeTinyCheckpoint(opt);
      for (const wd of ['f32', 'f16'] as const) {
        const m = await load(ck.dir, cpu, wd);
        const d = relativeMaxDiff(await allLogits(m, ids), naiveLlama(ck.config, ck.weights, ids).flat());
        // f16 storage of bf16/f32 weights rounds them; the f32 path is exact.
        expect(d.rel).toBeLessThan(wd === 'f32' || opt.dtype === 'F16' ? 1e-5 : 5e-3);
        m.model.dispose();
      }
    }
  });

  it('prefill + one-token decode steps give the same logits as one pass over everything', async () => {
    const ck = writeTinyCheckpoint();
    const m = await load(ck.dir);
    const full = await allLogits(m, ids);
    const V = ck.config.vocab_size;
    const cache = m.model.newCache(16);
    const first = m.model.forward(ids.slice(0, 3), cache, { logits: 'all' }).logits;
    const rows: number[] = Array.from(await first.toArray());
    for (const id of ids.slice(3)) rows.push(...(await m.model.forward([id], cache).logits.toArray()));
    expect(relativeMaxDiff(rows, full).rel).toBeLessThan(1e-6);
    expect(cache.position).toBe(ids.length);
    expect(cache.bytes()).toBe(2 * 2 * 2 * 16 * 16 * 4); // layers * (k,v) * Hkv * capacity * D * 4 bytes
    expect(rows.length).toBe(ids.length * V);
  });

  it('greedy generate continues the argmax chain and stops at EOS', async () => {
    const ck = writeTinyCheckpoint({ config: { eos_token_id: 999999 } });
    const m = await load(ck.dir);
    const res = await generate(m.model, [1, 5, 9], { maxNewTokens: 4 });
    let seq = [1, 5, 9];
    for (let i = 0; i < 4; i++) {
      const rows = naiveLlama(ck.config, ck.weights, seq);
      const last = rows[rows.length - 1]!;
      seq = [...seq, last.indexOf(Math.max(...last))];
    }
    expect(res.tokens).toEqual(seq.slice(3));
    expect(res.stoppedBy).toBe('length');
    const stop = await generate(m.model, [1, 5, 9], { maxNewTokens: 4, stopTokens: [res.tokens[1]!] });
    expect(stop.tokens).toEqual(res.tokens.slice(0, res.tokens.indexOf(res.tokens[1]!) + 1));
    expect(stop.stoppedBy).toBe('eos');
    const sampled = await generate(m.model, [1, 5, 9], { maxNewTokens: 5, temperature: 0.8, topK: 10, topP: 0.9, seed: 7 });
    const again = await generate(m.model, [1, 5, 9], { maxNewTokens: 5, temperature: 0.8, topK: 10, topP: 0.9, seed: 7 });
    expect(sampled.tokens).toEqual(again.tokens);
  });

  it('hooks expose probabilities, head outputs and the residual, and patches change the result', async () => {
    const ck = writeTinyCheckpoint();
    const m = await load(ck.dir);
    const base = await allLogits(m, ids);
    const seen: string[] = [];
    let probs: Tensor | null = null;
    const cache = m.model.newCache(ids.length);
    const r = m.model.forward(ids, cache, {
      logits: 'all',
      hooks: {
        layers: [1],
        onAttentionProbs: (l, p, ctx) => { seen.push(`probs${l}:${p.shape.join('x')}`); probs = ctx.keep(p); },
        onHeadOutputs: (l, z) => { seen.push(`z${l}:${z.shape.join('x')}`); },
        onResidual: (l, site, x) => { seen.push(`${site}${l}:${x.shape.join('x')}`); },
      },
    });
    expect(seen).toEqual(['attn_in1:7x64', 'probs1:1x4x7x7', 'z1:1x4x7x16', 'mlp_in1:7x64', 'out1:7x64']);
    expect(relativeMaxDiff(await r.logits.toArray(), base).rel).toBeLessThan(1e-7);
    expect(r.kept).toHaveLength(1);
    const p = (await probs!.toArray()) as Float32Array;
    for (let row = 0; row < 4 * 7; row++) {
      const s = p.subarray(row * 7, row * 7 + 7);
      expect(s.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      for (let j = (row % 7) + 1; j < 7; j++) expect(s[j]).toBe(0); // causal
    }
    // The pooled form: per 16-key block (one block here), max and sum of each row's probabilities.
    const pr = m.model.forward(ids, m.model.newCache(ids.length), {
      hooks: { layers: [1], onPooledAttention: (_l, pl, ctx) => { ctx.keep(pl.max); ctx.keep(pl.sum); } },
    });
    expect(pr.kept.map((t) => t.shape.join('x'))).toEqual(['1x4x7x1', '1x4x7x1']);
    const pooled = { max: Array.from(await pr.kept[0]!.toArray()), sum: Array.from(await pr.kept[1]!.toArray()) };
    for (let row = 0; row < 4 * 7; row++) {
      const s = Array.from(p.subarray(row * 7, row * 7 + 7));
      expect(pooled.sum[row]).toBeCloseTo(1, 5);
      expect(pooled.max[row]).toBeCloseTo(Math.max(...s), 6);
    }
    // Patching: scaling the head outputs and zeroing the residual each change the logits.
    const patched = m.model.forward(ids, m.model.newCache(ids.length), { logits: 'all', hooks: { onHeadOutputs: (_l, z) => scale(z, 0) } });
    const pz = await patched.logits.toArray();
    const ablated = naiveLlama(ck.config, ck.weights, ids); // sanity: the unpatched oracle differs from the patched model
    expect(relativeMaxDiff(pz, ablated.flat()).rel).toBeGreaterThan(1e-3);
  });
});

describe('bad checkpoints give typed errors naming file, tensor and expectation', () => {
  it('a tensor whose shape does not match the config', async () => {
    const ck = writeTinyCheckpoint();
    const cfg = JSON.parse(JSON.stringify(ck.config)) as TinyConfig;
    cfg.intermediate_size = 81;
    writeFileSync(join(ck.dir, 'config.json'), JSON.stringify(cfg));
    const r = await loadLlama(ck.dir, cpu, { tokenizer: false });
    expect(E.isLeft(r) && r.left).toBeInstanceOf(WeightMismatchError);
    expect(E.isLeft(r) && r.left.message).toMatch(/model\.safetensors: tensor 'model\.layers\.0\.mlp\.gate_proj\.weight' must be shape \[81, 64\].*got \[80, 64\]/);
  });

  it('a missing tensor (Qwen2 config over a checkpoint without biases)', async () => {
    const ck = writeTinyCheckpoint();
    writeFileSync(join(ck.dir, 'config.json'), JSON.stringify({ ...ck.config, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }));
    const r = await loadLlama(ck.dir, cpu, { tokenizer: false });
    expect(E.isLeft(r) && r.left).toBeInstanceOf(WeightMismatchError);
    expect(E.isLeft(r) && (r.left as WeightMismatchError).tensor).toBe('model.layers.0.self_attn.q_proj.bias');
  });

  it('an unsupported architecture and a missing config', async () => {
    const ck = writeTinyCheckpoint({ config: { architectures: ['GPT2LMHeadModel'] } });
    const r = await loadLlama(ck.dir, cpu, { tokenizer: false });
    expect(E.isLeft(r) && r.left).toBeInstanceOf(ConfigError);
    expect(E.isLeft(r) && r.left.message).toMatch(/config\.json: 'architectures' must be one of LlamaForCausalLM.*got 'GPT2LMHeadModel'/);
    const none = await loadLlama(join(ck.dir, 'nowhere'), cpu, { tokenizer: false });
    expect(E.isLeft(none) && none.left).toBeInstanceOf(ConfigError);
  });

  it('a prompt longer than the context', async () => {
    const ck = writeTinyCheckpoint({ config: { max_position_embeddings: 8 } });
    const m = await load(ck.dir);
    await expect(generate(m.model, [1, 2, 3, 4, 5, 6], { maxNewTokens: 4 })).rejects.toThrow(ContextLengthError);
    await expect(generate(m.model, [1, 2, 3, 4, 5, 6], { maxNewTokens: 4 })).rejects.toThrow(/needs 10 positions but only 8 fit/);
    expect(() => m.model.forward([1, 2, 3], m.model.newCache(2))).toThrow(/KV cache capacity: needs 3/);
  });
});
