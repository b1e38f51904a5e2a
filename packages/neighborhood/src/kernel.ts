import { packUniforms, uniformStruct, vecBinding, vecLoader, vecStorer, type FloatDType, type Program } from '@attnkit/tensor';
import { TILE_GROUP_WGSL, WINDOW_WGSL } from './window-wgsl.js';

/**
 * The fused neighborhood-attention kernel. One workgroup owns one query tile of
 * tile[0] x tile[1] x tile[2] queries laid out in the spatial grid *inside one dilation
 * group per axis*, one query per invocation. Because window start and end never decrease
 * with the in-group query index, the tile's key box per axis runs from the window start of
 * its first query to the window end of its last (its corners). The box is streamed
 * through workgroup memory in chunks of 16 keys (chunkFor); each invocation tests its own
 * window per key (a range test per axis) and skips the dot product of keys outside it,
 * keeps an online softmax in f32 (exp2, log2(e) folded into the scale) and never writes an
 * N x N matrix anywhere. (A branch-free variant that masks with select() and skips whole
 * chunks measured the same in 2-D and 2x slower in 3-D on the H200, so the per-key branch
 * stays.)
 *
 * With `maskFree` the window test is dropped: the rank-1 full-window case is plain dense
 * attention, used as our dense comparator.
 *
 * Every axis is present (lower ranks are padded with length-1 axes in front).
 */

export const CHUNK = 16;

/**
 * Keys per workgroup-memory step, which is also the unroll factor of the generated code.
 * Software adapters (Mesa llvmpipe) spend minutes in LLVM on the fully unrolled 16-key
 * kernels, so they get 4; `ATTNKIT_ATTN_CHUNK` (4, 8 or 16) forces a value (tests use it to
 * cover the production setting).
 */
export function chunkFor(adapterName: string): number {
  const env = typeof process !== 'undefined' ? process.env.ATTNKIT_ATTN_CHUNK : undefined;
  if (env === '4' || env === '8' || env === '16') return Number(env);
  return /llvmpipe|lavapipe|swiftshader/i.test(adapterName) ? 4 : CHUNK;
}
export const NEG = -1e30;

export interface KernelConfig {
  dtype: FloatDType;
  headDim: number;
  tile: [number, number, number];
  maskFree: boolean;
  /** Keys per step (see chunkFor). */
  chunk: number;
}

export const UFIELDS = [
  ['H', 'u32'], ['Hkv', 'u32'], ['L0', 'u32'], ['L1', 'u32'], ['L2', 'u32'],
  ['k0', 'u32'], ['k1', 'u32'], ['k2', 'u32'], ['d0', 'u32'], ['d1', 'u32'], ['d2', 'u32'],
  ['causal', 'u32'], ['n0', 'u32'], ['n1', 'u32'], ['n2', 'u32'], ['tilesX', 'u32'], ['scale', 'f32'],
] as const;

export interface KernelUniforms {
  H: number; Hkv: number; L: number[]; k: number[]; d: number[]; causal: boolean[];
  /** Tiles per dilation group per axis. */
  tpg: number[];
  tilesX: number;
  scaleLog2: number;
}

export function packKernelUniforms(u: KernelUniforms): ArrayBuffer {
  const causalBits = (u.causal[0] ? 1 : 0) | (u.causal[1] ? 2 : 0) | (u.causal[2] ? 4 : 0);
  return packUniforms([
    ['u32', u.H], ['u32', u.Hkv], ['u32', u.L[0]!], ['u32', u.L[1]!], ['u32', u.L[2]!],
    ['u32', u.k[0]!], ['u32', u.k[1]!], ['u32', u.k[2]!], ['u32', u.d[0]!], ['u32', u.d[1]!], ['u32', u.d[2]!],
    ['u32', causalBits], ['u32', u.tpg[0]!], ['u32', u.tpg[1]!], ['u32', u.tpg[2]!], ['u32', u.tilesX], ['f32', u.scaleLog2],
  ]);
}

export function neighborhoodProgram(cfg: KernelConfig): Program {
  const { dtype, headDim: D, tile, maskFree, chunk } = cfg;
  const D4 = D / 4;
  const WG = tile[0] * tile[1] * tile[2];
  const C = chunk;
  const qVars = Array.from({ length: D4 }, (_, p) => p);
  const keys = Array.from({ length: C }, (_, c) => c);
  const key = `neighborhood/${dtype}/d${D}/t${tile.join('x')}/c${C}${maskFree ? '/dense' : ''}`;

  const scoreOf = (c: number): string => {
    const chain = qVars.slice(1).reduce((acc, p) => `fma(q${p}, ks[${c * D4 + p}u], ${acc})`, `q0 * ks[${c * D4}u]`);
    const body = `let a${c} = ${chain}; s${c} = a${c}.x + a${c}.y + a${c}.z + a${c}.w;`;
    if (maskFree) return `var s${c} = ${NEG}; if (kc[${c}u].w != 0) { ${body} }`;
    return `var s${c} = ${NEG}; { let y = kc[${c}u]; if (y.w != 0 && all(y.xyz >= lo) && all(y.xyz <= hi)) { ${body} } }`;
  };
  const pvOf = (c: number): string => {
    const acc = qVars.map((p) => `o${p} = fma(vec4<f32>(p${c}), vs[${c * D4 + p}u], o${p});`).join(' ');
    return maskFree ? acc : `if (p${c} != 0.0) { ${acc} }`;
  };

  return {
    key, inputs: 3, outputs: 1, uniform: true,
    source: () => `
${vecBinding(0, 'qb', dtype, false)}
${vecBinding(1, 'kb', dtype, false)}
${vecBinding(2, 'vb', dtype, false)}
${vecBinding(3, 'ob', dtype, true)}
@group(0) @binding(4) var<uniform> u: U;
${uniformStruct('U', UFIELDS)}
${vecLoader('qb', dtype)}
${vecLoader('kb', dtype)}
${vecLoader('vb', dtype)}
${vecStorer('ob', dtype)}

var<workgroup> ks: array<vec4<f32>, ${C * D4}>;
var<workgroup> vs: array<vec4<f32>, ${C * D4}>;
var<workgroup> kc: array<vec4<i32>, ${C}>;

${WINDOW_WGSL}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let T = wid.x + wid.y * nwg.x;
  if (T >= u.tilesX) { return; }
  let bh = wid.z;
  let h = bh % u.H;
  let b = bh / u.H;
  let kvh = h / (u.H / u.Hkv);
  let L = vec3<u32>(u.L0, u.L1, u.L2);
${TILE_GROUP_WGSL}
  let tileStart = vec3<i32>((ta % tpg) * vec3<u32>(${tile[0]}u, ${tile[1]}u, ${tile[2]}u));
  let lg = vec3<i32>(group_len(L.x, dd.x, g.x), group_len(L.y, dd.y, g.y), group_len(L.z, dd.z, g.z));
  if (any(tileStart >= lg)) { return; }
  let tileLast = min(tileStart + vec3<i32>(${tile[0] - 1}, ${tile[1] - 1}, ${tile[2] - 1}), lg - vec3<i32>(1));
  // The tile's key box, in-group, from its two corners.
  let boxLo = vec3<i32>(win_start(tileStart.x, lg.x, kk.x, cz.x), win_start(tileStart.y, lg.y, kk.y, cz.y), win_start(tileStart.z, lg.z, kk.z, cz.z));
  let boxHi = vec3<i32>(win_end(tileLast.x, lg.x, kk.x, cz.x), win_end(tileLast.y, lg.y, kk.y, cz.y), win_end(tileLast.z, lg.z, kk.z, cz.z));
  let nb = vec3<u32>(boxHi - boxLo + vec3<i32>(1));
  let nK = nb.x * nb.y * nb.z;

  // This invocation's query (in-group index, then grid coordinate).
  let lq = vec3<i32>(i32(li / ${tile[1] * tile[2]}u), i32((li / ${tile[2]}u) % ${tile[1]}u), i32(li % ${tile[2]}u));
  let iq = tileStart + lq;
  let valid = all(iq < lg);
  let iqc = min(iq, lg - vec3<i32>(1));
  let lo = vec3<i32>(win_start(iqc.x, lg.x, kk.x, cz.x), win_start(iqc.y, lg.y, kk.y, cz.y), win_start(iqc.z, lg.z, kk.z, cz.z));
  let hi = vec3<i32>(win_end(iqc.x, lg.x, kk.x, cz.x), win_end(iqc.y, lg.y, kk.y, cz.y), win_end(iqc.z, lg.z, kk.z, cz.z));
  let xq = g + dd * vec3<u32>(iqc);
  let qrow = ((b * u.H + h) * L.x + xq.x) * L.y * L.z + xq.y * L.z + xq.z;
  let kvBase = (b * u.Hkv + kvh) * L.x * L.y * L.z;
${qVars.map((p) => `  let q${p} = ld_qb(qrow * ${D4}u + ${p}u) * u.scale;`).join('\n')}
${qVars.map((p) => `  var o${p} = vec4<f32>(0.0);`).join('\n')}
  var m = ${NEG};
  var l = 0.0;

  for (var base = 0u; base < nK; base += ${C}u) {
    workgroupBarrier();
    for (var s = li; s < ${C * D4}u; s += ${WG}u) {
      let c = s / ${D4}u;
      let p = s % ${D4}u;
      let j = base + c;
      if (j < nK) {
        let jb = vec3<i32>(vec3<u32>(j / (nb.y * nb.z), (j / nb.z) % nb.y, j % nb.z)) + boxLo;
        let y = g + dd * vec3<u32>(jb);
        let row = kvBase + (y.x * L.y + y.y) * L.z + y.z;
        ks[s] = ld_kb(row * ${D4}u + p);
        vs[s] = ld_vb(row * ${D4}u + p);
        if (p == 0u) { kc[c] = vec4<i32>(jb, 1); }
      } else {
        ks[s] = vec4<f32>(0.0);
        vs[s] = vec4<f32>(0.0);
        if (p == 0u) { kc[c] = vec4<i32>(0, 0, 0, 0); }
      }
    }
    workgroupBarrier();
${keys.map((c) => `    ${scoreOf(c)}`).join('\n')}
    var mx = m;
${keys.map((c) => `    mx = max(mx, s${c});`).join('\n')}
    let alpha = exp2(m - mx);
${keys.map((c) => `    let p${c} = select(0.0, exp2(s${c} - mx), s${c} > ${NEG / 2});`).join('\n')}
    l = l * alpha + ${keys.map((c) => `p${c}`).join(' + ')};
${qVars.map((p) => `    o${p} = o${p} * alpha;`).join('\n')}
${keys.map((c) => `    ${pvOf(c)}`).join('\n')}
    m = mx;
  }
  if (valid) {
    let inv = 1.0 / l;
${qVars.map((p) => `    st_ob(qrow * ${D4}u + ${p}u, o${p} * inv);`).join('\n')}
  }
}`,
  };
}
