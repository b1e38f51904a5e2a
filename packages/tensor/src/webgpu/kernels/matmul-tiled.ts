import type { MatmulParams } from '../../backend.js';
import type { DType } from '../../dtype.js';
import type { Tensor } from '../../tensor.js';
import type { Program } from '../program.js';
import { floatLoader } from '../wgsl.js';
import { MATMUL_UNIFORM } from './matmul-common.js';

/**
 * Variant (b): register-blocked matmul with f32 accumulation. A workgroup computes a
 * BM x BN output tile; each thread owns TM x TN outputs laid out as 4x4 blocks strided
 * across the tile, so its reads of the staged tiles are vec4 loads that neighbouring
 * threads share (broadcast) or read from consecutive banks. The next K slice is fetched
 * from global memory into registers while the current one is multiplied, so one staging
 * buffer and two barriers per slice hide the load latency.
 *
 * Edges: any M, N, K. When the tile does not divide the shape the loads zero-fill and the
 * stores are masked (`checked` in the key); operands whose contiguous dimension is a
 * multiple of 4 are read as vec4 (f32) or 4 packed halves (f16), others element by element.
 */
export interface TiledConfig {
  BM: number; BN: number; BK: number; TM: number; TN: number;
  /**
   * Two staging buffers: the next slice is staged while the current one is read, one barrier
   * per slice. Slower on the H200 (32 vs 43 TFLOP/s at 8192^3 with WM=8, U2 or not).
   */
  DB?: boolean;
  /**
   * Workgroups walk the output tiles in groups of SW tile rows (column by column inside a
   * group), so the workgroups resident at once share A rows and B columns in L2.
   */
  SW?: number;
  /**
   * K-contiguous operands read as vec4 are split over threads row-fastest: the transposed
   * writes into the staged tile then land in consecutive banks instead of 4-way conflicts.
   */
  AR?: boolean;
  /**
   * No register prefetch (single buffer only): each slice is loaded and staged right before
   * it is multiplied. Fewer live registers, so more workgroups fit; the load latency is then
   * hidden by the other workgroups instead.
   */
  NP?: boolean;
  /**
   * Scalar FMAs on scalar accumulators instead of vec4 FMAs of a splatted A value: on the
   * H200 through Dawn/Vulkan, independent scalar FMA chains reach ~63 TFLOP/s where vec4
   * chains stop at ~43 (benchmarks/gpu/probes/f32-sweep.ts). In this kernel it changed
   * nothing measurable at 8192^3 (41.0 vs 41.3 TFLOP/s): the driver already splits the vec4s.
   */
  SF?: boolean;
  /**
   * With DB: the K loop unrolled by two, so each half reads and fills buffers at constant
   * offsets (no run-time buffer index in the shared-memory addresses).
   */
  U2?: boolean;
  /**
   * Accumulators and prefetch registers as separate variables instead of arrays. With WM=8:
   * 44.3-44.5 vs 43.0-43.6 TFLOP/s at 8192^3 on the H200 (the default has it).
   */
  VARS?: boolean;
  /**
   * Each block of 32 consecutive threads (a subgroup on NVIDIA) covers WM thread columns x
   * 32/WM thread rows instead of whole rows of the thread grid. With WM = 8 a subgroup's reads
   * of a staged B row span 128 bytes (one shared-memory wavefront) and those of A 4 distinct
   * vec4s: 43.7 vs 41.3 TFLOP/s at 8192^3 on the H200. Needs BN/TN % WM == 0 and
   * BM/TM % (32/WM) == 0. Any thread layout computes the same result; this one is only faster.
   */
  WM?: 1 | 2 | 4 | 8 | 16 | 32;
}

export function tiledConfigName(c: TiledConfig): string {
  return `${c.BM}x${c.BN}x${c.BK}-${c.TM}x${c.TN}${c.DB ? '-db' : ''}${c.SW ? `-sw${c.SW}` : ''}${c.AR ? '-ar' : ''}${c.VARS ? '-vars' : ''}${c.WM ? `-wm${c.WM}` : ''}${c.NP ? '-np' : ''}${c.SF ? '-sf' : ''}${c.U2 ? '-u2' : ''}`;
}

/** Checks a configuration's internal consistency; returns why it is invalid, or null. */
export function tiledConfigProblem(c: TiledConfig): string | null {
  const { BM, BN, BK, TM, TN } = c;
  if ([BM, BN, BK, TM, TN].some((v) => !Number.isInteger(v) || v <= 0)) return 'all sizes must be positive integers';
  if (c.SW !== undefined && (!Number.isInteger(c.SW) || c.SW < 0)) return 'the swizzle group SW must be a non-negative integer';
  if (TM % 4 || TN % 4 || BK % 4) return 'TM, TN and BK must be multiples of 4';
  if (BM % TM || BN % TN) return 'BM must be a multiple of TM and BN of TN';
  const threads = (BM / TM) * (BN / TN);
  if (threads > 256) return `needs ${threads} threads per workgroup (at most 256)`;
  if (c.U2 && !c.DB) return 'U2 (K loop unrolled by two) applies to the double-buffered loop (DB) only';
  if (c.NP && c.DB) return 'NP (no register prefetch) applies to the single-buffered loop only, not with DB';
  if (c.WM !== undefined) {
    if (![1, 2, 4, 8, 16, 32].includes(c.WM)) return 'WM (thread columns per 32-thread block) must be 1, 2, 4, 8, 16 or 32';
    if ((BN / TN) % c.WM || (BM / TM) % (32 / c.WM)) return `the 32-thread blocks of WM=${c.WM} need BN/TN % ${c.WM} == 0 and BM/TM % ${32 / c.WM} == 0`;
  }
  return null;
}

function threadsOf(c: TiledConfig): { TX: number; TY: number; NT: number } {
  const TX = c.BN / c.TN;
  const TY = c.BM / c.TM;
  return { TX, TY, NT: TX * TY };
}

interface Operand {
  name: 'a' | 'b';
  dtype: DType;
  /** Rows of the staged tile along the output dimension (BM for a, BN for b). */
  R: number;
  /** The operand's contiguous dimension is K (else the output dimension). */
  kContig: boolean;
  /** Read 4 elements at a time along the contiguous dimension. */
  vec: boolean;
  /** WGSL of the element index of (r, k) without the batch offset. */
  index: string;
  /** WGSL bound on r. */
  limit: string;
}

function operands(a: Tensor, b: Tensor, p: MatmulParams, c: TiledConfig): [Operand, Operand] {
  const A: Operand = {
    name: 'a', dtype: a.dtype, R: c.BM, kContig: !p.transA,
    vec: p.transA ? p.M % 4 === 0 : p.K % 4 === 0,
    index: p.transA ? 'k * u.M + r' : 'r * u.K + k', limit: 'u.M',
  };
  const B: Operand = {
    name: 'b', dtype: b.dtype, R: c.BN, kContig: p.transB,
    vec: p.transB ? p.K % 4 === 0 : p.N % 4 === 0,
    index: p.transB ? 'r * u.K + k' : 'k * u.N + r', limit: 'u.N',
  };
  return [A, B];
}

function binding(o: Operand, slot: number): string {
  const elem = !o.vec ? 'u32' : o.dtype === 'f32' ? 'vec4<f32>' : 'vec2<u32>';
  return `@group(0) @binding(${slot}) var<storage, read> ${o.name}: array<${elem}>;`;
}

function loader(o: Operand): string {
  if (!o.vec) return floatLoader(o.name, o.dtype);
  if (o.dtype === 'f32') return `fn load4_${o.name}(i: u32) -> vec4<f32> { return ${o.name}[i >> 2u]; }`;
  return `fn load4_${o.name}(i: u32) -> vec4<f32> { let w = ${o.name}[i >> 2u]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }`;
}

/** The i-th element of a register set: an array element, or its own variable under VARS. */
function reg(c: TiledConfig, base: string, i: number): string {
  return c.VARS ? `${base}_${i}` : `${base}[${i}]`;
}

/** Declarations of a register set of n values of type t. */
function regDecl(c: TiledConfig, base: string, t: string, n: number, init = ''): string {
  if (!c.VARS) return `var ${base}: array<${t}, ${n}>;`;
  return Array.from({ length: n }, (_, i) => `var ${base}_${i}: ${t}${init ? ` = ${init}` : ''};`).join('\n  ');
}

/** Lane j of accumulator vec4 n (scalar accumulators under SF). */
function accElem(c: TiledConfig, n: number, j: number): string {
  if (!c.SF) return `${reg(c, 'acc', n)}[${j}]`;
  return c.VARS ? `acc_${n}_${j}` : `acc[${n * 4 + j}]`;
}

function accDecl(c: TiledConfig): string {
  const n = (c.TM * c.TN) / 4;
  if (!c.SF) return regDecl(c, 'acc', 'vec4<f32>', n, 'vec4<f32>(0.0)');
  if (!c.VARS) return `var acc: array<f32, ${n * 4}>;`;
  return Array.from({ length: n * 4 }, (_, i) => `var acc_${i >> 2}_${i & 3}: f32 = 0.0;`).join('\n  ');
}

/** Row-fastest split of a K-contiguous vec4 operand (see TiledConfig.AR). */
function rowFastest(o: Operand, c: TiledConfig): boolean {
  return !!c.AR && o.vec && o.kContig;
}

/** Statements fetching this thread's share of the K slice starting at `k0` into registers p<name>. */
function units(o: Operand, c: TiledConfig): number {
  return o.vec ? (o.R * c.BK) / 4 : o.R * c.BK;
}

/** Wraps a thread's i-th unit in a guard when the units do not split evenly over the threads. */
function guard(o: Operand, c: TiledConfig, NT: number, i: number, stmt: string): string {
  return (i + 1) * NT > units(o, c) ? `if (lid + ${i * NT}u < ${units(o, c)}u) ${stmt}` : stmt;
}

function fetch(o: Operand, c: TiledConfig, NT: number, checked: boolean): string {
  const per = Math.ceil(units(o, c) / NT);
  const lines: string[] = [];
  for (let i = 0; i < per; i++) {
    const v = `lid + ${i * NT}u`;
    let rk: string;
    if (rowFastest(o, c)) {
      rk = `let r = ${o.name}Row0 + (${v}) % ${o.R}u; let k = k0 + ((${v}) / ${o.R}u) * 4u;`;
    } else if (o.vec) {
      rk = o.kContig
        ? `let r = ${o.name}Row0 + (${v}) / ${c.BK / 4}u; let k = k0 + ((${v}) % ${c.BK / 4}u) * 4u;`
        : `let k = k0 + (${v}) / ${o.R / 4}u; let r = ${o.name}Row0 + ((${v}) % ${o.R / 4}u) * 4u;`;
    } else {
      rk = o.kContig
        ? `let r = ${o.name}Row0 + (${v}) / ${c.BK}u; let k = k0 + (${v}) % ${c.BK}u;`
        : `let k = k0 + (${v}) / ${o.R}u; let r = ${o.name}Row0 + (${v}) % ${o.R}u;`;
    }
    const load = o.vec ? `load4_${o.name}(${o.name}Off + ${o.index})` : `load_${o.name}(${o.name}Off + ${o.index})`;
    const zero = o.vec ? 'vec4<f32>(0.0)' : '0.0';
    const p = reg(c, `p${o.name}`, i);
    const body = checked ? `if (r < ${o.limit} && k < u.K) { ${p} = ${load}; } else { ${p} = ${zero}; }` : `${p} = ${load};`;
    lines.push(`    ${guard(o, c, NT, i, `{ ${rk} ${body} }`)}`);
  }
  return lines.join('\n');
}

/** Statements writing the fetched registers into the staged tile ([BK][R] as vec4 rows). */
function stage(o: Operand, c: TiledConfig, NT: number, off = '0u'): string {
  const per = Math.ceil(units(o, c) / NT);
  const t = `t${o.name}`;
  const lines: string[] = [];
  for (let i = 0; i < per; i++) {
    const v = `lid + ${i * NT}u`;
    const p = reg(c, `p${o.name}`, i);
    if (o.vec && o.kContig) {
      const rk = rowFastest(o, c)
        ? `let r = (${v}) % ${o.R}u; let k = ((${v}) / ${o.R}u) * 4u;`
        : `let r = (${v}) / ${c.BK / 4}u; let k = ((${v}) % ${c.BK / 4}u) * 4u;`;
      lines.push(`    ${guard(o, c, NT, i, `{ ${rk} let q = ${p};` +
        [0, 1, 2, 3].map((j) => ` ${t}[${off} + (((k + ${j}u) * ${o.R}u + r) >> 2u)][r & 3u] = q[${j}];`).join('') + ' }')}`);
    } else if (o.vec) {
      lines.push(`    ${guard(o, c, NT, i, `{ let k = (${v}) / ${o.R / 4}u; let r = ((${v}) % ${o.R / 4}u) * 4u; ${t}[${off} + ((k * ${o.R}u + r) >> 2u)] = ${p}; }`)}`);
    } else {
      const rk = o.kContig ? `let r = (${v}) / ${c.BK}u; let k = (${v}) % ${c.BK}u;` : `let k = (${v}) / ${o.R}u; let r = (${v}) % ${o.R}u;`;
      lines.push(`    ${guard(o, c, NT, i, `{ ${rk} ${t}[${off} + ((k * ${o.R}u + r) >> 2u)][r & 3u] = ${p}; }`)}`);
    }
  }
  return lines.join('\n');
}

function compute(c: TiledConfig, TX: number, TY: number, offA = '', offB = ''): string {
  const G = c.TM / 4;
  const H = c.TN / 4;
  const lines: string[] = [];
  for (let kk = 0; kk < c.BK; kk++) {
    const s: string[] = [];
    for (let g = 0; g < G; g++) s.push(`let a${g} = ta[${offA}${(kk * c.BM) / 4 + g * TY}u + ty];`);
    for (let h = 0; h < H; h++) s.push(`let b${h} = tb[${offB}${(kk * c.BN) / 4 + h * TX}u + tx];`);
    for (let g = 0; g < G; g++) {
      for (let i = 0; i < 4; i++) {
        for (let h = 0; h < H; h++) {
          const n = (g * 4 + i) * H + h;
          if (c.SF) {
            for (let j = 0; j < 4; j++) s.push(`${accElem(c, n, j)} = fma(a${g}[${i}], b${h}[${j}], ${accElem(c, n, j)});`);
          } else {
            const acc = reg(c, 'acc', n);
            s.push(`${acc} = fma(vec4<f32>(a${g}[${i}]), b${h}, ${acc});`);
          }
        }
      }
    }
    lines.push(`    {\n      ${s.join('\n      ')}\n    }`);
  }
  return lines.join('\n');
}

function store(c: TiledConfig, TX: number, TY: number, checked: boolean): string {
  const G = c.TM / 4;
  const H = c.TN / 4;
  const lines: string[] = [];
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < 4; i++) {
      for (let h = 0; h < H; h++) {
        const n = (g * 4 + i) * H + h;
        const row = `r0 + ${g * 4 * TY + i}u + ty * 4u`;
        const col = `c0 + ${h * 4 * TX}u + tx * 4u`;
        if (checked) {
          lines.push(`  { let row = ${row}; let col = ${col}; if (row < u.M) { let o = outOff + row * u.N + col;` +
            [0, 1, 2, 3].map((j) => ` if (col + ${j}u < u.N) { out[o + ${j}u] = ${accElem(c, n, j)}; }`).join('') + ' } }');
        } else {
          lines.push(`  { let o = outOff + (${row}) * u.N + ${col};` + [0, 1, 2, 3].map((j) => ` out[o + ${j}u] = ${accElem(c, n, j)};`).join('') + ' }');
        }
      }
    }
  }
  return lines.join('\n');
}

/** WGSL defining tx/ty, this thread's column and row in the workgroup's thread grid. */
function threadOrigin(c: TiledConfig, TX: number): string {
  if (!c.WM) return `  let tx = lid % ${TX}u;\n  let ty = lid / ${TX}u;`;
  // Blocks of WM x 32/WM threads (one subgroup of 32 on NVIDIA), laid out row-major over the grid.
  const WX = TX / c.WM;
  return `  let sgi = lid / 32u;
  let lane = lid % 32u;
  let tx = (sgi % ${WX}u) * ${c.WM}u + lane % ${c.WM}u;
  let ty = (sgi / ${WX}u) * ${32 / c.WM}u + lane / ${c.WM}u;`;
}

/** WGSL defining r0/c0, the first output row and column of this workgroup's tile. */
function tileOrigin(c: TiledConfig): string {
  if (!c.SW) return `  let r0 = wid.y * ${c.BM}u;\n  let c0 = wid.x * ${c.BN}u;`;
  // Tiles in groups of SW tile rows; inside a group consecutive workgroups go down a column.
  return `  let lin = wid.y * nwg.x + wid.x;
  let perGroup = ${c.SW}u * nwg.x;
  let firstRow = (lin / perGroup) * ${c.SW}u;
  let rows = min(${c.SW}u, nwg.y - firstRow);
  let inGroup = lin % perGroup;
  let r0 = (firstRow + inGroup % rows) * ${c.BM}u;
  let c0 = (inGroup / rows) * ${c.BN}u;`;
}

export function tiledMatmul(a: Tensor, b: Tensor, p: MatmulParams, c: TiledConfig): Program {
  const { TX, TY, NT } = threadsOf(c);
  const checked = p.M % c.BM !== 0 || p.N % c.BN !== 0 || p.K % c.BK !== 0;
  const [A, B] = operands(a, b, p, c);
  const perA = Math.ceil(units(A, c) / NT);
  const perB = Math.ceil(units(B, c) / NT);
  const regType = (o: Operand) => (o.vec ? 'vec4<f32>' : 'f32');
  const stages = c.DB ? 2 : 1;
  const SA = (c.BK * c.BM) / 4;
  const SB = (c.BK * c.BN) / 4;
  const fetchAll = `${fetch(A, c, NT, checked)}\n${fetch(B, c, NT, checked)}`;
  // One buffer: stage, barrier, fetch the next slice into registers, multiply, barrier.
  const singleBuffered = `  for (; k0 < u.K;) {
${stage(A, c, NT)}
${stage(B, c, NT)}
    workgroupBarrier();
    k0 += ${c.BK}u;
    if (k0 < u.K) {
${fetchAll}
    }
${compute(c, TX, TY)}
    workgroupBarrier();
  }`;
  // No prefetch: load, stage, barrier, multiply, barrier.
  const unprefetched = `  for (; k0 < u.K; k0 += ${c.BK}u) {
${fetchAll}
${stage(A, c, NT)}
${stage(B, c, NT)}
    workgroupBarrier();
${compute(c, TX, TY)}
    workgroupBarrier();
  }`;
  // Two buffers: multiply from one while the other is filled; the single barrier also
  // guarantees nobody still reads the buffer being refilled (it was read one slice ago).
  const doubleBuffered = `${stage(A, c, NT)}
${stage(B, c, NT)}
  workgroupBarrier();
  var cur = 0u;
  for (; k0 < u.K;) {
    k0 += ${c.BK}u;
    let more = k0 < u.K;
    if (more) {
${fetchAll}
    }
    let ca = cur * ${SA}u;
    let cb = cur * ${SB}u;
${compute(c, TX, TY, 'ca + ', 'cb + ')}
    if (more) {
      let sa = (1u - cur) * ${SA}u;
      let sb = (1u - cur) * ${SB}u;
${stage(A, c, NT, 'sa')}
${stage(B, c, NT, 'sb')}
    }
    workgroupBarrier();
    cur = 1u - cur;
  }`;
  // The same, unrolled by two: half h multiplies buffer h and fills buffer 1 - h.
  const half = (h: number) => `    k0 += ${c.BK}u;
    more = k0 < u.K;
    if (more) {
${fetchAll}
    }
${compute(c, TX, TY, `${h * SA}u + `, `${h * SB}u + `)}
    if (more) {
${stage(A, c, NT, `${(1 - h) * SA}u`)}
${stage(B, c, NT, `${(1 - h) * SB}u`)}
    }
    workgroupBarrier();
    if (!more) { break; }`;
  const doubleBufferedU2 = `${stage(A, c, NT)}
${stage(B, c, NT)}
  workgroupBarrier();
  var more = true;
  loop {
${half(0)}
${half(1)}
  }`;
  const key = `matmul/tiled/${tiledConfigName(c)}/${a.dtype}${p.transA ? 'T' : 'N'}${A.vec ? 'v' : 's'}/${b.dtype}${p.transB ? 'T' : 'N'}${B.vec ? 'v' : 's'}/${checked ? 'checked' : 'exact'}`;
  return {
    key, inputs: 2, outputs: 1, uniform: true,
    source: () => `
${binding(A, 0)}
${binding(B, 1)}
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
${MATMUL_UNIFORM}
${loader(A)}
${loader(B)}
var<workgroup> ta: array<vec4<f32>, ${stages * SA}>;
var<workgroup> tb: array<vec4<f32>, ${stages * SB}>;
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, ${c.SW ? '@builtin(num_workgroups) nwg: vec3<u32>, ' : ''}@builtin(local_invocation_index) lid: u32) {
${threadOrigin(c, TX)}
${tileOrigin(c)}
  let aRow0 = r0;
  let bRow0 = c0;
  let aOff = wid.z * u.strideA;
  let bOff = wid.z * u.strideB;
  let outOff = wid.z * u.M * u.N;
  ${accDecl(c)}
  ${regDecl(c, 'pa', regType(A), perA)}
  ${regDecl(c, 'pb', regType(B), perB)}
  var k0 = 0u;
${c.NP ? unprefetched : `${fetchAll}\n${c.DB ? (c.U2 ? doubleBufferedU2 : doubleBuffered) : singleBuffered}`}
${store(c, TX, TY, checked)}
}`,
  };
}

export function tiledGrid(p: MatmulParams, c: TiledConfig): [number, number, number] {
  return [Math.ceil(p.N / c.BN), Math.ceil(p.M / c.BM), p.batch];
}
