import type { DType } from '../../dtype.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { gridFor, packUniforms, uniformStruct, type Program } from '../program.js';
import { bindings, floatLoader, LINEAR_GROUP, packWord, perWord } from '../wgsl.js';
import { defaultVariant, reduceArgs, reduceBuiltins, reduceEnable, reduceFns, ROW_WG, rowOutput, variantKey, type RowVariant } from './rowreduce.js';

const U = uniformStruct('U', [['rows', 'u32'], ['D', 'u32'], ['eps', 'f32']]);

type NormKind = 'rms' | 'layer';

/**
 * RMSNorm / LayerNorm over the last axis, one workgroup per row, f32 arithmetic.
 * LayerNorm takes two passes (mean, then the centred sum of squares) like the CPU
 * reference rather than E[x^2] - E[x]^2, which cancels badly for rows with a large mean;
 * the sums run over x - x[0] so an f32 sum of large values does not swamp the mean.
 */
function normProgram(kind: NormKind, xd: DType, wd: DType, bd: DType | null, outDtype: DType, v: RowVariant): Program {
  const per = perWord(outDtype);
  const inputs = bd ? ['x', 'w', 'b'] : ['x', 'w'];
  const args = reduceArgs(v);
  const stats = kind === 'rms'
    ? `var ss = 0.0;
  for (var j = lid; j < u.D; j += ${ROW_WG}u) { let a = load_x(base + j); ss += a * a; }
  let shift = 0.0;
  let mean = 0.0;
  let inv = 1.0 / sqrt(reduce_sum(ss, ${args}) / f32(u.D) + u.eps);`
    : `let shift = load_x(base);
  var sx = 0.0;
  for (var j = lid; j < u.D; j += ${ROW_WG}u) { sx += load_x(base + j) - shift; }
  let mean = reduce_sum(sx, ${args}) / f32(u.D);
  var ss = 0.0;
  for (var j = lid; j < u.D; j += ${ROW_WG}u) { let a = load_x(base + j) - shift - mean; ss += a * a; }
  let inv = 1.0 / sqrt(reduce_sum(ss, ${args}) / f32(u.D) + u.eps);`;
  return {
    key: `norm/${kind}/${xd}/${wd}/${bd ?? 'nobias'}/${outDtype}/${variantKey(v)}`,
    inputs: inputs.length, outputs: 1, uniform: true,
    source: () => `${reduceEnable(v)}
${bindings(inputs, ['out'], 'U')}
${U}
${floatLoader('x', xd)}
${floatLoader('w', wd)}
${bd ? floatLoader('b', bd) : ''}
${LINEAR_GROUP}
${reduceFns(v)}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${reduceBuiltins(v)}) {
  let row = linear_group(wid, nwg);
  if (row >= u.rows) { return; }
  let base = row * u.D;
  ${stats}
  let words = u.D / ${per}u;
  for (var w = lid; w < words; w += ${ROW_WG}u) {
${Array.from({ length: per }, (_, k) => `    let j${k} = w * ${per}u + ${k}u;
    let y${k} = (load_x(base + j${k}) - shift - mean) * inv * load_w(j${k})${bd ? ` + load_b(j${k})` : ''};`).join('\n')}
    out[base / ${per}u + w] = ${packWord(outDtype, Array.from({ length: per }, (_, k) => `y${k}`))};
  }
}`,
  };
}

function runNorm(be: WebGpuBackend, kind: NormKind, x: Tensor, w: Tensor, b: Tensor | null, eps: number, v: RowVariant): Tensor {
  const op = kind === 'rms' ? 'rmsnorm' : 'layernorm';
  const D = x.shape[x.rank - 1]!;
  const rows = x.size / D;
  const { out, outDtype, finish } = rowOutput(be, op, x.dtype, x.shape, D);
  const inputs = [be.buffer(x, op), be.buffer(w, op)];
  if (b) inputs.push(be.buffer(b, op));
  be.dispatch({
    program: normProgram(kind, x.dtype, w.dtype, b?.dtype ?? null, outDtype, v),
    inputs, outputs: [be.buffer(out, op)],
    uniforms: packUniforms([['u32', rows], ['u32', D], ['f32', eps]]),
    grid: gridFor(rows),
  });
  return finish();
}

export function runRmsnorm(be: WebGpuBackend, x: Tensor, w: Tensor, eps: number, v: RowVariant = defaultVariant(be)): Tensor {
  return runNorm(be, 'rms', x, w, null, eps, v);
}

export function runLayernorm(be: WebGpuBackend, x: Tensor, w: Tensor, b: Tensor | null, eps: number, v: RowVariant = defaultVariant(be)): Tensor {
  return runNorm(be, 'layer', x, w, b, eps, v);
}
