import { ArgumentError, DTypeError, ShapeError, type Tensor, BackendMismatchError } from '@attnkit/tensor';
import { WindowError } from './errors.js';
import type { AxisSpec } from './window.js';

export interface NeighborhoodOptions {
  /** Window size per axis (one number applies to every axis). */
  kernelSize: number | readonly number[];
  /** Dilation per axis; default 1. */
  dilation?: number | readonly number[];
  /** Causal per axis (e.g. causal in time only: [true, false, false]); default false. */
  causal?: boolean | readonly boolean[];
  /** Logit scale; default 1/sqrt(D). */
  scale?: number;
}

/** Validated problem description shared by the CPU reference and the kernels. */
export interface Problem {
  op: string;
  batch: number;
  heads: number;
  kvHeads: number;
  spatial: number[];
  headDim: number;
  tokens: number;
  axes: AxisSpec[];
  scale: number;
  dtype: 'f32' | 'f16';
}

function perAxis<T>(op: string, name: string, v: T | readonly T[] | undefined, rank: number, dflt: T): T[] {
  if (v === undefined) return Array.from({ length: rank }, () => dflt);
  if (Array.isArray(v)) {
    if (v.length !== rank) throw new ArgumentError(op, name, `one value per spatial axis (${rank})`, `[${v.join(', ')}]`);
    return [...(v as readonly T[])];
  }
  return Array.from({ length: rank }, () => v as T);
}

/**
 * Checks q [B, H, ...spatial, D], k/v [B, Hkv, ...spatial, D] and the per-axis options;
 * every failure is a typed error naming the argument and what was expected.
 */
export function describe(op: string, rank: number, q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodOptions): Problem {
  for (const [name, t] of [['key', k], ['value', v]] as const) {
    t.storage(op);
    if (t.backend !== q.backend) throw new BackendMismatchError(op, name, q.backend.name, t.backend.name);
  }
  q.storage(op);
  if (q.dtype !== 'f32' && q.dtype !== 'f16') throw new DTypeError(op, 'query', ['f32', 'f16'], q.dtype);
  for (const [name, t] of [['key', k], ['value', v]] as const) {
    if (t.dtype !== q.dtype) throw new DTypeError(op, name, [q.dtype], t.dtype);
  }
  const want = rank + 3;
  if (q.rank !== want) throw new ShapeError(op, 'query', `[B, H, ${rank} spatial dims, D] (rank ${want})`, q.shape);
  const [B, H] = q.shape as [number, number];
  const spatial = q.shape.slice(2, 2 + rank);
  const D = q.shape[want - 1]!;
  if (D % 4 !== 0) throw new ShapeError(op, 'query', 'a head dim that is a multiple of 4', q.shape);
  const Hkv = k.shape[1] ?? 0;
  const kvShape = [B, Hkv, ...spatial, D];
  for (const [name, t] of [['key', k], ['value', v]] as const) {
    if (t.rank !== want || t.shape.some((s, i) => s !== kvShape[i])) {
      throw new ShapeError(op, name, `[${kvShape.join(', ')}] (query's batch, spatial and head dims)`, t.shape);
    }
  }
  if (Hkv < 1 || H % Hkv !== 0) throw new ShapeError(op, 'key', `a head count dividing the query's ${H} heads (GQA)`, k.shape);

  const kernel = perAxis(op, 'kernelSize', opts.kernelSize, rank, 0);
  const dilation = perAxis(op, 'dilation', opts.dilation, rank, 1);
  const causal = perAxis(op, 'causal', opts.causal, rank, false);
  const axes: AxisSpec[] = [];
  for (let a = 0; a < rank; a++) {
    const L = spatial[a]!;
    const ks = kernel[a]!;
    const d = dilation[a]!;
    if (!Number.isInteger(ks) || ks < 1) throw new ArgumentError(op, `kernelSize[${a}]`, 'a positive integer', ks);
    if (!Number.isInteger(d) || d < 1) throw new ArgumentError(op, `dilation[${a}]`, 'a positive integer', d);
    if (typeof causal[a] !== 'boolean') throw new ArgumentError(op, `causal[${a}]`, 'a boolean', causal[a]);
    if (ks > L) throw new WindowError(op, a, L, ks, d, `the window is larger than the axis`);
    if (ks * d > L) throw new WindowError(op, a, L, ks, d, `kernel * dilation = ${ks * d} exceeds the axis, so a dilation group holds fewer than ${ks} tokens`);
    axes.push({ length: L, kernel: ks, dilation: d, causal: causal[a]! });
  }
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new ArgumentError(op, 'scale', 'a finite number', scale);
  return {
    op, batch: B, heads: H, kvHeads: Hkv, spatial, headDim: D,
    tokens: spatial.reduce((p, s) => p * s, 1), axes, scale, dtype: q.dtype,
  };
}

/** Pads the spatial description to three axes (length-1 axes in front). */
function pad3<T>(xs: readonly T[], fill: T): T[] {
  return [...Array.from({ length: 3 - xs.length }, () => fill), ...xs];
}

/** The problem's axes padded to three (length-1 axes in front), as the kernels see them. */
export function paddedAxes(p: Problem): { L: number[]; k: number[]; d: number[]; causal: boolean[] } {
  return {
    L: pad3(p.axes.map((a) => a.length), 1),
    k: pad3(p.axes.map((a) => a.kernel), 1),
    d: pad3(p.axes.map((a) => a.dilation), 1),
    causal: pad3(p.axes.map((a) => a.causal), false),
  };
}
