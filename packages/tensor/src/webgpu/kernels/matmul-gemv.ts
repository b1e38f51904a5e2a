import type { MatmulParams } from '../../backend.js';
import type { DType } from '../../dtype.js';
import type { Tensor } from '../../tensor.js';
import { gridFor, packUniforms, uniformStruct, type Program } from '../program.js';

/**
 * Variant (d): small-M matmul against a transposed weight, the decoder's
 * x[S, K] @ W[N, K]^T with S <= GEMV_MAX_M. Rows of x go GEMV_ROWS per dispatch (a
 * dispatch per block of rows: the weight, re-read, mostly comes from L2). It is
 * bandwidth-bound: every weight element is
 * read once, so each workgroup owns R rows of W (R output columns), its threads stride
 * along K reading 8 elements (16 bytes of f16, or two vec4 of f32) per load, keep S x R
 * partial sums in registers and reduce them through workgroup memory at the end. The
 * activations (S rows) are small and stay in cache across workgroups.
 *
 * Edges: any N (rows past the end are clamped on load and masked on store), any S up to
 * GEMV_MAX_M, batches through grid z. K must be a multiple of 8 (it is chosen only then).
 */
const GEMV_UNIFORM = uniformStruct('U', [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32'], ['row0', 'u32']]);
export interface GemvConfig { R: number; WG: number }

/** Beyond 16 rows the tiled kernel wins (one dispatch instead of one per 8 rows). */
export const GEMV_MAX_M = 16;
/** Rows of x handled by one dispatch (S x R partial sums live in registers). */
export const GEMV_ROWS = 8;
export const GEMV_CHUNK = 8;

export function gemvConfigName(c: GemvConfig): string {
  return `r${c.R}-wg${c.WG}`;
}

export function gemvFits(p: MatmulParams): boolean {
  return p.transB && !p.transA && p.M <= GEMV_MAX_M && p.K % GEMV_CHUNK === 0;
}

/** Workgroup memory the reduction needs, in bytes. */
export function gemvSharedBytes(p: MatmulParams, c: GemvConfig): number {
  return Math.min(p.M, GEMV_ROWS) * c.R * c.WG * 4;
}

/** Row blocks [row0, rows) of x, one dispatch each. */
export function gemvChunks(p: MatmulParams): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let r = 0; r < p.M; r += GEMV_ROWS) out.push([r, Math.min(GEMV_ROWS, p.M - r)]);
  return out;
}

export function gemvUniforms(p: MatmulParams, row0: number): ArrayBuffer {
  return packUniforms([
    ['u32', p.M], ['u32', p.N], ['u32', p.K],
    ['u32', p.batchA === 1 ? 0 : p.M * p.K],
    ['u32', p.batchB === 1 ? 0 : p.K * p.N],
    ['u32', row0],
  ]);
}

function bindingOf(name: string, dtype: DType, slot: number): string {
  return `@group(0) @binding(${slot}) var<storage, read> ${name}: array<${dtype === 'f32' ? 'vec4<f32>' : 'vec4<u32>'}>;`;
}

/** `fn load8_<name>(i) -> array<vec4<f32>, 2>`: elements i..i+7 (i a multiple of 8). */
function load8(name: string, dtype: DType): string {
  if (dtype === 'f32') return `fn load8_${name}(i: u32) -> array<vec4<f32>, 2> { let q = i >> 2u; return array<vec4<f32>, 2>(${name}[q], ${name}[q + 1u]); }`;
  return `fn load8_${name}(i: u32) -> array<vec4<f32>, 2> { let w = ${name}[i >> 3u]; return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w))); }`;
}

/** The program for a block of `S` rows of x (S <= GEMV_ROWS); the block's first row is a uniform. */
export function gemvMatmul(a: Tensor, b: Tensor, S: number, c: GemvConfig): Program {
  const { R, WG } = c;
  const xs: string[] = [];
  for (let s = 0; s < S; s++) xs.push(`let x${s} = load8_a(aOff + (u.row0 + ${s}u) * u.K + k);`);
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
${GEMV_UNIFORM}
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
    if (n < u.N) { out[outOff + (u.row0 + s) * u.N + n] = red[lid * ${WG}u]; }
  }
}`,
  };
}

export function gemvGrid(p: MatmulParams, c: GemvConfig): [number, number, number] {
  const [x, y] = gridFor(Math.ceil(p.N / c.R));
  return [x, y, p.batch];
}
