import type { MatmulParams } from '../../backend.js';
import type { Program } from '../program.js';
import { MATMUL_UNIFORM } from './matmul-common.js';
import { FRAG } from './matmul-sgmatrix.js';

/**
 * Variant (c'), f16 x f16 -> f32 through subgroup matrices with the A and B tiles staged in
 * workgroup memory: the workgroup copies a BM x BK slice of A and a BN x BK slice of B
 * (4 halves per thread step, keeping each operand's own layout so any transpose works),
 * then SGR x SGC subgroups each multiply FR x FC fragments out of it. Two barriers per
 * K slice.
 *
 * Speed depends on Dawn's robustness transform: on the H200 the same kernel ran at
 * 71.5 TFLOP/s at 8192^3 with `disable_robustness` and 15 TFLOP/s without (every
 * workgroup-memory fragment load is bounds-clamped), see benchmarks/gpu/probes/. So
 * runMatmul does not pick it by itself; ATTNKIT_MATMUL_VARIANT=sgstaged does.
 *
 * Edges: none; used only when M, N, K are multiples of BM, BN, BK.
 */
export interface SgstagedConfig { SGR: number; SGC: number; FR: number; FC: number; BK: number }

export function sgstagedConfigName(c: SgstagedConfig): string {
  return `sg${c.SGR}x${c.SGC}-frag${c.FR}x${c.FC}-bk${c.BK}`;
}

export function sgstagedTile(c: SgstagedConfig): { BM: number; BN: number; BK: number } {
  return { BM: FRAG * c.SGR * c.FR, BN: FRAG * c.SGC * c.FC, BK: c.BK };
}

export function sgstagedFits(p: MatmulParams, c: SgstagedConfig): boolean {
  const t = sgstagedTile(c);
  return c.BK % FRAG === 0 && p.M % t.BM === 0 && p.N % t.BN === 0 && p.K % t.BK === 0;
}

export function sgstagedSharedBytes(c: SgstagedConfig): number {
  const t = sgstagedTile(c);
  return (t.BM + t.BN) * t.BK * 2;
}

interface Side {
  /** staged tile: `rows` x `cols` halves, cols contiguous */
  rows: number;
  cols: number;
  /** WGSL: global element index of tile element (r, c) at slice k0, without the batch offset */
  global: (r: string, c: string) => string;
  /** WGSL: tile offset of the fragment starting at output index `o` and slice offset `kk` */
  frag: (o: string, kk: string) => string;
  colMajor: boolean;
}

function sides(p: Pick<MatmulParams, 'transA' | 'transB'>, BM: number, BN: number, BK: number): [Side, Side] {
  const A: Side = p.transA
    ? { rows: BK, cols: BM, global: (r, c) => `(k0 + ${r}) * u.M + r0 + ${c}`, frag: (o, kk) => `(${kk}) * ${BM}u + ${o}`, colMajor: true }
    : { rows: BM, cols: BK, global: (r, c) => `(r0 + ${r}) * u.K + k0 + ${c}`, frag: (o, kk) => `(${o}) * ${BK}u + ${kk}`, colMajor: false };
  const B: Side = p.transB
    ? { rows: BN, cols: BK, global: (r, c) => `(c0 + ${r}) * u.K + k0 + ${c}`, frag: (o, kk) => `(${o}) * ${BK}u + ${kk}`, colMajor: true }
    : { rows: BK, cols: BN, global: (r, c) => `(k0 + ${r}) * u.N + c0 + ${c}`, frag: (o, kk) => `(${kk}) * ${BN}u + ${o}`, colMajor: false };
  return [A, B];
}

function copy(name: 'a' | 'b', s: Side, WG: number): string {
  const T = name === 'a' ? 'ta' : 'tb';
  const off = name === 'a' ? 'aOff' : 'bOff';
  const q = s.cols / 4;
  return `for (var v = lid; v < ${(s.rows * s.cols) / 4}u; v += ${WG}u) {
      let r = v / ${q}u; let c = (v % ${q}u) * 4u;
      let g = ${off} + ${s.global('r', 'c')}; let o = r * ${s.cols}u + c;
      ${T}[o] = ${name}[g]; ${T}[o + 1u] = ${name}[g + 1u]; ${T}[o + 2u] = ${name}[g + 2u]; ${T}[o + 3u] = ${name}[g + 3u];
    }`;
}

/** The WGSL of the kernel; exported for the structural test (it compiles only where subgroup matrices exist). */
export function sgstagedSource(p: Pick<MatmulParams, 'transA' | 'transB'>, c: SgstagedConfig, subgroupSize: number): string {
  const { BM, BN, BK } = sgstagedTile(c);
  const WG = c.SGR * c.SGC * subgroupSize;
  const [A, B] = sides(p, BM, BN, BK);
  const L = `subgroup_matrix_left<f16, ${FRAG}, ${FRAG}>`;
  const R = `subgroup_matrix_right<f16, ${FRAG}, ${FRAG}>`;
  const body: string[] = [];
  for (let i = 0; i < c.FR; i++) body.push(`let l${i} = subgroupMatrixLoad<${L}>(&ta, ${A.frag(`sr + ${i * FRAG}u`, 'kk')}, ${A.colMajor}, ${A.cols}u);`);
  for (let j = 0; j < c.FC; j++) body.push(`let q${j} = subgroupMatrixLoad<${R}>(&tb, ${B.frag(`sc + ${j * FRAG}u`, 'kk')}, ${B.colMajor}, ${B.cols}u);`);
  const decl: string[] = [];
  const stores: string[] = [];
  for (let i = 0; i < c.FR; i++) {
    for (let j = 0; j < c.FC; j++) {
      decl.push(`var acc${i}_${j}: subgroup_matrix_result<f32, ${FRAG}, ${FRAG}>;`);
      body.push(`acc${i}_${j} = subgroupMatrixMultiplyAccumulate(l${i}, q${j}, acc${i}_${j});`);
      stores.push(`subgroupMatrixStore(&out, outOff + (r0 + sr + ${i * FRAG}u) * u.N + c0 + sc + ${j * FRAG}u, acc${i}_${j}, false, u.N);`);
    }
  }
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
${MATMUL_UNIFORM}
var<workgroup> ta: array<f16, ${BM * BK}>;
var<workgroup> tb: array<f16, ${BN * BK}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32) {
  let r0 = wid.y * ${BM}u;
  let c0 = wid.x * ${BN}u;
  // This subgroup's first output row and column inside the tile (subgroup-uniform).
  let sr = (sg / ${c.SGC}u) * ${c.FR * FRAG}u;
  let sc = (sg % ${c.SGC}u) * ${c.FC * FRAG}u;
  let aOff = wid.z * u.strideA;
  let bOff = wid.z * u.strideB;
  let outOff = wid.z * u.M * u.N;
  ${decl.join('\n  ')}
  for (var k0 = 0u; k0 < u.K; k0 += ${BK}u) {
    ${copy('a', A, WG)}
    ${copy('b', B, WG)}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk += ${FRAG}u) {
      ${body.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${stores.join('\n  ')}
}`;
}

export function sgstagedMatmul(p: MatmulParams, c: SgstagedConfig, subgroupSize: number): Program {
  return {
    key: `matmul/sgstaged/${sgstagedConfigName(c)}/${p.transA ? 'T' : 'N'}${p.transB ? 'T' : 'N'}/sg${subgroupSize}`,
    inputs: 2, outputs: 1, uniform: true,
    source: () => sgstagedSource(p, c, subgroupSize),
  };
}

export function sgstagedGrid(p: MatmulParams, c: SgstagedConfig): [number, number, number] {
  const t = sgstagedTile(c);
  return [p.N / t.BN, p.M / t.BM, p.batch];
}
