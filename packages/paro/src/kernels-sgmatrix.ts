import { vecBinding, vecLoader, vecStorer, type Capabilities, type FloatDType, type Program } from '@attnkit/tensor';
import { BLOCK } from './mask.js';
import { CHUNK } from './kernels.js';
import { appendSparseTail, SPARSE_UNIFORM_WGSL } from './bindings.js';

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
  const inputs = appendSparseTail(lines, b, dense, gathered, dtype);
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
${SPARSE_UNIFORM_WGSL}
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

/** f16 x f16 -> f32 fragment shape used for P.V: 16 x 16 x 16. */
const PV_K = 16;

/**
 * f32 words added to each row of the P.V tile in workgroup memory: 4 makes each lane's
 * vec4 row reads conflict-free; 0 is the fallback if a padded subgroup-matrix store stride
 * is refused. The H200 probe measures both.
 */
let pvPad = 4;
/**
 * Which 'sgmatrix-pv' layout runs: 'rows16' (sparseSgmatrixPV16Program, one subgroup per
 * 16 query rows) or 'rows64' (sparseSgmatrixPVProgram, two subgroups per 64-query block).
 */
export type SgmatrixPVLayout = 'rows16' | 'rows64';
let pvLayout: SgmatrixPVLayout = 'rows16';
export function configureSgmatrixPV(opts: { pad?: 0 | 4; layout?: SgmatrixPVLayout }): void {
  if (opts.pad !== undefined) pvPad = opts.pad;
  if (opts.layout !== undefined) pvLayout = opts.layout;
}
export function sgmatrixPVLayout(): SgmatrixPVLayout {
  return pvLayout;
}

/** Workgroup bytes of the P.V variant: S (i32), P (f16), and the P.V tile (f32, padded rows). */
export function sgmatrixPVBytes(D: number): number {
  return BLOCK * BLOCK * 4 + BLOCK * BLOCK * 2 + BLOCK * (D + 4) * 4;
}

/**
 * Whether the variant with both products on subgroup matrices can run: the i8 path's needs,
 * f16 shaders, an f16 -> f32 16x16x16 configuration, and workgroup memory for its tiles.
 */
export function sgmatrixPVAvailable(caps: Capabilities, wgslFeatures: ReadonlySet<string>, D: number): boolean {
  return (
    sgmatrixInt8Available(caps, wgslFeatures) && caps.shaderF16 && D % 32 === 0 &&
    caps.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === PV_K && c.N === PV_K && c.K === PV_K) &&
    caps.maxComputeWorkgroupStorageSize >= sgmatrixPVBytes(D)
  );
}

/** The operand bindings both P·V-on-subgroup-matrices layouts open with: int8 Q and K, f16 V, Q and K block scales. */
const PV_HEAD = [
  '@group(0) @binding(0) var<storage, read> qb: array<i32>;',
  '@group(0) @binding(1) var<storage, read> kb: array<i32>;',
  '@group(0) @binding(2) var<storage, read> vb: array<f16>;',
  '@group(0) @binding(3) var<storage, read> qscale: array<f32>;',
  '@group(0) @binding(4) var<storage, read> kscale: array<f32>;',
] as const;

/**
 * The int8 block-sparse kernel with Q.K^T on i8 subgroup matrices and P.V on f16 ones. Per
 * key block: the two subgroups write the 64 x 64 i32 scores to workgroup memory; each
 * invocation takes its row's block max, rescales its running sum, and writes P as the
 * integers round(127 p) in f16 (exact: P.V then differs from the plain kernel's f32
 * products only in summation order); the subgroups multiply P by V fragments loaded from
 * storage (V must be f16 and contiguous in the permuted order: `vb` holds H heads when
 * `gathered`) into a 64 x D f32 tile, which each invocation folds into its row of O
 * (O = O * alpha + tile) in registers. The plain kernel's 64 x D scalar FMAs per row and
 * block become D reads. The block max replaces the plain kernel's per-16-key running
 * max, so P's rounding can differ from it by one step of 1/127 now and then.
 */
export function sparseSgmatrixPVProgram(D: number, dense: boolean, gathered: boolean): Program {
  const D4 = D / 4;
  const KS = D / FK;
  const DS = D + pvPad;
  const slots = Array.from({ length: D4 }, (_, p) => p);
  const lines = [...PV_HEAD];
  const inputs = appendSparseTail(lines, PV_HEAD.length, dense, gathered, 'f16');
  const L = `subgroup_matrix_left<i8, ${FK}, ${FM}>`;
  const R = `subgroup_matrix_right<i8, ${FM}, ${FK}>`;
  const PL = `subgroup_matrix_left<f16, ${PV_K}, ${PV_K}>`;
  const VR = `subgroup_matrix_right<f16, ${PV_K}, ${PV_K}>`;
  const body: string[] = [];
  for (let r = 0; r < 2; r++) for (let s = 0; s < KS; s++) {
    body.push(`  let lq${r}_${s} = subgroupMatrixLoad<${L}>(&qb, (qrow0 + sg * 32u + ${r * FM}u) * ${D}u + ${s * FK}u, false, ${D}u);`);
  }
  const qkTiles: string[] = [];
  for (let ct = 0; ct < BLOCK / FM; ct++) {
    qkTiles.push(...chainTile(KS, 'r', (k) => `subgroupMatrixLoad<${R}>(&kb, (krow0 + ${ct * FM}u) * ${D}u + ${k * FK}u, true, ${D}u)`,
      (rb, k) => `lq${rb}_${k}`, ['a0', 'a1'], 'i32', (rb) => `&S, (sg * 32u${rb ? ` + ${FM}u` : ''}) * ${BLOCK}u + ${ct * FM}u`, `${BLOCK}u`));
  }
  const pvTiles: string[] = [];
  for (let rt = 0; rt < 2; rt++) {
    for (let s = 0; s < BLOCK / PV_K; s++) pvTiles.push(`    let p${rt}_${s} = subgroupMatrixLoad<${PL}>(&P, (sg * 32u + ${rt * PV_K}u) * ${BLOCK}u + ${s * PV_K}u, false, ${BLOCK}u);`);
  }
  for (let ct = 0; ct < D / PV_K; ct++) {
    pvTiles.push(...chainTile(BLOCK / PV_K, 'v', (k) => `subgroupMatrixLoad<${VR}>(&vb, (vrow0 + ${k * PV_K}u) * ${D}u + ${ct * PV_K}u, false, ${D}u)`,
      (rb, k) => `p${rb}_${k}`, ['c0', 'c1'], 'f32', (rb) => `&PV, (sg * 32u${rb ? ` + ${PV_K}u` : ''}) * ${DS}u + ${ct * PV_K}u`, `${DS}u`));
  }
  return {
    key: `paro/sparse/int8-sgmatrix-pv/d${D}/pad${pvPad}${dense ? '/dense' : ''}${gathered ? '/gathered' : ''}`,
    inputs, outputs: 1, uniform: true,
    source: () => `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
${lines.join('\n')}
${SPARSE_UNIFORM_WGSL}
${vecStorer('ob', 'f16')}
var<workgroup> S: array<i32, ${BLOCK * BLOCK}>;
var<workgroup> P: array<f16, ${BLOCK * BLOCK}>;
var<workgroup> PV: array<f32, ${BLOCK * DS}>;

@compute @workgroup_size(${BLOCK})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32) {
  let qblk = wid.x;
  let bh = wid.z;
  let h = bh % u.H;
  let b = bh / u.H;
  let kvbh = b * u.Hkv + h / (u.H / u.Hkv);
  let kh = ${gathered ? 'bh' : 'kvbh'};
  let qrow0 = bh * u.N + qblk * ${BLOCK}u;
  let qrow = ${gathered ? `bh * u.N + perm[h * u.N + qblk * ${BLOCK}u + li]` : 'qrow0 + li'};
  let qsc = qscale[bh * u.nB + qblk] * u.scale;
${body.join('\n')}
${slots.map((p) => `  var o${p} = vec4<f32>(0.0);`).join('\n')}
  var m = ${NEG};
  var l = 0.0;
  let count = ${dense ? 'u.nB' : 'counts[h * u.nB + qblk]'};
  for (var e = 0u; e < count; e++) {
    let kblk = ${dense ? 'e' : `lists[(h * u.nB + qblk) * u.nB + e]`};
    let f = qsc * kscale[kh * u.nB + kblk];
    let krow0 = kh * u.N + kblk * ${BLOCK}u;
    let vrow0 = kh * u.N + kblk * ${BLOCK}u;
    workgroupBarrier();
${qkTiles.join('\n')}
    workgroupBarrier();
    // Columns visited from a per-row rotation so the 32 lanes hit 32 different banks.
    var mx = m;
    for (var c = 0u; c < ${BLOCK}u; c++) { mx = max(mx, f32(S[li * ${BLOCK}u + ((c + li) & ${BLOCK - 1}u)]) * f); }
    let alpha = exp2(m - mx);
    var rs = 0.0;
    for (var c = 0u; c < ${BLOCK}u; c++) {
      let j = li * ${BLOCK}u + ((c + li) & ${BLOCK - 1}u);
      let r = exp2(f32(S[j]) * f - mx);
      rs += r;
      P[j] = f16(floor(r * 127.0 + 0.5));
    }
    l = l * alpha + rs;
    m = mx;
    workgroupBarrier();
${pvTiles.join('\n')}
    workgroupBarrier();
${slots.map((p) => `    o${p} = fma(o${p}, vec4<f32>(alpha), vec4<f32>(PV[li * ${DS}u + ${4 * p}u], PV[li * ${DS}u + ${4 * p + 1}u], PV[li * ${DS}u + ${4 * p + 2}u], PV[li * ${DS}u + ${4 * p + 3}u]));`).join('\n')}
  }
  let inv = 1.0 / (127.0 * l);
${slots.map((p) => `  st_ob(qrow * ${D4}u + ${p}u, o${p} * inv);`).join('\n')}
}`,
  };
}

/**
 * 'sgmatrix-pv' laid out for occupancy: one subgroup per workgroup owning 16 query rows
 * (four workgroups share a 64-query block and its mask list), so its workgroup memory is
 * ~11 KB instead of ~41 KB and its barriers are subgroup-wide. Q.K: one i8 row fragment
 * against four key fragments; softmax: two lanes per row, each over 32 columns, combined
 * with subgroupShuffleXor; P.V: 16 f16 products into four f32 result fragments; each lane
 * then folds half of its row (every other vec4, which keeps the reads conflict-free) into
 * O in registers. Same arithmetic as sparseSgmatrixPVProgram.
 */
export function sparseSgmatrixPV16Program(D: number, dense: boolean, gathered: boolean): Program {
  const D4 = D / 4;
  const KS = D / FK;
  const DS = D + 8;
  const R = 16; // query rows per workgroup
  const mine = Array.from({ length: D4 / 2 }, (_, j) => j); // this lane's vec4 slots: 2j + half
  const lines = [...PV_HEAD];
  const inputs = appendSparseTail(lines, PV_HEAD.length, dense, gathered, 'f16');
  const L = `subgroup_matrix_left<i8, ${FK}, ${FM}>`;
  const RT = `subgroup_matrix_right<i8, ${FM}, ${FK}>`;
  const PL = `subgroup_matrix_left<f16, ${PV_K}, ${PV_K}>`;
  const VR = `subgroup_matrix_right<f16, ${PV_K}, ${PV_K}>`;
  const qLoads = Array.from({ length: KS }, (_, s) => `  let lq${s} = subgroupMatrixLoad<${L}>(&qb, qrow0 * ${D}u + ${s * FK}u, false, ${D}u);`);
  const qk: string[] = [];
  for (let ct = 0; ct < BLOCK / FM; ct++) {
    qk.push(...chainTile(KS, 'r', (k) => `subgroupMatrixLoad<${RT}>(&kb, (krow0 + ${ct * FM}u) * ${D}u + ${k * FK}u, true, ${D}u)`,
      (_rb, k) => `lq${k}`, ['a'], 'i32', () => `&S, ${ct * FM}u`, `${BLOCK}u`));
  }
  const pv: string[] = [];
  for (let s = 0; s < BLOCK / PV_K; s++) pv.push(`    let p${s} = subgroupMatrixLoad<${PL}>(&P, ${s * PV_K}u, false, ${BLOCK}u);`);
  for (let ct = 0; ct < D / PV_K; ct++) {
    pv.push(...chainTile(BLOCK / PV_K, 'v', (k) => `subgroupMatrixLoad<${VR}>(&vb, (vrow0 + ${k * PV_K}u) * ${D}u + ${ct * PV_K}u, false, ${D}u)`,
      (_rb, k) => `p${k}`, ['c'], 'f32', () => `&PV, ${ct * PV_K}u`, `${DS}u`));
  }
  const pvAt = (j: number) => `row * ${DS}u + ${8 * j}u + 4u * hf`;
  return {
    key: `paro/sparse/int8-sgmatrix-pv16/d${D}${dense ? '/dense' : ''}${gathered ? '/gathered' : ''}`,
    inputs, outputs: 1, uniform: true,
    source: () => `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
${lines.join('\n')}
${SPARSE_UNIFORM_WGSL}
${vecStorer('ob', 'f16')}
var<workgroup> S: array<i32, ${R * BLOCK}>;
var<workgroup> P: array<f16, ${R * BLOCK}>;
var<workgroup> PV: array<f32, ${R * DS}>;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let qblk = wid.x / 4u;
  let part = wid.x % 4u;
  let bh = wid.z;
  let h = bh % u.H;
  let b = bh / u.H;
  let kvbh = b * u.Hkv + h / (u.H / u.Hkv);
  let kh = ${gathered ? 'bh' : 'kvbh'};
  let row = li / 2u;
  let hf = li % 2u;
  let n0 = qblk * ${BLOCK}u + part * ${R}u;
  let qrow0 = bh * u.N + n0;
  let qrow = ${gathered ? 'bh * u.N + perm[h * u.N + n0 + row]' : 'qrow0 + row'};
  let qsc = qscale[bh * u.nB + qblk] * u.scale;
${qLoads.join('\n')}
${mine.map((j) => `  var o${j} = vec4<f32>(0.0);`).join('\n')}
  var m = ${NEG};
  var l = 0.0;
  let count = ${dense ? 'u.nB' : 'counts[h * u.nB + qblk]'};
  for (var e = 0u; e < count; e++) {
    let kblk = ${dense ? 'e' : 'lists[(h * u.nB + qblk) * u.nB + e]'};
    let f = qsc * kscale[kh * u.nB + kblk];
    let krow0 = kh * u.N + kblk * ${BLOCK}u;
    let vrow0 = krow0;
${qk.join('\n')}
    workgroupBarrier();
    // Lane li reads column hf*32 + (c + li) % 32 of its row: 32 lanes, 32 banks.
    let base = row * ${BLOCK}u + hf * 32u;
    var mx = m;
    for (var c = 0u; c < 32u; c++) { mx = max(mx, f32(S[base + ((c + li) & 31u)]) * f); }
    mx = max(mx, subgroupShuffleXor(mx, 1u));
    let alpha = exp2(m - mx);
    var rs = 0.0;
    for (var c = 0u; c < 32u; c++) {
      let j = base + ((c + li) & 31u);
      let r = exp2(f32(S[j]) * f - mx);
      rs += r;
      P[j] = f16(floor(r * 127.0 + 0.5));
    }
    rs += subgroupShuffleXor(rs, 1u);
    l = l * alpha + rs;
    m = mx;
    workgroupBarrier();
${pv.join('\n')}
    workgroupBarrier();
${mine.map((j) => `    o${j} = fma(o${j}, vec4<f32>(alpha), vec4<f32>(PV[${pvAt(j)}], PV[${pvAt(j)} + 1u], PV[${pvAt(j)} + 2u], PV[${pvAt(j)} + 3u]));`).join('\n')}
  }
  let inv = 1.0 / (127.0 * l);
${mine.map((j) => `  st_ob(qrow * ${D4}u + ${2 * j}u + hf, o${j} * inv);`).join('\n')}
}`,
  };
}

/**
 * One output tile of a subgroup's row blocks: `steps` right fragments (`right(k)`, named
 * `${rv}k`), each feeding every row block's chain (accumulators `accs[rb]`, left operands
 * `left(rb, k)`), then each result stored at `dst(rb)` with row stride `stride`.
 */
function chainTile(steps: number, rv: string, right: (k: number) => string, left: (rb: number, k: number) => string, accs: string[], type: string, dst: (rb: number) => string, stride: string): string[] {
  const lines = ['    {'];
  for (let k = 0; k < steps; k++) {
    lines.push(`      let ${rv}${k} = ${right(k)};`);
    accs.forEach((acc, rb) => lines.push(k === 0
      ? `      var ${acc} = subgroupMatrixMultiply<${type}>(${left(rb, 0)}, ${rv}0);`
      : `      ${acc} = subgroupMatrixMultiplyAccumulate(${left(rb, k)}, ${rv}${k}, ${acc});`));
  }
  accs.forEach((acc, rb) => lines.push(`      subgroupMatrixStore(${dst(rb)}, ${acc}, false, ${stride});`));
  lines.push('    }');
  return lines;
}
