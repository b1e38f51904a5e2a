import { afterAll, describe, expect, it } from 'vitest';
import { decode, decodeWithLse } from '@attnkit/attention';
import { tensor, WebGpuBackend } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';
import { planStream, tuneDecode, type DecodeTuning } from '../src/webgpu/decode.js';
import { resolveProblem } from '../src/problem.js';
import { expectClose, inputs, oracle, tol, type Dims, type Visible } from './oracle.js';

// The decode kernel shapes the benchmark sweep picks between (lanes per key, key groups
// per workgroup, keys in flight, split count): each must give the same answer, with GQA,
// masks, block lists and lse, including the single-key-group path that skips the merge.
const backends = await backendsForTests();
const gpu = backends.filter((b): b is WebGpuBackend => b instanceof WebGpuBackend);

afterAll(() => tuneDecode({}));

const TUNINGS: DecodeTuning[] = [
  { kernel: 'legacy' },
  { kernel: 'stream' },
  { kernel: 'stream', G: 2, NG: 4, U: 1, RC: 4 },
  { kernel: 'stream', G: 4, NG: 1, U: 3 },
  { kernel: 'stream', G: 1, NG: 4, U: 2, groups: 4 },
];

// On the CPU backend tunings change nothing: it runs the cases once, as the reference path.
describe.each(backends.map((b) => [b.name, b] as const))('decode kernel shapes on %s', (_, be) => {
  for (const t of be.kind === 'webgpu' ? TUNINGS : [{}]) {
    it(`${JSON.stringify(t)}: causal, window+sinks and a block list (GQA 4, 2 queries, f16)`, async () => {
      tuneDecode(t);
      const d: Dims = { B: 1, Hq: 8, Hkv: 2, S: 2, L: 320, kvLength: 300, D: 32 };
      const x = await inputs(be, d, 'f16');
      const causal: Visible = (_b, _h, i, j) => j <= 298 + i;
      const want = oracle(x.Q, x.K, x.V, d, 0.2, causal);
      const r = decodeWithLse(x.q, x.k, x.v, { scale: 0.2, causal: true, kvLength: 300, lse: true });
      expectClose(await r.out.toArray(), want.out, tol('f16'), 'causal out');
      expectClose(await r.lse!.toArray(), want.lse, { atol: 1e-4, rtol: 1e-5 }, 'causal lse');

      const win: Visible = (_b, _h, i, j) => j <= 298 + i && (j > 298 + i - 40 || j < 3);
      const w = decode(x.q, x.k, x.v, { scale: 0.2, kvLength: 300, mask: { kind: 'window', window: 40, sinks: 3 }, splits: 3 });
      expectClose(await w.toArray(), oracle(x.Q, x.K, x.V, d, 0.2, win).out, tol('f16'), 'window out');

      const lists = [[5, -1, 0, 18], [18, 2, -1, -1]];
      const blocks = tensor(be, lists.flat(), [1, 2, 4], 'i32');
      const sel: Visible = (_b, h, _i, j) => lists[Math.floor(h / 4)]!.includes(Math.floor(j / 16)) && j < 300;
      const s = decode(x.q, x.k, x.v, { scale: 0.2, kvLength: 300, blocks, splits: 2 });
      expectClose(await s.toArray(), oracle(x.Q, x.K, x.V, d, 0.2, sel).out, tol('f16'), 'block list out');
    });
  }

  it('f32 rows of D 80 and 256 through the stream kernel', async () => {
    tuneDecode({ kernel: 'stream' });
    for (const D of [80, 256]) {
      // D 80 has 20 chunks per row: G falls back to 4; D 256 keeps rows in registers at RC 1.
      const d: Dims = { B: 1, Hq: 2, Hkv: 1, S: 1, L: 100, kvLength: 100, D };
      const x = await inputs(be, d, 'f32');
      const out = decode(x.q, x.k, x.v, { splits: 2 });
      expectClose(await out.toArray(), oracle(x.Q, x.K, x.V, d, 1 / Math.sqrt(D), () => true).out, tol('f32'), `D${D}`);
    }
  });

});

describe.each(gpu.map((b) => [b.name, b] as const))('decode stream plan on %s', (_, be) => {
  it('back-to-back decodes whose partials outgrow the kept scratch buffers, read after both are recorded', async () => {
    tuneDecode({});
    const small: Dims = { B: 1, Hq: 2, Hkv: 1, S: 1, L: 64, kvLength: 64, D: 32 };
    const big: Dims = { B: 2, Hq: 4, Hkv: 2, S: 3, L: 400, kvLength: 400, D: 32 };
    const xs = await inputs(be, small, 'f32');
    const xb = await inputs(be, big, 'f32');
    const a = decode(xs.q, xs.k, xs.v, { scale: 0.2, splits: 1 });
    const b = decode(xb.q, xb.k, xb.v, { scale: 0.2, splits: 20 });
    const c = decode(xs.q, xs.k, xs.v, { scale: 0.2, splits: 3 });
    const all = () => true;
    expectClose(await b.toArray(), oracle(xb.Q, xb.K, xb.V, big, 0.2, all).out, tol('f32'), 'big');
    const wantSmall = oracle(xs.Q, xs.K, xs.V, small, 0.2, all).out;
    expectClose(await a.toArray(), wantSmall, tol('f32'), 'small before');
    expectClose(await c.toArray(), wantSmall, tol('f32'), 'small after');
  });

  it('the stream plan keeps lanes within a subgroup and dividing the row, and the merge within workgroup memory', () => {
    for (const [D, dtype] of [[16, 'f16'], [80, 'f16'], [80, 'f32'], [128, 'f16'], [256, 'f32']] as const) {
      const d: Dims = { B: 1, Hq: 8, Hkv: 1, S: 8, L: 64, kvLength: 64, D };
      const q = tensor(be, new Float32Array(d.Hq * d.S * D), [1, d.Hq, d.S, D], dtype);
      const k = tensor(be, new Float32Array(d.L * D), [1, 1, d.L, D], dtype);
      const p = resolveProblem('decode', q, k, k, {});
      const plan = planStream(be, p, 4, false, undefined, { kernel: 'stream', G: 16, NG: 64 });
      const chunks = dtype === 'f16' ? D / 8 : D / 4;
      expect(chunks % plan.variant.G).toBe(0);
      expect(plan.variant.G).toBeLessThanOrEqual(Math.max(1, be.caps.subgroupMinSize));
      expect(plan.variant.NG * plan.RC * (D * 4 + 8)).toBeLessThanOrEqual(be.caps.maxComputeWorkgroupStorageSize);
      q.dispose();
      k.dispose();
    }
  });
});
