import type { Backend } from '@attnkit/tensor';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** One JSON row per (kernel, shape, backend): DESIGN.md's benchmark contract. */
export interface BenchRow {
  package: string;
  kernel: string;
  shape: string;
  dtype: string;
  backend: string;
  device: string;
  medianMs: number;
  /** Spread of the repetitions, so a noisy machine shows. */
  minMs: number;
  maxMs: number;
  reps: number;
  gflops?: number;
  gbps?: number;
  /** The peer measured in the same run (PyTorch on the GPU machine, our dense path on CPU). */
  peer?: { name: string; medianMs: number; gflops?: number; gbps?: number };
  /** ours / peer in throughput terms (>1 means faster than the peer). */
  ratio?: number;
  notes?: string;
}

export interface Suite {
  name: string;
  /** Rows for this backend; `big` selects the GPU-machine shapes. */
  run(be: Backend, ctx: SuiteContext): Promise<BenchRow[]>;
}

export interface SuiteContext {
  big: boolean;
  device: string;
  /** Peer figures (keyed by `${kernel}|${shape}|${dtype}`) loaded from a PyTorch run, if any. */
  peers: Map<string, { name: string; medianMs: number }>;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Times `fn` (which records GPU work) by running it `inner` times per submission and
 * taking the median over `reps` submissions, so per-submit latency is amortised and one
 * slow repetition does not move the figure. `inner` grows until a repetition takes ~20 ms.
 */
export async function timeIt(be: Backend, fn: () => void, opts: { reps?: number; targetMs?: number; maxInner?: number; warmupMs?: number } = {}): Promise<{ medianMs: number; minMs: number; maxMs: number; reps: number }> {
  const reps = opts.reps ?? 9;
  const target = opts.targetMs ?? 20;
  // On the H200, calls made within about a second of a new pipeline or fresh buffers ran
  // 2-4x slower with unchanged GPU time (seen in the paro, decode and matmul probes), so GPU
  // runs keep calling until it passes: for the longer of `warmupMs` (a suite's own minimum)
  // and ATTNKIT_BENCH_WARMUP_MS (set by benchmarks/gpu/remote.sh).
  const warm = Math.max(opts.warmupMs ?? 0, Number(process.env.ATTNKIT_BENCH_WARMUP_MS ?? 0));
  const t0 = performance.now();
  do {
    fn();
    await be.sync();
  } while (performance.now() - t0 < warm);
  let inner = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    await be.sync();
    const dt = performance.now() - t0;
    if (dt >= target || inner >= (opts.maxInner ?? 256)) break;
    inner = Math.min(opts.maxInner ?? 256, Math.max(inner * 2, Math.ceil((inner * target) / Math.max(dt, 1e-3))));
  }
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    await be.sync();
    samples.push((performance.now() - t0) / inner);
  }
  return { medianMs: median(samples), minMs: Math.min(...samples), maxMs: Math.max(...samples), reps };
}

export function peerKey(kernel: string, shape: string, dtype: string): string {
  return `${kernel}|${shape}|${dtype}`;
}

/** Attaches the same-run peer and the throughput ratio to a row. */
export function withPeer(row: BenchRow, peer: { name: string; medianMs: number } | undefined, work: { flops?: number; bytes?: number }): BenchRow {
  if (!peer) return row;
  const p: BenchRow['peer'] = { name: peer.name, medianMs: peer.medianMs };
  if (work.flops) p.gflops = work.flops / (peer.medianMs * 1e6);
  if (work.bytes) p.gbps = work.bytes / (peer.medianMs * 1e6);
  return { ...row, peer: p, ratio: peer.medianMs / row.medianMs };
}

export function writeRows(file: string, rows: BenchRow[]): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(rows, null, 2) + '\n');
}
