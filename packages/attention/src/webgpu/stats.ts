import { gridFor, packUniforms, uniformStruct, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import { POOL_BLOCK } from '../options.js';
import type { Problem } from '../problem.js';
import { scalarInput, vec4Input } from './common.js';

/**
 * Probabilities from a finished prefill: one invocation per (query row, 16-key block)
 * recomputes the 16 scores and normalises them with the row's log-sum-exp, writing the
 * full probabilities and/or their max and sum over the block. The pooled statistics thus
 * never need the S x L matrix in memory.
 */
interface StatsVariant {
  D: number;
  dtype: 'f32' | 'f16';
  probs: boolean;
  pooled: boolean;
  blocks: boolean;
  bias: 'f32' | 'f16' | null;
}

const FIELDS = [
  ['rows', 'u32'], ['Hq', 'u32'], ['Hkv', 'u32'], ['group', 'u32'],
  ['S', 'u32'], ['cap', 'u32'], ['kvLen', 'u32'], ['nPool', 'u32'],
  ['scale', 'f32'], ['causal', 'u32'], ['window', 'u32'], ['sinks', 'u32'],
  ['queryBlock', 'u32'], ['keyBlock', 'u32'], ['Bm', 'u32'], ['Hm', 'u32'],
  ['nQB', 'u32'], ['maxSel', 'u32'], ['nKB', 'u32'], ['sb', 'u32'],
  ['sh', 'u32'], ['si', 'u32'], ['sj', 'u32'],
] as const;

const WG = 64;

function statsSource(v: StatsVariant): string {
  const D4 = v.D / 4;
  let b = 0;
  const decls = [vec4Input(b++, 'qb', v.dtype), vec4Input(b++, 'kb', v.dtype), `@group(0) @binding(${b++}) var<storage, read> lseb: array<f32>;`];
  if (v.blocks) decls.push(`@group(0) @binding(${b++}) var<storage, read> blk: array<i32>;`);
  if (v.bias) decls.push(scalarInput(b++, 'biasb', v.bias));
  if (v.probs) decls.push(`@group(0) @binding(${b++}) var<storage, read_write> probs: array<f32>;`);
  if (v.pooled) decls.push(`@group(0) @binding(${b++}) var<storage, read_write> pmax: array<f32>;\n@group(0) @binding(${b++}) var<storage, read_write> psum: array<f32>;`);
  decls.push(`@group(0) @binding(${b++}) var<uniform> u: U;`);
  return `${uniformStruct('U', FIELDS)}
${decls.join('\n')}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * ${WG}u;
  let row = idx / u.nPool;
  let pb = idx % u.nPool;
  if (row >= u.rows) { return; }
  let bh = row / u.S;
  let i = row % u.S;
  let b = bh / u.Hq;
  let h = bh % u.Hq;
  let hk = h / u.group;
  let pos = i32(u.kvLen) - i32(u.S) + i32(i);
  let lse = lseb[row];
  let has_any = lse > -1.0e30;
  var bmax = 0.0;
  var bsum = 0.0;
  for (var jj = 0u; jj < ${POOL_BLOCK}u; jj++) {
    let j = pb * ${POOL_BLOCK}u + jj;
    if (j >= u.kvLen) { break; }
    var ok = has_any;
    if (u.causal != 0u) { ok = ok && i32(j) <= pos; }
    if (u.window > 0u) { ok = ok && (i32(j) > pos - i32(u.window) || j < u.sinks); }
${v.blocks ? `    {
      let kb_id = i32(j / u.keyBlock);
      let base = (((select(b, 0u, u.Bm == 1u) * u.Hm) + select(h, 0u, u.Hm == 1u)) * u.nQB + i / u.queryBlock) * u.maxSel;
      var listed = false;
      for (var s = 0u; s < u.maxSel; s++) { listed = listed || blk[base + s] == kb_id; }
      ok = ok && listed;
    }` : ''}
    var pj = 0.0;
    if (ok) {
      var acc = 0.0;
      let qo = row * ${D4}u;
      let ko = ((b * u.Hkv + hk) * u.cap + j) * ${D4}u;
      for (var t = 0u; t < ${D4}u; t++) { acc += dot(ld_qb(qo + t), ld_kb(ko + t)); }
      var sc = acc * u.scale;
${v.bias ? `      let bv = ld_biasb(b * u.sb + h * u.sh + i * u.si + j * u.sj);
      if (bv > -1.0e30) { sc += bv; pj = exp(sc - lse); }` : '      pj = exp(sc - lse);'}
    }
${v.probs ? '    probs[row * u.kvLen + j] = pj;' : ''}
    bmax = max(bmax, pj);
    bsum += pj;
  }
${v.pooled ? '  pmax[row * u.nPool + pb] = bmax;\n  psum[row * u.nPool + pb] = bsum;' : ''}
}
`;
}

export function runStats(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, lse: Tensor, want: { probs: boolean; pooled: boolean }): { probs?: Tensor; pooledMax?: Tensor; pooledSum?: Tensor } {
  const v: StatsVariant = { D: p.D, dtype: p.dtype, probs: want.probs, pooled: want.pooled, blocks: !!p.blocks, bias: p.bias ? (p.bias.tensor.dtype as 'f32' | 'f16') : null };
  const nPool = Math.ceil(p.kvLength / POOL_BLOCK);
  const rows = p.B * p.Hq * p.S;
  const res: { probs?: Tensor; pooledMax?: Tensor; pooledSum?: Tensor } = {};
  const inputs = [be.buffer(q, p.op), be.buffer(k, p.op), be.buffer(lse, p.op)];
  if (p.blocks) inputs.push(be.buffer(p.blocks.indices, p.op));
  if (p.bias) inputs.push(be.buffer(p.bias.tensor, p.op));
  const outputs: GPUBuffer[] = [];
  if (want.probs) {
    res.probs = be.empty(p.op, 'f32', [p.B, p.Hq, p.S, p.kvLength]);
    outputs.push(be.buffer(res.probs, p.op));
  }
  if (want.pooled) {
    res.pooledMax = be.empty(p.op, 'f32', [p.B, p.Hq, p.S, nPool]);
    res.pooledSum = be.empty(p.op, 'f32', [p.B, p.Hq, p.S, nPool]);
    outputs.push(be.buffer(res.pooledMax, p.op), be.buffer(res.pooledSum, p.op));
  }
  const bl = p.blocks;
  const st = p.bias?.strides ?? [0, 0, 0, 0];
  const values: Record<(typeof FIELDS)[number][0], number> = {
    rows, Hq: p.Hq, Hkv: p.Hkv, group: p.Hq / p.Hkv, S: p.S, cap: p.cap, kvLen: p.kvLength, nPool,
    scale: p.scale, causal: p.causal ? 1 : 0, window: p.window, sinks: p.sinks,
    queryBlock: bl?.queryBlock ?? 1, keyBlock: bl?.keyBlock ?? 1, Bm: bl?.Bm ?? 1, Hm: bl?.Hm ?? 1,
    nQB: bl?.nQB ?? 0, maxSel: bl?.maxSel ?? 0, nKB: bl?.nKB ?? 0,
    sb: st[0], sh: st[1], si: st[2], sj: st[3],
  };
  const program: Program = {
    key: `attention/stats/D${v.D}/${v.dtype}/${v.probs ? 'p' : ''}${v.pooled ? 'pool' : ''}/${v.blocks ? 'blocks' : ''}/bias-${v.bias ?? 'none'}`,
    source: () => statsSource(v),
    inputs: inputs.length,
    outputs: outputs.length,
    uniform: true,
  };
  const groups = Math.ceil((rows * nPool) / WG);
  const grid = gridFor(groups);
  be.dispatch({ program, inputs, outputs, uniforms: packUniforms(FIELDS.map(([n, t]) => [t, values[n]] as const)), grid });
  return res;
}
