import type { MatmulParams } from '../../backend.js';
import type { DType } from '../../dtype.js';
import type { Tensor } from '../../tensor.js';
import { gridFor, type Program } from '../program.js';
import { MATMUL_UNIFORM } from './matmul-common.js';

/**
 * Variant (d): small-M matmul against a transposed weight, the decoder's
 * x[S, K] @ W[N, K]^T with S <= GEMV_MAX_M. It is bandwidth-bound: every weight element is
 * read once, so each workgroup owns R rows of W (R output columns), its threads stride
 * along K reading 8 elements (16 bytes of f16, or two vec4 of f32) per load, keep S x R
 * partial sums in registers and reduce them through workgroup memory at the end. The
 * activations (S rows) are small and stay in cache across workgroups.
 *
 * Edges: any N (rows past the end are clamped on load and masked on store), any S up to
 * GEMV_MAX_M, batches through grid z. K must be a multiple of 8 (it is chosen only then).
 */
export interface GemvConfig { R: number; WG: number }

export const GEMV_MAX_M = 8;
export const GEMV_CHUNK = 8;

export function gemvConfigName(c: GemvConfig): string {
  return `r${c.R}-wg${c.WG}`;
}

export function gemvFits(p: MatmulParams): boolean {
  return p.transB && !p.transA && p.M <= GEMV_MAX_M && p.K % GEMV_CHUNK === 0;
}

/** Workgroup memory the reduction needs, in bytes. */
export function gemvSharedBytes(p: MatmulParams, c: GemvConfig): number {
  return p.M * c.R * c.WG * 4;
}

function bindingOf(name: string, dtype: DType, slot: number): string {
  return `@group(0) @binding(${slot}) var<storage, read> ${name}: array<${dtype === 'f32' ? 'vec4<f32>' : 'vec4<u32>'}>;`;
}

/** `fn load8_<name>(i) -> array<vec4<f32>, 2>`: elements i..i+7 (i a multiple of 8). */
function load8(name: string, dtype: DType): string {
  if (dtype === 'f32') return `fn load8_${name}(i: u32) -> array<vec4<f32>, 2> { let q = i >> 2u; return array<vec4<f32>, 2>(${name}[q], ${name}[q + 1u]); }`;
  return `fn load8_${name}(i: u32) -> array<vec4<f32>, 2> { let w = ${name}[i >> 3u]; return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w))); }`;
}

export function gemvMatmul(a: Tensor, b: Tensor, p: MatmulParams, c: GemvConfig): Program {
  const S = p.M;
  const { R, WG } = c;
  const xs: string[] = [];
  for (let s = 0; s < S; s++) xs.push(`let x${s} = load8_a(aOff + ${s}u * u.K + k);`);
  const ws: string[] = [];
  for (let r = 0; r < R; r++) {
    ws.push(`let w${r} = load8_b(bOff + row${r} * u.K + k);`);
    for (let s = 0; s < S; s++) ws.push(`acc[${s * R + r}] += dot(x${s}[0], w${r}[0]) + dot(x${s}[1], w${r}[1]);`);
  }
  const rows: string[] = [];
  for (let r = 0; r < R; r++) rows.push(`let row${r} = min(n0 + ${r}u, u.N - 1u);`);
  const SR = S * R;
  return {
    key: `matmul/gemv/${gemvConfigName(c)}/m${S}/${a.dtype}/${b.dtype}`,
    inputs: 2, outputs: 1, uniform: true,
    source: () => `
${bindingOf('a', a.dtype, 0)}
${bindingOf('b', b.dtype, 1)}
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
${MATMUL_UNIFORM}
${load8('a', a.dtype)}
${load8('b', b.dtype)}
var<workgroup> red: array<f32, ${SR * WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n0 = (wid.x + wid.y * nwg.x) * ${R}u;
  let aOff = wid.z * u.strideA;
  let bOff = wid.z * u.strideB;
  let outOff = wid.z * u.M * u.N;
  ${rows.join('\n  ')}
  var acc: array<f32, ${SR}>;
  let chunks = u.K / ${GEMV_CHUNK}u;
  for (var ch = lid; ch < chunks; ch += ${WG}u) {
    let k = ch * ${GEMV_CHUNK}u;
    ${xs.join('\n    ')}
    ${ws.join('\n    ')}
  }
  for (var i = 0u; i < ${SR}u; i++) { red[i * ${WG}u + lid] = acc[i]; }
  workgroupBarrier();
  for (var stride = ${WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      for (var i = 0u; i < ${SR}u; i++) { red[i * ${WG}u + lid] += red[i * ${WG}u + lid + stride]; }
    }
    workgroupBarrier();
  }
  if (lid < ${SR}u) {
    let s = lid / ${R}u;
    let n = n0 + lid % ${R}u;
    if (n < u.N) { out[outOff + s * u.N + n] = red[lid * ${WG}u]; }
  }
}`,
  };
}

export function gemvGrid(p: MatmulParams, c: GemvConfig): [number, number, number] {
  const [x, y] = gridFor(Math.ceil(p.N / c.R));
  return [x, y, p.batch];
}
