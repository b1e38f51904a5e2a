import { ArgumentError, gridFor, packUniforms, uniformStruct, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { Problem } from '../problem.js';
import { checkWorkgroupBytes, hasF16SubgroupMatrix, KEY_BOUNDS_WGSL, keyTilesWgsl, NEG, NEG_INF_FN } from './common.js';

export { hasF16SubgroupMatrix };
import { checkSgFlashVariant, runSgFlash, SG_FLASH_DEFAULT, SG_FLASH_FALLBACKS, sgFlashLayout, type SgFlashVariant } from './sgflash.js';
import { sgPrefillWhyNot } from './sg-prefill-common.js';
import { runSgPingPong, SG_PINGPONG_DEFAULT, sgPingPongUnsupported } from './sgflash-pingpong.js';
import { runSgWide, sgWideChoose } from './sgflash-wide.js';

/**
 * f16 prefill through subgroup matrices (cooperative matrices / tensor cores): the entry
 * point, its configuration and support check, and the first kernel ('v1').
 *
 * The default kernel is the tiled one in sgflash.ts (8 subgroups x 16 query rows per
 * workgroup, 32-key K/V tiles staged in workgroup memory with 16-byte loads issued a tile
 * ahead, O resident in result fragments, lazy rescale, no barriers between a subgroup's own
 * lanes; SG_FLASH_FALLBACKS where it cannot be built). On the H200
 * (benchmarks/results/h200/probes/attn-sg-sweep.s8r6.json, B1 H32 S4096 D128 causal, median of 40
 * round-robin turns) it ran 0.994 ms = 138 TFLOP/s against 1.402 ms for the session's
 * starting default, matching the plain kernel to 4.9e-4 and the float64 CPU reference to
 * 4.9e-4 on GQA, partial-tile, queries-at-the-end and window+sink checks.
 *
 * 'v1': one subgroup is one workgroup and owns 16 query rows. Per key tile of KT keys:
 * S = Q·Kᵀ with the Q fragments held in registers and Kᵀ fragments loaded straight from
 * storage (column-major view of K's rows); S goes to workgroup memory, where pairs of
 * lanes run the online softmax of one row (scale, mask, running max/sum), write P as f16
 * and rescale that row of the f32 output accumulator, which lives in workgroup memory
 * because a result fragment's rows cannot be scaled in registers; then O += P·V with V
 * fragments from storage.
 *
 * `sync` selects how lanes see each other's workgroup-memory writes: 'barrier' uses
 * workgroupBarrier() (the workgroup is one subgroup, so it is a subgroup barrier), 'none'
 * relies on the subgroup running converged (what NVIDIA warps do), because staged
 * subgroup-matrix kernels with barriers in the loop crashed Dawn before
 * (shared/gpu/README.md, "Known trap"). The benchmark checks either against the plain path.
 */
export type SgSync = 'barrier' | 'none';

/**
 * How the per-tile score accumulator starts: 'ctor' assigns the zero-value constructor,
 * 'mul' starts from subgroupMatrixMultiply of the first fragment pair. A bare
 * `var acc: subgroup_matrix_result<...>;` inside the loop is not enough: the first H200 run
 * gave the same large error (0.72) with and without barriers and for every key tile,
 * which is what a zero-init hoisted out of the loop (scores accumulating across tiles) does;
 * with either explicit start the second run matched the plain kernel to 4.9e-4.
 */
export type SgInit = 'ctor' | 'mul';

/**
 * Which subgroup-matrix kernel runs: 'wide' (sgflash-wide.ts: pairs of subgroups share 32
 * query rows, so each K/V fragment load feeds two multiplies), 'tiled' (sgflash.ts: several
 * subgroups per workgroup, K/V staged once per workgroup, O resident in result fragments,
 * lazy rescale), 'v1' (this file: one subgroup per workgroup, O in workgroup memory,
 * rescaled every tile), 'pingpong' (sgflash-pingpong.ts: the wide kernel's pairs in two
 * teams, one multiplying while the other runs its softmax), or 'auto': 'wide' where it takes
 * the problem, else 'tiled'. On the H200 (B1 H32 S4096 D128 causal, interleaved) 'wide' ran
 * 0.898 ms and 'tiled' 1.055 ms (session 8 round 6), 'pingpong' 1.16 ms against 'wide'
 * 0.91 ms (session 9 rounds 1-5), all within 4.9e-4 of the float64 reference.
 */
export type SgKernel = 'auto' | 'wide' | 'tiled' | 'v1' | 'pingpong';
export type SgTiledOptions = Partial<Omit<SgFlashVariant, 'D' | 'sgSize'>>;

let sgKernel: SgKernel = 'auto';
let tiled: Omit<SgFlashVariant, 'D' | 'sgSize'> = { ...SG_FLASH_DEFAULT };
// Until a benchmark configures a variant, the default falls back where it cannot run.
let tiledIsDefault = true;
let sgSync: SgSync = 'barrier';
let sgKeyTile = 64;
// Both starts gave the same results on the H200; 'mul' with 64-key tiles was fastest.
let sgInit: SgInit = 'mul';
// Window/sink masks matched the float64 CPU reference on the H200 with both kernels (round-1 sweep).
let windowMasks = true;

/**
 * Benchmarks pick the variant (the H200 runs record which one worked). `sync`, `init` and
 * `keyTile` apply to 'v1' (as they always did); `tiled` overrides fields of the tiled
 * kernel's variant (`tiled: {}` restores its default); `windowMasks: false` keeps
 * window/sink masks on the plain kernel.
 */
export function configureSgPrefill(opts: { kernel?: SgKernel; sync?: SgSync; keyTile?: number; init?: SgInit; tiled?: SgTiledOptions; windowMasks?: boolean }): void {
  if (opts.windowMasks !== undefined) windowMasks = opts.windowMasks;
  if (opts.kernel) {
    if (!['auto', 'wide', 'tiled', 'v1', 'pingpong'].includes(opts.kernel)) throw new ArgumentError('configureSgPrefill', 'kernel', "'auto', 'wide', 'tiled', 'v1' or 'pingpong'", opts.kernel);
    sgKernel = opts.kernel;
  }
  if (opts.sync) sgSync = opts.sync;
  if (opts.init) sgInit = opts.init;
  if (opts.tiled) {
    const reset = Object.keys(opts.tiled).length === 0;
    const next = reset ? { ...SG_FLASH_DEFAULT } : { ...tiled, ...opts.tiled };
    checkSgFlashVariant({ ...next, D: 128, sgSize: 32 }, 'configureSgPrefill');
    tiled = next;
    tiledIsDefault = reset;
  }
  if (opts.keyTile) {
    if (![16, 32, 64].includes(opts.keyTile)) throw new ArgumentError('configureSgPrefill', 'keyTile', '16, 32 or 64', opts.keyTile);
    sgKeyTile = opts.keyTile;
  }
}

/** The kernel and variant the subgroup-matrix path uses now (for benchmark notes). */
export function sgPrefillConfig(): { kernel: SgKernel; tiled: Omit<SgFlashVariant, 'D' | 'sgSize'>; v1: { sync: SgSync; keyTile: number; init: SgInit } } {
  return { kernel: sgKernel, tiled: { ...tiled }, v1: { sync: sgSync, keyTile: sgKeyTile, init: sgInit } };
}

const FIELDS = [
  ['B', 'u32'], ['Hq', 'u32'], ['Hkv', 'u32'], ['group', 'u32'],
  ['S', 'u32'], ['cap', 'u32'], ['kvLen', 'u32'], ['qTiles', 'u32'],
  ['scale', 'f32'], ['causal', 'u32'], ['window', 'u32'], ['sinks', 'u32'],
] as const;


function fits(be: WebGpuBackend, v: SgFlashVariant): boolean {
  try {
    checkSgFlashVariant(v);
  } catch {
    return false;
  }
  return sgFlashLayout(v).bytes <= be.caps.maxComputeWorkgroupStorageSize;
}

function tiledVariant(be: WebGpuBackend, D: number): SgFlashVariant {
  const v = { ...tiled, D, sgSize: be.caps.subgroupMaxSize };
  if (tiledIsDefault && !fits(be, v)) {
    for (const f of SG_FLASH_FALLBACKS) {
      const fb = { ...f, D, sgSize: be.caps.subgroupMaxSize };
      if (fits(be, fb)) return fb;
    }
  }
  return v;
}

/** Whether the subgroup-matrix kernel can take this problem; with `explain`, throws saying why not. */
export function sgPrefillSupported(be: WebGpuBackend, p: Problem, explain = false): boolean {
  if (sgKernel === 'auto' && sgWideChoose(be, p).variant && (p.window === 0 || windowMasks)) return true;
  const why = sgKernel === 'wide' ? sgWideChoose(be, p).why : sgKernel === 'pingpong' ? sgPingPongUnsupported(be, p) : tiledOrV1WhyNot(be, p);
  const reasons = why ? [why] : [];
  if (p.window > 0 && !windowMasks) reasons.push('no window mask (windowMasks is off)');
  if (reasons.length && explain) throw new ArgumentError(p.op, 'subgroup-matrix prefill', reasons.join(', '), 'unsupported problem');
  return reasons.length === 0;
}

/** Why the tiled kernel ('tiled', or 'auto' where the wide one cannot run) or v1 cannot take the problem (null: it can). */
function tiledOrV1WhyNot(be: WebGpuBackend, p: Problem): string | null {
  const tv = sgKernel === 'tiled' || sgKernel === 'auto' ? tiledVariant(be, p.D) : null;
  const check = (): void => {
    if (!tv) return;
    try {
      checkSgFlashVariant(tv, p.op);
    } catch (e) {
      throw new Error(`a head dim the tiled variant can be built for (${(e as Error).message})`);
    }
  };
  // v1 checks its workgroup memory when it runs.
  return sgPrefillWhyNot(be, p, tv ? tv.KT : sgKeyTile, false, { check, bytes: tv ? sgFlashLayout(tv).bytes : 0 });
}

function sgSource(D: number, KT: number, sync: SgSync, subgroupSize: number, init: SgInit): string {
  const NF = D / 16;
  const NB = KT / 16;
  const BAR = sync === 'barrier' ? 'workgroupBarrier();' : '';
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  const A = 'subgroup_matrix_result<f32, 16, 16>';
  // Lanes per row: the subgroup's lanes split the 16 rows.
  const LPR = subgroupSize / 16;
  const xor = Array.from({ length: Math.log2(LPR) }, (_, k) => 1 << k);
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, subgroup_uniformity);
${uniformStruct('U', FIELDS)}
@group(0) @binding(0) var<storage, read> qb: array<f16>;
@group(0) @binding(1) var<storage, read> kb: array<f16>;
@group(0) @binding(2) var<storage, read> vb: array<f16>;
@group(0) @binding(3) var<storage, read_write> ob: array<f16>;
@group(0) @binding(4) var<storage, read_write> lseb: array<f32>;
@group(0) @binding(5) var<uniform> u: U;
const D = ${D}u;
const KT = ${KT}u;
const LPR = ${LPR}u;
const NEG = ${NEG};
${NEG_INF_FN}
var<workgroup> s_s: array<f32, ${16 * KT}>;
var<workgroup> s_p: array<f16, ${16 * KT}>;
var<workgroup> s_o: array<f32, ${16 * D}>;

@compute @workgroup_size(${subgroupSize})
fn main(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  let tile = g % u.qTiles;
  let bh = g / u.qTiles;
  if (bh >= u.B * u.Hq) { return; }
  let b = bh / u.Hq;
  let h = bh % u.Hq;
  let hk = h / u.group;
  let i0 = tile * 16u;
  let r = lane / LPR;
  let part = lane % LPR;
  let i = i0 + r;
  let pos = i32(u.kvLen) - i32(u.S) + i32(i);

  var qf: array<${L}, ${NF}>;
  for (var f = 0u; f < ${NF}u; f++) { qf[f] = subgroupMatrixLoad<${L}>(&qb, (bh * u.S + i0) * D + f * 16u, false, D); }
  for (var e = lane; e < 16u * D; e += ${subgroupSize}u) { s_o[e] = 0.0; }
  var m = NEG;
  var l = 0.0;

  let p_first = i32(u.kvLen) - i32(u.S) + i32(i0);
  let p_last = p_first + 15;
${KEY_BOUNDS_WGSL}
${keyTilesWgsl('KT')}
  let kvbase = (b * u.Hkv + hk) * u.cap;

  for (var it = 0u; it < n_tiles; it++) {
    let kt = select(start2 + it - n_sink, it, it < n_sink) * KT;
    let kbase = (kvbase + kt) * D;
    for (var nb = 0u; nb < ${NB}u; nb++) {
${init === 'ctor' ? `      var acc = ${A}();
      for (var f = 0u; f < ${NF}u; f++) {` : `      var acc = subgroupMatrixMultiply<f32>(qf[0], subgroupMatrixLoad<${R}>(&kb, kbase + nb * 16u * D, true, D));
      for (var f = 1u; f < ${NF}u; f++) {`}
        let kf = subgroupMatrixLoad<${R}>(&kb, kbase + nb * 16u * D + f * 16u, true, D);
        acc = subgroupMatrixMultiplyAccumulate(qf[f], kf, acc);
      }
      subgroupMatrixStore(&s_s, nb * 16u, acc, false, KT);
    }
    ${BAR}
    var mt = NEG;
    for (var c = part; c < KT; c += LPR) {
      let j = kt + c;
      var ok = i < u.S && j < u.kvLen;
      if (u.causal != 0u) { ok = ok && i32(j) <= pos; }
      if (u.window > 0u) { ok = ok && (i32(j) > pos - i32(u.window) || j < u.sinks); }
      if (ok) { mt = max(mt, s_s[r * KT + c] * u.scale); }
    }
    ${xor.map((x) => `mt = max(mt, subgroupShuffleXor(mt, ${x}u));`).join('\n    ')}
    let mn = max(m, mt);
    let alpha = exp(m - mn);
    var ps = 0.0;
    for (var c = part; c < KT; c += LPR) {
      let j = kt + c;
      var ok = i < u.S && j < u.kvLen;
      if (u.causal != 0u) { ok = ok && i32(j) <= pos; }
      if (u.window > 0u) { ok = ok && (i32(j) > pos - i32(u.window) || j < u.sinks); }
      let pj = select(0.0, exp(s_s[r * KT + c] * u.scale - mn), ok);
      s_p[r * KT + c] = f16(pj);
      ps += pj;
    }
    ${xor.map((x) => `ps += subgroupShuffleXor(ps, ${x}u);`).join('\n    ')}
    l = l * alpha + ps;
    m = mn;
    for (var d = part; d < D; d += LPR) { s_o[r * D + d] *= alpha; }
    ${BAR}
    var pf: array<${L}, ${NB}>;
    for (var nb = 0u; nb < ${NB}u; nb++) { pf[nb] = subgroupMatrixLoad<${L}>(&s_p, nb * 16u, false, KT); }
    for (var f = 0u; f < ${NF}u; f++) {
      var o = subgroupMatrixLoad<${A}>(&s_o, f * 16u, false, D);
      for (var nb = 0u; nb < ${NB}u; nb++) {
        let vf = subgroupMatrixLoad<${R}>(&vb, kbase + nb * 16u * D + f * 16u, false, D);
        o = subgroupMatrixMultiplyAccumulate(pf[nb], vf, o);
      }
      subgroupMatrixStore(&s_o, f * 16u, o, false, D);
    }
    ${BAR}
  }
  ${BAR}
  if (i < u.S) {
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var d = part; d < D; d += LPR) { ob[(bh * u.S + i) * D + d] = f16(s_o[r * D + d] * inv); }
    if (part == 0u) { lseb[bh * u.S + i] = select(neg_inf(), m + log(l), l > 0.0); }
  }
}
`;
}

export function sgPrefillProgram(D: number, KT: number, sync: SgSync, subgroupSize: number, init: SgInit): Program {
  return { key: `attention/prefill-sgmatrix/D${D}/kt${KT}/${sync}/${init}/sg${subgroupSize}`, source: () => sgSource(D, KT, sync, subgroupSize, init), inputs: 3, outputs: 2, uniform: true };
}

/** Exposed for a structural test of the generated WGSL on adapters without subgroup matrices. */
export function sgPrefillSource(D: number, KT = 64, sync: SgSync = 'barrier', subgroupSize = 32, init: SgInit = 'ctor'): string {
  return sgSource(D, KT, sync, subgroupSize, init);
}

export function runSgPrefill(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, v: Tensor): { out: Tensor; lse: Tensor } {
  sgPrefillSupported(be, p, true);
  if (sgKernel === 'pingpong') return runSgPingPong(be, p, q, k, v, { ...SG_PINGPONG_DEFAULT, D: p.D, sgSize: be.caps.subgroupMaxSize });
  if (sgKernel === 'wide' || sgKernel === 'auto') {
    const wide = sgWideChoose(be, p).variant;
    if (wide) return runSgWide(be, p, q, k, v, { ...wide, D: p.D, sgSize: be.caps.subgroupMaxSize });
  }
  if (sgKernel === 'tiled' || sgKernel === 'auto') return runSgFlash(be, p, q, k, v, tiledVariant(be, p.D));
  const KT = sgKeyTile;
  const sgSize = be.caps.subgroupMaxSize;
  checkWorkgroupBytes(be, p.op, 16 * KT * 6 + 16 * p.D * 4);
  const out = be.empty(p.op, 'f16', [p.B, p.Hq, p.S, p.D]);
  const lse = be.empty(p.op, 'f32', [p.B, p.Hq, p.S]);
  const qTiles = p.S / 16;
  const values: Record<(typeof FIELDS)[number][0], number> = {
    B: p.B, Hq: p.Hq, Hkv: p.Hkv, group: p.Hq / p.Hkv, S: p.S, cap: p.cap, kvLen: p.kvLength, qTiles,
    scale: p.scale, causal: p.causal ? 1 : 0, window: p.window, sinks: p.sinks,
  };
  be.dispatch({
    program: sgPrefillProgram(p.D, KT, sgSync, sgSize, sgInit),
    inputs: [be.buffer(q, p.op), be.buffer(k, p.op), be.buffer(v, p.op)],
    outputs: [be.buffer(out, p.op), be.buffer(lse, p.op)],
    uniforms: packUniforms(FIELDS.map(([n, t]) => [t, values[n]] as const)),
    grid: gridFor(p.B * p.Hq * qTiles),
  });
  return { out, lse };
}
