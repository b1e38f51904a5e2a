import { gridFor, LimitError, type Capabilities, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import { packKernelUniforms } from './kernel.js';
import { paddedAxes, type Problem } from './options.js';
import { sgSharedLayout, sgSharedSource } from './sgshared.js';
import { sgStackedSource } from './sgstacked.js';
import { SG_HEADER_WGSL, sgEntryWgsl } from './sg-header.js';
import { WINDOW3_WGSL } from './window-wgsl.js';

/**
 * Neighborhood attention on subgroup matrices (tensor cores), f16 in, f32 softmax.
 *
 * One subgroup owns a *subtile* of 16 queries (e.g. 4x4 in 2-D, 2x2x4 in 3-D, inside one
 * dilation group). Because window starts move by at most one key per query, the subtile's
 * keys fit in a box of (t + k - 1) keys per axis, and the last axis is rounded up to 16-key
 * rows that lie contiguous in memory (stride = dilation x D), which is exactly what a
 * subgroup-matrix load wants. The box is placed at the first query's window start, pulled
 * inward so it never leaves the group; then *every* subtile has the same box size, so all
 * loops have compile-time trip counts and every barrier sits in uniform control flow, even
 * with several subgroups per workgroup.
 *
 * Per chunk of CB key blocks (16 keys each): S = Q·Kᵀ (K fragments straight from storage,
 * column-major view of K's rows) goes to workgroup memory; the subgroup walks S row by
 * row with its 32 lanes across the columns (no bank conflicts), applies the box mask of
 * that row's query, keeps the online softmax state of row r in lane r, and writes P as f16;
 * then O += P·V with the O fragments held in registers. When a chunk raises a row's max
 * the O fragments take one round trip through workgroup memory to be rescaled (result
 * fragments have no per-row access). 2-D 13x13 with 4x4 subtiles is 16 rows of 16 keys =
 * 256 keys, one chunk: no rescale at all.
 *
 * sDtype 'f32' accumulates S in f32 (separate f16 P array); 'f16' accumulates QKᵀ in f16
 * and writes P over S in place (half the workgroup memory, less precise logits). On the
 * H200 the smaller footprint won clearly (more subgroups resident per SM): 1.37 ms against
 * 2.5 ms at 128x128, 13x13, H8 D64, with max |err| 3.4e-4 against the float64 definition.
 * `pad` spreads a fragment's 16 rows over the banks (16 extra bytes per workgroup row); it
 * measured slower on the H200 (1.19 vs 0.96 ms), so the library runs unpadded. Variants
 * that lost there too: sgstacked.ts (two or four subtiles per subgroup sharing fragment
 * loads) and sgshared.ts (K/V staged once per workgroup for stacked subtiles).
 */
export interface SgConfig {
  /** Queries per subgroup per axis (axes padded to three in front); product 16. */
  sub: [number, number, number];
  /** Key blocks (16 keys) per chunk. */
  chunkBlocks: number;
  /** Subgroups per workgroup. */
  subgroups: number;
  sDtype: 'f32' | 'f16';
  /**
   * 'f16' accumulates O = P·V in f16 with P already divided by the row sum (one chunk only):
   * O then needs no f32 staging, the smallest workgroup footprint. Default 'f32'.
   */
  oDtype?: 'f32' | 'f16';
  /**
   * Emit the per-chunk block loops straight-line, each block's K (or P and V) fragments
   * loaded one block ahead of the MMAs that use them, so the loads overlap.
   */
  unroll?: boolean;
  /**
   * Pad every workgroup-memory row (S, P, Q, O) by 16 bytes so the 16 rows of a fragment
   * fall in different banks (default true here; the library's configuration sets false,
   * which timed faster on the H200).
   */
  pad?: boolean;
  /**
   * The workgroup's subgroups take subtiles stacked along axis 1 and share K/V through
   * workgroup memory, `stageBlocks` 16-key blocks at a time (sgshared.ts; f16 S, one chunk).
   */
  share?: boolean;
  stageBlocks?: number;
  /**
   * Probe-only ablations (wrong results, for timing the phases): drop S = Q·Kᵀ, the
   * softmax pass, O += P·V, or all three ('io': staging and output only).
   */
  ablate?: 'nos' | 'nosoftmax' | 'nopv' | 'io';
  /** Emit the softmax's 16-row loop straight-line so rows can overlap. */
  unrollRows?: boolean;
  /** Subtiles per subgroup stacked along axis 1 sharing K/V fragment loads (1, 2, or 4 with f16 O; sgstacked.ts). */
  stack?: number;
}

export interface SgShape {
  D: number;
  /** Window per axis (padded to three). */
  k: [number, number, number];
}

const FRAG = 16;

/**
 * The configuration the library runs per rank where the adapter has f16 subgroup matrices
 * in order of preference, the first that takes the problem wins (chosen from the H200 sweep,
 * benchmarks/gpu/probes/na-sweep.ts). Rank 1 stays on the plain kernel until it has been measured.
 */
export const SG_DEFAULTS: Partial<Record<1 | 2 | 3, SgConfig[]>> = {
  // H200, round-robin timing in one process (session 8, na-sweep r1, buffer pool on): f16 O
  // 0.421 ms, f32 O 0.515 ms, plain kernel 1.047 ms (max |err| vs the float64 definition
  // 5.1e-4 and 3.4e-4; the output is f16 either way, and P is normalised before P·V so O
  // is a convex combination of V rows). f16 O needs the box in one chunk (13x13 with 4x4
  // subtiles is one); larger boxes take the f32-O kernel and its online rescale.
  2: [
    { sub: [1, 4, 4], chunkBlocks: 16, subgroups: 1, sDtype: 'f16', oDtype: 'f16', pad: false },
    { sub: [1, 4, 4], chunkBlocks: 16, subgroups: 1, sDtype: 'f16', oDtype: 'f32', pad: false },
  ],
  // 3-D 16x32x32, 7x7x7, same run: 2x2x4 subtiles, two subgroups, 8-block chunks 1.654 ms
  // against 2.041 ms for the plain kernel (max |err| 3.2e-4 vs the definition; 1x2x8 and
  // one-subgroup variants 1.66-1.69 ms). Before the buffer pool the per-call output
  // allocation hid the difference (every sg variant was within 5% of the plain kernel).
  3: [{ sub: [2, 2, 4], chunkBlocks: 8, subgroups: 2, sDtype: 'f16', oDtype: 'f32', pad: false }],
};

/**
 * On: the kernel matched the CPU definition (max |err| 3.4e-4 in f16, borders, dilation,
 * causal, GQA, batch, multi-chunk) and the plain kernel on the H200. ATTNKIT_NA_SG=0 turns
 * it off (the plain kernel runs everywhere), =1 forces it on.
 */
const SG_BY_DEFAULT = true;

/**
 * The subgroup-matrix configuration for this problem, or null when the plain kernel runs
 * (no default for the rank, the adapter or problem does not fit, or ATTNKIT_NA_SG=0).
 */
export function sgConfigFor(be: WebGpuBackend, p: Problem, rank: number): SgConfig | null {
  const env = typeof process !== 'undefined' ? process.env.ATTNKIT_NA_SG : undefined;
  if (env === '0' || (env !== '1' && !SG_BY_DEFAULT)) return null;
  // The first candidate that takes this problem.
  return (SG_DEFAULTS[rank as 1 | 2 | 3] ?? []).find((cfg) => sgUnsupported(be, p, cfg) === '') ?? null;
}

export function hasF16SubgroupMatrix(caps: Capabilities): boolean {
  return caps.shaderF16 && caps.subgroups && caps.subgroupMinSize === caps.subgroupMaxSize && caps.subgroupMaxSize === 32 &&
    caps.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16);
}

/** Key box per subtile: rows over the two leading axes, 16-key blocks along the last. */
export function sgBox(cfg: SgConfig, s: SgShape): { span: [number, number, number]; rows: number; bz: number; blocks: number; chunks: number; width: number } {
  const span0 = cfg.sub[0] + s.k[0] - 1;
  const span1 = cfg.sub[1] + s.k[1] - 1;
  const bz = Math.ceil((cfg.sub[2] + s.k[2] - 1) / FRAG);
  const rows = span0 * span1;
  const blocks = rows * bz;
  const cb = Math.min(cfg.chunkBlocks, blocks);
  return { span: [span0, span1, bz * FRAG], rows, bz, blocks, chunks: Math.ceil(blocks / cb), width: cb * FRAG };
}

/** Workgroup-memory layout of one subgroup's slice: row strides (elements) and slice sizes. */
export interface SgLayout {
  /** S row stride (in S's element type), P row stride (f16), staged Q row stride (f16), staged O row stride */
  SR: number; PR: number; QR: number; OR: number;
  /** per-subgroup slice of ss (S), of the f16 array (P, Q; O with f16 O) and of os (f32 O, f16 S only) */
  ssPer: number; hsPer: number; osPer: number;
  bytes: number;
}

export function sgLayout(cfg: SgConfig, s: SgShape): SgLayout {
  const { width: W } = sgBox(cfg, s);
  const pad = cfg.pad ?? true;
  const f32S = cfg.sDtype === 'f32';
  const oF16 = cfg.oDtype === 'f16';
  const SR = W + (pad ? (f32S ? 4 : 8) : 0);
  const QR = s.D + (pad ? 8 : 0);
  // O is staged in f32 unless it is accumulated in f16.
  const OR = s.D + (pad ? (oF16 ? 8 : 4) : 0);
  if (f32S) {
    const PR = W + (pad ? 8 : 0);
    const ssPer = Math.max(16 * SR, oF16 ? 0 : 16 * OR);
    const hsPer = Math.max(16 * PR, 16 * QR, oF16 ? 16 * OR : 0);
    return { SR, PR, QR, OR, ssPer, hsPer, osPer: oF16 ? hsPer : ssPer, bytes: cfg.subgroups * (ssPer * 4 + hsPer * 2) };
  }
  const ssPer = Math.max(16 * SR, 16 * QR, oF16 ? 16 * OR : 0);
  const osPer = oF16 ? ssPer : 16 * OR;
  return { SR, PR: SR, QR, OR, ssPer, hsPer: ssPer, osPer, bytes: cfg.subgroups * (ssPer * 2 + (oF16 ? 0 : osPer * 4)) };
}

export function sgWorkgroupBytes(cfg: SgConfig, s: SgShape): number {
  if (cfg.share) return sgSharedLayout(cfg, s).bytes;
  if ((cfg.stack ?? 1) > 1) {
    const { width } = sgBox(cfg, s);
    const perSg = cfg.sDtype === 'f32'
      ? 16 * Math.max(width, s.D) * 4 + 16 * Math.max(width, s.D) * 2
      : 16 * Math.max(width, s.D) * 2 + (cfg.oDtype === 'f16' ? 0 : 16 * s.D * 4);
    return perSg * cfg.subgroups * (cfg.stack ?? 1);
  }
  return sgLayout(cfg, s).bytes;
}

/** Why this problem cannot take the subgroup-matrix kernel ('' when it can). */
export function sgUnsupported(be: WebGpuBackend, p: Problem, cfg: SgConfig): string {
  const { L, k, d } = paddedAxes(p);
  const s: SgShape = { D: p.headDim, k: [k[0]!, k[1]!, k[2]!] };
  if (!hasF16SubgroupMatrix(be.caps)) return 'no f16 16x16x16 subgroup matrices with a fixed subgroup size of 32';
  if (p.dtype !== 'f16') return 'needs f16 inputs';
  if (p.headDim % FRAG !== 0 || p.headDim > 256) return 'needs a head dim that is a multiple of 16 (at most 256)';
  if (cfg.sub[0] * cfg.sub[1] * cfg.sub[2] !== 16) return 'subtile must hold 16 queries';
  const { span, chunks } = sgBox(cfg, s);
  const stack = cfg.stack ?? 1;
  if (![1, 2, 4].includes(stack)) return 'stack must be 1, 2 or 4';
  if (stack > 2 && cfg.oDtype !== 'f16') return 'more than 2 stacked subtiles need f16 O';
  if (stack > 1 && chunks !== 1) return 'stacked subtiles need the key box in one chunk';
  if (cfg.oDtype === 'f16' && chunks !== 1) return 'f16 O needs the key box in one chunk';
  if (cfg.share && (chunks !== 1 || stack !== 1 || cfg.sDtype !== 'f16')) return 'shared K/V needs f16 S, the key box in one chunk and no stacking';
  for (let a = 0; a < 3; a++) {
    // The shortest dilation group must hold the whole key box.
    if (Math.floor(L[a]! / d[a]!) < span[a]!) return `axis ${a}: a dilation group is shorter than the ${span[a]}-key box`;
  }
  if (sgWorkgroupBytes(cfg, s) > be.caps.maxComputeWorkgroupStorageSize) return `needs ${sgWorkgroupBytes(cfg, s)} bytes of workgroup memory`;
  return '';
}

export function sgSource(cfg: SgConfig, s: SgShape): string {
  const { D } = s;
  const NF = D / FRAG;
  const NSG = cfg.subgroups;
  const [t0, t1, t2] = cfg.sub;
  const box = sgBox(cfg, s);
  const CB = box.width / FRAG;
  const W = box.width;
  const f32S = cfg.sDtype === 'f32';
  const lay = sgLayout(cfg, s);
  const { SR, PR, QR, OR } = lay;
  const L = `subgroup_matrix_left<f16, 16, 16>`;
  const R = `subgroup_matrix_right<f16, 16, 16>`;
  const oF16 = cfg.oDtype === 'f16';
  if (oF16 && box.chunks !== 1) throw new Error('sgSource: f16 O needs one chunk');
  const A = `subgroup_matrix_result<${oF16 ? 'f16' : 'f32'}, 16, 16>`;
  const perLane = W / 32;
  // S lives in `ss`; P in `hs` (f32 S) or over S (f16 S); Q is staged in the f16 array once.
  const hsName = f32S ? 'hs' : 'ss';
  // O's final staging: the f32 S array (f32 S), a separate f32 array (f16 S), or the f16 P array (f16 O).
  const osName = oF16 ? hsName : f32S ? 'ss' : 'os';
  const decls = f32S
    ? `var<workgroup> ss: array<f32, ${NSG * lay.ssPer}>;\nvar<workgroup> hs: array<f16, ${NSG * lay.hsPer}>;`
    : `var<workgroup> ss: array<f16, ${NSG * lay.ssPer}>;${oF16 ? '' : `\nvar<workgroup> os: array<f32, ${NSG * lay.osPer}>;`}`;

  const softmaxCols = Array.from({ length: perLane }, (_, j) => j);
  const fs = Array.from({ length: NF }, (_, f) => f);
  const krowOf = (j: string, name: string) => `let kp${name} = boxLo + kpos(ch, ${j} * 16u);
      let y${name} = g + dd * vec3<u32>(kp${name});
      let krow${name} = kvBase + (y${name}.x * Lv.y + y${name}.y) * Lv.z + y${name}.z;`;
  let sPhase: string;
  let pvPhase: string;
  if (!cfg.unroll) {
    sPhase = `    for (var j = 0u; j < ${CB}u; j++) {
      let kp = boxLo + kpos(ch, j * 16u);
      let y = g + dd * vec3<u32>(kp);
      let krow = kvBase + (y.x * Lv.y + y.y) * Lv.z + y.z;
      var acc = subgroupMatrixMultiply<${cfg.sDtype}>(qf[0], subgroupMatrixLoad<${R}>(&kb, krow * ${D}u, true, kstride));
      for (var f = 1u; f < ${NF}u; f++) {
        acc = subgroupMatrixMultiplyAccumulate(qf[f], subgroupMatrixLoad<${R}>(&kb, krow * ${D}u + f * 16u, true, kstride), acc);
      }
      subgroupMatrixStore(&ss, sBase + j * 16u, acc, false, ${SR}u);
    }`;
    pvPhase = `    for (var j = 0u; j < ${CB}u; j++) {
      let kp = boxLo + kpos(ch, j * 16u);
      let y = g + dd * vec3<u32>(kp);
      let krow = kvBase + (y.x * Lv.y + y.y) * Lv.z + y.z;
      let pf = subgroupMatrixLoad<${L}>(&${hsName}, hBase + j * 16u, false, ${PR}u);
${Array.from({ length: NF }, (_, f) => `      o${f} = subgroupMatrixMultiplyAccumulate(pf, subgroupMatrixLoad<${R}>(&vb, krow * ${D}u + ${f * 16}u, false, kstride), o${f});`).join('\n')}
    }`;
  } else {
    const s1: string[] = [];
    const p1: string[] = [];
    const kLoad = (j: number) => `      ${krowOf(`${j}u`, `_${j}`)}
${fs.map((f) => `      let kf${j}_${f} = subgroupMatrixLoad<${R}>(&kb, krow_${j} * ${D}u + ${f * 16}u, true, kstride);`).join('\n')}`;
    const vLoad = (j: number) => `      ${krowOf(`${j}u`, `v_${j}`)}
      let pf${j} = subgroupMatrixLoad<${L}>(&${hsName}, hBase + ${j * 16}u, false, ${PR}u);
${fs.map((f) => `      let vf${j}_${f} = subgroupMatrixLoad<${R}>(&vb, krowv_${j} * ${D}u + ${f * 16}u, false, kstride);`).join('\n')}`;
    s1.push(kLoad(0));
    p1.push(vLoad(0));
    for (let j = 0; j < CB; j++) {
      if (j + 1 < CB) { s1.push(kLoad(j + 1)); p1.push(vLoad(j + 1)); }
      s1.push(`      {
        var acc = subgroupMatrixMultiply<${cfg.sDtype}>(qf[0], kf${j}_0);
${fs.slice(1).map((f) => `        acc = subgroupMatrixMultiplyAccumulate(qf[${f}], kf${j}_${f}, acc);`).join('\n')}
        subgroupMatrixStore(&ss, sBase + ${j * 16}u, acc, false, ${SR}u);
      }`);
      p1.push(fs.map((f) => `      o${f} = subgroupMatrixMultiplyAccumulate(pf${j}, vf${j}_${f}, o${f});`).join('\n'));
    }
    sPhase = s1.join('\n');
    pvPhase = p1.join('\n');
  }
  const rowBody = `      let iq = min(tileStart + qpos(r), lg - vec3<i32>(1));
      let lo = ws3(iq, lg, kk, cz) - boxLo;
      let hi = we3(iq, lg, kk, cz) - boxLo;
      var mloc = NEG;
${softmaxCols.map((j) => `      let c${j} = ${j * 32}u + lane;
      let k${j} = kpos(ch, c${j});
      let ok${j} = ch * ${CB}u + c${j} / 16u < ${box.blocks}u && all(k${j} >= lo) && all(k${j} <= hi);
      let s${j} = select(NEG, f32(ss[sBase + r * ${SR}u + c${j}]) * u.scale, ok${j});
      mloc = max(mloc, s${j});`).join('\n')}
      let mold = subgroupShuffle(mrow, r);
      let mn = max(mold, subgroupMax(mloc));
      let alpha = exp2(mold - mn);
      var psum = 0.0;
${softmaxCols.map((j) => `      let p${j} = select(0.0, exp2(s${j} - mn), ok${j});
      psum += p${j};${oF16 ? '' : `
      ${hsName}[hBase + r * ${PR}u + c${j}] = f16(p${j});`}`).join('\n')}
      let lsum = subgroupAdd(psum);${oF16 ? `
      // One chunk: the row sum is final, so P is normalized here and O needs no rescale.
      let inv = 1.0 / lsum;
${softmaxCols.map((j) => `      ${hsName}[hBase + r * ${PR}u + c${j}] = f16(p${j} * inv);`).join('\n')}` : ''}
      if (lane == r) {
        mrow = mn;
        lrow = ${oF16 ? '1.0' : 'lrow * alpha + lsum'};
        arow = alpha;
      }
`;
  let softmaxPhase = cfg.unrollRows
    ? Array.from({ length: 16 }, (_, r) => `    {\n      let r = ${r}u;\n${rowBody}    }`).join('\n')
    : `    for (var r = 0u; r < 16u; r++) {\n${rowBody}    }`;
  const ab = cfg.ablate;
  if (ab === 'nos' || ab === 'io') sPhase = '';
  if (ab === 'nosoftmax' || ab === 'io') softmaxPhase = '';
  if (ab === 'nopv' || ab === 'io') pvPhase = '';
  return `${SG_HEADER_WGSL}
${decls}

const NEG = -1e30;

${WINDOW3_WGSL}
// In-subtile coordinates of query row r.
fn qpos(r: u32) -> vec3<i32> {
  return vec3<i32>(i32(r / ${t1 * t2}u), i32((r / ${t2}u) % ${t1}u), i32(r % ${t2}u));
}
// In-box coordinates of key column c of chunk ch.
fn kpos(ch: u32, c: u32) -> vec3<i32> {
  let blk = min(ch * ${CB}u + c / 16u, ${box.blocks - 1}u);
  let row = blk / ${box.bz}u;
  return vec3<i32>(i32(row / ${box.span[1]}u), i32(row % ${box.span[1]}u), i32((blk % ${box.bz}u) * 16u + c % 16u));
}

${sgEntryWgsl(NSG * 32, 'St', `(wid.x + wid.y * nwg.x) * ${NSG}u + sg`)}
  let tileStart = vec3<i32>((ta % tpg) * vec3<u32>(${t0}u, ${t1}u, ${t2}u));
  let lg = vec3<i32>(group_len(Lv.x, dd.x, g.x), group_len(Lv.y, dd.y, g.y), group_len(Lv.z, dd.z, g.z));
  let ts = min(tileStart, lg - vec3<i32>(1));
  let boxLo = min(ws3(ts, lg, kk, cz), lg - vec3<i32>(${box.span[0]}, ${box.span[1]}, ${box.span[2]}));
  let kvBase = (b * u.Hkv + kvh) * Lv.x * Lv.y * Lv.z;
  let kstride = dd.z * ${D}u;
  let sBase = sg * ${lay.ssPer}u;
  let hBase = sg * ${lay.hsPer}u;
  let oBase = sg * ${lay.osPer}u;

  // Stage this subgroup's 16 query rows (clamped queries for rows past the group's end).
  for (var i = 0u; i < ${(16 * D) / 32}u; i++) {
    let e = i * 32u + lane;
    let r = e / ${D}u;
    let iq = min(tileStart + qpos(r), lg - vec3<i32>(1));
    let x = g + dd * vec3<u32>(iq);
    let qrow = ((b * u.H + h) * Lv.x + x.x) * Lv.y * Lv.z + x.y * Lv.z + x.z;
    ${hsName}[hBase + r * ${QR}u + e % ${D}u] = qb[qrow * ${D}u + e % ${D}u];
  }
  workgroupBarrier();
  var qf: array<${L}, ${NF}>;
  for (var f = 0u; f < ${NF}u; f++) { qf[f] = subgroupMatrixLoad<${L}>(&${hsName}, hBase + f * 16u, false, ${QR}u); }
${Array.from({ length: NF }, (_, f) => `  var o${f} = ${A}();`).join('\n')}
  // Lane r < 16 keeps row r's running max (log2 units), sum and last rescale factor.
  var mrow = NEG;
  var lrow = 0.0;
  var arow = 1.0;

  for (var ch = 0u; ch < ${box.chunks}u; ch++) {
    workgroupBarrier();
${sPhase}
    workgroupBarrier();
${softmaxPhase}
    workgroupBarrier();
${box.chunks > 1 ? `    if (ch > 0u) {
${Array.from({ length: NF }, (_, f) => `      subgroupMatrixStore(&${osName}, oBase + ${f * 16}u, o${f}, false, ${OR}u);`).join('\n')}
      workgroupBarrier();
      for (var i = 0u; i < ${(16 * D) / 32}u; i++) {
        let e = i * 32u + lane;
        ${osName}[oBase + (e / ${D}u) * ${OR}u + e % ${D}u] *= subgroupShuffle(arow, e / ${D}u);
      }
      workgroupBarrier();
${Array.from({ length: NF }, (_, f) => `      o${f} = subgroupMatrixLoad<${A}>(&${osName}, oBase + ${f * 16}u, false, ${OR}u);`).join('\n')}
    }` : ''}
${pvPhase}
  }
  workgroupBarrier();
${Array.from({ length: NF }, (_, f) => `  subgroupMatrixStore(&${osName}, oBase + ${f * 16}u, o${f}, false, ${OR}u);`).join('\n')}
  workgroupBarrier();
  for (var i = 0u; i < ${(16 * D) / 32}u; i++) {
    let e = i * 32u + lane;
    let r = e / ${D}u;
    let iqr = tileStart + qpos(r);
    let inv = 1.0 / subgroupShuffle(lrow, r);
    if (live && all(iqr < lg)) {
      let x = g + dd * vec3<u32>(iqr);
      let qrow = ((b * u.H + h) * Lv.x + x.x) * Lv.y * Lv.z + x.y * Lv.z + x.z;
      ob[qrow * ${D}u + e % ${D}u] = f16(f32(${osName}[oBase + r * ${OR}u + e % ${D}u]) * inv);
    }
  }
}
`;
}

export function sgProgram(cfg: SgConfig, s: SgShape): Program {
  const stack = cfg.stack ?? 1;
  const key = `neighborhood/sgmatrix/d${s.D}/k${s.k.join('x')}/t${cfg.sub.join('x')}/cb${cfg.chunkBlocks}/sg${cfg.subgroups}/${cfg.sDtype}/o${cfg.oDtype ?? 'f32'}/stack${stack}${cfg.unroll ? '/unroll' : ''}${cfg.pad ?? true ? '/pad' : ''}${cfg.unrollRows ? '/rows' : ''}${cfg.ablate ? `/ablate-${cfg.ablate}` : ''}`;
  if (cfg.share) {
    const k2 = `neighborhood/sgshared/d${s.D}/k${s.k.join('x')}/t${cfg.sub.join('x')}/sg${cfg.subgroups}/o${cfg.oDtype ?? 'f32'}/cr${cfg.stageBlocks ?? 4}`;
    return { key: k2, inputs: 3, outputs: 1, uniform: true, source: () => sgSharedSource(cfg, s) };
  }
  return { key, inputs: 3, outputs: 1, uniform: true, source: () => (stack > 1 ? sgStackedSource(cfg, s) : sgSource(cfg, s)) };
}

/**
 * Runs the subgroup-matrix kernel; L, k, d, causal are the padded three-axis descriptions.
 * The caller has checked sgUnsupported(...) === ''.
 */
export function runSg(p: Problem, q: Tensor, k: Tensor, v: Tensor, cfg: SgConfig): Tensor {
  const be = q.backend as WebGpuBackend;
  const ax = paddedAxes(p);
  const scaleLog2 = p.scale * Math.LOG2E;
  // Subtiles stacked along axis 1 (per subgroup, or per workgroup when K/V are shared).
  const along1 = cfg.share ? cfg.subgroups : cfg.stack ?? 1;
  const tpg = ax.L.map((len, a) => Math.ceil(Math.ceil(len / ax.d[a]!) / (cfg.sub[a]! * (a === 1 ? along1 : 1))));
  const subtiles = tpg.reduce((acc, t, a) => acc * t * ax.d[a]!, 1);
  if (p.batch * p.heads > 65535) throw new LimitError(p.op, 'maxComputeWorkgroupsPerDimension (batch x heads)', p.batch * p.heads, 65535);
  const out = be.empty(p.op, 'f16', q.shape);
  const grid = gridFor(cfg.share ? subtiles : Math.ceil(subtiles / cfg.subgroups));
  const shape: SgShape = { D: p.headDim, k: [ax.k[0]!, ax.k[1]!, ax.k[2]!] };
  be.dispatch({
    program: sgProgram(cfg, shape),
    inputs: [be.buffer(q, p.op), be.buffer(k, p.op), be.buffer(v, p.op)],
    outputs: [be.buffer(out, p.op)],
    uniforms: packKernelUniforms({ H: p.heads, Hkv: p.kvHeads, L: ax.L, k: ax.k, d: ax.d, causal: ax.causal, tpg, tilesX: subtiles, scaleLog2 }),
    grid: [grid[0], grid[1], p.batch * p.heads],
  });
  return out;
}

