// Set-up shared by the H200 probe scripts: their command lines, the adapter, the result
// files and the crash-resilient parent/child driver. Each probe is bundled on its own
// (benchmarks/gpu/bundle.sh), so this file ends up inside every bundle that imports it.
import { createBackend, WebGpuBackend } from '@attnkit/tensor';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

/** Timing on the H200 wants the unsafe APIs (subgroup matrices), f16 on NVIDIA and no robustness checks or zero-init. */
export const H200_DAWN_FLAGS = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness,disable_workgroup_init'];

/** A WebGPU backend or an error naming the probe; `dawnFlags: false` for lavapipe, where the H200 flags are not wanted. */
export async function probeBackend(name: string, opts: { dawnFlags?: boolean } = {}): Promise<WebGpuBackend> {
  const be = await createBackend(opts.dawnFlags === false ? { backend: 'webgpu' } : { backend: 'webgpu', dawnFlags: H200_DAWN_FLAGS });
  if (!(be instanceof WebGpuBackend)) throw new Error(`${name}: needs WebGPU`);
  return be;
}

/** The adapter limits a subgroup-matrix probe's results depend on, for the file's header. */
export function sgCaps(be: WebGpuBackend): Record<string, unknown> {
  const c = be.caps;
  return { maxComputeWorkgroupStorageSize: c.maxComputeWorkgroupStorageSize, subgroupMinSize: c.subgroupMinSize, subgroupMaxSize: c.subgroupMaxSize, subgroupMatrixConfigs: c.subgroupMatrixConfigs };
}

export function sgCapsLine(be: WebGpuBackend): string {
  return `${be.name}; workgroup storage ${be.caps.maxComputeWorkgroupStorageSize} B; subgroup ${be.caps.subgroupMinSize}-${be.caps.subgroupMaxSize}`;
}

/**
 * `--out DIR [--small] [--only SUBSTR]` for the probes that run in one process. Strict, so a
 * mistyped flag fails at once instead of after a minute of device time.
 */
export function probeOptions(): { out: string; small: boolean; only: string | undefined } {
  const { values } = parseArgs({ options: { out: { type: 'string', default: '.' }, small: { type: 'boolean', default: false }, only: { type: 'string' } } });
  return { out: values.out!, small: !!values.small, only: values.only };
}

/**
 * The raw command line, for the crash-resilient probes: the parent hands it to each child
 * unchanged, with the child's own flags appended.
 */
export function probeCli(argv = process.argv.slice(2)): { argv: string[]; has: (flag: string) => boolean; value: (flag: string) => string | undefined } {
  return {
    argv,
    has: (flag) => argv.includes(flag),
    value: (flag) => { const i = argv.indexOf(flag); return i >= 0 ? argv[i + 1] : undefined; },
  };
}

export function stopwatch(): () => number {
  const t0 = performance.now();
  return () => performance.now() - t0;
}

export function errorText(e: unknown): string {
  return String((e as Error)?.message ?? e).slice(0, 400);
}

/** A row of the single-process probes: NaN times where nothing was timed (null in the JSON). */
export interface TimedRow {
  variant: string;
  shape: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  tflops?: number;
  notes: string;
}

export function untimedRow(variant: string, shape: string, notes: string): TimedRow {
  return { variant, shape, medianMs: NaN, minMs: NaN, maxMs: NaN, notes };
}

/** The start of a row's console line; each probe appends its own correctness figures and the notes. */
export function timedRowText(r: TimedRow): string {
  const fig = Number.isFinite(r.medianMs) ? `${r.medianMs.toFixed(3)} ms (min ${r.minMs.toFixed(3)}, max ${r.maxMs.toFixed(3)})` : 'n/a';
  return `${r.variant} ${r.shape}: ${fig}${r.tflops ? ` ${r.tflops.toFixed(2)} TFLOP/s` : ''}`;
}

/** Writes `<outDir>/<name>.json` once, at the end of a single-process probe. */
export function writeProbeJson(outDir: string, name: string, result: object, elapsedMs: () => number): void {
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${name}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`${name}: wrote ${file} (${(elapsedMs() / 1000).toFixed(1)} s)`);
}

// ---------------------------------------------------------------- crash-resilient sweeps

/** The fields the parent fills in for a variant whose child process died. */
export interface SweepRow { variant: string; shape: string; dtype: 'f16'; notes: string; error?: string }

/**
 * `<outDir>/<name>.json` as `{ ...meta, rows }`, rewritten after every row so that a child
 * killed mid-sweep (or a round cut short) leaves every finished row on disk, and
 * `<name>.progress`, the index of the variant a child is in, for the parent to skip past.
 */
export class SweepFiles<R extends SweepRow> {
  readonly rowsPath: string;
  readonly progressPath: string;

  constructor(outDir: string, name: string) {
    this.rowsPath = join(outDir, `${name}.json`);
    this.progressPath = join(outDir, `${name}.progress`);
  }

  readRows(): R[] {
    if (!existsSync(this.rowsPath)) return [];
    try { return (JSON.parse(readFileSync(this.rowsPath, 'utf8')) as { rows: R[] }).rows; } catch { return []; }
  }

  readMeta(): Record<string, unknown> {
    try { const { rows: _r, ...meta } = JSON.parse(readFileSync(this.rowsPath, 'utf8')) as Record<string, unknown>; return meta; } catch { return {}; }
  }

  writeRows(meta: Record<string, unknown>, rows: R[]): void {
    writeFileSync(this.rowsPath, JSON.stringify({ ...meta, rows }, null, 2) + '\n');
  }

  reached(index: number): void {
    writeFileSync(this.progressPath, String(index));
  }
}

export interface CrashResilientOptions<R extends SweepRow> {
  name: string;
  outDir: string;
  cli: ReturnType<typeof probeCli>;
  files: SweepFiles<R>;
  variants: ReadonlyArray<{ name: string }>;
  /** How long the next child may run, given the time spent so far: the round kills the whole script at its own limit. */
  childTimeoutMs: (elapsedMs: number) => number;
  /** What the console names when a child dies outside any variant. */
  outsideVariants: string;
}

/**
 * Staged subgroup-matrix kernels have crashed Dawn, taking the process with them. The
 * parent therefore runs the sweep in a child (`--child --skip N --started T`) and, when the
 * child dies, records a failed row for the variant named in the progress file and starts a
 * new child past it, so one crash costs one row. In the parent this never returns; in a
 * child it returns where to start and when the whole run started (the budgets count from
 * the parent's start).
 */
export function crashResilientSweep<R extends SweepRow>(o: CrashResilientOptions<R>): { skip: number; started: number } {
  if (o.cli.has('--child')) {
    return { skip: Number(o.cli.value('--skip') ?? 0), started: Number(o.cli.value('--started') ?? Date.now()) };
  }
  mkdirSync(o.outDir, { recursive: true });
  o.files.writeRows({ status: 'running' }, []);
  let from = 0;
  const t0 = Date.now();
  for (let attempt = 0; attempt < o.variants.length + 1; attempt++) {
    const childArgs = [...process.execArgv, process.argv[1]!, ...o.cli.argv, '--child', '--skip', String(from), '--started', String(t0)];
    const r = spawnSync(process.execPath, childArgs, { stdio: 'inherit', timeout: o.childTimeoutMs(Date.now() - t0) });
    if (r.status === 0) break;
    const at = existsSync(o.files.progressPath) ? Number(readFileSync(o.files.progressPath, 'utf8')) : from;
    const v = o.variants[at];
    console.log(`${o.name}: child died (status ${r.status}, signal ${r.signal}) during variant #${at} ${v?.name ?? o.outsideVariants}`);
    const rows = o.files.readRows();
    if (v) rows.push({ variant: v.name, shape: '', dtype: 'f16', notes: 'process died in this variant', error: `child exit status ${r.status} signal ${r.signal}` } as R);
    o.files.writeRows(o.files.readMeta(), rows);
    if (!v || at + 1 >= o.variants.length) break;
    from = at + 1;
  }
  console.log(`${o.name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${o.files.rowsPath}`);
  process.exit(0);
}
