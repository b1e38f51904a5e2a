// Runs the reference model's held-out retrieval tasks through attnkit's own decoder
// (training/ measured the same checkpoint in PyTorch): greedy decoding of as many tokens
// as the answer has, exact match on the decoded text, as train_reference.py scores it.
//   node --conditions=@attnkit/source --import tsx apps/llm-decoder/scripts/eval-retrieval.ts \
//     --per-length 512:5,1024:3,2048:2 --backend cpu --out apps/llm-decoder/results/retrieval-cpu.json
import { createBackend } from '@attnkit/tensor';
import { generate, loadLlama, referenceModelDir } from '@attnkit/models';
import * as E from 'fp-ts/lib/Either.js';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: referenceModelDir() },
    tasks: { type: 'string', default: join(import.meta.dirname, '..', '..', '..', 'training', 'data', 'retrieval') },
    'per-length': { type: 'string', default: '512:5,1024:3,2048:2' },
    backend: { type: 'string', default: 'cpu' },
    out: { type: 'string' },
  },
});

interface Sample { task: string; length: number; prompt: string; answer: string }
const perLength = new Map(values['per-length']!.split(',').map((s) => s.split(':').map(Number) as [number, number]));
const backend = await createBackend({ backend: values.backend as 'cpu' | 'webgpu' | 'auto' });
const loaded = await loadLlama(values.model!, backend);
if (E.isLeft(loaded)) throw loaded.left;
const { model, tokenizer } = loaded.right;
if (!tokenizer) throw new Error('eval-retrieval: the checkpoint has no tokenizer');

const cells: Array<{ task: string; length: number; n: number; correct: number; misses: Array<{ want: string; got: string }> }> = [];
for (const task of ['passkey', 'kv', 'niah']) {
  const samples = readFileSync(join(values.tasks!, `${task}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Sample);
  for (const [length, n] of perLength) {
    const picked = samples.filter((s) => s.length === length).slice(0, n);
    const cell = { task, length, n: picked.length, correct: 0, misses: [] as Array<{ want: string; got: string }> };
    for (const s of picked) {
      const prompt = tokenizer.encode(s.prompt);
      const answerIds = tokenizer.encode(s.answer, false);
      const r = await generate(model, prompt, { maxNewTokens: answerIds.length, stopTokens: [] });
      const got = tokenizer.decode(r.tokens);
      if (got === s.answer) cell.correct++;
      else cell.misses.push({ want: s.answer, got });
    }
    cells.push(cell);
    console.log(`${task} @${length}: ${cell.correct}/${cell.n}`);
  }
}
const report = { model: relative(process.cwd(), values.model!) || '.', backend: backend.name, method: 'greedy, answer-length tokens, exact match of the decoded text (train_reference.py greedy_exact_match)', cells };
if (values.out) {
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, JSON.stringify(report, null, 2) + '\n');
}
backend.destroy();
