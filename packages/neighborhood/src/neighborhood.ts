import { cpuValues, gridFor, LimitError, tensor, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import { chunkFor, neighborhoodProgram, packKernelUniforms } from './kernel.js';
import { describe, paddedAxes, type NeighborhoodOptions, type Problem } from './options.js';
import { neighborhoodReference } from './reference.js';
import { runSg, sgConfigFor } from './sgmatrix.js';

const LOG2E = 1.4426950408889634;

/** Query tile per rank, 64 queries each: a line, a square, a cube. */
const TILES: Record<number, [number, number, number]> = { 1: [1, 1, 64], 2: [1, 8, 8], 3: [4, 4, 4] };

function run(rank: number, q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodOptions, op: string): Tensor {
  const p = describe(op, rank, q, k, v, opts);
  if (q.backend.kind === 'cpu') {
    const out = neighborhoodReference(p, cpuValues(q, op), cpuValues(k, op), cpuValues(v, op));
    return tensor(q.backend, out, q.shape, p.dtype);
  }
  const sg = sgConfigFor(q.backend as WebGpuBackend, p, rank);
  if (sg) return runSg(p, q, k, v, sg);
  return runGpu(p, q, k, v, TILES[rank]!, false);
}

/** The plain fused kernel with an explicit query tile (benchmarks sweep it). */
export function runGpu(p: Problem, q: Tensor, k: Tensor, v: Tensor, tile: [number, number, number], maskFree: boolean): Tensor {
  const be = q.backend as WebGpuBackend;
  const { L, k: ks, d, causal } = paddedAxes(p);
  const tpg = L.map((len, a) => Math.ceil(Math.ceil(len / d[a]!) / tile[a]!));
  const tiles = tpg.reduce((acc, t, a) => acc * t * d[a]!, 1);
  // Batch x heads is the grid's z dimension.
  if (p.batch * p.heads > 65535) throw new LimitError(p.op, 'maxComputeWorkgroupsPerDimension (batch x heads)', p.batch * p.heads, 65535);
  const out = be.empty(p.op, p.dtype, q.shape);
  const grid = gridFor(tiles);
  be.dispatch({
    program: neighborhoodProgram({ dtype: p.dtype, headDim: p.headDim, tile, maskFree, chunk: chunkFor(be.name) }),
    inputs: [be.buffer(q, p.op), be.buffer(k, p.op), be.buffer(v, p.op)],
    outputs: [be.buffer(out, p.op)],
    uniforms: packKernelUniforms({ H: p.heads, Hkv: p.kvHeads, L, k: ks, d, causal, tpg, tilesX: tiles, scaleLog2: p.scale * LOG2E }),
    grid: [grid[0], grid[1], p.batch * p.heads],
  });
  return out;
}

/**
 * 1-D neighborhood attention. q [B, H, L, D], k/v [B, Hkv, L, D] (Hkv divides H: GQA),
 * f32 or f16. Each query sees kernelSize keys of its dilation group, the window shifted
 * inward at the borders (NATTEN semantics); causal windows end at the query.
 */
export function na1d(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodOptions): Tensor {
  return run(1, q, k, v, opts, 'na1d');
}

/** 2-D neighborhood attention over [B, H, X, Y, D]; options per axis. */
export function na2d(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodOptions): Tensor {
  return run(2, q, k, v, opts, 'na2d');
}

/** 3-D neighborhood attention over [B, H, X, Y, Z, D] (e.g. frames, height, width). */
export function na3d(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodOptions): Tensor {
  return run(3, q, k, v, opts, 'na3d');
}

/**
 * Dense attention (no mask) over [B, H, N, D]: the full-window case, which NATTEN also
 * flattens to plain attention. On the GPU it is the same fused kernel with the window test
 * removed, so it is the honest dense baseline for the neighborhood kernels.
 */
export function denseAttention(q: Tensor, k: Tensor, v: Tensor, opts: { scale?: number } = {}): Tensor {
  const N = q.shape[2] ?? 0;
  const p = describe('denseAttention', 1, q, k, v, { kernelSize: N, ...(opts.scale !== undefined ? { scale: opts.scale } : {}) });
  if (q.backend.kind === 'cpu') {
    return tensor(q.backend, neighborhoodReference(p, cpuValues(q, p.op), cpuValues(k, p.op), cpuValues(v, p.op)), q.shape, p.dtype);
  }
  return runGpu(p, q, k, v, [1, 1, 64], true);
}
