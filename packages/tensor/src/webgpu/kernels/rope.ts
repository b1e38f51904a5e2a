import type { RopeParams } from '../../backend.js';
import type { DType } from '../../dtype.js';
import type { Tensor } from '../../tensor.js';
import type { WebGpuBackend } from '../backend.js';
import { gridFor, packUniforms, uniformStruct, type Program } from '../program.js';
import { bindings, floatLoader, LINEAR_GROUP, packWord, perWord } from '../wgsl.js';

const WG = 256;
const U = uniformStruct('U', [['n', 'u32'], ['D', 'u32'], ['S', 'u32'], ['rot', 'u32'], ['offset', 'u32']]);

const f32bits = (v: number): number => new Uint32Array(Float32Array.of(v).buffer)[0]!;
const bitsf32 = (b: number): number => new Float32Array(Uint32Array.of(b).buffer)[0]!;
/** Keeps the top 12 significant bits of an f32 so products with 12-bit integers are exact. */
const high12 = (v: number): number => bitsf32(f32bits(v) & 0xfffff000);

// 2*pi in three parts (Cody-Waite): k * C1 and k * C2 are exact for k < 4096.
const C1 = high12(2 * Math.PI);
const C2 = high12(2 * Math.PI - C1);
const C3 = Math.fround(2 * Math.PI - C1 - C2);
const hex = (v: number): string => `bitcast<f32>(0x${f32bits(v).toString(16)}u)`;

/**
 * HF Llama rotary embedding (rotate_half), one output word per invocation.
 *
 * Accuracy: position * inv_freq reaches thousands of radians, where an f32 product is off
 * by 1e-4 and GPU sin/cos are only specified on [-pi, pi]. So the host passes each inverse
 * frequency (already times positionScale, computed in float64) as three f32 parts
 * [a, b, lo] with a and b of 12 significant bits; the integer position splits into two
 * 12-bit halves, so every partial product is exact, and each large product is reduced
 * modulo 2*pi on its own (Cody-Waite) before sin/cos. Measured on lavapipe: max error
 * 1e-6 against the float64 reference at position 100000 (1e-4 with a plain f32 angle).
 */
function ropeProgram(dtype: DType): Program {
  const per = perWord(dtype);
  return {
    key: `rope/${dtype}`,
    inputs: 2, outputs: 1, uniform: true,
    source: () => `
${bindings(['x', 'freq'], ['out'], 'U')}
${U}
${floatLoader('x', dtype)}
${LINEAR_GROUP}
fn reduce_2pi(t: f32) -> f32 {
  // t - k * 2pi with k * C1 exact and t - k * C1 exact (Sterbenz): error ~ k * 2^-24.
  let k = round(t * ${1 / (2 * Math.PI)});
  return ((t - k * ${hex(C1)}) - k * ${hex(C2)}) - k * ${hex(C3)};
}
fn angle_sin_cos(pos: u32, f: u32) -> vec2<f32> {
  let a = bitcast<f32>(freq[3u * f]);
  let b = bitcast<f32>(freq[3u * f + 1u]);
  let lo = bitcast<f32>(freq[3u * f + 2u]);
  let ph = f32(pos & 0xfff000u);
  let pl = f32(pos & 0xfffu);
  // Every partial product is exact; each large one is reduced on its own.
  let r = reduce_2pi(reduce_2pi(ph * a) + reduce_2pi(ph * b) + reduce_2pi(pl * a) + pl * b + f32(pos) * lo);
  return vec2<f32>(sin(r), cos(r));
}
fn elem(i: u32) -> f32 {
  let j = i % u.D;
  let xv = load_x(i);
  if (j >= u.rot) { return xv; }
  let half = u.rot / 2u;
  let pos = u.offset + (i / u.D) % u.S;
  let sc = angle_sin_cos(pos, j % half);
  if (j < half) { return xv * sc.y - load_x(i + half) * sc.x; }
  return xv * sc.y + load_x(i - half) * sc.x;
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = linear_group(wid, nwg) * ${WG}u + lid;
  if (w * ${per}u >= u.n) { return; }
${Array.from({ length: per }, (_, k) => `  var v${k} = 0.0; if (w * ${per}u + ${k}u < u.n) { v${k} = elem(w * ${per}u + ${k}u); }`).join('\n')}
  out[w] = ${packWord(dtype, Array.from({ length: per }, (_, k) => `v${k}`))};
}`,
  };
}

/** [a, b, lo] per frequency: a + b + lo = invFreq * positionScale to ~2^-48 relative. */
export function frequencyParts(p: RopeParams): Uint32Array {
  const half = p.rotaryDim / 2;
  const out = new Uint32Array(3 * half);
  for (let i = 0; i < half; i++) {
    const inv = (p.invFreq ? p.invFreq[i]! : Math.pow(p.theta, (-2 * i) / p.rotaryDim)) * p.positionScale;
    const a = high12(inv);
    const b = high12(inv - a);
    out[3 * i] = f32bits(a);
    out[3 * i + 1] = f32bits(b);
    out[3 * i + 2] = f32bits(inv - a - b);
  }
  return out;
}

export function runRope(be: WebGpuBackend, x: Tensor, p: RopeParams): Tensor {
  const op = 'rope';
  const D = x.shape[x.rank - 1]!;
  const S = x.shape[x.rank - 2]!;
  const out = be.empty(op, x.dtype, x.shape);
  be.dispatch({
    program: ropeProgram(x.dtype),
    inputs: [be.buffer(x, op), be.meta(Array.from(frequencyParts(p)))],
    outputs: [be.buffer(out, op)],
    uniforms: packUniforms([['u32', x.size], ['u32', D], ['u32', S], ['u32', p.rotaryDim], ['u32', p.positionOffset]]),
    grid: gridFor(Math.ceil(x.size / perWord(x.dtype) / WG)),
  });
  return out;
}
