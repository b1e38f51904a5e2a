import { ArgumentError, CpuBackend, DTypeError, random, ShapeError, tensor, zeros, type Backend, type Tensor } from '@attnkit/tensor';
import { backendsForTests, compareClose, TOLERANCE } from '@attnkit/tensor/testing';
import * as E from 'fp-ts/lib/Either.js';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AXIS_ORDERS, blockSparseAttention, calibrate, configureInt8PV, configurePackedDot, configureSparseStaging, quantizeBlocks, calibrationFromJson, calibrationToJson, CalibrationFormatError,
  DensityError, denseAttention, fullMask, LayoutError, maskDensity, orderPermutation, paroAttention,
  syntheticVideoQK, tokenCount, type BlockMask, type Calibration, type VideoLayout,
} from '../src/index.js';

let backends: Backend[] = [];
beforeAll(async () => {
  backends = await backendsForTests();
});

function relL1(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) { num += Math.abs(a[i]! - b[i]!); den += Math.abs(b[i]!); }
  return num / den;
}

describe('layout and permutation', () => {
  it('every order is a bijection that keeps text tokens first; FHW is the identity', () => {
    const l: VideoLayout = { frames: 3, height: 4, width: 5, text: 2 };
    for (const o of AXIS_ORDERS) {
      const p = orderPermutation(l, o);
      expect(new Set(p).size).toBe(tokenCount(l));
      expect([p[0], p[1]]).toEqual([0, 1]);
    }
    expect([...orderPermutation(l, 'FHW')]).toEqual(Array.from({ length: 62 }, (_, i) => i));
    // HWF: frames innermost, so positions 2,3,4 are token (h0,w0) of frames 0,1,2.
    expect([...orderPermutation(l, 'HWF').subarray(2, 5)]).toEqual([2, 22, 42]);
  });
});

describe('calibration', () => {
  it('picks the order whose innermost axis is the one each head aggregates along', async () => {
    const layout: VideoLayout = { frames: 4, height: 12, width: 12 };
    const cpu = new CpuBackend();
    const { q, k } = syntheticVideoQK(layout, { heads: 3, headDim: 32, broad: ['F', 'H', 'W'], seed: 3 });
    const N = tokenCount(layout);
    const cal = await calibrate(tensor(cpu, q, [3, N, 32]), tensor(cpu, k, [3, N, 32]), layout, { density: 0.25, sampleRows: 128 });
    expect(cal.heads.map((h) => h.order.at(-1))).toEqual(['F', 'H', 'W']);
    for (const h of cal.heads) {
      const best = Math.max(...Object.values(h.scores));
      expect(h.scores[h.order]).toBe(best);
      expect(h.scores.FHW).toBeLessThanOrEqual(best);
    }
    expect(maskDensity({ heads: 3, tokens: N, blocks: 9, lists: cal.heads.map((h) => h.mask) })).toBeCloseTo(2 / 9, 5);
  });

  it('round-trips through JSON and rejects corrupted files with the field named', async () => {
    const layout: VideoLayout = { frames: 2, height: 5, width: 7, text: 3 };
    const cpu = new CpuBackend();
    const N = tokenCount(layout);
    const cal = await calibrate(random(cpu, [2, N, 16], { seed: 1 }), random(cpu, [1, N, 16], { seed: 2 }), layout, { density: 0.5, sampleRows: 32 });
    const back = calibrationFromJson(calibrationToJson(cal));
    expect(E.isRight(back) && JSON.stringify(back.right)).toBe(JSON.stringify(cal));
    const bad: Array<[string, string]> = [
      ['{', '(json)'],
      [JSON.stringify({ ...cal, version: 2 }), 'version'],
      [JSON.stringify({ ...cal, density: 0 }), 'density'],
      [JSON.stringify({ ...cal, layout: { ...cal.layout, width: -1 } }), 'layout.width'],
      [JSON.stringify({ ...cal, heads: [{ ...cal.heads[0], order: 'FFF' }] }), 'heads[0].order'],
      [JSON.stringify({ ...cal, heads: [{ ...cal.heads[0], mask: [[0]] }] }), 'heads[0].mask'],
      [JSON.stringify({ ...cal, heads: [{ ...cal.heads[0], mask: cal.heads[0]!.mask.map(() => [1, 0]) }] }), 'heads[0].mask[0][1]'],
    ];
    for (const [text, field] of bad) {
      const r = calibrationFromJson(text, 'cal.json');
      expect(E.isLeft(r), field).toBe(true);
      if (E.isLeft(r)) {
        expect(r.left, `${field}: ${String(r.left)}`).toBeInstanceOf(CalibrationFormatError);
        expect(r.left.field).toBe(field);
      }
    }
  });
});

describe('block-sparse kernels against the float64 reference', () => {
  const N = 3 * 7 * 9 + 5; // 194 tokens: 4 blocks, the last partial
  function randomMask(heads: number, seed: number): BlockMask {
    const m = fullMask(heads, N);
    let s = seed;
    m.lists = m.lists.map((head) => head.map((row, qb) => row.filter((kb) => kb === qb || ((s = (s * 1103515245 + 12345) % 2 ** 31) & 1) === 1)));
    return m;
  }

  it('float f32 / f16, dense and random masks, GQA', async () => {
    const cpu = new CpuBackend();
    for (const be of backends.filter((b) => b.kind !== 'cpu')) {
      for (const dtype of ['f32', 'f16'] as const) {
        const q = random(be, [1, 4, N, 16], { seed: 1, dtype });
        const k = random(be, [1, 2, N, 16], { seed: 2, dtype });
        const v = random(be, [1, 2, N, 16], { seed: 3, dtype });
        const qc = tensor(cpu, await q.toArray(), q.shape, dtype);
        const kc = tensor(cpu, await k.toArray(), k.shape, dtype);
        const vc = tensor(cpu, await v.toArray(), v.shape, dtype);
        for (const mask of [randomMask(4, 5), 'dense' as const]) {
          const got = await blockSparseAttention(q, k, v, mask).toArray();
          const want = await blockSparseAttention(qc, kc, vc, mask).toArray();
          const r = compareClose(got, want, TOLERANCE[dtype].atol, TOLERANCE[dtype].rtol);
          expect(r.ok, `${dtype} ${mask === 'dense' ? 'dense' : 'sparse'}: ${r.message}`).toBe(true);
        }
      }
    }
  });

  it('int8 Q.K path (plain) follows the int8 reference and stays near float', async () => {
    const cpu = new CpuBackend();
    for (const be of backends.filter((b) => b.kind !== 'cpu')) {
      const q = random(be, [1, 2, N, 32], { seed: 4, dtype: 'f16' });
      const k = random(be, [1, 2, N, 32], { seed: 5, dtype: 'f16' });
      const v = random(be, [1, 2, N, 32], { seed: 6, dtype: 'f16' });
      const [qa, ka, va] = await Promise.all([q.toArray(), k.toArray(), v.toArray()]);
      const mask = randomMask(2, 9);
      const got = await blockSparseAttention(q, k, v, mask, { qk: 'int8' }).toArray();
      const ref8 = await blockSparseAttention(tensor(cpu, qa, q.shape), tensor(cpu, ka, k.shape), tensor(cpu, va, v.shape), mask, { qk: 'int8' }).toArray();
      const ref = await blockSparseAttention(tensor(cpu, qa, q.shape), tensor(cpu, ka, k.shape), tensor(cpu, va, v.shape), mask).toArray();
      // P is rounded against the running max on the GPU and the final max on the CPU.
      const r = compareClose(got, ref8, 2e-2, 0);
      expect(r.ok, r.message).toBe(true);
      expect(relL1(got, ref)).toBeLessThan(0.05);
      // The packed dot4I8Packed route and the unpacked f32 route sum the same integers exactly.
      configurePackedDot(false);
      try {
        const unpacked = await blockSparseAttention(q, k, v, mask, { qk: 'int8' }).toArray();
        expect(compareClose(unpacked, got, 0, 0).ok).toBe(true);
      } finally {
        configurePackedDot(true);
      }
      // Whole-block staging of K and V changes the schedule, not the arithmetic (int8 and float).
      const floatGot = await blockSparseAttention(q, k, v, mask).toArray();
      configureSparseStaging(true);
      try {
        expect(compareClose(await blockSparseAttention(q, k, v, mask, { qk: 'int8' }).toArray(), got, 0, 0).ok).toBe(true);
        expect(compareClose(await blockSparseAttention(q, k, v, mask).toArray(), floatGot, 0, 0).ok).toBe(true);
      } finally {
        configureSparseStaging(false);
      }
    }
  });

  it('quantizeBlocks (K smoothing by the channel mean) matches the CPU on every backend', async () => {
    const cpu = new CpuBackend();
    for (const be of backends.filter((b) => b.kind !== 'cpu')) {
      for (const D of [32, 16 * 4 * 5]) { // 16 lanes per vec4 slot row group; and D4 = 80 > 64 (one-pass mean)
        const x = random(be, [1, 3, N, D], { seed: 31, dtype: 'f16' });
        const xc = tensor(cpu, await x.toArray(), x.shape, 'f16');
        const got = quantizeBlocks(x, { smooth: true });
        const want = quantizeBlocks(xc, { smooth: true });
        expect(compareClose(await got.scales.toArray(), await want.scales.toArray(), 1e-5, 1e-4).ok).toBe(true);
        // Rounding ties may land one step apart.
        expect(compareClose(await got.q.toArray(), await want.q.toArray(), 1, 0).ok).toBe(true);
      }
    }
  });

  it("int8 P.V (pv: 'int8') follows its float64 reference, dense and sparse, GQA", async () => {
    const cpu = new CpuBackend();
    for (const be of backends.filter((b) => b.kind !== 'cpu')) {
      const q = random(be, [1, 4, N, 32], { seed: 14, dtype: 'f16' });
      const k = random(be, [1, 2, N, 32], { seed: 15, dtype: 'f16' });
      const v = random(be, [1, 2, N, 32], { seed: 16, dtype: 'f16' });
      const [qa, ka, va] = await Promise.all([q.toArray(), k.toArray(), v.toArray()]);
      const [qc, kc, vc] = [tensor(cpu, qa, q.shape), tensor(cpu, ka, k.shape), tensor(cpu, va, v.shape)];
      for (const mask of [randomMask(4, 3), 'dense' as const]) {
        const got = await blockSparseAttention(q, k, v, mask, { qk: 'int8', pv: 'int8' }).toArray();
        const want = await blockSparseAttention(qc, kc, vc, mask, { qk: 'int8', pv: 'int8' }).toArray();
        const r = compareClose(got, want, 2e-2, 0);
        expect(r.ok, r.message).toBe(true);
        // V's rounding moves the output only a little from the float-V int8 path.
        const floatV = await blockSparseAttention(qc, kc, vc, mask, { qk: 'int8' }).toArray();
        expect(relL1(got, floatV)).toBeLessThan(0.02);
        // Staging a whole key block per barrier pair (the default) or one chunk at a time
        // changes the schedule, not the arithmetic.
        configureInt8PV({ blockStaged: false });
        try {
          const chunked = await blockSparseAttention(q, k, v, mask, { qk: 'int8', pv: 'int8' }).toArray();
          expect(compareClose(chunked, got, 0, 0).ok).toBe(true);
        } finally {
          configureInt8PV({ blockStaged: true });
        }
      }
      expect(() => blockSparseAttention(q, k, v, 'dense', { pv: 'int8' })).toThrow(ArgumentError);
      expect(() => blockSparseAttention(q, k, v, 'dense', { qk: 'int8', pv: 'int4' as 'int8' })).toThrow(ArgumentError);
    }
  });
});

describe('PARO end to end', () => {
  const layout: VideoLayout = { frames: 3, height: 8, width: 9, text: 7 }; // 223 tokens
  const N = tokenCount(layout);

  async function setup(be: Backend, density: number, scoreDensity = density): Promise<{ q: Tensor; k: Tensor; v: Tensor; cal: Calibration }> {
    const { q, k } = syntheticVideoQK(layout, { heads: 3, headDim: 16, broad: ['F', 'W', 'HW'], seed: 11 });
    const cpu = new CpuBackend();
    const cal = await calibrate(tensor(cpu, q, [3, N, 16]), tensor(cpu, k, [3, N, 16]), layout, { density, scoreDensity, sampleRows: 64 });
    return { q: tensor(be, q, [1, 3, N, 16], 'f16'), k: tensor(be, k, [1, 3, N, 16], 'f16'), v: random(be, [1, 3, N, 16], { seed: 8, dtype: 'f16' }), cal };
  }

  it('at density 1 the permuted sparse output equals dense attention', async () => {
    for (const be of backends) {
      const { q, k, v, cal } = await setup(be, 1, 0.25);
      expect(cal.heads.some((h) => h.order !== 'FHW')).toBe(true);
      const got = await paroAttention(q, k, v, cal).toArray();
      const want = await denseAttention(q, k, v).toArray();
      const r = compareClose(got, want, TOLERANCE.f16.atol, TOLERANCE.f16.rtol);
      expect(r.ok, `${be.name}: ${r.message}`).toBe(true);
    }
  });

  it('reports the error against dense at lower densities (float and int8 Q.K)', async () => {
    const gpu = backends.find((b) => b.kind === 'webgpu') ?? backends[0]!;
    const errs: Record<string, number> = {};
    for (const density of [0.25, 0.5]) {
      const { q, k, v, cal } = await setup(gpu, density);
      const dense = await denseAttention(q, k, v).toArray();
      errs[`float@${density}`] = relL1(await paroAttention(q, k, v, cal).toArray(), dense);
      errs[`int8@${density}`] = relL1(await paroAttention(q, k, v, cal, { qk: 'int8' }).toArray(), dense);
    }
    console.log('PARO relative L1 error vs dense:', JSON.stringify(errs));
    for (const e of Object.values(errs)) expect(e).toBeLessThan(0.5);
    expect(errs['float@0.5']!).toBeLessThanOrEqual(errs['float@0.25']! + 1e-6);
  });

  it('the order fused into the kernels matches separate permutation passes (float, int8, GQA, text tokens)', async () => {
    const l: VideoLayout = { frames: 2, height: 4, width: 8, text: 5 }; // 69 tokens: 2 blocks, the last partial
    const n = tokenCount(l);
    const cpu = new CpuBackend();
    const cal = await calibrate(random(cpu, [4, n, 16], { seed: 21 }), random(cpu, [2, n, 16], { seed: 22 }), l, { density: 0.5, sampleRows: 32 });
    expect(new Set(cal.heads.map((h) => h.order)).size).toBeGreaterThan(1);
    for (const be of backends.filter((b) => b.kind === 'webgpu')) {
      const q = random(be, [1, 4, n, 16], { seed: 23, dtype: 'f16' });
      const k = random(be, [1, 2, n, 16], { seed: 24, dtype: 'f16' });
      const v = random(be, [1, 2, n, 16], { seed: 25, dtype: 'f16' });
      for (const [qk, pv] of [['float', 'float'], ['int8', 'float'], ['int8', 'int8']] as const) {
        const fused = await paroAttention(q, k, v, cal, { qk, pv }).toArray();
        const separate = await paroAttention(q, k, v, cal, { qk, pv, permute: 'separate' }).toArray();
        // int8: the K channel mean is summed in a different order (original vs permuted tokens).
        const r = compareClose(fused, separate, qk === 'float' ? 1e-6 : 2e-2, 0);
        expect(r.ok, `${qk}/${pv}: ${r.message}`).toBe(true);
      }
      expect(() => paroAttention(q, k, v, cal, { permute: 'inline' as 'fused' })).toThrow(ArgumentError);
      // A caller's output tensor is written and returned; wrong ones are refused.
      const out = zeros(be, [1, 4, n, 16], 'f16');
      expect(paroAttention(q, k, v, cal, { out })).toBe(out);
      expect(compareClose(await out.toArray(), await paroAttention(q, k, v, cal).toArray(), 0, 0).ok).toBe(true);
      expect(() => paroAttention(q, k, v, cal, { out: zeros(be, [1, 4, n, 8], 'f16') })).toThrow(ShapeError);
      expect(() => paroAttention(q, k, v, cal, { out: zeros(be, [1, 4, n, 16], 'f32') })).toThrow(DTypeError);
      expect(() => paroAttention(q, k, v, cal, { out, permute: 'separate' })).toThrow(ArgumentError);
    }
  });

  it('bad input: layouts that do not multiply out, densities outside (0, 1]', async () => {
    const cpu = new CpuBackend();
    const { q, k, v, cal } = await setup(cpu, 0.5);
    const wrong = { ...cal, layout: { ...cal.layout, width: 8 } };
    expect(() => paroAttention(q, k, v, wrong)).toThrow(LayoutError);
    await expect(calibrate(q, k, { ...layout, frames: 2 })).rejects.toThrow(LayoutError);
    for (const density of [0, -0.5, 1.01, Number.NaN]) {
      await expect(calibrate(q, k, layout, { density })).rejects.toThrow(DensityError);
    }
  });
});

describe('block-sparse attention: bad input', () => {
  it('shapes, dtypes, masks and options give typed errors', async () => {
    for (const be of backends) {
      const q = random(be, [1, 2, 70, 8], { seed: 1 });
      expect(() => blockSparseAttention(q, random(be, [1, 2, 71, 8]), q, 'dense')).toThrow(ShapeError);
      expect(() => blockSparseAttention(q, random(be, [1, 3, 70, 8]), random(be, [1, 3, 70, 8]), 'dense')).toThrow(ShapeError);
      expect(() => blockSparseAttention(q, random(be, [1, 2, 70, 8], { dtype: 'f16' }), q, 'dense')).toThrow(DTypeError);
      const i = zeros(be, [1, 2, 70, 8], 'i32');
      expect(() => blockSparseAttention(i, i, i, 'dense')).toThrow(DTypeError);
      expect(() => blockSparseAttention(q, q, q, fullMask(2, 64))).toThrow(ShapeError);
      expect(() => blockSparseAttention(q, q, q, 'dense', { qk: 'int4' as 'int8' })).toThrow(ArgumentError);
      const r = random(be, [1, 2, 64, 6]);
      expect(() => blockSparseAttention(r, r, r, 'dense')).toThrow(ShapeError);
      if (be.kind === 'webgpu' && be.caps.subgroupMatrixConfigs.length === 0) {
        expect(() => blockSparseAttention(q, q, q, 'dense', { qk: 'int8', int8Path: 'sgmatrix' })).toThrow(ArgumentError);
        expect(() => blockSparseAttention(q, q, q, 'dense', { qk: 'int8', int8Path: 'sgmatrix-pv' })).toThrow(ArgumentError);
      }
    }
  });
});
