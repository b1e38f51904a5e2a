import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import * as E from 'fp-ts/lib/Either.js';
import { AttnkitError, CpuBackend, createBackend, type Backend } from '@attnkit/tensor';
import { generate, loadLlama, referenceModelDir, TokenizerError } from '@attnkit/models';

/** Parsed command-line options (what `decode()` needs). */
export interface DecodeArgs {
  model: string;
  prompt: string;
  chat: boolean;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  backend: 'auto' | 'cpu' | 'webgpu';
  weights: 'auto' | 'f16' | 'f32';
  json: boolean;
  progress: boolean;
}

/** Where output goes; tests pass collectors, the CLI passes the process streams. */
export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  /** A TTY on stderr gets the loading bar. */
  errIsTty: boolean;
}

export interface DecodeReport {
  model: string;
  backend: string;
  prompt: string;
  promptTokens: number;
  completion: string;
  tokens: number[];
  newTokens: number;
  loadMs: number;
  prefillMs: number;
  decodeMs: number;
  tokensPerSecond: number;
  kvBytes: number;
  weightBytes: number;
  parameters: number;
  stoppedBy: 'eos' | 'length';
}

const int = (name: string, min: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const float = (name: string, lo: number, hi: number, openLo = false) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n > hi || (openLo ? n <= lo : n < lo)) throw new InvalidArgumentError(`${name} must be a number in ${openLo ? '(' : '['}${lo}, ${hi}]`);
  return n;
};

export function buildProgram(): Command {
  return new Command('attnkit-decode')
    .description('Generate text with a Llama-family checkpoint (Llama, Mistral, Qwen2) on WebGPU or the CPU.')
    .option('-m, --model <dir>', 'checkpoint folder (config.json, model.safetensors[.index.json], tokenizer.json)', referenceModelDir())
    .option('-p, --prompt <text>', 'prompt text', 'In the beginning')
    .option('--chat', "wrap the prompt as one user message with the checkpoint's chat template", false)
    .option('-n, --max-new-tokens <n>', 'tokens to generate', int('--max-new-tokens', 1), 64)
    .option('-t, --temperature <t>', '0 is greedy; > 0 samples', float('--temperature', 0, 100), 0)
    .option('--top-k <k>', 'sample among the k most likely tokens (0: all)', int('--top-k', 0), 0)
    .option('--top-p <p>', 'nucleus sampling mass', float('--top-p', 0, 1, true), 1)
    .option('--seed <n>', 'sampling seed', int('--seed', 0), 0)
    .addOption(new Option('-b, --backend <kind>', 'where to run').choices(['auto', 'cpu', 'webgpu']).default('auto'))
    .addOption(new Option('--weights <dtype>', 'weight dtype on the device (auto: f16 on WebGPU, f32 on the CPU)').choices(['auto', 'f16', 'f32']).default('auto'))
    .option('--json', 'print one JSON object with the text and the figures (no streaming)', false)
    .option('--no-progress', 'no loading bar')
    .showHelpAfterError();
}

/**
 * 'auto' takes WebGPU, except a software adapter (Mesa lavapipe, SwiftShader): there every
 * kernel launch costs a CPU thread hand-off and the CPU backend decodes faster, so it is
 * used instead, with one line saying so. '--backend webgpu' still forces the adapter.
 */
async function pickBackend(choice: DecodeArgs['backend'], io: Io): Promise<Backend> {
  const be = await createBackend({ backend: choice, warn: (l) => io.err(`${l}\n`) });
  if (choice === 'auto' && be.kind === 'webgpu' && /llvmpipe|lavapipe|swiftshader|software/i.test(be.name)) {
    io.err(`attnkit-decode: ${be.name} is a software adapter; the CPU backend is faster here (--backend webgpu to use it anyway)\n`);
    be.destroy();
    return new CpuBackend();
  }
  return be;
}

/** Loads, generates with streaming, and reports. Throws AttnkitError subclasses on bad input. */
export async function decode(args: DecodeArgs, io: Io, backendIn?: Backend): Promise<DecodeReport> {
  const backend = backendIn ?? (await pickBackend(args.backend, io));
  try {
    const bar = args.progress && !args.json && io.errIsTty
      ? new SingleBar({ format: 'loading {bar} {percentage}% | {value}/{total} M params | {tensor}', stream: process.stderr, hideCursor: true, clearOnComplete: true }, Presets.shades_classic)
      : null;
    const t0 = performance.now();
    let started = false;
    const loaded = await loadLlama(args.model, backend, {
      ...(args.weights === 'auto' ? {} : { weightDtype: args.weights }),
      onProgress: (done, total, tensor) => {
        if (!bar) return;
        const M = (n: number) => Math.round(n / 1e5) / 10;
        if (!started) (bar.start(M(total), 0, { tensor }), (started = true));
        bar.update(M(done), { tensor });
      },
    });
    bar?.stop();
    if (E.isLeft(loaded)) throw loaded.left;
    const { model, tokenizer, config } = loaded.right;
    await backend.sync();
    const loadMs = performance.now() - t0;
    if (!tokenizer) throw new TokenizerError(args.model, 'no tokenizer loaded');
    const prompt = args.chat ? tokenizer.encodeChat([{ role: 'user', content: args.prompt }]) : tokenizer.encode(args.prompt);

    // Stream: decode everything so far and print what is new, so multi-byte characters
    // split across tokens come out whole.
    const generated: number[] = [];
    let printed = '';
    if (!args.json) io.out(args.chat ? '' : args.prompt);
    const res = await generate(model, prompt, {
      maxNewTokens: args.maxNewTokens,
      temperature: args.temperature,
      topK: args.topK,
      topP: args.topP,
      seed: args.seed,
      onToken: (id) => {
        generated.push(id);
        if (args.json) return;
        const text = tokenizer.decode(generated);
        if (text.startsWith(printed) && !text.endsWith('\uFFFD')) {
          io.out(text.slice(printed.length));
          printed = text;
        }
      },
    });
    const completion = tokenizer.decode(res.tokens);
    if (!args.json && completion.startsWith(printed)) io.out(completion.slice(printed.length));
    const report: DecodeReport = {
      model: args.model,
      backend: backend.name,
      prompt: args.prompt,
      promptTokens: res.promptTokens,
      completion,
      tokens: res.tokens,
      newTokens: res.tokens.length,
      loadMs,
      prefillMs: res.prefillMs,
      decodeMs: res.decodeMs,
      tokensPerSecond: res.tokensPerSecond,
      kvBytes: res.kvBytes,
      weightBytes: model.weightBytes(),
      parameters: model.parameterCount(),
      stoppedBy: res.stoppedBy,
    };
    if (args.json) io.out(`${JSON.stringify(report, null, 2)}\n`);
    else {
      const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
      io.err(
        `\n\n${config.architecture} ${(report.parameters / 1e6).toFixed(1)}M params on ${backend.name}\n` +
          `prompt tokens ${report.promptTokens} | prefill ${report.prefillMs.toFixed(1)} ms | ` +
          `${report.newTokens} new tokens at ${report.tokensPerSecond.toFixed(1)} tokens/s | KV ${mib(report.kvBytes)} | load ${report.loadMs.toFixed(0)} ms` +
          `${report.stoppedBy === 'eos' ? ' | stopped at EOS' : ''}\n`,
      );
    }
    model.dispose();
    return report;
  } finally {
    if (!backendIn) backend.destroy();
  }
}

/** The CLI: parses argv, runs, maps typed errors to exit code 2 with one clear line. */
export async function main(argv: string[], io: Io): Promise<number> {
  const program = buildProgram().exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err });
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    const code = (e as { exitCode?: number }).exitCode;
    return code ?? 2;
  }
  const args = program.opts<DecodeArgs>();
  try {
    await decode(args, io);
    return 0;
  } catch (e) {
    if (e instanceof AttnkitError) {
      io.err(`\nattnkit-decode: ${e.name}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
