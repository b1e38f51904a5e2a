import type { BinaryOp, MatmulParams, RopeParams, UnaryOp } from './backend.js';
import type { DType } from './dtype.js';
import { ArgumentError, ShapeError } from './errors.js';
import { broadcastShapes, fmt, sameShape, sizeOf } from './shape.js';
import type { Tensor } from './tensor.js';
import { axisIndex, dtypeIn, finite, FLOATS, INTS, live, minRank, positiveInt, sameBackend } from './validate.js';

// The public op surface. Each function validates its inputs (shape, dtype, backend,
// liveness) and then calls the tensor's backend, so backends never see bad input.

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  outDtype?: 'f32' | 'f16';
}

/**
 * Batched matmul: a [...batch, M, K] (or [...batch, K, M] with transA) times
 * b [...batch, K, N] (or [...batch, N, K] with transB). Either operand may omit the batch
 * dims or have batch 1 (broadcast). f32/f16 inputs, f32 accumulation.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return a.backend.matmul(a, b, matmulParams(a, b, opts));
}

/** The checked problem `matmul(a, b, opts)` hands its backend (for callers that pick the kernel themselves, see matmulWith). */
export function matmulParams(a: Tensor, b: Tensor, opts: MatmulOptions = {}): MatmulParams {
  const op = 'matmul';
  sameBackend(op, a, { b });
  dtypeIn(op, 'a', a, FLOATS);
  dtypeIn(op, 'b', b, FLOATS);
  minRank(op, 'a', a, 2);
  minRank(op, 'b', b, 2);
  const transA = !!opts.transA;
  const transB = !!opts.transB;
  const [ra, ca] = a.shape.slice(-2) as [number, number];
  const [rb, cb] = b.shape.slice(-2) as [number, number];
  const M = transA ? ca : ra;
  const K = transA ? ra : ca;
  const Kb = transB ? cb : rb;
  const N = transB ? rb : cb;
  if (K !== Kb) throw new ShapeError(op, 'b', `with inner dim K=${K} (a is ${fmt(a.shape)}${transA ? ' transposed' : ''})${transB ? ' transposed' : ''}`, b.shape);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const nA = sizeOf(batchA);
  const nB = sizeOf(batchB);
  let batchShape: number[];
  if (nA === nB && (sameShape(batchA, batchB) || batchA.length === 0 || batchB.length === 0)) batchShape = [...(batchA.length >= batchB.length ? batchA : batchB)];
  else if (nA === 1) batchShape = [...batchB];
  else if (nB === 1) batchShape = [...batchA];
  else throw new ShapeError(op, 'b', `with batch dims equal to a's ${fmt(batchA)} or of size 1`, b.shape);
  const p: MatmulParams = {
    transA, transB, outDtype: opts.outDtype ?? 'f32',
    batch: sizeOf(batchShape), batchA: nA, batchB: nB, M, N, K,
    outShape: [...batchShape, M, N],
  };
  return p;
}

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  sameBackend(op, a, { b });
  dtypeIn(op, 'a', a, ['f32', 'f16', 'i32', 'u32']);
  if (b.dtype !== a.dtype) throw new ArgumentError(op, 'b.dtype', `equal to a.dtype (${a.dtype})`, b.dtype);
  return a.backend.binary(op, a, b, broadcastShapes(op, a.shape, b.shape));
}

export const add = (a: Tensor, b: Tensor): Tensor => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor): Tensor => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor): Tensor => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor): Tensor => binary('div', a, b);

function unary(op: UnaryOp, x: Tensor, alpha = 0): Tensor {
  live(op, 'x', x);
  dtypeIn(op, 'x', x, FLOATS);
  return x.backend.unary(op, x, alpha);
}

export function scale(x: Tensor, s: number): Tensor {
  finite('scale', 's', s);
  return unary('scale', x, s);
}
export const silu = (x: Tensor): Tensor => unary('silu', x);
/** Exact (erf) GELU, as torch.nn.functional.gelu. */
export const gelu = (x: Tensor): Tensor => unary('gelu', x);
/** tanh-approximated GELU ("gelu_pytorch_tanh"). */
export const geluTanh = (x: Tensor): Tensor => unary('gelu_tanh', x);
export const exp = (x: Tensor): Tensor => unary('exp', x);
export const neg = (x: Tensor): Tensor => unary('neg', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);

/**
 * Converts to f32, f16, i32 or u32. Float to integer truncates toward zero and saturates
 * (NaN gives 0) as WGSL does; integer to integer keeps the low 32 bits (i8 sign-extends).
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  live('cast', 'x', x);
  const numeric: DType[] = ['f32', 'f16', 'i32', 'u32'];
  dtypeIn('cast', 'x', x, ['f32', 'f16', 'i32', 'u32', 'i8', 'u8']);
  if (!numeric.includes(dtype)) throw new ArgumentError('cast', 'dtype', 'one of f32, f16, i32, u32', dtype);
  return x.backend.cast(x, dtype);
}

export interface SoftmaxOptions {
  /** Causal, queries at the end of the keys (row r of the last S rows sees keys <= L - S + r). */
  causal?: boolean;
  /** Additive mask broadcast to x (e.g. [S, L] or [B, 1, S, L]); -Infinity removes a key. */
  mask?: Tensor;
}

/** Numerically stable softmax over the last axis. A row with every key masked gives zeros. */
export function softmax(x: Tensor, opts: SoftmaxOptions = {}): Tensor {
  const op = 'softmax';
  sameBackend(op, x, { mask: opts.mask });
  dtypeIn(op, 'x', x, FLOATS);
  const mask = opts.mask ?? null;
  if (mask) {
    dtypeIn(op, 'mask', mask, FLOATS);
    const b = broadcastShapes(op, x.shape, mask.shape);
    if (!sameShape(b, x.shape)) throw new ShapeError(op, 'mask', `broadcastable to x ${fmt(x.shape)}`, mask.shape);
  }
  if (opts.causal) minRank(op, 'x', x, 2);
  if (opts.causal && x.shape[x.rank - 2]! > x.shape[x.rank - 1]!) {
    throw new ShapeError(op, 'x', 'with rows <= columns when causal (queries are the last rows of the keys)', x.shape);
  }
  return x.backend.softmax(x, { causal: !!opts.causal, mask });
}

function lastAxisParam(op: string, x: Tensor, name: string, w: Tensor): void {
  dtypeIn(op, name, w, FLOATS);
  const d = x.shape[x.rank - 1]!;
  if (w.rank !== 1 || w.shape[0] !== d) throw new ShapeError(op, name, `[${d}] (x's last dim)`, w.shape);
}

export function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  const op = 'rmsnorm';
  sameBackend(op, x, { weight });
  dtypeIn(op, 'x', x, FLOATS);
  lastAxisParam(op, x, 'weight', weight);
  finite(op, 'eps', eps);
  return x.backend.rmsnorm(x, weight, eps);
}

export function layernorm(x: Tensor, weight: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  const op = 'layernorm';
  sameBackend(op, x, { weight, bias });
  dtypeIn(op, 'x', x, FLOATS);
  lastAxisParam(op, x, 'weight', weight);
  if (bias) lastAxisParam(op, x, 'bias', bias);
  finite(op, 'eps', eps);
  return x.backend.layernorm(x, weight, bias ?? null, eps);
}

export interface RopeOptions {
  theta?: number;
  /** Leading dims of each head that rotate; defaults to the whole head. */
  rotaryDim?: number;
  /** Position of the first row (tokens already in the KV cache). */
  positionOffset?: number;
  /** HF rope_scaling {type: 'linear', factor}: positions are divided by factor. */
  linearScale?: number;
  /** Inverse frequencies computed by the caller (llama3 / yarn scaling); length rotaryDim/2. */
  invFreq?: Float32Array;
}

/**
 * Rotary embedding in the HF Llama convention (rotate_half: the first and second half of
 * the rotary dims pair up). x is [..., S, D]; row s has position positionOffset + s.
 */
export function rope(x: Tensor, opts: RopeOptions = {}): Tensor {
  const op = 'rope';
  live(op, 'x', x);
  dtypeIn(op, 'x', x, FLOATS);
  minRank(op, 'x', x, 2);
  const D = x.shape[x.rank - 1]!;
  const rotaryDim = opts.rotaryDim ?? D;
  if (!Number.isInteger(rotaryDim) || rotaryDim <= 0 || rotaryDim % 2 || rotaryDim > D) {
    throw new ArgumentError(op, 'rotaryDim', `an even integer in [2, ${D}]`, rotaryDim);
  }
  const positionOffset = opts.positionOffset ?? 0;
  if (!Number.isInteger(positionOffset) || positionOffset < 0) throw new ArgumentError(op, 'positionOffset', 'a non-negative integer', positionOffset);
  const theta = opts.theta ?? 10000;
  if (!(theta > 1)) throw new ArgumentError(op, 'theta', 'a number > 1', theta);
  const linearScale = opts.linearScale ?? 1;
  if (!(linearScale > 0)) throw new ArgumentError(op, 'linearScale', 'a positive number', linearScale);
  if (opts.invFreq && opts.invFreq.length !== rotaryDim / 2) {
    throw new ArgumentError(op, 'invFreq', `a Float32Array of length ${rotaryDim / 2}`, `length ${opts.invFreq.length}`);
  }
  const p: RopeParams = { theta, rotaryDim, positionOffset, positionScale: 1 / linearScale, invFreq: opts.invFreq ?? null };
  return x.backend.rope(x, p);
}

export function permute(x: Tensor, perm: number[]): Tensor {
  const op = 'permute';
  live(op, 'x', x);
  const sorted = [...perm].sort((p, q) => p - q);
  if (perm.length !== x.rank || sorted.some((v, i) => v !== i)) {
    throw new ArgumentError(op, 'perm', `a permutation of 0..${x.rank - 1}`, `[${perm.join(', ')}]`);
  }
  return x.backend.permute(x, perm);
}

/** Swaps two axes (a permute). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const perm = x.shape.map((_, i) => i);
  const ia = axisIndex('transpose', a, x.rank);
  const ib = axisIndex('transpose', b, x.rank);
  perm[ia] = ib;
  perm[ib] = ia;
  return permute(x, perm);
}

/** Embedding lookup: rows of table [N, D] at i32/u32 indices [...] give [..., D]. */
export function gatherRows(table: Tensor, index: Tensor): Tensor {
  const op = 'gatherRows';
  sameBackend(op, table, { index });
  if (table.rank !== 2) throw new ShapeError(op, 'table', '[rows, dim]', table.shape);
  dtypeIn(op, 'table', table, FLOATS);
  dtypeIn(op, 'index', index, INTS);
  return table.backend.gatherRows(table, index);
}

/** Contiguous sub-block; `starts`/`ends` per axis (ends exclusive, negative counts from the end). */
export function slice(x: Tensor, starts: number[], ends?: number[]): Tensor {
  const op = 'slice';
  live(op, 'x', x);
  if (starts.length > x.rank) throw new ArgumentError(op, 'starts', `at most ${x.rank} entries`, starts.length);
  const s: number[] = [];
  const sizes: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    const d = x.shape[i]!;
    const st = starts[i] ?? 0;
    let en = ends?.[i] ?? d;
    if (en < 0) en += d;
    const from = st < 0 ? st + d : st;
    if (!Number.isInteger(from) || !Number.isInteger(en) || from < 0 || en > d || en <= from) {
      throw new ArgumentError(op, `range of axis ${i}`, `0 <= start < end <= ${d}`, `[${st}, ${ends?.[i] ?? d})`);
    }
    s.push(from);
    sizes.push(en - from);
  }
  return x.backend.slice(x, s, sizes);
}

export function concat(xs: Tensor[], axis: number): Tensor {
  const op = 'concat';
  if (xs.length === 0) throw new ArgumentError(op, 'xs', 'a non-empty list', 0);
  const first = xs[0]!;
  sameBackend(op, first, Object.fromEntries(xs.map((t, i) => [`xs[${i}]`, t])));
  const ax = axisIndex(op, axis, first.rank);
  xs.forEach((t, i) => {
    if (t.dtype !== first.dtype) throw new ArgumentError(op, `xs[${i}].dtype`, first.dtype, t.dtype);
    if (t.rank !== first.rank || t.shape.some((d, j) => j !== ax && d !== first.shape[j])) {
      throw new ShapeError(op, `xs[${i}]`, `${fmt(first.shape.map((d, j) => (j === ax ? -1 : d)))} (any size on axis ${ax})`.replace('-1', '*'), t.shape);
    }
  });
  return first.backend.concat(xs, ax);
}

/** Index (i32) of the largest value along the last axis; ties pick the lowest index. */
export function argmax(x: Tensor): Tensor {
  live('argmax', 'x', x);
  dtypeIn('argmax', 'x', x, FLOATS);
  return x.backend.argmax(x);
}

/** The k largest values (descending) and their i32 indices along the last axis. */
export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  const op = 'topk';
  live(op, 'x', x);
  dtypeIn(op, 'x', x, FLOATS);
  positiveInt(op, 'k', k);
  const n = x.shape[x.rank - 1]!;
  if (k > n) throw new ArgumentError(op, 'k', `<= the last dim (${n})`, k);
  if (k > 256) throw new ArgumentError(op, 'k', '<= 256', k);
  const [values, indices] = x.backend.topk(x, k);
  return { values, indices };
}

export interface QuantOptions {
  /** Elements per scale along the last axis; omit for one scale per row. */
  blockSize?: number;
}

function quantBlock(op: string, x: Tensor, opts: QuantOptions): number {
  const n = x.shape[x.rank - 1]!;
  const bs = opts.blockSize ?? n;
  positiveInt(op, 'blockSize', bs);
  if (n % bs) throw new ArgumentError(op, 'blockSize', `a divisor of the last dim (${n})`, bs);
  return bs;
}

/**
 * Symmetric int8 quantization: scale = max|x| / 127 per block of the last axis,
 * q = round(x / scale) clamped to [-127, 127]. Returns q (i8, x's shape) and scales
 * (f32, [..., n / blockSize]).
 */
export function quantizeInt8(x: Tensor, opts: QuantOptions = {}): { q: Tensor; scales: Tensor } {
  const op = 'quantizeInt8';
  live(op, 'x', x);
  dtypeIn(op, 'x', x, FLOATS);
  const blockSize = quantBlock(op, x, opts);
  const [q, scales] = x.backend.quantizeInt8(x, { blockSize });
  return { q, scales };
}

export function dequantizeInt8(q: Tensor, scales: Tensor, opts: QuantOptions = {}): Tensor {
  const op = 'dequantizeInt8';
  sameBackend(op, q, { scales });
  dtypeIn(op, 'q', q, ['i8']);
  dtypeIn(op, 'scales', scales, ['f32']);
  const blockSize = quantBlock(op, q, opts);
  const want = [...q.shape.slice(0, -1), q.shape[q.rank - 1]! / blockSize];
  if (!sameShape(want, scales.shape)) throw new ShapeError(op, 'scales', fmt(want), scales.shape);
  return q.backend.dequantizeInt8(q, scales, { blockSize });
}
