import { expect } from 'vitest';
import { CpuBackend, random, tensor, type Backend, type DType, type Tensor } from '@attnkit/tensor';
import { backendsForTests, compareClose, EXACT_TOLERANCE, TOLERANCE } from '@attnkit/tensor/testing';
import { mulberry32 } from '@attnkit/tensor';

// The conformance harness (after ggml's test-backend-ops): one case = input specs and an
// op; the op runs on the CPU reference and on every backend present, and each output is
// compared with the reference at the tolerance of its dtype (TOLERANCE, the one table).

export const backends = await backendsForTests();
export const reference = backends.find((b) => b instanceof CpuBackend)!;
/** Backends that are not the reference: the ones a case actually checks. */
export const gpus = backends.filter((b) => b !== reference);
export const named = backends.map((b) => [b.name, b] as const);

/** Odd and awkward sizes: one element, primes, around powers of two and the 128-wide workgroup. */
export const ODD = [1, 7, 63, 65, 127, 129] as const;

export interface Spec {
  shape: number[];
  dtype?: DType;
  /** 'uniform' in [lo, hi) (default [-1, 1)), 'normal' (std), 'int' in [lo, hi) integers. */
  dist?: 'uniform' | 'normal' | 'int';
  lo?: number;
  hi?: number;
  std?: number;
  /** Explicit values instead of random ones. */
  values?: ArrayLike<number>;
}

let seedCounter = 1;

/** Fixes each spec's values once so every backend sees the same numbers. */
function materialise(specs: Spec[]): Array<{ spec: Spec; values: ArrayLike<number> }> {
  return specs.map((spec) => {
    if (spec.values) return { spec, values: spec.values };
    const n = spec.shape.reduce((p, d) => p * d, 1);
    const seed = seedCounter++;
    if (spec.dist === 'int') {
      const r = mulberry32(seed);
      const lo = spec.lo ?? -100;
      const hi = spec.hi ?? 100;
      return { spec, values: Array.from({ length: n }, () => lo + Math.floor(r() * (hi - lo))) };
    }
    const cpu = new CpuBackend();
    const t = random(cpu, spec.shape, { seed, distribution: spec.dist === 'normal' ? 'normal' : 'uniform', lo: spec.lo, hi: spec.hi, std: spec.std });
    const values = (t.handle('test') as Float32Array).slice();
    return { spec, values };
  });
}

function build(be: Backend, inputs: Array<{ spec: Spec; values: ArrayLike<number> }>): Tensor[] {
  return inputs.map(({ spec, values }) => tensor(be, values, spec.shape, spec.dtype ?? 'f32'));
}

type Outputs = Tensor | Tensor[] | Record<string, Tensor>;

function list(o: Outputs): Tensor[] {
  if (Array.isArray(o)) return o;
  if ('dtype' in o && 'shape' in o) return [o as Tensor];
  return Object.values(o as Record<string, Tensor>);
}

export interface CaseOptions {
  /** Bit-exact comparison (EXACT_TOLERANCE) for ops that only move data. */
  exact?: boolean;
  /** Runs only on these backends (e.g. one kernel variant that exists only on WebGPU). */
  on?: Backend[];
}

/**
 * Runs `op` on the reference and on each backend (or `opts.on`) with the same inputs and
 * asserts shape, dtype and values match.
 */
export async function conform(label: string, specs: Spec[], op: (be: Backend, ...xs: Tensor[]) => Outputs, opts: CaseOptions = {}): Promise<void> {
  const inputs = materialise(specs);
  const refIn = build(reference, inputs);
  const refOut = list(op(reference, ...refIn));
  const want = await Promise.all(refOut.map((t) => t.toArray()));
  for (const be of opts.on ?? backends) {
    const xs = build(be, inputs);
    const outs = list(op(be, ...xs));
    expect(outs.length, `${label} on ${be.name}: output count`).toBe(refOut.length);
    for (let i = 0; i < outs.length; i++) {
      const got = outs[i]!;
      const ref = refOut[i]!;
      expect(got.shape, `${label} on ${be.name}: output ${i} shape`).toEqual(ref.shape);
      expect(got.dtype, `${label} on ${be.name}: output ${i} dtype`).toBe(ref.dtype);
      const tol = (opts.exact ? EXACT_TOLERANCE : TOLERANCE)[got.dtype];
      const report = compareClose(await got.toArray(), want[i]!, tol.atol, tol.rtol);
      expect(report.message, `${label} on ${be.name}: output ${i}`).toBe('ok');
    }
    for (const t of [...xs, ...outs]) t.dispose();
  }
  for (const t of [...refIn, ...refOut]) t.dispose();
}

export const FLOAT_DTYPES = ['f32', 'f16'] as const;
