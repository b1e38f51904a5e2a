import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { describe, expect, it } from 'vitest';
import { TextTokenizer, TokenizerError } from '../src/index.js';
import { writeByteLevelTokenizer } from './helpers.js';

const fresh = () => mkdtempSync(join(tmpdir(), 'attnkit-tok-'));

async function load(dir: string): Promise<TextTokenizer> {
  const r = await TextTokenizer.load(dir)();
  if (E.isLeft(r)) throw r.left;
  return r.right;
}

describe('tokenizer.json through @huggingface/tokenizers', () => {
  it('encodes byte-level BPE with the post-processor BOS and applies merges; decodes back', async () => {
    const dir = fresh();
    writeByteLevelTokenizer(dir);
    const tok = await load(dir);
    const ids = tok.encode('a the');
    // <|bos|>, 'a', then ' th' merged then 'e'
    expect(ids[0]).toBe(1);
    expect(ids).toEqual([1, 4 + 97, 4 + 257, 4 + 101]);
    expect(tok.decode(ids)).toBe('a the');
    expect(tok.encode('héllo ✓', false).length).toBe(10);
    expect(tok.decode(tok.encode('héllo ✓'))).toBe('héllo ✓');
  });

  it('renders the chat template with a generation prompt and keeps special tokens whole', async () => {
    const dir = fresh();
    writeByteLevelTokenizer(dir);
    const tok = await load(dir);
    expect(tok.hasChatTemplate).toBe(true);
    expect(tok.renderChat([{ role: 'user', content: 'hi' }])).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.encodeChat([{ role: 'user', content: 'hi' }]);
    expect(ids[0]).toBe(2);
    expect(ids.filter((i) => i === 3)).toHaveLength(1);
  });

  it('missing, malformed and template-less tokenizers are typed errors naming the file', async () => {
    const missing = await TextTokenizer.load(fresh())();
    expect(E.isLeft(missing) && missing.left).toBeInstanceOf(TokenizerError);
    expect(E.isLeft(missing) && missing.left.message).toMatch(/tokenizer\.json: cannot read: ENOENT/);
    const dir = fresh();
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
    const bad = await TextTokenizer.load(dir)();
    expect(E.isLeft(bad) && bad.left.message).toMatch(/tokenizer\.json: not valid JSON/);
    const plain = fresh();
    writeByteLevelTokenizer(plain, { chatTemplate: false });
    const tok = await load(plain);
    expect(() => tok.renderChat([{ role: 'user', content: 'x' }])).toThrow(/no chat_template/);
    const broken = fresh();
    writeByteLevelTokenizer(broken);
    writeFileSync(join(broken, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{% for m in messages %}' }));
    const r = await TextTokenizer.load(broken)();
    expect(E.isLeft(r) && r.left.message).toMatch(/tokenizer_config\.json: chat_template does not parse/);
  });
});
