import { tensor, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { AttentionOptions } from '../src/options.js';
import { oracle, type Dims, type Visible } from './oracle.js';

/** Deterministic values in (-scale(i), scale(i)). */
export function seeded(n: number, seed: number, scale: (i: number) => number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, (_, i) => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return ((a / 2 ** 32) * 2 - 1) * scale(i);
  });
}

/**
 * One emulated subgroup-matrix prefill case against the float64 oracle: max |error| of the
 * output and of the log-sum-exp. Keys grow along the sequence so row maxima keep rising
 * (the rescale path must be right). `run` gets f16 Q, K, V and the options with kvLength.
 */
export async function sgOracleCase(
  be: WebGpuBackend, d: Dims, opts: AttentionOptions, vis: Visible,
  run: (q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions) => { out: Tensor; lse: Tensor },
): Promise<{ err: number; lseErr: number }> {
  const Q = seeded(d.B * d.Hq * d.S * d.D, 7, () => 2);
  const K = seeded(d.B * d.Hkv * d.L * d.D, 8, (i) => 0.5 + (3 * (Math.floor(i / d.D) % d.L)) / d.L);
  const V = seeded(d.B * d.Hkv * d.L * d.D, 9, () => 1);
  const ts: Tensor[] = [tensor(be, Q, [d.B, d.Hq, d.S, d.D], 'f16'), tensor(be, K, [d.B, d.Hkv, d.L, d.D], 'f16'), tensor(be, V, [d.B, d.Hkv, d.L, d.D], 'f16')];
  const [q, k, vv] = ts as [Tensor, Tensor, Tensor];
  const read = async (t: Tensor) => (await t.toArray()) as Float32Array;
  const want = oracle(await read(q), await read(k), await read(vv), d, 1 / Math.sqrt(d.D), vis);
  const { out, lse } = run(q, k, vv, { ...opts, kvLength: d.kvLength });
  const got = await read(out);
  const gotLse = await read(lse);
  let err = 0;
  for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - want.out[i]!));
  let lseErr = 0;
  for (let i = 0; i < gotLse.length; i++) lseErr = Math.max(lseErr, Math.abs(gotLse[i]! - want.lse[i]!));
  for (const t of [...ts, out, lse]) t.dispose();
  return { err, lseErr };
}
