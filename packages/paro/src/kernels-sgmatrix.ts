import { uniformStruct, vecBinding, vecLoader, vecStorer, type Capabilities, type FloatDType, type Program } from '@attnkit/tensor';
import { BLOCK } from './mask.js';
import { CHUNK } from './kernels.js';

const NEG = -1e30;
/** i8 x i8 -> i32 fragment shape used: M = N = 16 rows/columns, K = 32. */
const FM = 16;
const FK = 32;

/**
 * Whether the i8 subgroup-matrix variant can run: an i8 -> i32 16x16x32 configuration, a
 * fixed subgroup size of 32 (two subgroups per 64-invocation workgroup) and WGSL's
 * subgroup_id (keeps fragment offsets subgroup-uniform).
 */
export function sgmatrixInt8Available(caps: Capabilities, wgslFeatures: ReadonlySet<string>): boolean {
  return (
    caps.subgroupMatrixConfigs.some((c) => c.componentType === 'i8' && c.resultComponentType === 'i32' && c.M === FM && c.N === FM && c.K === FK) &&
    caps.subgroupMinSize === 32 && caps.subgroupMaxSize === 32 && wgslFeatures.has('subgroup_id') && caps.maxComputeWorkgroupStorageSize >= 24 * 1024
  );
}

/**
 * The int8 block-sparse kernel with Q.K^T on i8 subgroup matrices: per key block, the two
 * subgroups compute the 64 x 64 i32 score tile (each 32 query rows x 64 keys, fragments
 * loaded straight from storage, Q fragments kept across blocks) into workgroup memory; then
 * every invocation runs the same online softmax and f16 P.V as the plain int8 kernel over its
 * row. Needs N a multiple of 64 (fragments read whole blocks). `gathered`: as in
 * sparseProgram (Q/K int8 already in PARO order, H heads; V read and the output written
 * through `perm`).
 */
export function sparseSgmatrixProgram(dtype: FloatDType, D: number, dense: boolean, gathered = false): Program {
  // Diagnostic switch: reload the Q fragments for every key block instead of keeping them
  // across the loop's barriers (one suspect for the mismatch recorded in the benchmark JSON).
  const reloadQ = typeof process !== 'undefined' && process.env.ATTNKIT_PARO_SGM_RELOAD_Q === '1';
  const D4 = D / 4;
  const KS = D / FK;
  const C = CHUNK;
  const keys = Array.from({ length: C }, (_, c) => c);
  const slots = Array.from({ length: D4 }, (_, p) => p);
  let b = 0;
  const lines: string[] = [
    `@group(0) @binding(${b++}) var<storage, read> qb: array<i32>;`,
    `@group(0) @binding(${b++}) var<storage, read> kb: array<i32>;`,
    vecBinding(b++, 'vb', dtype, false),
    `@group(0) @binding(${b++}) var<storage, read> qscale: array<f32>;`,
    `@group(0) @binding(${b++}) var<storage, read> kscale: array<f32>;`,
  ];
  if (!dense) {
    lines.push(`@group(0) @binding(${b++}) var<storage, read> counts: array<u32>;`);
    lines.push(`@group(0) @binding(${b++}) var<storage, read> lists: array<u32>;`);
  }
  if (gathered) lines.push(`@group(0) @binding(${b++}) var<storage, read> perm: array<u32>;`);
  const inputs = b;
  lines.push(vecBinding(b++, 'ob', dtype, true));
  lines.push(`@group(0) @binding(${b++}) var<uniform> u: U;`);
  const L = `subgroup_matrix_left<i8, ${FK}, ${FM}>`;
  const R = `subgroup_matrix_right<i8, ${FM}, ${FK}>`;
  const A = `subgroup_matrix_result<i32, ${FM}, ${FM}>`;
  const qLoads: string[] = [];
  for (let r = 0; r < 2; r++) for (let s = 0; s < KS; s++) {
    qLoads.push(`  let lq${r}_${s} = subgroupMatrixLoad<${L}>(&qb, (qrow0 + sg * 32u + ${r * FM}u) * ${D}u + ${s * FK}u, false, ${D}u);`);
  }
  const tiles: string[] = [];
  for (let ct = 0; ct < BLOCK / FM; ct++) {
    tiles.push(`    {`);
    if (reloadQ) tiles.push(...qLoads.map((l) => `    ${l}`));
    for (let s = 0; s < KS; s++) {
      tiles.push(`      let r${s} = subgroupMatrixLoad<${R}>(&kb, (krow0 + ${ct * FM}u) * ${D}u + ${s * FK}u, true, ${D}u);`);
      // The first k-step starts the accumulators with a plain multiply: a bare
      // \`var acc: subgroup_matrix_result\` in a loop body had its zero-init hoisted out of the
      // loop on the H200 (scores summed across tiles), as @attnkit/attention also found.
      if (s === 0) {
        tiles.push(`      var a0 = subgroupMatrixMultiply<i32>(lq0_0, r0);`);
        tiles.push(`      var a1 = subgroupMatrixMultiply<i32>(lq1_0, r0);`);
      } else {
        tiles.push(`      a0 = subgroupMatrixMultiplyAccumulate(lq0_${s}, r${s}, a0);`);
        tiles.push(`      a1 = subgroupMatrixMultiplyAccumulate(lq1_${s}, r${s}, a1);`);
      }
    }
    tiles.push(`      subgroupMatrixStore(&S, (sg * 32u) * ${BLOCK}u + ${ct * FM}u, a0, false, ${BLOCK}u);`);
    tiles.push(`      subgroupMatrixStore(&S, (sg * 32u + ${FM}u) * ${BLOCK}u + ${ct * FM}u, a1, false, ${BLOCK}u);`);
    tiles.push(`    }`);
  }
  return {
    key: `paro/sparse/int8-sgmatrix/${dtype}/d${D}${dense ? '/dense' : ''}${gathered ? '/gathered' : ''}${reloadQ ? '/reloadq' : ''}`,
    inputs, outputs: 1, uniform: true,
    source: () => `enable subgroups;
enable chromium_experimental_subgroup_matrix;
${lines.join('\n')}
${uniformStruct('U', [['H', 'u32'], ['Hkv', 'u32'], ['N', 'u32'], ['nB', 'u32'], ['scale', 'f32']])}
${vecLoader('vb', dtype)}
${vecStorer('ob', dtype)}
var<workgroup> S: array<i32, ${BLOCK * BLOCK}>;
var<workgroup> vs: array<vec4<f32>, ${C * D4}>;

@compute @workgroup_size(${BLOCK})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32) {
  let qblk = wid.x;
  let bh = wid.z;
  let h = bh % u.H;
  let b = bh / u.H;
  let kvbh = b * u.Hkv + h / (u.H / u.Hkv);
  let qrow0 = bh * u.N + qblk * ${BLOCK}u;
  let qrow = ${gathered ? 'bh * u.N + perm[h * u.N + qblk * 64u + li]' : 'qrow0 + li'};
  let kh = ${gathered ? 'bh' : 'kvbh'};
  let qsc = qscale[bh * u.nB + qblk] * u.scale;
${reloadQ ? '' : qLoads.join('\n')}
${slots.map((p) => `  var o${p} = vec4<f32>(0.0);`).join('\n')}
  var m = ${NEG};
  var l = 0.0;
  let count = ${dense ? 'u.nB' : 'counts[h * u.nB + qblk]'};
  for (var e = 0u; e < count; e++) {
    let kblk = ${dense ? 'e' : 'lists[(h * u.nB + qblk) * u.nB + e]'};
    let f = qsc * kscale[kh * u.nB + kblk];
    let krow0 = kh * u.N + kblk * ${BLOCK}u;
    workgroupBarrier();
${tiles.join('\n')}
    for (var sub = 0u; sub < ${BLOCK}u; sub += ${C}u) {
      workgroupBarrier();
      for (var s = li; s < ${C * D4}u; s += ${BLOCK}u) {
        let vrow = ${gathered ? `kvbh * u.N + perm[h * u.N + kblk * ${BLOCK}u + sub + s / ${D4}u]` : `krow0 + sub + s / ${D4}u`};
        vs[s] = ld_vb(vrow * ${D4}u + s % ${D4}u);
      }
      workgroupBarrier();
${keys.map((c) => `      let s${c} = f32(S[li * ${BLOCK}u + sub + ${c}u]) * f;`).join('\n')}
      var mx = m;
${keys.map((c) => `      mx = max(mx, s${c});`).join('\n')}
      let alpha = exp2(m - mx);
${keys.map((c) => `      let r${c} = exp2(s${c} - mx); let p${c} = floor(r${c} * 127.0 + 0.5) * (1.0 / 127.0);`).join('\n')}
      l = l * alpha + ${keys.map((c) => `r${c}`).join(' + ')};
${slots.map((p) => `      o${p} = o${p} * alpha;`).join('\n')}
${keys.map((c) => `      ${slots.map((p) => `o${p} = fma(vec4<f32>(p${c}), vs[${c * D4 + p}u], o${p});`).join(' ')}`).join('\n')}
      m = mx;
    }
  }
  let inv = 1.0 / l;
${slots.map((p) => `  st_ob(qrow * ${D4}u + ${p}u, o${p} * inv);`).join('\n')}
}`,
  };
}

/**
 * Diagnostic: one 16x16 i32 tile C = A . B^T (A [16, 32] i8, B [16, 32] i8) stored straight
 * to storage (`direct`) and through workgroup memory (`staged`), to tell a layout mistake
 * from a workgroup-memory problem when the fused kernel disagrees with the plain path.
 */
export function sgmatrixProbeProgram(): Program {
  return {
    key: 'paro/sgmatrix-probe', inputs: 2, outputs: 2, uniform: false,
    source: () => `enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<i32>;
@group(0) @binding(1) var<storage, read> b: array<i32>;
@group(0) @binding(2) var<storage, read_write> direct: array<i32>;
@group(0) @binding(3) var<storage, read_write> staged: array<i32>;
var<workgroup> S: array<i32, 256>;
@compute @workgroup_size(32)
fn main(@builtin(local_invocation_index) li: u32) {
  let l = subgroupMatrixLoad<subgroup_matrix_left<i8, 32, 16>>(&a, 0u, false, 32u);
  let r = subgroupMatrixLoad<subgroup_matrix_right<i8, 16, 32>>(&b, 0u, true, 32u);
  var acc: subgroup_matrix_result<i32, 16, 16>;
  acc = subgroupMatrixMultiplyAccumulate(l, r, acc);
  subgroupMatrixStore(&direct, 0u, acc, false, 16u);
  subgroupMatrixStore(&S, 0u, acc, false, 16u);
  workgroupBarrier();
  for (var i = li; i < 256u; i += 32u) { staged[i] = S[i]; }
}`,
  };
}
