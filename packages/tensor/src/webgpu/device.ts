import type { Backend } from '../backend.js';
import { CpuBackend } from '../cpu/backend.js';
import { ArgumentError, NoAdapterError } from '../errors.js';
import { acquireAdapter } from './adapter.js';
import { WebGpuBackend } from './backend.js';

export type BackendChoice = 'cpu' | 'webgpu' | 'auto';

export interface BackendOptions {
  /** 'auto' (default) tries WebGPU and falls back to the CPU with one line on stderr. */
  backend?: BackendChoice;
  /** Extra Dawn flags (Node only), e.g. 'disable-dawn-features=...' for benchmarks. */
  dawnFlags?: string[];
  /** Where the fallback line goes; defaults to console.warn. */
  warn?: (line: string) => void;
}

function choiceFromEnv(): BackendChoice | undefined {
  const env = typeof process !== 'undefined' ? process.env.ATTNKIT_BACKEND : undefined;
  if (env === undefined || env === '') return undefined;
  if (env !== 'cpu' && env !== 'webgpu' && env !== 'auto') throw new ArgumentError('createBackend', 'ATTNKIT_BACKEND', "'cpu', 'webgpu' or 'auto'", env);
  return env;
}

/**
 * Picks a backend: the option, else ATTNKIT_BACKEND, else 'auto'. 'webgpu' fails with
 * NoAdapterError when no real adapter exists; 'auto' says why in one line and uses the CPU.
 */
export async function createBackend(opts: BackendOptions = {}): Promise<Backend> {
  const choice = opts.backend ?? choiceFromEnv() ?? 'auto';
  if (choice === 'cpu') return new CpuBackend();
  try {
    return await WebGpuBackend.create(await acquireAdapter(opts.dawnFlags));
  } catch (e) {
    if (choice === 'webgpu' || !(e instanceof NoAdapterError)) throw e;
    (opts.warn ?? console.warn)(`attnkit: using the CPU backend: ${(e as Error).message}`);
    return new CpuBackend();
  }
}
