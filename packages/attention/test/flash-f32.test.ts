import { afterEach, describe, expect, it } from 'vitest';
import { attentionWithStats, flashF32Enabled, setFlashF32Enabled, tuneFlashF32, type MaskSpec } from '@attnkit/attention';
import { ArgumentError, type WebGpuBackend } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';
import { resolveProblem } from '../src/problem.js';
import { chooseFlashF32Variant, flashF32Name, flashF32VariantProblem, runFlashF32, type FlashF32Variant } from '../src/webgpu/flash-f32.js';
import { causalVis, expectClose, inputs, oracle, tol, type Dims, type Visible } from './oracle.js';

// The f32 flash kernel (webgpu/flash-f32.ts) against the float64 oracle. On lavapipe (32 KB
// of workgroup memory, subgroups of 8) the chooser takes 64-row tiles with 16 invocations per
// row, so rows are combined through workgroup memory; the subgroup-shuffle path is checked with
// 8 invocations per row (one lavapipe subgroup). Each variant and head dim is a fresh pipeline
// (seconds to compile on lavapipe), so the cases share a few of them.
const backends = await backendsForTests();
const gpu = backends.find((b) => b.kind === 'webgpu') as WebGpuBackend | undefined;

afterEach(() => {
  tuneFlashF32({});
  setFlashF32Enabled(true);
});

const visFor = (mask: MaskSpec, d: Dims): Visible => {
  if (mask.kind === 'window') {
    const w = mask.window;
    const sinks = mask.sinks ?? 0;
    return (_b, _h, i, j) => { const p = d.kvLength - d.S + i; return j <= p && (j > p - w || j < sinks); };
  }
  if (mask.kind === 'causal') return causalVis(d);
  return () => true;
};

const MASKS: Array<[string, MaskSpec]> = [
  ['dense', { kind: 'none' }],
  ['causal', { kind: 'causal' }],
  ['window 7', { kind: 'window', window: 7 }],
  ['sinks 4 + window 33', { kind: 'window', window: 33, sinks: 4 }],
];

// [S, kvLength, GQA group]: odd sizes, partial query and key tiles, L > S.
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 17, 8],
  [17, 17, 4],
  [17, 100, 1],
  [100, 100, 8],
  [100, 300, 4],
  [100, 17, 4], // more queries than keys: dense only
];

async function check(be: WebGpuBackend, d: Dims, mask: MaskSpec, scale: number, what: string): Promise<void> {
  const x = await inputs(be, d, 'f32');
  const want = oracle(x.Q, x.K, x.V, d, scale, visFor(mask, d));
  const r = attentionWithStats(x.q, x.k, x.v, { scale, mask, lse: true, kvLength: d.kvLength });
  expect(r.out.shape).toEqual([d.B, d.Hq, d.S, d.D]);
  expectClose(await r.out.toArray(), want.out, tol('f32'), `out ${what}`);
  expectClose(await r.lse!.toArray(), want.lse, { atol: 1e-4, rtol: 1e-5 }, `lse ${what}`);
  for (const t of [x.q, x.k, x.v, r.out, r.lse!]) t.dispose();
}

describe.runIf(gpu)('f32 flash prefill', () => {
  const be = gpu!;

  it('is what attention() runs for f32 without block list or bias', () => {
    const x = { q: be.empty('t', 'f32', [1, 2, 5, 64]), k: be.empty('t', 'f32', [1, 1, 9, 64]) };
    const v = chooseFlashF32Variant(be, resolveProblem('attention', x.q, x.k, x.k, { causal: true }));
    expect(v).not.toBeNull();
    expect(flashF32VariantProblem(v!)).toBeNull();
    const h = be.empty('t', 'f16', [1, 2, 5, 64]);
    expect(chooseFlashF32Variant(be, resolveProblem('attention', h, h, h, {}))).toBeNull();
    const bias = be.empty('t', 'f32', [5, 9]);
    expect(chooseFlashF32Variant(be, resolveProblem('attention', x.q, x.k, x.k, { mask: { kind: 'bias', bias } }))).toBeNull();
    for (const t of [x.q, x.k, h, bias]) t.dispose();
  });

  for (const [S, n, group] of SHAPES) {
    it(`every mask, D64, S${S} L${n} GQA${group}`, async () => {
      const d: Dims = { B: 1, Hq: group, Hkv: 1, S, L: n, kvLength: n, D: 64 };
      for (const [name, mask] of MASKS) {
        if (mask.kind !== 'none' && S > n) continue;
        await check(be, d, mask, 0.3, `${name} S${S} L${n}`);
      }
    });
  }

  it('batch 2, 2 KV heads (GQA 4), static KV cache (kvLength < capacity)', async () => {
    const d: Dims = { B: 2, Hq: 8, Hkv: 2, S: 70, L: 200, kvLength: 133, D: 64 };
    await check(be, d, { kind: 'causal' }, 0.125, 'B2 cache');
    await check(be, d, { kind: 'window', window: 40, sinks: 3 }, 0.125, 'B2 cache window');
  });

  it('head dim 128 (causal and sinks + window, L > S)', async () => {
    const d: Dims = { B: 1, Hq: 4, Hkv: 1, S: 100, L: 170, kvLength: 170, D: 128 };
    await check(be, d, { kind: 'causal' }, 1 / Math.sqrt(128), 'D128 causal');
    await check(be, d, { kind: 'window', window: 50, sinks: 5 }, 1 / Math.sqrt(128), 'D128 window');
  });

  // One pipeline covers three things: head dim 80 (O columns padded to the thread grid), rows
  // combined by subgroup shuffles (8 invocations per row: one lavapipe subgroup), and the
  // loop without register prefetch issuing the query tiles first-first (the default is last-first).
  it('head dim 80, subgroup-shuffle rows, no prefetch, first query tile first', async () => {
    const sgOk = be.caps.subgroups && be.caps.subgroupMinSize >= 8;
    tuneFlashF32({ BQ: 64, BK: 32, TX: 8, TY: 16, SG: sgOk, PF: false, REV: false });
    const q = be.empty('t', 'f32', [1, 1, 3, 80]);
    const picked = chooseFlashF32Variant(be, resolveProblem('attention', q, q, q, {}));
    q.dispose();
    expect(flashF32Name(picked!)).toBe(sgOk ? 'q64k32-8x16-sg' : 'q64k32-8x16');
    for (const [S, n, group] of [[17, 100, 4], [130, 150, 8]] as const) {
      const d: Dims = { B: 2, Hq: group, Hkv: 1, S, L: n, kvLength: n, D: 80 };
      for (const [name, mask] of MASKS) await check(be, d, mask, 0.1, `D80 ${name} S${S} L${n}`);
    }
    // The shuffle path is never picked where a subgroup may hold fewer than 8 invocations.
    tuneFlashF32({ BQ: 64, BK: 32, TX: 8, TY: 16, SG: true });
    const q2 = be.empty('t', 'f32', [1, 1, 3, 80]);
    const v2 = chooseFlashF32Variant(be, resolveProblem('attention', q2, q2, q2, {}));
    expect(v2 === null || !v2.SG || be.caps.subgroupMinSize >= v2.TX).toBe(true);
    q2.dispose();
  });

  // P in two passes of 64 keys (128-key tiles), unpadded swizzled P, 32-key V slices, the
  // last-first order within groups of 3 heads (4 heads: one partial group), the next tile's
  // first Q/K slice loaded during the last V slice, swizzled Q/K staging, P V row by row.
  it('runs a given variant directly (P in passes, swizzled, 32-key V slices, head groups)', async () => {
    const v: FlashF32Variant = { D: 64, BQ: 64, BK: 128, TX: 16, TY: 16, SG: false, PF: true, REV: true, SPLIT: true, SWZ: true, VS: 32, HG: 3, XT: true, QSW: true, PR: true };
    const d: Dims = { B: 2, Hq: 2, Hkv: 1, S: 130, L: 300, kvLength: 300, D: 64 };
    const x = await inputs(be, d, 'f32');
    const p = resolveProblem('attention', x.q, x.k, x.v, { causal: true, scale: 0.2 });
    const want = oracle(x.Q, x.K, x.V, d, 0.2, causalVis(d));
    const r = runFlashF32(be, p, x.q, x.k, x.v, v);
    expectClose(await r.out.toArray(), want.out, tol('f32'), 'out');
    expectClose(await r.lse.toArray(), want.lse, { atol: 1e-4, rtol: 1e-5 }, 'lse');
  });

  it('switched off, attention() runs the plain kernel with the same results', async () => {
    const d: Dims = { B: 1, Hq: 4, Hkv: 1, S: 17, L: 100, kvLength: 100, D: 64 };
    const x = await inputs(be, d, 'f32');
    const on = await attentionWithStats(x.q, x.k, x.v, { causal: true }).out.toArray();
    setFlashF32Enabled(false);
    expect(flashF32Enabled()).toBe(false);
    const off = await attentionWithStats(x.q, x.k, x.v, { causal: true }).out.toArray();
    expectClose(on, off, tol('f32'), 'flash vs plain');
  });

  it('bad tunings and variants are typed errors', async () => {
    expect(() => tuneFlashF32({ BQ: 0 })).toThrow(ArgumentError);
    expect(() => tuneFlashF32({ TX: 2.5 })).toThrow(ArgumentError);
    const q = be.empty('t', 'f32', [1, 1, 3, 64]);
    const p = resolveProblem('attention', q, q, q, {});
    expect(() => runFlashF32(be, p, q, q, q, { D: 64, BQ: 100, BK: 64, TX: 16, TY: 16, SG: false, PF: true, REV: false })).toThrow(ArgumentError);
    expect(() => runFlashF32(be, p, q, q, q, { D: 64, BQ: 64, BK: 64, TX: 16, TY: 16, SG: false, PF: true, REV: true, HG: -1 })).toThrow(ArgumentError);
    q.dispose();
  });
});
