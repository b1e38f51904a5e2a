import {
  blockSparseAttention, calibrate, sgmatrixProbeProgram, denseAttention, gatherTokens, maskDensity, paroAttention, planFor,
  syntheticVideoQK, tokenCount, type ParoOptions, type VideoLayout,
} from '@attnkit/paro';
import { CpuBackend, random, tensor, type Backend, type WebGpuBackend } from '@attnkit/tensor';
import { peerKey, timeIt, withPeer, type BenchRow, type Suite } from '../harness.js';

// PARO on a video token grid: calibrated per-head orders, a 25% block mask, int8 Q.K,
// against our dense f16 kernel on the same tokens (and torch SDPA from peer_paro.py).
// Q/K are synthetic with per-head locality along F, H, W or H+W (paro's syntheticVideoQK),
// so the calibration has real structure to find; V is random.

function relL1(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) { num += Math.abs(a[i]! - b[i]!); den += Math.abs(b[i]!); }
  return num / den;
}

export const paroSuite: Suite = {
  name: 'paro',
  async run(be: Backend, ctx) {
    if (be.kind === 'cpu') return []; // the float64 reference at these sizes says nothing about speed
    const layout: VideoLayout = ctx.big ? { frames: 16, height: 32, width: 32 } : { frames: 4, height: 8, width: 16 };
    const H = ctx.big ? 8 : 2;
    const D = 64;
    const density = 0.25;
    const N = tokenCount(layout);
    const { q: qa, k: ka } = syntheticVideoQK(layout, { heads: H, headDim: D, broad: ['F', 'H', 'W', 'HW'], seed: 5 });
    const cpu = new CpuBackend();
    const t0 = performance.now();
    const cal = await calibrate(tensor(cpu, qa, [H, N, D]), tensor(cpu, ka, [H, N, D]), layout, { density, sampleRows: 128, maskRowsPerBlock: 1 });
    const calMs = performance.now() - t0;
    const plan = planFor(cal);
    const q = tensor(be, qa, [1, H, N, D], 'f16');
    const k = tensor(be, ka, [1, H, N, D], 'f16');
    const v = random(be, [1, H, N, D], { seed: 9, dtype: 'f16' });
    const shape = `1x${H}x${layout.frames}x${layout.height}x${layout.width}x${D}`;
    const rows: BenchRow[] = [];
    const reps = ctx.big ? 15 : 3;
    const row = (kernel: string, t: Awaited<ReturnType<typeof timeIt>>, flops: number, notes: string): BenchRow => ({
      package: 'paro', kernel, shape, dtype: 'f16', backend: be.kind, device: ctx.device, ...t, gflops: flops / (t.medianMs * 1e6), notes,
    });
    const denseFlops = 4 * H * N * N * D;
    // At least 1 s of warm-up on big runs, with or without the runner's ATTNKIT_BENCH_WARMUP_MS:
    // synced calls ran 20-30 ms slower for ~0.4 s after a subgroup-matrix pipeline was created (H200).
    const warm = ctx.big ? 1000 : 0;
    const dense = await timeIt(be, () => denseAttention(q, k, v).dispose(), { reps, maxInner: 4, warmupMs: warm });
    const denseOut = await denseAttention(q, k, v).toArray();
    rows.push(withPeer(row('dense', dense, denseFlops, 'our fused dense f16 kernel (every block); peer: torch SDPA f16'), ctx.peers.get(peerKey('dense', shape, 'f16')), { flops: denseFlops }));
    const actual = maskDensity(plan.mask);
    const orders = cal.heads.map((h) => h.order).join(',');
    const ourDense = { name: 'attnkit dense f16 fused kernel, same tokens', medianMs: dense.medianMs };

    // End to end: the per-head order applied inside the quantize and attention kernels
    // (the default), and the first implementation's separate permute/unpermute passes.
    const e2e: Array<[string, ParoOptions, string]> = [
      ['paro-int8', { qk: 'int8' }, 'order fused into the int8 quantize passes and the kernel (V read, O written through it), packed int8 Q.K, f16 V'],
      ['paro-int8-int8pv', { qk: 'int8', pv: 'int8' }, "as paro-int8 with pv: 'int8' (V int8 per block and channel, integer P.V)"],
      ['paro-float', { qk: 'float' }, 'order fused into the float kernel (one dispatch)'],
      ['paro-int8-separate', { qk: 'int8', permute: 'separate' }, 'separate passes: permute Q, K, V, int8 quantize, sparse kernel, unpermute'],
    ];
    for (const [name, opts, how] of e2e) {
      const t = await timeIt(be, () => paroAttention(q, k, v, cal, opts).dispose(), { reps, warmupMs: warm });
      const out = await paroAttention(q, k, v, cal, opts).toArray();
      const err = relL1(out, denseOut);
      rows.push({
        ...row(name, t, denseFlops * actual, `end to end: ${how}; density ${actual.toFixed(4)}; relative L1 error vs dense ${err.toExponential(3)}; orders ${orders}; calibration ${calMs.toFixed(0)} ms on the CPU`),
        peer: ourDense, ratio: dense.medianMs / t.medianMs,
      });
    }
    // Kernel only, on tokens already in PARO order (the paper fuses the permutation into RoPE).
    const qp = gatherTokens(q, plan.forward, H);
    const kp = gatherTokens(k, plan.forward, H);
    const vp = gatherTokens(v, plan.forward, H);
    const t = await timeIt(be, () => blockSparseAttention(qp, kp, vp, plan.mask, { qk: 'int8' }).dispose(), { reps, warmupMs: warm });
    rows.push({ ...row('paro-int8-kernel', t, denseFlops * actual, `int8 quantize + block-sparse kernel on pre-permuted tokens; density ${actual.toFixed(4)}`), peer: ourDense, ratio: dense.medianMs / t.medianMs });
    for (const x of [q, k, v, qp, kp, vp]) x.dispose();
    return rows;
  },
};

/**
 * The i8 subgroup-matrix variant against the plain int8 path, on the same 25% mask
 * and pre-permuted tokens. A separate suite (run last) because staged subgroup-matrix
 * kernels have crashed Dawn on this machine before (shared/gpu/README.md): a crash here
 * must not lose the other suites' JSON.
 */
export const paroSgmatrixSuite: Suite = {
  name: 'paro-sgmatrix',
  async run(be: Backend, ctx) {
    if (be.kind === 'cpu' || !be.caps.subgroupMatrixConfigs.some((c) => c.componentType === 'i8')) return [];
    const layout: VideoLayout = ctx.big ? { frames: 16, height: 32, width: 32 } : { frames: 4, height: 8, width: 16 };
    const H = ctx.big ? 8 : 2;
    const D = 64;
    const N = tokenCount(layout);
    const { q: qa, k: ka } = syntheticVideoQK(layout, { heads: H, headDim: D, broad: ['F', 'H', 'W', 'HW'], seed: 5 });
    const cal = await calibrate(tensor(new CpuBackend(), qa, [H, N, D]), tensor(new CpuBackend(), ka, [H, N, D]), layout, { density: 0.25, sampleRows: 64, maskRowsPerBlock: 1 });
    const plan = planFor(cal);
    const q = gatherTokens(tensor(be, qa, [1, H, N, D], 'f16'), plan.forward, H);
    const k = gatherTokens(tensor(be, ka, [1, H, N, D], 'f16'), plan.forward, H);
    const v = random(be, [1, H, N, D], { seed: 9, dtype: 'f16' });
    const shape = `1x${H}x${layout.frames}x${layout.height}x${layout.width}x${D}`;
    const plain = await blockSparseAttention(q, k, v, plan.mask, { qk: 'int8', int8Path: 'plain' }).toArray();
    const sgm = await blockSparseAttention(q, k, v, plan.mask, { qk: 'int8', int8Path: 'sgmatrix' }).toArray();
    let maxErr = 0;
    for (let i = 0; i < plain.length; i++) maxErr = Math.max(maxErr, Math.abs(plain[i]! - sgm[i]!));
    process.env.ATTNKIT_PARO_SGM_RELOAD_Q = '1';
    const sgmReload = await blockSparseAttention(q, k, v, plan.mask, { qk: 'int8', int8Path: 'sgmatrix' }).toArray();
    delete process.env.ATTNKIT_PARO_SGM_RELOAD_Q;
    let reloadErr = 0;
    for (let i = 0; i < plain.length; i++) reloadErr = Math.max(reloadErr, Math.abs(plain[i]! - sgmReload[i]!));
    const probe = await probeTile(be as WebGpuBackend);
    const plainCall = () => blockSparseAttention(q, k, v, plan.mask, { qk: 'int8', int8Path: 'plain' }).dispose();
    const sgmCall = () => blockSparseAttention(q, k, v, plan.mask, { qk: 'int8', int8Path: 'sgmatrix' }).dispose();
    const tPlain = await timeIt(be, plainCall, { reps: 15, warmupMs: ctx.big ? 1000 : 0 });
    const tSgm = await timeIt(be, sgmCall, { reps: 15, warmupMs: ctx.big ? 1000 : 0 });
    const flops = 4 * H * N * N * D * maskDensity(plan.mask);
    const base = { package: 'paro', shape, dtype: 'f16', backend: be.kind, device: ctx.device } as const;
    const rows: BenchRow[] = [
      { ...base, kernel: 'paro-int8-kernel-plain', ...tPlain, gflops: flops / (tPlain.medianMs * 1e6), notes: 'plain int8 path (packed int8 Q/K, dot4I8Packed scores, f16 V), pre-permuted tokens, 25% mask' },
      {
        ...base, kernel: 'paro-int8-kernel-sgmatrix', ...tSgm, gflops: flops / (tSgm.medianMs * 1e6),
        peer: { name: 'plain int8 path', medianMs: tPlain.medianMs }, ratio: tPlain.medianMs / tSgm.medianMs,
        notes: `i8 subgroup-matrix Q.K path; max |difference| vs the plain int8 path ${maxErr.toExponential(3)} (Q fragments reloaded per block: ${reloadErr.toExponential(3)}); one-tile probe: ${probe}`,
      },
    ];
    for (const x of [q, k, v]) x.dispose();
    return rows;
  },
};

/** One 16x16x32 i8 tile through the subgroup-matrix builtins, compared with integer math. */
async function probeTile(be: WebGpuBackend): Promise<string> {
  const a = new Int8Array(16 * 32);
  const b = new Int8Array(16 * 32);
  for (let i = 0; i < a.length; i++) { a[i] = ((i * 37) % 255) - 127; b[i] = ((i * 53 + 11) % 255) - 127; }
  const at = tensor(be, a, [16, 32], 'i8');
  const bt = tensor(be, b, [16, 32], 'i8');
  const direct = be.empty('probe', 'i32', [256]);
  const staged = be.empty('probe', 'i32', [256]);
  be.dispatch({ program: sgmatrixProbeProgram(), inputs: [be.buffer(at, 'probe'), be.buffer(bt, 'probe')], outputs: [be.buffer(direct, 'probe'), be.buffer(staged, 'probe')], grid: [1, 1, 1] });
  const [d, s] = await Promise.all([direct.toArray(), staged.toArray()]);
  const want = new Float64Array(256);
  for (let m = 0; m < 16; m++) for (let n = 0; n < 16; n++) { let acc = 0; for (let k = 0; k < 32; k++) acc += a[m * 32 + k]! * b[n * 32 + k]!; want[m * 16 + n] = acc; }
  const diff = (x: ArrayLike<number>, transposed: boolean) => {
    let worst = 0;
    for (let m = 0; m < 16; m++) for (let n = 0; n < 16; n++) worst = Math.max(worst, Math.abs(x[transposed ? n * 16 + m : m * 16 + n]! - want[m * 16 + n]!));
    return worst;
  };
  return `direct store max|diff| ${diff(d, false)} (transposed ${diff(d, true)}), via workgroup memory ${diff(s, false)}`;
}
