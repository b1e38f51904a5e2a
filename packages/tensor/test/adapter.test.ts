import { describe, expect, it } from 'vitest';
import { acquireAdapter, createBackend, NoAdapterError, robustWith } from '@attnkit/tensor';

// Dawn's null backend accepts every call and computes nothing; a test passing on it would
// pass on garbage. It reports empty vendor/architecture/description and names itself only
// in `info.device`, which is what slipped through before.
describe("Dawn's null adapter is never used", () => {
  it("acquireAdapter refuses it with NoAdapterError that says how to get a real one", async () => {
    const e = await acquireAdapter(['backend=null']).then(() => null, (err: unknown) => err as Error);
    expect(e).toBeInstanceOf(NoAdapterError);
    expect(e!.message).toMatch(/^WebGPU offered only Dawn's null adapter \(device 'null-backend'\)\. On Linux without a GPU install Mesa lavapipe/);
  });
  it("createBackend({ backend: 'auto' }) falls back to the CPU with one warning line", async () => {
    const lines: string[] = [];
    const be = await createBackend({ backend: 'auto', dawnFlags: ['backend=null'], warn: (l) => lines.push(l) });
    expect(be.kind).toBe('cpu');
    expect(lines).toEqual([expect.stringMatching(/^attnkit: using the CPU backend: WebGPU offered only Dawn's null adapter/)]);
  });
  it("createBackend({ backend: 'webgpu' }) rejects instead of falling back", async () => {
    await expect(createBackend({ backend: 'webgpu', dawnFlags: ['backend=null'] })).rejects.toBeInstanceOf(NoAdapterError);
  });
});

describe('robustness flag', () => {
  it('is off only when Dawn is asked to disable_robustness', () => {
    expect(robustWith([])).toBe(true);
    expect(robustWith(['disable-dawn-features=disable_robustness'])).toBe(true);
    expect(robustWith(['enable-dawn-features=allow_unsafe_apis,disable_robustness,disable_workgroup_init'])).toBe(false);
    expect(robustWith(['enable-dawn-features=allow_unsafe_apis', 'enable-dawn-features=disable_robustness'])).toBe(false);
  });
});
