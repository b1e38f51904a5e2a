import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { CpuBackend } from '@attnkit/tensor';
import { describe, expect, it } from 'vitest';
import { ConfigError, ContextLengthError, generate, loadLlama, SafetensorsError, TokenizerError, WeightMismatchError, type LoadError } from '../src/index.js';
import { FIXTURES, readParity } from './parity-helpers.js';

/*
 * Bad input, on corrupted copies of the HF fixtures (tiny Qwen2, plain and sharded): each
 * case must be a typed error that names the file, the tensor and the expectation.
 */
const cpu = new CpuBackend();

function copyOf(name: string): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'attnkit-corrupt-')), name);
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

async function loadError(dir: string): Promise<LoadError> {
  const r = await loadLlama(dir, cpu);
  if (E.isRight(r)) throw new Error(`expected ${dir} to fail`);
  return r.left;
}

/** Rewrites the JSON header of a safetensors file in place (keeping the data bytes). */
function editHeader(path: string, edit: (h: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void): void {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  let json = JSON.stringify(header);
  while (Buffer.byteLength(json) < n) json += ' ';
  const hb = Buffer.from(json);
  if (hb.length !== n) throw new Error('edited header must keep its length for this test');
  writeFileSync(path, Buffer.concat([bytes.subarray(0, 8), hb, bytes.subarray(8 + n)]));
}

describe('corrupted copies of the fixtures', () => {
  it('a truncated model.safetensors names the file and the tensor that runs past its end', async () => {
    const dir = copyOf('tiny-qwen2');
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { data_offsets?: number[] }>;
    const dataLeft = bytes.length - 1000 - 8 - headerLen;
    // The tensors whose bytes the cut removed: the error must name one of them.
    const cut = Object.entries(header).filter(([k, v]) => k !== '__metadata__' && v.data_offsets![1]! > dataLeft).map(([k]) => k);
    expect(cut.length).toBeGreaterThan(0);
    truncateSync(file, bytes.length - 1000);
    const e = await loadError(dir);
    expect(e).toBeInstanceOf(SafetensorsError);
    expect((e as SafetensorsError).problem).toBe('out-of-range');
    expect(e.message).toContain(file);
    expect(cut).toContain((e as SafetensorsError).tensor);
    expect(e.message).toContain((e as SafetensorsError).tensor!);
    truncateSync(file, 5);
    expect(((await loadError(dir)) as SafetensorsError).problem).toBe('truncated');
  });

  it('a header whose offsets run past the file, and one whose shape disagrees with its byte range', async () => {
    const dir = copyOf('tiny-qwen2');
    const file = join(dir, 'model.safetensors');
    editHeader(file, (h) => {
      h['model.norm.weight']!.data_offsets[1] = 99999999;
    });
    const e = (await loadError(dir)) as SafetensorsError;
    expect([e.problem, e.tensor]).toEqual(['out-of-range', 'model.norm.weight']);
    expect(e.message).toMatch(/data_offsets end 99999999 runs past the data section/);
    const dir2 = copyOf('tiny-qwen2');
    editHeader(join(dir2, 'model.safetensors'), (h) => {
      h['model.norm.weight']!.shape = [65];
    });
    const e2 = (await loadError(dir2)) as SafetensorsError;
    expect([e2.problem, e2.tensor]).toEqual(['size-mismatch', 'model.norm.weight']);
  });

  it('an unknown dtype in the header and an unsupported (but valid) one for a weight', async () => {
    const dir = copyOf('tiny-qwen2');
    editHeader(join(dir, 'model.safetensors'), (h) => {
      h['model.norm.weight']!.dtype = 'F17';
    });
    const e = (await loadError(dir)) as SafetensorsError;
    expect([e.problem, e.tensor]).toEqual(['unknown-dtype', 'model.norm.weight']);
    const dir2 = copyOf('tiny-qwen2');
    editHeader(join(dir2, 'model.safetensors'), (h) => {
      const t = h['model.norm.weight']!; // 64 f16 values = 128 bytes = 128 u8 values
      t.dtype = 'U8';
      t.shape = [128];
    });
    const e2 = await loadError(dir2);
    expect(e2).toBeInstanceOf(WeightMismatchError);
    expect(e2.message).toMatch(/tensor 'model\.norm\.weight' must be shape \[64\]/);
  });

  it('an unsupported architecture and weights that do not match the config', async () => {
    const dir = copyOf('tiny-qwen2');
    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, architectures: ['Phi3ForCausalLM'] }));
    const e = await loadError(dir);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/config\.json: 'architectures' must be one of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, got 'Phi3ForCausalLM'/);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_key_value_heads: 4 }));
    const w = (await loadError(dir)) as WeightMismatchError;
    expect(w).toBeInstanceOf(WeightMismatchError);
    expect(w.tensor).toBe('model.layers.0.self_attn.k_proj.weight');
    expect(w.message).toMatch(/must be shape \[64, 64\] \(from config\.json\), got \[32, 64\]/);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 3 }));
    expect(((await loadError(dir)) as WeightMismatchError).tensor).toBe('model.layers.2.input_layernorm.weight');
  });

  it('a sharded checkpoint with a shard missing, and missing tokenizer / config files', async () => {
    const dir = copyOf('tiny-qwen2-sharded');
    rmSync(join(dir, 'model-00002-of-00002.safetensors'));
    const e = (await loadError(dir)) as SafetensorsError;
    expect([e.problem, e.file]).toEqual(['missing-file', join(dir, 'model-00002-of-00002.safetensors')]);
    const dir2 = copyOf('tiny-qwen2');
    rmSync(join(dir2, 'tokenizer.json'));
    expect(await loadError(dir2)).toBeInstanceOf(TokenizerError);
    rmSync(join(dir2, 'config.json'));
    expect((await loadError(dir2)).message).toMatch(/config\.json: '\(file\)' must be a readable config\.json, got 'ENOENT'/);
  });

  it('a prompt longer than the context', async () => {
    const dir = copyOf('tiny-qwen2');
    const cfgPath = join(dir, 'config.json');
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), max_position_embeddings: 16 }));
    const r = await loadLlama(dir, cpu);
    if (E.isLeft(r)) throw r.left;
    const prompt = readParity('parity-tiny-qwen2.safetensors')[0]!.ids; // 20 tokens
    await expect(generate(r.right.model, prompt, { maxNewTokens: 1 })).rejects.toThrow(ContextLengthError);
    await expect(generate(r.right.model, prompt, { maxNewTokens: 1 })).rejects.toThrow(/prompt \(20 tokens\) \+ max new tokens \(1\): needs 21 positions but only 16 fit/);
    expect(() => r.right.model.forward(prompt, r.right.model.newCache(32))).toThrow(/max_position_embeddings\): needs 20 positions but only 16 fit/);
  });
});
