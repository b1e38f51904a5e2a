import type { DType } from '../../dtype.js';
import { sizeOf, stridesOf } from '../../shape.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { gridFor, packUniforms, uniformStruct, type Program } from '../program.js';
import { bindings, LINEAR_GROUP, perWord } from '../wgsl.js';

// Data movement for every dtype. Elements move as raw bits (never through f32, which
// would round u32/i32 above 2^24), and each invocation owns one 32-bit output word so
// packed f16/i8/u8 outputs are written without races.

const WG = 256;
/** src_index() result for "write a zero" (gatherRows with an out-of-range id). */
const NONE = '0xffffffffu';

function bitsOf(dtype: DType): number {
  return 32 / perWord(dtype);
}

/** `fn raw_<name>(i) -> u32`: element i's bits, zero-extended. */
function rawLoader(name: string, dtype: DType): string {
  const bits = bitsOf(dtype);
  if (bits === 32) return `fn raw_${name}(i: u32) -> u32 { return ${name}[i]; }`;
  const per = perWord(dtype);
  const shift = Math.log2(per);
  return `fn raw_${name}(i: u32) -> u32 { return extractBits(${name}[i >> ${shift}u], (i & ${per - 1}u) * ${bits}u, ${bits}u); }`;
}

/**
 * One output word per invocation; lane k takes element src_index(w * per + k) of x, or
 * zero for NONE. `srcIndex` is the WGSL body of `fn src_index(e: u32) -> u32`.
 */
function gatherWords(key: string, dtype: DType, extraInputs: string[], uniform: string, srcIndex: string): Program {
  const per = perWord(dtype);
  const bits = bitsOf(dtype);
  const inputs = ['x', ...extraInputs];
  return {
    key, inputs: inputs.length, outputs: 1, uniform: true,
    source: () => `
${bindings(inputs, ['out'], 'U')}
${uniform}
${rawLoader('x', dtype)}
${LINEAR_GROUP}
fn src_index(e: u32) -> u32 { ${srcIndex} }
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = linear_group(wid, nwg) * ${WG}u + lid;
  if (w * ${per}u >= u.n) { return; }
  var word = 0u;
  for (var k = 0u; k < ${per}u; k++) {
    let e = w * ${per}u + k;
    if (e >= u.n) { break; }
    let s = src_index(e);
    if (s != ${NONE}) { word |= raw_x(s) << (k * ${bits}u); }
  }
  out[w] = word;
}`,
  };
}

/** meta = [output strides..., source strides...]; src = base + sum(coord * source stride). */
function stridedCopy(be: WebGpuBackend, op: string, x: Tensor, outShape: number[], srcStrides: number[], base: number): Tensor {
  const out = be.empty(op, x.dtype, outShape);
  const rank = outShape.length;
  const n = sizeOf(outShape);
  const U = uniformStruct('U', [['n', 'u32'], ['base', 'u32']]);
  const prog = gatherWords(`layout/strided/${x.dtype}/r${rank}`, x.dtype, ['dims'], U, `
  var rem = e;
  var s = u.base;
  for (var d = 0u; d < ${rank}u; d++) {
    let c = rem / dims[d];
    rem -= c * dims[d];
    s += c * dims[${rank}u + d];
  }
  return s;`);
  be.dispatch({
    program: prog,
    inputs: [be.buffer(x, op), be.meta([...stridesOf(outShape), ...srcStrides])],
    outputs: [be.buffer(out, op)],
    uniforms: packUniforms([['u32', n], ['u32', base]]),
    grid: gridFor(Math.ceil(Math.ceil(n / perWord(x.dtype)) / WG)),
  });
  return out;
}

export function runPermute(be: WebGpuBackend, x: Tensor, perm: number[]): Tensor {
  const st = stridesOf(x.shape);
  return stridedCopy(be, 'permute', x, perm.map((p) => x.shape[p]!), perm.map((p) => st[p]!), 0);
}

export function runSlice(be: WebGpuBackend, x: Tensor, starts: number[], sizes: number[]): Tensor {
  const st = stridesOf(x.shape);
  const base = starts.reduce((s, v, i) => s + v * st[i]!, 0);
  return stridedCopy(be, 'slice', x, sizes, st, base);
}

export function runGatherRows(be: WebGpuBackend, table: Tensor, index: Tensor): Tensor {
  const op = 'gatherRows';
  const [rows, D] = table.shape as [number, number];
  const outShape = [...index.shape, D];
  const out = be.empty(op, table.dtype, outShape);
  const n = sizeOf(outShape);
  const U = uniformStruct('U', [['n', 'u32'], ['D', 'u32'], ['rows', 'u32']]);
  // An i32 id below zero reads as a u32 >= rows, so one test covers both ends.
  const prog = gatherWords(`layout/gather/${table.dtype}`, table.dtype, ['ids'], U, `
  let r = ids[e / u.D];
  if (r >= u.rows) { return ${NONE}; }
  return r * u.D + e % u.D;`);
  be.dispatch({
    program: prog,
    inputs: [be.buffer(table, op), be.buffer(index, op)],
    outputs: [be.buffer(out, op)],
    uniforms: packUniforms([['u32', n], ['u32', D], ['u32', rows]]),
    grid: gridFor(Math.ceil(Math.ceil(n / perWord(table.dtype)) / WG)),
  });
  return out;
}

/**
 * One dispatch per input. Input t fills positions [off, off + len) of the axis; the
 * invocation for output word w keeps the lanes that belong to other inputs (read back
 * from out, written by earlier dispatches, which WebGPU orders) and replaces t's lanes.
 * The dispatch spans the output words from t's first to its last element, so every word
 * has exactly one writer even when t's chunks share words.
 */
function concatProgram(dtype: DType): Program {
  const per = perWord(dtype);
  const bits = bitsOf(dtype);
  const U = uniformStruct('U', [['firstWord', 'u32'], ['words', 'u32'], ['n', 'u32'], ['total', 'u32'], ['inner', 'u32'], ['off', 'u32'], ['len', 'u32']]);
  return {
    key: `layout/concat/${dtype}`,
    inputs: 1, outputs: 1, uniform: true,
    source: () => `
${bindings(['x'], ['out'], 'U')}
${U}
${rawLoader('x', dtype)}
${LINEAR_GROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_group(wid, nwg) * ${WG}u + lid;
  if (i >= u.words) { return; }
  let w = u.firstWord + i;
  var word = 0u;
  var mine = 0u;
  for (var k = 0u; k < ${per}u; k++) {
    let e = w * ${per}u + k;
    if (e >= u.n) { break; }
    let o = e / (u.total * u.inner);
    let a = (e / u.inner) % u.total;
    if (a >= u.off && a < u.off + u.len) {
      let src = (o * u.len + (a - u.off)) * u.inner + e % u.inner;
      word |= raw_x(src) << (k * ${bits}u);
      mine |= ${bits === 32 ? '0xffffffffu' : `${(2 ** bits - 1)}u << (k * ${bits}u)`};
    }
  }
  if (mine == 0u) { return; }
  ${per === 1 ? 'out[w] = word;' : 'out[w] = (out[w] & ~mine) | word;'}
}`,
  };
}

export function runConcat(be: WebGpuBackend, xs: Tensor[], axis: number): Tensor {
  const op = 'concat';
  const first = xs[0]!;
  const outShape = [...first.shape];
  const total = xs.reduce((s, t) => s + t.shape[axis]!, 0);
  outShape[axis] = total;
  const out = be.empty(op, first.dtype, outShape);
  const inner = sizeOf(first.shape.slice(axis + 1));
  const outer = sizeOf(first.shape.slice(0, axis));
  const n = sizeOf(outShape);
  const per = perWord(first.dtype);
  const prog = concatProgram(first.dtype);
  let off = 0;
  for (const t of xs) {
    const len = t.shape[axis]!;
    const firstElem = off * inner;
    const lastElem = (outer - 1) * total * inner + (off + len) * inner - 1;
    const firstWord = Math.floor(firstElem / per);
    const words = Math.floor(lastElem / per) - firstWord + 1;
    be.dispatch({
      program: prog,
      inputs: [be.buffer(t, op)],
      outputs: [be.buffer(out, op)],
      uniforms: packUniforms([['u32', firstWord], ['u32', words], ['u32', n], ['u32', total], ['u32', inner], ['u32', off], ['u32', len]]),
      grid: gridFor(Math.ceil(words / WG)),
    });
    off += len;
  }
  return out;
}
