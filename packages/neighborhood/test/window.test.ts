import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { axisWindow, groupLength, neighborhoodMask, type AxisSpec } from '../src/index.js';

// The closed form the WGSL kernel uses, transcribed from kernel.ts.
function kernelStart(i: number, lg: number, k: number, causal: boolean): number {
  if (causal) return Math.max(0, i - k + 1);
  return Math.min(Math.max(i - Math.floor(k / 2), 0), lg - k);
}
function kernelEnd(i: number, lg: number, k: number, causal: boolean): number {
  return causal ? i : kernelStart(i, lg, k, false) + k - 1;
}

const axisArb = fc
  .record({ k: fc.integer({ min: 1, max: 9 }), d: fc.integer({ min: 1, max: 4 }), extra: fc.integer({ min: 0, max: 12 }), causal: fc.boolean() })
  .map(({ k, d, extra, causal }) => ({ length: k * d + extra, kernel: k, dilation: d, causal }));

describe('NATTEN window rule', () => {
  it('the kernel closed form equals the literal clamped-centre definition', () => {
    fc.assert(
      fc.property(axisArb, (a) => {
        for (let x = 0; x < a.length; x++) {
          const g = x % a.dilation;
          const lg = groupLength(a.length, a.dilation, g);
          const i = Math.floor(x / a.dilation);
          const w = axisWindow(i, lg, a.kernel, a.causal);
          expect(kernelStart(i, lg, a.kernel, a.causal)).toBe(w.start);
          expect(kernelEnd(i, lg, a.kernel, a.causal)).toBe(w.end);
        }
      }),
    );
  });

  it('non-causal windows always hold exactly k keys and contain the query; causal ones end at it', () => {
    fc.assert(
      fc.property(axisArb, (a) => {
        const m = neighborhoodMask([a.length], [a]);
        for (let x = 0; x < a.length; x++) {
          let count = 0;
          for (let y = 0; y < a.length; y++) count += m[x * a.length + y]!;
          expect(m[x * a.length + x]).toBe(1);
          if (!a.causal) expect(count).toBe(a.kernel);
          else expect(count).toBe(Math.min(a.kernel, Math.floor(x / a.dilation) + 1));
          for (let y = x + 1; y < a.length && a.causal; y++) expect(m[x * a.length + y]).toBe(0);
        }
      }),
    );
  });

  it('matches hand-worked NATTEN examples', () => {
    // L=7, k=3: centre clamped to [1, 5]; query 0 sees 0..2, query 6 sees 4..6.
    expect(axisWindow(0, 7, 3, false)).toEqual({ start: 0, end: 2 });
    expect(axisWindow(6, 7, 3, false)).toEqual({ start: 4, end: 6 });
    // even k=4 sees 2 left and 1 right in the interior.
    expect(axisWindow(3, 8, 4, false)).toEqual({ start: 1, end: 4 });
    // L=10, d=3: groups of length 4, 3, 3.
    expect([0, 1, 2].map((g) => groupLength(10, 3, g))).toEqual([4, 3, 3]);
    const a: AxisSpec = { length: 10, kernel: 3, dilation: 3, causal: false };
    const m = neighborhoodMask([10], [a]);
    // query 9 (group 0, in-group 3) sees in-group 1..3 = coordinates 3, 6, 9.
    expect([...m.subarray(90, 100)].flatMap((v, y) => (v ? [y] : []))).toEqual([3, 6, 9]);
  });
});
