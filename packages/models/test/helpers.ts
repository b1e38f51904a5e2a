import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeF16, f16BitsToF32, normalArray } from '@attnkit/tensor';
import { encodeSafetensors, type SafetensorsDType, type TensorToWrite } from '../src/index.js';

/** Config for a tiny Llama-family model written by the tests themselves. */
export interface TinyConfig {
  architectures: string[];
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  [k: string]: unknown;
}

export function tinyConfig(over: Partial<TinyConfig> = {}): TinyConfig {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 48, hidden_size: 64, intermediate_size: 80,
    num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5,
    rope_theta: 10000, tie_word_embeddings: false, hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2, ...over,
  };
}

export const isQwen = (c: TinyConfig) => c.architectures[0] === 'Qwen2ForCausalLM';

/** Weights as float values (already rounded to the dtype they will be stored in). */
export function tinyWeights(c: TinyConfig, seed = 1, storeAs: SafetensorsDType = 'F32'): Map<string, { shape: number[]; values: Float32Array }> {
  const H = c.hidden_size;
  const D = H / c.num_attention_heads;
  const qOut = c.num_attention_heads * D;
  const kv = c.num_key_value_heads * D;
  const I = c.intermediate_size;
  const out = new Map<string, { shape: number[]; values: Float32Array }>();
  let s = seed;
  const put = (name: string, shape: number[], kind: 'mat' | 'norm' | 'bias') => {
    const n = shape.reduce((p, d) => p * d, 1);
    let v = normalArray(n, s++, kind === 'mat' ? 0.35 : 0.1);
    if (kind === 'norm') v = v.map((x) => 1 + x);
    out.set(name, { shape, values: roundTo(v, storeAs) });
  };
  put('model.embed_tokens.weight', [c.vocab_size, H], 'mat');
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    put(`${p}.input_layernorm.weight`, [H], 'norm');
    put(`${p}.post_attention_layernorm.weight`, [H], 'norm');
    put(`${p}.self_attn.q_proj.weight`, [qOut, H], 'mat');
    put(`${p}.self_attn.k_proj.weight`, [kv, H], 'mat');
    put(`${p}.self_attn.v_proj.weight`, [kv, H], 'mat');
    put(`${p}.self_attn.o_proj.weight`, [H, qOut], 'mat');
    if (isQwen(c)) {
      put(`${p}.self_attn.q_proj.bias`, [qOut], 'bias');
      put(`${p}.self_attn.k_proj.bias`, [kv], 'bias');
      put(`${p}.self_attn.v_proj.bias`, [kv], 'bias');
    }
    put(`${p}.mlp.gate_proj.weight`, [I, H], 'mat');
    put(`${p}.mlp.up_proj.weight`, [I, H], 'mat');
    put(`${p}.mlp.down_proj.weight`, [H, I], 'mat');
  }
  put('model.norm.weight', [H], 'norm');
  if (!c.tie_word_embeddings) put('lm_head.weight', [c.vocab_size, H], 'mat');
  return out;
}

function roundTo(v: Float32Array, dtype: SafetensorsDType): Float32Array {
  if (dtype === 'F16') {
    const bits = encodeF16(v);
    return Float32Array.from(bits, (b) => f16BitsToF32(b));
  }
  if (dtype === 'BF16') {
    const u = new Uint32Array(Float32Array.from(v).buffer);
    // round to nearest even on the top 16 bits
    for (let i = 0; i < u.length; i++) u[i] = ((u[i]! + 0x7fff + ((u[i]! >>> 16) & 1)) >>> 16) << 16;
    return new Float32Array(u.buffer);
  }
  return v;
}

export function toSafetensorsEntry(values: Float32Array, shape: number[], dtype: SafetensorsDType): TensorToWrite {
  if (dtype === 'F16') return { dtype, shape, data: encodeF16(values) };
  if (dtype === 'BF16') {
    const u = new Uint32Array(Float32Array.from(values).buffer);
    return { dtype, shape, data: Uint16Array.from(u, (x) => x >>> 16) };
  }
  return { dtype: 'F32', shape, data: values };
}

export interface WrittenCheckpoint {
  dir: string;
  config: TinyConfig;
  weights: Map<string, { shape: number[]; values: Float32Array }>;
}

/** Writes config.json + weights (single file or `shards` pieces behind an index) into a temp folder. */
export function writeTinyCheckpoint(opts: { config?: Partial<TinyConfig>; dtype?: SafetensorsDType; shards?: number; seed?: number; dir?: string } = {}): WrittenCheckpoint {
  const config = tinyConfig(opts.config);
  const dtype = opts.dtype ?? 'F32';
  const weights = tinyWeights(config, opts.seed ?? 1, dtype);
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'attnkit-models-'));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const names = [...weights.keys()];
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    const all: Record<string, TensorToWrite> = {};
    for (const n of names) all[n] = toSafetensorsEntry(weights.get(n)!.values, weights.get(n)!.shape, dtype);
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(all, { format: 'pt' }));
  } else {
    const weightMap: Record<string, string> = {};
    const per = Math.ceil(names.length / shards);
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part: Record<string, TensorToWrite> = {};
      for (const n of names.slice(s * per, (s + 1) * per)) {
        part[n] = toSafetensorsEntry(weights.get(n)!.values, weights.get(n)!.shape, dtype);
        weightMap[n] = file;
      }
      writeFileSync(join(dir, file), encodeSafetensors(part));
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  }
  return { dir, config, weights };
}

/**
 * An independent float64 Llama forward written as plain loops (no @attnkit/tensor), used
 * as the oracle for the model: full causal attention over all positions, returns logits [S][V].
 */
export function naiveLlama(c: TinyConfig, w: Map<string, { shape: number[]; values: Float32Array }>, ids: number[]): number[][] {
  const H = c.hidden_size;
  const nh = c.num_attention_heads;
  const nkv = c.num_key_value_heads;
  const D = H / nh;
  const S = ids.length;
  const W = (n: string) => w.get(n)!.values;
  const lin = (x: number[], name: string, out: number, bias?: string): number[] => {
    const m = W(name);
    const inp = x.length;
    const b = bias && w.has(bias) ? W(bias) : null;
    return Array.from({ length: out }, (_, o) => {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inp; i++) s += m[o * inp + i]! * x[i]!;
      return s;
    });
  };
  const norm = (x: number[], name: string) => {
    const g = W(name);
    const ms = x.reduce((p, v) => p + v * v, 0) / x.length;
    const r = 1 / Math.sqrt(ms + c.rms_norm_eps);
    return x.map((v, i) => v * r * g[i]!);
  };
  const rot = (v: number[], pos: number) => {
    const out = [...v];
    for (let i = 0; i < D / 2; i++) {
      const inv = 1 / Math.pow(c.rope_theta, (2 * i) / D);
      const a = pos * inv;
      out[i] = v[i]! * Math.cos(a) - v[i + D / 2]! * Math.sin(a);
      out[i + D / 2] = v[i + D / 2]! * Math.cos(a) + v[i]! * Math.sin(a);
    }
    return out;
  };
  const emb = W('model.embed_tokens.weight');
  let xs = ids.map((id) => Array.from(emb.subarray(id * H, (id + 1) * H)));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const hs = xs.map((x) => norm(x, `${p}.input_layernorm.weight`));
    const q = hs.map((h) => lin(h, `${p}.self_attn.q_proj.weight`, nh * D, `${p}.self_attn.q_proj.bias`));
    const k = hs.map((h) => lin(h, `${p}.self_attn.k_proj.weight`, nkv * D, `${p}.self_attn.k_proj.bias`));
    const v = hs.map((h) => lin(h, `${p}.self_attn.v_proj.weight`, nkv * D, `${p}.self_attn.v_proj.bias`));
    const z = xs.map(() => new Array<number>(nh * D).fill(0));
    for (let h = 0; h < nh; h++) {
      const g = Math.floor(h / (nh / nkv));
      const sw = c.sliding_window as number | null | undefined;
      const windowed = typeof sw === 'number' && (c.architectures[0] === 'MistralForCausalLM' || c.use_sliding_window === true);
      for (let s = 0; s < S; s++) {
        const qs = rot(q[s]!.slice(h * D, (h + 1) * D), s);
        const scores = [];
        const first = windowed ? Math.max(0, s - sw + 1) : 0;
        for (let t = 0; t <= s; t++) {
          if (t < first) {
            scores.push(-Infinity);
            continue;
          }
          const kt = rot(k[t]!.slice(g * D, (g + 1) * D), t);
          scores.push(qs.reduce((a, x, i) => a + x * kt[i]!, 0) / Math.sqrt(D));
        }
        const m = Math.max(...scores);
        const e = scores.map((x) => Math.exp(x - m));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let t = 0; t <= s; t++) for (let i = 0; i < D; i++) z[s]![h * D + i]! += (e[t]! / sum) * v[t]![g * D + i]!;
      }
    }
    xs = xs.map((x, s) => {
      const o = lin(z[s]!, `${p}.self_attn.o_proj.weight`, H);
      const y = x.map((val, i) => val + o[i]!);
      const m = norm(y, `${p}.post_attention_layernorm.weight`);
      const gate = lin(m, `${p}.mlp.gate_proj.weight`, c.intermediate_size);
      const up = lin(m, `${p}.mlp.up_proj.weight`, c.intermediate_size);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      const d = lin(act, `${p}.mlp.down_proj.weight`, H);
      return y.map((val, i) => val + d[i]!);
    });
  }
  const head = c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  return xs.map((x) => lin(norm(x, 'model.norm.weight'), head, c.vocab_size));
}

/** max |a - b| / (max b - min b): the parity measure. */
export function relativeMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): { maxAbs: number; range: number; rel: number } {
  let maxAbs = 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < b.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i]! - b[i]!));
    lo = Math.min(lo, b[i]!);
    hi = Math.max(hi, b[i]!);
  }
  return { maxAbs, range: hi - lo, rel: maxAbs / (hi - lo) };
}

/** GPT-2's byte -> printable character table (byte-level BPE alphabets). */
function byteChars(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) (bs.push(b), cs.push(256 + n++));
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

export const TINY_SPECIALS = ['<|endoftext|>', '<|bos|>', '<|im_start|>', '<|im_end|>'];
/** Vocab of the tiny byte-level tokenizer: 4 specials, 256 bytes, 2 merges. */
export const TINY_VOCAB = TINY_SPECIALS.length + 256 + 2;

/**
 * Writes a byte-level BPE tokenizer.json (4 special tokens, the 256 byte symbols, merges
 * "Ġ t" and "Ġt h") and a tokenizer_config.json with a ChatML template, for tests.
 */
export function writeByteLevelTokenizer(dir: string, opts: { chatTemplate?: boolean } = {}): void {
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  TINY_SPECIALS.forEach((t, i) => (vocab[t] = i));
  chars.forEach((c, i) => (vocab[c] = TINY_SPECIALS.length + i));
  const sp = chars[32]!;
  vocab[`${sp}t`] = TINY_SPECIALS.length + 256;
  vocab[`${sp}th`] = TINY_SPECIALS.length + 257;
  const tok = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: TINY_SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|bos|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|bos|>': { id: '<|bos|>', ids: [1], tokens: ['<|bos|>'] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [`${sp} t`, `${sp}t h`] },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  const cfg: Record<string, unknown> = { bos_token: '<|bos|>', eos_token: '<|endoftext|>', model_max_length: 64, tokenizer_class: 'PreTrainedTokenizerFast' };
  if (opts.chatTemplate !== false) {
    cfg.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  }
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
}
