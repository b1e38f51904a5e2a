import { uniformStruct, vecBinding, vecLoader, vecStorer, type FloatDType, type Program } from '@attnkit/tensor';
import { BLOCK } from './mask.js';
import { appendSparseTail, SPARSE_UNIFORM_WGSL } from './bindings.js';

export const CHUNK = 16;

/**
 * Keys per workgroup-memory step, also the unroll factor. Software adapters (Mesa llvmpipe)
 * spend minutes compiling the 16-key kernels, so they get 4; `ATTNKIT_ATTN_CHUNK` (4, 8, 16,
 * 32) forces a value (tests use it to cover the production setting, the H200 probe to try 32).
 */
export function chunkFor(adapterName: string): number {
  const env = typeof process !== 'undefined' ? process.env.ATTNKIT_ATTN_CHUNK : undefined;
  if (env === '4' || env === '8' || env === '16' || env === '32') return Number(env);
  return /llvmpipe|lavapipe|swiftshader/i.test(adapterName) ? 4 : CHUNK;
}
const NEG = -1e30;
const WG = 64;

/**
 * Gathers token rows per head: out[b, h, n, :] = x[b, h / (H / Hx), index[h * N + n], :].
 * Used to apply a per-head PARO order (and its inverse), expanding GQA key/value heads to
 * one copy per query head because heads of a group may pick different orders.
 */
export function gatherProgram(dtype: FloatDType, headDim: number): Program {
  const D4 = headDim / 4;
  return {
    key: `paro/gather/${dtype}/d${headDim}`, inputs: 2, outputs: 1, uniform: true,
    source: () => `
${vecBinding(0, 'x', dtype, false)}
@group(0) @binding(1) var<storage, read> index: array<u32>;
${vecBinding(2, 'y', dtype, true)}
@group(0) @binding(3) var<uniform> u: U;
${uniformStruct('U', [['total', 'u32'], ['H', 'u32'], ['Hx', 'u32'], ['N', 'u32'], ['tilesX', 'u32']])}
${vecLoader('x', dtype)}
${vecStorer('y', dtype)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + li;
  if (i >= u.total) { return; }
  let p = i % ${D4}u;
  let row = i / ${D4}u;
  let n = row % u.N;
  let bh = row / u.N;
  let h = bh % u.H;
  let b = bh / u.H;
  let src = (b * u.Hx + h / (u.H / u.Hx)) * u.N + index[h * u.N + n];
  st_y(i, ld_x(src * ${D4}u + p));
}`,
  };
}

/** Per-(batch, head) channel mean over tokens: SageAttention's K smoothing (exact under softmax). */
export function channelMeanProgram(dtype: FloatDType, headDim: number): Program {
  const D4 = headDim / 4;
  return {
    key: `paro/mean/${dtype}/d${headDim}`, inputs: 1, outputs: 1, uniform: true,
    source: () => `
${vecBinding(0, 'x', dtype, false)}
@group(0) @binding(1) var<storage, read_write> mean: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: U;
${uniformStruct('U', [['N', 'u32']])}
${vecLoader('x', dtype)}
var<workgroup> part: array<vec4<f32>, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.x;
  for (var p = 0u; p < ${D4}u; p++) {
    var acc = vec4<f32>(0.0);
    for (var n = li; n < u.N; n += ${WG}u) { acc += ld_x((bh * u.N + n) * ${D4}u + p); }
    part[li] = acc;
    workgroupBarrier();
    for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
      if (li < s) { part[li] += part[li + s]; }
      workgroupBarrier();
    }
    if (li == 0u) { mean[bh * ${D4}u + p] = part[0] / f32(u.N); }
    workgroupBarrier();
  }
}`,
  };
}

/**
 * First half of the K channel mean, spread over every 64-token block (the one-pass
 * channelMeanProgram runs B x H workgroups only, ~0.4 ms on the H200 for 16384 tokens):
 * partial[bh, blk, :] = sum of the block's rows. Lane t sums vec4 slot t % D4 over every
 * G-th row (G = 64 / D4 row groups), then the groups are added in workgroup memory.
 * Needs D4 <= 64.
 */
export function channelPartialProgram(dtype: FloatDType, headDim: number): Program {
  const D4 = headDim / 4;
  const G = Math.floor(WG / D4);
  return {
    key: `paro/meanpart/${dtype}/d${headDim}`, inputs: 1, outputs: 1, uniform: true,
    source: () => `
${vecBinding(0, 'x', dtype, false)}
@group(0) @binding(1) var<storage, read_write> partial: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: U;
${uniformStruct('U', [['N', 'u32'], ['nB', 'u32']])}
${vecLoader('x', dtype)}
var<workgroup> part: array<vec4<f32>, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let blk = wid.x;
  let bh = wid.y;
  let p = li % ${D4}u;
  let g = li / ${D4}u;
  var acc = vec4<f32>(0.0);
  if (g < ${G}u) {
    for (var r = g; r < ${BLOCK}u; r += ${G}u) {
      let n = blk * ${BLOCK}u + r;
      if (n < u.N) { acc += ld_x((bh * u.N + n) * ${D4}u + p); }
    }
  }
  part[li] = acc;
  workgroupBarrier();
  if (li < ${D4}u) {
    var s = vec4<f32>(0.0);
    for (var k = 0u; k < ${G}u; k++) { s += part[k * ${D4}u + li]; }
    partial[(bh * u.nB + blk) * ${D4}u + li] = s;
  }
}`,
  };
}

/** Second half: mean[bh, :] = (sum over blocks of partial[bh, blk, :]) / N. */
export function channelMeanFromPartialsProgram(headDim: number): Program {
  const D4 = headDim / 4;
  const G = Math.floor(WG / D4);
  return {
    key: `paro/meanreduce/d${headDim}`, inputs: 1, outputs: 1, uniform: true,
    source: () => `
@group(0) @binding(0) var<storage, read> partial: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> mean: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: U;
${uniformStruct('U', [['N', 'u32'], ['nB', 'u32']])}
var<workgroup> part: array<vec4<f32>, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.x;
  let p = li % ${D4}u;
  let g = li / ${D4}u;
  var acc = vec4<f32>(0.0);
  if (g < ${G}u) {
    for (var blk = g; blk < u.nB; blk += ${G}u) { acc += partial[(bh * u.nB + blk) * ${D4}u + p]; }
  }
  part[li] = acc;
  workgroupBarrier();
  if (li < ${D4}u) {
    var s = vec4<f32>(0.0);
    for (var k = 0u; k < ${G}u; k++) { s += part[k * ${D4}u + li]; }
    mean[bh * ${D4}u + li] = s / f32(u.N);
  }
}`,
  };
}

/**
 * Symmetric int8 quantization with one scale per 64-token block (per batch and head):
 * scale = max|x - mean| / 127, q = round((x - mean) / scale). The mean input is all zeros
 * when smoothing is off. With `gather`, the block is formed from the rows the per-head PARO
 * order names (out row n of head h = x row index[h * N + n] of head h / (H / Hx)), so the
 * permutation costs no pass of its own; x may then have fewer heads than the output (GQA).
 */
export function quantizeProgram(dtype: FloatDType, headDim: number, gather = false): Program {
  const D4 = headDim / 4;
  const b = gather ? 1 : 0;
  return {
    key: `paro/quant8/${dtype}/d${headDim}${gather ? '/gather' : ''}`, inputs: 2 + b, outputs: 2, uniform: true,
    source: () => `
${vecBinding(0, 'x', dtype, false)}
@group(0) @binding(1) var<storage, read> mean: array<vec4<f32>>;
${gather ? '@group(0) @binding(2) var<storage, read> index: array<u32>;' : ''}
@group(0) @binding(${2 + b}) var<storage, read_write> q8: array<u32>;
@group(0) @binding(${3 + b}) var<storage, read_write> scales: array<f32>;
@group(0) @binding(${4 + b}) var<uniform> u: U;
${uniformStruct('U', [['N', 'u32'], ['nB', 'u32'], ['H', 'u32'], ['Hx', 'u32']])}
${vecLoader('x', dtype)}
var<workgroup> red: array<f32, ${BLOCK}>;
@compute @workgroup_size(${BLOCK})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let blk = wid.x;
  let bh = wid.y;
  let n = blk * ${BLOCK}u + li;
  let ok = n < u.N;
  let nc = min(n, u.N - 1u);
  let src = (bh / u.H) * u.Hx + (bh % u.H) / (u.H / u.Hx);
  let row = ${gather ? 'src * u.N + index[(bh % u.H) * u.N + nc]' : 'src * u.N + nc'};
  let orow = bh * u.N + nc;
  var mx = 0.0;
  for (var p = 0u; p < ${D4}u; p++) {
    let v = abs(ld_x(row * ${D4}u + p) - mean[src * ${D4}u + p]);
    mx = max(mx, max(max(v.x, v.y), max(v.z, v.w)));
  }
  red[li] = select(0.0, mx, ok);
  workgroupBarrier();
  for (var s = ${BLOCK / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let sc = select(red[0] / 127.0, 1.0, red[0] == 0.0);
  if (li == 0u) { scales[bh * u.nB + blk] = sc; }
  if (ok) {
    for (var p = 0u; p < ${D4}u; p++) {
      let v = (ld_x(row * ${D4}u + p) - mean[src * ${D4}u + p]) / sc;
      q8[orow * ${D4}u + p] = pack4xI8(clamp(vec4<i32>(round(v)), vec4<i32>(-127), vec4<i32>(127)));
    }
  }
}`,
  };
}

let packedDotDefault = true;
/** Benchmarks switch the int8 kernel's packed dot product off to measure it (SparseConfig.packedDot). */
export function configurePackedDot(on: boolean): void {
  packedDotDefault = on;
}

export interface SparseConfig {
  /** 'float': Q, K in `dtype`; 'int8': Q, K int8 with per-block scales, P quantized to 1/127. */
  qk: 'float' | 'int8';
  /** dtype of V and the output (and of Q, K in float mode). */
  dtype: FloatDType;
  headDim: number;
  /** Dense: every key block, no mask lists bound. */
  dense: boolean;
  /** Keys per step (see chunkFor). */
  chunk: number;
  /**
   * PARO order fused into the kernel: a `perm` input [H * N] names, for each head and
   * permuted position, the original token. Float Q/K and V rows are read through it and
   * output rows are written back through it (the inverse permutation for free); in int8
   * mode Q/K come already permuted and expanded to H heads by the gathering quantizer.
   */
  gathered?: boolean;
  /**
   * int8 only: keep Q and K packed (four int8 per u32) and score with dot4I8Packed, the
   * 4-way integer dot product (DP4A-class instructions): the same exact integer sums as
   * the f32 route with a quarter of the workgroup-memory traffic and registers for K and Q.
   * Default true; false keeps the unpacked f32 route (the H200 probe compares both).
   */
  packedDot?: boolean;
  /**
   * Stage a whole 64-key block of K and V per barrier pair instead of one chunk (as the
   * int8-P.V kernel does by default). Off by default here until measured on the H200.
   */
  blockStaged?: boolean;
}

let blockStagedDefault = false;
/** Benchmarks switch whole-block staging of the plain/float kernel on (SparseConfig.blockStaged). */
export function configureSparseStaging(on: boolean): void {
  blockStagedDefault = on;
}

/**
 * Whether sparseProgram stages whole key blocks for this configuration: the setting, and
 * only where the block's K and V fit the adapter's workgroup memory (float K and V of a
 * 64-dim head need 33 KB, past the 32 KB some adapters offer).
 */
export function sparseStaging(cfg: Pick<SparseConfig, 'qk' | 'headDim'>, maxWorkgroupBytes: number): boolean {
  const D4 = cfg.headDim / 4;
  const kBytes = cfg.qk === 'int8' && packedDotDefault ? 4 : 16;
  return blockStagedDefault && BLOCK * D4 * (kBytes + 16) + BLOCK * 4 <= maxWorkgroupBytes;
}

/**
 * Block-sparse flash attention over a token sequence in 64-token blocks. One workgroup owns
 * one query block (64 queries, one per invocation) of one (batch, head) and walks the key
 * blocks its mask list names, 16 keys at a time through workgroup memory, with an online
 * softmax in f32 (exp2 with log2(e) folded into the scale). In int8 mode the Q.K dot products are
 * exact integer products of the int8 values (held in f32) with per-block scales, and P is rounded to
 * multiples of 1/127 (it lies in [0, 1] after the running-max subtraction) before P.V, as in
 * the SageAttention/PARO recipe; the row sum uses the unrounded P.
 */
export function sparseProgram(cfg: SparseConfig): Program {
  const { qk, dtype, headDim: D, dense, chunk } = cfg;
  const gathered = cfg.gathered ?? false;
  const packed = qk === 'int8' && (cfg.packedDot ?? packedDotDefault);
  const staged = cfg.blockStaged ?? blockStagedDefault;
  const SK = staged ? BLOCK : cfg.chunk; // keys in workgroup memory per barrier pair
  // Workgroup-memory index of chunk key c, slot p (and of key c's valid flag).
  const at = (c: number, p: number) => (staged ? `(sub + ${c}u) * ${cfg.headDim / 4}u + ${p}u` : `${c * (cfg.headDim / 4) + p}u`);
  const kv = (c: number) => (staged ? `sub + ${c}u` : `${c}u`);
  const D4 = D / 4;
  const C = chunk;
  const i8 = qk === 'int8';
  const keys = Array.from({ length: C }, (_, c) => c);
  const slots = Array.from({ length: D4 }, (_, p) => p);
  let b = 0;
  const lines: string[] = [];
  if (i8) {
    lines.push(`@group(0) @binding(${b++}) var<storage, read> qb: array<u32>;`);
    lines.push(`@group(0) @binding(${b++}) var<storage, read> kb: array<u32>;`);
  } else {
    lines.push(vecBinding(b++, 'qb', dtype, false));
    lines.push(vecBinding(b++, 'kb', dtype, false));
  }
  lines.push(vecBinding(b++, 'vb', dtype, false));
  if (i8) {
    lines.push(`@group(0) @binding(${b++}) var<storage, read> qscale: array<f32>;`);
    lines.push(`@group(0) @binding(${b++}) var<storage, read> kscale: array<f32>;`);
  }
  const inputs = appendSparseTail(lines, b, dense, gathered, dtype);

  // Branch-free: every key of the chunk is scored and masked with select(), so the 16
  // dot-product chains interleave. In int8 mode the operands are the int8 values held
  // exactly in f32 (|sum| <= D * 127^2 < 2^24), so the dot products are the exact integer
  // ones, dequantized once by sQ * sK.
  const score = (c: number): string => {
    if (packed) {
      const sum = slots.map((p) => `dot4I8Packed(q${p}, kp[${at(c, p)}])`).join(' + ');
      return `let a${c} = ${sum}; let s${c} = select(${NEG}, f32(a${c}) * f, kvalid[${kv(c)}] != 0u);`;
    }
    const chain = slots.slice(1).reduce((acc, p) => `fma(q${p}, ks[${at(c, p)}], ${acc})`, `q0 * ks[${at(c, 0)}]`);
    return `let a${c} = ${chain}; let s${c} = select(${NEG}, (a${c}.x + a${c}.y + a${c}.z + a${c}.w)${i8 ? ' * f' : ''}, kvalid[${kv(c)}] != 0u);`;
  };
  const prob = (c: number): string =>
    i8
      ? `let r${c} = select(0.0, exp2(s${c} - mx), kvalid[${kv(c)}] != 0u); let p${c} = floor(r${c} * 127.0 + 0.5) * (1.0 / 127.0);`
      : `let p${c} = select(0.0, exp2(s${c} - mx), kvalid[${kv(c)}] != 0u);`;

  return {
    key: `paro/sparse/${qk}/${dtype}/d${D}/c${C}${dense ? '/dense' : ''}${gathered ? '/gathered' : ''}${packed ? '/dp4' : ''}${staged ? '/blockstaged' : ''}`,
    inputs, outputs: 1, uniform: true,
    source: () => `
${lines.join('\n')}
${SPARSE_UNIFORM_WGSL}
${i8 ? '' : vecLoader('qb', dtype)}
${i8 ? '' : vecLoader('kb', dtype)}
${vecLoader('vb', dtype)}
${vecStorer('ob', dtype)}
${packed ? `var<workgroup> kp: array<u32, ${SK * D4}>;` : `var<workgroup> ks: array<vec4<f32>, ${SK * D4}>;`}
var<workgroup> vs: array<vec4<f32>, ${SK * D4}>;
var<workgroup> kvalid: array<u32, ${SK}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let qblk = wid.x;
  let bh = wid.z;
  let h = bh % u.H;
  let b = bh / u.H;
  let kvbh = b * u.Hkv + h / (u.H / u.Hkv);
  let n = qblk * ${BLOCK}u + li;
  let valid = n < u.N;
  let nc = min(n, u.N - 1u);
  // Rows in the original order: where this query's output goes (and its float Q comes from).
  let qrow = bh * u.N + ${gathered ? 'perm[h * u.N + nc]' : 'nc'};
  let kh = ${gathered && i8 ? 'bh' : 'kvbh'};
${i8
  ? `  let qsc = qscale[bh * u.nB + qblk] * u.scale;\n${slots.map((p) => packed ? `  let q${p} = qb[(bh * u.N + nc) * ${D4}u + ${p}u];` : `  let q${p} = vec4<f32>(unpack4xI8(qb[(bh * u.N + nc) * ${D4}u + ${p}u]));`).join('\n')}`
  : slots.map((p) => `  let q${p} = ld_qb(qrow * ${D4}u + ${p}u) * u.scale;`).join('\n')}
${slots.map((p) => `  var o${p} = vec4<f32>(0.0);`).join('\n')}
  var m = ${NEG};
  var l = 0.0;
  let count = ${dense ? 'u.nB' : 'counts[h * u.nB + qblk]'};
  for (var e = 0u; e < count; e++) {
    let kblk = ${dense ? 'e' : 'lists[(h * u.nB + qblk) * u.nB + e]'};
${i8 ? '    let f = qsc * kscale[kh * u.nB + kblk];' : ''}
${staged ? `    workgroupBarrier();
    let key0 = kblk * ${BLOCK}u;` : `    for (var sub = 0u; sub < ${BLOCK}u; sub += ${C}u) {
      workgroupBarrier();
      let key0 = kblk * ${BLOCK}u + sub;`}
      for (var s = li; s < ${SK * D4}u; s += ${WG}u) {
        let c = s / ${D4}u;
        let p = s % ${D4}u;
        let key = key0 + c;
        let kr = kvbh * u.N + ${gathered ? 'perm[h * u.N + min(key, u.N - 1u)]' : 'min(key, u.N - 1u)'};
        vs[s] = select(vec4<f32>(0.0), ld_vb(kr * ${D4}u + p), key < u.N);
        if (p == 0u) { kvalid[c] = select(0u, 1u, key < u.N); }
      }
      for (var s = li; s < ${SK * D4}u; s += ${WG}u) {
        let kn = min(key0 + s / ${D4}u, u.N - 1u);
        let kr = kh * u.N + ${gathered && !i8 ? 'perm[h * u.N + kn]' : 'kn'};
        ${packed ? `kp[s] = kb[kr * ${D4}u + s % ${D4}u];` : `ks[s] = ${i8 ? `vec4<f32>(unpack4xI8(kb[kr * ${D4}u + s % ${D4}u]))` : `ld_kb(kr * ${D4}u + s % ${D4}u)`};`}
      }
      workgroupBarrier();
${staged ? `    for (var sq = 0u; sq < ${BLOCK / C}u; sq++) {
      let sub = sq * ${C}u;` : ''}
${keys.map((c) => `      ${score(c)}`).join('\n')}
      var mx = m;
${keys.map((c) => `      mx = max(mx, s${c});`).join('\n')}
      let alpha = exp2(m - mx);
${keys.map((c) => `      ${prob(c)}`).join('\n')}
      l = l * alpha + ${keys.map((c) => (i8 ? `r${c}` : `p${c}`)).join(' + ')};
${slots.map((p) => `      o${p} = o${p} * alpha;`).join('\n')}
${keys.map((c) => `      ${slots.map((p) => `o${p} = fma(vec4<f32>(p${c}), vs[${at(c, p)}], o${p});`).join(' ')}`).join('\n')}
      m = mx;
    }
  }
  if (valid) {
    let inv = 1.0 / l;
${slots.map((p) => `    st_ob(qrow * ${D4}u + ${p}u, o${p} * inv);`).join('\n')}
  }
}`,
  };
}
