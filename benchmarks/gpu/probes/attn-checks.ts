// What the f16 subgroup-matrix prefill probes (attn-sg-sweep, attn-sg-wide) check every
// variant against: small tricky shapes with a float64 CPU reference, and the timed shape.
import { attention, attentionWithStats } from '@attnkit/attention';
import { CpuBackend, mulberry32, random, tensor, type Backend, type Tensor } from '@attnkit/tensor';

export type AttnOptions = Parameters<typeof attention>[3];

/** The benchmark's prefill shape (causal, L = S); --small fits lavapipe. */
export function prefillShape(small: boolean): { B: number; H: number; S: number; D: number; name: string; flops: number } {
  const { B, H, S, D } = small ? { B: 1, H: 2, S: 128, D: 64 } : { B: 1, H: 32, S: 4096, D: 128 };
  return { B, H, S, D, name: `B${B}xH${H}xS${S}xL${S}xD${D}`, flops: (4 * B * H * S * S * D) / 2 };
}

/** The inputs every variant is timed on and compared at (seeds 1, 2, 3: the same tensors in every round). */
export function prefillInputs(be: Backend, s: { B: number; H: number; S: number; D: number }): [Tensor, Tensor, Tensor] {
  return [1, 2, 3].map((seed) => random(be, [s.B, s.H, s.S, s.D], { seed, dtype: 'f16' })) as [Tensor, Tensor, Tensor];
}

export interface Check { name: string; B: number; Hq: number; Hkv: number; S: number; cap: number; kvLength: number; opts: AttnOptions }

/**
 * GQA, a partial last query tile, a dense batch, queries at the end of a longer KV and a
 * window with sinks. attn-sg-wide checks the dense case at B = 2 (the batch stride),
 * attn-sg-sweep at B = 1 as its earlier rounds did, so their figures stay comparable.
 */
export function prefillChecks(denseBatch: 1 | 2): Check[] {
  return [
    { name: 'causal-gqa', B: 1, Hq: 4, Hkv: 2, S: 208, cap: 256, kvLength: 208, opts: { causal: true } },
    { name: denseBatch === 2 ? 'dense-b2' : 'dense', B: denseBatch, Hq: 2, Hkv: 2, S: 208, cap: 256, kvLength: 208, opts: {} },
    { name: 'causal-tail', B: 1, Hq: 2, Hkv: 1, S: 80, cap: 256, kvLength: 208, opts: { causal: true, kvLength: 208 } },
    { name: 'window48-sinks4', B: 1, Hq: 2, Hkv: 2, S: 208, cap: 256, kvLength: 208, opts: { mask: { kind: 'window', window: 48, sinks: 4 } } },
  ];
}

/** attn-sg-wide --small: sized for lavapipe, where the subgroup matrices are emulated per lane. */
export const SMALL_PREFILL_CHECKS: Check[] = [
  { name: 'causal-gqa', B: 1, Hq: 2, Hkv: 1, S: 48, cap: 64, kvLength: 48, opts: { causal: true } },
  { name: 'window20-sinks3', B: 1, Hq: 1, Hkv: 1, S: 64, cap: 64, kvLength: 64, opts: { mask: { kind: 'window', window: 20, sinks: 3 } } },
];

export interface CheckData { c: Check; want: Float32Array; wantLse?: Float32Array; gpu: [Tensor, Tensor, Tensor] }

function values(n: number, seed: number, grow: (i: number) => number): Float32Array {
  const rnd = mulberry32(seed);
  return Float32Array.from({ length: n }, (_, i) => (rnd() * 2 - 1) * grow(i));
}

/**
 * The checks' inputs on `gpu` and their float64 CPU results (with the log-sum-exp when `lse`).
 * Keys grow in magnitude along the sequence so a row's max keeps rising: the lazy rescale
 * must fire and be right.
 */
export async function prepareChecks(gpu: Backend, D: number, checks: Check[], opts: { lse: boolean }): Promise<CheckData[]> {
  const cpu = new CpuBackend();
  return Promise.all(checks.map(async (c) => {
    const q = values(c.B * c.Hq * c.S * D, 11, () => 2);
    const kRowGrow = (i: number) => 0.5 + 3 * ((Math.floor(i / D) % c.cap) / c.cap);
    const k = values(c.B * c.Hkv * c.cap * D, 12, kRowGrow);
    const v = values(c.B * c.Hkv * c.cap * D, 13, () => 1);
    const mk = (b: Backend): [Tensor, Tensor, Tensor] => [tensor(b, q, [c.B, c.Hq, c.S, D], 'f16'), tensor(b, k, [c.B, c.Hkv, c.cap, D], 'f16'), tensor(b, v, [c.B, c.Hkv, c.cap, D], 'f16')];
    const [cq, ck, cv] = mk(cpu);
    if (!opts.lse) return { c, want: (await attention(cq, ck, cv, c.opts).toArray()) as Float32Array, gpu: mk(gpu) };
    const r = attentionWithStats(cq, ck, cv, { ...c.opts, lse: true });
    return { c, want: (await r.out.toArray()) as Float32Array, wantLse: (await r.lse!.toArray()) as Float32Array, gpu: mk(gpu) };
  }));
}

export async function maxDiff(a: Tensor, want: ArrayLike<number>): Promise<number> {
  const x = await a.toArray();
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    // -inf lse on both sides (rows with no visible key) counts as equal.
    if (x[i] === want[i]) continue;
    const d = Math.abs(x[i]! - want[i]!);
    if (!(d <= m)) m = d;
  }
  return m;
}

/**
 * Runs every check through `run` and compares with the CPU; the log-sum-exp too where the
 * checks were prepared with it. A check that throws makes `max` NaN and is named in `text`.
 */
export async function runChecks(data: CheckData[], run: (c: Check, q: Tensor, k: Tensor, v: Tensor) => { out: Tensor; lse?: Tensor }): Promise<{ max: number; lseMax: number; text: string }> {
  let max = 0;
  let lseMax = 0;
  const parts: string[] = [];
  for (const { c, want, wantLse, gpu } of data) {
    try {
      const got = run(c, gpu[0], gpu[1], gpu[2]);
      const e = await maxDiff(got.out, want);
      const el = wantLse && got.lse ? await maxDiff(got.lse, wantLse) : NaN;
      got.out.dispose();
      got.lse?.dispose();
      max = Math.max(max, e);
      if (wantLse && got.lse) lseMax = Math.max(lseMax, el);
      parts.push(wantLse ? `${c.name} ${e.toExponential(2)} (lse ${el.toExponential(2)})` : `${c.name} ${e.toExponential(2)}`);
    } catch (e) {
      parts.push(`${c.name} failed: ${(e as Error).message.slice(0, 160)}`);
      max = NaN;
    }
  }
  return { max, lseMax, text: parts.join('; ') };
}
