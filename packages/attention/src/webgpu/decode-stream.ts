import { uniformStruct } from '@attnkit/tensor';
import { POOL_BLOCK } from '../options.js';
import { NEG, vec4Input } from './common.js';

/**
 * Pass 1 of split-K decode built for streaming K/V at full bandwidth.
 *
 * A key is read by G adjacent lanes, each taking 16-byte chunks (8 halves or 4 floats)
 * c = lane + G*i of the row, so one load instruction of a key group covers G*16
 * contiguous bytes; the score is summed over the G lanes with subgroup xor-shuffles
 * (G is at most the smallest subgroup size, so a key group never straddles subgroups).
 * Each of the NG key groups of a workgroup takes U keys per iteration, all loads issued
 * before any arithmetic (U*2*CPL 16-byte loads in flight per lane), and folds them into
 * its online (max, sum, P·V) with one rescale per iteration. The NG partials are merged
 * in workgroup memory into one (max, sum, unnormalised output) per split, the layout
 * pass 2 of decode.ts reads. All loops over chunks, keys and rows are unrolled in the
 * generated source so the loaded values stay in registers.
 */
export interface StreamVariant {
  D: number;
  dtype: 'f32' | 'f16';
  /** Lanes per key: a power of two, at most the smallest subgroup size (1 without subgroups). */
  G: number;
  /** Key groups per workgroup (workgroup size G*NG). */
  NG: number;
  /** Keys per key group per iteration. */
  U: number;
  /** Query rows of one KV head per workgroup. */
  RC: number;
  selected: boolean;
}

/** 16-byte chunks per K/V row. */
export function chunksPerRow(D: number, dtype: 'f32' | 'f16'): number {
  return dtype === 'f16' ? D / 8 : D / 4;
}

export function streamKey(v: StreamVariant): string {
  return `attention/decode-stream/D${v.D}/${v.dtype}/g${v.G}/ng${v.NG}/u${v.U}/rc${v.RC}/${v.selected ? 'sel' : 'contig'}`;
}

/** Slices of the workgroup that fold the key groups before the last merge step. */
function mergeSlices(v: StreamVariant): number {
  return Math.max(1, Math.min(v.NG, Math.floor((v.G * v.NG) / (v.RC * (v.D / 4)))));
}

/** Workgroup memory the merge of the NG key groups needs. */
export function streamWorkgroupBytes(v: StreamVariant): number {
  return v.NG > 1 ? v.NG * v.RC * (v.D * 4 + 8) + mergeSlices(v) * v.RC * 8 : 0;
}

export function streamSplitSource(v: StreamVariant, fields: ReadonlyArray<readonly [string, 'u32' | 'f32']>): string {
  const { D, G, NG, U, RC } = v;
  const f16 = v.dtype === 'f16';
  const NC = chunksPerRow(D, v.dtype);
  if (NC % G !== 0) throw new Error(`decode-stream: ${NC} chunks per row do not split over ${G} lanes`);
  const CPL = NC / G;
  const VPC = f16 ? 2 : 1;
  const NV = CPL * VPC; // vec4<f32> values per lane per row
  const D4 = D / 4;
  const WG = G * NG;
  const raw = f16 ? 'vec4<u32>' : 'vec4<f32>';
  let b = 0;
  const decls = [
    vec4Input(b++, 'qb', v.dtype),
    `@group(0) @binding(${b++}) var<storage, read> kb: array<${raw}>;`,
    `@group(0) @binding(${b++}) var<storage, read> vb: array<${raw}>;`,
  ];
  if (v.selected) decls.push(`@group(0) @binding(${b++}) var<storage, read> sel: array<i32>;`);
  decls.push(`@group(0) @binding(${b++}) var<storage, read_write> opart: array<vec4<f32>>;`);
  decls.push(`@group(0) @binding(${b++}) var<storage, read_write> mpart: array<f32>;`);
  decls.push(`@group(0) @binding(${b++}) var<storage, read_write> lpart: array<f32>;`);
  decls.push(`@group(0) @binding(${b++}) var<uniform> u: U;`);

  const rows = [...Array(RC).keys()];
  const keys = [...Array(U).keys()];
  const vals = [...Array(NV).keys()];
  const chunks = [...Array(CPL).keys()];
  // Lane value k holds chunk (lane + G*i) half h, i.e. vec4 index (lane + G*i)*VPC + h of the row.
  const d4Of = (k: number) => `(p + ${G * Math.floor(k / VPC)}u) * ${VPC}u + ${k % VPC}u`;
  const unpack = (name: string, k: number) => {
    const w = `${name}${Math.floor(k / VPC)}`;
    if (!f16) return w;
    return k % VPC === 0 ? `vec4<f32>(unpack2x16float(${w}.x), unpack2x16float(${w}.y))` : `vec4<f32>(unpack2x16float(${w}.z), unpack2x16float(${w}.w))`;
  };
  const L: string[] = [];
  const emit = (s: string) => L.push(s);

  emit(`  let g = wid.x + wid.y * nwg.x;`);
  emit(`  if (g >= u.B * u.Hkv * u.nSplit * u.nChunks) { return; }`);
  emit(`  let chunk = g % u.nChunks;`);
  emit(`  let rest = g / u.nChunks;`);
  emit(`  let split = rest % u.nSplit;`);
  emit(`  let bk = rest / u.nSplit;`);
  emit(`  let b = bk / u.Hkv;`);
  emit(`  let hk = bk % u.Hkv;`);
  emit(`  let kg = lid / ${G}u;`);
  emit(`  let p = lid % ${G}u;`);
  for (const r of rows) {
    emit(`  let rr${r} = chunk * ${RC}u + ${r}u;`);
    emit(`  let rok${r} = rr${r} < u.rowsPerKv;`);
    emit(`  let rc${r} = min(rr${r}, u.rowsPerKv - 1u);`);
    emit(`  let pos${r} = i32(u.kvLen) - i32(u.Sq) + i32(rc${r} % u.Sq);`);
    emit(`  let qbase${r} = ((b * u.Hq + hk * u.group + rc${r} / u.Sq) * u.Sq + rc${r} % u.Sq) * ${D4}u;`);
    for (const k of vals) emit(`  let q${r}_${k} = ld_qb(qbase${r} + ${d4Of(k)}) * u.scale;`);
    for (const k of vals) emit(`  var o${r}_${k} = vec4<f32>(0.0);`);
    emit(`  var m${r} = NEG;`);
    emit(`  var l${r} = 0.0;`);
  }
  emit(`  let kvbase = bk * u.cap;`);
  emit(`  let f0 = split * u.perSplit * ${POOL_BLOCK}u;`);
  emit(`  let f1 = min(f0 + u.perSplit * ${POOL_BLOCK}u, u.nList * ${POOL_BLOCK}u);`);
  emit(`  // Uniform trip count: the score shuffles need every lane of a key group present.`);
  emit(`  for (var f = f0; f < f1; f += ${NG * U}u) {`);
  for (const x of keys) {
    emit(`    let fp${x} = f + ${x * NG}u + kg;`);
    emit(`    var id${x} = -1;`);
    emit(`    if (fp${x} < f1) { id${x} = ${v.selected ? `sel[bk * u.nList + fp${x} / ${POOL_BLOCK}u]` : `i32(fp${x} / ${POOL_BLOCK}u)`}; }`);
    emit(`    let j${x} = u32(max(id${x}, 0)) * ${POOL_BLOCK}u + fp${x} % ${POOL_BLOCK}u;`);
    emit(`    let kok${x} = id${x} >= 0 && u32(id${x}) < u.nb16 && j${x} < u.kvLen;`);
    emit(`    let a${x} = (kvbase + select(0u, j${x}, kok${x})) * ${NC}u + p;`);
  }
  for (const x of keys) for (const i of chunks) emit(`    let kr${x}_${i} = kb[a${x} + ${G * i}u];`);
  for (const x of keys) for (const i of chunks) emit(`    let vr${x}_${i} = vb[a${x} + ${G * i}u];`);
  for (const x of keys) for (const k of vals) emit(`    let kf${x}_${k} = ${unpack(`kr${x}_`, k)};`);
  for (const r of rows) {
    for (const x of keys) {
      emit(`    var s${r}_${x} = ${vals.map((k) => `dot(q${r}_${k}, kf${x}_${k})`).join(' + ')};`);
      for (let s = 1; s < G; s <<= 1) emit(`    s${r}_${x} += subgroupShuffleXor(s${r}_${x}, ${s}u);`);
      emit(`    var ok${r}_${x} = kok${x} && rok${r};`);
      emit(`    if (u.causal != 0u) { ok${r}_${x} = ok${r}_${x} && i32(j${x}) <= pos${r}; }`);
      emit(`    if (u.window > 0u) { ok${r}_${x} = ok${r}_${x} && (i32(j${x}) > pos${r} - i32(u.window) || j${x} < u.sinks); }`);
    }
    emit(`    let mx${r} = max(m${r}, ${keys.reduce((acc, x) => (acc ? `max(${acc}, select(NEG, s${r}_${x}, ok${r}_${x}))` : `select(NEG, s${r}_${x}, ok${r}_${x})`), '')});`);
    emit(`    let al${r} = exp(m${r} - mx${r});`);
    for (const x of keys) emit(`    let p${r}_${x} = select(0.0, exp(s${r}_${x} - mx${r}), ok${r}_${x});`);
    emit(`    l${r} = l${r} * al${r} + ${keys.map((x) => `p${r}_${x}`).join(' + ')};`);
    emit(`    m${r} = mx${r};`);
  }
  for (const x of keys) for (const k of vals) emit(`    let vf${x}_${k} = ${unpack(`vr${x}_`, k)};`);
  for (const r of rows) for (const k of vals) emit(`    o${r}_${k} = o${r}_${k} * al${r} + ${keys.map((x) => `p${r}_${x} * vf${x}_${k}`).join(' + ')};`);
  emit(`  }`);

  let tail: string;
  if (NG === 1) {
    const w: string[] = [];
    for (const r of rows) {
      w.push(`  if (rok${r}) {`);
      w.push(`    let pidx = (bk * u.nSplit + split) * u.rowsPerKv + rr${r};`);
      for (const k of vals) w.push(`    opart[pidx * ${D4}u + ${d4Of(k)}] = o${r}_${k};`);
      w.push(`    if (p == 0u) { mpart[pidx] = m${r}; lpart[pidx] = l${r}; }`);
      w.push(`  }`);
    }
    tail = w.join('\n');
  } else {
    const w: string[] = [];
    for (const r of rows) {
      w.push(`  if (p == 0u) { red_m[kg * ${RC}u + ${r}u] = m${r}; red_l[kg * ${RC}u + ${r}u] = l${r}; }`);
      for (const k of vals) w.push(`  red_o[(kg * ${RC}u + ${r}u) * ${D4}u + ${d4Of(k)}] = o${r}_${k};`);
    }
    // Two levels: S slices of the workgroup each fold NG/S key groups in place (a slice
    // owns its columns of red_o), then RC*D4 lanes fold the S slices: the last step of
    // a workgroup is a chain of S workgroup-memory reads instead of NG.
    const S = mergeSlices(v);
    const first = S > 1 ? `  workgroupBarrier();
  if (lid < ${S * RC * D4}u) {
    let e = lid % ${RC * D4}u;
    let sl = lid / ${RC * D4}u;
    let r = e / ${D4}u;
    let d4 = e % ${D4}u;
    var mx = NEG;
    for (var k = sl; k < ${NG}u; k += ${S}u) { mx = max(mx, red_m[k * ${RC}u + r]); }
    var ls = 0.0;
    var os = vec4<f32>(0.0);
    for (var k = sl; k < ${NG}u; k += ${S}u) {
      let w = exp(red_m[k * ${RC}u + r] - mx);
      ls += red_l[k * ${RC}u + r] * w;
      os += red_o[(k * ${RC}u + r) * ${D4}u + d4] * w;
    }
    red_o[(sl * ${RC}u + r) * ${D4}u + d4] = os;
    if (d4 == 0u) { red_m2[sl * ${RC}u + r] = mx; red_l2[sl * ${RC}u + r] = ls; }
  }
` : '';
    const [mArr, lArr, K] = S > 1 ? ['red_m2', 'red_l2', S] : ['red_m', 'red_l', NG];
    w.push(`${first}  workgroupBarrier();
  for (var e = lid; e < ${RC * D4}u; e += ${WG}u) {
    let r = e / ${D4}u;
    let d4 = e % ${D4}u;
    let rr = chunk * ${RC}u + r;
    if (rr >= u.rowsPerKv) { continue; }
    var mx = NEG;
    for (var k = 0u; k < ${K}u; k++) { mx = max(mx, ${mArr}[k * ${RC}u + r]); }
    var ls = 0.0;
    var os = vec4<f32>(0.0);
    for (var k = 0u; k < ${K}u; k++) {
      let w = exp(${mArr}[k * ${RC}u + r] - mx);
      ls += ${lArr}[k * ${RC}u + r] * w;
      os += red_o[(k * ${RC}u + r) * ${D4}u + d4] * w;
    }
    let pidx = (bk * u.nSplit + split) * u.rowsPerKv + rr;
    opart[pidx * ${D4}u + d4] = os;
    if (d4 == 0u) { mpart[pidx] = mx; lpart[pidx] = ls; }
  }`);
    tail = w.join('\n');
  }

  return `${G > 1 ? 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);' : ''}
${uniformStruct('U', fields)}
${decls.join('\n')}
const NEG = ${NEG};
${NG > 1 ? `var<workgroup> red_m: array<f32, ${NG * RC}>;
var<workgroup> red_l: array<f32, ${NG * RC}>;
var<workgroup> red_o: array<vec4<f32>, ${NG * RC * D4}>;` : ''}
${mergeSlices(v) > 1 ? `var<workgroup> red_m2: array<f32, ${mergeSlices(v) * RC}>;
var<workgroup> red_l2: array<f32, ${mergeSlices(v) * RC}>;` : ''}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
${L.join('\n')}
${tail}
}
`;
}
