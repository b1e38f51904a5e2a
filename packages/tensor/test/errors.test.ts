import { afterEach, describe, expect, it } from 'vitest';
import {
  add, ArgumentError, AttnkitError, BackendMismatchError, concat, CpuBackend, createBackend, DeviceLostError, DisposedError, DTypeError,
  gatherRows, LimitError, matmul, rope, ShapeError, silu, softmax, tensor, topk, WebGpuBackend, zeros,
} from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';

// Bad input: each case asserts the error class and that the message names the op, the
// argument and what was expected, so a user can act on it without reading our source.

const backends = await backendsForTests();
const gpus = backends.filter((b): b is WebGpuBackend => b instanceof WebGpuBackend);

/** Runs f, returns what it threw (sync or async); fails the test if nothing was thrown. */
async function thrown(f: () => unknown): Promise<AttnkitError> {
  try {
    await f();
  } catch (e) {
    return e as AttnkitError;
  }
  throw new Error('expected an error, none was thrown');
}

/** Rejects if p neither settles within ms: a lost device must never hang a caller. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what} hung for ${ms} ms`)), ms))]);
}

describe.each(backends.map((b) => [b.name, b] as const))('bad input on %s', (_, be) => {
  it('wrong dtype: DTypeError names op, argument, accepted and actual dtypes', async () => {
    const e = await thrown(() => matmul(tensor(be, [1, 2, 3, 4], [2, 2], 'i32'), tensor(be, [1, 2, 3, 4], [2, 2])));
    expect(e).toBeInstanceOf(DTypeError);
    expect(e.message).toBe('matmul: a must have dtype f32 or f16, got i32');
    const g = await thrown(() => gatherRows(tensor(be, [1, 2], [1, 2]), tensor(be, [0], [1])));
    expect(g).toBeInstanceOf(DTypeError);
    expect(g.message).toMatch(/^gatherRows: index must have dtype i32 or u32, got f32/);
  });
  it('wrong shape: ShapeError names op, argument, expected and actual shape', async () => {
    const e = await thrown(() => matmul(zeros(be, [3, 5]), zeros(be, [4, 2])));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toMatch(/^matmul: b must be with inner dim K=5 .*got \[4, 2\]$/);
    const c = await thrown(() => concat([zeros(be, [2, 3]), zeros(be, [3, 3])], 1));
    expect(c).toBeInstanceOf(ShapeError);
    expect(c.message).toMatch(/^concat: xs\[1\] must be \[2, \*\] \(any size on axis 1\), got \[3, 3\]$/);
  });
  it('zero-size dims: ShapeError from tensor() and zeros()', async () => {
    const e = await thrown(() => zeros(be, [2, 0]));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toBe('zeros: shape must be a list of positive integers (zero-size dims are not supported), got [2, 0]');
    const t = await thrown(() => tensor(be, [], [0]));
    expect(t).toBeInstanceOf(ShapeError);
    expect(t.message).toMatch(/^tensor: shape must be a list of positive integers/);
  });
  it('integer data out of the dtype range: ArgumentError instead of a silent wrap', async () => {
    const e = await thrown(() => tensor(be, [1, 300], [2], 'i8'));
    expect(e).toBeInstanceOf(ArgumentError);
    expect(e.message).toBe('tensor: data[1] must be an integer in [-128, 127] for dtype i8, got 300');
    const f = await thrown(() => tensor(be, [0.5], [1], 'u32'));
    expect(f.message).toBe('tensor: data[0] must be an integer in [0, 4294967295] for dtype u32, got 0.5');
  });
  it('a disposed tensor: DisposedError from ops and from toArray()', async () => {
    const x = tensor(be, [1, 2], [2]);
    x.dispose();
    const e = await thrown(() => silu(x));
    expect(e).toBeInstanceOf(DisposedError);
    expect(e.message).toMatch(/^silu\(x\): tensor #\d+ f32\[2\] was disposed and cannot be used$/);
    const r = await thrown(() => x.toArray());
    expect(r).toBeInstanceOf(DisposedError);
    expect(r.message).toMatch(/^toArray: tensor #\d+ f32\[2\] was disposed/);
  });
  it('reshape to a wrong size: ShapeError with the element count', async () => {
    const e = await thrown(() => zeros(be, [2, 3]).reshape([4, 2]));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toBe('reshape: shape must be a shape with 6 elements (from [2, 3]), got [4, 2]');
  });
  it('softmax causal with more rows than columns: ShapeError', async () => {
    const e = await thrown(() => softmax(zeros(be, [5, 3]), { causal: true }));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toBe('softmax: x must be with rows <= columns when causal (queries are the last rows of the keys), got [5, 3]');
  });
  it('scalar arguments out of range: ArgumentError', async () => {
    const e = await thrown(() => rope(zeros(be, [2, 8]), { rotaryDim: 3 }));
    expect(e).toBeInstanceOf(ArgumentError);
    expect(e.message).toBe('rope: rotaryDim must be an even integer in [2, 8], got 3');
    const k = await thrown(() => topk(zeros(be, [300]), 257));
    expect(k).toBeInstanceOf(ArgumentError);
    expect(k.message).toBe('topk: k must be <= 256, got 257');
  });
});

describe('tensors from two backends', () => {
  it('BackendMismatchError names the op, the argument and both backends', async () => {
    const other = gpus[0] ?? new CpuBackend();
    const a = tensor(new CpuBackend(), [1, 2], [2]);
    const b = tensor(other, [1, 2], [2]);
    const e = await thrown(() => add(a, b));
    expect(e).toBeInstanceOf(BackendMismatchError);
    expect(e.message).toBe(`add: b lives on backend '${other.name}' but the op runs on 'cpu'; move it with toBackend() first`);
  });
});

describe('ATTNKIT_BACKEND', () => {
  const saved = process.env.ATTNKIT_BACKEND;
  afterEach(() => {
    if (saved === undefined) delete process.env.ATTNKIT_BACKEND;
    else process.env.ATTNKIT_BACKEND = saved;
  });
  it('an unknown value is an ArgumentError naming the variable and the choices', async () => {
    process.env.ATTNKIT_BACKEND = 'bogus';
    const e = await thrown(() => createBackend());
    expect(e).toBeInstanceOf(ArgumentError);
    expect(e.message).toBe("createBackend: ATTNKIT_BACKEND must be 'cpu', 'webgpu' or 'auto', got bogus");
  });
  it("'cpu' selects the CPU backend", async () => {
    process.env.ATTNKIT_BACKEND = 'cpu';
    expect((await createBackend()).kind).toBe('cpu');
  });
});

describe.each(gpus.map((g) => [g.name, g] as const))('WebGPU limits and device loss on %s', (_, gpu) => {
  it('a tensor beyond maxStorageBufferBindingSize: LimitError naming the limit and the overshoot', async () => {
    const limit = gpu.caps.maxStorageBufferBindingSize;
    const n = limit / 4 + 1024; // f32 elements: 4 KiB over the limit
    const e = await thrown(() => zeros(gpu, [n]));
    expect(e).toBeInstanceOf(LimitError);
    expect((e as LimitError).limit).toBe('maxStorageBufferBindingSize (bytes)');
    expect(e.message).toBe(`zeros: needs ${limit + 4096} for maxStorageBufferBindingSize (bytes) but the device allows ${limit} (over by 4096)`);
  });
  it('a device destroyed behind the backend: toArray and ops reject with DeviceLostError, never hang', async () => {
    const be = (await createBackend({ backend: 'webgpu' })) as WebGpuBackend;
    const x = tensor(be, [1, 2, 3], [3]);
    const y = silu(x);
    be.device.destroy();
    const r = await thrown(() => within(y.toArray(), 5000, 'toArray after device loss'));
    expect(r).toBeInstanceOf(DeviceLostError);
    expect(r.message).toMatch(/^WebGPU device lost \(destroyed\): .*Create a new backend to continue\.$/);
    const o = await thrown(() => silu(x));
    expect(o).toBeInstanceOf(DeviceLostError);
    const s = await thrown(() => within(be.sync(), 5000, 'sync after device loss'));
    expect(s).toBeInstanceOf(DeviceLostError);
  });
  it("the backend's own destroy(): later use is a DeviceLostError too", async () => {
    const be = (await createBackend({ backend: 'webgpu' })) as WebGpuBackend;
    const x = tensor(be, [1, 2, 3], [3]);
    be.destroy();
    const o = await thrown(() => silu(x));
    expect(o).toBeInstanceOf(DeviceLostError);
    expect(o.message).toMatch(/was destroyed by backend\.destroy\(\)/);
    const r = await thrown(() => within(x.toArray(), 5000, 'toArray after destroy'));
    expect(r).toBeInstanceOf(DeviceLostError);
  });
});
