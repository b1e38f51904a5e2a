import { gridFor, LimitError, packUniforms, uniformStruct, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { Problem } from '../problem.js';
import { checkWorkgroupBytes, KEY_BOUNDS_WGSL, keyTilesWgsl, NEG, NEG_INF_FN, scalarInput, vec4Input, vec4Output } from './common.js';

/**
 * Plain flash-attention prefill (FlashAttention-2 forward, online softmax).
 *
 * A workgroup owns TQ query rows of one (batch, query head); TPR invocations share a row,
 * each holding D/TPR of the scaled query and of the output accumulator, and the partial
 * dot products are summed with subgroup shuffles (TPR = 1 without subgroups). K and V
 * tiles of BK keys are staged in workgroup memory as f32, so f16 inputs are widened once
 * per tile. Only the key tiles a mask can reach are visited: causal and window bounds
 * give a tile range per query tile (plus the sink tiles), a block list gives the tiles
 * directly; everything else is masked per element inside the tile.
 */
export interface PrefillVariant {
  D: number;
  dtype: 'f32' | 'f16';
  TPR: 1 | 4;
  TQ: number;
  /** Query rows per invocation group (register blocking: each staged K/V value serves RQ rows). */
  RQ: number;
  BK: number;
  blocks: boolean;
  bias: 'f32' | 'f16' | null;
}

const FIELDS = [
  ['B', 'u32'], ['Hq', 'u32'], ['Hkv', 'u32'], ['group', 'u32'],
  ['S', 'u32'], ['cap', 'u32'], ['kvLen', 'u32'], ['qTiles', 'u32'],
  ['scale', 'f32'], ['causal', 'u32'], ['window', 'u32'], ['sinks', 'u32'],
  ['queryBlock', 'u32'], ['keyBlock', 'u32'], ['Bm', 'u32'], ['Hm', 'u32'],
  ['nQB', 'u32'], ['maxSel', 'u32'], ['nKB', 'u32'], ['sb', 'u32'],
  ['sh', 'u32'], ['si', 'u32'], ['sj', 'u32'],
] as const;

export function prefillKey(v: PrefillVariant): string {
  return `attention/prefill/D${v.D}/${v.dtype}/tpr${v.TPR}/tq${v.TQ}/rq${v.RQ}/bk${v.BK}/${v.blocks ? 'blocks' : 'ranges'}/bias-${v.bias ?? 'none'}`;
}

export function prefillSource(v: PrefillVariant): string {
  const { D, TPR, TQ, BK, RQ } = v;
  const D4 = D / 4;
  const DP = D4 / TPR;
  const RG = TQ / RQ; // row groups: invocation groups of TPR lanes, each owning RQ rows
  const WG = RG * TPR;
  const KC = 16; // keys scored per online-softmax step
  let b = 0;
  const decls = [vec4Input(b++, 'qb', v.dtype), vec4Input(b++, 'kb', v.dtype), vec4Input(b++, 'vb', v.dtype)];
  if (v.blocks) decls.push(`@group(0) @binding(${b++}) var<storage, read> blk: array<i32>;`);
  if (v.bias) decls.push(scalarInput(b++, 'biasb', v.bias));
  decls.push(vec4Output(b++, 'ob', v.dtype));
  decls.push(`@group(0) @binding(${b++}) var<storage, read_write> lseb: array<f32>;`);
  decls.push(`@group(0) @binding(${b++}) var<uniform> u: U;`);
  const reduce = TPR === 4
    ? `for (var x = 0u; x < RQ * KC; x++) { s[x] += subgroupShuffleXor(s[x], 1u); s[x] += subgroupShuffleXor(s[x], 2u); }`
    : '';
  const tileStart = v.blocks
    ? `
    // The block list lives in storage: one invocation reads it and shares it as a
    // workgroup-uniform value, double-buffered so a skipped tile cannot race the next.
    if (lid == 0u) {
      let tpb = u.keyBlock / BK;
      let slot = (((select(b, 0u, u.Bm == 1u) * u.Hm) + select(h, 0u, u.Hm == 1u)) * u.nQB + qblk) * u.maxSel + it / tpb;
      let id = blk[slot];
      var start = SKIP;
      if (id >= 0 && u32(id) < u.nKB) {
        let k0 = u32(id) * u.keyBlock + (it % tpb) * BK;
        if (k0 < hi) { start = k0; }
      }
      tile_start[it & 1u] = start;
    }
    let kt = workgroupUniformLoad(&tile_start[it & 1u]);
    if (kt == SKIP) { continue; }`
    : `
    let kt = select(start2 + it - n_sink, it, it < n_sink) * BK;`;
  const biasTerm = v.bias
    ? `
        let bv = ld_biasb(b * u.sb + h * u.sh + min(i, u.S - 1u) * u.si + min(j, u.kvLen - 1u) * u.sj);
        ok = ok && bv > -1.0e30;
        sc += bv;`
    : '';
  return `${TPR > 1 ? 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);' : ''}
${uniformStruct('U', FIELDS)}
${decls.join('\n')}
const D4 = ${D4}u;
const DP = ${DP}u;
const TPR = ${TPR}u;
const TQ = ${TQ}u;
const RQ = ${RQ}u;
const RG = ${RG}u;
const BK = ${BK}u;
const KC = ${KC}u;
const WG = ${WG}u;
const NEG = ${NEG};
${NEG_INF_FN}
const SKIP = 0xffffffffu;
var<workgroup> ks: array<vec4<f32>, ${BK * D4}>;
var<workgroup> vs: array<vec4<f32>, ${BK * D4}>;
${v.blocks ? 'var<workgroup> tile_start: array<u32, 2>;' : ''}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  let tile = g % u.qTiles;
  let bh = g / u.qTiles;
  if (bh >= u.B * u.Hq) { return; }
  let b = bh / u.Hq;
  let h = bh % u.Hq;
  let hk = h / u.group;
  let rg = lid / TPR;
  let part = lid % TPR;
  let i0 = tile * TQ;
  // Row y of this invocation is i0 + rg + y * RG, so a subgroup covers consecutive rows.
  var q: array<vec4<f32>, ${RQ * DP}>;
  var o: array<vec4<f32>, ${RQ * DP}>;
  var m: array<f32, RQ>;
  var l: array<f32, RQ>;
  for (var y = 0u; y < RQ; y++) {
    let i = i0 + rg + y * RG;
    let qbase = (bh * u.S + min(i, u.S - 1u)) * D4 + part * DP;
    for (var t = 0u; t < DP; t++) { q[y * DP + t] = ld_qb(qbase + t) * u.scale; }
    m[y] = NEG;
  }

  // Key range this query tile can reach.
  let i_last = min(i0 + TQ, u.S) - 1u;
  let p_first = i32(u.kvLen) - i32(u.S) + i32(i0);
  let p_last = i32(u.kvLen) - i32(u.S) + i32(i_last);
${KEY_BOUNDS_WGSL}
${v.blocks ? `  let qblk = i0 / u.queryBlock;
  let n_tiles = u.maxSel * (u.keyBlock / BK);` : keyTilesWgsl('BK')}
  let kvbase = (b * u.Hkv + hk) * u.cap;

  for (var it = 0u; it < n_tiles; it++) {${tileStart}
    workgroupBarrier();
    for (var e = lid; e < BK * D4; e += WG) {
      let key = kt + e / D4;
      var kx = vec4<f32>(0.0);
      var vx = vec4<f32>(0.0);
      if (key < u.kvLen) {
        let a = (kvbase + key) * D4 + e % D4;
        kx = ld_kb(a);
        vx = ld_vb(a);
      }
      ks[e] = kx;
      vs[e] = vx;
    }
    workgroupBarrier();

    for (var kc = 0u; kc < BK; kc += KC) {
      var s: array<f32, ${RQ * KC}>;
      for (var jj = 0u; jj < KC; jj++) {
        let kofs = (kc + jj) * D4 + part * DP;
        for (var y = 0u; y < RQ; y++) {
          var acc = 0.0;
          for (var t = 0u; t < DP; t++) { acc += dot(q[y * DP + t], ks[kofs + t]); }
          s[y * KC + jj] = acc;
        }
      }
      ${reduce}
      for (var y = 0u; y < RQ; y++) {
        let i = i0 + rg + y * RG;
        let pos = i32(u.kvLen) - i32(u.S) + i32(i);
        var mt = NEG;
        var vis = 0u;
        for (var jj = 0u; jj < KC; jj++) {
          let j = kt + kc + jj;
          var ok = i < u.S && j < u.kvLen;
          if (u.causal != 0u) { ok = ok && i32(j) <= pos; }
          if (u.window > 0u) { ok = ok && (i32(j) > pos - i32(u.window) || j < u.sinks); }
          var sc = s[y * KC + jj];${biasTerm}
          s[y * KC + jj] = sc;
          if (ok) { vis |= 1u << jj; mt = max(mt, sc); }
        }
        let mn = max(m[y], mt);
        let alpha = exp(m[y] - mn);
        var ps = 0.0;
        for (var jj = 0u; jj < KC; jj++) {
          let pj = select(0.0, exp(s[y * KC + jj] - mn), ((vis >> jj) & 1u) != 0u);
          s[y * KC + jj] = pj;
          ps += pj;
        }
        l[y] = l[y] * alpha + ps;
        m[y] = mn;
        for (var t = 0u; t < DP; t++) { o[y * DP + t] *= alpha; }
      }
      for (var jj = 0u; jj < KC; jj++) {
        let kofs = (kc + jj) * D4 + part * DP;
        for (var t = 0u; t < DP; t++) {
          let vv = vs[kofs + t];
          for (var y = 0u; y < RQ; y++) { o[y * DP + t] += s[y * KC + jj] * vv; }
        }
      }
    }
  }

  for (var y = 0u; y < RQ; y++) {
    let i = i0 + rg + y * RG;
    if (i < u.S) {
      let inv = select(0.0, 1.0 / l[y], l[y] > 0.0);
      let obase = (bh * u.S + i) * D4 + part * DP;
      for (var t = 0u; t < DP; t++) { st_ob(obase + t, o[y * DP + t] * inv); }
      if (part == 0u) { lseb[bh * u.S + i] = select(neg_inf(), m[y] + log(l[y]), l[y] > 0.0); }
    }
  }
}
`;
}

/** Tuning override for benchmarks: fields set here replace the chooser's picks. */
export interface PrefillTuning { TQ?: number; RQ?: number; BK?: number }
let tuning: PrefillTuning = {};
export function tunePlainPrefill(t: PrefillTuning): void {
  tuning = { ...t };
}

/** Picks tile sizes that fit the device's workgroup memory and the mask's block sizes. */
export function choosePrefillVariant(be: WebGpuBackend, p: Problem): PrefillVariant {
  const TPR = be.caps.subgroups && be.caps.subgroupMinSize >= 4 ? 4 : 1;
  const limit = be.caps.maxComputeWorkgroupStorageSize;
  // Measured on the H200 at B1 H32 S4096 D128 causal: f32 is fastest with four rows per
  // invocation, 128-row tiles and 16-key staging (18.1 ms; 24-45 ms with 1-2 rows); f16
  // (widened once per staged tile) with two rows, 64-row tiles and 32-key staging (25.9 ms
  // against 41.1 ms with the f32 choice). Block lists keep four rows and 16-key tiles
  // (34.2 ms with every block listed, against 47.8 ms). Registers allow this up to D 128.
  const wide = TPR === 4 && p.D <= 128;
  const f16Dense = p.dtype === 'f16' && !p.blocks;
  let BK = tuning.BK ?? (wide && !f16Dense ? 16 : 2 * 32 * p.D * 4 <= limit ? 32 : 16);
  let TQ = tuning.TQ ?? (wide && !f16Dense ? 128 : 64);
  let RQ = tuning.RQ ?? (wide ? (f16Dense ? 2 : 4) : 1);
  if (p.blocks) {
    if (p.blocks.keyBlock % BK !== 0) BK = 16;
    TQ = p.blocks.queryBlock % 64 === 0 ? 64 : p.blocks.queryBlock % 32 === 0 ? 32 : 16;
  }
  if (TQ % RQ !== 0) RQ = 1;
  if (2 * BK * p.D * 4 > limit) throw new LimitError(p.op, 'maxComputeWorkgroupStorageSize (bytes)', 2 * BK * p.D * 4, limit);
  return { D: p.D, dtype: p.dtype, TPR, TQ, RQ, BK, blocks: !!p.blocks, bias: p.bias ? (p.bias.tensor.dtype as 'f32' | 'f16') : null };
}

export function prefillProgram(v: PrefillVariant): Program {
  const inputs = 3 + (v.blocks ? 1 : 0) + (v.bias ? 1 : 0);
  return { key: prefillKey(v), source: () => prefillSource(v), inputs, outputs: 2, uniform: true };
}

export function prefillUniforms(p: Problem, qTiles: number): ArrayBuffer {
  const bl = p.blocks;
  const st = p.bias?.strides ?? [0, 0, 0, 0];
  const values: Record<(typeof FIELDS)[number][0], number> = {
    B: p.B, Hq: p.Hq, Hkv: p.Hkv, group: p.Hq / p.Hkv, S: p.S, cap: p.cap, kvLen: p.kvLength, qTiles,
    scale: p.scale, causal: p.causal ? 1 : 0, window: p.window, sinks: p.sinks,
    queryBlock: bl?.queryBlock ?? 0, keyBlock: bl?.keyBlock ?? 0, Bm: bl?.Bm ?? 1, Hm: bl?.Hm ?? 1,
    nQB: bl?.nQB ?? 0, maxSel: bl?.maxSel ?? 0, nKB: bl?.nKB ?? 0,
    sb: st[0], sh: st[1], si: st[2], sj: st[3],
  };
  return packUniforms(FIELDS.map(([n, t]) => [t, values[n]] as const));
}

/** Runs the plain prefill; returns the output and the per-row log-sum-exp. */
export function runPrefill(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, v: Tensor, variant = choosePrefillVariant(be, p)): { out: Tensor; lse: Tensor } {
  checkWorkgroupBytes(be, p.op, 2 * variant.BK * p.D * 4);
  const out = be.empty(p.op, p.dtype, [p.B, p.Hq, p.S, p.D]);
  const lse = be.empty(p.op, 'f32', [p.B, p.Hq, p.S]);
  const qTiles = Math.ceil(p.S / variant.TQ);
  const inputs = [be.buffer(q, p.op), be.buffer(k, p.op), be.buffer(v, p.op)];
  if (p.blocks) inputs.push(be.buffer(p.blocks.indices, p.op));
  if (p.bias) inputs.push(be.buffer(p.bias.tensor, p.op));
  be.dispatch({
    program: prefillProgram(variant),
    inputs,
    outputs: [be.buffer(out, p.op), be.buffer(lse, p.op)],
    uniforms: prefillUniforms(p, qTiles),
    grid: gridFor(p.B * p.Hq * qTiles),
  });
  return { out, lse };
}
