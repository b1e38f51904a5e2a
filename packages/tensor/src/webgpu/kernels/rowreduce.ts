import type { DType } from '../../dtype.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { perWord } from '../wgsl.js';
import { runCast } from './elementwise.js';

// Shared pieces of the "one workgroup per row" kernels (softmax, norms, argmax, quantize
// scales): the workgroup-wide reductions in two variants, and the output plumbing for
// packed f16 rows.

/** Invocations per workgroup of the row kernels. */
export const ROW_WG = 128;

/** Which reduction a row kernel uses; `subgroups` needs `be.caps.subgroups`. */
export interface RowVariant {
  subgroups: boolean;
}

/** The subgroup variant needs the feature and `@builtin(subgroup_id)` (a WGSL language feature browsers added later). */
export function defaultVariant(be: WebGpuBackend): RowVariant {
  return { subgroups: be.caps.subgroups && be.wgslLanguageFeatures.has('subgroup_id') };
}

export function variantKey(v: RowVariant): string {
  return v.subgroups ? 'sg' : 'wg';
}

/** `enable` directives the variant needs (goes first in the module). */
export function reduceEnable(v: RowVariant): string {
  return v.subgroups ? 'enable subgroups;' : '';
}

/** Extra builtins main() declares; reduce_* calls pass `RED_ARGS`. */
export function reduceBuiltins(v: RowVariant): string {
  return v.subgroups ? ', @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32' : '';
}

export function reduceArgs(v: RowVariant): string {
  return v.subgroups ? 'lid, sg_lane, sg_id, sg_size' : 'lid';
}

/**
 * WGSL `reduce_sum(v, ...)` and `reduce_max(v, ...)`: every invocation of the workgroup
 * calls them (uniform control flow) and gets the workgroup-wide result as a uniform value
 * (workgroupUniformLoad), so callers may branch on it before later barriers.
 *
 * Workgroup-memory variant: a tree over ROW_WG slots. Subgroup variant: subgroupAdd/Max,
 * one slot per subgroup, then a short serial fold by invocation 0.
 */
export function reduceFns(v: RowVariant, wg = ROW_WG): string {
  const fn = (name: string, op: (a: string, b: string) => string, sgOp: string, identity: string) =>
    v.subgroups
      ? `
fn reduce_${name}(x: f32, lid: u32, sg_lane: u32, sg_id: u32, sg_size: u32) -> f32 {
  let s = ${sgOp}(x);
  if (sg_lane == 0u) { red[sg_id] = s; }
  workgroupBarrier();
  if (lid == 0u) {
    var acc = ${identity};
    let groups = (${wg}u + sg_size - 1u) / sg_size;
    for (var i = 0u; i < groups; i++) { acc = ${op('acc', 'red[i]')}; }
    red_out = acc;
  }
  return workgroupUniformLoad(&red_out);
}`
      : `
fn reduce_${name}(x: f32, lid: u32) -> f32 {
  red[lid] = x;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = ${op('red[lid]', 'red[lid + s]')}; }
    workgroupBarrier();
  }
  if (lid == 0u) { red_out = red[0]; }
  return workgroupUniformLoad(&red_out);
}`;
  return `
var<workgroup> red: array<f32, ${wg}>;
var<workgroup> red_out: f32;
${fn('sum', (a, b) => `${a} + ${b}`, 'subgroupAdd', '0.0')}
${fn('max', (a, b) => `max(${a}, ${b})`, 'subgroupMax', '-3.4e38')}`;
}

/**
 * Row kernels write whole words. When a row's length is not a multiple of the words'
 * element count (odd rows of f16), rows share words, so the kernel writes f32 and one
 * rounding pass (cast) produces the f16 tensor: the same single rounding the CPU does.
 */
export function rowOutput(be: WebGpuBackend, op: string, dtype: DType, shape: readonly number[], rowLen: number): { out: Tensor; outDtype: DType; finish: () => Tensor } {
  const direct = rowLen % perWord(dtype) === 0;
  const outDtype = direct ? dtype : 'f32';
  const out = be.empty(op, outDtype, shape);
  return {
    out,
    outDtype,
    finish: () => {
      if (direct) return out;
      const cast = runCast(be, out, dtype);
      out.dispose();
      return cast;
    },
  };
}
