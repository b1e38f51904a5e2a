import { gridFor, packUniforms, uniformStruct, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import { POOL_BLOCK } from '../options.js';
import type { Problem } from '../problem.js';
import { NEG, NEG_INF_FN, vec4Input, vec4Output } from './common.js';
import { chunksPerRow, streamKey, streamSplitSource, streamWorkgroupBytes, type StreamVariant } from './decode-stream.js';

/**
 * Split-K flash decode for a few query tokens over a long KV.
 *
 * Pass 1 (one workgroup per batch, KV head, split of 16-key blocks and chunk of query
 * rows; every query head of the KV head's group is a row, so K and V are read once per
 * group) comes in two layouts:
 * - stream (the default, decode-stream.ts): G lanes per key reading 16-byte chunks,
 *   U keys in flight per key group, 512-lane workgroups and few splits. On the H200 it
 *   reads K/V at the plain read rate of the same buffers (decode-sweep probe).
 * - legacy (below, kept as the measured baseline: tuneDecode({ kernel: 'legacy' })):
 *   KG key groups of TPK lanes each take one key of every 16-key block with 8-byte
 *   loads, and merge in workgroup memory.
 * Either keeps an online (max, sum, P·V) per row and writes one partial
 * (max, sum, unnormalised output) per split. Blocks come either in order (contiguous KV)
 * or from a list of selected block ids in any order.
 * Pass 2: one workgroup per query row folds the splits (online, several slices in
 * parallel), divides, and writes the output and optionally the lse.
 */
interface DecodeVariant {
  D: number;
  dtype: 'f32' | 'f16';
  TPK: 1 | 4;
  RC: number;
  /** 16-key blocks read per loop iteration (16*KB key groups): more loads in flight per workgroup. */
  KB: number;
  selected: boolean;
}

const FIELDS = [
  ['B', 'u32'], ['Hq', 'u32'], ['Hkv', 'u32'], ['group', 'u32'],
  ['Sq', 'u32'], ['cap', 'u32'], ['kvLen', 'u32'], ['rowsPerKv', 'u32'],
  ['scale', 'f32'], ['causal', 'u32'], ['window', 'u32'], ['sinks', 'u32'],
  ['nList', 'u32'], ['perSplit', 'u32'], ['nSplit', 'u32'], ['nChunks', 'u32'],
  ['nb16', 'u32'], ['wantLse', 'u32'],
] as const;

type Field = (typeof FIELDS)[number][0];

function splitSource(v: DecodeVariant): string {
  const { D, TPK, RC, KB } = v;
  const KG = 16 * KB;
  const D4 = D / 4;
  const DP = D4 / TPK;
  const WG = KG * TPK;
  let b = 0;
  const decls = [vec4Input(b++, 'qb', v.dtype), vec4Input(b++, 'kb', v.dtype), vec4Input(b++, 'vb', v.dtype)];
  if (v.selected) decls.push(`@group(0) @binding(${b++}) var<storage, read> sel: array<i32>;`);
  decls.push(`@group(0) @binding(${b++}) var<storage, read_write> opart: array<vec4<f32>>;`);
  decls.push(`@group(0) @binding(${b++}) var<storage, read_write> mpart: array<f32>;`);
  decls.push(`@group(0) @binding(${b++}) var<storage, read_write> lpart: array<f32>;`);
  decls.push(`@group(0) @binding(${b++}) var<uniform> u: U;`);
  return `${TPK > 1 ? 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);' : ''}
${uniformStruct('U', FIELDS)}
${decls.join('\n')}
const D4 = ${D4}u;
const DP = ${DP}u;
const TPK = ${TPK}u;
const RC = ${RC}u;
const KG = ${KG}u;
const WG = ${WG}u;
const NEG = ${NEG};
${NEG_INF_FN}
var<workgroup> red_m: array<f32, ${KG * RC}>;
var<workgroup> red_l: array<f32, ${KG * RC}>;
var<workgroup> red_o: array<vec4<f32>, ${KG * RC * D4}>;

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= u.B * u.Hkv * u.nSplit * u.nChunks) { return; }
  let chunk = g % u.nChunks;
  let rest = g / u.nChunks;
  let split = rest % u.nSplit;
  let bk = rest / u.nSplit;
  let b = bk / u.Hkv;
  let hk = bk % u.Hkv;
  let kg = lid / TPK;
  let part = lid % TPK;

  var q: array<vec4<f32>, ${RC * DP}>;
  var o: array<vec4<f32>, ${RC * DP}>;
  var m: array<f32, RC>;
  var l: array<f32, RC>;
  var pos: array<i32, RC>;
  var row_ok: array<bool, RC>;
  for (var r = 0u; r < RC; r++) {
    let rr = chunk * RC + r;
    row_ok[r] = rr < u.rowsPerKv;
    let rc = min(rr, u.rowsPerKv - 1u);
    let hq = hk * u.group + rc / u.Sq;
    let sq = rc % u.Sq;
    pos[r] = i32(u.kvLen) - i32(u.Sq) + i32(sq);
    let qbase = ((b * u.Hq + hq) * u.Sq + sq) * D4 + part * DP;
    for (var t = 0u; t < DP; t++) { q[r * DP + t] = ld_qb(qbase + t) * u.scale; }
    m[r] = NEG;
    l[r] = 0.0;
  }
  let kvbase = bk * u.cap;
  let first = split * u.perSplit;
  let last = min(first + u.perSplit, u.nList);
  // Uniform trip count (the score reduction shuffles need every lane of a group present).
  for (var e0 = first; e0 < last; e0 += ${KB}u) {
    let e = e0 + kg / ${POOL_BLOCK}u;
    var id = -1;
    if (e < last) { ${v.selected ? 'id = sel[bk * u.nList + e];' : 'id = i32(e);'} }
    let j = u32(max(id, 0)) * ${POOL_BLOCK}u + kg % ${POOL_BLOCK}u;
    let key_ok = id >= 0 && u32(id) < u.nb16 && j < u.kvLen;
    let a = (kvbase + select(0u, j, key_ok)) * D4 + part * DP;
    var kx: array<vec4<f32>, DP>;
    var vx: array<vec4<f32>, DP>;
    for (var t = 0u; t < DP; t++) { kx[t] = ld_kb(a + t); vx[t] = ld_vb(a + t); }
    for (var r = 0u; r < RC; r++) {
      var sc = 0.0;
      for (var t = 0u; t < DP; t++) { sc += dot(q[r * DP + t], kx[t]); }
      ${TPK === 4 ? 'sc += subgroupShuffleXor(sc, 1u);\n      sc += subgroupShuffleXor(sc, 2u);' : ''}
      var ok = key_ok && row_ok[r];
      if (u.causal != 0u) { ok = ok && i32(j) <= pos[r]; }
      if (u.window > 0u) { ok = ok && (i32(j) > pos[r] - i32(u.window) || j < u.sinks); }
      if (ok) {
        let mn = max(m[r], sc);
        let alpha = exp(m[r] - mn);
        let pj = exp(sc - mn);
        l[r] = l[r] * alpha + pj;
        for (var t = 0u; t < DP; t++) { o[r * DP + t] = o[r * DP + t] * alpha + pj * vx[t]; }
        m[r] = mn;
      }
    }
  }

  for (var r = 0u; r < RC; r++) {
    if (part == 0u) { red_m[kg * RC + r] = m[r]; red_l[kg * RC + r] = l[r]; }
    for (var t = 0u; t < DP; t++) { red_o[(kg * RC + r) * D4 + part * DP + t] = o[r * DP + t]; }
  }
  workgroupBarrier();
  for (var e = lid; e < RC * D4; e += WG) {
    let r = e / D4;
    let d4 = e % D4;
    let rr = chunk * RC + r;
    if (rr >= u.rowsPerKv) { continue; }
    var mx = NEG;
    for (var k = 0u; k < KG; k++) { mx = max(mx, red_m[k * RC + r]); }
    var ls = 0.0;
    var os = vec4<f32>(0.0);
    for (var k = 0u; k < KG; k++) {
      let w = exp(red_m[k * RC + r] - mx);
      ls += red_l[k * RC + r] * w;
      os += red_o[(k * RC + r) * D4 + d4] * w;
    }
    let pidx = (bk * u.nSplit + split) * u.rowsPerKv + rr;
    opart[pidx * D4 + d4] = os;
    if (d4 == 0u) { mpart[pidx] = mx; lpart[pidx] = ls; }
  }
}
`;
}

/**
 * Pass 2: one workgroup per query row. Its 128 lanes are SL slices of D/4 lanes; slice sl
 * folds splits sl, sl+SL, ... into an online (max, sum, output) (each split's three loads
 * are independent of the running state, so they overlap instead of forming a chain of
 * dependent loads over the splits), and the SL slices are merged in workgroup memory.
 */
function reduceSource(v: { D: number; dtype: 'f32' | 'f16' }): string {
  const D4 = v.D / 4;
  const SL = Math.max(1, Math.floor(REDUCE_WG / D4));
  return `${uniformStruct('U', FIELDS)}
@group(0) @binding(0) var<storage, read> opart: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> mpart: array<f32>;
@group(0) @binding(2) var<storage, read> lpart: array<f32>;
${vec4Output(3, 'ob', v.dtype)}
@group(0) @binding(4) var<storage, read_write> lseb: array<f32>;
@group(0) @binding(5) var<uniform> u: U;
const NEG = ${NEG};
const D4 = ${D4}u;
const SL = ${SL}u;
${NEG_INF_FN}
var<workgroup> wm: array<f32, SL>;
var<workgroup> wl: array<f32, SL>;
var<workgroup> wo: array<vec4<f32>, ${SL * D4}>;
@compute @workgroup_size(${SL * D4})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.B * u.Hq * u.Sq) { return; }
  let sq = row % u.Sq;
  let bh = row / u.Sq;
  let b = bh / u.Hq;
  let hq = bh % u.Hq;
  let bk = b * u.Hkv + hq / u.group;
  let rr = (hq % u.group) * u.Sq + sq;
  let sl = lid / D4;
  let d4 = lid % D4;
  var m = NEG;
  var l = 0.0;
  var o = vec4<f32>(0.0);
  for (var s = sl; s < u.nSplit; s += SL) {
    let pidx = (bk * u.nSplit + s) * u.rowsPerKv + rr;
    let ms = mpart[pidx];
    let ls = lpart[pidx];
    let os = opart[pidx * D4 + d4];
    let mn = max(m, ms);
    let a = exp(m - mn);
    let c = exp(ms - mn);
    l = l * a + ls * c;
    o = o * a + os * c;
    m = mn;
  }
  if (d4 == 0u) { wm[sl] = m; wl[sl] = l; }
  wo[lid] = o;
  workgroupBarrier();
  if (sl == 0u) {
    var mx = NEG;
    for (var k = 0u; k < SL; k++) { mx = max(mx, wm[k]); }
    var ls = 0.0;
    var os = vec4<f32>(0.0);
    for (var k = 0u; k < SL; k++) {
      let w = exp(wm[k] - mx);
      ls += wl[k] * w;
      os += wo[k * D4 + d4] * w;
    }
    st_ob(row * D4 + d4, os * select(0.0, 1.0 / ls, ls > 0.0));
    if (d4 == 0u && u.wantLse != 0u) { lseb[row] = select(neg_inf(), mx + log(ls), ls > 0.0); }
  }
}
`;
}

/** Pass-2 lanes per query row. */
const REDUCE_WG = 128;

export interface DecodePlan {
  nSplit: number;
  perSplit: number;
  nChunks: number;
  RC: number;
  KB: number;
}

export function planDecode(be: WebGpuBackend, p: Problem, nList: number, splits?: number): DecodePlan {
  const TPK = be.caps.subgroups && be.caps.subgroupMinSize >= 4 ? 4 : 1;
  const rowsPerKv = (p.Hq / p.Hkv) * p.S;
  // Registers: RC rows of D/TPK query and output floats per invocation.
  const DP = p.D / 4 / TPK;
  let RC = Math.max(1, Math.min(rowsPerKv, Math.floor(16 / DP)));
  // Two blocks per iteration where the merge buffer (KG x RC rows of D floats) fits.
  const limit = be.caps.maxComputeWorkgroupStorageSize - 1024;
  let KB = 2;
  while (KB > 1 && 16 * KB * RC * p.D * 4 > limit) {
    if (RC > 1) RC >>= 1;
    else KB >>= 1;
  }
  while (RC > 1 && 16 * KB * RC * p.D * 4 > limit) RC >>= 1;
  const nChunks = Math.ceil(rowsPerKv / RC);
  const base = p.B * p.Hkv * nChunks;
  // About 4096 workgroups (measured best on the H200 at 32 heads x 32k keys: 128 splits),
  // at least 8 blocks (128 keys) per split.
  let nSplit = splits ?? Math.max(1, Math.min(Math.ceil(nList / 8), Math.ceil(4096 / base)));
  nSplit = Math.max(1, Math.min(nSplit, nList));
  const perSplit = Math.ceil(nList / nSplit);
  nSplit = Math.ceil(nList / perSplit);
  return { nSplit, perSplit, nChunks, RC, KB };
}

/**
 * Which pass-1 kernel decode uses and how it is shaped. Fields left out take the
 * defaults below; the benchmark probe sweeps them.
 */
export interface DecodeTuning {
  kernel?: 'stream' | 'legacy';
  /** Lanes per key (stream). */
  G?: number;
  /** Key groups per workgroup (stream). */
  NG?: number;
  /** Keys per key group per iteration (stream). */
  U?: number;
  /** Workgroups aimed for when the caller gives no split count (stream). */
  groups?: number;
  /** Fewest 16-key blocks per split (stream). */
  minBlocks?: number;
  /** Most query rows per workgroup (stream). */
  RC?: number;
}

let tuning: DecodeTuning = {};

/** Sets the decode kernel shape for later calls ({} restores the defaults). */
export function tuneDecode(t: DecodeTuning): void {
  tuning = { ...t };
}

const STREAM_WG = 512;
const wgLimits = new WeakMap<WebGpuBackend, number>();

/** Most lanes of a 1-D workgroup (read once per backend: decode runs every token). */
function workgroupLimit(be: WebGpuBackend): number {
  let n = wgLimits.get(be);
  if (n === undefined) {
    const l = be.device.limits;
    n = Math.min(l.maxComputeInvocationsPerWorkgroup, l.maxComputeWorkgroupSizeX);
    wgLimits.set(be, n);
  }
  return n;
}
const STREAM_GROUPS = 256;

export interface StreamPlan extends DecodePlan {
  variant: StreamVariant;
}

export function planStream(be: WebGpuBackend, p: Problem, nList: number, selected: boolean, splits?: number, t: DecodeTuning = tuning): StreamPlan {
  const NC = chunksPerRow(p.D, p.dtype);
  const sgMax = be.caps.subgroups && be.caps.subgroupMinSize >= 2 ? Math.min(16, be.caps.subgroupMinSize) : 1;
  let G = Math.min(t.G ?? 16, sgMax);
  while (G > 1 && NC % G !== 0) G >>= 1;
  // 512-lane workgroups, few splits (about 256 workgroups): the best of the H200 sweep
  // (decode-sweep round 1: pass 1 at the plain read rate of the same K/V).
  const maxWg = Math.min(STREAM_WG, workgroupLimit(be));
  let NG = Math.max(1, Math.min(t.NG ?? STREAM_WG / G, Math.floor(maxWg / G)));
  let U = t.U ?? 2;
  const rowsPerKv = (p.Hq / p.Hkv) * p.S;
  // About 64 query/output floats per lane for the rows held in registers.
  // At most 2 rows per workgroup unless asked: on the H200 (GQA Hq32/Hkv8, round 2) two
  // rows beat four (the per-key arithmetic grows with the rows) and one (K/V read 4 times).
  let RC = Math.max(1, Math.min(rowsPerKv, 8, t.RC ?? 2, Math.floor((64 * G) / p.D)));
  // The merge buffer must fit: fewer key groups first (down to 8), since fewer rows per
  // workgroup means reading the KV head once per chunk of rows.
  const limit = be.caps.maxComputeWorkgroupStorageSize;
  const bytes = () => streamWorkgroupBytes({ D: p.D, dtype: p.dtype, G, NG, U, RC, selected });
  while (bytes() > limit) {
    if (NG > 8 || RC === 1) NG >>= 1;
    else RC >>= 1;
  }
  // Two rows per workgroup took 4 keys in flight best (H200 round 4, GQA Hq32/Hkv8: pass 1
  // 0.073 ms vs 0.080 at 2); one row, 2 keys (0.134 vs 0.136 ms at Hq=Hkv=32).
  if (t.U === undefined && RC >= 2) U = 4;
  const nChunks = Math.ceil(rowsPerKv / RC);
  const base = p.B * p.Hkv * nChunks;
  let nSplit = splits ?? Math.max(1, Math.min(Math.ceil(nList / (t.minBlocks ?? 8)), Math.ceil((t.groups ?? STREAM_GROUPS) / base)));
  nSplit = Math.max(1, Math.min(nSplit, nList));
  const perSplit = Math.ceil(nList / nSplit);
  nSplit = Math.ceil(nList / perSplit);
  return { nSplit, perSplit, nChunks, RC, KB: 1, variant: { D: p.D, dtype: p.dtype, G, NG, U, RC, selected } };
}

/**
 * Partials and the unwanted-lse sink, kept per backend and grown on demand: decode runs
 * once per generated token, and fresh buffers each time cost allocation, a lazy zero fill
 * and bind-group churn. Reuse across calls is safe because WebGPU orders the passes that
 * use one buffer.
 */
const scratch = new WeakMap<WebGpuBackend, Map<string, GPUBuffer>>();

function scratchBuffer(be: WebGpuBackend, op: string, role: string, bytes: number): GPUBuffer {
  let m = scratch.get(be);
  if (!m) scratch.set(be, (m = new Map()));
  const have = m.get(role);
  if (have && have.size >= bytes) return have;
  if (have) be.release(have);
  const buf = be.createBuffer(op, Math.max(bytes, have ? have.size * 2 : 0));
  m.set(role, buf);
  return buf;
}

export function runDecode(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, v: Tensor, selected: { tensor: Tensor; nSel: number } | null, wantLse: boolean, splits?: number): { out: Tensor; lse: Tensor | null } {
  const TPK: 1 | 4 = be.caps.subgroups && be.caps.subgroupMinSize >= 4 ? 4 : 1;
  const nb16 = Math.ceil(p.kvLength / POOL_BLOCK);
  const nList = selected ? selected.nSel : nb16;
  const stream = tuning.kernel !== 'legacy' ? planStream(be, p, nList, !!selected, splits) : null;
  const plan = stream ?? planDecode(be, p, nList, splits);
  const variant: DecodeVariant = { D: p.D, dtype: p.dtype, TPK, RC: plan.RC, KB: plan.KB, selected: !!selected };
  const rowsPerKv = (p.Hq / p.Hkv) * p.S;
  const values: Record<Field, number> = {
    B: p.B, Hq: p.Hq, Hkv: p.Hkv, group: p.Hq / p.Hkv, Sq: p.S, cap: p.cap, kvLen: p.kvLength, rowsPerKv,
    scale: p.scale, causal: p.causal ? 1 : 0, window: p.window, sinks: p.sinks,
    nList, perSplit: plan.perSplit, nSplit: plan.nSplit, nChunks: plan.nChunks, nb16, wantLse: wantLse ? 1 : 0,
  };
  const uniforms = packUniforms(FIELDS.map(([n, t]) => [t, values[n]] as const));
  const nPart = p.B * p.Hkv * plan.nSplit * rowsPerKv;
  const opart = scratchBuffer(be, p.op, 'o', nPart * p.D * 4);
  const mpart = scratchBuffer(be, p.op, 'm', nPart * 4);
  const lpart = scratchBuffer(be, p.op, 'l', nPart * 4);
  const inputs = [be.buffer(q, p.op), be.buffer(k, p.op), be.buffer(v, p.op)];
  if (selected) inputs.push(be.buffer(selected.tensor, p.op));
  const splitProgram: Program = stream
    ? { key: streamKey(stream.variant), source: () => streamSplitSource(stream.variant, FIELDS), inputs: inputs.length, outputs: 3, uniform: true }
    : {
      key: `attention/decode-split/D${p.D}/${p.dtype}/tpk${TPK}/rc${plan.RC}/kb${plan.KB}/${selected ? 'sel' : 'contig'}`,
      source: () => splitSource(variant),
      inputs: inputs.length, outputs: 3, uniform: true,
    };
  be.dispatch({ program: splitProgram, inputs, outputs: [opart, mpart, lpart], uniforms, grid: gridFor(p.B * p.Hkv * plan.nSplit * plan.nChunks) });
  const out = be.empty(p.op, p.dtype, [p.B, p.Hq, p.S, p.D]);
  const lse = wantLse ? be.empty(p.op, 'f32', [p.B, p.Hq, p.S]) : null;
  const lseBuf = lse ? be.buffer(lse, p.op) : scratchBuffer(be, p.op, 'lse', p.B * p.Hq * p.S * 4);
  const reduceProgram: Program = {
    key: `attention/decode-reduce/D${p.D}/${p.dtype}`,
    source: () => reduceSource(variant),
    inputs: 3, outputs: 2, uniform: true,
  };
  be.dispatch({ program: reduceProgram, inputs: [opart, mpart, lpart], outputs: [be.buffer(out, p.op), lseBuf], uniforms, grid: gridFor(p.B * p.Hq * p.S) });
  return { out, lse };
}
