import { ArgumentError, LimitError, vecBinding, vecLoader, vecStorer, type Backend, type Capabilities, type FloatDType, type WebGpuBackend } from '@attnkit/tensor';

/** Scores of hidden keys; finite so max/exp stay well defined where a whole tile is hidden. */
export const NEG = '-1.0e30';
/** -Infinity at run time (a constant -inf is rejected by WGSL's constant evaluation). */
export const NEG_INF_FN = 'fn neg_inf() -> f32 { var bits = 0xff800000u; return bitcast<f32>(bits); }';

export function asGpu(be: Backend, op: string): WebGpuBackend {
  if (be.kind !== 'webgpu') throw new ArgumentError(op, 'backend', "a WebGPU backend for this kernel", be.kind);
  return be as WebGpuBackend;
}

/** Storage binding plus vec4 loader (f16 read as packed halves, no shader-f16 needed). */
export function vec4Input(binding: number, name: string, dtype: FloatDType): string {
  return `${vecBinding(binding, name, dtype, false)}\n${vecLoader(name, dtype)}`;
}

export function vec4Output(binding: number, name: string, dtype: FloatDType): string {
  return `${vecBinding(binding, name, dtype, true)}\n${vecStorer(name, dtype)}`;
}

/** Scalar float input (bias): f32 directly, f16 unpacked from words. */
export function scalarInput(binding: number, name: string, dtype: 'f32' | 'f16'): string {
  if (dtype === 'f32') {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<f32>;
fn ld_${name}(i: u32) -> f32 { return ${name}[i]; }`;
  }
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<u32>;
fn ld_${name}(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }`;
}

export function checkWorkgroupBytes(be: WebGpuBackend, op: string, bytes: number): void {
  const limit = be.caps.maxComputeWorkgroupStorageSize;
  if (bytes > limit) throw new LimitError(op, 'maxComputeWorkgroupStorageSize (bytes)', bytes, limit);
}

/**
 * WGSL: the keys [lo, hi) a query tile can reach under the causal and window masks, from
 * `p_first` and `p_last`, the key positions of its first and last query row (queries sit
 * at the end of the keys).
 */
export const KEY_BOUNDS_WGSL = `  var hi = u.kvLen;
  if (u.causal != 0u) { hi = u32(clamp(p_last + 1, 0, i32(u.kvLen))); }
  var lo = 0u;
  if (u.window > 0u) { lo = u32(clamp(p_first - i32(u.window) + 1, 0, i32(u.kvLen))); }`;

/**
 * WGSL: the key tiles of `T` keys (a WGSL constant) to visit for [lo, hi): first the
 * `n_sink` tiles holding the attention sinks below `lo`, then tiles `start2` .. `end2`;
 * `n_tiles` in all.
 */
export function keyTilesWgsl(T: string): string {
  return `  var n_sink = 0u;
  if (u.window > 0u) { n_sink = (min(u.sinks, lo) + ${T} - 1u) / ${T}; }
  let start2 = max(lo / ${T}, n_sink);
  let end2 = (hi + ${T} - 1u) / ${T};
  var n_tiles = n_sink;
  if (end2 > start2) { n_tiles += end2 - start2; }`;
}

/** f16 16x16x16 subgroup-matrix configs with f32 results and a fixed subgroup size of 16 or more: what the subgroup-matrix prefills need. */
export function hasF16SubgroupMatrix(caps: Capabilities): boolean {
  return caps.shaderF16 && caps.subgroups && caps.subgroupMinSize === caps.subgroupMaxSize && caps.subgroupMaxSize >= 16 &&
    caps.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16);
}

/**
 * WGSL: `tile` and `bh` of workgroup `g` (of nbh (batch, head) pairs x u.qTiles query tiles),
 * query tiles last-first (causal: the longest rows first) within groups of HG (batch, head)
 * pairs, so the workgroups resident at once share the K/V of a few heads in L2.
 */
export function headGroupOrderWgsl(HG: number): string {
  return `  let per = ${HG}u * u.qTiles;
  let gi = g / per;
  let w = g % per;
  let hgs = min(${HG}u, nbh - gi * ${HG}u);
  let tile = u.qTiles - 1u - w / hgs;
  let bh = gi * ${HG}u + w % hgs;`;
}
