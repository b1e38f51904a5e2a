import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import type { Backend } from '@attnkit/tensor';
import { decodeTensor, generate, loadLlama, parseSafetensors, referenceModelDir, type LoadedModel } from '../src/index.js';
import { relativeMaxDiff } from './helpers.js';

export const FIXTURES = join(import.meta.dirname, 'fixtures');

export interface ParityPrompt {
  text: string;
  ids: number[];
  logits: Float32Array;
  greedy64: number[];
}

/** Checkpoints with HF transformers fixtures (training/make_parity_fixtures.py). */
export const CHECKPOINTS = [
  { name: 'reference-llama', dir: () => referenceModelDir(), parity: 'parity-reference-llama.safetensors' },
  { name: 'tiny-qwen2', dir: () => join(FIXTURES, 'tiny-qwen2'), parity: 'parity-tiny-qwen2.safetensors' },
  { name: 'tiny-qwen2-sharded', dir: () => join(FIXTURES, 'tiny-qwen2-sharded'), parity: 'parity-tiny-qwen2.safetensors' },
  { name: 'tiny-qwen2-bf16', dir: () => join(FIXTURES, 'tiny-qwen2-bf16'), parity: 'parity-tiny-qwen2-bf16.safetensors' },
] as const;

export function readParity(file: string): ParityPrompt[] {
  const path = join(FIXTURES, file);
  const bytes = new Uint8Array(readFileSync(path));
  const h = parseSafetensors(path, bytes);
  if (E.isLeft(h)) throw h.left;
  const get = (n: string) => {
    const t = decodeTensor(h.right, bytes, n);
    if (E.isLeft(t)) throw t.left;
    return t.right.data;
  };
  const texts = JSON.parse(h.right.metadata.prompts ?? '[]') as string[];
  return texts.map((text, i) => ({
    text,
    ids: Array.from(get(`prompt${i}.ids`)),
    logits: get(`prompt${i}.logits`) as Float32Array,
    greedy64: Array.from(get(`prompt${i}.greedy64`)),
  }));
}

export async function loadCheckpoint(dir: string, be: Backend): Promise<LoadedModel> {
  const r = await loadLlama(dir, be, { weightDtype: 'f32' });
  if (E.isLeft(r)) throw r.left;
  return r.right;
}

/** All-position logits of one prompt: the measure, max |ours - HF| / (max HF - min HF). */
export async function logitParity(m: LoadedModel, p: ParityPrompt): Promise<{ maxAbs: number; range: number; rel: number }> {
  const cache = m.model.newCache(p.ids.length);
  const { logits } = m.model.forward(p.ids, cache, { logits: 'all' });
  const ours = await logits.toArray();
  logits.dispose();
  cache.dispose();
  return relativeMaxDiff(ours, p.logits);
}

export async function greedy(m: LoadedModel, p: ParityPrompt, n: number): Promise<number[]> {
  return (await generate(m.model, p.ids, { maxNewTokens: n, stopTokens: [] })).tokens;
}
