import { mulberry32, type Tensor } from '@attnkit/tensor';
import { AXIS_ORDERS, checkLayout, invertPermutation, orderPermutation, tokenCount, type AxisOrder, type VideoLayout } from './layout.js';
import { BLOCK, blockCount, checkDensity, rowsFromMass } from './mask.js';
import { ShapeError } from '@attnkit/tensor';

/** One head's calibration: the chosen order, every order's concentration score and the block mask. */
export interface HeadCalibration {
  order: AxisOrder;
  scores: Record<AxisOrder, number>;
  /** mask[qb] = ascending key blocks kept for query block qb, in the chosen order. */
  mask: number[][];
}

export interface Calibration {
  version: 1;
  layout: VideoLayout;
  density: number;
  heads: HeadCalibration[];
}

export interface CalibrateOptions {
  /** Target block density in (0, 1]; default 0.25. */
  density?: number;
  /** Density at which orders are scored; default `density` (at 1 every order scores 1). */
  scoreDensity?: number;
  /** Query rows sampled (uniformly, without replacement) to score the orders; default 256. */
  sampleRows?: number;
  /** Query rows per query block used to estimate the mask; default 2. */
  maskRowsPerBlock?: number;
  seed?: number;
  /** Logit scale; default 1/sqrt(D). */
  scale?: number;
}

/** Softmax row of query i over all keys, float64. q and k are one head's [N, D] rows. */
function probabilityRow(q: Float32Array, k: Float32Array, i: number, N: number, D: number, scale: number, out: Float64Array): void {
  let mx = -Infinity;
  const qo = i * D;
  for (let j = 0; j < N; j++) {
    let s = 0;
    const ko = j * D;
    for (let e = 0; e < D; e++) s += q[qo + e]! * k[ko + e]!;
    s *= scale;
    out[j] = s;
    if (s > mx) mx = s;
  }
  let sum = 0;
  for (let j = 0; j < N; j++) {
    const p = Math.exp(out[j]! - mx);
    out[j] = p;
    sum += p;
  }
  for (let j = 0; j < N; j++) out[j]! /= sum;
}

/**
 * Block concentration of an order (the README defines it): the share of the sampled
 * attention mass that a block mask of the target density keeps, where each query block
 * keeps its heaviest round(density * blocks) key blocks. mass[qb * n + kb] sums the sampled
 * rows' probabilities by (query block, key block) in that order.
 */
export function concentration(mass: Float64Array, n: number, density: number): number {
  const m = Math.max(1, Math.round(density * n));
  let kept = 0;
  let total = 0;
  const row = new Float64Array(n);
  for (let qb = 0; qb < n; qb++) {
    let rowSum = 0;
    for (let kb = 0; kb < n; kb++) { row[kb] = mass[qb * n + kb]!; rowSum += row[kb]!; }
    if (rowSum === 0) continue;
    total += rowSum;
    row.sort();
    for (let t = 0; t < m; t++) kept += row[n - 1 - t]!;
  }
  return total === 0 ? 0 : kept / total;
}

/** Copies one head (batch 0) as Float32Array [N, D], expanding GQA key heads. */
function headRows(all: Float32Array, H: number, h: number, N: number, D: number): Float32Array {
  return all.subarray(h * N * D, (h + 1) * N * D);
}

/**
 * PARO calibration from sample Q/K ([1, H, N, D] or [H, N, D] tensors on any backend): per
 * head, scores the six axis orders by block concentration, keeps the best (ties go to the
 * earlier order in AXIS_ORDERS, FHW first), and estimates that order's block mask at the
 * target density from `maskRowsPerBlock` rows of every query block.
 */
export async function calibrate(qt: Tensor, kt: Tensor, layout: VideoLayout, opts: CalibrateOptions = {}): Promise<Calibration> {
  const op = 'calibrate';
  const density = checkDensity(op, opts.density ?? 0.25);
  const scoreDensity = checkDensity(op, opts.scoreDensity ?? density);
  const qs = qt.rank === 4 ? qt.shape.slice(1) : qt.shape;
  const ks = kt.rank === 4 ? kt.shape.slice(1) : kt.shape;
  if (qs.length !== 3) throw new ShapeError(op, 'query', '[1, H, N, D] or [H, N, D]', qt.shape);
  const [H, N, D] = qs as [number, number, number];
  if (ks.length !== 3 || ks[1] !== N || ks[2] !== D || H % ks[0]! !== 0) throw new ShapeError(op, 'key', `[Hkv, ${N}, ${D}] with Hkv dividing ${H}`, kt.shape);
  checkLayout(op, layout, N);
  const Hkv = ks[0]!;
  const q = Float32Array.from(await qt.toArray()).subarray(0, H * N * D);
  const k = Float32Array.from(await kt.toArray()).subarray(0, Hkv * N * D);
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const n = blockCount(N);
  const perms = AXIS_ORDERS.map((o) => orderPermutation(layout, o));
  const blockOf = perms.map((p) => {
    const inv = invertPermutation(p);
    return Uint32Array.from(inv, (pos) => Math.floor(pos / BLOCK));
  });
  const rand = mulberry32(opts.seed ?? 0);
  const sampleCount = Math.min(N, opts.sampleRows ?? 256);
  const perRow = Math.max(1, Math.min(BLOCK, opts.maskRowsPerBlock ?? 2));
  const prob = new Float64Array(N);
  const heads: HeadCalibration[] = [];

  for (let h = 0; h < H; h++) {
    const qh = headRows(q, H, h, N, D);
    const kh = headRows(k, Hkv, Math.floor(h / (H / Hkv)), N, D);
    // Partial Fisher-Yates: a uniform sample of query rows without replacement.
    const idx = Uint32Array.from({ length: N }, (_, i) => i);
    for (let i = 0; i < sampleCount; i++) {
      const j = i + Math.floor(rand() * (N - i));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    const masses = AXIS_ORDERS.map(() => new Float64Array(n * n));
    for (let s = 0; s < sampleCount; s++) {
      const i = idx[s]!;
      probabilityRow(qh, kh, i, N, D, scale, prob);
      for (let o = 0; o < AXIS_ORDERS.length; o++) {
        const bo = blockOf[o]!;
        const base = bo[i]! * n;
        const mass = masses[o]!;
        for (let j = 0; j < N; j++) mass[base + bo[j]!]! += prob[j]!;
      }
    }
    const scores = {} as Record<AxisOrder, number>;
    let best = 0;
    AXIS_ORDERS.forEach((o, oi) => {
      scores[o] = concentration(masses[oi]!, n, scoreDensity);
      if (scores[o] > scores[AXIS_ORDERS[best]!] + 1e-12) best = oi;
    });
    // The mask of the chosen order, from rows spread evenly through every query block.
    const perm = perms[best]!;
    const bo = blockOf[best]!;
    const mass = new Float64Array(n * n);
    for (let qb = 0; qb < n; qb++) {
      const len = Math.min(N, (qb + 1) * BLOCK) - qb * BLOCK;
      for (let r = 0; r < Math.min(perRow, len); r++) {
        const i = perm[qb * BLOCK + Math.floor(((r + 0.5) * len) / Math.min(perRow, len))]!;
        probabilityRow(qh, kh, i, N, D, scale, prob);
        for (let j = 0; j < N; j++) mass[qb * n + bo[j]!]! += prob[j]!;
      }
    }
    heads.push({ order: AXIS_ORDERS[best]!, scores, mask: rowsFromMass(mass, n, density, layout.text ?? 0) });
  }
  return { version: 1, layout: { ...layout, text: layout.text ?? 0 }, density, heads };
}

/** Tokens a calibration was made for. */
export function calibrationTokens(c: Calibration): number {
  return tokenCount(c.layout);
}
