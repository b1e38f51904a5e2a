import type { QuantParams } from '../../backend.js';
import type { DType } from '../../dtype.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { gridFor, packUniforms, uniformStruct, type Program } from '../program.js';
import { bindings, floatLoader, LINEAR_GROUP, packWord } from '../wgsl.js';
import { defaultVariant, reduceArgs, reduceBuiltins, reduceEnable, reduceFns, ROW_WG, variantKey, type RowVariant } from './rowreduce.js';

const WG = 256;

/** Pass 1: scale = max|x| / 127 per block, one workgroup per block. */
function scalesProgram(dtype: DType, v: RowVariant): Program {
  const U = uniformStruct('U', [['blocks', 'u32'], ['bs', 'u32']]);
  return {
    key: `quant/scales/${dtype}/${variantKey(v)}`,
    inputs: 1, outputs: 1, uniform: true,
    source: () => `${reduceEnable(v)}
${bindings(['x'], ['scales'], 'U')}
${U}
${floatLoader('x', dtype)}
${LINEAR_GROUP}
${reduceFns(v)}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${reduceBuiltins(v)}) {
  let b = linear_group(wid, nwg);
  if (b >= u.blocks) { return; }
  var m = 0.0;
  for (var j = lid; j < u.bs; j += ${ROW_WG}u) { m = max(m, abs(load_x(b * u.bs + j))); }
  let amax = reduce_max(m, ${reduceArgs(v)});
  if (lid == 0u) { scales[b] = bitcast<u32>(amax / 127.0); }
}`,
  };
}

/**
 * Pass 2: four i8 per output word (blocks need not align with words, so quantizing is
 * elementwise over words, not per block). Rounds half up, floor(v + 0.5), as the
 * reference's Math.round does (WGSL round() would round half to even).
 */
function quantizeProgram(dtype: DType): Program {
  const U = uniformStruct('U', [['n', 'u32'], ['bs', 'u32']]);
  return {
    key: `quant/q/${dtype}`,
    inputs: 2, outputs: 1, uniform: true,
    source: () => `
${bindings(['x', 'scales'], ['out'], 'U')}
${U}
${floatLoader('x', dtype)}
${LINEAR_GROUP}
fn q(i: u32) -> f32 {
  let s = bitcast<f32>(scales[i / u.bs]);
  let inv = select(0.0, 1.0 / s, s > 0.0);
  return clamp(floor(load_x(i) * inv + 0.5), -127.0, 127.0);
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = linear_group(wid, nwg) * ${WG}u + lid;
  if (w * 4u >= u.n) { return; }
${[0, 1, 2, 3].map((k) => `  var v${k} = 0.0; if (w * 4u + ${k}u < u.n) { v${k} = q(w * 4u + ${k}u); }`).join('\n')}
  out[w] = ${packWord('i8', ['v0', 'v1', 'v2', 'v3'])};
}`,
  };
}

function dequantizeProgram(): Program {
  const U = uniformStruct('U', [['n', 'u32'], ['bs', 'u32']]);
  return {
    key: 'quant/dq',
    inputs: 2, outputs: 1, uniform: true,
    source: () => `
${bindings(['q', 'scales'], ['out'], 'U')}
${U}
${floatLoader('q', 'i8')}
${LINEAR_GROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_group(wid, nwg) * ${WG}u + lid;
  if (i >= u.n) { return; }
  out[i] = bitcast<u32>(load_q(i) * bitcast<f32>(scales[i / u.bs]));
}`,
  };
}

export function runQuantizeInt8(be: WebGpuBackend, x: Tensor, p: QuantParams, v: RowVariant = defaultVariant(be)): [Tensor, Tensor] {
  const op = 'quantizeInt8';
  const n = x.shape[x.rank - 1]!;
  const blocks = x.size / p.blockSize;
  const scales = be.empty(op, 'f32', [...x.shape.slice(0, -1), n / p.blockSize]);
  const q = be.empty(op, 'i8', x.shape);
  be.dispatch({
    program: scalesProgram(x.dtype, v),
    inputs: [be.buffer(x, op)], outputs: [be.buffer(scales, op)],
    uniforms: packUniforms([['u32', blocks], ['u32', p.blockSize]]),
    grid: gridFor(blocks),
  });
  be.dispatch({
    program: quantizeProgram(x.dtype),
    inputs: [be.buffer(x, op), be.buffer(scales, op)], outputs: [be.buffer(q, op)],
    uniforms: packUniforms([['u32', x.size], ['u32', p.blockSize]]),
    grid: gridFor(Math.ceil(Math.ceil(x.size / 4) / WG)),
  });
  return [q, scales];
}

export function runDequantizeInt8(be: WebGpuBackend, q: Tensor, scales: Tensor, p: QuantParams): Tensor {
  const op = 'dequantizeInt8';
  const out = be.empty(op, 'f32', q.shape);
  be.dispatch({
    program: dequantizeProgram(),
    inputs: [be.buffer(q, op), be.buffer(scales, op)], outputs: [be.buffer(out, op)],
    uniforms: packUniforms([['u32', q.size], ['u32', p.blockSize]]),
    grid: gridFor(Math.ceil(q.size / WG)),
  });
  return out;
}
