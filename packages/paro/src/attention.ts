import {
  ArgumentError, BackendMismatchError, cpuValues, DTypeError, gridFor, LimitError, packUniforms, ShapeError, tensor,
  type Tensor, type WebGpuBackend,
} from '@attnkit/tensor';
import {
  channelMeanFromPartialsProgram, channelMeanProgram, channelPartialProgram, chunkFor, gatherProgram, quantizeProgram, sparseProgram, sparseStaging,
} from './kernels.js';
import {
  sgmatrixInt8Available, sgmatrixPVAvailable, sgmatrixPVLayout, sparseSgmatrixPV16Program, sparseSgmatrixProgram, sparseSgmatrixPVProgram,
} from './kernels-sgmatrix.js';
import { sparseUniforms } from './bindings.js';
import { BLOCK, blockCount, packMask, type BlockMask } from './mask.js';
import { quantizeVProgram, sparseInt8PVProgram } from './kernels-int8pv.js';

const LOG2E = 1.4426950408889634;

export interface SparseOptions {
  /** 'int8': Q and K quantized per 64-token block (K smoothed), P rounded to 1/127. */
  qk?: 'float' | 'int8';
  /** Logit scale; default 1/sqrt(D). */
  scale?: number;
  /**
   * Which int8 kernel: 'plain' (packed int8 Q/K, exact integer dot products, scalar P.V),
   * 'sgmatrix' (Q.K on i8 subgroup matrices) or 'sgmatrix-pv' (Q.K on i8 and P.V on f16
   * subgroup matrices), the last two where the adapter offers them. 'auto' (default) is
   * 'plain': in the H200 probe (benchmarks/gpu/probes/paro-e2e.ts, 8 heads x 16384 tokens,
   * 25% blocks) quantize + kernel took 4.5 ms of GPU time on 'plain', 6.8 ms on 'sgmatrix'
   * and 7.8 ms on 'sgmatrix-pv' (9.7 ms in its first, two-subgroup layout); the earlier
   * "3.8x" for 'sgmatrix' compared it with a plain run caught in the slow window that follows
   * a subgroup-matrix pipeline's creation (see benchmarks/src/suites/paro.ts, settle()).
   */
  int8Path?: 'auto' | 'plain' | 'sgmatrix' | 'sgmatrix-pv';
  /**
   * With `qk: 'int8'` and the plain kernel: 'int8' also quantizes V (per 64-key block and
   * channel, symmetric) and computes P.V as exact integer dot products of the 0..127 P
   * integers with int8 V (dot4I8Packed); 'float' (default) keeps V in its dtype. On the
   * H200 probe it cut the GPU time from 4.5 to 3.2 ms and moved the relative L1 error vs
   * dense attention from 8.404e-2 to 8.416e-2.
   */
  pv?: 'float' | 'int8';
}

export interface Dims { B: number; H: number; Hkv: number; N: number; D: number; dtype: 'f32' | 'f16' }

export function checkQKV(op: string, q: Tensor, k: Tensor, v: Tensor): Dims {
  for (const [name, t] of [['query', q], ['key', k], ['value', v]] as const) {
    t.storage(op);
    if (t.backend !== q.backend) throw new BackendMismatchError(op, name, q.backend.name, t.backend.name);
    if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new DTypeError(op, name, ['f32', 'f16'], t.dtype);
    if (t.dtype !== q.dtype) throw new DTypeError(op, name, [q.dtype], t.dtype);
    if (t.rank !== 4) throw new ShapeError(op, name, 'of rank 4 [B, H, N, D]', t.shape);
  }
  const [B, H, N, D] = q.shape as [number, number, number, number];
  const Hkv = k.shape[1]!;
  const want = [B, Hkv, N, D];
  for (const [name, t] of [['key', k], ['value', v]] as const) {
    if (t.shape.some((s, i) => s !== want[i])) throw new ShapeError(op, name, `[${want.join(', ')}]`, t.shape);
  }
  if (H % Hkv !== 0) throw new ShapeError(op, 'key', `a head count dividing ${H} (GQA)`, k.shape);
  if (D % 4 !== 0) throw new ShapeError(op, 'query', 'a head dim that is a multiple of 4', q.shape);
  // Batch x heads is a grid dimension (and quantization blocks another): at most 65535.
  if (B * H > 65535) throw new LimitError(op, 'maxComputeWorkgroupsPerDimension (batch x heads)', B * H, 65535);
  if (Math.ceil(N / 64) > 65535) throw new LimitError(op, 'maxComputeWorkgroupsPerDimension (64-token blocks)', Math.ceil(N / 64), 65535);
  return { B, H, Hkv, N, D, dtype: q.dtype as 'f32' | 'f16' };
}

function checkMask(op: string, mask: BlockMask, d: Dims): void {
  if (mask.tokens !== d.N || mask.heads !== d.H) {
    throw new ShapeError(op, 'mask', `a block mask for ${d.H} heads x ${d.N} tokens`, `${mask.heads} heads x ${mask.tokens} tokens`);
  }
}

// ---------------------------------------------------------------- GPU helpers

function gpu(t: Tensor): WebGpuBackend {
  return t.backend as WebGpuBackend;
}

function u32Buffer(be: WebGpuBackend, data: Uint32Array): GPUBuffer {
  const buf = be.createBuffer('paro', data.byteLength);
  be.flush();
  be.device.queue.writeBuffer(buf, 0, data as Uint32Array<ArrayBuffer>);
  return buf;
}

/** Device copies of a mask's lists, cached per mask object (they are reused every step). */
const maskBuffers = new WeakMap<BlockMask, { be: WebGpuBackend; counts: GPUBuffer; lists: GPUBuffer }>();
function maskOnDevice(be: WebGpuBackend, mask: BlockMask): { counts: GPUBuffer; lists: GPUBuffer } {
  const hit = maskBuffers.get(mask);
  if (hit && hit.be === be) return hit;
  const { counts, indices } = packMask(mask);
  const entry = { be, counts: u32Buffer(be, counts), lists: u32Buffer(be, indices) };
  maskBuffers.set(mask, entry);
  return entry;
}

const indexBuffers = new WeakMap<Uint32Array, { be: WebGpuBackend; buf: GPUBuffer }>();
function indexOnDevice(be: WebGpuBackend, index: Uint32Array): GPUBuffer {
  const hit = indexBuffers.get(index);
  if (hit && hit.be === be) return hit.buf;
  const buf = u32Buffer(be, index);
  indexBuffers.set(index, { be, buf });
  return buf;
}

/**
 * Scratch buffers (int8 Q/K, their scales, the K channel mean) kept per backend and role
 * and reused by every call: allocating ~20 MB of fresh buffers per attention call was one
 * suspect for the end-to-end time on the H200. Reuse is safe because the queue runs
 * dispatches in order and each call writes a role before reading it.
 */
const scratch = new WeakMap<WebGpuBackend, Map<string, GPUBuffer>>();
function scratchBuffer(be: WebGpuBackend, role: string, bytes: number): GPUBuffer {
  let roles = scratch.get(be);
  if (!roles) scratch.set(be, (roles = new Map()));
  const hit = roles.get(role);
  if (hit && hit.size >= bytes) return hit;
  if (hit) be.release(hit);
  const buf = be.createBuffer('paro', bytes);
  roles.set(role, buf);
  return buf;
}

/** Drops the scratch buffers held for `be` (they are recreated on the next call). */
export function releaseScratch(be: WebGpuBackend): void {
  const roles = scratch.get(be);
  if (!roles) return;
  for (const buf of roles.values()) be.release(buf);
  scratch.delete(be);
}

/**
 * Reorders tokens per head: y[b, h, n] = x[b, h / (H / Hx), index[h * N + n]] for H output
 * heads (x may have fewer heads: GQA groups are expanded). `index` is [H * N].
 */
export function gatherTokens(x: Tensor, index: Uint32Array, heads: number): Tensor {
  const op = 'gatherTokens';
  const [B, Hx, N, D] = x.shape as [number, number, number, number];
  if (index.length !== heads * N) throw new ShapeError(op, 'index', `${heads} x ${N} entries`, `${index.length}`);
  if (heads % Hx !== 0) throw new ArgumentError(op, 'heads', `a multiple of x's ${Hx} heads`, heads);
  if (x.backend.kind === 'cpu') {
    const xs = cpuValues(x, op);
    const out = new Float64Array(B * heads * N * D);
    for (let b = 0; b < B; b++) for (let h = 0; h < heads; h++) {
      const src = (b * Hx + Math.floor(h / (heads / Hx))) * N;
      for (let n = 0; n < N; n++) {
        const from = (src + index[h * N + n]!) * D;
        out.set(xs.subarray(from, from + D), ((b * heads + h) * N + n) * D);
      }
    }
    return tensor(x.backend, out, [B, heads, N, D], x.dtype);
  }
  const be = gpu(x);
  const out = be.empty(op, x.dtype, [B, heads, N, D]);
  gatherInto(be, be.buffer(x, op), indexOnDevice(be, index), be.buffer(out, op), { B, H: heads, Hx, N, D, dtype: x.dtype as 'f32' | 'f16' });
  return out;
}

function gatherInto(be: WebGpuBackend, x: GPUBuffer, index: GPUBuffer, out: GPUBuffer, d: { B: number; H: number; Hx: number; N: number; D: number; dtype: 'f32' | 'f16' }): void {
  const total = d.B * d.H * d.N * (d.D / 4);
  const grid = gridFor(Math.ceil(total / 256));
  be.dispatch({
    program: gatherProgram(d.dtype, d.D),
    inputs: [x, index],
    outputs: [out],
    uniforms: packUniforms([['u32', total], ['u32', d.H], ['u32', d.Hx], ['u32', d.N], ['u32', grid[0] * grid[1]]]),
    grid,
  });
}

export interface Int8Blocks {
  /** int8 values [B, H, N, D]. */
  q: Tensor;
  /** f32 scales [B, H, ceil(N / 64)]. */
  scales: Tensor;
}

/**
 * Symmetric int8 per 64-token block: scale = max|x - mean| / 127. With `smooth`, `mean` is the
 * per-channel token mean of each head (K smoothing: it shifts every logit of a row by the
 * same amount, so softmax is unchanged); otherwise it is zero.
 */
export function quantizeBlocks(x: Tensor, opts: { smooth?: boolean } = {}): Int8Blocks {
  const op = 'quantizeBlocks';
  const [B, H, N, D] = x.shape as [number, number, number, number];
  const nB = blockCount(N);
  if (x.backend.kind === 'cpu') {
    const xs = cpuValues(x, op);
    const q = new Int8Array(xs.length);
    const scales = new Float32Array(B * H * nB);
    for (let bh = 0; bh < B * H; bh++) {
      const mean = new Float64Array(D);
      if (opts.smooth) {
        for (let n = 0; n < N; n++) for (let e = 0; e < D; e++) mean[e]! += xs[(bh * N + n) * D + e]!;
        for (let e = 0; e < D; e++) mean[e] = Math.fround(mean[e]! / N);
      }
      for (let blk = 0; blk < nB; blk++) {
        const n1 = Math.min(N, (blk + 1) * BLOCK);
        let mx = 0;
        for (let n = blk * BLOCK; n < n1; n++) for (let e = 0; e < D; e++) mx = Math.max(mx, Math.abs(xs[(bh * N + n) * D + e]! - mean[e]!));
        const sc = mx === 0 ? 1 : Math.fround(mx / 127);
        scales[bh * nB + blk] = sc;
        for (let n = blk * BLOCK; n < n1; n++) for (let e = 0; e < D; e++) {
          const i = (bh * N + n) * D + e;
          q[i] = Math.max(-127, Math.min(127, Math.round((xs[i]! - mean[e]!) / sc)));
        }
      }
    }
    return { q: tensor(x.backend, q, [B, H, N, D], 'i8'), scales: tensor(x.backend, scales, [B, H, nB], 'f32') };
  }
  const be = gpu(x);
  const dtype = x.dtype as 'f32' | 'f16';
  const mean = be.empty(op, 'f32', [B, H, D]);
  if (opts.smooth) channelMeanInto(be, be.buffer(x, op), { B, H, N, D, dtype }, be.buffer(mean, op));
  const q = be.empty(op, 'i8', [B, H, N, D]);
  const scales = be.empty(op, 'f32', [B, H, nB]);
  be.dispatch({
    program: quantizeProgram(dtype, D),
    inputs: [be.buffer(x, op), be.buffer(mean, op)], outputs: [be.buffer(q, op), be.buffer(scales, op)],
    uniforms: packUniforms([['u32', N], ['u32', nB], ['u32', H], ['u32', H]]), grid: [nB, B * H, 1],
  });
  mean.dispose();
  return { q, scales };
}

// ---------------------------------------------------------------- attention

/**
 * Block-sparse attention over tokens already in their (permuted) order: q [B, H, N, D],
 * k/v [B, Hkv, N, D]; `mask` lists, per head and 64-query block, the 64-key blocks to
 * compute, or 'dense' for every block. f32 or f16; D a multiple of 4.
 */
export function blockSparseAttention(q: Tensor, k: Tensor, v: Tensor, mask: BlockMask | 'dense', opts: SparseOptions = {}): Tensor {
  const op = 'blockSparseAttention';
  const d = checkQKV(op, q, k, v);
  if (mask !== 'dense') checkMask(op, mask, d);
  const qk = opts.qk ?? 'float';
  if (qk !== 'float' && qk !== 'int8') throw new ArgumentError(op, 'qk', "'float' or 'int8'", qk);
  const scale = opts.scale ?? 1 / Math.sqrt(d.D);
  if (!Number.isFinite(scale)) throw new ArgumentError(op, 'scale', 'a finite number', scale);
  const pv = opts.pv ?? 'float';
  if (pv !== 'float' && pv !== 'int8') throw new ArgumentError(op, 'pv', "'float' or 'int8'", pv);
  if (pv === 'int8' && qk !== 'int8') throw new ArgumentError(op, 'pv', "'float' unless qk is 'int8'", pv);
  if (q.backend.kind === 'cpu') return cpuBlockSparse(q, k, v, mask, qk, scale, d, pv);

  const be = gpu(q);
  return runSparse(be, { q: be.buffer(q, op), k: be.buffer(k, op), v: be.buffer(v, op) }, d, mask, qk, scale, opts.int8Path ?? 'auto', null, undefined, pv);
}

/**
 * Per-(batch, head) channel mean of x [B, H, N, D] into `mean` [B, H, D] (f32): per-block
 * partial sums over every 64-token block, then one small reduction (two passes that fill
 * the GPU instead of one pass of B x H workgroups).
 */
function channelMeanInto(be: WebGpuBackend, x: GPUBuffer, d: { B: number; H: number; N: number; D: number; dtype: 'f32' | 'f16' }, mean: GPUBuffer): void {
  const nB = blockCount(d.N);
  if (d.D / 4 > 64) {
    be.dispatch({ program: channelMeanProgram(d.dtype, d.D), inputs: [x], outputs: [mean], uniforms: packUniforms([['u32', d.N]]), grid: [d.B * d.H, 1, 1] });
    return;
  }
  const partial = scratchBuffer(be, 'meanpartial', d.B * d.H * nB * d.D * 4);
  const u = packUniforms([['u32', d.N], ['u32', nB]]);
  be.dispatch({ program: channelPartialProgram(d.dtype, d.D), inputs: [x], outputs: [partial], uniforms: u, grid: [nB, d.B * d.H, 1] });
  be.dispatch({ program: channelMeanFromPartialsProgram(d.D), inputs: [partial], outputs: [mean], uniforms: u, grid: [d.B * d.H, 1, 1] });
}

/**
 * Int8 Q and K with per-block scales into scratch buffers: the K channel mean (smoothing),
 * then one quantize pass each. With `perm`, the passes also apply the per-head PARO order
 * and expand K to one copy per query head (heads of a GQA group may pick different orders).
 */
function quantizeQK(be: WebGpuBackend, q: GPUBuffer, k: GPUBuffer, d: Dims, perm: GPUBuffer | null): GPUBuffer[] {
  const { B, H, Hkv, N, D, dtype } = d;
  const nB = blockCount(N);
  const Hk = perm ? H : Hkv;
  const q8 = scratchBuffer(be, 'q8', B * H * N * D);
  const qs = scratchBuffer(be, 'qscale', B * H * nB * 4);
  const k8 = scratchBuffer(be, 'k8', B * Hk * N * D);
  const ks = scratchBuffer(be, 'kscale', B * Hk * nB * 4);
  const mean = scratchBuffer(be, 'kmean', B * Hkv * D * 4);
  const zero = scratchBuffer(be, 'zero', B * H * D * 4); // never written: WebGPU zero-fills new buffers
  channelMeanInto(be, k, { B, H: Hkv, N, D, dtype }, mean);
  const extra = perm ? [perm] : [];
  const program = quantizeProgram(dtype, D, perm !== null);
  be.dispatch({ program, inputs: [q, zero, ...extra], outputs: [q8, qs], uniforms: packUniforms([['u32', N], ['u32', nB], ['u32', H], ['u32', H]]), grid: [nB, B * H, 1] });
  be.dispatch({ program, inputs: [k, mean, ...extra], outputs: [k8, ks], uniforms: packUniforms([['u32', N], ['u32', nB], ['u32', Hk], ['u32', Hkv]]), grid: [nB, B * Hk, 1] });
  return [q8, k8, qs, ks];
}

/**
 * The GPU block-sparse attention on raw buffers. With `perm` ([H * N], the per-head PARO
 * order) the tokens are taken in that order and the output is written back in the original
 * order: PARO end to end in one quantize step and one kernel, no permuted copies.
 */
export function runSparse(
  be: WebGpuBackend, x: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer }, d: Dims, mask: BlockMask | 'dense',
  qk: 'float' | 'int8', scale: number, path: NonNullable<SparseOptions['int8Path']>, perm: GPUBuffer | null, into?: Tensor,
  pv: 'float' | 'int8' = 'float',
): Tensor {
  const op = 'blockSparseAttention';
  const nB = blockCount(d.N);
  const canSgmatrix = qk === 'int8' && d.N % BLOCK === 0 && d.D % 32 === 0 && sgmatrixInt8Available(be.caps, be.wgslLanguageFeatures);
  if (qk === 'int8' && path === 'sgmatrix' && !canSgmatrix) {
    throw new ArgumentError(op, 'int8Path', "'auto' or 'plain' here: the i8 subgroup-matrix path needs an i8 16x16x32 config, subgroup size 32, subgroup_id, N % 64 == 0 and D % 32 == 0", path);
  }
  const canPV = qk === 'int8' && d.dtype === 'f16' && d.N % BLOCK === 0 && sgmatrixPVAvailable(be.caps, be.wgslLanguageFeatures, d.D);
  if (qk === 'int8' && path === 'sgmatrix-pv' && !canPV) {
    throw new ArgumentError(op, 'int8Path', "'auto' or 'plain' here: 'sgmatrix-pv' needs the 'sgmatrix' path's features, f16 tensors, an f16 16x16x16 config and workgroup memory for its tiles", path);
  }
  const usePV = canPV && path === 'sgmatrix-pv';
  const useSgmatrix = canSgmatrix && path === 'sgmatrix';
  if (pv === 'int8' && (usePV || useSgmatrix)) throw new ArgumentError(op, 'pv', "'float' with the subgroup-matrix paths ('int8' runs on the plain kernel)", pv);
  if (pv === 'int8') return runInt8PV(be, x, d, mask, scale, perm, into);
  const out = into ?? be.empty(op, d.dtype, [d.B, d.H, d.N, d.D]);
  let vbuf = x.v;
  if (usePV && perm) {
    // P.V fragments load V rows straight from storage, so V is gathered into PARO order first.
    vbuf = scratchBuffer(be, 'vperm', d.B * d.H * d.N * d.D * 2);
    gatherInto(be, x.v, perm, vbuf, { B: d.B, H: d.H, Hx: d.Hkv, N: d.N, D: d.D, dtype: d.dtype });
  }
  const inputs: GPUBuffer[] = qk === 'int8' ? quantizeQK(be, x.q, x.k, d, perm) : [x.q, x.k];
  if (qk === 'int8') inputs.splice(2, 0, vbuf);
  else inputs.push(vbuf);
  if (mask !== 'dense') {
    const m = maskOnDevice(be, mask);
    inputs.push(m.counts, m.lists);
  }
  if (perm) inputs.push(perm);
  const gathered = perm !== null;
  const rows16 = usePV && sgmatrixPVLayout() === 'rows16';
  be.dispatch({
    program: rows16
      ? sparseSgmatrixPV16Program(d.D, mask === 'dense', gathered)
      : usePV
      ? sparseSgmatrixPVProgram(d.D, mask === 'dense', gathered)
      : useSgmatrix
      ? sparseSgmatrixProgram(d.dtype, d.D, mask === 'dense', gathered)
      : sparseProgram({
        qk, dtype: d.dtype, headDim: d.D, dense: mask === 'dense', chunk: chunkFor(be.name), gathered,
        blockStaged: sparseStaging({ qk, headDim: d.D }, be.caps.maxComputeWorkgroupStorageSize),
      }),
    inputs, outputs: [be.buffer(out, op)],
    uniforms: sparseUniforms({ H: d.H, Hkv: d.Hkv, N: d.N, nB, scale: scale * LOG2E }),
    grid: [rows16 ? nB * 4 : nB, 1, d.B * d.H],
  });
  return out;
}

/** The plain int8 kernel with int8 V and integer P.V (SparseOptions.pv = 'int8'). */
function runInt8PV(be: WebGpuBackend, x: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer }, d: Dims, mask: BlockMask | 'dense', scale: number, perm: GPUBuffer | null, into?: Tensor): Tensor {
  const op = 'blockSparseAttention';
  const nB = blockCount(d.N);
  const Hv = perm ? d.H : d.Hkv;
  const chunk = chunkFor(be.name);
  const out = into ?? be.empty(op, d.dtype, [d.B, d.H, d.N, d.D]);
  const [q8, k8, qs, ks] = quantizeQK(be, x.q, x.k, d, perm);
  const vt = scratchBuffer(be, 'vt8', d.B * Hv * nB * d.D * 64);
  const vs = scratchBuffer(be, 'vscale', d.B * Hv * nB * d.D * 4);
  be.dispatch({
    program: quantizeVProgram(d.dtype, d.D, perm !== null),
    inputs: perm ? [x.v, perm] : [x.v], outputs: [vt, vs],
    uniforms: packUniforms([['u32', d.N], ['u32', nB], ['u32', Hv], ['u32', d.Hkv]]), grid: [nB, d.B * Hv, 1],
  });
  const inputs = [q8!, k8!, vt, qs!, ks!, vs];
  if (mask !== 'dense') {
    const m = maskOnDevice(be, mask);
    inputs.push(m.counts, m.lists);
  }
  if (perm) inputs.push(perm);
  be.dispatch({
    program: sparseInt8PVProgram({ dtype: d.dtype, headDim: d.D, dense: mask === 'dense', chunk, gathered: perm !== null }),
    inputs, outputs: [be.buffer(out, op)],
    uniforms: sparseUniforms({ H: d.H, Hkv: d.Hkv, N: d.N, nB, scale: scale * LOG2E }),
    grid: [nB, 1, d.B * d.H],
  });
  return out;
}

/** Checks a caller's output tensor: same backend, dtype and [B, H, N, D] as the query. */
export function checkOut(op: string, out: Tensor, q: Tensor): void {
  out.storage(op);
  if (out.backend !== q.backend) throw new BackendMismatchError(op, 'out', q.backend.name, out.backend.name);
  if (out.dtype !== q.dtype) throw new DTypeError(op, 'out', [q.dtype], out.dtype);
  if (out.rank !== q.rank || out.shape.some((s, i) => s !== q.shape[i])) throw new ShapeError(op, 'out', `[${q.shape.join(', ')}] (the query's shape)`, out.shape);
}

/** The per-head order as a device buffer (cached per index array). */
export function permOnDevice(be: WebGpuBackend, index: Uint32Array): GPUBuffer {
  return indexOnDevice(be, index);
}

/** Dense attention (no mask) with the same kernel: our dense comparator. */
export function denseAttention(q: Tensor, k: Tensor, v: Tensor, opts: SparseOptions = {}): Tensor {
  return blockSparseAttention(q, k, v, 'dense', opts);
}

/** V as the int8 P.V path sees it: per (head, 64-key block, channel) symmetric int8, dequantized. */
function int8BlockChannels(x: ArrayLike<number>, heads: number, N: number, D: number): Float64Array {
  const out = new Float64Array(heads * N * D);
  for (let hd = 0; hd < heads; hd++) for (let n0 = 0; n0 < N; n0 += BLOCK) {
    const n1 = Math.min(N, n0 + BLOCK);
    for (let e = 0; e < D; e++) {
      let mx = 0;
      for (let n = n0; n < n1; n++) mx = Math.max(mx, Math.abs(x[(hd * N + n) * D + e]!));
      const sc = mx === 0 ? 1 : Math.fround(mx / 127);
      for (let n = n0; n < n1; n++) {
        const i = (hd * N + n) * D + e;
        out[i] = Math.max(-127, Math.min(127, Math.round(x[i]! / sc))) * sc;
      }
    }
  }
  return out;
}

/** The float64 reference for blockSparseAttention, including the int8 recipe's rounding. */
function cpuBlockSparse(q: Tensor, k: Tensor, v: Tensor, mask: BlockMask | 'dense', qk: 'float' | 'int8', scale: number, d: Dims, pv: 'float' | 'int8' = 'float'): Tensor {
  const op = 'blockSparseAttention';
  const { B, H, Hkv, N, D } = d;
  const nB = blockCount(N);
  let qs = cpuValues(q, op);
  let kvals = cpuValues(k, op);
  const vs = pv === 'int8' ? int8BlockChannels(cpuValues(v, op), B * Hkv, N, D) : cpuValues(v, op);
  let qScale: Float32Array | null = null;
  let kScale: Float32Array | null = null;
  if (qk === 'int8') {
    const qq = quantizeBlocks(q);
    const kq = quantizeBlocks(k, { smooth: true });
    qs = cpuValues(qq.q, op);
    kvals = cpuValues(kq.q, op);
    qScale = qq.scales.handle(op) as Float32Array;
    kScale = kq.scales.handle(op) as Float32Array;
  }
  const out = new Float64Array(B * H * N * D);
  const logits = new Float64Array(N);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const bh = b * H + h;
    const kvbh = b * Hkv + Math.floor(h / (H / Hkv));
    for (let i = 0; i < N; i++) {
      const qb = Math.floor(i / BLOCK);
      const allowed = mask === 'dense' ? null : new Set(mask.lists[h]![qb]);
      let mx = -Infinity;
      for (let j = 0; j < N; j++) {
        logits[j] = -Infinity;
        if (allowed && !allowed.has(Math.floor(j / BLOCK))) continue;
        let s = 0;
        for (let e = 0; e < D; e++) s += qs[(bh * N + i) * D + e]! * kvals[(kvbh * N + j) * D + e]!;
        if (qScale && kScale) s *= qScale[bh * nB + qb]! * kScale[kvbh * nB + Math.floor(j / BLOCK)]!;
        logits[j] = s * scale;
        mx = Math.max(mx, logits[j]!);
      }
      let sum = 0;
      const o = (bh * N + i) * D;
      for (let j = 0; j < N; j++) {
        if (logits[j] === -Infinity) continue;
        const p = Math.exp(logits[j]! - mx);
        sum += p;
        const pv = qk === 'int8' ? Math.round(p * 127) / 127 : p;
        for (let e = 0; e < D; e++) out[o + e]! += pv * vs[(kvbh * N + j) * D + e]!;
      }
      for (let e = 0; e < D; e++) out[o + e]! /= sum;
    }
  }
  return tensor(q.backend, out, q.shape, d.dtype);
}
