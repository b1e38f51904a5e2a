import { ArgumentError, gridFor, LimitError, packUniforms, uniformStruct, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { Problem } from '../problem.js';
import { hasF16SubgroupMatrix, headGroupOrderWgsl, KEY_BOUNDS_WGSL, keyTilesWgsl, NEG, NEG_INF_FN } from './common.js';

/**
 * What the tiled (sgflash.ts) and wide (sgflash-wide.ts) subgroup-matrix prefills share: one
 * uniform (log2-scaled softmax scale, mask fields), one binding layout, the lazy-rescale
 * constants, the key-tile and mask functions, and the dispatch. Each kernel keeps its own tiling.
 */
const FIELDS = [
  ['B', 'u32'], ['Hq', 'u32'], ['Hkv', 'u32'], ['group', 'u32'],
  ['S', 'u32'], ['cap', 'u32'], ['kvLen', 'u32'], ['qTiles', 'u32'],
  ['scale2', 'f32'], ['causal', 'u32'], ['window', 'u32'], ['sinks', 'u32'],
] as const;

/** The uniform struct and the six bindings (Q, K, V as f16 or packed words; O f16; lse f32). */
export function sgPrefillHeader(kType: string, vType: string): string {
  return `${uniformStruct('U', FIELDS)}
@group(0) @binding(0) var<storage, read> qb: array<f16>;
@group(0) @binding(1) var<storage, read> kb: array<${kType}>;
@group(0) @binding(2) var<storage, read> vb: array<${vType}>;
@group(0) @binding(3) var<storage, read_write> ob: array<f16>;
@group(0) @binding(4) var<storage, read_write> lseb: array<f32>;
@group(0) @binding(5) var<uniform> u: U;`;
}

/** Softmax constants in log2 units; TAU is the lazy rescale's threshold. */
export function sgSoftmaxConsts(tau: number): string {
  return `const NEG = ${NEG};
const HALF_NEG = -5.0e29;
const TAU = ${tau.toFixed(1)};
const LN2 = 0.6931471805599453;
${NEG_INF_FN}`;
}

/** First key of the it-th visited tile (sink tiles first), and the per-key mask. */
export const SG_TILE_AND_MASK_WGSL = `fn tile_kt(it: u32, start2: u32, n_sink: u32) -> u32 { return select(start2 + it - n_sink, it, it < n_sink) * KT; }

fn visible(j: u32, pos: i32) -> bool {
  var ok = j < u.kvLen;
  if (u.causal != 0u) { ok = ok && i32(j) <= pos; }
  if (u.window > 0u) { ok = ok && (i32(j) > pos - i32(u.window) || j < u.sinks); }
  return ok;
}`;

/**
 * The entry point of a kernel with WG invocations whose workgroups each own BQ query rows of
 * one (batch, head): it decodes b, hq, hk and the first row w0, longest causal rows first
 * (within groups of `headGroup` (batch, head) pairs when it is > 0).
 */
export function sgPrefillEntry(WG: number, headGroup = 0): string {
  return `@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  let nbh = u.B * u.Hq;
  if (g >= nbh * u.qTiles) { return; }
${headGroup ? headGroupOrderWgsl(headGroup) : `  let bh = g % nbh;
  // The longest causal rows first, so the short tiles fill the tail.
  let tile = u.qTiles - 1u - g / nbh;`}
  let b = bh / u.Hq;
  let hq = bh % u.Hq;
  let hk = hq / u.group;
  let w0 = tile * BQ;`;
}

/**
 * Why a problem cannot run on a subgroup-matrix prefill with KT-key tiles (null: it can):
 * the adapter (skipped when `emulated`), dtype, S, capacity and mask kind, then the kernel's
 * own variant check and its workgroup memory against the adapter's.
 */
export function sgPrefillWhyNot(be: WebGpuBackend, p: Problem, KT: number, emulated: boolean, kernel: { check: () => void; bytes: number }): string | null {
  const reasons: string[] = [];
  if (!emulated && !hasF16SubgroupMatrix(be.caps)) reasons.push(`an adapter with f16 16x16x16 subgroup-matrix configs and a fixed subgroup size (${be.name} has none)`);
  if (p.dtype !== 'f16') reasons.push('f16 inputs');
  if (p.S % 16 !== 0) reasons.push('S a multiple of 16');
  if (Math.ceil(p.kvLength / KT) * KT > p.cap) reasons.push(`K/V capacity >= kvLength rounded up to ${KT}`);
  if (p.blocks || p.bias) reasons.push('no block-list or bias mask');
  try {
    kernel.check();
  } catch (e) {
    reasons.push((e as Error).message);
  }
  if (kernel.bytes > be.caps.maxComputeWorkgroupStorageSize) reasons.push(`${kernel.bytes} bytes of workgroup memory (the adapter allows ${be.caps.maxComputeWorkgroupStorageSize})`);
  return reasons.length ? reasons.join('; ') : null;
}

/**
 * WGSL for one lane's step of the pairs' softmax over tile `tile` (its first key `kt` set by
 * the caller): its E scores of row `wr` read from `ss` (score `k` at column lcol + col(k)),
 * masked where the tile is not inside the full range, the row's tile max combined over the
 * lanes `xor` names, the lazy max update (alpha, and `need` when O must be rescaled), then P
 * (`pExpr` of the shifted score) into `pw` and the row's sum `ps`. `skip` times the step
 * without the softmax (no score reads, no P writes); `declareNeed` declares `need` here.
 */
export function sgLaneSoftmaxWgsl(o: {
  E: number; col: (k: number) => number; xor: readonly number[]; tile: string;
  pExpr: (arg: string) => string; skip: boolean; declareNeed: boolean;
}): string {
  const ks = Array.from({ length: o.E }, (_, k) => k);
  const read = o.skip ? 'let mt = 0.0;\n    let live = true;' : `
    let full = ${o.tile} >= n_sink && kt >= full_lo && kt + KT <= full_hi;
    let srow = wr * SS + lcol;
${ks.map((k) => `    var x${k} = ss[srow + ${o.col(k)}u] * u.scale2;`).join('\n')}
    if (!full) {
${ks.map((k) => `      x${k} = select(NEG, x${k}, visible(kt + lcol + ${o.col(k)}u, pos));`).join('\n')}
    }
    var mt = ${ks.reduce((acc, k) => (acc ? `max(${acc}, x${k})` : `x${k}`), '')};
    ${o.xor.map((x) => `mt = max(mt, subgroupShuffleXor(mt, ${x}u));`).join('\n    ')}
    let live = mt > HALF_NEG;`;
  const write = o.skip ? 'let ps = 1.0;' : `
    let mu = select(-NEG, m, live);
    var ps = 0.0;
    let prow = wr * PS + lcol;
${ks.map((k) => `    { let p = ${o.pExpr(`x${k} - mu`)}; pw[prow + ${o.col(k)}u] = p; ps += f32(p); }`).join('\n')}
    ${o.xor.map((x) => `ps += subgroupShuffleXor(ps, ${x}u);`).join('\n    ')}`;
  return `${read}
    var alpha = 1.0;
    ${o.declareNeed ? 'var need = false;\n    ' : ''}if (live) {
      if (l == 0.0) { m = mt; }
      else if (mt > m + TAU) { alpha = exp2(m - mt); m = mt; need = true; }
    }
    ${write}`;
}

/**
 * The workgroup's key range (rows w0 .. w0+BQ-1 of one (b, hk)): the key-tile bounds the
 * masks allow, [full_lo, full_hi) where no per-key mask is needed, and kvbase.
 */
export const SG_KEY_RANGE_WGSL = `  let p_first = i32(u.kvLen) - i32(u.S) + i32(w0);
  let p_last = i32(u.kvLen) - i32(u.S) + i32(min(w0 + BQ, u.S) - 1u);
${KEY_BOUNDS_WGSL}
  // Keys every row of the workgroup sees: tiles inside [full_lo, full_hi) skip the per-key mask.
  var full_hi = u.kvLen;
  if (u.causal != 0u) { full_hi = u32(clamp(p_first + 1, 0, i32(u.kvLen))); }
  var full_lo = 0u;
  if (u.window > 0u) { full_lo = u32(clamp(p_last - i32(u.window) + 1, 0, i32(u.kvLen))); }
${keyTilesWgsl('KT')}
  let kvbase = (b * u.Hkv + hk) * u.cap;`;

/** A rewrite of a kernel's WGSL (the tests emulate subgroup matrices on lavapipe with one), named in its cache key. */
export interface SourceRewrite { tag: string; rewrite(src: string): string }

/** The Program of a subgroup-matrix prefill whose WGSL `source` builds (rewritten by `rw` when given). */
export function sgPrefillProgram(key: string, source: () => string, rw?: SourceRewrite): Program {
  return { key: key + (rw ? `/${rw.tag}` : ''), source: () => (rw ? rw.rewrite(source()) : source()), inputs: 3, outputs: 2, uniform: true };
}

export function sgPrefillUniforms(p: Problem, qTiles: number): ArrayBuffer {
  const values: Record<(typeof FIELDS)[number][0], number> = {
    B: p.B, Hq: p.Hq, Hkv: p.Hkv, group: p.Hq / p.Hkv, S: p.S, cap: p.cap, kvLen: p.kvLength, qTiles,
    scale2: p.scale * Math.LOG2E, causal: p.causal ? 1 : 0, window: p.window, sinks: p.sinks,
  };
  return packUniforms(FIELDS.map(([n, t]) => [t, values[n]] as const));
}

/**
 * Checks the problem's S and K/V capacity (with `shapeCheck`: the kernel's name and key tile)
 * and the kernel's workgroup memory against the adapter, allocates the f16 output
 * [B, Hq, S, D] and the f32 log-sum-exp [B, Hq, S], and dispatches one workgroup per
 * (batch, head, BQ query rows).
 */
export function dispatchSgPrefill(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, v: Tensor, kernel: { program: Program; workgroupBytes: number; rows: number; shapeCheck?: { name: string; KT: number } }): { out: Tensor; lse: Tensor } {
  const sc = kernel.shapeCheck;
  if (sc && p.S % 16 !== 0) throw new ArgumentError(p.op, `${sc.name} subgroup-matrix prefill S`, 'a multiple of 16', p.S);
  if (sc && Math.ceil(p.kvLength / sc.KT) * sc.KT > p.cap) throw new ArgumentError(p.op, `${sc.name} subgroup-matrix prefill K/V capacity`, `>= kvLength rounded up to ${sc.KT}`, p.cap);
  const limit = be.caps.maxComputeWorkgroupStorageSize;
  if (kernel.workgroupBytes > limit) throw new LimitError(p.op, 'maxComputeWorkgroupStorageSize (bytes)', kernel.workgroupBytes, limit);
  const qTiles = Math.ceil(p.S / kernel.rows);
  const out = be.empty(p.op, 'f16', [p.B, p.Hq, p.S, p.D]);
  const lse = be.empty(p.op, 'f32', [p.B, p.Hq, p.S]);
  be.dispatch({
    program: kernel.program,
    inputs: [be.buffer(q, p.op), be.buffer(k, p.op), be.buffer(v, p.op)],
    outputs: [be.buffer(out, p.op), be.buffer(lse, p.op)],
    uniforms: sgPrefillUniforms(p, qTiles),
    grid: gridFor(p.B * p.Hq * qTiles),
  });
  return { out, lse };
}
