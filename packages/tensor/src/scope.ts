import type { Tensor } from './tensor.js';

/**
 * Collects the tensors created while it is current so they can be freed together.
 * Use `tidy(fn)` for synchronous code; hold a Scope explicitly across awaits.
 */
export class Scope {
  private readonly tensors = new Set<Tensor>();
  track(t: Tensor): void {
    this.tensors.add(t);
  }
  /** Keeps `t` alive past dispose() (moves it to the enclosing scope, if any). */
  keep(t: Tensor): void {
    this.tensors.delete(t);
  }
  dispose(): void {
    for (const t of this.tensors) t.dispose();
    this.tensors.clear();
  }
}

const stack: Scope[] = [];

export function currentScope(): Scope | undefined {
  return stack[stack.length - 1];
}

/** Runs `fn`, then disposes every tensor it created except those reachable from its result. */
export function tidy<T>(fn: () => T): T {
  const scope = new Scope();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    // Nothing is returned, so nothing made inside survives a throw.
    stack.pop();
    scope.dispose();
    throw e;
  }
  stack.pop();
  const kept = collectTensors(result);
  for (const t of kept) scope.keep(t);
  scope.dispose();
  const parent = currentScope();
  if (parent) for (const t of kept) parent.track(t);
  return result;
}

/** For async work: tensors handed to `scope.track` are freed at the end, except those returned. */
export async function tidyAsync<T>(fn: (scope: Scope) => Promise<T>): Promise<T> {
  const scope = new Scope();
  try {
    const result = await fn(scope);
    for (const t of collectTensors(result)) scope.keep(t);
    return result;
  } finally {
    scope.dispose();
  }
}

function collectTensors(v: unknown, out = new Set<Tensor>()): Set<Tensor> {
  if (v && typeof v === 'object') {
    if ('dispose' in v && 'shape' in v && 'dtype' in v) out.add(v as Tensor);
    else if (Array.isArray(v)) for (const x of v) collectTensors(x, out);
    else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collectTensors(x, out);
  }
  return out;
}
