import { random, type Backend, type Tensor } from '@attnkit/tensor';
import { backendsForTests, compareClose, TOLERANCE } from '@attnkit/tensor/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { describeProblem, maskedDenseReference, na1d, na2d, na3d, neighborhoodMask, neighborhoodReference, type NeighborhoodOptions } from '../src/index.js';

let backends: Backend[] = [];
beforeAll(async () => {
  backends = await backendsForTests();
});

const OPS = { 1: na1d, 2: na2d, 3: na3d } as const;

/** GQA expansion of k/v to H heads, for the dense reference that has no GQA. */
function expand(x: Float32Array, B: number, Hkv: number, H: number, rowLen: number): Float32Array {
  const out = new Float32Array(B * H * rowLen);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const src = (b * Hkv + Math.floor(h / (H / Hkv))) * rowLen;
    out.set(x.subarray(src, src + rowLen), (b * H + h) * rowLen);
  }
  return out;
}

async function check(be: Backend, spatial: number[], opts: NeighborhoodOptions, o: { B?: number; H?: number; Hkv?: number; D?: number; dtype?: 'f32' | 'f16'; seed?: number } = {}) {
  const { B = 1, H = 2, Hkv = H, D = 8, dtype = 'f32', seed = 1 } = o;
  const rank = spatial.length as 1 | 2 | 3;
  const q = random(be, [B, H, ...spatial, D], { seed, dtype });
  const k = random(be, [B, Hkv, ...spatial, D], { seed: seed + 1, dtype });
  const v = random(be, [B, Hkv, ...spatial, D], { seed: seed + 2, dtype });
  const out: Tensor = OPS[rank](q, k, v, opts);
  const got = await out.toArray();
  const [qa, ka, va] = (await Promise.all([q.toArray(), k.toArray(), v.toArray()])) as Float32Array[];
  const p = describeProblem('test', rank, q, k, v, opts);
  const ref = neighborhoodReference(p, qa!, ka!, va!);
  const tol = TOLERANCE[dtype];
  const r1 = compareClose(got, ref, tol.atol, tol.rtol);
  expect(r1.ok, `${be.name} vs CPU definition ${JSON.stringify({ spatial, opts, dtype })}: ${r1.message}`).toBe(true);
  const mask = neighborhoodMask(spatial, p.axes);
  const rowLen = p.tokens * D;
  const dense = await maskedDenseReference(qa!, expand(ka!, B, Hkv, H, rowLen), expand(va!, B, Hkv, H, rowLen), { batch: B, heads: H, tokens: p.tokens, headDim: D }, mask, p.scale);
  const r2 = compareClose(got, dense, tol.atol, tol.rtol);
  expect(r2.ok, `${be.name} vs masked dense ${JSON.stringify({ spatial, opts, dtype })}: ${r2.message}`).toBe(true);
  for (const t of [q, k, v, out]) t.dispose();
}

describe('neighborhood attention equals the CPU definition and masked dense attention', () => {
  it('1-D: odd length, every dilation x causal combination, odd and even windows', async () => {
    for (const be of backends) {
      for (const dilation of [1, 2, 3]) for (const causal of [false, true]) for (const kernelSize of [3, 4]) {
        await check(be, [13], { kernelSize, dilation, causal });
      }
    }
  });

  it('2-D: odd sizes, every per-axis dilation x causal combination', async () => {
    for (const be of backends) {
      for (const d0 of [1, 2]) for (const d1 of [1, 3]) for (const c0 of [false, true]) for (const c1 of [false, true]) {
        await check(be, [7, 11], { kernelSize: [3, 3], dilation: [d0, d1], causal: [c0, c1] }, { seed: d0 * 7 + d1 });
      }
    }
  });

  it('3-D: odd sizes, dilation and causal per axis (causal in time only, and all)', async () => {
    for (const be of backends) {
      const cases: NeighborhoodOptions[] = [
        { kernelSize: [3, 3, 3] },
        { kernelSize: [3, 5, 3], dilation: [1, 1, 2], causal: [true, false, false] },
        { kernelSize: [2, 3, 3], dilation: [2, 1, 1], causal: [true, true, true] },
        { kernelSize: [5, 3, 2], dilation: [1, 2, 3], causal: [false, true, false] },
      ];
      for (const opts of cases) await check(be, [5, 7, 6], opts, { H: 1 });
    }
  });

  it('window equal to the axis is dense attention; GQA; batch > 1; D 32', async () => {
    for (const be of backends) {
      await check(be, [9, 5], { kernelSize: [9, 5] });
      await check(be, [9, 7], { kernelSize: [5, 3], dilation: [1, 2] }, { B: 2, H: 4, Hkv: 2, D: 32 });
      await check(be, [17], { kernelSize: 7, causal: true }, { H: 3, Hkv: 1 });
    }
  });

  it('f16 inputs and outputs', async () => {
    for (const be of backends) {
      await check(be, [9, 11], { kernelSize: [5, 3], dilation: [1, 2], causal: [false, true] }, { dtype: 'f16', D: 16 });
      await check(be, [4, 5, 6], { kernelSize: [3, 3, 3], causal: [true, false, false] }, { dtype: 'f16', D: 16, H: 2, Hkv: 1 });
    }
  });

  it('the production setting (16 keys per step, chosen on hardware adapters) on 2-D and 3-D', async () => {
    const prev = process.env.ATTNKIT_ATTN_CHUNK;
    process.env.ATTNKIT_ATTN_CHUNK = '16';
    try {
      for (const be of backends) {
        await check(be, [9, 11], { kernelSize: [5, 3], dilation: [1, 2], causal: [false, true] });
        await check(be, [5, 7, 6], { kernelSize: [3, 5, 3], causal: [true, false, false] }, { H: 1 });
      }
    } finally {
      if (prev === undefined) delete process.env.ATTNKIT_ATTN_CHUNK;
      else process.env.ATTNKIT_ATTN_CHUNK = prev;
    }
  });
});
