import type { MatmulParams } from '../../backend.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { packUniforms, uniformStruct, type Program } from '../program.js';
import { bindings, floatLoader } from '../wgsl.js';
import { runCast } from './elementwise.js';

const T = 16;

/**
 * Generic batched matmul for any float dtype pair and transposes: 16x16 tiles staged in
 * workgroup memory, f32 accumulation. The fast variants live beside it and are chosen by
 * runMatmul; this one is the portable fallback.
 */
function tiledGeneric(a: Tensor, b: Tensor, p: MatmulParams): Program {
  const U = uniformStruct('U', [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32']]);
  const aIdx = p.transA ? 'k * u.M + row' : 'row * u.K + k';
  const bIdx = p.transB ? 'col * u.K + k' : 'k * u.N + col';
  return {
    key: `matmul/generic/${a.dtype}${p.transA ? 'T' : 'N'}/${b.dtype}${p.transB ? 'T' : 'N'}`,
    inputs: 2, outputs: 1, uniform: true,
    source: () => `
${bindings(['a', 'b'], ['out'], 'U')}
${U}
${floatLoader('a', a.dtype)}
${floatLoader('b', b.dtype)}
var<workgroup> ta: array<array<f32, ${T}>, ${T}>;
var<workgroup> tb: array<array<f32, ${T}>, ${T + 1}>;
var<workgroup> res: array<array<f32, ${T}>, ${T}>;
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

export function runMatmul(be: WebGpuBackend, a: Tensor, b: Tensor, p: MatmulParams): Tensor {
  const out = be.empty('matmul', 'f32', p.outShape);
  be.dispatch({
    program: tiledGeneric(a, b, p),
    inputs: [be.buffer(a, 'matmul'), be.buffer(b, 'matmul')],
    outputs: [be.buffer(out, 'matmul')],
    uniforms: packUniforms([['u32', p.M], ['u32', p.N], ['u32', p.K], ['u32', p.batchA === 1 ? 0 : p.M * p.K], ['u32', p.batchB === 1 ? 0 : p.K * p.N]]),
    grid: [Math.ceil(p.N / T), Math.ceil(p.M / T), p.batch],
  });
  if (p.outDtype === 'f32') return out;
  // f16 results: accumulate in f32, then one rounding pass.
  const half = runCast(be, out, 'f16');
  out.dispose();
  return half;
}
