import { ArgumentError, ShapeError, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import { blockSparseAttention, checkOut, checkQKV, gatherTokens, permOnDevice, runSparse, type SparseOptions } from './attention.js';
import type { Calibration } from './calibrate.js';
import { LayoutError } from './errors.js';
import { checkLayout, invertPermutation, orderPermutation } from './layout.js';
import { blockCount, type BlockMask } from './mask.js';

/** Device-ready view of a calibration: per-head gather indices and the block mask. */
export interface ParoPlan {
  calibration: Calibration;
  /** [H * N]: forward[h * N + n] = original token at permuted position n. */
  forward: Uint32Array;
  /** [H * N]: the inverse, to restore the original order. */
  inverse: Uint32Array;
  mask: BlockMask;
}

const plans = new WeakMap<Calibration, ParoPlan>();

export function planFor(c: Calibration): ParoPlan {
  const hit = plans.get(c);
  if (hit) return hit;
  checkLayout('planFor', c.layout);
  const H = c.heads.length;
  const N = c.layout.frames * c.layout.height * c.layout.width + (c.layout.text ?? 0);
  const forward = new Uint32Array(H * N);
  const inverse = new Uint32Array(H * N);
  c.heads.forEach((head, h) => {
    const p = orderPermutation(c.layout, head.order);
    forward.set(p, h * N);
    inverse.set(invertPermutation(p), h * N);
  });
  const plan: ParoPlan = { calibration: c, forward, inverse, mask: { heads: H, tokens: N, blocks: blockCount(N), lists: c.heads.map((h) => h.mask) } };
  plans.set(c, plan);
  return plan;
}

export interface ParoOptions extends SparseOptions {
  /**
   * How the per-head order is applied on the GPU: 'fused' (default) reads Q/K/V through the
   * order inside the quantize and attention kernels and writes the output back through it,
   * so a call is 4 dispatches (int8) or 1 (float) and allocates only its output;
   * 'separate' gathers permuted copies of Q, K, V, runs blockSparseAttention and gathers the
   * output back (the first implementation; kept to measure against).
   */
  permute?: 'fused' | 'separate';
  /**
   * Write the result into this tensor (q's backend, dtype and shape) instead of a new one:
   * a model step that calls PARO every layer can keep one output buffer. Returned as is.
   * Only the fused WebGPU path takes it (ArgumentError elsewhere).
   */
  out?: Tensor;
}

/**
 * PARO attention: q [B, H, N, D], k/v [B, Hkv, N, D] in the original (text, F, H, W) order.
 * Each head's tokens are re-flattened in its calibrated axis order, attention runs
 * block-sparse over the calibrated mask (int8 Q.K with `qk: 'int8'`), and the output is put
 * back in the original order.
 */
export function paroAttention(q: Tensor, k: Tensor, v: Tensor, calibration: Calibration, opts: ParoOptions = {}): Tensor {
  const op = 'paroAttention';
  const d = checkQKV(op, q, k, v);
  const plan = planFor(calibration);
  if (plan.mask.tokens !== d.N) {
    const l = calibration.layout;
    throw new LayoutError(op, `a layout of ${d.N} tokens (the tensors' N)`, `text ${l.text ?? 0} + ${l.frames}x${l.height}x${l.width} = ${plan.mask.tokens}`);
  }
  if (plan.mask.heads !== d.H) throw new ShapeError(op, 'query', `${plan.mask.heads} heads (one per calibrated head)`, q.shape);
  if (opts.out) checkOut(op, opts.out, q);
  const permute = opts.permute ?? 'fused';
  if (permute !== 'fused' && permute !== 'separate') throw new ArgumentError(op, 'permute', "'fused' or 'separate'", permute);
  if (permute === 'fused' && q.backend.kind === 'webgpu') {
    const qk = opts.qk ?? 'float';
    if (qk !== 'float' && qk !== 'int8') throw new ArgumentError(op, 'qk', "'float' or 'int8'", qk);
    const scale = opts.scale ?? 1 / Math.sqrt(d.D);
    if (!Number.isFinite(scale)) throw new ArgumentError(op, 'scale', 'a finite number', scale);
    const be = q.backend as WebGpuBackend;
    const x = { q: be.buffer(q, op), k: be.buffer(k, op), v: be.buffer(v, op) };
    const pv = opts.pv ?? 'float';
    if (pv !== 'float' && pv !== 'int8') throw new ArgumentError(op, 'pv', "'float' or 'int8'", pv);
    if (pv === 'int8' && qk !== 'int8') throw new ArgumentError(op, 'pv', "'float' unless qk is 'int8'", pv);
    return runSparse(be, x, d, plan.mask, qk, scale, opts.int8Path ?? 'auto', permOnDevice(be, plan.forward), opts.out, pv);
  }
  if (opts.out) throw new ArgumentError(op, 'out', "unset: only the fused WebGPU path writes into a given tensor", `an out tensor with permute '${permute}' on ${q.backend.kind}`);
  const qp = gatherTokens(q, plan.forward, d.H);
  const kp = gatherTokens(k, plan.forward, d.H);
  const vp = gatherTokens(v, plan.forward, d.H);
  const o = blockSparseAttention(qp, kp, vp, plan.mask, opts);
  const out = gatherTokens(o, plan.inverse, d.H);
  for (const t of [qp, kp, vp, o]) t.dispose();
  return out;
}
