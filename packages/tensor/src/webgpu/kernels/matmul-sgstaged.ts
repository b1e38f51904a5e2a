import type { MatmulParams } from '../../backend.js';
import type { Program } from '../program.js';
import { MATMUL_UNIFORM } from './matmul-common.js';
import { FRAG } from './matmul-sgmatrix.js';

/**
 * Variant (c'), f16 x f16 -> f32 through subgroup matrices with the A and B tiles staged in
 * workgroup memory. Per K slice the workgroup copies a BM x BK slice of A and a BN x BK
 * slice of B (16-byte global loads, each operand in its own layout so any transpose works)
 * into workgroup memory, and SGR x SGC subgroups each multiply FR x FC fragments out of it.
 *
 * What makes it fast, each measured on the H200 (benchmarks/gpu/probes/sg-matmul-sweep.ts):
 * - the next slice is loaded into registers while the current one is multiplied, so global
 *   latency hides behind the tensor-core work;
 * - with DB the staged tiles are double-buffered, leaving one barrier per slice;
 * - tile rows are padded by PAD halves so the 16 rows of a fragment load do not fall on the
 *   same banks.
 * Speed depends on Dawn's robustness transform (every workgroup-memory fragment load gets
 * clamped when it is on), so runMatmul picks this variant by itself only on backends
 * created with `disable_robustness`.
 *
 * Edges: none; used only when M, N, K are multiples of BM, BN, BK.
 */
export interface SgstagedConfig {
  SGR: number; SGC: number; FR: number; FC: number; BK: number;
  /** halves of padding per staged row (default 8) */
  PAD?: number;
  /** two staging buffers, one barrier per slice (default true) */
  DB?: boolean;
  /** fragment loads one 16-wide step ahead of the multiplies (default false) */
  FP?: boolean;
}

const pad = (c: SgstagedConfig): number => c.PAD ?? 8;
const stages = (c: SgstagedConfig): number => (c.DB ?? true ? 2 : 1);

export function sgstagedConfigName(c: SgstagedConfig): string {
  return `sg${c.SGR}x${c.SGC}-frag${c.FR}x${c.FC}-bk${c.BK}-pad${pad(c)}${stages(c) === 2 ? '-db' : ''}${c.FP ? '-fp' : ''}`;
}

export function sgstagedTile(c: SgstagedConfig): { BM: number; BN: number; BK: number } {
  return { BM: FRAG * c.SGR * c.FR, BN: FRAG * c.SGC * c.FC, BK: c.BK };
}

export function sgstagedFits(p: MatmulParams, c: SgstagedConfig): boolean {
  const t = sgstagedTile(c);
  return c.BK % FRAG === 0 && p.M % t.BM === 0 && p.N % t.BN === 0 && p.K % t.BK === 0;
}

interface Side {
  /** staged tile: `rows` x `cols` halves, cols contiguous in global memory and in the tile */
  rows: number;
  cols: number;
  /** WGSL: global element index of tile element (r, c) of the slice starting at k, without the batch offset */
  global: (r: string, c: string, k: string) => string;
  /** WGSL: tile offset of the fragment starting at output index `o` and slice offset `kk` */
  frag: (o: string, kk: string, stride: number) => string;
  colMajor: boolean;
}

function sides(p: Pick<MatmulParams, 'transA' | 'transB'>, BM: number, BN: number, BK: number): [Side, Side] {
  const A: Side = p.transA
    ? { rows: BK, cols: BM, global: (r, c, k) => `(${k} + ${r}) * u.M + r0 + ${c}`, frag: (o, kk, s) => `(${kk}) * ${s}u + ${o}`, colMajor: true }
    : { rows: BM, cols: BK, global: (r, c, k) => `(r0 + ${r}) * u.K + ${k} + ${c}`, frag: (o, kk, s) => `(${o}) * ${s}u + ${kk}`, colMajor: false };
  const B: Side = p.transB
    ? { rows: BN, cols: BK, global: (r, c, k) => `(c0 + ${r}) * u.K + ${k} + ${c}`, frag: (o, kk, s) => `(${o}) * ${s}u + ${kk}`, colMajor: true }
    : { rows: BK, cols: BN, global: (r, c, k) => `(${k} + ${r}) * u.N + c0 + ${c}`, frag: (o, kk, s) => `(${kk}) * ${s}u + ${o}`, colMajor: false };
  return [A, B];
}

/** Halves per staged buffer of one side: rows x (cols + PAD). */
function stageSize(s: Side, c: SgstagedConfig): number {
  return s.rows * (s.cols + pad(c));
}

export function sgstagedSharedBytes(c: SgstagedConfig, p: Pick<MatmulParams, 'transA' | 'transB'> = { transA: false, transB: false }): number {
  const t = sgstagedTile(c);
  const [A, B] = sides(p, t.BM, t.BN, t.BK);
  return (stageSize(A, c) + stageSize(B, c)) * stages(c) * 2;
}

/** WGSL statements for one side: global 16-byte loads of the slice at `k` into registers, and their stores into the staged tile at `stage`. */
function staging(name: 'a' | 'b', s: Side, c: SgstagedConfig, WG: number): { decl: string; load: (k: string) => string; store: (stage: string) => string } {
  const T = name === 'a' ? 'ta' : 'tb';
  const off = name === 'a' ? 'aOff' : 'bOff';
  const q = s.cols / 8;
  const total = s.rows * q;
  const per = Math.ceil(total / WG);
  const stride = s.cols + pad(c);
  const decl: string[] = [];
  const load: Array<(k: string) => string> = [];
  const store: Array<(stage: string) => string> = [];
  for (let i = 0; i < per; i++) {
    const v = `${name}v${i}`;
    const guard = (i + 1) * WG > total ? `if (${v} < ${total}u) ` : '';
    decl.push(`var ${name}r${i}: vec4<u32>; let ${v} = lid + ${i * WG}u;`);
    load.push((k) => `${guard}{ let r = ${v} / ${q}u; let cc = (${v} % ${q}u) * 8u; ${name}r${i} = ${name}[(${off} + ${s.global('r', 'cc', k)}) / 8u]; }`);
    const halves = [0, 1, 2, 3].map((w) => `let h${w} = bitcast<vec2<f16>>(${name}r${i}[${w}]); ${T}[o + ${2 * w}u] = h${w}.x; ${T}[o + ${2 * w + 1}u] = h${w}.y;`).join(' ');
    store.push((stage) => `${guard}{ let r = ${v} / ${q}u; let cc = (${v} % ${q}u) * 8u; let o = ${stage} + r * ${stride}u + cc; ${halves} }`);
  }
  return {
    decl: decl.join('\n  '),
    load: (k) => load.map((f) => f(k)).join('\n    '),
    store: (stage) => store.map((f) => f(stage)).join('\n    '),
  };
}

/**
 * The K slice's fragment loads and multiplies written out for each 16-wide step (kk a
 * constant). With FP the loads of step s+1 are issued before the multiplies of step s, so
 * a fragment load's latency overlaps tensor-core work instead of stalling the subgroup.
 */
function unrolled(loads: (s: number) => string[], mmas: (s: number) => string[], BK: number, FP: boolean): string {
  const n = BK / FRAG;
  if (!FP) return Array.from({ length: n }, (_, s) => `{\n      ${[...loads(s), ...mmas(s)].join('\n      ')}\n    }`).join('\n    ');
  const out = loads(0);
  for (let s = 0; s < n; s++) {
    if (s + 1 < n) out.push(...loads(s + 1));
    out.push(...mmas(s));
  }
  return out.join('\n    ');
}

/** The WGSL of the kernel; exported for the structural test (it compiles only where subgroup matrices exist). */
export function sgstagedSource(p: Pick<MatmulParams, 'transA' | 'transB'>, c: SgstagedConfig, subgroupSize: number): string {
  const { BM, BN, BK } = sgstagedTile(c);
  const WG = c.SGR * c.SGC * subgroupSize;
  const [A, B] = sides(p, BM, BN, BK);
  const SA = A.cols + pad(c);
  const SB = B.cols + pad(c);
  const sizeA = stageSize(A, c);
  const sizeB = stageSize(B, c);
  const NS = stages(c);
  const sa = staging('a', A, c, WG);
  const sb = staging('b', B, c, WG);
  const L = `subgroup_matrix_left<f16, ${FRAG}, ${FRAG}>`;
  const R = `subgroup_matrix_right<f16, ${FRAG}, ${FRAG}>`;
  const FRs = Array.from({ length: c.FR }, (_, i) => i);
  const FCs = Array.from({ length: c.FC }, (_, j) => j);
  // Step s's fragments of A and B (its 16 K values at offset 16s in the staged slice), and its multiplies.
  const loads = (s: number): string[] => [
    ...FRs.map((i) => `let l${i}_${s} = subgroupMatrixLoad<${L}>(&ta, sta + ${A.frag(`sr + ${i * FRAG}u`, `${s * FRAG}u`, SA)}, ${A.colMajor}, ${SA}u);`),
    ...FCs.map((j) => `let q${j}_${s} = subgroupMatrixLoad<${R}>(&tb, stb + ${B.frag(`sc + ${j * FRAG}u`, `${s * FRAG}u`, SB)}, ${B.colMajor}, ${SB}u);`),
  ];
  const mmas = (s: number): string[] => FRs.flatMap((i) => FCs.map((j) => `acc${i}_${j} = subgroupMatrixMultiplyAccumulate(l${i}_${s}, q${j}_${s}, acc${i}_${j});`));
  const decl: string[] = [];
  const stores: string[] = [];
  for (const i of FRs) {
    for (const j of FCs) {
      // Declared at function scope: a declaration inside the loop had its zero-init hoisted.
      decl.push(`var acc${i}_${j}: subgroup_matrix_result<f32, ${FRAG}, ${FRAG}>;`);
      stores.push(`subgroupMatrixStore(&out, outOff + (r0 + sr + ${i * FRAG}u) * u.N + c0 + sc + ${j * FRAG}u, acc${i}_${j}, false, u.N);`);
    }
  }
  const stageA = NS === 2 ? `select(0u, ${sizeA}u, (k0 / ${BK}u) % 2u == 1u)` : '0u';
  const stageB = NS === 2 ? `select(0u, ${sizeB}u, (k0 / ${BK}u) % 2u == 1u)` : '0u';
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
${MATMUL_UNIFORM}
var<workgroup> ta: array<f16, ${sizeA * NS}>;
var<workgroup> tb: array<f16, ${sizeB * NS}>;
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
  ${sa.decl}
  ${sb.decl}
  var k0 = 0u;
  ${sa.load('k0')}
  ${sb.load('k0')}
  for (; k0 < u.K; k0 += ${BK}u) {
    let sta = ${stageA};
    let stb = ${stageB};
    ${sa.store('sta')}
    ${sb.store('stb')}
    workgroupBarrier();
    if (k0 + ${BK}u < u.K) {
      let k1 = k0 + ${BK}u;
      ${sa.load('k1')}
      ${sb.load('k1')}
    }
    ${unrolled(loads, mmas, BK, c.FP ?? false)}
    ${NS === 1 ? 'workgroupBarrier();' : ''}
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
