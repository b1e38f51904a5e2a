import { DensityError } from './errors.js';

/** Sparse-mask granularity: 64 x 64 tokens, as in PARO and SageAttention. */
export const BLOCK = 64;

/**
 * A per-head block mask over the (permuted) token sequence: for each head and query block,
 * the sorted list of key blocks to compute. Kept as lists, not N x N flags, so the kernel
 * never scans empty blocks.
 */
export interface BlockMask {
  heads: number;
  tokens: number;
  /** ceil(tokens / BLOCK); the grid is square (self-attention). */
  blocks: number;
  /** lists[h][qb] = ascending key-block indices. */
  lists: number[][][];
}

export function checkDensity(op: string, density: unknown): number {
  if (typeof density !== 'number' || !(density > 0 && density <= 1)) throw new DensityError(op, density);
  return density;
}

export function blockCount(tokens: number): number {
  return Math.ceil(tokens / BLOCK);
}

/** Every block: dense attention expressed as a block mask. */
export function fullMask(heads: number, tokens: number): BlockMask {
  const n = blockCount(tokens);
  const all = Array.from({ length: n }, (_, i) => i);
  return { heads, tokens, blocks: n, lists: Array.from({ length: heads }, () => Array.from({ length: n }, () => [...all])) };
}

/** Kept blocks / all blocks, over every head. */
export function maskDensity(m: BlockMask): number {
  let kept = 0;
  for (const head of m.lists) for (const row of head) kept += row.length;
  return kept / (m.heads * m.blocks * m.blocks);
}

/**
 * The block mask of one head at `density` from an estimate of its block attention mass
 * (mass[qb * n + kb]): each query-block row keeps round(density * n) key blocks (at least
 * one), the diagonal block first (a query always sees its own block), then the heaviest.
 * Blocks holding a text token are forced dense, as rows and as columns.
 */
export function rowsFromMass(mass: Float64Array, n: number, density: number, textTokens: number): number[][] {
  const perRow = Math.max(1, Math.round(density * n));
  const textBlocks = Math.ceil(textTokens / BLOCK);
  const rows: number[][] = [];
  for (let qb = 0; qb < n; qb++) {
    if (qb < textBlocks) {
      rows.push(Array.from({ length: n }, (_, i) => i));
      continue;
    }
    const keep = new Set<number>([qb]);
    for (let kb = 0; kb < textBlocks; kb++) keep.add(kb);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => mass[qb * n + b]! - mass[qb * n + a]! || a - b);
    for (const kb of order) {
      if (keep.size >= perRow) break;
      keep.add(kb);
    }
    rows.push([...keep].sort((a, b) => a - b));
  }
  return rows;
}

/** Flattens a mask for the GPU: counts[h * n + qb] and indices[(h * n + qb) * n + i]. */
export function packMask(m: BlockMask): { counts: Uint32Array; indices: Uint32Array } {
  const n = m.blocks;
  const counts = new Uint32Array(m.heads * n);
  const indices = new Uint32Array(m.heads * n * n);
  m.lists.forEach((head, h) => head.forEach((row, qb) => {
    counts[h * n + qb] = row.length;
    indices.set(row, (h * n + qb) * n);
  }));
  return { counts, indices };
}
