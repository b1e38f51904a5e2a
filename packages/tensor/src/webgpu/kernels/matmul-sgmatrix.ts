import type { Capabilities, MatmulParams } from '../../backend.js';
import type { Tensor } from '../../tensor.js';
import type { Program } from '../program.js';
import { MATMUL_UNIFORM } from './matmul-common.js';

/**
 * Variant (c): f16 x f16 -> f32 through subgroup matrices (chromium_experimental_subgroup_matrix,
 * cooperative matrices on Vulkan). A workgroup holds SGR x SGC subgroups; each owns FR x FC
 * 16x16 result fragments, so every left fragment it loads is used FC times and every right
 * fragment FR times from registers. Fragments are loaded straight from storage (no
 * workgroup-memory staging: staged forms crash Dawn/the driver at pipeline creation, see
 * benchmarks/gpu/probes/); subgroups of one workgroup read the same rows and columns, so
 * the reuse across subgroups comes from L1/L2. KU > 1 unrolls the K loop so the loads of
 * the next steps are issued before the multiplies of the current one.
 *
 * Edges: none. It is chosen only when M is a multiple of 16*SGR*FR, N of 16*SGC*FC and K of
 * 16*KU, for f16 operands (any transposes: the load's column-major flag absorbs them).
 */
export interface SgmatrixConfig { SGR: number; SGC: number; FR: number; FC: number; KU: number }

export const FRAG = 16;

export function sgmatrixConfigName(c: SgmatrixConfig): string {
  return `sg${c.SGR}x${c.SGC}-frag${c.FR}x${c.FC}-ku${c.KU}`;
}

export function sgmatrixTile(c: SgmatrixConfig): { BM: number; BN: number; BK: number } {
  return { BM: FRAG * c.SGR * c.FR, BN: FRAG * c.SGC * c.FC, BK: FRAG * c.KU };
}

/**
 * Whether the adapter offers f16 x f16 -> f32 16x16x16 subgroup matrices. The workgroup is
 * sized in subgroups of subgroupMaxSize (Dawn requires a multiple of it); every adapter
 * with subgroup matrices seen so far (NVIDIA: 32) runs them at that size.
 */
export function hasSgmatrixF16(caps: Capabilities): boolean {
  return caps.shaderF16 && caps.subgroups && caps.subgroupMaxSize > 0 &&
    caps.subgroupMatrixConfigs.some((m) => m.componentType === 'f16' && m.resultComponentType === 'f32' && m.M === FRAG && m.N === FRAG && m.K === FRAG);
}

export function sgmatrixFits(p: MatmulParams, c: SgmatrixConfig): boolean {
  const t = sgmatrixTile(c);
  return p.M % t.BM === 0 && p.N % t.BN === 0 && p.K % t.BK === 0;
}

/** The WGSL of the kernel; exported for the structural test (it compiles only where subgroup matrices exist). */
export function sgmatrixSource(p: Pick<MatmulParams, 'transA' | 'transB'>, c: SgmatrixConfig, subgroupSize: number): string {
  const L = `subgroup_matrix_left<f16, ${FRAG}, ${FRAG}>`;
  const Rt = `subgroup_matrix_right<f16, ${FRAG}, ${FRAG}>`;
  // Offsets of fragment (row, k) of A and (k, col) of B, and the column-major flag and stride of each load.
  const aAt = (row: string, k: string) => (p.transA ? `aOff + (${k}) * u.M + ${row}` : `aOff + (${row}) * u.K + ${k}`);
  const bAt = (col: string, k: string) => (p.transB ? `bOff + (${col}) * u.K + ${k}` : `bOff + (${k}) * u.N + ${col}`);
  const aMajor = p.transA ? 'true' : 'false';
  const bMajor = p.transB ? 'true' : 'false';
  const aStride = p.transA ? 'u.M' : 'u.K';
  const bStride = p.transB ? 'u.K' : 'u.N';
  const body: string[] = [];
  for (let s = 0; s < c.KU; s++) {
    const k = `k + ${s * FRAG}u`;
    for (let i = 0; i < c.FR; i++) body.push(`let l${s}_${i} = subgroupMatrixLoad<${L}>(&a, ${aAt(`row0 + ${i * FRAG}u`, k)}, ${aMajor}, ${aStride});`);
    for (let j = 0; j < c.FC; j++) body.push(`let r${s}_${j} = subgroupMatrixLoad<${Rt}>(&b, ${bAt(`col0 + ${j * FRAG}u`, k)}, ${bMajor}, ${bStride});`);
  }
  for (let s = 0; s < c.KU; s++) {
    for (let i = 0; i < c.FR; i++) {
      for (let j = 0; j < c.FC; j++) body.push(`acc${i}_${j} = subgroupMatrixMultiplyAccumulate(l${s}_${i}, r${s}_${j}, acc${i}_${j});`);
    }
  }
  const decl: string[] = [];
  const stores: string[] = [];
  for (let i = 0; i < c.FR; i++) {
    for (let j = 0; j < c.FC; j++) {
      decl.push(`var acc${i}_${j}: subgroup_matrix_result<f32, ${FRAG}, ${FRAG}>;`);
      stores.push(`subgroupMatrixStore(&out, outOff + (row0 + ${i * FRAG}u) * u.N + col0 + ${j * FRAG}u, acc${i}_${j}, false, u.N);`);
    }
  }
  const t = sgmatrixTile(c);
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
${MATMUL_UNIFORM}
@compute @workgroup_size(${c.SGR * c.SGC * subgroupSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) sg: u32) {
  // subgroup_id keeps the offsets subgroup-uniform, which subgroupMatrixLoad requires.
  let row0 = wid.y * ${t.BM}u + (sg / ${c.SGC}u) * ${c.FR * FRAG}u;
  let col0 = wid.x * ${t.BN}u + (sg % ${c.SGC}u) * ${c.FC * FRAG}u;
  let aOff = wid.z * u.strideA;
  let bOff = wid.z * u.strideB;
  let outOff = wid.z * u.M * u.N;
  ${decl.join('\n  ')}
  for (var k = 0u; k < u.K; k += ${t.BK}u) {
    ${body.join('\n    ')}
  }
  ${stores.join('\n  ')}
}`;
}

export function sgmatrixMatmul(p: MatmulParams, c: SgmatrixConfig, subgroupSize: number): Program {
  return {
    key: `matmul/sgmatrix/${sgmatrixConfigName(c)}/${p.transA ? 'T' : 'N'}${p.transB ? 'T' : 'N'}/sg${subgroupSize}`,
    inputs: 2, outputs: 1, uniform: true,
    source: () => sgmatrixSource(p, c, subgroupSize),
  };
}

export function sgmatrixGrid(p: MatmulParams, c: SgmatrixConfig): [number, number, number] {
  const t = sgmatrixTile(c);
  return [p.N / t.BN, p.M / t.BM, p.batch];
}
