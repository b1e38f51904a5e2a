import { uniformStruct, vecBinding, vecLoader, vecStorer, type FloatDType, type Program } from '@attnkit/tensor';
import { BLOCK } from './mask.js';
import { appendSparseTail, SPARSE_UNIFORM_WGSL } from './bindings.js';

const NEG = -1e30;
const WG = 64;

/**
 * V quantized for an int8 P.V: per (batch, head, 64-key block) and channel d, scale_d =
 * max|v[., d]| / 127 over the block's keys, and the int8 values stored transposed in groups
 * of four keys: word ((bh * nB + blk) * D + d) * 16 + g packs keys 4g..4g+3 of channel d, so
 * a dot4I8Packed of four packed P values against one word is four terms of P.V. Keys past N
 * are zero. With `gather`, rows come through the per-head PARO order (x may have fewer heads).
 */
export function quantizeVProgram(dtype: FloatDType, headDim: number, gather: boolean): Program {
  const D = headDim;
  const D4 = D / 4;
  const b = gather ? 1 : 0;
  return {
    key: `paro/quant8v/${dtype}/d${D}${gather ? '/gather' : ''}`, inputs: 1 + b, outputs: 2, uniform: true,
    source: () => `
${vecBinding(0, 'x', dtype, false)}
${gather ? '@group(0) @binding(1) var<storage, read> index: array<u32>;' : ''}
@group(0) @binding(${1 + b}) var<storage, read_write> vt: array<u32>;
@group(0) @binding(${2 + b}) var<storage, read_write> vscale: array<f32>;
@group(0) @binding(${3 + b}) var<uniform> u: U;
${uniformStruct('U', [['N', 'u32'], ['nB', 'u32'], ['H', 'u32'], ['Hx', 'u32']])}
${vecLoader('x', dtype)}
var<workgroup> rows: array<vec4<f32>, ${BLOCK * D4}>;
var<workgroup> sc: array<f32, ${D}>;
@compute @workgroup_size(${BLOCK})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let blk = wid.x;
  let bh = wid.y;
  let n = blk * ${BLOCK}u + li;
  let nc = min(n, u.N - 1u);
  let src = (bh / u.H) * u.Hx + (bh % u.H) / (u.H / u.Hx);
  let row = ${gather ? 'src * u.N + index[(bh % u.H) * u.N + nc]' : 'src * u.N + nc'};
  for (var p = 0u; p < ${D4}u; p++) {
    rows[li * ${D4}u + p] = select(vec4<f32>(0.0), ld_x(row * ${D4}u + p), n < u.N);
  }
  workgroupBarrier();
  for (var d = li; d < ${D}u; d += ${BLOCK}u) {
    var mx = 0.0;
    for (var k = 0u; k < ${BLOCK}u; k++) { mx = max(mx, abs(rows[k * ${D4}u + d / 4u][d % 4u])); }
    let s = select(mx / 127.0, 1.0, mx == 0.0);
    sc[d] = s;
    vscale[(bh * u.nB + blk) * ${D}u + d] = s;
  }
  workgroupBarrier();
  for (var w = li; w < ${D * 16}u; w += ${BLOCK}u) {
    let d = w / 16u;
    let g = w % 16u;
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) { v[i] = rows[(4u * g + i) * ${D4}u + d / 4u][d % 4u]; }
    vt[(bh * u.nB + blk) * ${D * 16}u + w] = pack4xI8(clamp(vec4<i32>(round(v / sc[d])), vec4<i32>(-127), vec4<i32>(127)));
  }
}`,
  };
}

export interface Int8PVConfig {
  dtype: FloatDType;
  headDim: number;
  dense: boolean;
  /** Keys per step, a multiple of 4 (chunkFor). */
  chunk: number;
  gathered: boolean;
  /**
   * Stage a whole 64-key block of K and V in workgroup memory at once (two barriers per
   * block) instead of one chunk at a time (two per chunk). Default true: on the H200 probe
   * (round 3) the fused end-to-end call's GPU time went from 2.96 to 2.52 ms.
   */
  blockStaged?: boolean;
}

let blockStagedDefault = true;
/** Benchmarks switch block staging off (Int8PVConfig.blockStaged) to compare. */
export function configureInt8PV(opts: { blockStaged?: boolean }): void {
  if (opts.blockStaged !== undefined) blockStagedDefault = opts.blockStaged;
}

/**
 * The plain int8 kernel with P.V in integers too: scores from packed Q/K with
 * dot4I8Packed (as sparseProgram), P rounded to the integers 0..127 and packed four keys
 * to a word, and each output channel's chunk sum taken as dot4I8Packed of those words with
 * V's transposed int8 words (quantizeVProgram), dequantized by V's channel scale when it is
 * folded into O. Both products are exact integer sums; the V rounding (half a step of
 * max|v|/127 per channel and block) is the only approximation beyond the plain kernel's.
 */
export function sparseInt8PVProgram(cfg: Int8PVConfig): Program {
  const { dtype, headDim: D, dense, chunk: C, gathered } = cfg;
  const staged = cfg.blockStaged ?? blockStagedDefault;
  // Keys staged per barrier pair, and the index of chunk key 0 / key group 0 within them.
  const SK = staged ? BLOCK : C;
  const kOff = staged ? 'sub + ' : '';
  const gOff = staged ? 'sub / 4u + ' : '';
  const D4 = D / 4;
  const G = C / 4;
  const keys = Array.from({ length: C }, (_, c) => c);
  const slots = Array.from({ length: D4 }, (_, p) => p);
  const groups = Array.from({ length: G }, (_, g) => g);
  let b = 0;
  const lines: string[] = [
    `@group(0) @binding(${b++}) var<storage, read> qb: array<u32>;`,
    `@group(0) @binding(${b++}) var<storage, read> kb: array<u32>;`,
    `@group(0) @binding(${b++}) var<storage, read> vtb: array<u32>;`,
    `@group(0) @binding(${b++}) var<storage, read> qscale: array<f32>;`,
    `@group(0) @binding(${b++}) var<storage, read> kscale: array<f32>;`,
    `@group(0) @binding(${b++}) var<storage, read> vscale: array<vec4<f32>>;`,
  ];
  const inputs = appendSparseTail(lines, b, dense, gathered, dtype);
  const score = (c: number) =>
    `let s${c} = select(${NEG}, f32(${slots.map((p) => `dot4I8Packed(q${p}, kp[(${kOff}${c}u) * ${D4}u + ${p}u])`).join(' + ')}) * f, kvalid[${kOff}${c}u] != 0u);`;
  // Channel d's chunk sum: the G packed P words against its G transposed V words.
  const VW = staged ? 16 : G; // V words per channel in workgroup memory
  const chan = (d: number) => groups.map((g) => `dot4I8Packed(pk${g}, vt[${d * VW}u + ${gOff}${g}u])`).join(' + ');
  return {
    key: `paro/sparse/int8pv/${dtype}/d${D}/c${C}${dense ? '/dense' : ''}${gathered ? '/gathered' : ''}${staged ? '/blockstaged' : ''}`,
    inputs, outputs: 1, uniform: true,
    source: () => `
${lines.join('\n')}
${SPARSE_UNIFORM_WGSL}
${vecStorer('ob', dtype)}
var<workgroup> kp: array<u32, ${SK * D4}>;
var<workgroup> vt: array<u32, ${D * VW}>;
var<workgroup> vsc: array<vec4<f32>, ${D4}>;
var<workgroup> kvalid: array<u32, ${SK}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let qblk = wid.x;
  let bh = wid.z;
  let h = bh % u.H;
  let b = bh / u.H;
  let kvbh = b * u.Hkv + h / (u.H / u.Hkv);
  let kh = ${gathered ? 'bh' : 'kvbh'};
  let n = qblk * ${BLOCK}u + li;
  let valid = n < u.N;
  let nc = min(n, u.N - 1u);
  let qrow = bh * u.N + ${gathered ? 'perm[h * u.N + nc]' : 'nc'};
  let qsc = qscale[bh * u.nB + qblk] * u.scale;
${slots.map((p) => `  let q${p} = qb[(bh * u.N + nc) * ${D4}u + ${p}u];`).join('\n')}
${slots.map((p) => `  var o${p} = vec4<f32>(0.0);`).join('\n')}
  var m = ${NEG};
  var l = 0.0;
  let count = ${dense ? 'u.nB' : 'counts[h * u.nB + qblk]'};
  for (var e = 0u; e < count; e++) {
    let kblk = ${dense ? 'e' : 'lists[(h * u.nB + qblk) * u.nB + e]'};
    let f = qsc * kscale[kh * u.nB + kblk];
    let vbase = (kh * u.nB + kblk) * ${D}u;
${staged ? `    workgroupBarrier();
    let key0 = kblk * ${BLOCK}u;
    for (var s = li; s < ${BLOCK * D4}u; s += ${WG}u) {
      let kr = kh * u.N + min(key0 + s / ${D4}u, u.N - 1u);
      kp[s] = kb[kr * ${D4}u + s % ${D4}u];
    }
    for (var s = li; s < ${D * 16}u; s += ${WG}u) { vt[s] = vtb[vbase * 16u + s]; }
    kvalid[li] = select(0u, 1u, key0 + li < u.N);
    if (li < ${D4}u) { vsc[li] = vscale[vbase / 4u + li]; }
    workgroupBarrier();
    // A chunk counter, so the compiler sees sub as a multiple of ${C} (aligned vector reads).
    for (var sq = 0u; sq < ${BLOCK / C}u; sq++) {
      let sub = sq * ${C}u;` : `    for (var sub = 0u; sub < ${BLOCK}u; sub += ${C}u) {
      workgroupBarrier();
      let key0 = kblk * ${BLOCK}u + sub;
      for (var s = li; s < ${C * D4}u; s += ${WG}u) {
        let kr = kh * u.N + min(key0 + s / ${D4}u, u.N - 1u);
        kp[s] = kb[kr * ${D4}u + s % ${D4}u];
      }
      for (var s = li; s < ${D * G}u; s += ${WG}u) {
        vt[s] = vtb[(vbase + s / ${G}u) * 16u + sub / 4u + s % ${G}u];
      }
      if (li < ${C}u) { kvalid[li] = select(0u, 1u, key0 + li < u.N); }
      if (sub == 0u && li < ${D4}u) { vsc[li] = vscale[vbase / 4u + li]; }
      workgroupBarrier();`}
${keys.map((c) => `      ${score(c)}`).join('\n')}
      var mx = m;
${keys.map((c) => `      mx = max(mx, s${c});`).join('\n')}
      let alpha = exp2(m - mx);
${keys.map((c) => `      let r${c} = select(0.0, exp2(s${c} - mx), kvalid[${kOff}${c}u] != 0u);`).join('\n')}
      l = l * alpha + ${keys.map((c) => `r${c}`).join(' + ')};
${groups.map((g) => `      let pk${g} = pack4xI8(vec4<i32>(${[0, 1, 2, 3].map((i) => `i32(floor(r${4 * g + i} * 127.0 + 0.5))`).join(', ')}));`).join('\n')}
${slots.map((p) => `      o${p} = fma(o${p}, vec4<f32>(alpha), vec4<f32>(vec4<i32>(${[0, 1, 2, 3].map((i) => chan(4 * p + i)).join(', ')})) * vsc[${p}u]);`).join('\n')}
      m = mx;
    }
  }
  if (valid) {
    let inv = 1.0 / (127.0 * l);
${slots.map((p) => `    st_ob(qrow * ${D4}u + ${p}u, o${p} * inv);`).join('\n')}
  }
}`,
  };
}
