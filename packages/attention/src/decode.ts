import { ArgumentError, ShapeError, type Tensor } from '@attnkit/tensor';
import { referenceAttention } from './cpu/reference.js';
import { POOL_BLOCK, type DecodeOptions } from './options.js';
import { resolveDecodeBlocks, resolveProblem } from './problem.js';
import { asGpu } from './webgpu/common.js';
import { runDecode } from './webgpu/decode.js';

/** Most query tokens decode() takes; longer query runs belong to attention(). */
export const MAX_DECODE_QUERIES = 8;

/**
 * Split-K flash decode: q [B,Hq,Sq<=8,D] over k/v [B,Hkv,L,D] (keys [0, kvLength)), or
 * over the 16-key blocks listed in `blocks` (i32 [B,Hkv,nSel], any order, -1 pads).
 * Masks: none, causal (queries are the last Sq positions) or window(+sinks).
 */
export function decode(q: Tensor, k: Tensor, v: Tensor, opts: DecodeOptions = {}): Tensor {
  return decodeWithLse(q, k, v, opts).out;
}

export function decodeWithLse(q: Tensor, k: Tensor, v: Tensor, opts: DecodeOptions & { lse?: boolean } = {}): { out: Tensor; lse?: Tensor } {
  const op = 'decode';
  const p = resolveProblem(op, q, k, v, opts);
  if (p.S > MAX_DECODE_QUERIES) throw new ShapeError(op, 'q', `[B, Hq, Sq <= ${MAX_DECODE_QUERIES}, D] (use attention() for longer query runs)`, q.shape);
  if (p.blocks || p.bias) throw new ArgumentError(op, 'mask.kind', "'none', 'causal' or 'window' (block-sparse and bias masks: use attention())", opts.mask?.kind);
  if (opts.splits !== undefined && (!Number.isInteger(opts.splits) || opts.splits < 1)) throw new ArgumentError(op, 'splits', 'a positive integer', opts.splits);
  const sel = resolveDecodeBlocks(p, opts.blocks);
  if (q.backend.kind === 'cpu') {
    const ids = sel ? (sel.tensor.handle() as Int32Array) : null;
    const selection = ids
      ? (b: number, hk: number) => new Set(Array.from(ids.subarray((b * p.Hkv + hk) * sel!.nSel, (b * p.Hkv + hk + 1) * sel!.nSel)).filter((id) => id >= 0 && id < Math.ceil(p.kvLength / POOL_BLOCK)))
      : null;
    const r = referenceAttention(p, q, k, v, { lse: !!opts.lse }, selection);
    return r.lse ? { out: r.out, lse: r.lse } : { out: r.out };
  }
  const r = runDecode(asGpu(q.backend, op), p, q, k, v, sel, !!opts.lse, opts.splits);
  return r.lse ? { out: r.out, lse: r.lse } : { out: r.out };
}
