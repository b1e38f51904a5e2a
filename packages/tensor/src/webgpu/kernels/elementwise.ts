import type { BinaryOp, UnaryOp } from '../../backend.js';
import type { DType } from '../../dtype.js';
import { broadcastStrides, sameShape, sizeOf, stridesOf } from '../../shape.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { gridFor, packUniforms, uniformStruct, type Program } from '../program.js';
import { bindings, floatLoader, LINEAR_GROUP, packWord, perWord } from '../wgsl.js';

const WG = 256;

// Each invocation produces one 32-bit output word (1 f32, 2 f16 or 4 i8 values), so
// packed dtypes are written without races.
function wordKernel(key: string, outDtype: DType, pre: string, bind: string, elementExpr: (i: string) => string): Program {
  const per = perWord(outDtype);
  return {
    key,
    inputs: (bind.match(/var<storage, read>/g) ?? []).length,
    outputs: 1,
    uniform: true,
    source: () => `
${bind}
${pre}
${LINEAR_GROUP}
fn elem(i: u32) -> f32 { ${elementExpr('i')} }
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = linear_group(wid, nwg) * ${WG}u + lid;
  if (w * ${per}u >= u.n) { return; }
${Array.from({ length: per }, (_, k) => `  var v${k} = 0.0; if (w * ${per}u + ${k}u < u.n) { v${k} = elem(w * ${per}u + ${k}u); }`).join('\n')}
  out[w] = ${packWord(outDtype, Array.from({ length: per }, (_, k) => `v${k}`))};
}`,
  };
}

/**
 * One invocation per 32-bit output element, for integer results that must not pass through
 * f32 (values above 2^24 would round); `body` sees the element index `i` and writes out[i].
 */
function intKernel(key: string, inputs: string[], body: string): Program {
  return {
    key,
    inputs: inputs.length, outputs: 1, uniform: true,
    source: () => `
${bindings(inputs, ['out'], 'U')}
${uniformStruct('U', [['n', 'u32']])}
${LINEAR_GROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_group(wid, nwg) * ${WG}u + lid;
  if (i >= u.n) { return; }
  ${body}
}`,
  };
}

function words(n: number, dtype: DType): number {
  return Math.ceil(n / perWord(dtype));
}

const UNARY_WGSL: Record<UnaryOp, string> = {
  scale: 'x * u.alpha',
  silu: 'x / (1.0 + exp(-x))',
  // Exact GELU needs erf, which WGSL lacks: A&S 7.1.26 (abs error 1.5e-7) is below f32 noise.
  gelu: '0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752))',
  gelu_tanh: '0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))',
  exp: 'exp(x)',
  neg: '-x',
  relu: 'max(x, 0.0)',
};

const ERF = `fn erf_approx(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(z));
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-z * z);
  return select(-y, y, z >= 0.0);
}`;

export function runUnary(be: WebGpuBackend, op: UnaryOp, x: Tensor, alpha: number): Tensor {
  const out = be.empty(op, x.dtype, x.shape);
  const U = uniformStruct('U', [['n', 'u32'], ['alpha', 'f32']]);
  const prog = wordKernel(`unary/${op}/${x.dtype}`, x.dtype, `${U}\n${floatLoader('x', x.dtype)}\n${ERF}`, bindings(['x'], ['out'], 'U'),
    (i) => `let x = load_x(${i}); return ${UNARY_WGSL[op]};`);
  be.dispatch({
    program: prog, inputs: [be.buffer(x, op)], outputs: [be.buffer(out, op)],
    uniforms: packUniforms([['u32', x.size], ['f32', alpha]]),
    grid: gridFor(Math.ceil(words(x.size, x.dtype) / WG)),
  });
  return out;
}

const INT_DTYPES: readonly DType[] = ['i32', 'u32', 'i8', 'u8'];

/**
 * Integer to i32/u32 keeps the bits (two's complement wrap, like WGSL's u32(i32)), never
 * passing through f32, which would round values above 2^24. i8 sign-extends, u8 zero-extends.
 */
function runIntCast(be: WebGpuBackend, x: Tensor, dtype: 'i32' | 'u32'): Tensor {
  const out = be.empty('cast', dtype, x.shape);
  const load: Record<string, string> = {
    i32: 'x[i]',
    u32: 'x[i]',
    i8: 'bitcast<u32>(extractBits(bitcast<i32>(x[i >> 2u]), (i & 3u) * 8u, 8u))',
    u8: 'extractBits(x[i >> 2u], (i & 3u) * 8u, 8u)',
  };
  const prog = intKernel(`cast/int/${x.dtype}`, ['x'], `out[i] = ${load[x.dtype]};`);
  be.dispatch({
    program: prog, inputs: [be.buffer(x, 'cast')], outputs: [be.buffer(out, 'cast')],
    uniforms: packUniforms([['u32', x.size]]), grid: gridFor(Math.ceil(x.size / WG)),
  });
  return out;
}

export function runCast(be: WebGpuBackend, x: Tensor, dtype: DType): Tensor {
  if ((dtype === 'i32' || dtype === 'u32') && INT_DTYPES.includes(x.dtype)) return runIntCast(be, x, dtype);
  const out = be.empty('cast', dtype, x.shape);
  const U = uniformStruct('U', [['n', 'u32']]);
  // Float to integer truncates toward zero and saturates (WGSL's conversion; the CPU
  // reference does the same).
  const conv = dtype === 'i32' || dtype === 'u32' ? 'trunc(load_x(i))' : 'load_x(i)';
  const prog = wordKernel(`cast/${x.dtype}/${dtype}`, dtype, `${U}\n${floatLoader('x', x.dtype)}`, bindings(['x'], ['out'], 'U'),
    () => `return ${conv};`);
  be.dispatch({
    program: prog, inputs: [be.buffer(x, 'cast')], outputs: [be.buffer(out, 'cast')],
    uniforms: packUniforms([['u32', x.size]]),
    grid: gridFor(Math.ceil(words(x.size, dtype) / WG)),
  });
  return out;
}

const BIN: Record<BinaryOp, string> = { add: '+', sub: '-', mul: '*', div: '/' };

export function runBinary(be: WebGpuBackend, op: BinaryOp, a: Tensor, b: Tensor, outShape: number[]): Tensor {
  const out = be.empty(op, a.dtype, outShape);
  const n = sizeOf(outShape);
  const rank = outShape.length;
  const same = sameShape(a.shape, outShape) && sameShape(b.shape, outShape);
  const isInt = a.dtype === 'i32' || a.dtype === 'u32';
  const U = uniformStruct('U', [['n', 'u32']]);
  // Integer ops compute in the integer type so values above 2^24 stay exact.
  if (isInt) {
    const t = a.dtype;
    const conv = t === 'i32' ? 'bitcast<i32>' : '';
    const back = t === 'i32' ? 'bitcast<u32>' : '';
    const divByZero = op === 'div' ? '// WGSL gives a for a / 0; the reference gives 0.\n  if (b[ib] == 0u) { out[i] = 0u; return; }\n  ' : '';
    const prog = intKernel(`binary/${op}/${t}/${same ? 'same' : rank}`, ['a', 'b', 'dims'],
      `${indexing(rank, same)}\n  ${divByZero}out[i] = ${back}(${conv}(a[ia]) ${BIN[op]} ${conv}(b[ib]));`);
    be.dispatch({
      program: prog, inputs: [be.buffer(a, op), be.buffer(b, op), meta(be, a, b, outShape)], outputs: [be.buffer(out, op)],
      uniforms: packUniforms([['u32', n]]), grid: gridFor(Math.ceil(n / WG)),
    });
    return out;
  }
  const pre = `${U}\n${floatLoader('a', a.dtype)}\n${floatLoader('b', b.dtype)}`;
  const prog = wordKernel(`binary/${op}/${a.dtype}/${same ? 'same' : rank}`, a.dtype, pre, bindings(['a', 'b', 'dims'], ['out'], 'U'),
    (i) => `${indexing(rank, same, i)}\n  return load_a(ia) ${BIN[op]} load_b(ib);`);
  be.dispatch({
    program: prog, inputs: [be.buffer(a, op), be.buffer(b, op), meta(be, a, b, outShape)], outputs: [be.buffer(out, op)],
    uniforms: packUniforms([['u32', n]]), grid: gridFor(Math.ceil(words(n, a.dtype) / WG)),
  });
  return out;
}

/** meta = [outStrides..., aStrides..., bStrides...] (broadcast axes have stride 0). */
function meta(be: WebGpuBackend, a: Tensor, b: Tensor, outShape: number[]): GPUBuffer {
  return be.meta([...stridesOf(outShape), ...broadcastStrides(a.shape, outShape), ...broadcastStrides(b.shape, outShape)]);
}

function indexing(rank: number, same: boolean, i = 'i'): string {
  if (same) return `let ia = ${i}; let ib = ${i};`;
  return `var rem = ${i}; var ia = 0u; var ib = 0u;
  for (var d = 0u; d < ${rank}u; d++) {
    let c = rem / dims[d]; rem -= c * dims[d];
    ia += c * dims[${rank}u + d]; ib += c * dims[${2 * rank}u + d];
  }`;
}
