import { ArgumentError, BackendMismatchError, DTypeError, ShapeError, type AttnkitError, type Backend, type Tensor } from '@attnkit/tensor';
import * as E from 'fp-ts/lib/Either.js';
import { POOL_BLOCK, type AttentionOptions, type MaskSpec } from './options.js';

/** Head dims the kernels are built for: multiples of 16 up to 256 (64, 80, 96, 128, 256 ...). */
export const MAX_HEAD_DIM = 256;
export const HEAD_DIM_MULTIPLE = 16;

export interface BlockList {
  queryBlock: number;
  keyBlock: number;
  indices: Tensor;
  /** indices is [Bm, Hm, nQB, maxSel] with Bm in {1, B}, Hm in {1, Hq}. */
  Bm: number;
  Hm: number;
  nQB: number;
  maxSel: number;
  nKB: number;
}

export interface Bias {
  tensor: Tensor;
  /** Element strides over [B, Hq, S, kvLength]; 0 on broadcast axes. */
  strides: [number, number, number, number];
}

/** A validated attention call: every number the kernels and the reference need. */
export interface Problem {
  op: string;
  backend: Backend;
  B: number;
  Hq: number;
  Hkv: number;
  S: number;
  /** K/V axis 2 (cache capacity). */
  cap: number;
  kvLength: number;
  D: number;
  scale: number;
  dtype: 'f32' | 'f16';
  causal: boolean;
  /** 0 means no window. */
  window: number;
  sinks: number;
  blocks: BlockList | null;
  bias: Bias | null;
}

function isInt(v: number): boolean {
  return Number.isInteger(v);
}

/** Checks q/k/v/options and resolves the mask; every failure is a typed error naming what was expected. */
export function resolveProblem(op: string, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Problem {
  for (const [name, t] of [['k', k], ['v', v]] as const) {
    t.storage(`${op}(${name})`);
    if (t.backend !== q.backend) throw new BackendMismatchError(op, name, q.backend.name, t.backend.name);
  }
  q.storage(`${op}(q)`);
  if (q.dtype !== 'f32' && q.dtype !== 'f16') throw new DTypeError(op, 'q', ['f32', 'f16'], q.dtype);
  if (k.dtype !== q.dtype) throw new DTypeError(op, 'k', [q.dtype], k.dtype);
  if (v.dtype !== q.dtype) throw new DTypeError(op, 'v', [q.dtype], v.dtype);
  if (q.rank !== 4) throw new ShapeError(op, 'q', '[B, Hq, S, D] (rank 4)', q.shape);
  if (k.rank !== 4) throw new ShapeError(op, 'k', '[B, Hkv, L, D] (rank 4)', k.shape);
  if (v.rank !== 4) throw new ShapeError(op, 'v', '[B, Hkv, L, D] (rank 4)', v.shape);
  const [B, Hq, S, D] = q.shape as [number, number, number, number];
  const [Bk, Hkv, cap, Dk] = k.shape as [number, number, number, number];
  if (Bk !== B) throw new ShapeError(op, 'k', `batch ${B} like q [B, Hkv, L, D]`, k.shape);
  if (Dk !== D) throw new ShapeError(op, 'k', `head dim ${D} like q (mismatched head dims)`, k.shape);
  if (v.shape.join() !== k.shape.join()) throw new ShapeError(op, 'v', `the shape of k [${k.shape.join(', ')}]`, v.shape);
  if (Hkv <= 0 || Hq % Hkv !== 0) {
    throw new ShapeError(op, 'k', `a KV head count that divides the query head count ${Hq} (grouped-query attention)`, k.shape);
  }
  if (D % HEAD_DIM_MULTIPLE !== 0 || D > MAX_HEAD_DIM || D <= 0) {
    throw new ArgumentError(op, 'head dim D', `a multiple of ${HEAD_DIM_MULTIPLE} up to ${MAX_HEAD_DIM} (64, 80, 96, 128, 256 ...)`, D);
  }
  const kvLength = opts.kvLength ?? cap;
  if (!isInt(kvLength) || kvLength < 1 || kvLength > cap) {
    throw new ArgumentError(op, 'kvLength', `an integer in [1, ${cap}] (K/V capacity)`, kvLength);
  }
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new ArgumentError(op, 'scale', 'a finite number', scale);

  const mask: MaskSpec = opts.mask ?? { kind: 'none' };
  let causal = !!opts.causal;
  let window = 0;
  let sinks = 0;
  let blocks: BlockList | null = null;
  let bias: Bias | null = null;
  if (causal || mask.kind === 'causal' || mask.kind === 'window' || ((mask.kind === 'blocks' || mask.kind === 'bias') && mask.causal)) {
    causal = true;
    if (S > kvLength) throw new ArgumentError(op, 'S', `<= kvLength ${kvLength} for a causal mask (queries are the last S keys)`, S);
  }
  switch (mask.kind) {
    case 'none':
    case 'causal':
      break;
    case 'window':
      if (!isInt(mask.window) || mask.window < 1) throw new ArgumentError(op, 'mask.window', 'a positive integer', mask.window);
      window = mask.window;
      sinks = mask.sinks ?? 0;
      if (!isInt(sinks) || sinks < 0) throw new ArgumentError(op, 'mask.sinks', 'a non-negative integer', sinks);
      break;
    case 'blocks':
      blocks = resolveBlocks(op, mask, q, B, Hq, S, kvLength);
      break;
    case 'bias':
      bias = resolveBias(op, mask.bias, q, [B, Hq, S, kvLength]);
      break;
    default:
      throw new ArgumentError(op, 'mask.kind', "'none', 'causal', 'window', 'blocks' or 'bias'", (mask as { kind: unknown }).kind);
  }
  return { op, backend: q.backend, B, Hq, Hkv, S, cap, kvLength, D, scale, dtype: q.dtype, causal, window, sinks, blocks, bias };
}

function resolveBlocks(op: string, m: Extract<MaskSpec, { kind: 'blocks' }>, q: Tensor, B: number, Hq: number, S: number, kvLength: number): BlockList {
  for (const [name, val] of [['queryBlock', m.queryBlock], ['keyBlock', m.keyBlock]] as const) {
    if (!isInt(val) || val < 16 || val % 16 !== 0) throw new ArgumentError(op, `mask.${name}`, 'a positive multiple of 16', val);
  }
  const t = m.indices;
  t.storage(`${op}(mask.indices)`);
  if (t.backend !== q.backend) throw new BackendMismatchError(op, 'mask.indices', q.backend.name, t.backend.name);
  if (t.dtype !== 'i32') throw new DTypeError(op, 'mask.indices', ['i32'], t.dtype);
  const nQB = Math.ceil(S / m.queryBlock);
  const nKB = Math.ceil(kvLength / m.keyBlock);
  if (t.rank !== 4) throw new ShapeError(op, 'mask.indices', `[B|1, Hq|1, ${nQB} query blocks, maxSel]`, t.shape);
  const [Bm, Hm, nq, maxSel] = t.shape as [number, number, number, number];
  if ((Bm !== 1 && Bm !== B) || (Hm !== 1 && Hm !== Hq) || nq !== nQB || maxSel < 1) {
    throw new ShapeError(op, 'mask.indices', `[1 or ${B}, 1 or ${Hq}, ${nQB} (= ceil(S/queryBlock)), maxSel >= 1]`, t.shape);
  }
  // Values are checkable without a GPU round trip only on the CPU backend; the kernels skip
  // ids outside [0, nKB) so a bad list never reads out of bounds.
  if (t.backend.kind === 'cpu') checkIdList(op, 'mask.indices', t.handle() as Int32Array, maxSel, nKB);
  return { queryBlock: m.queryBlock, keyBlock: m.keyBlock, indices: t, Bm, Hm, nQB, maxSel, nKB };
}

/** Each row of `maxSel` ids holds ids in [0, n) or -1 padding, without duplicates. */
export function checkIdList(op: string, arg: string, ids: ArrayLike<number>, rowLen: number, n: number): void {
  for (let r = 0; r * rowLen < ids.length; r++) {
    const seen = new Set<number>();
    for (let s = 0; s < rowLen; s++) {
      const id = ids[r * rowLen + s]!;
      if (id === -1) continue;
      if (!isInt(id) || id < 0 || id >= n) throw new ArgumentError(op, `${arg} (row ${r}, slot ${s})`, `a block id in [0, ${n}) or -1 padding`, id);
      if (seen.has(id)) throw new ArgumentError(op, `${arg} (row ${r}, slot ${s})`, 'unique block ids within a row', `duplicate ${id}`);
      seen.add(id);
    }
  }
}

function resolveBias(op: string, t: Tensor, q: Tensor, full: [number, number, number, number]): Bias {
  t.storage(`${op}(mask.bias)`);
  if (t.backend !== q.backend) throw new BackendMismatchError(op, 'mask.bias', q.backend.name, t.backend.name);
  if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new DTypeError(op, 'mask.bias', ['f32', 'f16'], t.dtype);
  const want = `broadcastable to [B, Hq, S, kvLength] = [${full.join(', ')}]`;
  if (t.rank < 1 || t.rank > 4) throw new ShapeError(op, 'mask.bias', want, t.shape);
  const shape = [...Array(4 - t.rank).fill(1), ...t.shape] as number[];
  const strides: [number, number, number, number] = [0, 0, 0, 0];
  let acc = 1;
  for (let a = 3; a >= 0; a--) {
    const d = shape[a]!;
    if (d !== 1 && d !== full[a]) throw new ShapeError(op, 'mask.bias', want, t.shape);
    strides[a] = d === 1 ? 0 : acc;
    acc *= d;
  }
  return { tensor: t, strides };
}

/** Validation for decode: few queries, optional selected 16-key blocks. */
export function resolveDecodeBlocks(p: Problem, blocks: Tensor | undefined): { tensor: Tensor; nSel: number } | null {
  if (!blocks) return null;
  const op = p.op;
  blocks.storage(`${op}(blocks)`);
  if (blocks.backend !== p.backend) throw new BackendMismatchError(op, 'blocks', p.backend.name, blocks.backend.name);
  if (blocks.dtype !== 'i32') throw new DTypeError(op, 'blocks', ['i32'], blocks.dtype);
  if (blocks.rank !== 3 || blocks.shape[0] !== p.B || blocks.shape[1] !== p.Hkv || blocks.shape[2]! < 1) {
    throw new ShapeError(op, 'blocks', `[B, Hkv, nSel] = [${p.B}, ${p.Hkv}, nSel >= 1] (ids of ${POOL_BLOCK}-key blocks)`, blocks.shape);
  }
  const nSel = blocks.shape[2]!;
  if (blocks.backend.kind === 'cpu') checkIdList(op, 'blocks', blocks.handle() as Int32Array, nSel, Math.ceil(p.kvLength / POOL_BLOCK));
  return { tensor: blocks, nSel };
}

/** Absolute position of query i. */
export function queryPos(p: Problem, i: number): number {
  return p.kvLength - p.S + i;
}

/** What a valid call resolves to, for callers that validate before running. */
export interface AttentionPlan {
  B: number;
  Hq: number;
  Hkv: number;
  S: number;
  kvLength: number;
  D: number;
  scale: number;
  causal: boolean;
}

/**
 * The same checks as attention(), as an Either: Left holds the typed error (ShapeError,
 * DTypeError, ArgumentError, BackendMismatchError ...), Right the resolved sizes.
 */
export function checkAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): E.Either<AttnkitError, AttentionPlan> {
  return E.tryCatch(
    () => {
      const p = resolveProblem('attention', q, k, v, opts);
      return { B: p.B, Hq: p.Hq, Hkv: p.Hkv, S: p.S, kvLength: p.kvLength, D: p.D, scale: p.scale, causal: p.causal };
    },
    (e) => e as AttnkitError,
  );
}
