import { ArgumentError, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { AttentionOptions } from '../options.js';
import { resolveProblem, type Problem } from '../problem.js';
import { asGpu } from './common.js';
import { dispatchSgPrefill, SG_KEY_RANGE_WGSL, SG_TILE_AND_MASK_WGSL, sgLaneSoftmaxWgsl, sgPrefillEntry, sgPrefillHeader, sgPrefillProgram, sgPrefillWhyNot, sgSoftmaxConsts, type SourceRewrite } from './sg-prefill-common.js';

/**
 * f16 flash-attention prefill on subgroup matrices where two teams of subgroups take turns
 * ("ping-pong"): while one team multiplies (P·V of the previous key tile, Q·Kᵀ of this one)
 * the other runs its softmax, so the tensor cores and the ALUs of an SM work at the same
 * time instead of in alternating phases between barriers.
 *
 * Why: WGSL result fragments have no per-row access, so the softmax reads the scores back
 * from workgroup memory between two barriers. In sgflash-wide.ts every subgroup does the
 * same phase between the same barriers, so the tensor pipes sit idle through the softmax and
 * the ALUs through the multiplies (its ablations on the H200: dropping the softmax saved
 * 20% of the time, dropping the multiplies 30%).
 *
 * Layout: NSG subgroups = 2 teams of NSG/4 pairs; each pair owns 32 query rows exactly as in
 * the wide kernel (both row blocks' Q resident, keys split in Q·Kᵀ, D split in P·V, lazy
 * rescale). Both teams share one staged K and one staged V tile (single-buffered: workgroup
 * memory is 48 KB on the H200). Step s: team 0 runs phase s, team 1 phase s-1, where phase
 * 2j multiplies (Q·Kᵀ of tile j, P·V of tile j-1) and phase 2j+1 is tile j's softmax.
 * A barrier ends every step (with the rescale vote of the team that ran its softmax), and
 * after every odd step, when both teams are done with K(j) and V(j-1), K(j+1) and V(j) are
 * stored from registers (loaded a tile ahead) behind one more barrier: three per key tile.
 */
export interface SgPingPongVariant {
  D: number;
  /** Subgroups per workgroup: 8 (two teams of two pairs, 128 rows) or 4 (two teams of one pair, 64 rows). */
  NSG: number;
  /** f16 elements of padding per staged K/V row and per P row. */
  pad: number;
  /** f32 elements of padding per score row. */
  spad: number;
  /** Lazy rescale threshold in log2 units (0: textbook online softmax). */
  tau: number;
  /** Multiply phase order: Q·Kᵀ first (its score stores overlap P·V) or P·V first. */
  order: 'qk-pv' | 'pv-qk';
  sgSize: number;
}

/** 128 rows per workgroup, 32-key tiles (48.7 KB of workgroup memory at D128). */
export const SG_PINGPONG_DEFAULT: Omit<SgPingPongVariant, 'D' | 'sgSize'> = { NSG: 8, pad: 8, spad: 8, tau: 8, order: 'qk-pv' };

/** Keys per tile: each subgroup of a pair scores one 16-key block. */
const KT = 32;

export interface SgPingPongLayout { KS: number; PS: number; SS: number; rows: number; bytes: number }

export function sgPingPongLayout(v: SgPingPongVariant): SgPingPongLayout {
  const KS = v.D + v.pad;
  const PS = KT + v.pad;
  const SS = KT + v.spad;
  const rows = v.NSG * 16;
  return { KS, PS, SS, rows, bytes: 2 * KT * KS * 2 + rows * PS * 2 + rows * SS * 4 + rows * 4 + v.NSG * 4 };
}

export function sgPingPongKey(v: SgPingPongVariant): string {
  return `attention/prefill-sgpp/D${v.D}/sg${v.NSG}x${v.sgSize}/pad${v.pad}/sp${v.spad}/lazy${v.tau}/${v.order}`;
}

export function checkSgPingPongVariant(v: SgPingPongVariant, op = 'attention'): void {
  const bad = (what: string, want: string, got: unknown) => { throw new ArgumentError(op, `ping-pong subgroup-matrix variant ${what}`, want, got); };
  if (v.D % 32 !== 0 || v.D < 32 || v.D > 128) bad('D', 'a multiple of 32 up to 128', v.D);
  if (![4, 8].includes(v.NSG)) bad('NSG', '4 or 8', v.NSG);
  if (v.pad % 8 !== 0 || v.pad < 0) bad('pad', 'a multiple of 8 halves', v.pad);
  if (v.spad % 4 !== 0 || v.spad < 0) bad('spad', 'a multiple of 4 floats', v.spad);
  // Softmax lanes take runs of 4 scores: 32 keys over (subgroup size / 16) lanes per row.
  if (v.sgSize < 16 || v.sgSize > 64 || v.sgSize % 16 !== 0) bad('subgroup size', '16, 32, 48 or 64', v.sgSize);
  if ((KT / (v.sgSize / 16)) % 4 !== 0) bad('subgroup size', 'one that leaves runs of 4 scores per lane', v.sgSize);
  if (!(v.tau >= 0 && v.tau <= 12)) bad('tau', 'between 0 and 12 (P stays below 2^tau in f16)', v.tau);
  if (v.order !== 'qk-pv' && v.order !== 'pv-qk') bad('order', "'qk-pv' or 'pv-qk'", v.order);
}

/** Why this problem cannot run on the ping-pong kernel on this backend (null: it can). */
export function sgPingPongUnsupported(be: WebGpuBackend, p: Problem, variant: Omit<SgPingPongVariant, 'D' | 'sgSize'> = SG_PINGPONG_DEFAULT, emulated = false): string | null {
  const v: SgPingPongVariant = { ...variant, D: p.D, sgSize: emulated ? 32 : be.caps.subgroupMaxSize };
  return sgPrefillWhyNot(be, p, KT, emulated, { check: () => checkSgPingPongVariant(v, p.op), bytes: sgPingPongLayout(v).bytes });
}

const L = 'subgroup_matrix_left<f16, 16, 16>';
const R = 'subgroup_matrix_right<f16, 16, 16>';
const A = 'subgroup_matrix_result<f32, 16, 16>';
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export function sgPingPongSource(v: SgPingPongVariant): string {
  checkSgPingPongVariant(v);
  const { D, NSG, sgSize } = v;
  const { KS, PS, SS, rows } = sgPingPongLayout(v);
  const NF = D / 16;
  const NFH = NF / 2; // d fragments per subgroup in P·V
  const LPR = (2 * sgSize) / 32; // softmax lanes per row
  const CPR = sgSize / 16; // lanes per row when a subgroup walks a 16x16 fragment
  const E = KT / LPR; // scores per lane per tile
  const WG = NSG * sgSize;
  const xor = range(Math.log2(LPR)).map((k) => 1 << k);
  const Q8 = D / 8; // 16-byte words per K/V row
  const words = (KT * D) / 8;
  const per = Math.ceil(words / WG);

  // One tile of K or V: 16-byte words into registers, registers into the staged tile.
  const guard = (t: number) => ((t + 1) * WG > words ? `if (lid + ${t * WG}u < ${words}u) ` : '');
  const loadRegs = (src: string, tileExpr: string) => `{
      let base = (kvbase + tile_kt(${tileExpr}, start2, n_sink)) * D / 8u;
      ${range(per).map((t) => `${guard(t)}{ ${src}_w${t} = ${src}[base + lid + ${t * WG}u]; }`).join('\n      ')}
    }`;
  const storeRegs = (src: string, dst: string) => range(per).map((t) => `${guard(t)}{
        let c = lid + ${t * WG}u;
        let o = c / ${Q8}u * KS + (c % ${Q8}u) * 8u;
        let w = ${src}_w${t};
${range(4).map((j) => `        let h${j} = bitcast<vec2<f16>>(w[${j}]); ${dst}[o + ${2 * j}u] = h${j}.x; ${dst}[o + ${2 * j + 1}u] = h${j}.y;`).join('\n')}
      }`).join('\n      ');

  // S = Q·Kᵀ of tile j: subgroup h of the pair scores key block h for both row blocks.
  const qk = `{
      ${range(NF).map((f) => `let kf${f} = subgroupMatrixLoad<${R}>(&ks, h * 16u * KS + ${f * 16}u, true, KS);
      ${f === 0
        ? 'var a0 = subgroupMatrixMultiply<f32>(q0_0, kf0);\n      var a1 = subgroupMatrixMultiply<f32>(q1_0, kf0);'
        : `a0 = subgroupMatrixMultiplyAccumulate(q0_${f}, kf${f}, a0);\n      a1 = subgroupMatrixMultiplyAccumulate(q1_${f}, kf${f}, a1);`}`).join('\n      ')}
      subgroupMatrixStore(&ss, pbase * SS + h * 16u, a0, false, SS);
      subgroupMatrixStore(&ss, (pbase + 16u) * SS + h * 16u, a1, false, SS);
    }`;
  // O += P·V of the previous tile: this subgroup's half of D for both row blocks.
  const pv = range(KT / 16).map((kb) => `{
${range(2).map((rb) => `      let p${rb} = subgroupMatrixLoad<${L}>(&pw, (pbase + ${rb * 16}u) * PS + ${kb * 16}u, false, PS);`).join('\n')}
${range(NFH).map((dd) => `      {
        let vf = subgroupMatrixLoad<${R}>(&vs, ${kb * 16}u * KS + dcol + ${dd * 16}u, false, KS);
        o0_${dd} = subgroupMatrixMultiplyAccumulate(p0, vf, o0_${dd});
        o1_${dd} = subgroupMatrixMultiplyAccumulate(p1, vf, o1_${dd});
      }`).join('\n')}
    }`).join('\n    ');
  const multiply = v.order === 'qk-pv'
    ? `if (j < n_tiles) ${qk}
        if (j >= 1u) {
    ${pv}
        }`
    : `if (j >= 1u) {
    ${pv}
        }
        if (j < n_tiles) ${qk}`;

  // Runs of 4 adjacent scores per lane (16-byte reads), LPR lanes per row.
  const col = (k: number) => Math.floor(k / 4) * 4 * LPR + (k % 4);
  const softmax = `let kt = tile_kt(j, start2, n_sink);
    ${sgLaneSoftmaxWgsl({ E, col, xor, tile: 'j', pExpr: (arg) => `f16(exp2(${arg}))`, skip: false, declareNeed: false })}
    l = l * alpha + ps;
    if (part == 0u) { rowf[wr] = alpha; }
    ran = true;`;

  // This subgroup's O through its 16-row slice of the score scratch, 2 fragments at a time;
  // `body` runs per element with `el` the element. Every subgroup meets the barriers; only
  // those with `cond` move their fragments.
  const oFrags = range(2).flatMap((rb) => range(NFH).map((dd) => ({ rb, dd, name: `o${rb}_${dd}` })));
  const viaScratch = (cond: string, body: (rb: number, dd: number, el: string) => string) => {
    const chunks: string[] = [];
    for (let c = 0; c * 2 < oFrags.length; c++) {
      const fs = oFrags.slice(c * 2, c * 2 + 2);
      chunks.push(`
    if (${cond}) {
      ${fs.map((o, j) => `subgroupMatrixStore(&ss, sc_base + ${j * 16}u, ${o.name}, false, SS);`).join('\n      ')}
    }
    workgroupBarrier();
    if (${cond}) {
      for (var cc = cp; cc < 16u; cc += ${CPR}u) {
${fs.map((o, j) => `        ${body(o.rb, o.dd, `ss[sc_base + cr * SS + ${j * 16}u + cc]`)}`).join('\n')}
      }
    }
    workgroupBarrier();
    if (${cond}) {
      ${fs.map((o, j) => `${o.name} = subgroupMatrixLoad<${A}>(&ss, sc_base + ${j * 16}u, false, SS);`).join('\n      ')}
    }
    workgroupBarrier();`);
    }
    return chunks.join('');
  };
  const regDecl = range(per).map((t) => `  var kb_w${t}: vec4<u32>;\n  var vb_w${t}: vec4<u32>;`).join('\n');

  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, subgroup_uniformity);
${sgPrefillHeader('vec4<u32>', 'vec4<u32>')}
const D = ${D}u;
const KT = ${KT}u;
const BQ = ${rows}u;
const KS = ${KS}u;
const PS = ${PS}u;
const SS = ${SS}u;
${sgSoftmaxConsts(v.tau)}
var<workgroup> ks: array<f16, ${KT * KS}>;
var<workgroup> vs: array<f16, ${KT * KS}>;
var<workgroup> pw: array<f16, ${rows * PS}>;
var<workgroup> ss: array<f32, ${rows * SS}>;
var<workgroup> rowf: array<f32, ${rows}>;
var<workgroup> flags: array<u32, ${NSG}>;

${SG_TILE_AND_MASK_WGSL}

${sgPrefillEntry(WG)}
  // Team of this subgroup (subgroups i and i + NSG/2 share an SM scheduler on NVIDIA, one of
  // each team), its pair and its half of the pair.
  let team = sg / ${NSG / 2}u;
  let pr = sg / 2u;
  let h = sg % 2u;
  let pbase = pr * 32u;
  let dcol = h * ${D / 2}u;
  // Row blocks past the last query row recompute the last 16 rows (in bounds) and store nothing.
  let qs0 = w0 + pbase;
  let qs1 = qs0 + 16u;
  let qr0 = min(qs0, u.S - 16u);
  let qr1 = min(qs1, u.S - 16u);
  // This lane's softmax row: row r of the pair's row block h.
  let r = lane / ${LPR}u;
  let part = lane % ${LPR}u;
  let lcol = part * 4u;
  let grow = h * 16u + r;
  let wr = pbase + grow;
  let i = select(qr0, qr1, grow >= 16u) + grow % 16u;
  let own_valid = select(qs0, qs1, grow >= 16u) < u.S;
  let cr = lane / ${CPR}u;
  let cp = lane % ${CPR}u;
  let pos = i32(u.kvLen) - i32(u.S) + i32(i);
  let sc_base = (pbase + h * 16u) * SS;

${[0, 1].map((rb) => range(NF).map((f) => `  let q${rb}_${f} = subgroupMatrixLoad<${L}>(&qb, (bh * u.S + qr${rb}) * D + ${f * 16}u, false, D);`).join('\n')).join('\n')}
${oFrags.map((o) => `  var ${o.name}: ${A};`).join('\n')}
  var m = NEG;
  var l = 0.0;

${SG_KEY_RANGE_WGSL}
${regDecl}
  // K(0) staged; K(1) and V(0) in registers.
  if (n_tiles > 0u) {
    ${loadRegs('kb', '0u')}
    ${storeRegs('kb', 'ks')}
    if (n_tiles > 1u) ${loadRegs('kb', '1u')}
    ${loadRegs('vb', '0u')}
  }
  workgroupBarrier();

  let n_steps = 2u * n_tiles + 2u;
  for (var s = 0u; s < n_steps; s++) {
    var need = false;
    var ran = false;
    if (s >= team) {
      let ph = s - team;
      let j = ph / 2u;
      if ((ph & 1u) == 0u) {
        ${multiply}
      } else if (j < n_tiles) {
        ${softmax}
      }
    }
    let any_need = subgroupAny(need);
    if (lane == 0u) { flags[sg] = select(0u, 1u, any_need); }
    // The softmax team's P and votes visible to all; the multiplying team's scores too.
    let fl = workgroupUniformLoad(&flags);
    if (${range(NSG).map((k) => `fl[${k}] != 0u`).join(' || ')}) {
      ${viaScratch('ran', (rb, _dd, el) => `${el} *= rowf[pbase + ${rb * 16}u + cr];`)}
    }
    if ((s & 1u) == 1u) {
      // Both teams are done with K(j) and V(j - 1): stage K(j + 1) and V(j), fetch K(j + 2) and V(j + 1).
      let j = s / 2u;
      if (j + 1u < n_tiles) {
      ${storeRegs('kb', 'ks')}
      }
      if (j < n_tiles) {
      ${storeRegs('vb', 'vs')}
      }
      if (j + 2u < n_tiles) ${loadRegs('kb', 'j + 2u')}
      if (j + 1u < n_tiles) ${loadRegs('vb', 'j + 1u')}
      workgroupBarrier();
    }
  }
  if (part == 0u) { rowf[wr] = select(0.0, 1.0 / l, l > 0.0); }
  if (own_valid && part == 0u) { lseb[bh * u.S + i] = select(neg_inf(), (m + log2(l)) * LN2, l > 0.0); }
  ${viaScratch('true', (rb, dd, el) => `if (qs${rb} < u.S) { ob[(bh * u.S + qr${rb} + cr) * D + dcol + ${dd * 16}u + cc] = f16(${el} * rowf[pbase + ${rb * 16}u + cr]); }`)}
}
`;
}

export function sgPingPongProgram(v: SgPingPongVariant, rw?: SourceRewrite): Program {
  return sgPrefillProgram(sgPingPongKey(v), () => sgPingPongSource(v), rw);
}

/** Runs one variant (f16 out [B, Hq, S, D] and f32 lse [B, Hq, S]); the caller checks the adapter (sgPingPongUnsupported). */
export function runSgPingPong(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, v: Tensor, variant: SgPingPongVariant, rw?: SourceRewrite): { out: Tensor; lse: Tensor } {
  checkSgPingPongVariant(variant, p.op);
  const layout = sgPingPongLayout(variant);
  return dispatchSgPrefill(be, p, q, k, v, { program: sgPingPongProgram(variant, rw), workgroupBytes: layout.bytes, rows: layout.rows, shapeCheck: { name: 'ping-pong', KT } });
}

/**
 * attention() through the ping-pong kernel alone (no fallback): throws an ArgumentError
 * saying why when it cannot take the problem. `rw` rewrites the WGSL (the tests emulate
 * subgroup matrices on lavapipe).
 */
export function sgPingPongAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}, variant: Omit<SgPingPongVariant, 'D' | 'sgSize'> = SG_PINGPONG_DEFAULT, rw?: SourceRewrite): { out: Tensor; lse: Tensor } {
  const p = resolveProblem('attention', q, k, v, opts);
  const be = asGpu(p.backend, p.op);
  const why = sgPingPongUnsupported(be, p, variant, rw !== undefined);
  if (why) throw new ArgumentError(p.op, 'ping-pong subgroup-matrix prefill', why, 'unsupported problem');
  return runSgPingPong(be, p, q, k, v, { ...variant, D: p.D, sgSize: rw ? 32 : be.caps.subgroupMaxSize }, rw);
}
