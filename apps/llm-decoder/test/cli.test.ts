import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main, type DecodeReport } from '../src/cli.js';
import { TINY_VOCAB, writeByteLevelTokenizer, writeTinyCheckpoint } from '../../../packages/models/test/helpers.js';

function tinyModelDir(): string {
  const ck = writeTinyCheckpoint({ config: { vocab_size: TINY_VOCAB, eos_token_id: 0, max_position_embeddings: 128 } });
  writeByteLevelTokenizer(ck.dir);
  return ck.dir;
}

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { out: (s) => void (out += s), err: (s) => void (err += s), errIsTty: false });
  return { code, out, err };
}

describe('attnkit-decode', () => {
  const dir = tinyModelDir();

  it('--json reports the prompt, text, tokens and figures', async () => {
    const r = await run(['--model', dir, '--prompt', 'the', '-n', '6', '--backend', 'cpu', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as DecodeReport;
    expect(rep.promptTokens).toBe(4); // <|bos|> t h e
    expect(rep.tokens.length).toBeGreaterThan(0);
    expect(rep.tokens.length).toBeLessThanOrEqual(6);
    expect(rep.kvBytes).toBeGreaterThan(0);
    expect(rep.backend).toBe('cpu');
    expect(rep.prefillMs).toBeGreaterThan(0);
  });

  it('streams the prompt and the continuation to stdout and the figures to stderr; greedy is deterministic', async () => {
    const a = await run(['--model', dir, '--prompt', 'the', '-n', '5', '--backend', 'cpu']);
    const b = await run(['--model', dir, '--prompt', 'the', '-n', '5', '--backend', 'cpu', '--json']);
    expect(a.code).toBe(0);
    expect(a.out).toBe(`the${(JSON.parse(b.out) as DecodeReport).completion}`);
    expect(a.err).toMatch(/prompt tokens \d+ \| prefill [\d.]+ ms \| \d+ new tokens at [\d.]+ tokens\/s \| KV [\d.]+ MiB/);
  });

  it('samples reproducibly with a seed and applies the chat template', async () => {
    const s1 = await run(['--model', dir, '--prompt', 'hi', '-n', '8', '-t', '1.5', '--top-k', '50', '--top-p', '0.95', '--seed', '3', '--backend', 'cpu', '--json']);
    const s2 = await run(['--model', dir, '--prompt', 'hi', '-n', '8', '-t', '1.5', '--top-k', '50', '--top-p', '0.95', '--seed', '3', '--backend', 'cpu', '--json']);
    expect((JSON.parse(s1.out) as DecodeReport).tokens).toEqual((JSON.parse(s2.out) as DecodeReport).tokens);
    const chat = await run(['--model', dir, '--prompt', 'hi', '-n', '2', '--chat', '--backend', 'cpu', '--json']);
    expect((JSON.parse(chat.out) as DecodeReport).promptTokens).toBe(1 + 4 + 1 + 2 + 1 + 1 + 1 + 9 + 1);
  });

  it('bad input: a missing model folder, a bad flag, a prompt beyond the context', async () => {
    const missing = await run(['--model', join(mkdtempSync(join(tmpdir(), 'none-')), 'x'), '--backend', 'cpu']);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/ConfigError: .*config\.json/);
    const flag = await run(['--max-new-tokens', 'lots']);
    expect(flag.code).not.toBe(0);
    expect(flag.err).toMatch(/--max-new-tokens must be an integer/);
    const long = await run(['--model', dir, '--prompt', 'x'.repeat(200), '--backend', 'cpu']);
    expect(long.code).toBe(2);
    expect(long.err).toMatch(/ContextLengthError: .*needs 265 positions but only 128 fit/);
  });
});
