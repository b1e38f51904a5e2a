// Times the matmul-structured f32 flash prefill (packages/attention/src/webgpu/flash-f32.ts)
// against the plain kernel (webgpu/prefill.ts) at B1 H32 S4096 L4096 D128 causal f32, the
// shape PyTorch's f32 SDPA is compared at. Variants are timed round-robin (each warmed up
// first, then one short batch of calls per variant per round; medians over rounds) so that
// drift on a shared GPU hits every variant alike. Each variant carries two correctness
// figures: max |error| against the float64 CPU reference at a small causal shape (GQA 4,
// odd sizes, L > S) and max |difference| from the plain kernel at the timed shape.
//   node .gpu/f32-flash.mjs --out DIR [--small] [--only SUBSTR]
import { attention, chooseFlashF32Variant, flashF32Name, flashF32VariantProblem, flashF32WorkgroupBytes, runFlashF32, setPrefillPath, type FlashF32Variant } from '@attnkit/attention';
import { createBackend, gridFor, random, tensor, type Backend, type Program, type Tensor } from '@attnkit/tensor';
import { resolveProblem, type Problem } from '../../../packages/attention/src/problem.js';
import { flashF32Program, flashF32Uniforms } from '../../../packages/attention/src/webgpu/flash-f32.js';
import { choosePrefillVariant, prefillProgram, prefillUniforms, runPrefill } from '../../../packages/attention/src/webgpu/prefill.js';
import { timeIt } from '../../src/harness.js';
import { errorText, probeBackend, probeOptions, stopwatch, timedRowText, untimedRow, writeProbeJson, type TimedRow } from './probe-driver.js';

const NAME = 'f32-flash';
/** Past this no further timing round starts (the script must stay under 60 s). */
const BUDGET_MS = 52_000;

const args = probeOptions();
const small = args.small;
const elapsed = stopwatch();

interface Row extends TimedRow {
  /** Max |error| vs the float64 CPU reference at the check shape. */
  maxAbsErrRef?: number;
  /** Max |difference| vs the plain kernel at the timed shape. */
  maxAbsDiffPlain?: number;
}
const rows: Row[] = [];
const print = (r: Row) => {
  console.log(timedRowText(r) +
    `${r.maxAbsErrRef !== undefined ? ` errRef ${r.maxAbsErrRef.toExponential(2)}` : ''}${r.maxAbsDiffPlain !== undefined ? ` diffPlain ${r.maxAbsDiffPlain.toExponential(2)}` : ''} ${r.notes}`);
};

const be = await probeBackend(NAME);
const cpu = await createBackend({ backend: 'cpu' });
console.log(`${NAME}: ${be.name}${small ? ' (--small)' : ''} subgroups ${be.caps.subgroups} size ${be.caps.subgroupMinSize}-${be.caps.subgroupMaxSize}, workgroup memory ${be.caps.maxComputeWorkgroupStorageSize}`);

const D = small ? 64 : 128;
const BIG = small ? { B: 1, H: 2, S: 256, L: 256 } : { B: 1, H: 32, S: 4096, L: 4096 };
const shape = `B${BIG.B} H${BIG.H} S${BIG.S} L${BIG.L} D${D} causal`;
const flops = (4 * BIG.B * BIG.H * BIG.S * BIG.L * D) / 2;

const sg = be.caps.subgroups;
const v = (BQ: number, BK: number, TX: number, TY: number, o: Partial<FlashF32Variant> = {}): FlashF32Variant =>
  ({ D, BQ, BK, TX, TY, SG: sg && be.caps.subgroupMinSize >= TX, PF: true, REV: false, ...o });
// The chooser's pick on this adapter first, then the alternatives.
// Round 1 (H200, medians): q128k64-16x16-sg-pf 5.59 ms, the same with REV 4.34 ms (31.7
// TFLOP/s), without PF 5.56, without SG 5.18, 8x32 5.10, q128k32-8x32 6.24, q64k64 5.91,
// q64k32-8x16 5.68, q64k64-16x8 7.11; plain kernel 15.9. REV became the default.
// Round 2: default (REV) 4.68 first in the list and 4.20 repeated last (drift), AR 4.64,
// no SG 4.52, SWZ 4.16, 8x32 4.55, q64k64 5.68, q128k128 SPLIT+SWZ 4.14 (+AR 4.36), q64k128
// SPLIT+SWZ 5.38; unmasked 8.28 ms = 33.2 TFLOP/s (causal runs at the steady-state rate).
// Round 3: cross-tile prefetch (then in PF) hurt: 4.51 vs 4.22 ms without it (now opt-in,
// XT); QSW 4.21, SWZ 4.29, SWZ+VS32 4.26, HG8 4.50 (with XT); SPLIT+SWZ 4.07, +VS32 4.19,
// +VS32+QSW 4.06, +VS32+QSW+HG8 4.02 (34.2 TFLOP/s; all SPLIT rows with XT). That last one,
// without XT, is the chooser's first pick since.
// Round 4 timed nothing (warm-ups used the budget). Round 5: the pick 3.95 ms (34.8 TFLOP/s,
// repeated last; 5.25 first in the list), HG4 4.00, HG16 3.95, no HG 3.96, VS16 3.95, no QSW
// 4.16, no SG 4.05, no PF 4.07, PR 3.97, XT 4.08, q128k64 4.27 (+HG8+QSW 4.02); attention()
// 4.02 ms, unmasked 7.83 ms = 35.1 TFLOP/s; plain 15.0 ms. Round 6: the pick 3.97 ms (first
// and last alike), HG16 3.97, PR 3.98, the 8x32 four-pass kernel 6.35 (+PR 6.32), q128k64
// +HG8+QSW 4.03; attention() 4.02 ms, unmasked 7.82 ms; plain 14.96 ms. No further rounds ran.
const S8: Partial<FlashF32Variant> = { SPLIT: true, SWZ: true, VS: 32, QSW: true, HG: 8, REV: true };
const VARIANTS: FlashF32Variant[] = [
  v(128, 128, 16, 16, S8),
  v(128, 128, 16, 16, { ...S8, HG: 16 }),
  v(128, 128, 16, 16, { ...S8, PR: true }),
  // 8 invocations per row: 4x16 scores each, P in four 32-key passes; 32 KB of workgroup memory.
  v(128, 128, 8, 32, S8),
  v(128, 128, 8, 32, { ...S8, PR: true }),
  v(128, 64, 16, 16, { REV: true, QSW: true, HG: 8 }),
  v(128, 128, 16, 16, S8),
];
if (small) {
  // lavapipe: 32 KB of workgroup memory, subgroups of 8; the shapes that fit it.
  VARIANTS.splice(0, VARIANTS.length, v(64, 64, 16, 16), v(64, 32, 8, 16, { AR: true }), v(64, 64, 16, 16, { PF: false, REV: true, AR: true }), v(64, 128, 16, 16, { SPLIT: true, SWZ: true, VS: 32, REV: true, HG: 3, QSW: true, XT: true, PR: true }));
}
const chosen = (() => {
  const q = random(be, [1, 1, 1, D], { seed: 1 });
  const k = random(be, [1, 1, 1, D], { seed: 1 });
  const p = resolveProblem('attention', q, k, k, { causal: true });
  const c = chooseFlashF32Variant(be, p);
  for (const t of [q, k]) t.dispose();
  return c;
})();
console.log(`${NAME}: chooser picks ${chosen ? flashF32Name(chosen) : 'none (plain kernel)'}`);

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return Infinity;
    if (d > m) m = d;
  }
  return m;
}

// ---------------------------------------------------------------- reference check shape
// GQA 4, S and L not multiples of any tile, queries at the end of the keys; D as timed.
const CHK = { B: 2, Hq: 4, Hkv: 1, S: 100, L: 300 };
const chkData = (seed: number, shape: number[]) => random(cpu, shape, { seed });
const cq = chkData(11, [CHK.B, CHK.Hq, CHK.S, D]);
const ck = chkData(12, [CHK.B, CHK.Hkv, CHK.L, D]);
const cv = chkData(13, [CHK.B, CHK.Hkv, CHK.L, D]);
const refOut = (await attention(cq, ck, cv, { causal: true }).toArray()) as Float32Array;
const toGpu = async (t: Tensor) => tensor(be, (await t.toArray()) as Float32Array, t.shape, 'f32');
const [gq, gk, gv] = [await toGpu(cq), await toGpu(ck), await toGpu(cv)];
const chkProblem = resolveProblem('attention', gq, gk, gv, { causal: true });

async function errVsRef(variant: FlashF32Variant): Promise<number> {
  const { out, lse } = runFlashF32(be, chkProblem, gq, gk, gv, variant);
  const got = await out.toArray();
  out.dispose();
  lse.dispose();
  return maxAbs(got, refOut);
}

// ---------------------------------------------------------------- other head dims
// Correctness only: attention() (the chooser's pick for this adapter) at D 64, 80, 256 with
// a sinks + window mask and with causal, against the CPU reference.
for (const Dx of small ? [80] : [64, 80, 256]) {
  const name = `entry-attention()-D${Dx}-check`;
  try {
    const mk = (seed: number, sh: number[]) => random(cpu, sh, { seed });
    const [xq, xk, xv] = [mk(21, [2, 8, 70, Dx]), mk(22, [2, 2, 333, Dx]), mk(23, [2, 2, 333, Dx])];
    const [yq, yk, yv] = [await toGpu(xq), await toGpu(xk), await toGpu(xv)];
    let err = 0;
    for (const mask of [{ kind: 'causal' }, { kind: 'window', window: 90, sinks: 5 }] as const) {
      const want = await attention(xq, xk, xv, { mask }).toArray();
      const got = attention(yq, yk, yv, { mask });
      err = Math.max(err, maxAbs(await got.toArray(), want));
      got.dispose();
    }
    const pick = chooseFlashF32Variant(be, resolveProblem('attention', yq, yk, yv, { causal: true }));
    for (const t of [yq, yk, yv]) t.dispose();
    const row: Row = { variant: name, shape: `B2 Hq8 Hkv2 S70 L333 D${Dx}`, medianMs: NaN, minMs: NaN, maxMs: NaN, maxAbsErrRef: err, notes: `kernel: ${pick ? `flash ${flashF32Name(pick)}` : 'plain (flash does not fit)'}; causal and sinks 5 + window 90` };
    rows.push(row);
    print(row);
  } catch (e) {
    const row: Row = untimedRow(name, `D${Dx}`, `failed: ${errorText(e)}`);
    rows.push(row);
    print(row);
  }
}

// ---------------------------------------------------------------- timed shape
const big = (seed: number, s: number[]) => random(be as Backend, s, { seed });
const q = big(1, [BIG.B, BIG.H, BIG.S, D]);
const k = big(2, [BIG.B, BIG.H, BIG.L, D]);
const vv = big(3, [BIG.B, BIG.H, BIG.L, D]);
const p: Problem = resolveProblem('attention', q, k, vv, { causal: true });
const outBuf = be.createBuffer(NAME, BIG.B * BIG.H * BIG.S * D * 4);
const lseBuf = be.createBuffer(NAME, BIG.B * BIG.H * BIG.S * 4);
const ins = [be.buffer(q, NAME), be.buffer(k, NAME), be.buffer(vv, NAME)];

const plainVariant = choosePrefillVariant(be, p);
const plainOut = await (async () => {
  const r = runPrefill(be, p, q, k, vv, plainVariant);
  const a = await r.out.toArray();
  r.out.dispose();
  r.lse.dispose();
  return a;
})();

interface Timed {
  name: string;
  call: () => void;
  row: Row;
  samples: number[];
  flops: number;
}
const timed: Timed[] = [];
const add = (name: string, call: () => void, row: Partial<Row> & { notes: string }, work = flops) => {
  if (args.only && !name.includes(args.only)) return;
  timed.push({ name, call, samples: [], flops: work, row: { variant: name, shape, medianMs: NaN, minMs: NaN, maxMs: NaN, ...row } });
};
const dispatchOf = (program: Program, uniforms: ArrayBuffer, groups: number) => () =>
  be.dispatch({ program, inputs: ins, outputs: [outBuf, lseBuf], uniforms, grid: gridFor(groups) });

for (const variant of VARIANTS) {
  const name = `flash-${flashF32Name(variant)}`;
  if (args.only && !name.includes(args.only)) continue;
  try {
    const bad = flashF32VariantProblem(variant);
    if (bad) throw new Error(bad);
    const bytes = flashF32WorkgroupBytes(variant);
    if (bytes > be.caps.maxComputeWorkgroupStorageSize) throw new Error(`needs ${bytes} bytes of workgroup memory`);
    const maxAbsErrRef = await errVsRef(variant);
    const r = runFlashF32(be, p, q, k, vv, variant);
    const maxAbsDiffPlain = maxAbs(await r.out.toArray(), plainOut);
    r.out.dispose();
    r.lse.dispose();
    be.checkHealthy(name);
    const qTiles = Math.ceil(p.S / variant.BQ);
    add(name, dispatchOf(flashF32Program(variant), flashF32Uniforms(p, qTiles), p.B * p.Hq * qTiles), {
      maxAbsErrRef, maxAbsDiffPlain,
      notes: `${variant.TX * variant.TY} invocations, ${bytes} B workgroup memory${chosen && flashF32Name(chosen) === flashF32Name(variant) ? ', chooser pick' : ''}`,
    });
  } catch (e) {
    const row: Row = untimedRow(name, shape, `failed: ${errorText(e)}`);
    rows.push(row);
    print(row);
  }
}
// The package's entry point (attention() picks the kernel; includes output allocation).
setPrefillPath('plain');
add('entry-attention()', () => attention(q, k, vv, { causal: true }).dispose(), { notes: 'attention() as a user calls it (allocates its output each call)' });
// No mask: every tile full length, no per-element masks; the steady-state rate (all FLOPs counted).
add('entry-attention()-noncausal', () => attention(q, k, vv).dispose(), { shape: shape.replace(' causal', ''), notes: 'attention() without a mask (FLOPs 4*B*H*S*L*D)' }, 2 * flops);
// Last: in rounds 2 and 3 the variant timed right after this slow kernel ran
// 10-25% slower than its own repeat at the end of the list.
add(`plain-tpr${plainVariant.TPR}-tq${plainVariant.TQ}-rq${plainVariant.RQ}-bk${plainVariant.BK}`,
  dispatchOf(prefillProgram(plainVariant), prefillUniforms(p, Math.ceil(p.S / plainVariant.TQ)), p.B * p.Hq * Math.ceil(p.S / plainVariant.TQ)),
  { maxAbsDiffPlain: 0, notes: 'the existing plain kernel (webgpu/prefill.ts), chooser pick' });


// ---------------------------------------------------------------- round-robin timing
// Every pipeline is well over a second old by the time the rounds run (the timeIt note on
// slow calls right after a new pipeline), so each variant's own warm-up can be short; the
// first one's is long enough to bring the clocks up. Round 4 spent its whole budget on
// 1.5 s warm-ups and timed nothing.
const warmMs = (i: number) => (small ? 50 : i === 0 ? 1500 : 500);
for (const [i, t] of timed.entries()) {
  try {
    await timeIt(be, t.call, { reps: 1, warmupMs: warmMs(i), targetMs: 1, maxInner: 1 });
    be.checkHealthy(t.name);
  } catch (e) {
    t.row.notes = `failed: ${errorText(e)}`;
  }
}
const ROUNDS = small ? 3 : 20;
const PER = small ? 1 : 5;
// At least MIN_ROUNDS rounds (about half a second each at the timed shape), then while the budget lasts.
const MIN_ROUNDS = 5;
for (let round = 0; round < ROUNDS && (small || round < MIN_ROUNDS || elapsed() < BUDGET_MS); round++) {
  for (const t of timed) {
    if (t.row.notes.startsWith('failed')) continue;
    try {
      const s = performance.now();
      for (let i = 0; i < PER; i++) t.call();
      await be.sync();
      t.samples.push((performance.now() - s) / PER);
    } catch (e) {
      t.row.notes = `failed: ${errorText(e)}`;
    }
  }
}
for (const t of timed) {
  const s = [...t.samples].sort((a, b) => a - b);
  if (s.length) {
    t.row.medianMs = s[Math.floor(s.length / 2)]!;
    t.row.minMs = s[0]!;
    t.row.maxMs = s[s.length - 1]!;
    t.row.tflops = t.flops / (t.row.medianMs * 1e9);
    t.row.notes += `; ${s.length} rounds x ${PER} calls`;
  }
  rows.push(t.row);
  print(t.row);
}

writeProbeJson(args.out, NAME, { device: be.name, small, shape, flops, seconds: elapsed() / 1000, chooser: chosen ? flashF32Name(chosen) : null, rows }, elapsed);
be.destroy();
