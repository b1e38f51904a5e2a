import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { tensor, type Backend, type Tensor } from '@attnkit/tensor';
import { readLlamaConfig, type LlamaConfig } from './config.js';
import { SafetensorsError, WeightMismatchError, type ConfigError, type TokenizerError } from './errors.js';
import { LlamaModel, type LayerWeights, type LlamaWeights } from './llama.js';
import { hostToF16Bits, hostToF32, type HostTensor } from './safetensors.js';
import { TextTokenizer } from './tokenizer.js';
import { WeightSource } from './weights.js';

/** A tensor the config says the checkpoint must hold. */
interface WeightSpec {
  name: string;
  shape: number[];
  /** Matrices take the requested weight dtype; norms and biases stay f32. */
  matrix: boolean;
}

/** Every tensor a Llama-family checkpoint needs, by HF name, with the shape the config implies. */
export function expectedWeights(c: LlamaConfig): WeightSpec[] {
  const H = c.hiddenSize;
  const qOut = c.numHeads * c.headDim;
  const kvOut = c.numKvHeads * c.headDim;
  const specs: WeightSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H], matrix: true }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, shape: [H], matrix: false },
      { name: `${p}.post_attention_layernorm.weight`, shape: [H], matrix: false },
      { name: `${p}.self_attn.q_proj.weight`, shape: [qOut, H], matrix: true },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kvOut, H], matrix: true },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kvOut, H], matrix: true },
      { name: `${p}.self_attn.o_proj.weight`, shape: [H, qOut], matrix: true },
      { name: `${p}.mlp.gate_proj.weight`, shape: [c.intermediateSize, H], matrix: true },
      { name: `${p}.mlp.up_proj.weight`, shape: [c.intermediateSize, H], matrix: true },
      { name: `${p}.mlp.down_proj.weight`, shape: [H, c.intermediateSize], matrix: true },
    );
    if (c.qkvBias) {
      specs.push(
        { name: `${p}.self_attn.q_proj.bias`, shape: [qOut], matrix: false },
        { name: `${p}.self_attn.k_proj.bias`, shape: [kvOut], matrix: false },
        { name: `${p}.self_attn.v_proj.bias`, shape: [kvOut], matrix: false },
      );
    }
    if (c.oBias) specs.push({ name: `${p}.self_attn.o_proj.bias`, shape: [H], matrix: false });
    if (c.mlpBias) {
      specs.push(
        { name: `${p}.mlp.gate_proj.bias`, shape: [c.intermediateSize], matrix: false },
        { name: `${p}.mlp.up_proj.bias`, shape: [c.intermediateSize], matrix: false },
        { name: `${p}.mlp.down_proj.bias`, shape: [H], matrix: false },
      );
    }
  }
  specs.push({ name: 'model.norm.weight', shape: [H], matrix: false });
  if (!c.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, H], matrix: true });
  return specs;
}

export interface LoadOptions {
  /**
   * Dtype of projection / embedding matrices: 'f16' (default on WebGPU: half the bytes to
   * stream per token) or 'f32' (default on the CPU backend, whose float64 loops would
   * otherwise decode every f16 weight on every matmul).
   */
  weightDtype?: 'f16' | 'f32';
  /** Called after each tensor is on the device. */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /** Skip the tokenizer (logit-level work needs none). */
  tokenizer?: boolean;
}

export interface LoadedModel {
  model: LlamaModel;
  config: LlamaConfig;
  tokenizer: TextTokenizer | null;
  dir: string;
}

export type LoadError = ConfigError | SafetensorsError | WeightMismatchError | TokenizerError;

/**
 * Loads an HF Llama-family checkpoint folder: config.json, model.safetensors (or a sharded
 * index), tokenizer.json. Tensors are checked against the config before upload and read one
 * at a time. bf16 checkpoints are widened to f32 on the host (exact), then stored as the
 * requested weight dtype (f16 rounds; values beyond the f16 range are refused).
 */
export async function loadLlama(dir: string, backend: Backend, opts: LoadOptions = {}): Promise<E.Either<LoadError, LoadedModel>> {
  const cfg = await readLlamaConfig(join(dir, 'config.json'))();
  if (E.isLeft(cfg)) return cfg;
  const config = cfg.right;
  let tokenizer: TextTokenizer | null = null;
  if (opts.tokenizer !== false) {
    const tok = await TextTokenizer.load(dir)();
    if (E.isLeft(tok)) return tok;
    tokenizer = tok.right;
  }
  const src = await WeightSource.open(dir)();
  if (E.isLeft(src)) return src;
  const weights = src.right;
  const uploaded = new Map<string, Tensor>();
  try {
    const specs = expectedWeights(config);
    // Check every header entry before reading a byte, so a mismatch costs nothing.
    for (const s of specs) {
      const found = weights.entry(s.name);
      if (!found) return E.left(new WeightMismatchError(weights.file, s.name, `present (config ${config.architecture}, ${config.numLayers} layers${s.name.includes('bias') ? ', with biases' : ''})`, 'missing'));
      const { entry, file } = found;
      if (entry.shape.join(',') !== s.shape.join(',')) {
        return E.left(new WeightMismatchError(file, s.name, `shape [${s.shape.join(', ')}] (from config.json)`, `[${entry.shape.join(', ')}]`));
      }
      if (!['F32', 'F16', 'BF16'].includes(entry.dtype)) return E.left(new WeightMismatchError(file, s.name, 'dtype F32, F16 or BF16', entry.dtype));
    }
    const total = specs.reduce((n, s) => n + s.shape.reduce((p, d) => p * d, 1), 0);
    let done = 0;
    const wantF16 = (opts.weightDtype ?? (backend.kind === 'cpu' ? 'f32' : 'f16')) === 'f16';
    const bySpec = new Map(specs.map((s) => [s.name, s]));
    // Device tensors: most are one checkpoint tensor; q|k|v and gate|up are stacked by rows.
    for (const group of deviceTensors(config, specs)) {
      const parts: HostTensor[] = [];
      for (const name of group.from) {
        const host = await weights.read(name);
        if (E.isLeft(host)) return host;
        parts.push(host.right);
      }
      const first = bySpec.get(group.from[0]!)!;
      const rows = group.from.reduce((n, name) => n + bySpec.get(name)!.shape[0]!, 0);
      const shape = [rows, ...first.shape.slice(1)];
      let t: Tensor;
      if (first.matrix && wantF16) {
        const bits = stack(parts.map(hostToF16Bits), Uint16Array);
        const bad = parts.every((p) => p.dtype === 'f16') ? -1 : firstNonFinite(bits);
        if (bad >= 0) {
          const at = locate(group.from.map((n) => bySpec.get(n)!), bad);
          return E.left(new WeightMismatchError(weights.entry(at.name)!.file, at.name, `values within the f16 range (load with weightDtype 'f32')`, `${hostToF32(parts[at.part]!)[at.index]} at element ${at.index}`));
        }
        t = tensor(backend, bits, shape, 'f16');
      } else {
        t = tensor(backend, stack(parts.map(hostToF32), Float32Array), shape, 'f32');
      }
      uploaded.set(group.name, t);
      done += t.size;
      opts.onProgress?.(done, total, group.name);
    }
    return E.right({ model: new LlamaModel(config, assemble(config, uploaded), backend), config, tokenizer, dir });
  } catch (e) {
    for (const t of uploaded.values()) t.dispose();
    throw e;
  } finally {
    await weights.close();
  }
}

/** What goes to the device: a name and the checkpoint tensors stacked (by rows) into it. */
function deviceTensors(c: LlamaConfig, specs: WeightSpec[]): Array<{ name: string; from: string[] }> {
  const stacked = new Map<string, string[]>();
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    stacked.set(`${p}.self_attn.q_proj.weight`, [`${p}.self_attn.qkv.weight`, `${p}.self_attn.q_proj.weight`, `${p}.self_attn.k_proj.weight`, `${p}.self_attn.v_proj.weight`]);
    if (c.qkvBias) stacked.set(`${p}.self_attn.q_proj.bias`, [`${p}.self_attn.qkv.bias`, `${p}.self_attn.q_proj.bias`, `${p}.self_attn.k_proj.bias`, `${p}.self_attn.v_proj.bias`]);
    stacked.set(`${p}.mlp.gate_proj.weight`, [`${p}.mlp.gate_up.weight`, `${p}.mlp.gate_proj.weight`, `${p}.mlp.up_proj.weight`]);
    if (c.mlpBias) stacked.set(`${p}.mlp.gate_proj.bias`, [`${p}.mlp.gate_up.bias`, `${p}.mlp.gate_proj.bias`, `${p}.mlp.up_proj.bias`]);
  }
  const absorbed = new Set([...stacked.values()].flatMap((g) => g.slice(2)));
  const out: Array<{ name: string; from: string[] }> = [];
  for (const s of specs) {
    if (absorbed.has(s.name)) continue;
    const g = stacked.get(s.name);
    out.push(g ? { name: g[0]!, from: g.slice(1) } : { name: s.name, from: [s.name] });
  }
  return out;
}

function stack<T extends Float32Array | Uint16Array>(parts: T[], Ctor: { new (n: number): T }): T {
  if (parts.length === 1) return parts[0]!;
  const out = new Ctor(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

function locate(specs: WeightSpec[], index: number): { name: string; part: number; index: number } {
  let i = index;
  for (const [part, s] of specs.entries()) {
    const n = s.shape.reduce((p, d) => p * d, 1);
    if (i < n) return { name: s.name, part, index: i };
    i -= n;
  }
  return { name: specs[0]!.name, part: 0, index };
}

function firstNonFinite(bits: Uint16Array): number {
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7c00) === 0x7c00) return i;
  return -1;
}

function assemble(c: LlamaConfig, w: Map<string, Tensor>): LlamaWeights {
  const get = (n: string) => w.get(n)!;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const lw: LayerWeights = {
      inputNorm: get(`${p}.input_layernorm.weight`),
      postAttnNorm: get(`${p}.post_attention_layernorm.weight`),
      qkv: get(`${p}.self_attn.qkv.weight`),
      o: get(`${p}.self_attn.o_proj.weight`),
      gateUp: get(`${p}.mlp.gate_up.weight`),
      down: get(`${p}.mlp.down_proj.weight`),
    };
    const optional: Array<[keyof LayerWeights, string]> = [
      ['qkvBias', 'self_attn.qkv.bias'], ['oBias', 'self_attn.o_proj.bias'], ['gateUpBias', 'mlp.gate_up.bias'], ['downBias', 'mlp.down_proj.bias'],
    ];
    for (const [key, n] of optional) {
      const t = w.get(`${p}.${n}`);
      if (t) lw[key] = t;
    }
    layers.push(lw);
  }
  const embed = get('model.embed_tokens.weight');
  return { embed, layers, norm: get('model.norm.weight'), lmHead: c.tieWordEmbeddings ? embed : get('lm_head.weight') };
}
