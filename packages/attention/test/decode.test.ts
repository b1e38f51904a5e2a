import { describe, expect, it } from 'vitest';
import { decode, decodeWithLse } from '@attnkit/attention';
import { tensor } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';
import { causalVis, expectClose, inputs, oracle, tol, type Dims, type Visible } from './oracle.js';

const backends = await backendsForTests();

/** Deterministic shuffled subset of 16-key block ids with -1 padding. */
function pickBlocks(nb: number, keep: number, seed: number, pad: number): number[] {
  const ids = Array.from({ length: nb }, (_, i) => i);
  let s = seed;
  for (let i = nb - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) >>> 0;
    const j = s % (i + 1);
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return [...ids.slice(0, keep), ...Array(pad).fill(-1)];
}

describe.each(backends.map((b) => [b.name, b] as const))('decode on %s', (_, be) => {
  const cases: Array<[number, number, number, number]> = [
    // [Sq, kvLength, capacity, group]
    [1, 1, 1, 1],
    [1, 17, 20, 4],
    [3, 100, 100, 8],
    [8, 1000, 1000, 4],
    [1, 1000, 1024, 8],
  ];
  for (const dtype of ['f32', 'f16'] as const) {
    for (const [Sq, n, cap, group] of cases) {
      it(`contiguous KV ${dtype} Sq${Sq} L${n} cap${cap} GQA${group} (dense and causal, several split counts)`, async () => {
        const d: Dims = { B: 2, Hq: group, Hkv: 1, S: Sq, L: cap, kvLength: n, D: 32 };
        const x = await inputs(be, d, dtype);
        for (const causal of [false, true]) {
          const want = oracle(x.Q, x.K, x.V, d, 0.3, causal ? causalVis(d) : () => true);
          for (const splits of [undefined, 1, 7]) {
            const r = decodeWithLse(x.q, x.k, x.v, { scale: 0.3, causal, kvLength: n, splits, lse: true });
            expect(r.out.shape).toEqual([2, group, Sq, 32]);
            expectClose(await r.out.toArray(), want.out, tol(dtype), `out causal=${causal} splits=${splits}`);
            expectClose(await r.lse!.toArray(), want.lse, { atol: 1e-4, rtol: 1e-5 }, 'lse');
          }
        }
      });
    }
  }

  for (const dtype of ['f32', 'f16'] as const) {
    it(`selected 16-key blocks in arbitrary order with -1 padding ${dtype}`, async () => {
      const d: Dims = { B: 1, Hq: 8, Hkv: 2, S: 2, L: 1000, kvLength: 1000, D: 64 };
      const x = await inputs(be, d, dtype);
      const nb = Math.ceil(1000 / 16);
      const lists = [pickBlocks(nb, 20, 3, 3), [...pickBlocks(nb, 22, 9, 0).filter((id) => id !== nb - 1).slice(0, 21), nb - 1, -1]];
      // the last block (keys 992..999) is partial: kvLength masks its tail
      const blocks = tensor(be, lists.flat(), [1, 2, 23], 'i32');
      for (const causal of [false, true]) {
        const vis: Visible = (_b, h, i, j) => lists[Math.floor(h / 4)]!.includes(Math.floor(j / 16)) && (!causal || j <= 998 + i);
        const want = oracle(x.Q, x.K, x.V, d, 0.125, vis);
        for (const splits of [undefined, 3]) {
          const out = decode(x.q, x.k, x.v, { blocks, causal, splits });
          expectClose(await out.toArray(), want.out, tol(dtype), `causal=${causal} splits=${splits}`);
        }
      }
    });
  }

  it('window + sinks over a long KV, head dims 80, 128 and 256', async () => {
    for (const D of [80, 128, 256]) {
      const d: Dims = { B: 1, Hq: 4, Hkv: 4, S: 4, L: 1000, kvLength: 900, D };
      const x = await inputs(be, d, 'f32');
      const vis: Visible = (_b, _h, i, j) => { const p = 896 + i; return j <= p && (j > p - 64 || j < 4); };
      const want = oracle(x.Q, x.K, x.V, d, 1 / Math.sqrt(D), vis);
      const out = decode(x.q, x.k, x.v, { kvLength: 900, mask: { kind: 'window', window: 64, sinks: 4 } });
      expectClose(await out.toArray(), want.out, tol('f32'), `D${D}`);
    }
  });

  it('a head whose selected blocks are all padding gives zeros', async () => {
    const d: Dims = { B: 1, Hq: 2, Hkv: 2, S: 1, L: 64, kvLength: 64, D: 16 };
    const x = await inputs(be, d, 'f32');
    const blocks = tensor(be, [-1, -1, 2, -1], [1, 2, 2], 'i32');
    const want = oracle(x.Q, x.K, x.V, d, 0.25, (_b, h, _i, j) => h === 1 && Math.floor(j / 16) === 2);
    const out = await decode(x.q, x.k, x.v, { blocks }).toArray();
    expectClose(out, want.out, tol('f32'), 'out');
    expect(Array.from(out.slice(0, 16)).every((v) => v === 0)).toBe(true);
  });
});
