import { readFile } from 'node:fs/promises';
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { ConfigError } from './errors.js';

/** The Llama-family architectures this package runs, by their HF class name. */
export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export type RopeScaling =
  | { kind: 'none' }
  | { kind: 'linear'; factor: number }
  /** Llama 3.x: per-frequency scaling folded into inverse frequencies at load time. */
  | { kind: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

/** What the decoder needs from an HF config.json, validated and named in our terms. */
export interface LlamaConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  /** Biases on q/k/v projections (Qwen2 always; Llama with attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (Llama's attention_bias covers it; Qwen2 has none). */
  oBias: boolean;
  /** Biases on gate/up/down (Llama mlp_bias). */
  mlpBias: boolean;
  /** Mistral/Qwen2 sliding window when in force; null when attention is full. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

type Json = Record<string, unknown>;

/** Parses and validates config.json contents; `file` names the source in errors. */
export function parseLlamaConfig(file: string, json: unknown): E.Either<ConfigError, LlamaConfig> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return E.left(new ConfigError(file, '(root)', 'a JSON object', json));
  const c = json as Json;
  try {
    const archs = c.architectures;
    const arch = Array.isArray(archs) ? archs[0] : undefined;
    const byType: Record<string, Architecture> = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' };
    const architecture = (SUPPORTED_ARCHITECTURES as readonly unknown[]).includes(arch)
      ? (arch as Architecture)
      : arch === undefined && typeof c.model_type === 'string' && byType[c.model_type]
        ? byType[c.model_type]!
        : null;
    if (!architecture) {
      throw new ConfigError(file, arch === undefined ? 'model_type' : 'architectures', `one of ${SUPPORTED_ARCHITECTURES.join(', ')}`, arch ?? c.model_type);
    }
    const int = (key: string, fallback?: number): number => {
      const v = c[key] ?? fallback;
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new ConfigError(file, key, 'a positive integer', v);
      return v;
    };
    const num = (key: string, fallback?: number): number => {
      const v = c[key] ?? fallback;
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(file, key, 'a positive number', v);
      return v;
    };
    const bool = (key: string, fallback: boolean): boolean => {
      const v = c[key] ?? fallback;
      if (typeof v !== 'boolean') throw new ConfigError(file, key, 'true or false', v);
      return v;
    };
    const hiddenSize = int('hidden_size');
    const numHeads = int('num_attention_heads');
    const numKvHeads = int('num_key_value_heads', numHeads);
    if (numHeads % numKvHeads) throw new ConfigError(file, 'num_key_value_heads', `a divisor of num_attention_heads (${numHeads})`, numKvHeads);
    if (c.head_dim === undefined && hiddenSize % numHeads) throw new ConfigError(file, 'hidden_size', `a multiple of num_attention_heads (${numHeads}) when head_dim is absent`, hiddenSize);
    const headDim = int('head_dim', hiddenSize / numHeads);
    if (headDim % 2) throw new ConfigError(file, 'head_dim', 'even (rotary pairs)', headDim);
    const act = c.hidden_act ?? 'silu';
    if (act !== 'silu') throw new ConfigError(file, 'hidden_act', "'silu'", act);
    const isQwen = architecture === 'Qwen2ForCausalLM';
    const attentionBias = bool('attention_bias', false);
    const useSliding = isQwen ? bool('use_sliding_window', false) : true;
    const sw = c.sliding_window;
    if (sw !== undefined && sw !== null && (typeof sw !== 'number' || !Number.isSafeInteger(sw) || sw <= 0)) {
      throw new ConfigError(file, 'sliding_window', 'a positive integer or null', sw);
    }
    const eos = c.eos_token_id;
    const eosTokenIds = eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos];
    if (!eosTokenIds.every((v) => Number.isSafeInteger(v) && v >= 0)) throw new ConfigError(file, 'eos_token_id', 'a token id or a list of them', eos);
    const bos = c.bos_token_id ?? null;
    if (bos !== null && !(Number.isSafeInteger(bos) && (bos as number) >= 0)) throw new ConfigError(file, 'bos_token_id', 'a token id or null', bos);
    return E.right({
      architecture,
      vocabSize: int('vocab_size'),
      hiddenSize,
      intermediateSize: int('intermediate_size'),
      numLayers: int('num_hidden_layers'),
      numHeads,
      numKvHeads,
      headDim,
      rmsNormEps: num('rms_norm_eps', 1e-6),
      ...rope(file, c),
      maxPositions: int('max_position_embeddings', 2048),
      tieWordEmbeddings: bool('tie_word_embeddings', false),
      qkvBias: isQwen || attentionBias,
      oBias: !isQwen && attentionBias,
      mlpBias: bool('mlp_bias', false),
      slidingWindow: useSliding && typeof sw === 'number' ? sw : null,
      bosTokenId: bos as number | null,
      eosTokenIds: eosTokenIds as number[],
    });
  } catch (e) {
    if (e instanceof ConfigError) return E.left(e);
    throw e;
  }
}

/**
 * RoPE settings: transformers 5 writes them as `rope_parameters` {rope_theta, rope_type,
 * factor, ...}; older configs as a top-level `rope_theta` plus `rope_scaling`.
 */
function rope(file: string, c: Json): { ropeTheta: number; ropeScaling: RopeScaling } {
  const rp = c.rope_parameters;
  if (rp !== undefined && rp !== null) {
    if (typeof rp !== 'object' || Array.isArray(rp)) throw new ConfigError(file, 'rope_parameters', 'an object', rp);
    const theta = (rp as Json).rope_theta ?? c.rope_theta ?? 10000;
    if (typeof theta !== 'number' || !(theta > 1)) throw new ConfigError(file, 'rope_parameters.rope_theta', 'a number > 1', theta);
    return { ropeTheta: theta, ropeScaling: parseRopeScaling(file, rp, 'rope_parameters') };
  }
  const theta = c.rope_theta ?? 10000;
  if (typeof theta !== 'number' || !(theta > 1)) throw new ConfigError(file, 'rope_theta', 'a number > 1', theta);
  return { ropeTheta: theta, ropeScaling: parseRopeScaling(file, c.rope_scaling, 'rope_scaling') };
}

function parseRopeScaling(file: string, rs: unknown, where: string): RopeScaling {
  if (rs === undefined || rs === null) return { kind: 'none' };
  if (typeof rs !== 'object' || Array.isArray(rs)) throw new ConfigError(file, where, 'an object or null', rs);
  const r = rs as Json;
  const type = r.rope_type ?? r.type;
  const pos = (key: string, fallback?: number): number => {
    const v = r[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0)) throw new ConfigError(file, `${where}.${key}`, 'a positive number', v);
    return v;
  };
  switch (type) {
    case undefined:
    case 'default': return { kind: 'none' };
    case 'linear': return { kind: 'linear', factor: pos('factor') };
    case 'llama3':
      return {
        kind: 'llama3',
        factor: pos('factor'),
        lowFreqFactor: pos('low_freq_factor', 1),
        highFreqFactor: pos('high_freq_factor', 4),
        originalMaxPositions: pos('original_max_position_embeddings', 8192),
      };
    default:
      throw new ConfigError(file, `${where}.rope_type`, "'default', 'linear' or 'llama3' (dynamic/yarn/longrope are not supported)", type);
  }
}

/** Inverse frequencies as HF computes them (float32), with llama3 scaling applied if asked. */
export function ropeInvFreq(cfg: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const d = cfg.headDim;
  const inv = new Float32Array(d / 2);
  for (let i = 0; i < d / 2; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, Math.fround((2 * i) / d));
  const s = cfg.ropeScaling;
  if (s.kind !== 'llama3') return inv;
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositions / s.highFreqFactor;
  for (let i = 0; i < inv.length; i++) {
    const f = inv[i]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) continue;
    if (wavelen > lowWavelen) inv[i] = f / s.factor;
    else {
      const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
    }
  }
  return inv;
}

export function readLlamaConfig(path: string): TE.TaskEither<ConfigError, LlamaConfig> {
  return async () => {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      return E.left(new ConfigError(path, '(file)', 'a readable config.json', (e as NodeJS.ErrnoException).code ?? (e as Error).message));
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      return E.left(new ConfigError(path, '(file)', 'valid JSON', (e as Error).message));
    }
    return parseLlamaConfig(path, json);
  };
}
