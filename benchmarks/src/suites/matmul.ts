import { appendFileSync } from 'node:fs';
import {
  chooseMatmulVariant, CpuBackend, matmul, matmulParams, matmulVariantName, matmulWith, random, type Backend, type Tensor, type WebGpuBackend,
} from '@attnkit/tensor';
import { peerKey, timeIt, withPeer, type BenchRow, type Suite, type SuiteContext } from '../harness.js';

// Matmul on every variant side by side (llm.c style). Variants are forced through
// ATTNKIT_MATMUL_VARIANT (read by @attnkit/tensor's runMatmul on each call); the row
// named plain `matmul` is what runMatmul picks by itself. Each variant is first checked
// against the float64 CPU reference on a mid-size shape (and a ragged one where it
// handles edges); the max error goes into the row's notes.

const VARIANT_ENV = 'ATTNKIT_MATMUL_VARIANT';

// The first H200 sweep (benchmarks/results/h200, commit 4616b7e) also had tiled 128x64x16-8x4,
// 64x64x16-4x4, 128x128x32-8x8; sgmatrix 2x2 subgroups of 2x2 fragments, 2x4 of 4x2, 4x4
// of 2x2, 2x2 of 4x2; gemv 1,256 and 2,128: all slower than those kept here.
/** Register-blocked f32 configurations tried side by side: BM,BN,BK,TM,TN[,DB]. */
const TILED = ['128,128,16,8,8', '128,128,16,8,8,1', '128,128,8,8,8', '128,128,8,8,8,1', '64,128,16,4,8,1', '32,64,16,4,4'];
/** Subgroup-matrix configurations: SGR,SGC,FR,FC,KU (subgroups per workgroup, fragments per subgroup, K unroll). */
const SGMATRIX = ['2,2,4,4,2', '2,2,4,4,1', '2,2,4,4,4', '1,1,4,4,1', '4,2,2,4,1', '4,2,4,4,2'];
/**
 * Staged subgroup-matrix configurations: SGR,SGC,FR,FC,BK[,PAD,DB] (BK halves of K staged per
 * step, PAD halves of row padding, DB=0 for one staging buffer). MATMUL_SGSTAGED (configs
 * separated by ';') replaces the list for a sweep.
 */
const SGSTAGED = process.env.MATMUL_SGSTAGED?.split(';') ?? ['2,2,4,4,32', '2,4,4,2,32', '4,2,2,4,32', '2,4,4,4,16', '4,2,4,4,16'];
/** Small-M configurations: R,WG (weight rows per workgroup, threads). */
const GEMV = ['2,64', '8,64', '4,256', '4,128'];

interface Problem { M: number; K: number; N: number; da: 'f32' | 'f16'; db: 'f32' | 'f16'; transB: boolean; batch?: number }

function withVariant<T>(spec: string | null, fn: () => T): T {
  const prev = process.env[VARIANT_ENV];
  if (spec) process.env[VARIANT_ENV] = spec;
  else delete process.env[VARIANT_ENV];
  try {
    return fn();
  } finally {
    if (prev === undefined) delete process.env[VARIANT_ENV];
    else process.env[VARIANT_ENV] = prev;
  }
}

function make(be: Backend, p: Problem, seed: number): [Tensor, Tensor] {
  const bat = p.batch ? [p.batch] : [];
  const a = random(be, [...bat, p.M, p.K], { seed, dtype: p.da });
  const b = random(be, [...bat, ...(p.transB ? [p.N, p.K] : [p.K, p.N])], { seed: seed + 1, dtype: p.db });
  return [a, b];
}

/** Max |error| and max error relative to the largest reference magnitude, against the float64 CPU backend. */
const references = new Map<string, Float32Array>();

async function reference(p: Problem): Promise<Float32Array> {
  const key = JSON.stringify(p);
  if (!references.has(key)) {
    const cpu = new CpuBackend();
    const [ca, cb] = make(cpu, p, 7);
    references.set(key, (await matmul(ca, cb, { transB: p.transB }).toArray()) as Float32Array);
  }
  return references.get(key)!;
}

async function maxError(be: Backend, spec: string, p: Problem): Promise<string> {
  const want = await reference(p);
  const [a, b] = make(be, p, 7);
  try {
    const got = await withVariant(spec, () => matmul(a, b, { transB: p.transB })).toArray();
    let maxAbs = 0;
    let scale = 0;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(got[i]! - want[i]!);
      maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
      scale = Math.max(scale, Math.abs(want[i]!));
    }
    return `maxAbsErr ${maxAbs.toExponential(2)} (rel ${(maxAbs / scale).toExponential(2)}) vs CPU f64 on ${p.M}x${p.K}x${p.N}`;
  } catch (e) {
    return `check on ${p.M}x${p.K}x${p.N} failed: ${(e as Error).message.slice(0, 200)}`;
  } finally {
    a.dispose();
    b.dispose();
  }
}

interface RowSpec {
  kernel: string;
  /** The row's peer key (kernel, shape, dtype), shared by every variant of one problem. */
  peer: [string, string, string];
  shape: string;
  dtype: string;
  spec: string | null;
  problem: Problem;
  /** Problems per timed call (batched GEMVs); figures are per problem. */
  per?: number;
  work: { flops?: number; bytes?: number };
  notes?: string;
}

async function timeRow(be: Backend, ctx: SuiteContext, r: RowSpec, ab: [Tensor, Tensor]): Promise<BenchRow> {
  const [a, b] = ab;
  const t = await timeIt(be, () => withVariant(r.spec, () => matmul(a, b, { transB: r.problem.transB })).dispose(), {
    reps: ctx.big ? 9 : 3, maxInner: ctx.big ? 64 : 4,
  });
  const per = r.per ?? 1;
  const ms = { medianMs: t.medianMs / per, minMs: t.minMs / per, maxMs: t.maxMs / per, reps: t.reps };
  const row: BenchRow = {
    package: 'tensor', kernel: r.kernel, shape: r.shape, dtype: r.dtype, backend: be.kind, device: ctx.device, ...ms,
    ...(r.work.flops ? { gflops: r.work.flops / (ms.medianMs * 1e6) } : {}),
    ...(r.work.bytes ? { gbps: r.work.bytes / (ms.medianMs * 1e6) } : {}),
    ...(r.notes ? { notes: r.notes } : {}),
  };
  return withPeer(row, ctx.peers.get(peerKey(...r.peer)), r.work);
}

function hasSgmatrix(be: Backend): boolean {
  return be.kind === 'webgpu' && be.caps.shaderF16 && be.caps.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32');
}

export const matmulSuite: Suite = {
  name: 'matmul',
  async run(be: Backend, ctx) {
    const rows: BenchRow[] = [];
    const log = process.env.MATMUL_BENCH_LOG;
    // MATMUL_BENCH_ONLY (a regular expression on `kernel shape dtype`) keeps a short GPU run to the rows in question.
    const only = process.env.MATMUL_BENCH_ONLY ? new RegExp(process.env.MATMUL_BENCH_ONLY) : null;
    const wanted = (kernel: string, shape: string, dtype: string) => !only || only.test(`${kernel} ${shape} ${dtype}`);
    const emit = (row: BenchRow) => {
      rows.push(row);
      console.log(`  ${row.kernel} ${row.shape} ${row.dtype}: ${row.medianMs.toFixed(4)} ms${row.gflops ? ` ${(row.gflops / 1000).toFixed(2)} TFLOP/s` : ''}${row.gbps ? ` ${row.gbps.toFixed(1)} GB/s` : ''}${row.ratio ? ` ratio ${row.ratio.toFixed(3)}` : ''} ${row.notes ?? ''}`);
      // Rows reach disk one by one, so a driver crash part-way keeps what was measured.
      if (log) appendFileSync(log, JSON.stringify(row) + '\n');
    };
    const gpu = be.kind === 'webgpu';
    if (gpu) console.log(`  caps: ${JSON.stringify(be.caps)}`);
    // Lavapipe runs at a few GFLOP/s: its rows show the variants work there, not speed.
    const sizes = ctx.big ? [4096, 8192] : be.kind === 'cpu' ? [128] : [256];
    const check = ctx.big ? { M: 512, K: 768, N: 640 } : { M: 64, K: 96, N: 128 };
    const ragged = ctx.big ? { M: 509, K: 771, N: 643 } : { M: 61, K: 99, N: 83 };
    const errors = new Map<string, string>();
    const errorOf = async (spec: string, p: Problem, shapes: Array<Pick<Problem, 'M' | 'K' | 'N'>>): Promise<string> => {
      const key = `${spec}|${p.da}|${p.db}|${p.transB}|${p.M}`;
      if (!errors.has(key)) {
        const notes: string[] = [];
        for (const sh of shapes) notes.push(await maxError(be, spec, { ...p, batch: undefined, ...sh }));
        const note = notes.join('; ');
        errors.set(key, note);
      }
      return errors.get(key)!;
    };

    for (const dtype of ['f32', 'f16'] as const) {
      const specs: Array<string | null> = [null];
      if (gpu) {
        // f16 operands through the tiled kernel only in its default configuration: the sweep is for f32.
        specs.push('generic', ...(dtype === 'f32' ? TILED.map((c) => `tiled:${c}`) : ['tiled']));
        if (dtype === 'f16' && hasSgmatrix(be)) specs.push(...SGMATRIX.map((c) => `sgmatrix:${c}`), ...SGSTAGED.map((c) => `sgstaged:${c}`));
      }
      for (const n of sizes) {
        const p: Problem = { M: n, K: n, N: n, da: dtype, db: dtype, transB: false };
        const s = `${n}x${n}x${n}`;
        // The one-output-per-thread kernel is only a baseline: skip its slowest size.
        const here = specs.filter((spec) => !(spec === 'generic' && ctx.big && n > 4096) && wanted(spec ? `matmul/${spec}` : 'matmul', s, dtype));
        if (!here.length) continue;
        const ab = make(be, p, 1);
        for (const spec of here) {
          // Subgroup-matrix variants need shapes that divide their tile; the others also get a ragged one.
          const notes = spec && gpu ? await errorOf(spec, p, spec.startsWith('sg') ? [check] : [check, ragged]) : undefined;
          try {
            emit(await timeRow(be, ctx, {
              kernel: spec ? `matmul/${spec}` : 'matmul', peer: ['matmul', s, dtype], shape: s, dtype, spec, problem: p,
              work: { flops: 2 * n ** 3 }, notes,
            }, ab));
          } catch (e) {
            console.error(`matmul ${spec ?? 'auto'} ${s} ${dtype} failed: ${(e as Error).message}`);
          }
        }
        // The kernel runMatmul picks, writing into one preallocated output: what the peer's
        // caching allocator gives torch, so the ratio compares kernels, not allocations.
        if (gpu && ctx.big && wanted('matmul-prealloc', s, dtype)) {
          const wg = be as WebGpuBackend;
          const mp = matmulParams(ab[0], ab[1]);
          const v = chooseMatmulVariant(wg, ab[0], ab[1], mp);
          const into = wg.empty('matmul', 'f32', [n, n]);
          try {
            const t = await timeIt(be, () => { matmulWith(wg, ab[0], ab[1], mp, v, into); }, { reps: 9, maxInner: 64 });
            emit(withPeer({
              package: 'tensor', kernel: 'matmul-prealloc', shape: s, dtype, backend: be.kind, device: ctx.device, ...t, gflops: (2 * n ** 3) / (t.medianMs * 1e6),
              notes: `${matmulVariantName(v)} (runMatmul's choice) into a preallocated f32 output, no allocation per call`,
            }, ctx.peers.get(peerKey('matmul', s, dtype)), { flops: 2 * n ** 3 }));
          } catch (e) {
            console.error(`matmul-prealloc ${s} ${dtype} failed: ${(e as Error).message}`);
          }
          into.dispose();
        }
        ab[0].dispose();
        ab[1].dispose();
      }
    }

    // Decode: x f32 [1, K] times W^T with W [N, K] f16, the LLM decoder's call. The
    // batched rows run 8 distinct GEMVs per call so per-dispatch CPU cost in Dawn does
    // not stand in for GPU time; the plain row is one call, overhead included.
    const D = ctx.big ? 4096 : be.kind === 'cpu' ? 256 : 512;
    const dshape = `1x${D}x${D}`;
    const bytes = D * D * 2 + D * 4 + D * 4;
    const decodeSpecs: Array<string | null> = [null];
    if (gpu) decodeSpecs.push(...GEMV.map((c) => `gemv:${c}`), `tiled:${TILED[TILED.length - 1]}`, 'generic');
    for (const batched of [false, true]) {
      if (batched && !gpu) continue;
      const B = batched ? 8 : 1;
      if (!decodeSpecs.some((spec) => wanted(`matmul-decode${batched ? '-batched' : ''}${spec ? `/${spec}` : ''}`, dshape, 'f16')) && (batched || !wanted('matmul-decode', `4x${D}x${D}`, 'f16'))) continue;
      const p: Problem = { M: 1, K: D, N: D, da: 'f32', db: 'f16', transB: true, ...(batched ? { batch: B } : {}) };
      const ab = make(be, p, 3);
      for (const spec of decodeSpecs) {
        if (!wanted(`matmul-decode${batched ? '-batched' : ''}${spec ? `/${spec}` : ''}`, dshape, 'f16')) continue;
        const notes = [spec && gpu ? await errorOf(spec, p, [{ M: 1, K: D, N: D }, { M: 1, K: 1032, N: 1001 }]) : '', batched ? `timed as ${B} GEMVs (distinct weights) per dispatch, figures per GEMV` : 'one dispatch per call']
          .filter(Boolean).join('; ');
        try {
          emit(await timeRow(be, ctx, {
            kernel: `matmul-decode${batched ? '-batched' : ''}${spec ? `/${spec}` : ''}`, peer: ['matmul-decode', dshape, 'f16'],
            shape: dshape, dtype: 'f16', spec, problem: p, per: B, work: { flops: 2 * D * D, bytes }, notes,
          }, ab));
        } catch (e) {
          console.error(`matmul-decode ${spec ?? 'auto'} failed: ${(e as Error).message}`);
        }
      }
      // A few tokens at once (speculative decoding, small batches) on the same weights.
      if (!batched) {
        for (const S of [4, 8, 16, 64]) {
          if (!wanted('matmul-decode', `${S}x${D}x${D}`, 'f16')) continue;
          const ps: Problem = { ...p, M: S };
          const abS = make(be, ps, 5);
          try {
            emit(await timeRow(be, ctx, {
              kernel: 'matmul-decode', peer: ['matmul-decode', `${S}x${D}x${D}`, 'f16'], shape: `${S}x${D}x${D}`, dtype: 'f16', spec: null, problem: ps,
              work: { flops: 2 * S * D * D, bytes: D * D * 2 + S * D * 8 }, notes: 'x f32, W f16 [N,K], transB; variant chosen by runMatmul',
            }, abS));
          } catch (e) {
            console.error(`matmul-decode S=${S} failed: ${(e as Error).message}`);
          }
          abS[0].dispose();
          abS[1].dispose();
        }
      }
      ab[0].dispose();
      ab[1].dispose();
    }
    return rows;
  },
};
