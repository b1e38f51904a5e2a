// Sweeps neighborhood-attention kernel variants at the benchmark shapes (2-D 128x128 13x13,
// 3-D 16x32x32 7x7x7, H8 D64 f16): the plain fused kernel with other query tiles, and the
// subgroup-matrix kernel (sgmatrix.ts) in several configurations. Every variant carries its
// own correctness figures: max |out - plain kernel out| at the benchmark shape, and max
// |out - CPU float64 definition| on small problems that cover borders, dilation, causal
// axes, GQA, batch and the multi-chunk rescale path.
//
// The script re-runs itself as a child process that works through the variants; when a
// variant takes the child down (driver crash, hang), the parent records that variant as
// failed and starts a new child at the next one, so one bad kernel costs one row.
//   node --conditions=@attnkit/source --import tsx benchmarks/gpu/probes/na-sweep.ts [--small] --out DIR
import { createBackend, random, WebGpuBackend, type Tensor } from '@attnkit/tensor';
import {
  describeProblem, na2d, na3d, neighborhoodReference, runFusedKernel, runSg, sgBox, sgUnsupported, sgWorkgroupBytes,
  type NeighborhoodOptions, type Problem, type SgConfig,
} from '@attnkit/neighborhood';
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { timeIt } from '../../src/harness.js';

const { values } = parseArgs({
  options: {
    small: { type: 'boolean', default: false }, out: { type: 'string', default: '.' },
    child: { type: 'boolean', default: false }, from: { type: 'string', default: '0' },
  },
});
const small = values.small!;
const FLAGS = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness,disable_workgroup_init'];

interface Row {
  variant: string; case: string; shape: string; medianMs?: number; minMs?: number; maxMs?: number; tflops?: number;
  maxErrVsPlain?: number; maxErrSmallVsCpu?: number; workgroupBytes?: number; error?: string; notes?: string;
  /** Round-robin timing at the end of the case (other work on the GPU hits every variant alike): min, 25th percentile, median of the samples. */
  rrMinMs?: number; rrP25Ms?: number; rrMedianMs?: number; rrSamples?: number; rrTflops?: number;
}
const dir = values.out!;
mkdirSync(dir, { recursive: true });
const ROWS = join(dir, 'na-sweep.rows.jsonl');
const CURRENT = join(dir, 'na-sweep.current');
const META = join(dir, 'na-sweep.meta.json');
const record = (r: Row) => {
  appendFileSync(ROWS, JSON.stringify(r) + '\n');
  const t = r.medianMs !== undefined ? `${r.medianMs.toFixed(3)} ms (min ${r.minMs!.toFixed(3)}) ${r.tflops!.toFixed(2)} TFLOP/s useful` : '';
  console.log(`[${r.case}] ${r.variant}: ${t} errPlain=${r.maxErrVsPlain?.toExponential(2) ?? '-'} errSmall=${r.maxErrSmallVsCpu?.toExponential(2) ?? '-'}${r.error ? ` ERROR ${r.error}` : ''}`);
};

interface Case { name: string; rank: 2 | 3; spatial: number[]; window: number[]; heads: number; D: number }
const CASES: Case[] = small
  ? [{ name: 'na2d', rank: 2, spatial: [24, 24], window: [5, 5], heads: 2, D: 32 }, { name: 'na3d', rank: 3, spatial: [4, 8, 16], window: [3, 3, 3], heads: 2, D: 32 }]
  : [{ name: 'na2d', rank: 2, spatial: [128, 128], window: [13, 13], heads: 8, D: 64 }, { name: 'na3d', rank: 3, spatial: [16, 32, 32], window: [7, 7, 7], heads: 8, D: 64 }];

type Variant = { name: string; kind: 'plain'; tile: [number, number, number] } | { name: string; kind: 'sg'; cfg: SgConfig } | { name: string; kind: 'library' };
interface SgOpts { stack?: number; oDtype?: 'f32' | 'f16'; unroll?: boolean; pad?: boolean; share?: boolean; stageBlocks?: number; unrollRows?: boolean; ablate?: SgConfig['ablate'] }
const sg = (sub: [number, number, number], chunkBlocks: number, subgroups: number, sDtype: 'f32' | 'f16', o: SgOpts = {}): Variant => {
  const cfg: SgConfig = { sub, chunkBlocks, subgroups, sDtype, ...o };
  const tags = [o.oDtype ? `o${o.oDtype}` : 'of32', o.stack ? `stack${o.stack}` : '', o.unroll ? 'unroll' : '', o.pad === false ? 'nopad' : '', o.share ? `share-cr${o.stageBlocks ?? 4}` : '', o.unrollRows ? 'rows' : '', o.ablate ? `ABLATE-${o.ablate}` : ''];
  return { name: `sg-t${sub.join('x')}-cb${chunkBlocks}-sg${subgroups}-s${sDtype}-${tags.filter(Boolean).join('-')}`, kind: 'sg', cfg };
};
// Each case ends with round-robin timing over every variant that ran (other probes share the
// GPU, so single timings drifted by 2-3x). ABLATE-* rows drop a phase of the sg kernel (wrong
// results by design: their error figures are meaningless) to show where its time goes.
const NP = { pad: false, oDtype: 'f32' as const };
const VARIANTS: Record<2 | 3, Variant[]> = {
  2: [
    { name: 'library na2d', kind: 'library' },
    { name: 'plain-t1x8x8', kind: 'plain', tile: [1, 8, 8] },
    sg([1, 4, 4], 16, 1, 'f16', { pad: false, oDtype: 'f16' }),
    sg([1, 4, 4], 16, 2, 'f16', NP),
    sg([1, 4, 4], 16, 1, 'f16', { ...NP, unrollRows: true }),
    sg([1, 4, 4], 16, 1, 'f16', { ...NP, unroll: true }),
    sg([1, 4, 4], 16, 1, 'f16', { ...NP, ablate: 'nos' }),
    sg([1, 4, 4], 16, 1, 'f16', { ...NP, ablate: 'nosoftmax' }),
    sg([1, 4, 4], 16, 1, 'f16', { ...NP, ablate: 'nopv' }),
    sg([1, 4, 4], 16, 1, 'f16', { ...NP, ablate: 'io' }),
  ],
  3: [
    { name: 'library na3d', kind: 'library' },
    sg([2, 2, 4], 16, 1, 'f16', NP),
    sg([2, 2, 4], 8, 2, 'f16', NP),
    sg([1, 2, 8], 16, 1, 'f16', NP),
    sg([2, 2, 4], 16, 1, 'f16', { ...NP, ablate: 'io' }),
  ],
};

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return Number.isNaN(m) ? Infinity : m;
};

function mk(shape: number[], kvHeads: number, seed: number): [Tensor, Tensor, Tensor] {
  const kvShape = [shape[0]!, kvHeads, ...shape.slice(2)];
  return [random(be, shape, { seed, dtype: 'f16' }), random(be, kvShape, { seed: seed + 1, dtype: 'f16' }), random(be, kvShape, { seed: seed + 2, dtype: 'f16' })];
}

/** Small problems per rank: borders (lengths not multiples of the subtile), dilation, causal axes, GQA, batch 2, windows that need several chunks. */
const SMALL_CHECKS: Record<2 | 3, Array<{ spatial: number[]; opts: NeighborhoodOptions }>> = {
  2: [
    { spatial: [26, 22], opts: { kernelSize: [9, 7] } },
    { spatial: [19, 35], opts: { kernelSize: [5, 7], dilation: [2, 1], causal: [true, false] } },
    { spatial: [18, 40], opts: { kernelSize: [3, 5], dilation: [1, 2] } },
  ],
  3: [
    { spatial: [6, 10, 18], opts: { kernelSize: [3, 5, 3] } },
    { spatial: [7, 9, 17], opts: { kernelSize: [3, 3, 3], causal: [true, false, false] } },
  ],
};

// The float64 definition per small check, computed once (inputs are seeded, so identical for every variant).
const refCache = new Map<string, Float64Array | Float32Array>();

async function smallError(rank: 2 | 3, run: (p: Problem, q: Tensor, k: Tensor, v: Tensor, o: NeighborhoodOptions) => Tensor): Promise<number> {
  let worst = 0;
  for (const [i, c] of SMALL_CHECKS[rank].entries()) {
    const shape = [2, 4, ...c.spatial, 32];
    const [q, k, v] = mk(shape, 2, 11);
    const p = describeProblem('na-sweep', rank, q, k, v, c.opts);
    const out = run(p, q, k, v, c.opts);
    const got = await out.toArray();
    const key = `${rank}/${i}`;
    if (!refCache.has(key)) {
      const [qa, ka, va] = await Promise.all([q.toArray(), k.toArray(), v.toArray()]);
      refCache.set(key, neighborhoodReference(p, qa as Float32Array, ka as Float32Array, va as Float32Array));
    }
    const ref = refCache.get(key)!;
    worst = Math.max(worst, maxAbsDiff(got, ref));
    for (const t of [q, k, v, out]) t.dispose();
  }
  return worst;
}

const FLAT = CASES.flatMap((c) => VARIANTS[c.rank].map((v) => ({ c, v })));

if (!values.child) {
  for (const f of [ROWS, CURRENT, META]) rmSync(f, { force: true });
  let from = 0;
  while (from < FLAT.length) {
    writeFileSync(CURRENT, String(from));
    const args = [...process.execArgv, process.argv[1]!, ...(small ? ['--small'] : []), '--out', dir, '--child', '--from', String(from)];
    const r = spawnSync(process.execPath, args, { stdio: 'inherit', timeout: small ? 900_000 : 50_000 });
    if (r.status === 0) break;
    const cur = Number(readFileSync(CURRENT, 'utf8'));
    const { c, v } = FLAT[cur]!;
    record({ variant: v.name, case: c.name, shape: c.spatial.join('x'), error: `the process died while running this variant (exit status ${r.status}, signal ${r.signal})` });
    from = cur + 1;
  }
  const lines = existsSync(ROWS) ? readFileSync(ROWS, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row & { rrOnly?: boolean }) : [];
  // Round-robin timings arrive as separate records: merge them into their variant's row.
  const rows: Row[] = [];
  for (const l of lines) {
    const prev = l.rrOnly ? rows.find((r) => r.case === l.case && r.variant === l.variant) : undefined;
    if (prev) { const { rrOnly: _drop, ...rest } = l; Object.assign(prev, rest); } else rows.push(l);
  }
  const meta = existsSync(META) ? JSON.parse(readFileSync(META, 'utf8')) as object : {};
  writeFileSync(join(dir, 'na-sweep.json'), JSON.stringify({ ...meta, rows }, null, 2) + '\n');
  for (const f of [ROWS, CURRENT, META]) rmSync(f, { force: true });
  console.log(`wrote ${join(dir, 'na-sweep.json')} (${rows.length} rows)`);
  process.exit(0);
}

const be = await createBackend({ backend: 'webgpu', dawnFlags: small ? [] : FLAGS });
if (!(be instanceof WebGpuBackend)) throw new Error('na-sweep: needs WebGPU');
const from = Number(values.from);
if (from === 0) {
  console.log(`adapter ${be.name}; workgroup storage ${be.caps.maxComputeWorkgroupStorageSize}; subgroups ${be.caps.subgroupMinSize}-${be.caps.subgroupMaxSize}; ` +
    `sg matrix configs ${be.caps.subgroupMatrixConfigs.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ') || 'none'}`);
  writeFileSync(META, JSON.stringify({ device: be.name, workgroupStorage: be.caps.maxComputeWorkgroupStorageSize, subgroupMatrixConfigs: be.caps.subgroupMatrixConfigs }));
}
let index = 0;
for (const c of CASES) {
  if (index + VARIANTS[c.rank].length <= from) { index += VARIANTS[c.rank].length; continue; }
  const shape = [1, c.heads, ...c.spatial, c.D];
  const shapeName = `1x${c.heads}x${c.spatial.join('x')}x${c.D}_k${c.window.join('x')}`;
  const [q, k, v] = mk(shape, c.heads, 1);
  const opts: NeighborhoodOptions = { kernelSize: c.window };
  const p = describeProblem('na-sweep', c.rank, q, k, v, opts);
  const N = c.spatial.reduce((a, b) => a * b, 1);
  const flops = 4 * c.heads * N * c.window.reduce((a, b) => a * b, 1) * c.D;
  const plainOut = runFusedKernel(p, q, k, v, c.rank === 2 ? [1, 8, 8] : [4, 4, 4], false);
  const plain = await plainOut.toArray();
  plainOut.dispose();
  const timed: Array<{ name: string; run: () => void; ms: number }> = [];
  for (const variant of VARIANTS[c.rank]) {
    if (index++ < from) continue;
    writeFileSync(CURRENT, String(index - 1));
    // Exercises the crash recovery: NA_SWEEP_CRASH=<variant index> kills the child there.
    if (process.env.NA_SWEEP_CRASH === String(index - 1)) process.kill(process.pid, 'SIGSEGV');
    const row: Row = { variant: variant.name, case: c.name, shape: shapeName };
    try {
      let run: (p: Problem, q: Tensor, k: Tensor, v: Tensor, o: NeighborhoodOptions) => Tensor;
      if (variant.kind === 'library') {
        run = (_pp, qq, kk, vv, oo) => (c.rank === 2 ? na2d : na3d)(qq, kk, vv, oo);
      } else if (variant.kind === 'plain') {
        const tile = variant.tile;
        run = (pp, qq, kk, vv) => runFusedKernel(pp, qq, kk, vv, tile, false);
      } else {
        const cfg = variant.cfg;
        const why = sgUnsupported(be, p, cfg);
        row.workgroupBytes = sgWorkgroupBytes(cfg, { D: c.D, k: [c.rank === 2 ? 1 : c.window[0]!, ...c.window.slice(-2)] as [number, number, number] });
        const box = sgBox(cfg, { D: c.D, k: [c.rank === 2 ? 1 : c.window[0]!, ...c.window.slice(-2)] as [number, number, number] });
        row.notes = `key box ${box.span.join('x')} = ${box.blocks * 16} keys per 16 queries, ${box.chunks} chunk(s)`;
        if (why) throw new Error(`unsupported: ${why}`);
        run = (pp, qq, kk, vv) => runSg(pp, qq, kk, vv, cfg);
      }
      const out = run(p, q, k, v, opts);
      row.maxErrVsPlain = maxAbsDiff(await out.toArray(), plain);
      out.dispose();
      be.checkHealthy(variant.name);
      // The plain kernel's small cases are the package's own tests; the new kernels are checked here.
      if (variant.kind !== 'plain') row.maxErrSmallVsCpu = await smallError(c.rank, (pp, qq, kk, vv, oo) => {
        if (variant.kind === 'sg' && sgUnsupported(be, pp, variant.cfg)) throw new Error(`small check not covered: ${sgUnsupported(be, pp, variant.cfg)}`);
        return run(pp, qq, kk, vv, oo);
      });
      const t = await timeIt(be, () => run(p, q, k, v, opts).dispose(), { reps: small ? 3 : 5 });
      Object.assign(row, t, { tflops: flops / (t.medianMs * 1e9) });
      if (!variant.name.includes('(again)')) timed.push({ name: variant.name, run: () => run(p, q, k, v, opts).dispose(), ms: t.minMs });
    } catch (e) {
      row.error = (e as Error).message.slice(0, 1500);
    }
    record(row);
  }
  // Round-robin: ROUNDS passes over every variant that ran, each sample ~4 ms of dispatches.
  const ROUNDS = small ? 2 : 12;
  const samples = timed.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, tv] of timed.entries()) {
      const inner = Math.max(1, Math.min(64, Math.ceil(4 / Math.max(tv.ms, 0.01))));
      const t0 = performance.now();
      for (let j = 0; j < inner; j++) tv.run();
      await be.sync();
      samples[i]!.push((performance.now() - t0) / inner);
    }
  }
  for (const [i, tv] of timed.entries()) {
    const xs = [...samples[i]!].sort((a, b) => a - b);
    const at = (f: number) => xs[Math.min(xs.length - 1, Math.floor(f * xs.length))]!;
    const rr = { rrMinMs: xs[0]!, rrP25Ms: at(0.25), rrMedianMs: at(0.5), rrSamples: xs.length, rrTflops: flops / (xs[0]! * 1e9) };
    appendFileSync(ROWS, JSON.stringify({ variant: tv.name, case: c.name, rrOnly: true, ...rr }) + '\n');
    console.log(`[${c.name}] round-robin ${tv.name}: min ${rr.rrMinMs.toFixed(3)} p25 ${rr.rrP25Ms.toFixed(3)} median ${rr.rrMedianMs.toFixed(3)} ms (${rr.rrTflops.toFixed(2)} TFLOP/s useful at min)`);
  }
  for (const t of [q, k, v]) t.dispose();
}

be.destroy();
