import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { WebGpuBackend, gridFor, LINEAR_GROUP, packUniforms, tensor, uniformStruct, type Backend, type Program, type Tensor } from '@attnkit/tensor';
import { generate, loadLlama, referenceModelDir, LlamaModel, type LayerWeights, type LlamaConfig } from '@attnkit/models';
import { median, peerKey, withPeer, type BenchRow, type Suite } from '../harness.js';

/*
 * Batch-1 generation throughput of @attnkit/models' decoder: the embedded reference model
 * (from its folder) and, on the GPU machine, a randomly initialised ~1.1B-parameter Llama
 * (weights generated on the device, no file). The figure is the decode phase: ms per new
 * token after the first (the first comes from prefill), greedy, never stopping at EOS.
 * The peer (benchmarks/baselines/peer_decoder.py) runs HF transformers generate, eager
 * attention, f16, same config, prompt length and new tokens, measured the same way.
 */

/** ~1.1B parameters, Llama-3.2-1B-like shape with a 32k vocabulary; untied head. */
export const LLAMA_1B: LlamaConfig = {
  architecture: 'LlamaForCausalLM', vocabSize: 32000, hiddenSize: 2048, intermediateSize: 8192, numLayers: 16,
  numHeads: 32, numKvHeads: 8, headDim: 64, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: { kind: 'none' },
  maxPositions: 4096, tieWordEmbeddings: false, qkvBias: false, oBias: false, mlpBias: false, slidingWindow: null,
  bosTokenId: 1, eosTokenIds: [],
};

const U = uniformStruct('U', [['n', 'u32'], ['seed', 'u32'], ['amp', 'f32']]);
/** Fills an f16 buffer with uniform values in [-amp, amp) from a per-element hash (PCG). */
const fillRandomF16: Program = {
  key: 'bench/fill-random-f16',
  inputs: 0, outputs: 1, uniform: true,
  source: () => `
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> u: U;
${U}
${LINEAR_GROUP}
fn pcg(v: u32) -> u32 { let s = v * 747796405u + 2891336453u; let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u; return (w >> 22u) ^ w; }
fn unit(i: u32) -> f32 { return f32(pcg(i ^ pcg(u.seed)) >> 8u) / 16777216.0 * 2.0 - 1.0; }
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let w = linear_group(wid, nwg) * 256u + li;
  if (w * 2u >= u.n) { return; }
  out[w] = pack2x16float(vec2<f32>(unit(w * 2u) * u.amp, unit(w * 2u + 1u) * u.amp));
}`,
};

function randomF16(be: WebGpuBackend, shape: number[], seed: number, amp: number): Tensor {
  const t = be.empty('bench-random', 'f16', shape);
  const n = t.size;
  be.dispatch({ program: fillRandomF16, inputs: [], outputs: [be.buffer(t, 'bench-random')], uniforms: packUniforms([['u32', n], ['u32', seed], ['f32', amp]]), grid: gridFor(Math.ceil(n / 2 / 256)) });
  return t;
}

/** A LlamaModel over device-generated f16 weights (uniform, std ~ 1/sqrt(fan_in)). */
export function randomLlama(be: WebGpuBackend, c: LlamaConfig): LlamaModel {
  let seed = 1;
  const mat = (out: number, inp: number) => randomF16(be, [out, inp], seed++, Math.sqrt(3 / inp));
  const ones = () => tensor(be, new Float32Array(c.hiddenSize).fill(1), [c.hiddenSize], 'f32');
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    layers.push({
      inputNorm: ones(), postAttnNorm: ones(),
      qkv: mat(q + 2 * kv, c.hiddenSize), o: mat(c.hiddenSize, q),
      gateUp: mat(2 * c.intermediateSize, c.hiddenSize), down: mat(c.hiddenSize, c.intermediateSize),
    });
  }
  const embed = randomF16(be, [c.vocabSize, c.hiddenSize], seed++, 1);
  return new LlamaModel(c, { embed, layers, norm: ones(), lmHead: mat(c.vocabSize, c.hiddenSize) }, be);
}

/** Seeded prompt ids (the content does not matter for timing; the length does). */
export function benchPrompt(n: number, vocab: number): number[] {
  let s = 12345;
  return Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31), 3 + (s % (vocab - 3))));
}

async function measure(model: LlamaModel, prompt: number[], newTokens: number, reps: number) {
  await generate(model, prompt, { maxNewTokens: Math.min(8, newTokens), stopTokens: [] }); // compile pipelines, warm caches
  const per: number[] = [];
  const prefill: number[] = [];
  const tps: number[] = [];
  let kvBytes = 0;
  for (let r = 0; r < reps; r++) {
    const res = await generate(model, prompt, { maxNewTokens: newTokens, stopTokens: [] });
    per.push(res.decodeMs / (res.tokens.length - 1));
    prefill.push(res.prefillMs);
    tps.push(res.tokensPerSecond);
    kvBytes = res.kvBytes;
  }
  return { medianMs: median(per), minMs: Math.min(...per), maxMs: Math.max(...per), reps, prefillMs: median(prefill), tokensPerSecond: median(tps), kvBytes };
}

export const decoderSuite: Suite = {
  name: 'decoder',
  async run(be: Backend, ctx) {
    const rows: BenchRow[] = [];
    const P = ctx.big ? 128 : 16;
    const N = ctx.big ? 128 : 8;
    const reps = ctx.big ? 3 : 1;
    const cases: Array<{ name: string; make: () => Promise<LlamaModel | null> }> = [
      {
        name: 'reference-llama',
        make: async () => {
          const dir = referenceModelDir();
          if (!existsSync(join(dir, 'config.json'))) {
            console.error(`decoder bench: no reference model at ${dir}`);
            return null;
          }
          const r = await loadLlama(dir, be, { weightDtype: be.kind === 'cpu' ? 'f32' : 'f16', tokenizer: false });
          if (E.isLeft(r)) throw r.left;
          return r.right.model;
        },
      },
    ];
    if (ctx.big && be instanceof WebGpuBackend) cases.push({ name: 'llama-1.1b-random', make: async () => randomLlama(be, LLAMA_1B) });
    for (const c of cases) {
      // One case failing (a kernel on a new adapter, memory) must not lose the others' rows.
      let model: LlamaModel | null = null;
      let m: Awaited<ReturnType<typeof measure>>;
      try {
        model = await c.make();
        if (!model) continue;
        m = await measure(model, benchPrompt(P, model.config.vocabSize), N, reps);
      } catch (e) {
        console.error(`decoder bench ${c.name} failed: ${(e as Error).stack}`);
        model?.dispose();
        continue;
      }
      const shape = `${c.name} P${P} N${N} B1`;
      const params = model.parameterCount();
      // Weights are f16 on WebGPU; the CPU backend keeps them f32 (its loops would decode f16 per use).
      const dtype = be.kind === 'cpu' ? 'f32' : 'f16';
      const row: BenchRow = {
        package: 'models', kernel: 'decode-token', shape, dtype, backend: be.kind, device: ctx.device,
        medianMs: m.medianMs, minMs: m.minMs, maxMs: m.maxMs, reps: m.reps,
        // Weight bytes streamed per token: the decode step is bandwidth-bound at batch 1.
        gbps: model.weightBytes() / (m.medianMs * 1e6),
        notes: `tokens/s ${m.tokensPerSecond.toFixed(1)}, prefill ${P} tokens ${m.prefillMs.toFixed(1)} ms, ${(params / 1e6).toFixed(1)}M params, KV ${(m.kvBytes / 2 ** 20).toFixed(1)} MiB (f32)`,
      };
      rows.push(withPeer(row, ctx.peers.get(peerKey('decode-token', shape, dtype)), { bytes: model.weightBytes() }));
      model.dispose();
    }
    return rows;
  },
};
