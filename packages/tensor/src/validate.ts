import type { DType } from './dtype.js';
import { ArgumentError, BackendMismatchError, DTypeError, ShapeError } from './errors.js';
import type { Tensor } from './tensor.js';

/** Shared argument checks; each throws a typed error naming op and argument. */
export function live(op: string, arg: string, t: Tensor): Tensor {
  t.storage(`${op}(${arg})`);
  return t;
}

export function sameBackend(op: string, first: Tensor, others: Record<string, Tensor | null | undefined>): void {
  live(op, 'x', first);
  for (const [name, t] of Object.entries(others)) {
    if (!t) continue;
    live(op, name, t);
    if (t.backend !== first.backend) throw new BackendMismatchError(op, name, first.backend.name, t.backend.name);
  }
}

export function dtypeIn(op: string, arg: string, t: Tensor, allowed: readonly DType[]): void {
  if (!allowed.includes(t.dtype)) throw new DTypeError(op, arg, allowed, t.dtype);
}

export function minRank(op: string, arg: string, t: Tensor, rank: number): void {
  if (t.rank < rank) throw new ShapeError(op, arg, `of rank >= ${rank}`, t.shape);
}

export function axisIndex(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new ArgumentError(op, 'axis', `an integer in [${-rank}, ${rank})`, axis);
  return a;
}

export function positiveInt(op: string, arg: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new ArgumentError(op, arg, 'a positive integer', v);
}

export function finite(op: string, arg: string, v: number): void {
  if (!Number.isFinite(v)) throw new ArgumentError(op, arg, 'a finite number', v);
}

export const FLOATS: readonly DType[] = ['f32', 'f16'];
export const INTS: readonly DType[] = ['i32', 'u32'];
