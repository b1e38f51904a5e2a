import { CpuBackend } from '@attnkit/tensor';
import { describe, expect, it } from 'vitest';
import { CHECKPOINTS, greedy, loadCheckpoint, logitParity, readParity } from './parity-helpers.js';

/*
 * Parity with HF transformers (float32 logits from the stored f16/bf16 weights) on the
 * CPU reference backend, f32 path: every position's logits and the 64-token greedy
 * continuation of every prompt.
 */
const cpu = new CpuBackend();

describe('HF transformers parity on the CPU backend', () => {
  for (const ck of CHECKPOINTS) {
    it(`${ck.name}: logits within 1e-3 of the logit range, same tokens, same 64 greedy tokens`, async () => {
      const m = await loadCheckpoint(ck.dir(), cpu);
      const prompts = readParity(ck.parity);
      expect(prompts).toHaveLength(3);
      for (const [i, p] of prompts.entries()) {
        expect(m.tokenizer!.encode(p.text)).toEqual(p.ids);
        const d = await logitParity(m, p);
        console.info(`parity cpu ${ck.name} prompt${i}: S=${p.ids.length} max|diff| ${d.maxAbs.toExponential(3)} range ${d.range.toFixed(3)} rel ${d.rel.toExponential(3)}`);
        expect(d.rel).toBeLessThanOrEqual(1e-3);
        const g = await greedy(m, p, 64);
        const agree = g.findIndex((t, j) => t !== p.greedy64[j]);
        console.info(`parity cpu ${ck.name} prompt${i}: greedy64 ${agree < 0 ? 'identical' : `first difference at ${agree}`}`);
        expect(g).toEqual(p.greedy64);
      }
      m.model.dispose();
    });
  }
});
