import type { SoftmaxParams } from '../../backend.js';
import type { DType } from '../../dtype.js';
import { broadcastStrides } from '../../shape.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { gridFor, packUniforms, uniformStruct, type Program } from '../program.js';
import { bindings, floatLoader, LINEAR_GROUP, packWord, perWord } from '../wgsl.js';
import { defaultVariant, reduceArgs, reduceBuiltins, reduceEnable, reduceFns, ROW_WG, rowOutput, variantKey, type RowVariant } from './rowreduce.js';

const U = uniformStruct('U', [['rows', 'u32'], ['L', 'u32'], ['S', 'u32'], ['causal', 'u32']]);

/**
 * Softmax over the last axis, one workgroup per row. Each invocation keeps an online
 * (max, sum) over its strided columns; the workgroup reduces the max, then the rescaled
 * sums, then writes exp(v - max) / sum. A -Infinity in x or in the mask removes a key
 * (stood in for by NEG, since WGSL has no infinity literal); a row with every key removed
 * is left as the zeros WebGPU initialises buffers with, like the CPU reference.
 *
 * Mask broadcasting: meta = [x's leading dims (rank-1)..., mask strides broadcast to x
 * (rank)...]; the row's mask offset is rebuilt from the row index.
 */
function softmaxProgram(xDtype: DType, maskDtype: DType | null, rank: number, outDtype: DType, v: RowVariant): Program {
  const per = perWord(outDtype);
  const lead = rank - 1;
  const hasMask = maskDtype !== null;
  const inputs = hasMask ? ['x', 'mask', 'dims'] : ['x'];
  return {
    key: `softmax/${xDtype}/${maskDtype ?? 'nomask'}/r${rank}/${outDtype}/${variantKey(v)}`,
    inputs: inputs.length, outputs: 1, uniform: true,
    source: () => `${reduceEnable(v)}
${bindings(inputs, ['out'], 'U')}
${U}
${floatLoader('x', xDtype)}
${hasMask ? floatLoader('mask', maskDtype) : ''}
${LINEAR_GROUP}
${reduceFns(v)}
const NEG = -3.0e38;
fn is_neg_inf(a: f32) -> bool { return bitcast<u32>(a) == 0xff800000u; }
var<private> x_base: u32;
var<private> m_base: u32;
var<private> m_step: u32;
fn score(j: u32) -> f32 {
  let xv = load_x(x_base + j);
  if (is_neg_inf(xv)) { return NEG; }
  ${hasMask ? `let mv = load_mask(m_base + j * m_step);
  if (is_neg_inf(mv)) { return NEG; }
  return xv + mv;` : 'return xv;'}
}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${reduceBuiltins(v)}) {
  let row = linear_group(wid, nwg);
  if (row >= u.rows) { return; }
  x_base = row * u.L;
  ${hasMask ? `var rem = row;
  m_base = 0u;
  for (var d = ${lead}i - 1; d >= 0; d--) {
    let c = rem % dims[d]; rem /= dims[d];
    m_base += c * dims[${lead}u + u32(d)];
  }
  m_step = dims[${lead + lead}u];` : ''}
  var visible = u.L;
  if (u.causal != 0u) { visible = u.L - u.S + (row % u.S) + 1u; }
  var m = NEG;
  var s = 0.0;
  for (var j = lid; j < visible; j += ${ROW_WG}u) {
    let sc = score(j);
    if (sc > NEG) {
      if (sc > m) { s = s * exp(m - sc) + 1.0; m = sc; } else { s += exp(sc - m); }
    }
  }
  let row_max = reduce_max(m, ${reduceArgs(v)});
  if (row_max <= NEG) { return; }
  let total = reduce_sum(select(0.0, s * exp(m - row_max), m > NEG), ${reduceArgs(v)});
  let inv = 1.0 / total;
  let words = u.L / ${per}u;
  for (var w = lid; w < words; w += ${ROW_WG}u) {
${Array.from({ length: per }, (_, k) => `    var p${k} = 0.0;
    { let j = w * ${per}u + ${k}u; if (j < visible) { let sc = score(j); if (sc > NEG) { p${k} = exp(sc - row_max) * inv; } } }`).join('\n')}
    out[x_base / ${per}u + w] = ${packWord(outDtype, Array.from({ length: per }, (_, k) => `p${k}`))};
  }
}`,
  };
}

export function runSoftmax(be: WebGpuBackend, x: Tensor, p: SoftmaxParams, variant: RowVariant = defaultVariant(be)): Tensor {
  const op = 'softmax';
  const L = x.shape[x.rank - 1]!;
  const S = x.rank >= 2 ? x.shape[x.rank - 2]! : 1;
  const rows = x.size / L;
  const { out, outDtype, finish } = rowOutput(be, op, x.dtype, x.shape, L);
  const mask = p.mask;
  const inputs = [be.buffer(x, op)];
  if (mask) {
    inputs.push(be.buffer(mask, op), be.meta([...x.shape.slice(0, -1), ...broadcastStrides(mask.shape, x.shape)]));
  }
  be.dispatch({
    program: softmaxProgram(x.dtype, mask?.dtype ?? null, x.rank, outDtype, variant),
    inputs, outputs: [be.buffer(out, op)],
    uniforms: packUniforms([['u32', rows], ['u32', L], ['u32', S], ['u32', p.causal ? 1 : 0]]),
    grid: gridFor(rows),
  });
  return finish();
}
