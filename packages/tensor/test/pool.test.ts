import { describe, expect, it } from 'vitest';
import { add, scale, tensor, zeros, type WebGpuBackend } from '@attnkit/tensor';
import { gpuForTests } from '@attnkit/tensor/testing';

// Released storage buffers of 1 MiB and more are reused instead of destroyed. A reused
// buffer must look exactly like a fresh one (zeroed), and reuse must never let a later
// upload or clear overtake commands that still read the buffer's previous contents.
const be = (await gpuForTests()) as WebGpuBackend | null;
const N = 1 << 18; // f32 elements: exactly 1 MiB

describe.runIf(be)('WebGPU buffer pool', () => {
  const gpu = be!;
  it('keeps a released 1 MiB buffer and hands it back zeroed', async () => {
    gpu.trimPool();
    const a = tensor(gpu, new Float32Array(N).fill(3), [N]);
    await gpu.sync();
    a.dispose();
    await gpu.sync();
    expect(gpu.pooledBytes).toBe(N * 4);
    const z = zeros(gpu, [N]);
    expect(gpu.pooledBytes).toBe(0);
    const got = await z.toArray();
    expect(got.every((x) => x === 0)).toBe(true);
    z.dispose();
  });
  it('a reused buffer filled by an upload keeps the upload, and pending reads of its old contents see the old contents', async () => {
    gpu.trimPool();
    const a = tensor(gpu, new Float32Array(N).fill(2), [N]);
    const r1 = scale(a, 5); // recorded, not yet submitted
    a.dispose(); // released while r1 still reads it
    gpu.flush(); // r1 submitted (maybe not run yet): a's buffer enters the pool
    expect(gpu.pooledBytes).toBe(N * 4);
    const b = tensor(gpu, new Float32Array(N).fill(7), [N]); // reuses it: clear, then upload
    expect(gpu.pooledBytes).toBe(0);
    const sum = add(r1, b);
    const out = await sum.toArray();
    expect(out[0]).toBe(17);
    expect(out[N - 1]).toBe(17);
    expect((await b.toArray()).every((x) => x === 7)).toBe(true);
    for (const t of [r1, b, sum]) t.dispose();
  });
  it('does not pool small buffers, and trimPool empties it', async () => {
    gpu.trimPool();
    const small = tensor(gpu, new Float32Array(1024).fill(1), [1024]);
    await gpu.sync();
    small.dispose();
    await gpu.sync();
    expect(gpu.pooledBytes).toBe(0);
    const big = zeros(gpu, [N]);
    await gpu.sync();
    big.dispose();
    await gpu.sync();
    expect(gpu.pooledBytes).toBe(N * 4);
    gpu.trimPool();
    expect(gpu.pooledBytes).toBe(0);
  });
  it('when full, evicts the longest-pooled buffers to keep the one just released', async () => {
    gpu.trimPool();
    const cap = Math.min(1 << 30, 2 * gpu.caps.maxStorageBufferBindingSize);
    // Fill the pool with 1 MiB buffers up to the cap, then release one buffer of 4 MiB.
    const n = cap / (N * 4);
    const small = Array.from({ length: n }, () => zeros(gpu, [N]));
    await gpu.sync();
    for (const t of small) t.dispose();
    await gpu.sync();
    expect(gpu.pooledBytes).toBe(cap);
    const big = zeros(gpu, [4 * N]);
    await gpu.sync();
    big.dispose();
    await gpu.sync();
    expect(gpu.pooledBytes).toBe(cap); // four 1 MiB buffers made room for it
    const again = zeros(gpu, [4 * N]);
    expect(gpu.pooledBytes).toBe(cap - 4 * N * 4); // and it was reused
    again.dispose();
    gpu.trimPool();
  });
  it('reuses a buffer released since the last submit by submitting first, and pending reads still see the old contents', async () => {
    gpu.trimPool();
    const a = tensor(gpu, new Float32Array(N).fill(2), [N]);
    await gpu.sync();
    const r1 = scale(a, 5); // recorded, not submitted
    a.dispose(); // waits for the submit before it can be reused
    const b = zeros(gpu, [N]); // submits r1, then reuses a's buffer
    await gpu.sync();
    expect(gpu.pooledBytes).toBe(0);
    expect((await r1.toArray()).every((x) => x === 10)).toBe(true);
    expect((await b.toArray()).every((x) => x === 0)).toBe(true);
    r1.dispose();
    b.dispose();
  });
});
