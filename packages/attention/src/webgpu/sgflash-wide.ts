import { ArgumentError, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { AttentionOptions } from '../options.js';
import { resolveProblem, type Problem } from '../problem.js';
import { asGpu } from './common.js';
import { dispatchSgPrefill, SG_KEY_RANGE_WGSL, SG_TILE_AND_MASK_WGSL, sgLaneSoftmaxWgsl, sgPrefillEntry, sgPrefillHeader, sgPrefillProgram, sgPrefillWhyNot, sgSoftmaxConsts, type SourceRewrite } from './sg-prefill-common.js';

/**
 * f16 flash-attention prefill on subgroup matrices with more fragment reuse per load than
 * sgflash.ts ("wide": subgroups work in pairs over 32 query rows).
 *
 * A workgroup of NSG subgroups owns NSG*16 query rows as NSG/2 pairs of 32 rows. Both
 * subgroups of a pair keep the pair's 32 rows of Q resident (2 x D/16 left fragments).
 *  - S = Q·Kᵀ: the pair splits the key tile; every K fragment loaded serves both row blocks.
 *  - softmax: lanes over workgroup memory, as in sgflash (subgroup h of a pair owns the
 *    softmax of the pair's row block h: its m, l and the lazy-rescale vote).
 *  - O += P·V: the pair splits D; subgroup h accumulates O[32 rows, h*D/2 .. (h+1)*D/2) in
 *    2 x D/32 result fragments, so every V fragment serves 2 multiplies and every P
 *    fragment D/32.
 * K and V reach workgroup memory through 16-byte loads that are issued a tile (or more)
 * ahead into registers. The K tile is rewritten as soon as Q·Kᵀ is done with it and the V
 * tile right after P·V, which leaves three barriers per key tile (scores ready, P ready,
 * V/P dead). The online-softmax rescale of O is sgflash's 'lazy' scheme: a row keeps its max
 * until a tile exceeds it by more than tau (log2 units), and only then does O go through
 * workgroup memory to have its rows scaled (alpha per row in a small workgroup array).
 */
export interface SgWideVariant {
  D: number;
  /** Subgroups per workgroup (pairs of 32 query rows): 4 or 8. */
  NSG: number;
  /** Keys per tile: a multiple of 32 (each subgroup of a pair takes half of them in Q·Kᵀ). */
  KT: number;
  /** f16 elements of padding per staged K/V row and per P row. */
  pad: number;
  /** Lazy rescale threshold in log2 units (0: textbook online softmax). */
  tau: number;
  /** Load the tile after next into registers right after staging the next one (true: the
   *  registers live through a whole tile), the next tile's K before Q·Kᵀ and its V before P·V
   *  ('short': registers live through one phase), or just before staging (false: no global
   *  latency hidden). */
  lookahead: boolean | 'short';
  /** Barriers per key tile: 3 (default: K of the next tile staged after Q·Kᵀ, V after
   *  P·V) or 2 ('b2': this tile's V staged together with the next K after Q·Kᵀ, so no
   *  barrier is needed after P·V). */
  sched?: 'b3' | 'b2' | 'b2o';
  /* 'b2o' (two barriers, overlapped): the next tile's Q·Kᵀ is issued into registers right
   *  before this tile's softmax, so its multiplies run on the tensor cores while the ALUs
   *  do the softmax; its scores are stored after the vote barrier, next to this tile's P·V.
   *  V(j) is staged during the softmax, K(j+2) during P·V. */
  /** With 'b2': the next tile's Q·Kᵀ is issued right before this tile's P·V (its scores
   *  stay in registers until the next tile stores them), so its multiply chains overlap. */
  qkEarly?: boolean;
  /** Subgroups per 32-row group (default 2, a pair). 4: a quad; in Q·Kᵀ each subgroup
   *  scores one row block against half the keys (Q of one row block resident), in P·V each
   *  accumulates a quarter of D, so a workgroup of 16 subgroups owns 128 rows with half the
   *  registers per lane of a pair's. */
  group?: 2 | 4;
  /** With 'b2': the staging stores (next K, this V) after the softmax has read its scores
   *  and written P instead of right after the barrier. */
  stageLate?: boolean;
  /** f32 elements of padding per score row (default 4). */
  spad?: number;
  /** How K/V tiles reach workgroup memory: 'words' (default: 16-byte loads by every
   *  invocation, stored as halves), 'u32' (4-byte loads: the stores of a subgroup hit 32
   *  different banks) or 'frag' (each subgroup copies whole 16x16 fragments:
   *  matrix load from storage, matrix store to workgroup memory). */
  stage?: 'words' | 'u32' | 'frag';
  /** V fragments straight from storage instead of a staged V tile (frees workgroup memory). */
  vGlobal?: boolean;
  /** Q·Kᵀ split inside a pair: 'split-keys' (default: both row blocks' Q resident, each K
   *  fragment serves 2 multiplies) or 'own-rows' (each subgroup holds only its row block's
   *  Q and scores all keys: K reuse 1, 8 fewer left fragments of registers at D128). */
  qk?: 'split-keys' | 'own-rows';
  /** Q fragments loaded from storage (L1/L2) on every tile instead of held in registers
   *  for the whole sweep (fewer registers per lane, more workgroups per SM). */
  qGlobal?: boolean;
  /** P = exp2 evaluated in f16 (the argument rounded to f16 first). */
  expF16?: boolean;
  /** Softmax lanes take runs of 4 adjacent scores (16-byte aligned reads) instead of
   *  every LPR-th one. */
  contig?: boolean;
  /** Query tiles longest-first within groups of this many (batch, head) pairs (0 or absent:
   *  across all heads), so the workgroups in flight share the K/V of fewer heads in L2. */
  headGroup?: number;
  /** Timing ablations (the output is not attention): drop the exponentials, P·V, Q·Kᵀ,
   *  the whole softmax (no score reads, no P writes), the K/V staging after the first tile,
   *  the key loop's barriers (and with them the rescale), or all of the softmax, staging and
   *  barriers at once ('mma-only': what the multiplies and fragment loads alone take). */
  ablate?: 'no-exp' | 'no-pv' | 'no-qk' | 'no-softmax' | 'no-stage' | 'no-barrier' | 'mma-only';
  sgSize: number;
}

/**
 * The best variant measured (48.7 KB of workgroup memory at D128). H200, B1 H32 S4096 D128
 * causal, 3 interleaved turns with the library's tiled kernel (benchmarks/results/h200/probes/
 * attn-sg-wide.s8r6.json): 0.898 ms = 153 TFLOP/s against sgflash's 1.055 ms (PyTorch bf16
 * SDPA earlier this session: 0.284 ms, so 0.32x of it); staging after the softmax +6%,
 * f16 exponentials +1% (r6); score rows padded by 4 instead of 8 floats 0.959 ms (r5),
 * three barriers per tile instead of two +7% (r4), softmax lanes strided instead of runs of 4 +3% (r2); quads, 4 subgroups,
 * Q or V from storage, 64-key tiles, own-row scoring, next Q.K^T before P.V: slower (r1-r5).
 */
export const SG_WIDE_DEFAULT: Omit<SgWideVariant, 'D' | 'sgSize'> = { NSG: 8, KT: 32, pad: 8, tau: 8, lookahead: true, contig: true, sched: 'b2', spad: 8 };

/** Where the default does not fit (less workgroup memory): 64 rows per workgroup (24.8 KB at
 * D64, 32.8 KB at D128). On the H200 4 subgroups ran ~1.7x slower than 8 (r1-r3). */
export const SG_WIDE_FALLBACK: Omit<SgWideVariant, 'D' | 'sgSize'> = { ...SG_WIDE_DEFAULT, NSG: 4 };

/** The default, else the fallback, for this problem on this backend; null (and why) when neither can take it. */
export function sgWideChoose(be: WebGpuBackend, p: Problem): { variant: Omit<SgWideVariant, 'D' | 'sgSize'>; why: null } | { variant: null; why: string } {
  const why = sgWideUnsupported(be, p, SG_WIDE_DEFAULT);
  if (!why) return { variant: SG_WIDE_DEFAULT, why: null };
  if (!sgWideUnsupported(be, p, SG_WIDE_FALLBACK)) return { variant: SG_WIDE_FALLBACK, why: null };
  return { variant: null, why };
}

/** f32 score rows padded by 4 floats: rows stay 16-byte aligned. */
const SPAD = 4;

export interface SgWideLayout {
  /** staged K/V row stride, P row stride, score row stride (elements) */
  KS: number;
  PS: number;
  SS: number;
  bytes: number;
}

/** Query rows per workgroup: 32 per pair or quad of subgroups. */
export function sgWideRows(v: Pick<SgWideVariant, 'NSG' | 'group'>): number {
  return (v.NSG / (v.group ?? 2)) * 32;
}

export function sgWideLayout(v: SgWideVariant): SgWideLayout {
  const KS = v.D + v.pad;
  const PS = v.KT + v.pad;
  const SS = v.KT + (v.spad ?? SPAD);
  const BQ = sgWideRows(v);
  const kv = (v.vGlobal ? 1 : 2) * v.KT * KS * 2;
  const bytes = kv + BQ * PS * 2 + BQ * SS * 4 + BQ * 4 + v.NSG * 4;
  return { KS, PS, SS, bytes };
}

export function sgWideKey(v: SgWideVariant): string {
  return `attention/prefill-sgwide/D${v.D}/sg${v.NSG}x${v.sgSize}/kt${v.KT}/pad${v.pad}/lazy${v.tau}${v.lookahead === 'short' ? '/las' : v.lookahead ? '/la' : ''}${v.stage && v.stage !== 'words' ? `/${v.stage}` : ''}${v.vGlobal ? '/vg' : ''}${v.qk === 'own-rows' ? '/own' : ''}${v.qGlobal ? '/qg' : ''}${v.contig ? '/c4' : ''}${v.expF16 ? '/e16' : ''}${v.sched === 'b2' ? '/b2' : v.sched === 'b2o' ? '/b2o' : ''}${v.qkEarly ? '/qke' : ''}${v.group === 4 ? '/g4' : ''}${v.stageLate ? '/late' : ''}${v.spad !== undefined ? `/sp${v.spad}` : ''}${v.headGroup ? `/hg${v.headGroup}` : ''}${v.ablate ? `/${v.ablate}` : ''}`;
}

export function checkSgWideVariant(v: SgWideVariant, op = 'attention'): void {
  const bad = (what: string, want: string, got: unknown) => { throw new ArgumentError(op, `wide subgroup-matrix variant ${what}`, want, got); };
  // Q (2 x D/16 left fragments) and O (2 x D/32 result fragments) stay in registers.
  if (v.D % 32 !== 0 || v.D < 32 || v.D > 128) bad('D', 'a multiple of 32 up to 128', v.D);
  if (v.KT % 32 !== 0 || v.KT < 32 || v.KT > 128) bad('KT', '32, 64, 96 or 128', v.KT);
  // 2 subgroups per workgroup gave wrong results on the H200 for sgflash; only 4 and 8 are built.
  const G = v.group ?? 2;
  if (G === 4) {
    if (![8, 16].includes(v.NSG)) bad('NSG', '8 or 16 with quads', v.NSG);
    if (v.D % 64 !== 0) bad('D', 'a multiple of 64 with quads', v.D);
    if (v.qk === 'own-rows' || v.qkEarly || v.qGlobal) bad('group', "quads without 'own-rows', qkEarly or qGlobal", v.group);
  } else if (![4, 8].includes(v.NSG)) bad('NSG', '4 or 8', v.NSG);
  if (v.pad % 8 !== 0 || v.pad < 0) bad('pad', 'a multiple of 8 halves', v.pad);
  if (v.sgSize < 16 || v.sgSize % 16 !== 0) bad('subgroup size', 'a multiple of 16', v.sgSize);
  if (v.stage === 'frag') {
    const per = ((v.KT / 16) * (v.D / 16)) / v.NSG;
    if (!Number.isInteger(per)) bad('stage', "'frag' with (KT/16)*(D/16) a multiple of NSG", v.stage);
    // More than 8 fragment copies per subgroup per tile gave wrong results on the H200 (sgflash.ts).
    if (per * (v.vGlobal ? 1 : 2) > 8) bad('stage', "'frag' with at most 8 fragment copies per subgroup per tile", v.stage);
  }
  if (v.qkEarly && (v.sched !== 'b2' || v.qk === 'own-rows' || v.qGlobal || v.ablate)) bad('qkEarly', "sched 'b2' with split-keys scoring, Q resident and no ablation", v.qkEarly);
  if (v.sched === 'b2o' && (v.lookahead !== true || v.vGlobal || G !== 2 || v.qk === 'own-rows' || v.qGlobal || v.qkEarly || v.stageLate || v.stage === 'frag' || v.ablate)) {
    bad('sched', "'b2o' with lookahead, staged V, pairs, split-keys scoring, Q resident, words staging and no other schedule option", v.sched);
  }
  if (v.headGroup !== undefined && (!Number.isInteger(v.headGroup) || v.headGroup < 0)) bad('headGroup', 'a non-negative integer', v.headGroup);
  if (v.spad !== undefined && (v.spad % 4 !== 0 || v.spad < 0)) bad('spad', 'a multiple of 4 floats', v.spad);
  if (v.contig && (v.KT / ((G * v.sgSize) / 32)) % 4 !== 0) bad('contig', 'KT / (subgroup size / 16) a multiple of 4', v.KT);
  if (!(v.tau >= 0 && v.tau <= 12)) bad('tau', 'between 0 and 12 (P stays below 2^tau in f16)', v.tau);
}

/** Why this problem cannot run on the wide kernel on this backend (null: it can). */
export function sgWideUnsupported(be: WebGpuBackend, p: Problem, variant: Omit<SgWideVariant, 'D' | 'sgSize'> = SG_WIDE_DEFAULT, emulated = false): string | null {
  const v: SgWideVariant = { ...variant, D: p.D, sgSize: emulated ? 32 : be.caps.subgroupMaxSize };
  return sgPrefillWhyNot(be, p, variant.KT, emulated, { check: () => checkSgWideVariant(v, p.op), bytes: sgWideLayout(v).bytes });
}

const L = 'subgroup_matrix_left<f16, 16, 16>';
const R = 'subgroup_matrix_right<f16, 16, 16>';
const A = 'subgroup_matrix_result<f32, 16, 16>';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export function sgWideSource(v: SgWideVariant): string {
  checkSgWideVariant(v);
  const { D, NSG, KT, sgSize } = v;
  const { KS, PS, SS } = sgWideLayout(v);
  const NF = D / 16;
  const NB = KT / 16;
  const NBH = NB / 2; // key blocks per subgroup in Q·Kᵀ
  const G = v.group ?? 2;
  const quad = G === 4;
  const RPS = 32 / G; // softmax rows per subgroup
  const LPR = (G * sgSize) / 32; // softmax lanes per row
  const CPR = sgSize / 16; // lanes per row when a subgroup walks a 16x16 fragment
  const NFG = NF / G; // d fragments per subgroup in P·V
  const E = KT / LPR; // scores per lane per tile
  const WG = NSG * sgSize;
  const xor = range(Math.log2(LPR)).map((k) => 1 << k);
  const frag = v.stage === 'frag';
  // Halves per global load: 16-byte words, or 4-byte words (a warp's stores of one row then
  // fall on 32 different banks).
  const HW = v.stage === 'u32' ? 2 : 8;
  const unitType = HW === 8 ? 'vec4<u32>' : 'u32';
  const Q8 = D / HW; // loads per K/V row
  const words = (KT * D) / HW; // loads per tile
  const per = frag ? (KT / 16) * NF / NSG : Math.ceil(words / WG);
  const stagedArrays: Array<[string, string]> = v.vGlobal ? [['kb', 'ks']] : [['kb', 'ks'], ['vb', 'vs']];

  // 16-byte words of one tile of `src` into registers `src_w{t}`.
  const fragAt = (t: number) => `(sg + ${t * NSG}u) / ${NF}u * 16u`;
  const fragCol = (t: number) => `(sg + ${t * NSG}u) % ${NF}u * 16u`;
  const loadRegs = (src: string, base: string) => frag
    ? range(per).map((t) => `${src}_w${t} = subgroupMatrixLoad<${L}>(&${src}, ${base} + ${fragAt(t)} * D + ${fragCol(t)}, false, D);`).join('\n      ')
    : range(per).map((t) => {
    const guard = (t + 1) * WG > words ? `if (lid + ${t * WG}u < ${words}u) ` : '';
    return `${guard}{ ${src}_w${t} = ${src}[${base} / ${HW}u + lid + ${t * WG}u]; }`;
  }).join('\n      ');
  // Registers into the staged tile.
  const storeRegs = (src: string, dst: string) => frag
    ? range(per).map((t) => `subgroupMatrixStore(&${dst}, ${fragAt(t)} * KS + ${fragCol(t)}, ${src}_w${t}, false, KS);`).join('\n      ')
    : range(per).map((t) => {
    const guard = (t + 1) * WG > words ? `if (lid + ${t * WG}u < ${words}u) ` : '';
    return `${guard}{
        let c = lid + ${t * WG}u;
        let o = c / ${Q8}u * KS + (c % ${Q8}u) * ${HW}u;
        let w = ${src}_w${t};
${range(HW / 2).map((j) => `        let h${j} = bitcast<vec2<f16>>(${HW === 8 ? `w[${j}]` : 'w'}); ${dst}[o + ${2 * j}u] = h${j}.x; ${dst}[o + ${2 * j + 1}u] = h${j}.y;`).join('\n')}
      }`;
  }).join('\n      ');
  const tileBase = (itExpr: string) => `(kvbase + tile_kt(${itExpr}, start2, n_sink)) * D`;
  // Stages tile it+1 of `src` (its words are in registers) and, with lookahead, loads tile it+2.
  const loadNext = (src: string) => `if (it + 1u < n_tiles) {
      let nb1 = ${tileBase('it + 1u')};
      ${loadRegs(src, 'nb1')}
    }`;
  const short = v.lookahead === 'short';
  const stageNext = (src: string, dst: string) => short
    ? `if (it + 1u < n_tiles) {
      ${storeRegs(src, dst)}
    }`
    : v.lookahead
    ? `if (it + 1u < n_tiles) {
      ${storeRegs(src, dst)}
      if (it + 2u < n_tiles) {
        let nb2 = ${tileBase('it + 2u')};
        ${loadRegs(src, 'nb2')}
      }
    }`
    : `if (it + 1u < n_tiles) {
      let nb1 = ${tileBase('it + 1u')};
      ${loadRegs(src, 'nb1')}
      ${storeRegs(src, dst)}
    }`;

  // S = Q·Kᵀ: this subgroup's key blocks for both row blocks of the pair.
  const scoresSplit = range(NBH).map((j) => {
    const steps = range(NF).map((f) => {
      const load = `let kf${f} = subgroupMatrixLoad<${R}>(&ks, kblk * 16u * KS + ${f * 16}u, true, KS);`;
      const mma = f === 0
        ? `var a0 = subgroupMatrixMultiply<f32>(q0_0, kf0);\n      var a1 = subgroupMatrixMultiply<f32>(q1_0, kf0);`
        : `a0 = subgroupMatrixMultiplyAccumulate(q0_${f}, kf${f}, a0);\n      a1 = subgroupMatrixMultiplyAccumulate(q1_${f}, kf${f}, a1);`;
      return `${load}\n      ${mma}`;
    });
    return `{
      let kblk = h * ${NBH}u + ${j}u;
      ${steps.join('\n      ')}
      subgroupMatrixStore(&ss, pbase * SS + kblk * 16u, a0, false, SS);
      subgroupMatrixStore(&ss, (pbase + 16u) * SS + kblk * 16u, a1, false, SS);
    }`;
  }).join('\n    ');

  // qkEarly: the scores of the tile in ks into registers se{j}_{rb} (declared at function
  // scope), and their store into the score scratch at the top of the next iteration.
  const earlyMmas = range(NBH).map((j) => range(NF).map((f) => {
    const kf = `subgroupMatrixLoad<${R}>(&ks, (h * ${NBH}u + ${j}u) * 16u * KS + ${f * 16}u, true, KS)`;
    return f === 0
      ? `{ let kf = ${kf}; se${j}_0 = subgroupMatrixMultiply<f32>(q0_0, kf); se${j}_1 = subgroupMatrixMultiply<f32>(q1_0, kf); }`
      : `{ let kf = ${kf}; se${j}_0 = subgroupMatrixMultiplyAccumulate(q0_${f}, kf, se${j}_0); se${j}_1 = subgroupMatrixMultiplyAccumulate(q1_${f}, kf, se${j}_1); }`;
  }).join('\n    ')).join('\n    ');
  const earlyStore = range(NBH).map((j) => `subgroupMatrixStore(&ss, pbase * SS + (h * ${NBH}u + ${j}u) * 16u, se${j}_0, false, SS);
    subgroupMatrixStore(&ss, (pbase + 16u) * SS + (h * ${NBH}u + ${j}u) * 16u, se${j}_1, false, SS);`).join('\n    ');
  const earlyDecl = v.qkEarly || v.sched === 'b2o' ? range(NBH).map((j) => `  var se${j}_0: ${A};\n  var se${j}_1: ${A};`).join('\n') : '';
  // 'own-rows': this subgroup's row block against every key block of the tile.
  const scoresOwn = range(NB).map((kb) => `{
      ${range(NF).map((f) => `let kf${f} = subgroupMatrixLoad<${R}>(&ks, ${kb * 16}u * KS + ${f * 16}u, true, KS);
      ${f === 0 ? `var a = subgroupMatrixMultiply<f32>(qh_0, kf0);` : `a = subgroupMatrixMultiplyAccumulate(qh_${f}, kf${f}, a);`}`).join('\n      ')}
      subgroupMatrixStore(&ss, (pbase + h * 16u) * SS + ${kb * 16}u, a, false, SS);
    }`).join('\n    ');
  // Quads: row block h % 2 against key blocks (h / 2) * NB/2 ...
  const scoresQuad = range(NBH).map((j) => `{
      let kblk = h / 2u * ${NBH}u + ${j}u;
      ${range(NF).map((f) => `let kf${f} = subgroupMatrixLoad<${R}>(&ks, kblk * 16u * KS + ${f * 16}u, true, KS);
      ${f === 0 ? `var a = subgroupMatrixMultiply<f32>(qh_0, kf0);` : `a = subgroupMatrixMultiplyAccumulate(qh_${f}, kf${f}, a);`}`).join('\n      ')}
      subgroupMatrixStore(&ss, (pbase + h % 2u * 16u) * SS + kblk * 16u, a, false, SS);
    }`).join('\n    ');
  const own = v.qk === 'own-rows';
  const qLoads = own || quad
    ? range(NF).map((f) => `  let qh_${f} = subgroupMatrixLoad<${L}>(&qb, (bh * u.S + ${quad ? 'select(qr0, qr1, h % 2u == 1u)' : 'select(qr0, qr1, h == 1u)'}) * D + ${f * 16}u, false, D);`).join('\n')
    : [0, 1].map((rb) => range(NF).map((f) => `  let q${rb}_${f} = subgroupMatrixLoad<${L}>(&qb, (bh * u.S + qr${rb}) * D + ${f * 16}u, false, D);`).join('\n')).join('\n');
  const scores = v.ablate === 'no-qk' ? '' : quad ? scoresQuad : v.qGlobal ? `{\n${qLoads}\n    ${own ? scoresOwn : scoresSplit}\n    }` : own ? scoresOwn : scoresSplit;

  // Column of this lane's k-th score relative to its first (`lcol`).
  const col = (k: number) => (v.contig ? Math.floor(k / 4) * 4 * LPR + (k % 4) : k * LPR);
  const pExpr = (arg: string) => v.ablate === 'no-exp' ? `f16(${arg})` : v.expF16 ? `exp2(f16(${arg}))` : `f16(exp2(${arg}))`;

  // O fragments of this subgroup: o{rb}_{dd}, rows rb*16.. of the pair, d columns h*D/2 + dd*16.
  const oFrags = range(2).flatMap((rb) => range(NFG).map((dd) => ({ rb, dd, name: `o${rb}_${dd}` })));

  const pv = range(NB).map((kb) => `{
${range(2).map((rb) => `      let p${rb} = subgroupMatrixLoad<${L}>(&pw, (pbase + ${rb * 16}u) * PS + ${kb * 16}u, false, PS);`).join('\n')}
${range(NFG).map((dd) => `      {
        let vf = ${v.vGlobal
          ? `subgroupMatrixLoad<${R}>(&vb, (kvbase + kt + ${kb * 16}u) * D + dcol + ${dd * 16}u, false, D)`
          : `subgroupMatrixLoad<${R}>(&vs, ${kb * 16}u * KS + dcol + ${dd * 16}u, false, KS)`};
        o0_${dd} = subgroupMatrixMultiplyAccumulate(p0, vf, o0_${dd});
        o1_${dd} = subgroupMatrixMultiplyAccumulate(p1, vf, o1_${dd});
      }`).join('\n')}
    }`).join('\n    ');

  // Routes this subgroup's O through its 16-row slice of the score scratch, NB fragments at
  // a time; `body(rb, col)` runs per element with ss[el] the element, `r` its row in the block.
  const viaScratch = (body: (rb: number, dd: number, el: string, cc: string) => string) => {
    const chunks: string[] = [];
    const CH = quad ? 1 : NB; // fragments per trip through the scratch
    for (let c = 0; c * CH < oFrags.length; c++) {
      const fs = oFrags.slice(c * CH, c * CH + CH);
      chunks.push(`
    ${fs.map((o, j) => `subgroupMatrixStore(&ss, sc_base + ${j * 16}u, ${o.name}, false, SS);`).join('\n    ')}
    workgroupBarrier();
    for (var cc = cp; cc < 16u; cc += ${CPR}u) {
${fs.map((o, j) => `      ${body(o.rb, o.dd, `ss[sc_base + cr * SS + ${j * 16}u + cc]`, 'cc')}`).join('\n')}
    }
    workgroupBarrier();
    ${fs.map((o, j) => `${o.name} = subgroupMatrixLoad<${A}>(&ss, sc_base + ${j * 16}u, false, SS);`).join('\n    ')}
    workgroupBarrier();`);
    }
    return chunks.join('');
  };

  const b2 = v.sched === 'b2';
  // 'mma-only': no softmax, no staging after the first tile and no barriers in the key loop,
  // i.e. the multiplies and fragment loads of this structure alone.
  const mmaOnly = v.ablate === 'mma-only';
  const noStage = v.ablate === 'no-stage' || mmaOnly;
  const noBar = v.ablate === 'no-barrier' || mmaOnly;
  const noSoftmax = v.ablate === 'no-softmax' || mmaOnly;
  const bar = noBar ? '' : 'workgroupBarrier();';
  // Both schedules: the lane's scores, the lazy max update and P, then the row sum and the
  // workgroup's rescale vote (O through workgroup memory only when some row's max grew).
  const softmaxP = sgLaneSoftmaxWgsl({ E, col, xor, tile: 'it', pExpr, skip: noSoftmax, declareNeed: true });
  const rescaleVote = (comment: string) => `l = l * alpha + ps;
    if (part == 0u) { rowf[wr] = alpha; }
    let any_need = subgroupAny(need);
    if (lane == 0u) { flags[sg] = select(0u, 1u, any_need); }
    // ${comment}
    ${noBar ? '' : `let fl = workgroupUniformLoad(&flags);
    if (${range(NSG).map((s) => `fl[${s}] != 0u`).join(' || ')}) {
      ${viaScratch((rb, _dd, el) => `${el} *= rowf[pbase + ${rb * 16}u + cr];`)}
    }`}`;
  const loopB3 = `  if (n_tiles > 0u) {
    let nb0 = ${tileBase('0u')};
    ${stagedArrays.map(([src, dst]) => `${loadRegs(src, 'nb0')}\n      ${storeRegs(src, dst)}`).join('\n    ')}
    ${v.lookahead === true ? `if (n_tiles > 1u) {
      let nb1 = ${tileBase('1u')};
      ${stagedArrays.map(([src]) => loadRegs(src, 'nb1')).join('\n      ')}
    }` : ''}
  }
  workgroupBarrier();

  for (var it = 0u; it < n_tiles; it++) {
    let kt = tile_kt(it, start2, n_sink);
    ${short && v.ablate !== 'no-stage' ? loadNext('kb') : ''}
    ${scores}
    // Scores visible to the softmax lanes; every subgroup is done with this K tile.
    ${bar}
    ${v.ablate === 'no-stage' ? '' : stageNext('kb', 'ks')}
    ${softmaxP}
    ${rescaleVote('P, the next K tile and the rescale votes visible to all.')}
    ${short && !v.vGlobal && v.ablate !== 'no-stage' ? loadNext('vb') : ''}
    ${v.ablate === 'no-pv' ? '' : pv}
    // Every subgroup is done with this V tile and P.
    ${bar}
    ${v.vGlobal || v.ablate === 'no-stage' ? '' : stageNext('vb', 'vs')}
  }`;
  const b2Stage = `${noStage ? '' : `if (it + 1u < n_tiles) {
      ${v.lookahead === false ? `let nb1 = ${tileBase('it + 1u')};
      ${loadRegs('kb', 'nb1')}` : ''}
      ${storeRegs('kb', 'ks')}
    }
    ${v.vGlobal ? '' : `${v.lookahead === false ? `{
      let nbv = ${tileBase('it')};
      ${loadRegs('vb', 'nbv')}
    }` : ''}
    ${storeRegs('vb', 'vs')}`}
    ${v.lookahead === true ? `if (it + 2u < n_tiles) {
      let nb2 = ${tileBase('it + 2u')};
      ${loadRegs('kb', 'nb2')}
    }
    ${v.vGlobal ? '' : `if (it + 1u < n_tiles) {
      let nbv = ${tileBase('it + 1u')};
      ${loadRegs('vb', 'nbv')}
    }`}` : ''}`}`;
  const loopB2 = `  if (n_tiles > 0u) {
    let nb0 = ${tileBase('0u')};
    ${loadRegs('kb', 'nb0')}
    ${storeRegs('kb', 'ks')}
    ${v.lookahead === true ? `if (n_tiles > 1u) {
      let nb1 = ${tileBase('1u')};
      ${loadRegs('kb', 'nb1')}
    }
    ${v.vGlobal ? '' : loadRegs('vb', 'nb0')}` : ''}
  }
  workgroupBarrier();
${v.qkEarly ? `${earlyDecl}
  if (n_tiles > 0u) {
    ${earlyMmas}
  }` : ''}

  for (var it = 0u; it < n_tiles; it++) {
    let kt = tile_kt(it, start2, n_sink);
    ${short && !noStage ? `${loadNext('kb')}
    ${v.vGlobal ? '' : `{
      let nbv = ${tileBase('it')};
      ${loadRegs('vb', 'nbv')}
    }`}` : ''}
    ${v.qkEarly ? earlyStore : scores}
    // Scores visible to the softmax lanes; every subgroup is done with this K tile and
    // (in the previous tile's P.V) with the V tile.
    ${bar}
    ${v.stageLate ? '' : b2Stage}
    ${softmaxP}
    ${v.stageLate ? b2Stage : ''}
    ${rescaleVote('P, the next K tile, this V tile and the rescale votes visible to all.')}
    ${v.qkEarly ? `// The next tile's scores (K staged after this tile's Q.K^T; garbage past the last tile, unused).
    ${earlyMmas}` : ''}
    ${v.ablate === 'no-pv' ? '' : pv}
  }`;
  // Loop top: S(j) visible in ss, K(j+1) staged, K(j+2) and V(j) in registers.
  const loopB2o = `${earlyDecl}
  if (n_tiles > 0u) {
    let nb0 = ${tileBase('0u')};
    ${loadRegs('kb', 'nb0')}
    ${storeRegs('kb', 'ks')}
    if (n_tiles > 1u) {
      let nb1 = ${tileBase('1u')};
      ${loadRegs('kb', 'nb1')}
    }
    ${loadRegs('vb', 'nb0')}
  }
  workgroupBarrier();
  if (n_tiles > 0u) {
    ${scores}
  }
  // S(0) visible; every subgroup is done with K(0).
  workgroupBarrier();
  if (n_tiles > 1u) {
    ${storeRegs('kb', 'ks')}
    if (n_tiles > 2u) {
      let nb2 = ${tileBase('2u')};
      ${loadRegs('kb', 'nb2')}
    }
  }
  workgroupBarrier();

  for (var it = 0u; it < n_tiles; it++) {
    let kt = tile_kt(it, start2, n_sink);
    let more = it + 1u < n_tiles;
    // The next tile's Q·Kᵀ into registers: its multiplies overlap the softmax below.
    if (more) {
    ${earlyMmas}
    }
    ${softmaxP}
    // V(it) staged (V(it - 1) died at the last barrier), V(it + 1) fetched.
    ${storeRegs('vb', 'vs')}
    if (more) {
      let nbv = ${tileBase('it + 1u')};
      ${loadRegs('vb', 'nbv')}
    }
    ${rescaleVote('P, V(it) and the rescale votes visible to all; every score of S(it) read.')}
    if (more) {
    ${earlyStore}
    }
    ${pv}
    // K(it + 1) is done with (its Q·Kᵀ ran before the softmax): K(it + 2) staged, K(it + 3) fetched.
    if (it + 2u < n_tiles) {
      ${storeRegs('kb', 'ks')}
      if (it + 3u < n_tiles) {
        let nb3 = ${tileBase('it + 3u')};
        ${loadRegs('kb', 'nb3')}
      }
    }
    // S(it + 1) and K(it + 2) visible; P and V(it) read by every subgroup.
    workgroupBarrier();
  }`;
  const regDecl = range(per).map((t) => stagedArrays.map(([src]) => `  var ${src}_w${t}: ${frag ? L : unitType};`).join('\n')).join('\n');

  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, subgroup_uniformity);
${sgPrefillHeader(frag ? 'f16' : unitType, v.vGlobal || frag ? 'f16' : unitType)}
const D = ${D}u;
const KT = ${KT}u;
const BQ = ${sgWideRows(v)}u;
const KS = ${KS}u;
const PS = ${PS}u;
const SS = ${SS}u;
const LPR = ${LPR}u;
${sgSoftmaxConsts(v.tau)}
var<workgroup> ks: array<f16, ${KT * KS}>;
${v.vGlobal ? '' : `var<workgroup> vs: array<f16, ${KT * KS}>;`}
var<workgroup> pw: array<f16, ${sgWideRows(v) * PS}>;
var<workgroup> ss: array<f32, ${sgWideRows(v) * SS}>;
var<workgroup> rowf: array<f32, ${sgWideRows(v)}>;
var<workgroup> flags: array<u32, ${NSG}>;

${SG_TILE_AND_MASK_WGSL}

${sgPrefillEntry(WG, v.headGroup ?? 0)}
  // Pair p of the workgroup, half h of the pair.
  let pr = sg / ${G}u;
  let h = sg % ${G}u;
  let pbase = pr * 32u; // the pair's first row in the workgroup's scratch rows
  let dcol = h * ${D / G}u;
  // Row blocks past the last query row recompute the last 16 rows (in bounds) and store nothing.
  let qs0 = w0 + pbase;
  let qs1 = qs0 + 16u;
  let qr0 = min(qs0, u.S - 16u);
  let qr1 = min(qs1, u.S - 16u);
  // This lane's softmax row: row r of the pair's row block h.
  let r = lane / LPR;
  let part = lane % LPR;
  let lcol = part * ${v.contig ? 4 : 1}u;
  let grow = h * ${RPS}u + r; // the softmax row within the group
  let wr = pbase + grow;
  let qown = select(qr0, qr1, grow >= 16u);
  let i = qown + grow % 16u;
  let own_valid = select(qs0, qs1, grow >= 16u) < u.S;
  // A 16x16 fragment walked by a subgroup's lanes: row cr, columns cp, cp + CPR, ...
  let cr = lane / ${CPR}u;
  let cp = lane % ${CPR}u;
  let pos = i32(u.kvLen) - i32(u.S) + i32(i);
  let sc_base = ${quad ? '(pbase + h % 2u * 16u) * SS + h / 2u * 16u' : '(pbase + h * 16u) * SS'};

${v.qGlobal ? '' : qLoads}
${oFrags.map((o) => `  var ${o.name}: ${A};`).join('\n')}
  var m = NEG;
  var l = 0.0;

${SG_KEY_RANGE_WGSL}
${regDecl}
${v.sched === 'b2o' ? loopB2o : b2 ? loopB2 : loopB3}
  if (part == 0u) { rowf[wr] = select(0.0, 1.0 / l, l > 0.0); }
  if (own_valid && part == 0u) { lseb[bh * u.S + i] = select(neg_inf(), (m + log2(l)) * LN2, l > 0.0); }
  ${viaScratch((rb, dd, el, cc) => `if (qs${rb} < u.S) { ob[(bh * u.S + qr${rb} + cr) * D + dcol + ${dd * 16}u + ${cc}] = f16(${el} * rowf[pbase + ${rb * 16}u + cr]); }`)}
}
`;
}

export function sgWideProgram(v: SgWideVariant, rw?: SourceRewrite): Program {
  return sgPrefillProgram(sgWideKey(v), () => sgWideSource(v), rw);
}

/**
 * Runs one variant (same contract as runSgFlash: f16 out [B, Hq, S, D] and f32 lse
 * [B, Hq, S]). The caller checks the adapter (sgWideUnsupported); the variant, the shape and
 * the workgroup memory are checked here.
 */
export function runSgWide(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, v: Tensor, variant: SgWideVariant, rw?: SourceRewrite): { out: Tensor; lse: Tensor } {
  checkSgWideVariant(variant, p.op);
  return dispatchSgPrefill(be, p, q, k, v, { program: sgWideProgram(variant, rw), workgroupBytes: sgWideLayout(variant).bytes, rows: sgWideRows(variant), shapeCheck: { name: 'wide', KT: variant.KT } });
}

/**
 * attention() through the wide kernel alone (no fallback): resolves and checks the problem
 * like attention() does, then throws an ArgumentError saying why when the kernel cannot
 * take it. `rw` rewrites the WGSL (the tests emulate subgroup matrices on lavapipe).
 */
export function sgWideAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}, variant: Omit<SgWideVariant, 'D' | 'sgSize'> = SG_WIDE_DEFAULT, rw?: SourceRewrite): { out: Tensor; lse: Tensor } {
  const p = resolveProblem('attention', q, k, v, opts);
  const be = asGpu(p.backend, p.op);
  const why = sgWideUnsupported(be, p, variant, rw !== undefined);
  if (why) throw new ArgumentError(p.op, 'wide subgroup-matrix prefill', why, 'unsupported problem');
  return runSgWide(be, p, q, k, v, { ...variant, D: p.D, sgSize: rw ? 32 : be.caps.subgroupMaxSize }, rw);
}
