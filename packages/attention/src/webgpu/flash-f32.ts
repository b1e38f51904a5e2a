import { ArgumentError, gridFor, packUniforms, uniformStruct, type Program, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { Problem } from '../problem.js';
import { checkWorkgroupBytes, headGroupOrderWgsl, KEY_BOUNDS_WGSL, keyTilesWgsl, NEG, NEG_INF_FN } from './common.js';

/**
 * f32 flash-attention prefill built like the register-blocked f32 matmul
 * (packages/tensor/src/webgpu/kernels/matmul-tiled.ts), FlashAttention-2 forward.
 *
 * A workgroup of TX x TY invocations owns BQ query rows of one (batch, head) and walks the
 * key tiles of BK keys the mask can reach. Per tile:
 * - S = Q Kᵀ (BQ x BK) as a matmul over D in slices of 16: the Q and K slices are staged
 *   transposed ([dim][row]) in workgroup memory, each invocation keeps TM rows x SN keys of S
 *   in registers (rows ty*4 + g*4*TY + i, keys tx*4 + h*4*TX + j: vec4 reads that neighbours
 *   share or read from consecutive banks). Q is pre-scaled by scale*log2(e) while staged.
 * - Online softmax in registers: the TX invocations of a row (consecutive lanes) combine
 *   their row maxima with subgroup shuffles when one subgroup holds them (SG), else through
 *   workgroup memory. Each invocation keeps its own partial row sum (rescaled by the shared
 *   alpha), summed across the row only once at the end.
 * - P (BQ x BK) goes to workgroup memory row-major (row stride BK/4+1 vec4 so the two rows
 *   a subgroup reads sit in different banks), then O (BQ x D, TM rows x D/TX dims per
 *   invocation) += P V with V staged in slices of 16 keys, aliasing the Q/K slice memory.
 * Masks: causal (queries at the end of the keys), window, sinks+window; tiles fully inside
 * the mask skip the per-element test. Block lists and additive bias stay on the plain kernel.
 *
 * The H200's pick (chooseFlashF32Variant) adds to this: 128-key tiles whose P goes through
 * memory in two 64-key passes (8x8 scores per invocation, as the matmul's 8x8 outputs),
 * unpadded XOR-swizzled P and Q/K slices, 32-key V slices, and the query tiles issued
 * longest-first within groups of 8 heads: 4.02 ms at B1 H32 S4096 D128 causal (34 TFLOP/s)
 * against 14.9 ms for the plain kernel.
 */
export interface FlashF32Variant {
  D: number;
  BQ: number;
  BK: number;
  /** Invocations sharing a query row (thread-grid columns). */
  TX: number;
  /** Thread-grid rows; TX * TY invocations per workgroup. */
  TY: number;
  /** Row maxima and sums combined with subgroupShuffleXor (needs a subgroup size >= TX). */
  SG: boolean;
  /** The next Q/K or V slice is loaded into registers while the current one is multiplied. */
  PF: boolean;
  /**
   * With PF: the next tile's first Q/K slice is loaded during this tile's last V slice.
   * Slower on the H200 (4.51 vs 4.22 ms, round 3): those registers stay live through P V.
   */
  XT?: boolean;
  /** Query tiles issued last-first (causal: the longest rows start first). */
  REV: boolean;
  /**
   * Q/K slice loads split over invocations row-fastest: the transposed writes into workgroup
   * memory then land in consecutive banks (else 4-way conflicts), at the price of 16-byte
   * global reads from 32 different rows per subgroup instead of 4 rows of 64 bytes.
   */
  AR?: boolean;
  /**
   * P goes through workgroup memory in passes of 4*TX keys (one vec4 of each invocation's
   * keys per pass, the V loop after each), so a key tile of BK = 8*TX keys (8x8 scores per
   * invocation at BQ 128, TX 16: the matmul's 8x8 blocking) needs P memory for half of it.
   */
  SPLIT?: boolean;
  /** P rows unpadded, vec4 columns XOR-swizzled by row group (bank spread without the padding). */
  SWZ?: boolean;
  /**
   * With REV: last-first within groups of HG (batch, head) pairs, so the workgroups resident
   * at once share the K/V of a few heads in L2 (0: across all heads).
   */
  HG?: number;
  /**
   * Q/K slices staged with XOR-swizzled vec4 columns: the transposed scalar writes land in
   * distinct banks (else 4-way conflicts) while global reads stay coalesced (unlike AR).
   */
  QSW?: boolean;
  /** P V written row by row (one P vec4 live at a time) instead of all P loads first. */
  PR?: boolean;
  /** Keys per staged V slice (16 by default; 32 halves the V loop's barriers). */
  VS?: 16 | 32;
}

/** Dims (and keys) per staged slice. */
const SL = 16;

const FIELDS = [
  ['B', 'u32'], ['Hq', 'u32'], ['Hkv', 'u32'], ['group', 'u32'],
  ['S', 'u32'], ['cap', 'u32'], ['kvLen', 'u32'], ['qTiles', 'u32'],
  ['qscale', 'f32'], ['causal', 'u32'], ['window', 'u32'], ['sinks', 'u32'],
] as const;

interface Derived {
  NT: number;
  TM: number;
  G: number;
  SN: number;
  HS: number;
  D4: number;
  /** vec4 columns of O, padded to a multiple of TX. */
  DP4: number;
  /** O vec4 columns per invocation per row. */
  DN4: number;
  /** P passes per key tile, keys per pass. */
  NPASS: number;
  PK: number;
  /** P row stride in vec4. */
  PS: number;
  /** vec4 size of the aliased slice region. */
  A4: number;
}

function derive(v: FlashF32Variant): Derived {
  const NT = v.TX * v.TY;
  const TM = v.BQ / v.TY;
  const SN = v.BK / v.TX;
  const D4 = v.D / 4;
  const DP4 = Math.ceil(D4 / v.TX) * v.TX;
  const NPASS = v.SPLIT ? v.BK / v.TX / 4 : 1;
  const PK = v.BK / NPASS;
  const PS = PK / 4 + (v.SWZ ? 0 : 1);
  const qk = (SL * v.BQ) / 4 + (SL * v.BK) / 4;
  const red = v.SG ? 0 : Math.ceil((v.BQ * v.TX) / 4);
  return { NT, TM, G: TM / 4, SN, HS: SN / 4, D4, DP4, DN4: DP4 / v.TX, NPASS, PK, PS, A4: Math.max(qk, (v.VS ?? SL) * DP4, red) };
}

/** Why a variant is invalid, or null. */
export function flashF32VariantProblem(v: FlashF32Variant): string | null {
  const { BQ, BK, TX, TY, D } = v;
  if ([BQ, BK, TX, TY, D].some((x) => !Number.isInteger(x) || x <= 0)) return 'all sizes must be positive integers';
  if (D % SL) return `D must be a multiple of ${SL}`;
  if (TX * TY > 256) return 'at most 256 invocations';
  if (![1, 2, 4, 8, 16, 32].includes(TX)) return 'TX must be a power of two up to 32';
  if (BQ % TY || (BQ / TY) % 4) return 'BQ/TY (rows per invocation) must be a multiple of 4';
  if (BK % TX || (BK / TX) % 4 || BK % SL) return 'BK/TX (keys per invocation) must be a multiple of 4 and BK of 16';
  if (v.SPLIT && (4 * TX) % SL) return 'SPLIT needs passes of 4*TX keys, a multiple of 16';
  if (v.QSW && (BQ % 32 || BK % 32)) return 'QSW needs BQ and BK to be multiples of 32';
  if (v.HG !== undefined && (!Number.isInteger(v.HG) || v.HG < 0)) return 'HG must be a non-negative integer';
  if (v.VS !== undefined && (![16, 32].includes(v.VS) || (v.SPLIT ? 4 * TX : BK) % v.VS)) return 'VS must be 16 or 32 and divide the keys of a P pass';
  if (v.SWZ && (TY % 8 || (v.SPLIT ? TX : BK / 4) < 8 || ((v.SPLIT ? TX : BK / 4) & ((v.SPLIT ? TX : BK / 4) - 1)))) return 'SWZ needs TY % 8 == 0 and a power-of-two P row of at least 8 vec4';
  return null;
}

export function flashF32WorkgroupBytes(v: FlashF32Variant): number {
  const d = derive(v);
  return (d.A4 + v.BQ * d.PS) * 16;
}

export function flashF32Name(v: FlashF32Variant): string {
  return `q${v.BQ}k${v.BK}-${v.TX}x${v.TY}${v.SG ? '-sg' : ''}${v.PF ? '-pf' : ''}${v.REV ? '-rev' : ''}${v.AR ? '-ar' : ''}${v.SPLIT ? '-split' : ''}${v.SWZ ? '-swz' : ''}${v.VS && v.VS !== SL ? `-vs${v.VS}` : ''}${v.REV && v.HG ? `-hg${v.HG}` : ''}${v.PF && v.XT ? '-xt' : ''}${v.QSW ? '-qsw' : ''}${v.PR ? '-pr' : ''}`;
}

export function flashF32Key(v: FlashF32Variant): string {
  return `attention/flash-f32/D${v.D}/${flashF32Name(v)}`;
}

const C = ['x', 'y', 'z', 'w'];

export function flashF32Source(v: FlashF32Variant): string {
  const bad = flashF32VariantProblem(v);
  if (bad) throw new ArgumentError('attention', 'flash-f32 variant', bad, flashF32Name(v));
  const { BQ, BK, TX, TY } = v;
  const { NT, TM, G, HS, D4, DP4, DN4, NPASS, PK, PS, A4 } = derive(v);
  const HPP = HS / NPASS; // S vec4 columns per P pass
  // P's vec4 column c of row group (g, ty): swizzled by ty (rows 4*ty.. share a swizzle).
  const pcol = (c: string) => (v.SWZ ? `((${c}) ^ sw)` : `${c}`);
  const Q4 = BQ / 4; // vec4 per staged Q dim row
  const K4 = BK / 4;
  const KOFF = SL * Q4; // K slice offset in the aliased region
  const rowOf = (R: number) => `${(R >> 2) * 4 * TY + (R & 3)}u + ty * 4u`;
  const regs: string[] = [];
  for (let R = 0; R < TM; R++) {
    regs.push(`var m_${R} = NEG;`, `var l_${R} = 0.0;`);
    for (let h = 0; h < DN4; h++) regs.push(`var o_${R}_${h} = vec4<f32>(0.0);`);
  }

  // Loads: each invocation's share of a slice, into registers; staging writes them out.
  const per = (units: number) => Math.ceil(units / NT);
  const guarded = (units: number, n: number, stmt: string) => ((n + 1) * NT > units ? `if (lid + ${n * NT}u < ${units}u) { ${stmt} }` : `{ ${stmt} }`);
  // Row r and vec4 column c4 (of the 4 in a 16-dim slice) of load unit e.
  const rc = (rows: number) => (v.AR ? `let r = e % ${rows}u; let c4 = e / ${rows}u;` : 'let r = e / 4u; let c4 = e % 4u;');
  const UQ = BQ * 4;
  const UK = BK * 4;
  const VS = v.VS ?? SL;
  const UV = VS * DP4;
  const fetchQK = (dv: string, ktv = 'kt') => {
    const out: string[] = [];
    for (let n = 0; n < per(UQ); n++) {
      out.push(guarded(UQ, n, `let e = lid + ${n * NT}u; ${rc(BQ)} let i = i0 + r; pq_${n} = vec4<f32>(0.0); if (i < u.S) { pq_${n} = qb[(qrow + i) * D4 + ${dv} + c4] * u.qscale; }`));
    }
    for (let n = 0; n < per(UK); n++) {
      out.push(guarded(UK, n, `let e = lid + ${n * NT}u; ${rc(BK)} let j = ${ktv} + r; pk_${n} = vec4<f32>(0.0); if (j < u.kvLen) { pk_${n} = kb[(kvrow + j) * D4 + ${dv} + c4]; }`));
    }
    return out.join('\n      ');
  };
  // With QSW the vec4 column of 4 rows (keys) in dims 4*c4.. is XORed with 2*c4: the four
  // lanes that stage one row's 16 dims then write to four different banks.
  const qsw = (c: string) => (v.QSW ? `((${c}) ^ (2u * c4))` : c);
  const stageQK = () => {
    const out: string[] = [];
    for (let n = 0; n < per(UQ); n++) {
      const w = [0, 1, 2, 3].map((c) => `wa[w + ${c * Q4}u][r & 3u] = pq_${n}.${C[c]};`).join(' ');
      out.push(guarded(UQ, n, `let e = lid + ${n * NT}u; ${rc(BQ)} let w = c4 * ${4 * Q4}u + ${qsw('r / 4u')}; ${w}`));
    }
    for (let n = 0; n < per(UK); n++) {
      const w = [0, 1, 2, 3].map((c) => `wa[w + ${c * K4}u][r & 3u] = pk_${n}.${C[c]};`).join(' ');
      out.push(guarded(UK, n, `let e = lid + ${n * NT}u; ${rc(BK)} let w = ${KOFF}u + c4 * ${4 * K4}u + ${qsw('r / 4u')}; ${w}`));
    }
    return out.join('\n      ');
  };
  const fetchV = (kv: string) => {
    const out: string[] = [];
    const pad = DP4 !== D4 ? ' && c < D4' : '';
    for (let n = 0; n < per(UV); n++) {
      out.push(guarded(UV, n, `let e = lid + ${n * NT}u; let c = e % ${DP4}u; let j = kt + ${kv} + e / ${DP4}u; pv_${n} = vec4<f32>(0.0); if (j < u.kvLen${pad}) { pv_${n} = vb[(kvrow + j) * D4 + c]; }`));
    }
    return out.join('\n      ');
  };
  const stageV = () => Array.from({ length: per(UV) }, (_, n) => guarded(UV, n, `wa[lid + ${n * NT}u] = pv_${n};`)).join('\n      ');

  const computeS: string[] = [];
  for (let kk = 0; kk < SL; kk++) {
    const s: string[] = [];
    // Staging swizzle: dims 4c..4c+3 hold their vec4 columns XOR 2c.
    const x = v.QSW ? 2 * (kk >> 2) : 0;
    const col = (base: number, t: string) => (x ? `((${base}u + ${t}) ^ ${x}u)` : `${base}u + ${t}`);
    for (let g = 0; g < G; g++) s.push(`let a${g} = wa[${kk * Q4}u + ${col(g * TY, 'ty')}];`);
    for (let h = 0; h < HS; h++) s.push(`let b${h} = wa[${KOFF + kk * K4}u + ${col(h * TX, 'tx')}];`);
    for (let R = 0; R < TM; R++) {
      for (let h = 0; h < HS; h++) s.push(`s_${R}_${h} = fma(vec4<f32>(a${R >> 2}.${C[R & 3]}), b${h}, s_${R}_${h});`);
    }
    computeS.push(`      {\n        ${s.join('\n        ')}\n      }`);
  }
  const computeO: string[] = [];
  for (let kb = 0; kb < VS / 4; kb++) {
    const s: string[] = [];
    const pLoad = (R: number) => `let p${R} = wp[prow + ${((R >> 2) * 4 * TY + (R & 3)) * PS}u + ${pcol(`kq + ${kb}u`)}];`;
    if (!v.PR) for (let R = 0; R < TM; R++) s.push(pLoad(R));
    for (let e = 0; e < 4; e++) {
      for (let h = 0; h < DN4; h++) s.push(`let v${e}_${h} = wa[${(kb * 4 + e) * DP4 + h * TX}u + tx];`);
    }
    if (v.PR) {
      // Row by row: one P vec4 live at a time.
      for (let R = 0; R < TM; R++) {
        s.push(pLoad(R));
        for (let e = 0; e < 4; e++) for (let h = 0; h < DN4; h++) s.push(`o_${R}_${h} = fma(vec4<f32>(p${R}.${C[e]}), v${e}_${h}, o_${R}_${h});`);
      }
    } else {
      for (let e = 0; e < 4; e++) {
        for (let R = 0; R < TM; R++) {
          for (let h = 0; h < DN4; h++) s.push(`o_${R}_${h} = fma(vec4<f32>(p${R}.${C[e]}), v${e}_${h}, o_${R}_${h});`);
        }
      }
    }
    computeO.push(`      {\n        ${s.join('\n        ')}\n      }`);
  }

  const sDecl: string[] = [];
  for (let R = 0; R < TM; R++) for (let h = 0; h < HS; h++) sDecl.push(`var s_${R}_${h} = vec4<f32>(0.0);`);
  const mask: string[] = [];
  for (let R = 0; R < TM; R++) {
    const t: string[] = [`let pos = pbase + i32(${rowOf(R)});`];
    for (let h = 0; h < HS; h++) {
      t.push(`{ let jv = vec4<i32>(i32(kt + ${h * 4 * TX}u + tx * 4u)) + vec4<i32>(0, 1, 2, 3);
          var ok = jv < vec4<i32>(i32(u.kvLen));
          if (u.causal != 0u) { ok = ok & (jv <= vec4<i32>(pos)); }
          if (u.window > 0u) { ok = ok & ((jv > vec4<i32>(pos - i32(u.window))) | (jv < vec4<i32>(i32(u.sinks)))); }
          s_${R}_${h} = select(vec4<f32>(NEG), s_${R}_${h}, ok); }`);
    }
    mask.push(`      {\n        ${t.join('\n        ')}\n      }`);
  }
  // Row max over this invocation's keys, then across the TX invocations of the row.
  const rowMax: string[] = [];
  for (let R = 0; R < TM; R++) {
    const parts = Array.from({ length: HS }, (_, h) => `max(max(s_${R}_${h}.x, s_${R}_${h}.y), max(s_${R}_${h}.z, s_${R}_${h}.w))`);
    rowMax.push(`var mx_${R} = ${parts.reduce((a, b) => `max(${a}, ${b})`)};`);
  }
  const shuffles = (name: string, op: (a: string, b: string) => string) => {
    const out: string[] = [];
    for (let x = 1; x < TX; x *= 2) out.push(`${name} = ${op(name, `subgroupShuffleXor(${name}, ${x}u)`)};`);
    return out.join(' ');
  };
  const acrossRow = (name: (R: number) => string, op: (a: string, b: string) => string, zero: string) => {
    if (TX === 1) return '';
    if (v.SG) return Array.from({ length: TM }, (_, R) => `    ${shuffles(name(R), op)}`).join('\n');
    // Through workgroup memory (aliased slice region): red[row * TX + tx].
    const out: string[] = [];
    for (let R = 0; R < TM; R++) out.push(`    { let e = (${rowOf(R)}) * ${TX}u + tx; wa[e / 4u][e & 3u] = ${name(R)}; }`);
    out.push('    workgroupBarrier();');
    for (let R = 0; R < TM; R++) {
      const t: string[] = [`var acc = ${zero};`];
      for (let c = 0; c < Math.ceil(TX / 4); c++) {
        const w = `wa[(${rowOf(R)}) * ${TX / 4 >= 1 ? TX / 4 : 1}u + ${c}u]`;
        if (TX >= 4) t.push(`{ let w = ${w}; acc = ${op(op('acc', op('w.x', 'w.y')), op('w.z', 'w.w'))}; }`);
      }
      if (TX < 4) {
        for (let c = 0; c < TX; c++) t.push(`{ let e = (${rowOf(R)}) * ${TX}u + ${c}u; acc = ${op('acc', 'wa[e / 4u][e & 3u]')}; }`);
      }
      t.push(`${name(R)} = acc;`);
      out.push(`    { ${t.join(' ')} }`);
    }
    // The region is restaged right after: everyone must have read it first.
    out.push('    workgroupBarrier();');
    return out.join('\n');
  };
  const maxOp = (a: string, b: string) => `max(${a}, ${b})`;
  const sumOp = (a: string, b: string) => `(${a} + ${b})`;
  const softmax: string[] = [];
  for (let R = 0; R < TM; R++) {
    const t: string[] = [
      `let mn = max(m_${R}, mx_${R});`,
      // A row with nothing visible yet keeps m = NEG: exponents from 0 give exact zeros.
      `let base = select(mn, 0.0, mn == NEG);`,
      `let alpha = exp2(m_${R} - base);`,
      `m_${R} = mn;`,
      `var ps = 0.0;`,
    ];
    for (let h = 0; h < HS; h++) {
      t.push(`{ let p = exp2(s_${R}_${h} - vec4<f32>(base)); ps += (p.x + p.y) + (p.z + p.w); ${NPASS > 1 ? `s_${R}_${h} = p;` : `wp[prow + ${((R >> 2) * 4 * TY + (R & 3)) * PS}u + ${pcol(`${h * TX}u + tx`)}] = p;`} }`);
    }
    t.push(`l_${R} = l_${R} * alpha + ps;`);
    for (let h = 0; h < DN4; h++) t.push(`o_${R}_${h} *= alpha;`);
    softmax.push(`    {\n      ${t.join('\n      ')}\n    }`);
  }
  const stores: string[] = [];
  for (let R = 0; R < TM; R++) {
    const t: string[] = [`let i = i0 + ${rowOf(R)};`, `if (i < u.S) {`, `  let inv = select(0.0, 1.0 / l_${R}, l_${R} > 0.0);`];
    for (let h = 0; h < DN4; h++) {
      const st = `ob[(qrow + i) * D4 + ${h * TX}u + tx] = o_${R}_${h} * inv;`;
      t.push(`  ${(h + 1) * TX > D4 ? `if (${h * TX}u + tx < D4) { ${st} }` : st}`);
    }
    t.push(`  if (tx == 0u) { lseb[qrow + i] = select(neg_inf(), (m_${R} + log2(l_${R})) * LN2, l_${R} > 0.0); }`, '}');
    stores.push(`  {\n    ${t.join('\n    ')}\n  }`);
  }
  const prefetchDecl = [
    ...Array.from({ length: per(UQ) }, (_, n) => `var pq_${n} = vec4<f32>(0.0);`),
    ...Array.from({ length: per(UK) }, (_, n) => `var pk_${n} = vec4<f32>(0.0);`),
    ...Array.from({ length: per(UV) }, (_, n) => `var pv_${n} = vec4<f32>(0.0);`),
  ];

  const xt = v.PF && !!v.XT;
  const sLoop = v.PF
    ? `${xt ? '' : `    ${fetchQK('0u')}\n`}    for (var d0 = 0u; d0 < D4; d0 += 4u) {
      ${stageQK()}
      workgroupBarrier();
      if (d0 + 4u < D4) {
      ${fetchQK('d0 + 4u')}
      }
${computeS.join('\n')}
      workgroupBarrier();
    }`
    : `    for (var d0 = 0u; d0 < D4; d0 += 4u) {
      ${fetchQK('d0')}
      ${stageQK()}
      workgroupBarrier();
${computeS.join('\n')}
      workgroupBarrier();
    }`;
  // V over keys [lo, hi) of the tile; P's columns start at key lo.
  const vRange = (lo: number, hi: number) => v.PF
    ? `    for (var kk0 = ${lo}u; kk0 < ${hi}u; kk0 += ${VS}u) {
      ${stageV()}
      workgroupBarrier();
      if (kk0 + ${VS}u < BK) {
      ${fetchV(`kk0 + ${VS}u`)}
      }${xt ? ` else if (it + 1u < n_tiles) {
      // The next tile's first Q/K slice, so its load overlaps this last multiply.
      let ktn = tile_key(it + 1u, start2, n_sink);
      ${fetchQK('0u', 'ktn')}
      }` : ''}
      let kq = (kk0 - ${lo}u) / 4u;
${computeO.join('\n')}
      workgroupBarrier();
    }`
    : `    for (var kk0 = ${lo}u; kk0 < ${hi}u; kk0 += ${VS}u) {
      ${fetchV('kk0')}
      ${stageV()}
      workgroupBarrier();
      let kq = (kk0 - ${lo}u) / 4u;
${computeO.join('\n')}
      workgroupBarrier();
    }`;
  // With passes, each pass writes its share of P (the previous pass's last barrier has
  // retired every read of the buffer), then runs V over its keys.
  const passes: string[] = [];
  for (let ps = 0; ps < NPASS; ps++) {
    if (NPASS > 1) {
      const w: string[] = [];
      for (let R = 0; R < TM; R++) {
        for (let hh = 0; hh < HPP; hh++) {
          const h = ps * HPP + hh;
          w.push(`wp[prow + ${((R >> 2) * 4 * TY + (R & 3)) * PS}u + ${pcol(`${hh * TX}u + tx`)}] = s_${R}_${h};`);
        }
      }
      passes.push(`    ${w.join('\n    ')}`);
    }
    passes.push(vRange(ps * PK, (ps + 1) * PK));
  }
  const vLoop = passes.join('\n');

  const tileOf = v.REV && v.HG
    ? headGroupOrderWgsl(v.HG)
    : v.REV
      ? `  let tile = u.qTiles - 1u - g / nbh;\n  let bh = g % nbh;`
      : `  let tile = g % u.qTiles;\n  let bh = g / u.qTiles;`;

  return `${v.SG ? 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n' : ''}${uniformStruct('U', FIELDS)}
@group(0) @binding(0) var<storage, read> qb: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kb: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vb: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> ob: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> lseb: array<f32>;
@group(0) @binding(5) var<uniform> u: U;
const D4 = ${D4}u;
const BQ = ${BQ}u;
const BK = ${BK}u;
const NEG = ${NEG};
const LN2 = 0.6931471805599453;
${NEG_INF_FN}
/** First key of the it-th visited tile: the sink tiles, then tiles start2 ... */
fn tile_key(it: u32, start2: u32, n_sink: u32) -> u32 { return select(start2 + it - n_sink, it, it < n_sink) * BK; }
// Q/K slices ([16][BQ] then [16][BK]), V slices ([16][${DP4}]) and row partials share this region.
var<workgroup> wa: array<vec4<f32>, ${A4}>;
// P, row-major, ${PS} vec4 per row.
var<workgroup> wp: array<vec4<f32>, ${BQ * PS}>;

@compute @workgroup_size(${NT})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  let nbh = u.B * u.Hq;
  if (g >= nbh * u.qTiles) { return; }
${tileOf}
  let b = bh / u.Hq;
  let hk = (bh % u.Hq) / u.group;
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let i0 = tile * BQ;
  let qrow = bh * u.S;
  let kvrow = (b * u.Hkv + hk) * u.cap;
  let prow = ty * ${4 * PS}u;
  let sw = ty & 7u;
  let i_last = min(i0 + BQ, u.S) - 1u;
  let p_first = i32(u.kvLen) - i32(u.S) + i32(i0);
  let p_last = i32(u.kvLen) - i32(u.S) + i32(i_last);
  let pbase = i32(u.kvLen) - i32(u.S) + i32(i0);
${KEY_BOUNDS_WGSL}
${keyTilesWgsl('BK')}
  ${regs.join('\n  ')}
  ${prefetchDecl.join('\n  ')}
${xt ? `  if (n_tiles > 0u) {
    let kt0 = tile_key(0u, start2, n_sink);
    ${fetchQK('0u', 'kt0')}
  }` : ''}

  for (var it = 0u; it < n_tiles; it++) {
    let kt = tile_key(it, start2, n_sink);
    ${sDecl.join('\n    ')}
${sLoop}
    // Every key of the tile visible to every row of the query tile: no per-element test.
    let full = kt + BK <= u.kvLen
      && (u.causal == 0u || i32(kt + BK) - 1 <= p_first)
      && (u.window == 0u || i32(kt) > p_last - i32(u.window) || kt + BK <= u.sinks);
    if (!full) {
${mask.join('\n')}
    }
${v.PF ? `    ${fetchV('0u')}` : ''}
    ${rowMax.join('\n    ')}
${acrossRow((R) => `mx_${R}`, maxOp, 'NEG')}
${softmax.join('\n')}
${vLoop}
  }

${v.SG || TX === 1 ? '' : '  workgroupBarrier();'}
${acrossRow((R) => `l_${R}`, sumOp, '0.0')}
${stores.join('\n')}
}
`;
}

export function flashF32Program(v: FlashF32Variant): Program {
  return { key: flashF32Key(v), source: () => flashF32Source(v), inputs: 3, outputs: 2, uniform: true };
}

export function flashF32Uniforms(p: Problem, qTiles: number): ArrayBuffer {
  const values: Record<(typeof FIELDS)[number][0], number> = {
    B: p.B, Hq: p.Hq, Hkv: p.Hkv, group: p.Hq / p.Hkv, S: p.S, cap: p.cap, kvLen: p.kvLength, qTiles,
    qscale: p.scale * Math.LOG2E, causal: p.causal ? 1 : 0, window: p.window, sinks: p.sinks,
  };
  return packUniforms(FIELDS.map(([n, t]) => [t, values[n]] as const));
}

/**
 * Candidate shapes, best first (H200: 46.8 KB of the 48 KB workgroup memory at D 128). The
 * register budget is 64 O accumulators per invocation (TM * D/TX <= 64).
 */
// Measured on the H200 at B1 H32 S4096 D128 causal (benchmarks/gpu/probes/f32-flash.ts):
// round 1, last-first query tiles (REV) 4.34 ms against 5.59; round 3, 128-key tiles with P
// in two passes, unpadded swizzled P, 32-key V slices, swizzled Q/K staging and head groups
// of 8 4.02 ms (34.2 TFLOP/s) against 4.22 for the 64-key REV kernel. The first takes all
// 48 KB of the H200's workgroup memory; the others are for smaller adapters (lavapipe: 32 KB).
const CANDIDATES: ReadonlyArray<Omit<FlashF32Variant, 'D' | 'SG'>> = [
  { BQ: 128, BK: 128, TX: 16, TY: 16, PF: true, REV: true, SPLIT: true, SWZ: true, VS: 32, QSW: true, HG: 8 },
  { BQ: 128, BK: 64, TX: 16, TY: 16, PF: true, REV: true },
  { BQ: 64, BK: 64, TX: 16, TY: 16, PF: true, REV: true },
  { BQ: 128, BK: 32, TX: 8, TY: 32, PF: true, REV: true },
  { BQ: 64, BK: 32, TX: 8, TY: 16, PF: true, REV: true },
];

/** Overrides of the chooser's picks (benchmarks and tests). */
export type FlashF32Tuning = Partial<Omit<FlashF32Variant, 'D'>>;
let tuning: FlashF32Tuning = {};
export function tuneFlashF32(t: FlashF32Tuning): void {
  for (const key of ['BQ', 'BK', 'TX', 'TY'] as const) {
    const x = t[key];
    if (x !== undefined && (!Number.isInteger(x) || x <= 0)) throw new ArgumentError('tuneFlashF32', key, 'a positive integer', x);
  }
  tuning = { ...t };
}

let enabled = (typeof process !== 'undefined' ? process.env?.ATTNKIT_F32_FLASH : undefined) !== '0';
/** Switches the f32 flash kernel on or off (the environment's ATTNKIT_F32_FLASH=0 starts it off). */
export function setFlashF32Enabled(on: boolean): void {
  enabled = on;
}
export function flashF32Enabled(): boolean {
  return enabled;
}

/** Whether a subgroup of this adapter surely holds TX consecutive invocations. */
function subgroupsCover(be: WebGpuBackend, TX: number): boolean {
  return be.caps.subgroups && be.caps.subgroupMinSize >= TX;
}

/**
 * The variant for this problem on this adapter, or null when the kernel does not take it
 * (not f32, a block list or bias, too little workgroup memory): the plain kernel runs then.
 */
export function chooseFlashF32Variant(be: WebGpuBackend, p: Problem): FlashF32Variant | null {
  if (p.dtype !== 'f32' || p.blocks || p.bias || p.D % SL) return null;
  const limit = be.caps.maxComputeWorkgroupStorageSize;
  // A tuning describes one variant: it overrides the plain 64-key kernel, not the options
  // of the first candidate.
  const list = Object.keys(tuning).length ? [{ ...CANDIDATES[1]!, ...tuning }] : CANDIDATES;
  for (const c of list) {
    const base = { ...c, D: p.D };
    const v: FlashF32Variant = { ...base, SG: tuning.SG ?? subgroupsCover(be, base.TX) };
    if (v.SG && !subgroupsCover(be, v.TX)) continue;
    if (flashF32VariantProblem(v)) continue;
    const d = derive(v);
    if (d.TM * d.DN4 * 4 > 64 && !tuning.BQ) continue;
    if (flashF32WorkgroupBytes(v) > limit) continue;
    return v;
  }
  return null;
}

/** Runs the kernel; returns the output [B, Hq, S, D] and the natural-log log-sum-exp [B, Hq, S]. */
export function runFlashF32(be: WebGpuBackend, p: Problem, q: Tensor, k: Tensor, v: Tensor, variant: FlashF32Variant): { out: Tensor; lse: Tensor } {
  const bad = flashF32VariantProblem(variant);
  if (bad) throw new ArgumentError(p.op, 'flash-f32 variant', bad, flashF32Name(variant));
  checkWorkgroupBytes(be, p.op, flashF32WorkgroupBytes(variant));
  const out = be.empty(p.op, 'f32', [p.B, p.Hq, p.S, p.D]);
  const lse = be.empty(p.op, 'f32', [p.B, p.Hq, p.S]);
  const qTiles = Math.ceil(p.S / variant.BQ);
  be.dispatch({
    program: flashF32Program(variant),
    inputs: [be.buffer(q, p.op), be.buffer(k, p.op), be.buffer(v, p.op)],
    outputs: [be.buffer(out, p.op), be.buffer(lse, p.op)],
    uniforms: flashF32Uniforms(p, qTiles),
    grid: gridFor(p.B * p.Hq * qTiles),
  });
  return { out, lse };
}
