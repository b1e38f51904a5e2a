import { ArgumentError, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { Problem } from '../problem.js';
import { dispatchSgPrefill, SG_KEY_RANGE_WGSL, SG_TILE_AND_MASK_WGSL, sgPrefillHeader, sgPrefillProgram, sgSoftmaxConsts, type SourceRewrite } from './sg-prefill-common.js';

/**
 * Tiled f16 flash-attention prefill on subgroup matrices (tensor cores), several subgroups
 * per workgroup.
 *
 * A workgroup owns NSG*16 query rows of one (batch, head); each subgroup owns 16 of them and
 * keeps their Q fragments and its 16xD f32 output accumulator resident in result fragments.
 * Per key tile of KT keys: K and V are staged once in workgroup memory for all subgroups
 * (or read straight from storage with `stage: 'global'`), S = Q·Kᵀ goes to a per-subgroup
 * f32 scratch, pairs of lanes run the softmax of one row and write P as f16 (over the
 * staged K, which is dead by then), and O += P·V accumulates in the result fragments.
 *
 * WGSL cannot scale the rows of a result fragment, so the online-softmax rescale of O is
 * the crux. `rescale` picks how it is avoided:
 *  - 'lazy': a row keeps the max it started with until a tile's max exceeds it by more than
 *    `tau` (log2 units; P then stays below 2^tau, well inside f16). Only then does the
 *    workgroup route O through workgroup memory to scale its rows; with tau = 0 that
 *    happens whenever any row's max grows (the textbook online softmax).
 *  - 'twopass': a first sweep over the key tiles computes each row's exact max and sum from
 *    Q·Kᵀ alone; the second computes P against the final max and never rescales.
 *  - 'stats-only': the first sweep alone (an ablation that times Q·Kᵀ plus softmax
 *    statistics; its output is not attention).
 * (A 'restart' scheme, m fixed at a row's first tile with an exact twopass recompute of the
 * workgroup when a row outgrew it, was right with the matrices emulated but wrong on the
 * H200 (results/h200/probes/attn-sg-sweep.s8r3.json, errors ~1), and was removed.)
 */
export interface SgFlashVariant {
  D: number;
  /** Subgroups per workgroup (16 query rows each). */
  NSG: number;
  /** Keys per tile (multiple of 16). */
  KT: number;
  /** How K/V tiles reach the fragment loads. 'smem': 16-byte loads by every invocation;
   *  'frag': each subgroup copies whole 16x16 fragments (matrix load from storage, matrix
   *  store to workgroup memory); 'fragk': K as 'frag', V fragments straight from storage;
   *  'global': no staging, fragments straight from storage. */
  stage: 'global' | 'smem' | 'frag' | 'fragk';
  /** f16 elements of padding per staged K/V row and per P row (bank spread). */
  pad: number;
  rescale: 'lazy' | 'twopass' | 'stats-only';
  /** Lazy rescale threshold in log2 units. */
  tau: number;
  /** Staged K/V: load the next tile's fragments (or 16-byte words) into registers while this tile
   *  computes: `true` right after staging (registers live through the whole tile), 'pv' just
   *  before P·V (live only across P·V and the barrier). */
  prefetch?: boolean | 'pv';
  /** Softmax reads each score twice from workgroup memory instead of holding KT/2 in registers. */
  reread?: boolean;
  /** How a subgroup's lanes see each other's writes to its own scratch (scores, P, the rows of
   *  O on a rescale): 'workgroup' barriers (every subgroup waits for all others at every step),
   *  or 'subgroup': none, relying on the subgroup running converged and in order, as NVIDIA
   *  warps do (WGSL has no subgroup barrier). The K/V tile is shared and keeps its barriers;
   *  the lazy-rescale vote becomes a subgroupAny and the rescale runs per subgroup. */
  sync?: 'workgroup' | 'subgroup';
  /** Result type of the Q·Kᵀ fragments: 'f16' stores S as f16 and softmax writes P over it in
   *  place (half the score traffic, no separate P array). S then accumulates in f16, from Q
   *  pre-scaled by the softmax scale in log2 units (no overflow short of |S| ~ 65504 log2 units);
   *  its relative precision is f16's (~2^-11), as with bf16 inputs, not f32's. */
  scores?: 'f32' | 'f16';
  /** Two K/V tile buffers: the next tile is stored (from registers loaded one tile earlier)
   *  into the idle buffer while this one is read, so a tile needs one K/V barrier, not two. */
  double?: boolean;
  /** Timing ablations (the output is not attention): 'softmax' copies S to P without the
   *  softmax, 'pv' skips P·V, 'qk' skips Q·Kᵀ (S stores an accumulator), 'stage' skips the
   *  K/V copies, 'barriers' drops every barrier in the key loop. */
  ablate?: Array<'softmax' | 'pv' | 'qk' | 'stage' | 'barriers'>;
  /** Q fragments loaded from storage for every key tile instead of held in registers for
   *  the whole sweep (32 fewer registers per lane: room for more subgroups per SM). */
  qReload?: boolean;
  /** Fragment loads issued one 16-wide step ahead of the multiplies that use them, the
   *  score columns' accumulation chains interleaved (the staged matmul's 'FP'). */
  ahead?: boolean;
  /** Which score columns a softmax lane owns: 'strided' (default; the lanes of a row
   *  interleave) or 'contiguous' (a run per lane: mergeable into 16-byte accesses). */
  cols?: 'strided' | 'contiguous';
  /** Workgroup order: 'tiles' (default; every head's longest query tile first, then the
   *  next longest: all heads in flight at once) or 'heads' (head by head, longest tile first
   *  within each: the workgroups in flight share a few heads' K/V in L2). */
  order?: 'tiles' | 'heads';
  sgSize: number;
}

/**
 * The default and, in order, the variants tried where it cannot be built (head dims whose
 * K/V tile does not split into 16-byte words over the workgroup, fragments over subgroups,
 * or less workgroup memory). H200, B1 H32 S4096 D128 causal, median of 40 round-robin turns
 * (benchmarks/results/h200/probes/attn-sg-sweep.s8r6.json): 16-byte K/V staging with the next tile
 * loaded into registers right after the stores, contiguous score columns per softmax lane,
 * no barriers between a subgroup's own lanes: 0.994 ms = 138 TFLOP/s; with workgroup
 * barriers 1.062; the session's starting default (whole-fragment staging) 1.402 in the same
 * run. f16 scores ({ scores: 'f16' }) ran 0.944 ms there, at 3.2e-3 max error against the
 * float64 reference instead of 4.9e-4: an option, not the default.
 *
 * sync 'subgroup' relies on a subgroup running converged (NVIDIA warps) and its per-subgroup
 * rescale branch needs `enable chromium_disable_uniformity_analysis;`, which Dawn allows with
 * allow_unsafe_apis, as it does subgroup matrices themselves. WGSL promises neither, and this
 * kernel is the fallback of the wide kernel (sgflash-wide.ts) on any adapter with f16
 * subgroup matrices, so the default keeps workgroup barriers (1.062 ms, same checks) and
 * { sync: 'subgroup' } is an option for adapters known to run subgroups in lockstep.
 */
export const SG_FLASH_DEFAULT: Omit<SgFlashVariant, 'D' | 'sgSize'> = { NSG: 8, KT: 32, stage: 'smem', pad: 8, rescale: 'lazy', tau: 8, prefetch: true, cols: 'contiguous', sync: 'workgroup' };
export const SG_FLASH_FALLBACKS: ReadonlyArray<Omit<SgFlashVariant, 'D' | 'sgSize'>> = [
  { ...SG_FLASH_DEFAULT, NSG: 4 },
  { NSG: 8, KT: 32, stage: 'frag', pad: 8, rescale: 'lazy', tau: 8 },
  { NSG: 4, KT: 32, stage: 'frag', pad: 8, rescale: 'lazy', tau: 8 },
];
/** The first fallback (kept for callers of the earlier single-fallback API). */
export const SG_FLASH_FALLBACK = SG_FLASH_FALLBACKS[0]!;

/**
 * Padding of the f32 score rows. 4 floats keep every row 16-byte aligned (what matrix
 * loads/stores are known to work with here; every stride used on the H200 so far was a
 * multiple of 16 bytes) at the price of 2-way bank conflicts on the softmax reads.
 */
const SPAD = 4;

interface Layout {
  /** staged K/V row stride, P row stride, score row stride, O-rescale scratch row stride */
  KS: number;
  PS: number;
  SS: number;
  OS: number;
  /** P lives inside the staged K array (dead after Q·Kᵀ) when it fits there. */
  pInK: boolean;
  bytes: number;
}

export function sgFlashLayout(v: SgFlashVariant): Layout {
  const KS = v.D + v.pad;
  const PS = v.KT + v.pad;
  const s16 = v.scores === 'f16';
  // f16 scores share P's rows (P is written over them in place).
  const SS = s16 ? PS : v.KT + SPAD;
  const OS = 16 + SPAD;
  const staged = v.stage !== 'global';
  const nbuf = v.double ? 2 : 1;
  const kvBytes = !staged ? 0 : nbuf * (v.stage === 'fragk' ? v.KT * KS * 2 : 2 * v.KT * KS * 2);
  const pBytes = s16 ? 0 : v.NSG * 16 * PS * 2;
  // P over K needs every subgroup past Q·Kᵀ, i.e. a workgroup barrier after the scores.
  const pInK = !s16 && staged && !v.double && v.sync !== 'subgroup' && v.NSG * 16 * PS <= v.KT * KS;
  const sBytes = v.NSG * 16 * SS * (s16 ? 2 : 4);
  // f16 scores cannot carry O's f32 rows through a rescale: a one-fragment f32 scratch per subgroup.
  const oBytes = s16 ? v.NSG * 16 * OS * 4 : 0;
  const flagBytes = v.sync === 'subgroup' ? 0 : 4 * v.NSG;
  return { KS, PS, SS, OS, pInK, bytes: kvBytes + (pInK ? 0 : pBytes) + sBytes + oBytes + flagBytes };
}

export function sgFlashKey(v: SgFlashVariant): string {
  const extra = [v.sync === 'subgroup' ? 'sgsync' : '', v.scores === 'f16' ? 's16' : '', v.double ? 'dbl' : '', v.qReload ? 'qreload' : '', v.ahead ? 'ahead' : '', v.cols === 'contiguous' ? 'ccols' : '', v.order === 'heads' ? 'heads' : '', ...(v.ablate ?? []).map((a) => `no-${a}`)].filter(Boolean).join('+');
  return `attention/prefill-sgflash/D${v.D}/sg${v.NSG}x${v.sgSize}/kt${v.KT}/${v.stage}${v.prefetch ? `+pf${v.prefetch === 'pv' ? 'pv' : ''}` : ''}${v.reread ? '+rr' : ''}/pad${v.pad}/${v.rescale}${v.rescale === 'lazy' ? v.tau : ''}${extra ? `/${extra}` : ''}`;
}

export function checkSgFlashVariant(v: SgFlashVariant, op = 'attention'): void {
  const bad = (what: string, want: string, got: unknown) => { throw new ArgumentError(op, `subgroup-matrix variant ${what}`, want, got); };
  if (v.D % 16 !== 0 || v.D > 256) bad('D', 'a multiple of 16 up to 256', v.D);
  if (![16, 32, 48, 64, 96, 128].includes(v.KT)) bad('KT', '16, 32, 48, 64, 96 or 128', v.KT);
  // 2 subgroups per workgroup gave wrong results on the H200 (round 2, 16 and 64-key tiles)
  // while the same WGSL with the matrices emulated is right on lavapipe; 4 and 8 were right
  // in every check, so only those are built.
  if (![4, 8].includes(v.NSG)) bad('NSG', '4 or 8', v.NSG);
  if (v.pad % 8 !== 0 || v.pad < 0) bad('pad', 'a multiple of 8 halves', v.pad);
  if (v.sgSize < 16 || v.sgSize % 16 !== 0) bad('subgroup size', 'a multiple of 16', v.sgSize);
  const frag = v.stage === 'frag' || v.stage === 'fragk';
  if (frag && ((v.KT / 16) * (v.D / 16)) % v.NSG !== 0) bad('stage', `'${v.stage}' with (KT/16)*(D/16) a multiple of NSG`, v.stage);
  if (v.prefetch && v.stage === 'global') bad('prefetch', "a staged K/V ('frag', 'fragk' or 'smem')", v.stage);
  // Fragment copies per subgroup per tile: 16 (2 subgroups, K and V) gave wrong results on
  // the H200, 8 and fewer were right in every check.
  if (frag && (((v.KT / 16) * (v.D / 16)) / v.NSG) * (v.stage === 'frag' ? 2 : 1) > 8) bad('stage', `'${v.stage}' with at most 8 fragment copies per subgroup per tile`, v.stage);
  if (v.stage === 'smem' && ((v.KT * v.D) / 8) % (v.NSG * v.sgSize) !== 0) bad('stage', `'smem' with KT*D/8 a multiple of the workgroup size`, v.stage);
  if (v.sync !== undefined && v.sync !== 'workgroup' && v.sync !== 'subgroup') bad('sync', "'workgroup' or 'subgroup'", v.sync);
  if (v.scores !== undefined && v.scores !== 'f32' && v.scores !== 'f16') bad('scores', "'f32' or 'f16'", v.scores);
  if (v.double && (v.stage === 'global' || v.prefetch)) bad('double', "a staged K/V ('frag', 'fragk' or 'smem') without prefetch (double buffering loads one tile ahead itself)", v.stage);
  if (v.scores === 'f16' && v.reread) bad('reread', 'off with f16 scores (P is written over them)', v.reread);
  if (v.double && v.rescale !== 'lazy') bad('double', "rescale 'lazy'", v.rescale);
  if (!['lazy', 'twopass', 'stats-only'].includes(v.rescale)) bad('rescale', "'lazy', 'twopass' or 'stats-only'", v.rescale);
  const ablations = ['softmax', 'pv', 'qk', 'stage', 'barriers'];
  for (const a of v.ablate ?? []) if (!ablations.includes(a)) bad('ablate', ablations.join(', '), a);
}

const L = 'subgroup_matrix_left<f16, 16, 16>';
const R = 'subgroup_matrix_right<f16, 16, 16>';
const A = 'subgroup_matrix_result<f32, 16, 16>';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export function sgFlashSource(v: SgFlashVariant): string {
  checkSgFlashVariant(v);
  const { D, NSG, KT, stage, sgSize } = v;
  const { KS, PS, SS, OS, pInK } = sgFlashLayout(v);
  const NF = D / 16;
  const NB = KT / 16;
  const LPR = sgSize / 16;
  const E = KT / LPR; // score columns per lane per tile
  const WG = NSG * sgSize;
  const staged = stage !== 'global';
  const twoPass = v.rescale === 'twopass' || v.rescale === 'stats-only';
  const xor = range(Math.log2(LPR)).map((k) => 1 << k);
  const kvType = stage === 'smem' ? 'vec4<u32>' : 'f16';
  const isFrag = stage === 'frag' || stage === 'fragk';
  const vStaged = stage === 'frag' || stage === 'smem';
  const s16 = v.scores === 'f16';
  const sgSync = v.sync === 'subgroup';
  const dbl = !!v.double;
  const ab = new Set(v.ablate ?? []);
  const pf = !!v.prefetch || dbl;
  // Barriers in the key loop: around the shared K/V tile, and between a subgroup's own lanes
  // (scores, P, O rows); the latter vanish with sync 'subgroup' (subgroup_sync() is empty).
  const kvBar = ab.has('barriers') ? '' : 'workgroupBarrier();';
  const laneBar = sgSync ? 'subgroup_sync();' : ab.has('barriers') ? '' : 'workgroupBarrier();';
  const endBar = sgSync ? 'subgroup_sync();' : 'workgroupBarrier();';
  const kArr = staged ? 'ks' : 'kb';
  const vArr = vStaged ? 'vs' : 'vb';
  const kStride = staged ? 'KS' : 'D';
  const vStride = vStaged ? 'KS' : 'D';
  const cur = dbl ? 'kc + ' : '';
  const kOff = (nb: string, f: number) => staged ? `${cur}${nb} * 16u * KS + ${f * 16}u` : `kbase + ${nb} * 16u * D + ${f * 16}u`;
  const pArr = s16 ? 'ss' : pInK ? 'ks' : 'pw';
  // A score as f32.
  const sv = (idx: string) => (s16 ? `f32(ss[${idx}])` : `ss[${idx}]`);
  const SA = s16 ? 'subgroup_matrix_result<f16, 16, 16>' : A;

  // Prefetch registers: one 16x16 fragment ('frag'/'fragk') or one 16-byte word ('smem') each.
  const pfPer = stage === 'smem' ? (KT * D) / 8 / WG : (NB * NF) / NSG;
  const pfLoad = (src: string, t: number, base: string) => stage === 'smem'
    ? `${src}_w${t} = ${src}[${base} / 8u + lid + ${t * WG}u];`
    : `${src}_pf${t} = subgroupMatrixLoad<${L}>(&${src}, ${base} + (sg + ${t * NSG}u) / ${NF}u * 16u * D + (sg + ${t * NSG}u) % ${NF}u * 16u, false, D);`;
  const loadRegs = (srcs: string[], base: string) => range(pfPer).map((t) => srcs.map((src) => pfLoad(src, t, base)).join('\n      ')).join('\n      ');
  // Stores the prefetch registers into the staged arrays at element offset `off` ('' or 'x + ').
  const storeRegs = (arrays: Array<[string, string]>, off: string): string => {
    if (isFrag) {
      const at = (t: number) => `(sg + ${t * NSG}u) / ${NF}u * 16u`;
      const col = (t: number) => `(sg + ${t * NSG}u) % ${NF}u * 16u`;
      return range(pfPer).map((t) => arrays.map(([src, dst]) => `subgroupMatrixStore(&${dst}, ${off}${at(t)} * KS + ${col(t)}, ${src}_pf${t}, false, KS);`).join('\n    ')).join('\n    ');
    }
    return range(pfPer).map((t) => `{
      let c = lid + ${t * WG}u;
      let o = ${off}c / ${D / 8}u * KS + (c % ${D / 8}u) * 8u;
${arrays.map(([src, dst]) => `      {
        let w = ${src}_w${t};
        let a = bitcast<vec2<f16>>(w.x); let b2 = bitcast<vec2<f16>>(w.y); let c2 = bitcast<vec2<f16>>(w.z); let d2 = bitcast<vec2<f16>>(w.w);
        ${dst}[o] = a.x; ${dst}[o + 1u] = a.y; ${dst}[o + 2u] = b2.x; ${dst}[o + 3u] = b2.y;
        ${dst}[o + 4u] = c2.x; ${dst}[o + 5u] = c2.y; ${dst}[o + 6u] = d2.x; ${dst}[o + 7u] = d2.y;
      }`).join('\n')}
    }`).join('\n    ');
  };
  function nextLoads(srcs: string[]): string {
    return `if (it + 1u < n_tiles) {
      let nbase = (kvbase + tile_kt(it + 1u, start2, n_sink)) * D;
      ${loadRegs(srcs, 'nbase')}
    }`;
  }

  // Copies this tile's rows of K (and V) into workgroup memory.
  const stageTile = (withV: boolean, loadNext: boolean): string => {
    if (ab.has('stage')) return '';
    const arrays: Array<[string, string]> = withV && vStaged ? [['kb', 'ks'], ['vb', 'vs']] : [['kb', 'ks']];
    if (v.prefetch) {
      const stores = storeRegs(arrays, '');
      return loadNext ? `${stores}\n    ${nextLoads(arrays.map(([src]) => src))}` : stores;
    }
    if (isFrag) {
      const per = (NB * NF) / NSG;
      return range(per).map((t) => `{
      let e = sg + ${t * NSG}u;
      let fr = e / ${NF}u;
      let fc = e % ${NF}u;
${arrays.map(([src, dst]) => `      subgroupMatrixStore(&${dst}, fr * 16u * KS + fc * 16u, subgroupMatrixLoad<${L}>(&${src}, kbase + fr * 16u * D + fc * 16u, false, D), false, KS);`).join('\n')}
    }`).join('\n    ');
    }
    if (stage === 'smem') {
      const per = (KT * D) / 8 / WG;
      return range(per).map((t) => `{
      let c = lid + ${t * WG}u;
      let row = c / ${D / 8}u;
      let o = row * KS + (c % ${D / 8}u) * 8u;
      let gi = kbase / 8u + c;
${arrays.map(([src, dst]) => `      {
        let w = ${src}[gi];
        let a = bitcast<vec2<f16>>(w.x); let b2 = bitcast<vec2<f16>>(w.y); let c2 = bitcast<vec2<f16>>(w.z); let d2 = bitcast<vec2<f16>>(w.w);
        ${dst}[o] = a.x; ${dst}[o + 1u] = a.y; ${dst}[o + 2u] = b2.x; ${dst}[o + 3u] = b2.y;
        ${dst}[o + 4u] = c2.x; ${dst}[o + 5u] = c2.y; ${dst}[o + 6u] = d2.x; ${dst}[o + 7u] = d2.y;
      }`).join('\n')}
    }`).join('\n    ');
    }
    return '';
  };

  // Double buffering: tile it+1 goes from registers (loaded during tile it-1) into the idle
  // buffer, which every subgroup left at the barrier that ended tile it-1; tile it+2 is loaded.
  const dblArrays: Array<[string, string]> = vStaged ? [['kb', 'ks'], ['vb', 'vs']] : [['kb', 'ks']];
  const dblStart = !dbl || ab.has('stage') ? '' : `if (n_tiles > 0u) {
    let nbase = (kvbase + tile_kt(0u, start2, n_sink)) * D;
    ${loadRegs(dblArrays.map(([s]) => s), 'nbase')}
    ${storeRegs(dblArrays, '')}
  }
  if (n_tiles > 1u) {
    let nbase = (kvbase + tile_kt(1u, start2, n_sink)) * D;
    ${loadRegs(dblArrays.map(([s]) => s), 'nbase')}
  }`;
  const dblStage = ab.has('stage') ? '' : `if (it + 1u < n_tiles) {
      let kn = ${KT * KS}u - kc;
      ${storeRegs(dblArrays, 'kn + ')}
    }
    if (it + 2u < n_tiles) {
      let nbase = (kvbase + tile_kt(it + 2u, start2, n_sink)) * D;
      ${loadRegs(dblArrays.map(([s]) => s), 'nbase')}
    }`;

  const qLoad = (f: number) => (s16 ? `subgroupMatrixScalarMultiply(subgroupMatrixLoad<${L}>(&qb, qoff + ${f * 16}u, false, D), qs)` : `subgroupMatrixLoad<${L}>(&qb, qoff + ${f * 16}u, false, D)`);
  const qf = (f: number) => (v.qReload ? qLoad(f) : `q${f}f`);
  // S = Q·Kᵀ for this tile into the subgroup's score scratch.
  const kLoad = (nb: number, f: number) => `subgroupMatrixLoad<${R}>(&${kArr}, ${kOff(`${nb}u`, f)}, true, ${kStride})`;
  const scoresAhead = () => {
    const out: string[] = [];
    const loads = (f: number) => range(NB).map((nb) => `let k${nb}_${f} = ${kLoad(nb, f)};`);
    out.push(...loads(0));
    for (let f = 0; f < NF; f++) {
      if (f + 1 < NF) out.push(...loads(f + 1));
      out.push(...range(NB).map((nb) => (f === 0
        ? `var acc${nb} = subgroupMatrixMultiply<${s16 ? 'f16' : 'f32'}>(${qf(0)}, k${nb}_0);`
        : `acc${nb} = subgroupMatrixMultiplyAccumulate(${qf(f)}, k${nb}_${f}, acc${nb});`)));
    }
    out.push(...range(NB).map((nb) => `subgroupMatrixStore(&ss, sbase + ${nb * 16}u, acc${nb}, false, SS);`));
    return `{\n      ${out.join('\n      ')}\n    }`;
  };
  const scores = v.ahead && !ab.has('qk') ? scoresAhead() : range(NB).map((nb) => ab.has('qk') ? `subgroupMatrixStore(&ss, sbase + ${nb * 16}u, ${s16 ? 'sz' : 'o0'}, false, SS);` : `{
      var acc = subgroupMatrixMultiply<${s16 ? 'f16' : 'f32'}>(${qf(0)}, subgroupMatrixLoad<${R}>(&${kArr}, ${kOff(`${nb}u`, 0)}, true, ${kStride}));
${range(NF - 1).map((f) => `      acc = subgroupMatrixMultiplyAccumulate(${qf(f + 1)}, subgroupMatrixLoad<${R}>(&${kArr}, ${kOff(`${nb}u`, f + 1)}, true, ${kStride}), acc);`).join('\n')}
      subgroupMatrixStore(&ss, sbase + ${nb * 16}u, acc, false, SS);
    }`).join('\n    ');

  // A lane's score columns: k-th at PC + k*CS (strided: lanes of a row interleave; contiguous:
  // each lane a run of E columns, which the compiler may merge into wide accesses).
  const CS = v.cols === 'contiguous' ? 1 : LPR;
  const PC = v.cols === 'contiguous' ? `part * ${E}u` : 'part';
  // Reads this lane's scores (log2-scaled, hidden keys at NEG) and their tile max.
  const readScores = (v.reread ? `
    let full = it >= n_sink && kt >= full_lo && kt + KT <= full_hi;
    let srow = sbase + r * SS + ${PC};
    var mt = NEG;
    if (full) {
${range(E).map((k) => `      mt = max(mt, ${sv(`srow + ${k * CS}u`)} * sc2);`).join('\n')}
    } else {
${range(E).map((k) => `      mt = max(mt, select(NEG, ${sv(`srow + ${k * CS}u`)} * sc2, visible(kt + ${PC} + ${k * CS}u, pos)));`).join('\n')}
    }` : `
    let full = it >= n_sink && kt >= full_lo && kt + KT <= full_hi;
    let srow = sbase + r * SS + ${PC};
${range(E).map((k) => `    var x${k} = ${sv(`srow + ${k * CS}u`)} * sc2;`).join('\n')}
    if (!full) {
${range(E).map((k) => `      x${k} = select(NEG, x${k}, visible(kt + ${PC} + ${k * CS}u, pos));`).join('\n')}
    }
    var mt = ${range(E).reduce((acc, k) => (acc ? `max(${acc}, x${k})` : `x${k}`), '')};`) + `
    ${xor.map((x) => `mt = max(mt, subgroupShuffleXor(mt, ${x}u));`).join('\n    ')}
    let live = mt > HALF_NEG;`;

  // This lane's k-th score of the tile (log2-scaled, hidden keys at NEG).
  const xval = (k: number) => v.reread ? `select(NEG, ${sv(`srow + ${k * CS}u`)} * sc2, full || visible(kt + ${PC} + ${k * CS}u, pos))` : `x${k}`;

  const writeP = (mExpr: string) => `
    let mu = select(-NEG, ${mExpr}, live);
    var ps = 0.0;
    let prow = pbase + r * PS + ${PC};
${range(E).map((k) => `    { let p = f16(exp2(${xval(k)} - mu)); ${pArr}[prow + ${k * CS}u] = p; ps += f32(p); }`).join('\n')}
    ${xor.map((x) => `ps += subgroupShuffleXor(ps, ${x}u);`).join('\n    ')}`;

  // Timing ablation: S copied to P as it is.
  const copyP = `
    let srow = sbase + r * SS + ${PC};
    let prow = pbase + r * PS + ${PC};
${range(E).map((k) => `    ${pArr}[prow + ${k * CS}u] = f16(${sv(`srow + ${k * CS}u`)});`).join('\n')}`;

  const vLoad = (nb: number, f: number) => `subgroupMatrixLoad<${R}>(&${vArr}, ${vStaged ? `${cur}${nb * 16}u * KS + ${f * 16}u` : `kbase + ${nb * 16}u * D + ${f * 16}u`}, false, ${vStride})`;
  const pvAhead = () => {
    const out: string[] = range(NB).map((nb) => `let p${nb}f = subgroupMatrixLoad<${L}>(&${pArr}, pbase + ${nb * 16}u, false, PS);`);
    const loads = (f: number) => range(NB).map((nb) => `let v${nb}_${f} = ${vLoad(nb, f)};`);
    out.push(...loads(0));
    for (let f = 0; f < NF; f++) {
      if (f + 1 < NF) out.push(...loads(f + 1));
      out.push(...range(NB).map((nb) => `o${f} = subgroupMatrixMultiplyAccumulate(p${nb}f, v${nb}_${f}, o${f});`));
    }
    return `{\n    ${out.join('\n    ')}\n    }`;
  };
  const pv = ab.has('pv') ? '' : v.ahead ? pvAhead() : `
${range(NB).map((nb) => `    let p${nb}f = subgroupMatrixLoad<${L}>(&${pArr}, pbase + ${nb * 16}u, false, PS);`).join('\n')}
${range(NF).map((f) => range(NB).map((nb) => `    o${f} = subgroupMatrixMultiplyAccumulate(p${nb}f, subgroupMatrixLoad<${R}>(&${vArr}, ${vStaged ? `${cur}${nb * 16}u * KS + ${f * 16}u` : `kbase + ${nb * 16}u * D + ${f * 16}u`}, false, ${vStride}), o${f});`).join('\n')).join('\n')}`;

  // Routes O through f32 scratch (the score rows, or with f16 scores a one-fragment scratch)
  // to run `body` on its rows; `at` is the element of row r, column cc of the chunk.
  const scr = s16 ? { arr: 'os', base: 'obase', stride: 'OS', per: 1 } : { arr: 'ss', base: 'sbase', stride: 'SS', per: NB };
  const viaScratch = (bar: string, body: (chunk: number, at: string) => string) => {
    const chunks: string[] = [];
    for (let c = 0; c * scr.per < NF; c++) {
      const fs = range(Math.min(scr.per, NF - c * scr.per)).map((j) => c * scr.per + j);
      chunks.push(`
    ${fs.map((f, j) => `subgroupMatrixStore(&${scr.arr}, ${scr.base} + ${j * 16}u, o${f}, false, ${scr.stride});`).join('\n    ')}
    ${bar}
    for (var cc = part; cc < ${fs.length * 16}u; cc += LPR) {
      ${body(c, `${scr.base} + r * ${scr.stride} + cc`)}
    }
    ${bar}
    ${fs.map((f, j) => `o${f} = subgroupMatrixLoad<${A}>(&${scr.arr}, ${scr.base} + ${j * 16}u, false, ${scr.stride});`).join('\n    ')}
    ${bar}`);
    }
    return chunks.join('');
  };

  // Prefetch registers, filled with the first tile's fragments before a sweep starts.
  const prefetchStart = (withV: boolean): string => {
    if (!v.prefetch || ab.has('stage')) return '';
    const arrays = withV && vStaged ? ['kb', 'vb'] : ['kb'];
    return `if (n_tiles > 0u) {
    let nbase = (kvbase + tile_kt(0u, start2, n_sink)) * D;
    ${range(pfPer).map((t) => arrays.map((src) => pfLoad(src, t, 'nbase')).join('\n    ')).join('\n    ')}
  }`;
  };
  const pfType = stage === 'smem' ? 'vec4<u32>' : L;
  const pfName = stage === 'smem' ? 'w' : 'pf';
  const prefetchDecl = pf
    ? range(pfPer).map((t) => `  var kb_${pfName}${t}: ${pfType};${vStaged ? `\n  var vb_${pfName}${t}: ${pfType};` : ''}`).join('\n')
    : '';
  const pvPrefetch = v.prefetch === 'pv' && !ab.has('stage') ? nextLoads(vStaged ? ['kb', 'vb'] : ['kb']) : '';

  // The lazy max update, P and the row sum, then the rescale of O where a row's max grew:
  // per subgroup with sync 'subgroup', else on the workgroup's vote.
  const lazyStep = `
    var alpha = 1.0;
    var need = false;
    if (live) {
      if (l == 0.0) { m = mt; }
      else if (mt > m + TAU) { alpha = exp2(m - mt); m = mt; need = true; }
    }
    ${writeP('m')}
    l = l * alpha + ps;${sgSync ? `
    ${laneBar}
    if (subgroupAny(need)) {
      ${viaScratch('subgroup_sync();', (_c, at) => `${scr.arr}[${at}] *= alpha;`)}
    }` : `
    let any_need = subgroupAny(need);
    if (lane == 0u) { flags[sg] = select(0u, 1u, any_need); }
    let fl = workgroupUniformLoad(&flags);
    if (${range(NSG).map((s) => `fl[${s}] != 0u`).join(' || ')}) {
      ${viaScratch('workgroupBarrier();', (_c, at) => `${scr.arr}[${at}] *= alpha;`)}
    }`}`;

  type Mode = 'lazy' | 'twopass';
  const softmaxStep = (mode: Mode) => ab.has('softmax') ? `${copyP}
    ${laneBar}` : mode === 'twopass' ? `${readScores}
${writeP('m')}
    ${laneBar}` : `${readScores}
${lazyStep}`;

  // The barrier after the scores also frees K for P when P lives there.
  const afterScores = pInK ? kvBar : laneBar;

  const mainLoop = (mode: Mode) => dbl ? `
  ${dblStart}
  ${kvBar}
  for (var it = 0u; it < n_tiles; it++) {
    let kt = tile_kt(it, start2, n_sink);
    let kbase = (kvbase + kt) * D;
    let kc = (it & 1u) * ${KT * KS}u;
    ${dblStage}
    ${scores}
    ${afterScores}
    ${softmaxStep(mode)}
    ${pv}
    ${kvBar}
  }` : `
  ${prefetchStart(true)}
  for (var it = 0u; it < n_tiles; it++) {
    let kt = tile_kt(it, start2, n_sink);
    let kbase = (kvbase + kt) * D;
    ${stageTile(true, v.prefetch === true)}
    ${staged ? kvBar : ''}
    ${scores}
    ${afterScores}
    ${softmaxStep(mode)}
    ${pvPrefetch}
    ${pv}
    ${staged ? kvBar : ''}
  }`;

  const statsLoop = `
  ${prefetchStart(false)}
  for (var it = 0u; it < n_tiles; it++) {
    let kt = tile_kt(it, start2, n_sink);
    let kbase = (kvbase + kt) * D;
    ${dbl ? 'let kc = 0u;' : ''}
    ${stageTile(false, true)}
    ${staged ? kvBar : ''}
    ${scores}
    ${laneBar}
    ${readScores}
    if (live) {
      let mn = max(m, mt);
      var ps = 0.0;
${range(E).map((k) => `      ps += exp2(${xval(k)} - mn);`).join('\n')}
      ${xor.map((x) => `ps += subgroupShuffleXor(ps, ${x}u);`).join('\n      ')}
      l = l * exp2(m - mn) + ps;
      m = mn;
    }
    ${staged && sgSync ? kvBar : ''}
  }`;

  const nbuf = dbl ? 2 : 1;
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, subgroup_uniformity);
${sgSync && v.rescale === 'lazy' ? '// The per-subgroup rescale branches on subgroupAny, uniform within the subgroup only, which\n// the uniformity analysis cannot see (it needs Dawn\'s allow_unsafe_apis, as subgroup matrices do).\nenable chromium_disable_uniformity_analysis;\n' : ''}${sgPrefillHeader(kvType, kvType)}
const D = ${D}u;
const KT = ${KT}u;
const BQ = ${NSG * 16}u;
const KS = ${KS}u;
const PS = ${PS}u;
const SS = ${SS}u;
const OS = ${OS}u;
const LPR = ${LPR}u;
${sgSoftmaxConsts(v.tau)}
${staged ? `var<workgroup> ks: array<f16, ${nbuf * KT * KS}>;` : ''}
${vStaged ? `var<workgroup> vs: array<f16, ${nbuf * KT * KS}>;` : ''}
${pInK || s16 ? '' : `var<workgroup> pw: array<f16, ${NSG * 16 * PS}>;`}
var<workgroup> ss: array<${s16 ? 'f16' : 'f32'}, ${NSG * 16 * SS}>;
${s16 ? `var<workgroup> os: array<f32, ${NSG * 16 * OS}>;` : ''}
${sgSync ? '' : `var<workgroup> flags: array<u32, ${NSG}>;`}
${sgSync ? `// A subgroup's lanes see each other's workgroup-memory writes without a barrier: the
// subgroup runs converged and in order (NVIDIA warps). WGSL has no subgroup barrier; this
// marks where one belongs (the tests' emulation turns it into a workgroup barrier).
fn subgroup_sync() {}` : ''}

${SG_TILE_AND_MASK_WGSL}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  let nbh = u.B * u.Hq;
  if (g >= nbh * u.qTiles) { return; }
${v.order === 'heads' ? `  // One (batch, head) after another, its longest causal rows first: the workgroups in flight
  // share a few heads' K/V in L2.
  let bh = g / u.qTiles;
  let tile = u.qTiles - 1u - g % u.qTiles;` : `  let bh = g % nbh;
  // The longest causal rows first, so the short tiles fill the tail.
  let tile = u.qTiles - 1u - g / nbh;`}
  let b = bh / u.Hq;
  let h = bh % u.Hq;
  let hk = h / u.group;
  let w0 = tile * BQ;
  let i0 = w0 + sg * 16u;
  // A subgroup past the last row recomputes the last 16 rows (in bounds) and stores nothing.
  let q0 = min(i0, u.S - 16u);
  let r = lane / LPR;
  let part = lane % LPR;
  let i = q0 + r;
  let pos = i32(u.kvLen) - i32(u.S) + i32(i);
  let sbase = sg * 16u * SS;
  let pbase = sg * 16u * PS;
${s16 ? '  let obase = sg * 16u * OS;' : ''}

  let qoff = (bh * u.S + q0) * D;
${s16 ? `  // f16 scores: Q is pre-scaled by the softmax scale (in log2 units) so S stays far from
  // f16's range limit; the rounding of that scale to f16 is undone in f32 by sc2.
  let qs = f16(u.scale2);
  let sc2 = u.scale2 / f32(qs);` : '  let sc2 = u.scale2;'}
${v.qReload ? '' : range(NF).map((f) => `  let q${f}f = ${qLoad(f)};`).join('\n')}
${range(NF).map((f) => `  var o${f}: ${A};`).join('\n')}
${ab.has('qk') && s16 ? `  var sz: ${SA};` : ''}
  var m = NEG;
  var l = 0.0;

${SG_KEY_RANGE_WGSL}
${prefetchDecl}
${twoPass ? statsLoop : ''}
${v.rescale === 'stats-only' ? '' : mainLoop(twoPass ? 'twopass' : 'lazy')}

  let inv = select(0.0, 1.0 / l, l > 0.0);
  let orow = (bh * u.S + i) * D;
  ${viaScratch(endBar, (c, at) => `if (i0 < u.S) { ob[orow + ${c * scr.per * 16}u + cc] = f16(${scr.arr}[${at}] * inv); }`)}
  if (i0 < u.S && part == 0u) { lseb[bh * u.S + i] = select(neg_inf(), (m + log2(l)) * LN2, l > 0.0); }
}
`;
}

/** A rewrite of the generated WGSL (tests: subgroup matrices emulated per lane on adapters without them). */
export type { SourceRewrite };

export function sgFlashProgram(v: SgFlashVariant, rw?: SourceRewrite): Program {
  return sgPrefillProgram(sgFlashKey(v), () => sgFlashSource(v), rw);
}

/** Runs one variant; the caller has checked that the adapter and the problem fit the subgroup-matrix path. */
export function runSgFlash(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, v: Tensor, variant: SgFlashVariant, rw?: SourceRewrite): { out: Tensor; lse: Tensor } {
  checkSgFlashVariant(variant, p.op);
  return dispatchSgPrefill(be, p, q, k, v, { program: sgFlashProgram(variant, rw), workgroupBytes: sgFlashLayout(variant).bytes, rows: variant.NSG * 16 });
}
