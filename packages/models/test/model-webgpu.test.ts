import * as E from 'fp-ts/lib/Either.js';
import { CpuBackend, scale, tensor, type Backend, type Tensor } from '@attnkit/tensor';
import { gpuForTests } from '@attnkit/tensor/testing';
import { describe, expect, it } from 'vitest';
import { generate, loadLlama, StaticKvCache, writeKvRows } from '../src/index.js';
import { naiveLlama, relativeMaxDiff, writeTinyCheckpoint } from './helpers.js';

const ids = [1, 5, 9, 3, 17, 40, 22];

async function logitsOn(be: Backend, dir: string, weightDtype: 'f16' | 'f32'): Promise<number[]> {
  const r = await loadLlama(dir, be, { weightDtype, tokenizer: false });
  if (E.isLeft(r)) throw r.left;
  const m = r.right.model;
  const cache = m.newCache(16);
  const rows: number[] = Array.from(await m.forward(ids.slice(0, 4), cache, { logits: 'all' }).logits.toArray());
  for (const id of ids.slice(4)) rows.push(...(await m.forward([id], cache).logits.toArray()));
  cache.dispose();
  m.dispose();
  return rows;
}

describe('decoder on WebGPU (lavapipe here, the H200 there)', async () => {
  const gpu = await gpuForTests();
  const backends = gpu ? [gpu] : [];

  for (const be of backends) {
    it(`${be.name}: KV rows land in place at the offset`, async () => {
      const cache = new StaticKvCache(be, { numLayers: 1, numKvHeads: 2, headDim: 4, capacity: 5 });
      const k = tensor(be, Array.from({ length: 2 * 2 * 4 }, (_, i) => i + 1), [1, 2, 2, 4]);
      cache.append(0, k, k);
      const minus = tensor(be, new Array(8).fill(-1), [1, 2, 1, 4]);
      cache.append(0, minus, minus);
      const got = Array.from(await cache.view(0).k.toArray());
      const want = new Array(2 * 5 * 4).fill(0);
      for (let h = 0; h < 2; h++) {
        for (let r = 0; r < 2; r++) for (let d = 0; d < 4; d++) want[(h * 5 + r) * 4 + d] = h * 8 + r * 4 + d + 1;
        for (let d = 0; d < 4; d++) want[(h * 5 + 2) * 4 + d] = -1;
      }
      expect(got).toEqual(want);
      expect(cache.view(0).length).toBe(3);
      const f16 = new StaticKvCache(be, { numLayers: 1, numKvHeads: 1, headDim: 2, capacity: 3, dtype: 'f16' });
      writeKvRows(f16.view(0).k, f16.view(0).v, tensor(be, [0.5, -2], [1, 1, 1, 2], 'f16'), tensor(be, [3, 4], [1, 1, 1, 2], 'f16'), 2);
      expect(Array.from(await f16.view(0).k.toArray())).toEqual([0, 0, 0, 0, 0.5, -2]);
      expect(Array.from(await f16.view(0).v.toArray())).toEqual([0, 0, 0, 0, 3, 4]);
      cache.dispose();
      f16.dispose();
    });

    it(`${be.name}: Qwen2 (bias, tied) prefill + decode logits match the float64 oracle with f16 weights`, async () => {
      const ck = writeTinyCheckpoint({ config: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: true }, dtype: 'F16' });
      const ref = naiveLlama(ck.config, ck.weights, ids).flat();
      // f16 weights of an f16 checkpoint are exact; differences are f32 accumulation order.
      expect(relativeMaxDiff(await logitsOn(be, ck.dir, 'f16'), ref).rel).toBeLessThan(1e-5);
    });

    it(`${be.name}: hooks see the same probabilities and patches act the same as on the CPU`, async () => {
      const ck = writeTinyCheckpoint();
      const run = async (b: Backend) => {
        const r = await loadLlama(ck.dir, b, { tokenizer: false, weightDtype: 'f32' });
        if (E.isLeft(r)) throw r.left;
        let probs: Tensor | null = null;
        const out = r.right.model.forward(ids, r.right.model.newCache(8), {
          logits: 'all',
          hooks: {
            layers: [1],
            onAttentionProbs: (_l, p, ctx) => void (probs = ctx.keep(p)),
            onHeadOutputs: (_l, z) => scale(z, 0.5),
            onResidual: (_l, site, x) => (site === 'mlp_in' ? scale(x, 1.25) : undefined),
          },
        });
        const res = { logits: Array.from(await out.logits.toArray()), probs: Array.from(await probs!.toArray()) };
        r.right.model.dispose();
        return res;
      };
      const g = await run(be);
      const c = await run(new CpuBackend());
      expect(relativeMaxDiff(g.probs, c.probs).maxAbs).toBeLessThan(1e-5);
      expect(relativeMaxDiff(g.logits, c.logits).rel).toBeLessThan(1e-5);
    });

    it(`${be.name}: Llama GQA greedy generation with f32 weights follows the oracle's argmax chain`, async () => {
      const ck = writeTinyCheckpoint({ config: { eos_token_id: 999 } });
      const r = await loadLlama(ck.dir, be, { tokenizer: false, weightDtype: 'f32' });
      if (E.isLeft(r)) throw r.left;
      const res = await generate(r.right.model, [1, 2, 3], { maxNewTokens: 6 });
      let seq = [1, 2, 3];
      for (let i = 0; i < 6; i++) {
        const rows = naiveLlama(ck.config, ck.weights, seq);
        const last = rows[rows.length - 1]!;
        seq = [...seq, last.indexOf(Math.max(...last))];
      }
      expect(res.tokens).toEqual(seq.slice(3));
      r.right.model.dispose();
    });
  }
});
