import { describe, expect, it } from 'vitest';
import { add, CpuBackend, DisposedError, Scope, silu, tensor, tidy, tidyAsync, type Tensor } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';

const backends = await backendsForTests();

describe.each(backends.map((b) => [b.name, b] as const))('tidy / Scope on %s', (_, be) => {
  it('disposes tensors made inside and keeps the returned one', async () => {
    const made: Tensor[] = [];
    const out = tidy(() => {
      const a = tensor(be, [1, 2, 3], [3]);
      const b = silu(a);
      made.push(a, b);
      return add(a, b);
    });
    expect(made.every((t) => t.isDisposed)).toBe(true);
    expect(out.isDisposed).toBe(false);
    expect(Array.from(await out.toArray()).length).toBe(3);
    out.dispose();
  });

  it('keeps tensors returned inside arrays and plain objects', () => {
    let scratch!: Tensor;
    const res = tidy(() => {
      scratch = tensor(be, [1], [1]);
      return { pair: [tensor(be, [2], [1]), tensor(be, [3], [1])], one: tensor(be, [4], [1]) };
    });
    expect(scratch.isDisposed).toBe(true);
    expect([...res.pair, res.one].some((t) => t.isDisposed)).toBe(false);
  });

  it('nested scopes: the inner result moves to the outer scope and is freed with it', () => {
    let inner!: Tensor;
    let innerTmp!: Tensor;
    const outer = tidy(() => {
      inner = tidy(() => {
        innerTmp = tensor(be, [1], [1]);
        return tensor(be, [2], [1]);
      });
      expect(innerTmp.isDisposed).toBe(true);
      expect(inner.isDisposed).toBe(false);
      return tensor(be, [3], [1]);
    });
    // The inner result was not returned by the outer function, so the outer tidy freed it.
    expect(inner.isDisposed).toBe(true);
    expect(outer.isDisposed).toBe(false);
  });

  it('a tensor created inside tidy and used afterwards is a DisposedError, not garbage', () => {
    let leaked!: Tensor;
    tidy(() => {
      leaked = tensor(be, [1], [1]);
    });
    expect(() => silu(leaked)).toThrow(DisposedError);
  });

  it('disposes even when the function throws', () => {
    let t!: Tensor;
    expect(() => tidy(() => {
      t = tensor(be, [1], [1]);
      throw new Error('boom');
    })).toThrow('boom');
    expect(t.isDisposed).toBe(true);
    // The failed scope was popped: later scopes work as usual.
    const after = tidy(() => tensor(be, [2], [1]));
    expect(after.isDisposed).toBe(false);
  });

  it('reshape views share storage: the buffer lives until the last view is disposed', async () => {
    const a = tensor(be, [1, 2, 3, 4], [2, 2]);
    const v = a.reshape([4]);
    a.dispose();
    expect(Array.from(await v.toArray())).toEqual([1, 2, 3, 4]);
    v.dispose();
    expect(v.isDisposed).toBe(true);
  });

  it('tidyAsync frees what scope.track was given, except the result', async () => {
    let tmp!: Tensor;
    const out = await tidyAsync(async (scope) => {
      tmp = tensor(be, [1, 2], [2]);
      scope.track(tmp);
      await tmp.toArray();
      const r = silu(tmp);
      scope.track(r);
      return r;
    });
    expect(tmp.isDisposed).toBe(true);
    expect(out.isDisposed).toBe(false);
  });

  it('an explicit Scope: keep() lets one tensor outlive dispose()', () => {
    const s = new Scope();
    const a = tensor(new CpuBackend(), [1], [1]);
    const b = tensor(be, [1], [1]);
    s.track(a);
    s.track(b);
    s.keep(b);
    s.dispose();
    expect(a.isDisposed).toBe(true);
    expect(b.isDisposed).toBe(false);
  });
});
