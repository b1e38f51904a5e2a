import { gpuForTests } from '@attnkit/tensor/testing';
import { describe, expect, it } from 'vitest';
import { CHECKPOINTS, greedy, loadCheckpoint, logitParity, readParity } from './parity-helpers.js';

/*
 * Parity with HF transformers on WebGPU (Mesa lavapipe on the CPU machine; the same code
 * on any adapter), f32 weights: all-position logits of every prompt, and the 64-token
 * greedy continuation of the first prompt (lavapipe is slow per dispatch; every prompt's
 * greedy 64 runs on the CPU backend in parity-cpu.test.ts).
 */
const GREEDY: Record<string, number> = { 'reference-llama': 64, 'tiny-qwen2': 64 };

describe('HF transformers parity on WebGPU', async () => {
  const gpu = await gpuForTests();
  for (const be of gpu ? [gpu] : []) {
    for (const ck of CHECKPOINTS.filter((c) => c.name !== 'tiny-qwen2-sharded')) {
      it(`${ck.name} on ${be.name}: logits within 1e-3 of the logit range${GREEDY[ck.name] ? `, greedy ${GREEDY[ck.name]} tokens` : ''}`, async () => {
        const m = await loadCheckpoint(ck.dir(), be);
        const prompts = readParity(ck.parity);
        for (const [i, p] of prompts.entries()) {
          const d = await logitParity(m, p);
          console.info(`parity webgpu ${ck.name} prompt${i}: max|diff| ${d.maxAbs.toExponential(3)} range ${d.range.toFixed(3)} rel ${d.rel.toExponential(3)}`);
          expect(d.rel).toBeLessThanOrEqual(1e-3);
        }
        const n = GREEDY[ck.name];
        if (n) {
          const g = await greedy(m, prompts[0]!, n);
          expect(g).toEqual(prompts[0]!.greedy64.slice(0, n));
        }
        m.model.dispose();
      });
    }
  }
});
