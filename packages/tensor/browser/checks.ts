import { CpuBackend, matmul, random, rmsnorm, softmax, tidy, type Backend, type Tensor } from '@attnkit/tensor';
import { compareClose, TOLERANCE } from '@attnkit/tensor/testing';

/**
 * The ops the browser runner checks on the page's WebGPU backend against the CPU
 * reference. The same list runs in Node under a simulated navigator.gpu
 * (test/navigator.test.ts), so the two environments check the same things.
 * Shapes are small and odd on purpose: they cross no tile boundary evenly.
 */
export interface CheckResult {
  name: string;
  dtype: string;
  shape: number[];
  ok: boolean;
  maxAbs: number;
  message: string;
}

interface Check {
  name: string;
  run: (be: Backend) => Tensor;
}

export const CHECKS: Check[] = [
  {
    name: 'matmul f32 [33,17]x[17,29]',
    run: (be) => matmul(random(be, [33, 17], { seed: 11 }), random(be, [17, 29], { seed: 12 })),
  },
  {
    name: 'matmul f32 transB batched [2,9,40]x[2,13,40]^T',
    run: (be) => matmul(random(be, [2, 9, 40], { seed: 13 }), random(be, [2, 13, 40], { seed: 14 }), { transB: true }),
  },
  {
    name: 'softmax f32 [5,37]',
    run: (be) => softmax(random(be, [5, 37], { seed: 21, lo: -6, hi: 6 })),
  },
  {
    name: 'softmax f32 causal [2,6,19]',
    run: (be) => softmax(random(be, [2, 6, 19], { seed: 22, lo: -6, hi: 6 }), { causal: true }),
  },
  {
    name: 'rmsnorm f32 [6,65]',
    run: (be) => rmsnorm(random(be, [6, 65], { seed: 31 }), random(be, [65], { seed: 32, lo: 0.5, hi: 1.5 })),
  },
  {
    name: 'matmul f16 [9,33]x[33,7] -> f16',
    run: (be) =>
      matmul(random(be, [9, 33], { seed: 41, dtype: 'f16' }), random(be, [33, 7], { seed: 42, dtype: 'f16' }), { outDtype: 'f16' }),
  },
];

/** Runs every check on `gpu` and on a fresh CPU reference; compares at TOLERANCE of the output dtype. */
export async function runChecks(gpu: Backend, reference: Backend = new CpuBackend()): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of CHECKS) {
    // tidy frees the random inputs; only the op's output survives.
    const got = tidy(() => check.run(gpu));
    const want = tidy(() => check.run(reference));
    const { atol, rtol } = TOLERANCE[got.dtype];
    const r = compareClose(await got.toArray(), await want.toArray(), atol, rtol);
    results.push({ name: check.name, dtype: got.dtype, shape: [...got.shape], ok: r.ok, maxAbs: r.maxAbs, message: r.message });
    got.dispose();
    want.dispose();
  }
  return results;
}
