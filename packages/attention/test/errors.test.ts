import { describe, expect, it } from 'vitest';
import { attention, blockSparseMask, checkAttention, decode } from '@attnkit/attention';
import * as E from 'fp-ts/lib/Either.js';
import { ArgumentError, BackendMismatchError, CpuBackend, DTypeError, ShapeError, random, tensor, zeros } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';

const backends = await backendsForTests();

describe.each(backends.map((b) => [b.name, b] as const))('bad input on %s', (_, be) => {
  const q = random(be, [1, 4, 3, 16]);
  const k = random(be, [1, 2, 8, 16]);

  it('head counts that do not divide', () => {
    const k3 = random(be, [1, 3, 8, 16]);
    expect(() => attention(q, k3, k3)).toThrow(ShapeError);
    expect(() => attention(q, k3, k3)).toThrow(/divides the query head count 4/);
    expect(() => decode(q, k3, k3)).toThrow(ShapeError);
  });

  it('mismatched head dims, batch, k/v shapes and ranks', () => {
    const k32 = random(be, [1, 2, 8, 32]);
    expect(() => attention(q, k32, k32)).toThrow(/head dim 16 like q/);
    expect(() => attention(q, k, random(be, [1, 2, 9, 16]))).toThrow(ShapeError);
    expect(() => attention(q, random(be, [2, 2, 8, 16]), random(be, [2, 2, 8, 16]))).toThrow(/batch 1/);
    expect(() => attention(random(be, [4, 3, 16]), k, k)).toThrow(/rank 4/);
  });

  it('unsupported head dim', () => {
    const q72 = random(be, [1, 1, 2, 72]);
    const k72 = random(be, [1, 1, 2, 72]);
    expect(() => attention(q72, k72, k72)).toThrow(ArgumentError);
    expect(() => attention(q72, k72, k72)).toThrow(/multiple of 16 up to 256/);
    const q512 = random(be, [1, 1, 1, 512]);
    expect(() => decode(q512, q512, q512)).toThrow(ArgumentError);
  });

  it('dtypes: mixed q/k/v, integer inputs, non-i32 block ids', () => {
    const kh = random(be, [1, 2, 8, 16], { dtype: 'f16' });
    expect(() => attention(q, kh, kh)).toThrow(DTypeError);
    const qi = zeros(be, [1, 4, 3, 16], 'i32');
    expect(() => attention(qi, k, k)).toThrow(DTypeError);
    const idsF = zeros(be, [1, 1, 1, 1], 'f32');
    expect(() => attention(q, k, k, { mask: { kind: 'blocks', queryBlock: 16, keyBlock: 16, indices: idsF } })).toThrow(DTypeError);
  });

  it('kvLength, causal with more queries than keys, scale, window, sinks', () => {
    expect(() => attention(q, k, k, { kvLength: 9 })).toThrow(/kvLength must be an integer in \[1, 8\]/);
    expect(() => attention(q, k, k, { kvLength: 0 })).toThrow(ArgumentError);
    expect(() => attention(q, k, k, { causal: true, kvLength: 2 })).toThrow(/<= kvLength 2/);
    expect(() => attention(q, k, k, { scale: Number.NaN })).toThrow(ArgumentError);
    expect(() => attention(q, k, k, { mask: { kind: 'window', window: 0 } })).toThrow(/mask.window/);
    expect(() => attention(q, k, k, { mask: { kind: 'window', window: 4, sinks: -1 } })).toThrow(/mask.sinks/);
    expect(() => attention(q, k, k, { mask: { kind: 'nonsense' } as never })).toThrow(/mask.kind/);
  });

  it('block lists out of range, duplicated, or of the wrong shape', () => {
    expect(() => blockSparseMask(be, [[0, 1]], { queryBlock: 16, keyBlock: 16, kvLength: 17 })).not.toThrow();
    expect(() => blockSparseMask(be, [[0, 2]], { queryBlock: 16, keyBlock: 16, kvLength: 17 })).toThrow(/a block id in \[0, 2\)/);
    expect(() => blockSparseMask(be, [[1, 1]], { queryBlock: 16, keyBlock: 16, kvLength: 17 })).toThrow(/unique/);
    expect(() => blockSparseMask(be, [[0]], { queryBlock: 16, keyBlock: 24, kvLength: 17 })).toThrow(/multiple of 16/);
    // 3 queries need ceil(3/16) = 1 query block, not 2
    const two = tensor(be, [0, 0], [1, 1, 2, 1], 'i32');
    expect(() => attention(q, k, k, { mask: { kind: 'blocks', queryBlock: 16, keyBlock: 16, indices: two } })).toThrow(/ceil\(S\/queryBlock\)/);
    const bad = tensor(be, [0, 0, 0], [1, 3, 1, 1], 'i32');
    expect(() => attention(q, k, k, { mask: { kind: 'blocks', queryBlock: 16, keyBlock: 16, indices: bad } })).toThrow(ShapeError);
  });

  it('bias that does not broadcast', () => {
    const bias = zeros(be, [3, 7]);
    expect(() => attention(q, k, k, { mask: { kind: 'bias', bias } })).toThrow(/broadcastable to \[B, Hq, S, kvLength\] = \[1, 4, 3, 8\]/);
    expect(() => attention(q, k, k, { mask: { kind: 'bias', bias: zeros(be, [8], 'i32') } })).toThrow(DTypeError);
  });

  it('decode: too many queries, unsupported masks, bad block lists', () => {
    const q9 = random(be, [1, 2, 9, 16]);
    expect(() => decode(q9, k, k)).toThrow(/Sq <= 8/);
    const bias = zeros(be, [8]);
    expect(() => decode(q, k, k, { mask: { kind: 'bias', bias } })).toThrow(/use attention\(\)/);
    expect(() => decode(q, k, k, { blocks: tensor(be, [0, 1], [1, 2, 1], 'f32') })).toThrow(DTypeError);
    expect(() => decode(q, k, k, { blocks: tensor(be, [0, 1], [1, 1, 2], 'i32') })).toThrow(/\[B, Hkv, nSel\] = \[1, 2/);
    expect(() => decode(q, k, k, { splits: 0 })).toThrow(/splits/);
    if (be.kind === 'cpu') {
      // Values are checked where they are readable without a GPU round trip.
      expect(() => decode(q, k, k, { blocks: tensor(be, [0, 5], [1, 2, 1], 'i32') })).toThrow(/a block id in \[0, 1\)/);
    }
  });

  it('checkAttention returns the typed error as Left and the resolved sizes as Right', () => {
    const bad = checkAttention(q, random(be, [1, 3, 8, 16]), random(be, [1, 3, 8, 16]));
    expect(E.isLeft(bad) && bad.left instanceof ShapeError).toBe(true);
    const good = checkAttention(q, k, k, { causal: true, kvLength: 6 });
    expect(good).toEqual(E.right({ B: 1, Hq: 4, Hkv: 2, S: 3, kvLength: 6, D: 16, scale: 0.25, causal: true }));
  });

  it('tensors from two backends', () => {
    // A second CpuBackend instance is a different backend for every tier.
    const k2 = random(new CpuBackend(), [1, 2, 8, 16]);
    expect(() => attention(q, k2, k2)).toThrow(BackendMismatchError);
  });
});
