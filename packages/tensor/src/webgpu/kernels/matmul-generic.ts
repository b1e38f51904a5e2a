import type { MatmulParams } from '../../backend.js';
import type { Tensor } from '../../tensor.js';
import type { Program } from '../program.js';
import { bindings, floatLoader } from '../wgsl.js';
import { MATMUL_UNIFORM } from './matmul-common.js';

/** Tile edge of the generic kernel: one output per thread, T x T threads. */
export const GENERIC_TILE = 16;
const T = GENERIC_TILE;

/**
 * Variant (a), generic batched matmul for any float dtype pair and transposes: 16x16 tiles
 * staged in workgroup memory, one output per thread, f32 accumulation. Handles every
 * edge (M, N, K of any size); it is the portable fallback the fast variants are checked
 * against.
 */
export function genericMatmul(a: Tensor, b: Tensor, p: MatmulParams): Program {
  const aIdx = p.transA ? 'k * u.M + row' : 'row * u.K + k';
  const bIdx = p.transB ? 'col * u.K + k' : 'k * u.N + col';
  return {
    key: `matmul/generic/${a.dtype}${p.transA ? 'T' : 'N'}/${b.dtype}${p.transB ? 'T' : 'N'}`,
    inputs: 2, outputs: 1, uniform: true,
    source: () => `
${bindings(['a', 'b'], ['out'], 'U')}
${MATMUL_UNIFORM}
${floatLoader('a', a.dtype)}
${floatLoader('b', b.dtype)}
var<workgroup> ta: array<array<f32, ${T}>, ${T}>;
var<workgroup> tb: array<array<f32, ${T}>, ${T + 1}>;
@compute @workgroup_size(${T}, ${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wid.z;
  let aOff = z * u.strideA;
  let bOff = z * u.strideB;
  let r0 = wid.y * ${T}u;
  let c0 = wid.x * ${T}u;
  var acc = 0.0;
  for (var k0 = 0u; k0 < u.K; k0 += ${T}u) {
    {
      let row = r0 + lid.y; let k = k0 + lid.x;
      ta[lid.y][lid.x] = select(0.0, load_a(aOff + ${aIdx}), row < u.M && k < u.K);
    }
    {
      let col = c0 + lid.x; let k = k0 + lid.y;
      tb[lid.y][lid.x] = select(0.0, load_b(bOff + ${bIdx}), col < u.N && k < u.K);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${T}u; kk++) { acc += ta[lid.y][kk] * tb[kk][lid.x]; }
    workgroupBarrier();
  }
  let row = r0 + lid.y; let col = c0 + lid.x;
  let o = z * u.M * u.N + row * u.N + col;
  if (row < u.M && col < u.N) { out[o] = bitcast<u32>(acc); }
}`,
  };
}

export function genericGrid(p: MatmulParams): [number, number, number] {
  return [Math.ceil(p.N / T), Math.ceil(p.M / T), p.batch];
}
