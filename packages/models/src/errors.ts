import { AttnkitError } from '@attnkit/tensor';

/**
 * Typed errors for everything that comes from outside (checkpoint files, configs,
 * tokenizers, prompts). Each names the file, the tensor or key, and what was expected.
 */

export type SafetensorsProblem =
  | 'missing-file'
  | 'truncated'
  | 'header-length'
  | 'header-json'
  | 'bad-entry'
  | 'unknown-dtype'
  | 'unsupported-dtype'
  | 'size-mismatch'
  | 'out-of-range'
  | 'overlap'
  | 'gap'
  | 'missing-tensor'
  | 'bad-index';

/** A safetensors file (or sharded index) that cannot be read as written. */
export class SafetensorsError extends AttnkitError {
  override readonly name = 'SafetensorsError';
  constructor(
    readonly problem: SafetensorsProblem,
    readonly file: string,
    readonly detail: string,
    readonly tensor?: string,
    readonly byteRange?: readonly [number, number],
  ) {
    super(`${file}${tensor ? ` tensor '${tensor}'` : ''}${byteRange ? ` bytes [${byteRange[0]}, ${byteRange[1]})` : ''}: ${detail} (${problem})`);
  }
}

/** A config.json that is missing, malformed, or describes a model we do not run. */
export class ConfigError extends AttnkitError {
  override readonly name = 'ConfigError';
  constructor(readonly file: string, readonly key: string, readonly expected: string, readonly actual: unknown) {
    super(`${file}: '${key}' must be ${expected}, got ${typeof actual === 'string' ? `'${actual}'` : JSON.stringify(actual)}`);
  }
}

/** The checkpoint's tensors do not match what the config says the model needs. */
export class WeightMismatchError extends AttnkitError {
  override readonly name = 'WeightMismatchError';
  constructor(readonly file: string, readonly tensor: string, readonly expected: string, readonly actual: string) {
    super(`${file}: tensor '${tensor}' must be ${expected}, got ${actual}`);
  }
}

/** tokenizer.json / tokenizer_config.json missing or unreadable, or a chat template that fails. */
export class TokenizerError extends AttnkitError {
  override readonly name = 'TokenizerError';
  constructor(readonly file: string, readonly detail: string) {
    super(`${file}: ${detail}`);
  }
}

/** The prompt (plus the tokens asked for) does not fit the model's context or the KV cache. */
export class ContextLengthError extends AttnkitError {
  override readonly name = 'ContextLengthError';
  constructor(readonly what: string, readonly requested: number, readonly allowed: number) {
    super(`${what}: needs ${requested} positions but only ${allowed} fit (over by ${requested - allowed})`);
  }
}
