import type { Backend } from './backend.js';
import { CpuBackend } from './cpu/backend.js';
import type { DType } from './dtype.js';
import { NoAdapterError } from './errors.js';
import { createBackend } from './webgpu/device.js';

/**
 * Test helpers shared by every package's conformance tier (exported as
 * '@attnkit/tensor/testing'). Tolerances live here, in one place.
 */

/** Absolute + relative tolerance per dtype, for results compared with the float64 CPU reference. */
export const TOLERANCE: Record<DType, { atol: number; rtol: number }> = {
  f32: { atol: 1e-4, rtol: 1e-4 },
  f16: { atol: 2e-3, rtol: 4e-3 },
  i8: { atol: 1, rtol: 0 },
  u8: { atol: 0, rtol: 0 },
  i32: { atol: 0, rtol: 0 },
  u32: { atol: 0, rtol: 0 },
};

/**
 * For ops that only move bits (permute, slice, concat, gatherRows) and for argmax/topk
 * indices: any difference from the reference is a bug, whatever the dtype.
 */
export const EXACT_TOLERANCE: Record<DType, { atol: number; rtol: number }> = {
  f32: { atol: 0, rtol: 0 },
  f16: { atol: 0, rtol: 0 },
  i8: { atol: 0, rtol: 0 },
  u8: { atol: 0, rtol: 0 },
  i32: { atol: 0, rtol: 0 },
  u32: { atol: 0, rtol: 0 },
};

let gpuPromise: Promise<Backend | null> | null = null;

/**
 * The WebGPU backend for tests, created once. Under CI=true a missing adapter is a
 * failure (the WebGPU tier must run there); elsewhere it is reported and skipped by
 * returning null, so a developer without Mesa still runs the CPU tier.
 */
export function gpuForTests(): Promise<Backend | null> {
  gpuPromise ??= createBackend({ backend: 'webgpu' }).catch((e: unknown) => {
    if (process.env.CI === 'true' || process.env.ATTNKIT_REQUIRE_GPU === '1') {
      throw new Error(`CI requires a real WebGPU adapter for the GPU tier: ${(e as Error).message}`);
    }
    if (!(e instanceof NoAdapterError)) throw e;
    console.warn(`attnkit tests: WebGPU tier not run here: ${e.message}`);
    return null;
  });
  return gpuPromise;
}

/** Every backend present: the CPU reference, then WebGPU where an adapter exists. */
export async function backendsForTests(): Promise<Backend[]> {
  const gpu = await gpuForTests();
  return gpu ? [new CpuBackend(), gpu] : [new CpuBackend()];
}

export interface CloseReport {
  ok: boolean;
  maxAbs: number;
  worst: number;
  message: string;
}

/** Compares elementwise: |a - b| <= atol + rtol * |b| (b is the reference). NaN never matches. */
export function compareClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number): CloseReport {
  if (actual.length !== expected.length) {
    return { ok: false, maxAbs: Infinity, worst: -1, message: `length ${actual.length} != expected ${expected.length}` };
  }
  let maxAbs = 0;
  let worst = -1;
  let bad = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const b = expected[i]!;
    const same = a === b; // also covers matching infinities
    const d = Math.abs(a - b);
    const okHere = same || (Number.isFinite(d) && d <= atol + rtol * Math.abs(b));
    if (!okHere) {
      bad++;
      if (worst < 0 || !(d <= maxAbs)) worst = i;
    }
    if (!same && !(d <= maxAbs)) maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
  }
  const message = bad
    ? `${bad}/${actual.length} elements off (atol ${atol}, rtol ${rtol}); worst at ${worst}: got ${actual[worst]}, want ${expected[worst]}; max |diff| ${maxAbs}`
    : 'ok';
  return { ok: bad === 0, maxAbs, worst, message };
}
