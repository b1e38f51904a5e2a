import type { DType } from '../../dtype.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { gridFor, packUniforms, uniformStruct, type Program } from '../program.js';
import { bindings, floatLoader, LINEAR_GROUP } from '../wgsl.js';
import { runCast } from './elementwise.js';
import { ROW_WG } from './rowreduce.js';

const U = uniformStruct('U', [['rows', 'u32'], ['L', 'u32'], ['k', 'u32']]);

/**
 * Top-k by repeated selection, one workgroup per row: round t finds the largest element
 * that comes after the previous pick in the order (value descending, index ascending),
 * so equal values come out lowest index first and nothing needs marking. k rounds of one
 * pass over the row each; k <= 256 is enforced by ops.ts. argmax is the k = 1 case.
 */
function topkProgram(dtype: DType, withValues: boolean): Program {
  const outputs = withValues ? ['idx', 'vals'] : ['idx'];
  return {
    key: `topk/${dtype}/${withValues ? 'vals' : 'idx'}`,
    inputs: 1, outputs: outputs.length, uniform: true,
    source: () => `
${bindings(['x'], outputs, 'U')}
${U}
${floatLoader('x', dtype)}
${LINEAR_GROUP}
const NONE = 0xffffffffu;
var<workgroup> rv: array<f32, ${ROW_WG}>;
var<workgroup> ri: array<u32, ${ROW_WG}>;
// (v, i) beats (bv, bi): a real index, a larger value, or an equal value at a lower index.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = linear_group(wid, nwg);
  if (row >= u.rows) { return; }
  let base = row * u.L;
  var pv = 0.0;
  var pi = NONE;
  for (var t = 0u; t < u.k; t++) {
    var bv = 0.0;
    var bi = NONE;
    for (var j = lid; j < u.L; j += ${ROW_WG}u) {
      let v = load_x(base + j);
      let after = pi == NONE || v < pv || (v == pv && j > pi);
      if (after && beats(v, j, bv, bi)) { bv = v; bi = j; }
    }
    rv[lid] = bv;
    ri[lid] = bi;
    workgroupBarrier();
    for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
      if (lid < s && beats(rv[lid + s], ri[lid + s], rv[lid], ri[lid])) {
        rv[lid] = rv[lid + s];
        ri[lid] = ri[lid + s];
      }
      workgroupBarrier();
    }
    pv = rv[0];
    pi = ri[0];
    if (lid == 0u) {
      idx[row * u.k + t] = pi;
      ${withValues ? 'vals[row * u.k + t] = bitcast<u32>(pv);' : ''}
    }
    workgroupBarrier();
  }
}`,
  };
}

function runSelect(be: WebGpuBackend, op: string, x: Tensor, k: number, withValues: boolean): { idx: Tensor; vals: Tensor | null } {
  const L = x.shape[x.rank - 1]!;
  const rows = x.size / L;
  const lead = x.shape.slice(0, -1);
  const idx = be.empty(op, 'i32', withValues ? [...lead, k] : lead);
  const vals = withValues ? be.empty(op, 'f32', [...lead, k]) : null;
  be.dispatch({
    program: topkProgram(x.dtype, withValues),
    inputs: [be.buffer(x, op)],
    outputs: vals ? [be.buffer(idx, op), be.buffer(vals, op)] : [be.buffer(idx, op)],
    uniforms: packUniforms([['u32', rows], ['u32', L], ['u32', k]]),
    grid: gridFor(rows),
  });
  return { idx, vals };
}

export function runArgmax(be: WebGpuBackend, x: Tensor): Tensor {
  return runSelect(be, 'argmax', x, 1, false).idx;
}

export function runTopk(be: WebGpuBackend, x: Tensor, k: number): [Tensor, Tensor] {
  const { idx, vals } = runSelect(be, 'topk', x, k, true);
  if (x.dtype === 'f32') return [vals!, idx];
  // f16 values were picked exactly; the cast back only repacks them.
  const half = runCast(be, vals!, x.dtype);
  vals!.dispose();
  return [half, idx];
}
