import type { MatmulParams } from '../../backend.js';
import { ArgumentError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import type { Program } from '../program.js';
import { runCast } from './elementwise.js';
import { matmulUniforms } from './matmul-common.js';
import { genericGrid, genericMatmul } from './matmul-generic.js';
import { gemvChunks, gemvConfigName, gemvFits, gemvGrid, gemvMatmul, gemvSharedBytes, gemvUniforms, type GemvConfig } from './matmul-gemv.js';
import { hasSgmatrixF16, sgmatrixConfigName, sgmatrixFits, sgmatrixGrid, sgmatrixMatmul, type SgmatrixConfig } from './matmul-sgmatrix.js';
import { sgstagedConfigName, sgstagedFits, sgstagedGrid, sgstagedMatmul, sgstagedSharedBytes, type SgstagedConfig } from './matmul-sgstaged.js';
import { tiledConfigName, tiledConfigProblem, tiledGrid, tiledMatmul, type TiledConfig } from './matmul-tiled.js';

/**
 * Matmul variants side by side (llm.c style), each a Program factory in its own file:
 *   generic   matmul-generic.ts   16x16 tiles, one output per thread, any shape and dtype
 *   tiled     matmul-tiled.ts     register-blocked f32 accumulation, any shape
 *   sgmatrix  matmul-sgmatrix.ts  f16 subgroup matrices loaded from storage, shapes that divide the tile
 *   sgstaged  matmul-sgstaged.ts  the same with tiles staged in workgroup memory (chosen only
 *                                 when Dawn's robustness transform is off: slow with it on)
 *   gemv      matmul-gemv.ts      M <= 16 against a transposed weight, K % 8 == 0
 * runMatmul picks one from shape, dtypes, transposes and the adapter; matmulWith forces
 * one (tests and benchmarks), and so does ATTNKIT_MATMUL_VARIANT (e.g. `tiled:128,128,8,8,8`)
 * in Node for a whole process.
 */
export type MatmulVariant =
  | { kind: 'generic' }
  | { kind: 'tiled'; config: TiledConfig }
  | { kind: 'sgmatrix'; config: SgmatrixConfig }
  | { kind: 'sgstaged'; config: SgstagedConfig }
  | { kind: 'gemv'; config: GemvConfig };

/**
 * The tiled configuration for large outputs: 128x128x16 tiles, 8x8 per thread, 32-thread
 * blocks 8 columns wide, accumulators as separate variables (44.5 TFLOP/s at 8192^3 on the
 * H200 against 41.1-41.4 for the same tile without WM/VARS; benchmarks/results/h200/probes/f32-sweep.*.json).
 */
export const TILED_LARGE: TiledConfig = { BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, WM: 8, VARS: true };
/** For outputs with few rows (short prompts) or few columns: less padding work per tile. */
export const TILED_SMALL: TiledConfig = { BM: 32, BN: 64, BK: 16, TM: 4, TN: 4 };
/** Subgroup-matrix configurations, largest tile first; the first that divides the shape is used. */
export const SGMATRIX_CONFIGS: readonly SgmatrixConfig[] = [
  { SGR: 2, SGC: 2, FR: 4, FC: 4, KU: 2 },
  { SGR: 2, SGC: 2, FR: 4, FC: 4, KU: 1 },
  { SGR: 2, SGC: 2, FR: 2, FC: 2, KU: 1 },
  { SGR: 1, SGC: 1, FR: 1, FC: 1, KU: 1 },
];
/**
 * 8 weight rows per 64-thread workgroup: among the best of two H200 sweeps at 1x4096x4096 (f16
 * weights; the runs disagree on the order of the top four), and its reduction fits 16 KiB of
 * workgroup memory for 8 rows of x.
 */
/**
 * The staged configuration: 256x128 tiles, 8 subgroups of 4x4 fragments, one staging
 * buffer, fragment loads a step ahead: 82.8 and 90.2 TFLOP/s at 8192^3 f16 in two H200
 * sweeps, the best of both (benchmarks/results/h200/matmul-sgstaged-sweep.json).
 */
export const SGSTAGED_DEFAULT: SgstagedConfig = { SGR: 4, SGC: 2, FR: 4, FC: 4, BK: 32, PAD: 8, DB: false, FP: true };
export const GEMV_DEFAULT: GemvConfig = { R: 8, WG: 64 };

export function variantName(v: MatmulVariant): string {
  switch (v.kind) {
    case 'generic': return 'generic';
    case 'tiled': return `tiled-${tiledConfigName(v.config)}`;
    case 'sgmatrix': return `sgmatrix-${sgmatrixConfigName(v.config)}`;
    case 'sgstaged': return `sgstaged-${sgstagedConfigName(v.config)}`;
    case 'gemv': return `gemv-${gemvConfigName(v.config)}`;
  }
}

function nums(op: string, spec: string, n: number, optional = 0): number[] {
  const parts = spec.split(',').map(Number);
  if (parts.length < n || parts.length > n + optional || parts.slice(0, n).some((x) => !Number.isInteger(x) || x <= 0)) {
    throw new ArgumentError(op, 'variant', `${n} positive integers separated by commas${optional ? ` (then up to ${optional} optional)` : ''}`, spec);
  }
  return parts;
}

/**
 * Parses `generic`, `tiled[:BM,BN,BK,TM,TN[,DB]]` (DB=1: double-buffered staging), `sgmatrix[:SGR,SGC,FR,FC,KU]`,
 * `sgstaged[:SGR,SGC,FR,FC,BK[,PAD[,DB[,FP]]]]` (PAD halves of row padding, DB=0: one staging buffer,
 * FP=1: fragment loads a step ahead), `gemv[:R,WG]`;
 * a bare kind means that kind's default configuration.
 */
export function parseVariant(spec: string): MatmulVariant {
  const [kind, cfg] = spec.split(':') as [string, string | undefined];
  const op = 'matmul';
  switch (kind) {
    case 'generic': return { kind };
    case 'tiled': {
      if (!cfg) return { kind, config: TILED_LARGE };
      const [BM, BN, BK, TM, TN, DB] = nums(op, cfg, 5, 1) as [number, number, number, number, number, number | undefined];
      const config: TiledConfig = DB ? { BM, BN, BK, TM, TN, DB: true } : { BM, BN, BK, TM, TN };
      const bad = tiledConfigProblem(config);
      if (bad) throw new ArgumentError(op, 'variant', `a valid tiled configuration (${bad})`, spec);
      return { kind, config };
    }
    case 'sgmatrix': {
      if (!cfg) return { kind, config: SGMATRIX_CONFIGS[0]! };
      const [SGR, SGC, FR, FC, KU] = nums(op, cfg, 5) as [number, number, number, number, number];
      return { kind, config: { SGR, SGC, FR, FC, KU } };
    }
    case 'sgstaged': {
      if (!cfg) return { kind, config: SGSTAGED_DEFAULT };
      const [SGR, SGC, FR, FC, BK, PAD, DB, FP] = nums(op, cfg, 5, 3) as [number, number, number, number, number, number?, number?, number?];
      if (BK % 16) throw new ArgumentError(op, 'variant', 'a K slice (BK) that is a multiple of 16', spec);
      if (PAD === undefined) return { kind, config: { SGR, SGC, FR, FC, BK } };
      if (!Number.isInteger(PAD) || PAD < 0 || PAD % 8) throw new ArgumentError(op, 'variant', 'a row padding (PAD) that is a multiple of 8 halves', spec);
      if (DB === undefined) return { kind, config: { SGR, SGC, FR, FC, BK, PAD } };
      return { kind, config: FP === undefined ? { SGR, SGC, FR, FC, BK, PAD, DB: DB !== 0 } : { SGR, SGC, FR, FC, BK, PAD, DB: DB !== 0, FP: FP !== 0 } };
    }
    case 'gemv': {
      if (!cfg) return { kind, config: GEMV_DEFAULT };
      const [R, WG] = nums(op, cfg, 2) as [number, number];
      if (WG & (WG - 1)) throw new ArgumentError(op, 'variant', 'a power-of-two workgroup size for gemv', spec);
      return { kind, config: { R, WG } };
    }
    default:
      throw new ArgumentError(op, 'variant', "one of 'generic', 'tiled', 'sgmatrix', 'sgstaged', 'gemv' (optionally ':config')", spec);
  }
}

/** Why `v` cannot run this problem on this backend, or null when it can. */
export function variantProblem(be: WebGpuBackend, a: Tensor, b: Tensor, p: MatmulParams, v: MatmulVariant): string | null {
  switch (v.kind) {
    case 'generic': return null;
    case 'tiled': return tiledConfigProblem(v.config);
    case 'sgmatrix':
      if (!hasSgmatrixF16(be.caps)) return 'the adapter has no f16 16x16x16 subgroup matrices';
      if (a.dtype !== 'f16' || b.dtype !== 'f16') return `subgroup matrices need f16 operands (got ${a.dtype} x ${b.dtype})`;
      if (!sgmatrixFits(p, v.config)) return `M=${p.M}, N=${p.N}, K=${p.K} must be multiples of the ${sgmatrixConfigName(v.config)} tile`;
      return null;
    case 'sgstaged':
      if (!hasSgmatrixF16(be.caps)) return 'the adapter has no f16 16x16x16 subgroup matrices';
      if (a.dtype !== 'f16' || b.dtype !== 'f16') return `subgroup matrices need f16 operands (got ${a.dtype} x ${b.dtype})`;
      if (!sgstagedFits(p, v.config)) return `M=${p.M}, N=${p.N}, K=${p.K} must be multiples of the ${sgstagedConfigName(v.config)} tile`;
      if (sgstagedSharedBytes(v.config, p) > be.caps.maxComputeWorkgroupStorageSize) return 'staged tiles exceed maxComputeWorkgroupStorageSize';
      return null;
    case 'gemv':
      if (!gemvFits(p)) return `gemv needs transB, no transA, M <= 16 and K % 8 == 0 (got M=${p.M}, K=${p.K})`;
      if (gemvSharedBytes(p, v.config) > be.caps.maxComputeWorkgroupStorageSize) return 'gemv reduction exceeds maxComputeWorkgroupStorageSize';
      return null;
  }
}

/** The variant runMatmul uses for this problem. */
export function chooseVariant(be: WebGpuBackend, a: Tensor, b: Tensor, p: MatmulParams): MatmulVariant {
  const gemv: MatmulVariant = { kind: 'gemv', config: GEMV_DEFAULT };
  if (!variantProblem(be, a, b, p, gemv)) return gemv;
  // Staged tiles win only without the robustness transform, which clamps every fragment load.
  const staged: MatmulVariant = { kind: 'sgstaged', config: SGSTAGED_DEFAULT };
  if (!be.robustAccess && !variantProblem(be, a, b, p, staged)) return staged;
  for (const config of SGMATRIX_CONFIGS) {
    const v: MatmulVariant = { kind: 'sgmatrix', config };
    // The 16x16 single-subgroup tile is slower than the tiled kernel; use only the multi-subgroup ones.
    if (config.SGR * config.SGC > 1 && !variantProblem(be, a, b, p, v)) return v;
  }
  if (p.M * p.N < 32 * 32) return { kind: 'generic' };
  if (p.M >= 128 && p.N >= 128) return { kind: 'tiled', config: TILED_LARGE };
  return { kind: 'tiled', config: TILED_SMALL };
}

function envVariant(): MatmulVariant | null {
  const spec = typeof process !== 'undefined' ? process.env?.ATTNKIT_MATMUL_VARIANT : undefined;
  return spec ? parseVariant(spec) : null;
}

function programFor(be: WebGpuBackend, a: Tensor, b: Tensor, p: MatmulParams, v: Exclude<MatmulVariant, { kind: 'gemv' }>): { program: Program; grid: [number, number, number] } {
  switch (v.kind) {
    case 'generic': return { program: genericMatmul(a, b, p), grid: genericGrid(p) };
    case 'tiled': return { program: tiledMatmul(a, b, p, v.config), grid: tiledGrid(p, v.config) };
    case 'sgmatrix': return { program: sgmatrixMatmul(p, v.config, be.caps.subgroupMaxSize), grid: sgmatrixGrid(p, v.config) };
    case 'sgstaged': return { program: sgstagedMatmul(p, v.config, be.caps.subgroupMaxSize), grid: sgstagedGrid(p, v.config) };
  }
}

/** Runs matmul through a given variant; a variant that cannot run this problem is an ArgumentError. */
export function matmulWith(be: WebGpuBackend, a: Tensor, b: Tensor, p: MatmulParams, v: MatmulVariant, into?: Tensor): Tensor {
  const bad = variantProblem(be, a, b, p, v);
  if (bad) throw new ArgumentError('matmul', 'variant', `a variant that fits (${variantName(v)}: ${bad})`, variantName(v));
  // `into` (benchmarks: the kernel without a fresh output allocation per call) must be the f32 result itself.
  if (into && (into.dtype !== 'f32' || p.outDtype !== 'f32' || into.shape.join('x') !== p.outShape.join('x'))) {
    throw new ArgumentError('matmul', 'into', `an f32 tensor of shape [${p.outShape.join(', ')}] for an f32 result`, `${into.dtype} [${into.shape.join(', ')}]`);
  }
  const out = into ?? be.empty('matmul', 'f32', p.outShape);
  const inputs = [be.buffer(a, 'matmul'), be.buffer(b, 'matmul')];
  const outputs = [be.buffer(out, 'matmul')];
  if (v.kind === 'gemv') {
    for (const [row0, rows] of gemvChunks(p)) {
      be.dispatch({ program: gemvMatmul(a, b, rows, v.config), inputs, outputs, uniforms: gemvUniforms(p, row0), grid: gemvGrid(p, v.config) });
    }
  } else {
    const { program, grid } = programFor(be, a, b, p, v);
    be.dispatch({ program, inputs, outputs, uniforms: matmulUniforms(p), grid });
  }
  if (p.outDtype === 'f32') return out;
  // f16 results: accumulate in f32, then one rounding pass.
  const half = runCast(be, out, 'f16');
  out.dispose();
  return half;
}

export function runMatmul(be: WebGpuBackend, a: Tensor, b: Tensor, p: MatmulParams): Tensor {
  return matmulWith(be, a, b, p, envVariant() ?? chooseVariant(be, a, b, p));
}
