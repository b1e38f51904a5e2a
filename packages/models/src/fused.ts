import { add, gridFor, LINEAR_GROUP, mul, packUniforms, permute, rmsnorm, rope, silu, slice, tensor, uniformStruct, WebGpuBackend, type Program, type Tensor } from '@attnkit/tensor';

/*
 * Two fusions of the decoder's glue, for WebGPU, where a decode step at batch 1 is bound by
 * how many kernels it launches rather than by arithmetic:
 *   splitHeadsRope: the fused q|k|v projection [S, (Hq + 2 Hkv) D] -> q, k rotated and v, each
 *                   [1, H, S, D] (one kernel instead of three reshapes/permutes and two ropes);
 *   swiglu:         the fused gate|up projection [S, 2I] -> silu(gate) * up (one kernel, not two).
 * The CPU backend composes the same results from tensor ops, which is also how the tests
 * check the kernels. Rotary angles come from a cos/sin table built in float64 on the host.
 */

const WG = 256;

/** cos/sin of position * invFreq[i] (positions scaled for linear RoPE scaling), f32 [P, D/2, 2]. */
export class RopeTable {
  private table: Tensor | null = null;
  private positions = 0;

  constructor(private readonly invFreq: Float32Array, private readonly positionScale: number, private readonly maxPositions: number) {}

  /** The table covering positions [0, n), grown (by doubling) when needed. */
  forPositions(be: WebGpuBackend, n: number): Tensor {
    if (this.table && n <= this.positions) return this.table;
    const P = Math.min(this.maxPositions, Math.max(n, 2 ** Math.ceil(Math.log2(Math.max(n, 64)))));
    const half = this.invFreq.length;
    const data = new Float32Array(P * half * 2);
    for (let p = 0; p < P; p++) {
      for (let i = 0; i < half; i++) {
        const a = p * this.positionScale * this.invFreq[i]!;
        data[(p * half + i) * 2] = Math.cos(a);
        data[(p * half + i) * 2 + 1] = Math.sin(a);
      }
    }
    this.table?.dispose();
    this.table = tensor(be, data, [P, half, 2]);
    this.positions = P;
    return this.table;
  }

  dispose(): void {
    this.table?.dispose();
    this.table = null;
  }
}

const ROPE_U = uniformStruct('U', [['S', 'u32'], ['Hq', 'u32'], ['Hkv', 'u32'], ['D', 'u32'], ['pos0', 'u32'], ['total', 'u32']]);
const splitRopeProgram: Program = {
  key: 'models/split-heads-rope',
  inputs: 2, outputs: 3, uniform: true,
  source: () => `
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read_write> k: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<uniform> u: U;
${ROPE_U}
${LINEAR_GROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let idx = linear_group(wid, nwg) * ${WG}u + li;
  if (idx >= u.total) { return; }
  let half = u.D / 2u;
  let i = idx % half;
  let s = (idx / half) % u.S;
  let hs = idx / (half * u.S);
  let src = s * (u.Hq + 2u * u.Hkv) * u.D + hs * u.D + i;
  var y1 = qkv[src];
  var y2 = qkv[src + half];
  if (hs < u.Hq + u.Hkv) {
    // HF rotate_half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)
    let c = cs[(u.pos0 + s) * half + i];
    let x1 = y1;
    y1 = x1 * c.x - y2 * c.y;
    y2 = y2 * c.x + x1 * c.y;
  }
  if (hs < u.Hq) {
    let o = (hs * u.S + s) * u.D + i;
    q[o] = y1; q[o + half] = y2;
  } else if (hs < u.Hq + u.Hkv) {
    let o = ((hs - u.Hq) * u.S + s) * u.D + i;
    k[o] = y1; k[o + half] = y2;
  } else {
    let o = ((hs - u.Hq - u.Hkv) * u.S + s) * u.D + i;
    v[o] = y1; v[o + half] = y2;
  }
}`,
};

export interface HeadsSpec {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  position: number;
  table: RopeTable;
  invFreq: Float32Array;
  linearScale: number;
  theta: number;
}

/** qkv [S, (Hq + 2 Hkv) D] -> q [1, Hq, S, D] and k [1, Hkv, S, D] rotated at `position`, v [1, Hkv, S, D]. */
export function splitHeadsRope(qkv: Tensor, h: HeadsSpec): { q: Tensor; k: Tensor; v: Tensor } {
  const S = qkv.shape[0]!;
  const { numHeads: Hq, numKvHeads: Hkv, headDim: D } = h;
  const be = qkv.backend;
  if (be instanceof WebGpuBackend && qkv.dtype === 'f32') {
    const table = h.table.forPositions(be, h.position + S);
    const q = be.empty('splitHeadsRope', 'f32', [1, Hq, S, D]);
    const k = be.empty('splitHeadsRope', 'f32', [1, Hkv, S, D]);
    const v = be.empty('splitHeadsRope', 'f32', [1, Hkv, S, D]);
    const total = (Hq + 2 * Hkv) * S * (D / 2);
    be.dispatch({
      program: splitRopeProgram,
      inputs: [be.buffer(qkv, 'splitHeadsRope'), be.buffer(table, 'splitHeadsRope')],
      outputs: [be.buffer(q, 'splitHeadsRope'), be.buffer(k, 'splitHeadsRope'), be.buffer(v, 'splitHeadsRope')],
      uniforms: packUniforms([['u32', S], ['u32', Hq], ['u32', Hkv], ['u32', D], ['u32', h.position], ['u32', total]]),
      grid: gridFor(Math.ceil(total / WG)),
    });
    return { q, k, v };
  }
  const heads = (from: number, H: number) => {
    const part = slice(qkv, [0, from * D], [S, (from + H) * D]);
    return S === 1 ? part.reshape([1, H, 1, D]) : permute(part.reshape([S, H, D]), [1, 0, 2]).reshape([1, H, S, D]);
  };
  const rot = (t: Tensor) => rope(t, { positionOffset: h.position, invFreq: h.invFreq, theta: h.theta, linearScale: h.linearScale });
  return { q: rot(heads(0, Hq)), k: rot(heads(Hq, Hkv)), v: heads(Hq + Hkv, Hkv) };
}

const SWIGLU_U = uniformStruct('U', [['I', 'u32'], ['total', 'u32']]);
const swigluProgram: Program = {
  key: 'models/swiglu',
  inputs: 1, outputs: 1, uniform: true,
  source: () => `
@group(0) @binding(0) var<storage, read> gu: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> u: U;
${SWIGLU_U}
${LINEAR_GROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let idx = linear_group(wid, nwg) * ${WG}u + li;
  if (idx >= u.total) { return; }
  let s = idx / u.I;
  let j = idx % u.I;
  let g = gu[s * 2u * u.I + j];
  out[idx] = g / (1.0 + exp(-g)) * gu[s * 2u * u.I + u.I + j];
}`,
};

/** gu [S, 2I] (gate then up) -> silu(gate) * up [S, I]. */
export function swiglu(gu: Tensor): Tensor {
  const [S, I2] = gu.shape as [number, number];
  const I = I2 / 2;
  const be = gu.backend;
  if (be instanceof WebGpuBackend && gu.dtype === 'f32') {
    const out = be.empty('swiglu', 'f32', [S, I]);
    be.dispatch({
      program: swigluProgram,
      inputs: [be.buffer(gu, 'swiglu')],
      outputs: [be.buffer(out, 'swiglu')],
      uniforms: packUniforms([['u32', I], ['u32', S * I]]),
      grid: gridFor(Math.ceil((S * I) / WG)),
    });
    return out;
  }
  return mul(silu(slice(gu, [0, 0], [S, I])), slice(gu, [0, I], [S, I2]));
}

const NORM_WG = 256;
const ADDNORM_U = uniformStruct('U', [['H', 'u32'], ['rows', 'u32'], ['eps', 'f32']]);
const addRmsnormProgram: Program = {
  key: 'models/add-rmsnorm',
  inputs: 3, outputs: 2, uniform: true,
  source: () => `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> xo: array<f32>;
@group(0) @binding(4) var<storage, read_write> h: array<f32>;
@group(0) @binding(5) var<uniform> u: U;
${ADDNORM_U}
${LINEAR_GROUP}
var<workgroup> part: array<f32, ${NORM_WG}>;
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = linear_group(wid, nwg);
  if (row >= u.rows) { return; }
  let base = row * u.H;
  var ss = 0.0;
  for (var i = li; i < u.H; i += ${NORM_WG}u) {
    let y = x[base + i] + delta[base + i];
    xo[base + i] = y;
    ss += y * y;
  }
  part[li] = ss;
  workgroupBarrier();
  for (var s = ${NORM_WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { part[li] += part[li + s]; }
    workgroupBarrier();
  }
  let r = inverseSqrt(part[0] / f32(u.H) + u.eps);
  for (var i = li; i < u.H; i += ${NORM_WG}u) { h[base + i] = xo[base + i] * r * w[i]; }
}`,
};

/** x + delta (the new residual stream) and rmsnorm of it, [S, H] each, in one pass. */
export function addRmsnorm(x: Tensor, delta: Tensor, weight: Tensor, eps: number): { x: Tensor; normed: Tensor } {
  const be = x.backend;
  if (be instanceof WebGpuBackend && x.dtype === 'f32' && delta.dtype === 'f32' && weight.dtype === 'f32' && x.shape.join() === delta.shape.join()) {
    const H = x.shape[x.rank - 1]!;
    const rows = x.size / H;
    const xo = be.empty('addRmsnorm', 'f32', x.shape);
    const h = be.empty('addRmsnorm', 'f32', x.shape);
    be.dispatch({
      program: addRmsnormProgram,
      inputs: [be.buffer(x, 'addRmsnorm'), be.buffer(delta, 'addRmsnorm'), be.buffer(weight, 'addRmsnorm')],
      outputs: [be.buffer(xo, 'addRmsnorm'), be.buffer(h, 'addRmsnorm')],
      uniforms: packUniforms([['u32', H], ['u32', rows], ['f32', eps]]),
      grid: gridFor(rows),
    });
    return { x: xo, normed: h };
  }
  const sum = add(x, delta);
  return { x: sum, normed: rmsnorm(sum, weight, eps) };
}
