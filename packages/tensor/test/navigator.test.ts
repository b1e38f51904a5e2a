import { afterEach, describe, expect, it } from 'vitest';
import { create, globals } from 'webgpu';
import { acquireAdapter, createBackend, CpuBackend, DAWN_FLAGS, matmul, NoAdapterError, random, softmax, type Backend } from '@attnkit/tensor';
import { compareClose, TOLERANCE } from '@attnkit/tensor/testing';
import { runChecks } from '../browser/checks.js';

// A browser, simulated in Node: `navigator.gpu` is Dawn's GPU object (with Dawn's GPU*
// constants as globals, as a page has them), so acquireAdapter() must take the browser
// branch and never load Dawn itself. The real-browser run is browser/run.mjs.

if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
const dawnGpu = create(DAWN_FLAGS);

/** Globals a test replaces, with their original descriptors (undefined: absent before). */
const saved = new Map<string, PropertyDescriptor | undefined>();

function setGlobal(name: string, value: unknown): void {
  if (!saved.has(name)) saved.set(name, Object.getOwnPropertyDescriptor(globalThis, name));
  Object.defineProperty(globalThis, name, { value, configurable: true, writable: true, enumerable: true });
}

function installNavigator(gpu: unknown): void {
  for (const [name, value] of Object.entries(globals)) setGlobal(name, value);
  setGlobal('navigator', { gpu });
}

const made: Backend[] = [];

afterEach(() => {
  for (const be of made.splice(0)) be.destroy();
  for (const [name, desc] of saved) {
    if (desc) Object.defineProperty(globalThis, name, desc);
    else delete (globalThis as Record<string, unknown>)[name];
  }
  saved.clear();
});

/** Forwards to Dawn's GPU and counts adapter requests, to see which object attnkit asked. */
function countingGpu(): { gpu: GPU; calls: () => number } {
  let n = 0;
  const gpu = {
    requestAdapter: (opts?: GPURequestAdapterOptions) => {
      n++;
      return dawnGpu.requestAdapter(opts);
    },
    getPreferredCanvasFormat: () => dawnGpu.getPreferredCanvasFormat(),
    get wgslLanguageFeatures() {
      return dawnGpu.wgslLanguageFeatures;
    },
  } as unknown as GPU;
  return { gpu, calls: () => n };
}

/** A navigator.gpu that exists but has no adapter (e.g. WebGPU blocklisted or disabled). */
const adapterlessGpu = { requestAdapter: async () => null, getPreferredCanvasFormat: () => 'bgra8unorm' } as unknown as GPU;

describe('navigator.gpu backed by Dawn (a simulated browser)', () => {
  it('acquireAdapter takes navigator.gpu and does not create Dawn itself', async () => {
    installNavigator(dawnGpu);
    const acq = await acquireAdapter();
    expect(acq.gpu).toBe(dawnGpu);
    // keepAlive is only set when attnkit created Dawn; here the page owns the GPU object.
    expect(acq.keepAlive).toBeNull();
  });

  it("createBackend({ backend: 'webgpu' }) asks navigator.gpu for its adapter", async () => {
    const { gpu, calls } = countingGpu();
    installNavigator(gpu);
    const be = await createBackend({ backend: 'webgpu' });
    made.push(be);
    expect(be.kind).toBe('webgpu');
    expect(calls()).toBe(1);
  });

  it('matmul and softmax through it match the CPU backend', async () => {
    installNavigator(dawnGpu);
    const be = await createBackend({ backend: 'webgpu' });
    made.push(be);
    const cpu = new CpuBackend();
    const mm = (b: Backend) => matmul(random(b, [19, 23], { seed: 5 }), random(b, [23, 31], { seed: 6 }));
    const sm = (b: Backend) => softmax(random(b, [7, 45], { seed: 7, lo: -8, hi: 8 }), { causal: true });
    const { atol, rtol } = TOLERANCE.f32;
    expect(compareClose(await mm(be).toArray(), await mm(cpu).toArray(), atol, rtol).message).toBe('ok');
    expect(compareClose(await sm(be).toArray(), await sm(cpu).toArray(), atol, rtol).message).toBe('ok');
  });

  it("the browser runner's checks (matmul, softmax, rmsnorm, f16 matmul) pass through it", async () => {
    installNavigator(dawnGpu);
    const be = await createBackend({ backend: 'webgpu' });
    made.push(be);
    const results = await runChecks(be);
    expect(results.length).toBe(6);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.map((r) => r.dtype)).toContain('f16');
  });
});

describe('navigator.gpu without an adapter', () => {
  it('acquireAdapter gives NoAdapterError saying how to get an adapter', async () => {
    installNavigator(adapterlessGpu);
    const e = await acquireAdapter().then(() => null, (err: unknown) => err as Error);
    expect(e).toBeInstanceOf(NoAdapterError);
    expect(e!.message).toMatch(/^WebGPU found no adapter\. The browser's WebGPU has no adapter here: chrome:\/\/gpu/);
  });

  it("createBackend({ backend: 'webgpu' }) rejects with NoAdapterError", async () => {
    installNavigator(adapterlessGpu);
    await expect(createBackend({ backend: 'webgpu' })).rejects.toBeInstanceOf(NoAdapterError);
  });

  it("createBackend({ backend: 'auto' }) falls back to the CPU with one warning line and leaves Dawn unloaded", async () => {
    installNavigator(adapterlessGpu);
    const constantsBefore = (globalThis as Record<string, unknown>).GPUBufferUsage;
    const lines: string[] = [];
    const be = await createBackend({ backend: 'auto', warn: (l) => lines.push(l) });
    expect(be.kind).toBe('cpu');
    expect(lines).toEqual([expect.stringMatching(/^attnkit: using the CPU backend: WebGPU found no adapter\./)]);
    // Had attnkit fallen through to Dawn it would have replaced the page's GPU* globals.
    expect((globalThis as Record<string, unknown>).GPUBufferUsage).toBe(constantsBefore);
  });
});

describe('globals are restored after each test', () => {
  it('navigator is back to what Node had', () => {
    expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined();
  });
});
