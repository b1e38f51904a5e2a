// Measures what Dawn/Vulkan lets a WGSL kernel reach on this adapter, with no memory traffic
// in the way: the subgroup-matrix (tensor-core) multiply rate, the f32 FMA rate, and the
// read and copy bandwidth. These are the ceilings the matmul and attention kernels are judged
// against in the closing notes: a target above a ceiling cannot be met by tiling alone.
//   node .gpu/ceilings.mjs [outfile | --out DIR]
import { packUniforms, uniformStruct, type Program } from '@attnkit/tensor';
import { writeFileSync } from 'node:fs';
import { timeIt } from '../../src/harness.js';
import { probeBackend } from './probe-driver.js';

const U = uniformStruct('U', [['iters', 'u32']]);

/** WGSL: c_i_j += l_i * r_j for every pair of the FR x FC result fragments. */
function accumulateAll(FR: number, FC: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < FR; i++) for (let j = 0; j < FC; j++) out.push(`c${i}_${j} = subgroupMatrixMultiplyAccumulate(l${i}, r${j}, c${i}_${j});`);
  return out;
}

/** WGSL: the FR x FC result fragments stored one after another from `base` (so the compiler cannot drop them). */
function storeAll(FR: number, FC: number, base: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < FR; i++) for (let j = 0; j < FC; j++) out.push(`subgroupMatrixStore(&out, ${base} + ${256 * out.length}u, c${i}_${j}, false, 16u);`);
  return out;
}

/** WGSL: the extensions and bindings both MMA programs start with (`out` holds `acc`). */
function mmaPreamble(acc: 'f32' | 'f16'): string {
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
${U}
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read_write> out: array<${acc}>;
@group(0) @binding(2) var<uniform> u: U;`;
}

/** Each subgroup holds FR x FC result fragments and multiplies resident fragments ITER times. */
function mmaProgram(acc: 'f32' | 'f16', FR: number, FC: number, sgPerWg: number, sgSize: number): Program {
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  const lines: string[] = [];
  for (let i = 0; i < FR; i++) lines.push(`let l${i} = subgroupMatrixLoad<${L}>(&a, ${i * 256}u, false, 16u);`);
  for (let j = 0; j < FC; j++) lines.push(`let r${j} = subgroupMatrixLoad<${R}>(&a, ${(FR + j) * 256}u, false, 16u);`);
  // Each accumulator starts from a product (a bare declaration in a loop body was hoisted on the H200).
  for (let i = 0; i < FR; i++) for (let j = 0; j < FC; j++) lines.push(`var c${i}_${j} = subgroupMatrixMultiply<${acc}>(l${i}, r${j});`);
  const body = accumulateAll(FR, FC);
  const stores = storeAll(FR, FC, 'base');
  return {
    key: `ceiling/mma/${acc}/${FR}x${FC}/${sgPerWg}`,
    inputs: 1, outputs: 1, uniform: true,
    source: () => `${mmaPreamble(acc)}
@compute @workgroup_size(${sgPerWg * sgSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) sg: u32) {
  ${lines.join('\n  ')}
  for (var it = 0u; it < u.iters; it++) {
    ${body.join('\n    ')}
  }
  // Only workgroup 0 stores, so the store traffic is nil; the compiler cannot know that.
  if (wid.x == 0u) {
    let base = sg * ${256 * FR * FC}u;
    ${stores.join('\n    ')}
  }
}`,
  };
}

/**
 * Like mmaProgram, but every iteration reloads its FR + FC fragments from workgroup memory
 * (the offset moves with the iteration so the loads cannot be hoisted): the rate a kernel
 * that feeds the tensor cores from staged tiles can reach at this fragment reuse, before
 * any global traffic or barrier. STRIDE is the staged row length in halves.
 */
function mmaWorkgroupProgram(FR: number, FC: number, sgPerWg: number, sgSize: number, STRIDE: number): Program {
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  const rows = 64;
  const first: string[] = [];
  const body: string[] = [];
  for (let i = 0; i < FR; i++) body.push(`let l${i} = subgroupMatrixLoad<${L}>(&sh, ${i * 16 * STRIDE}u + base, false, ${STRIDE}u);`);
  for (let j = 0; j < FC; j++) body.push(`let r${j} = subgroupMatrixLoad<${R}>(&sh, ${rows * STRIDE}u + base * ${STRIDE}u + ${j * 16}u, false, ${STRIDE}u);`);
  for (let i = 0; i < FR; i++) for (let j = 0; j < FC; j++) {
    first.push(`var c${i}_${j} = subgroupMatrixMultiply<f32>(subgroupMatrixLoad<${L}>(&sh, ${i * 16 * STRIDE}u, false, ${STRIDE}u), subgroupMatrixLoad<${R}>(&sh, ${rows * STRIDE + j * 16}u, false, ${STRIDE}u));`);
  }
  body.push(...accumulateAll(FR, FC));
  const stores = storeAll(FR, FC, 'base0');
  return {
    key: `ceiling/mma-wg/${FR}x${FC}/${sgPerWg}/${STRIDE}`,
    inputs: 1, outputs: 1, uniform: true,
    source: () => `${mmaPreamble('f32')}
var<workgroup> sh: array<f16, ${2 * rows * STRIDE}>;
@compute @workgroup_size(${sgPerWg * sgSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) sg: u32, @builtin(local_invocation_index) lid: u32) {
  for (var e = lid; e < ${2 * rows * STRIDE}u; e += ${sgPerWg * sgSize}u) { sh[e] = a[e % 4096u]; }
  workgroupBarrier();
  ${first.join('\n  ')}
  for (var it = 0u; it < u.iters; it++) {
    // Column (left) and row (right) offset 0, 16 or 32: inside the staged rows, never hoistable.
    let base = (it % 3u) * 16u;
    ${body.join('\n    ')}
  }
  if (wid.x == 0u) {
    let base0 = sg * ${256 * FR * FC}u;
    ${stores.join('\n    ')}
  }
}`,
  };
}

/** Each thread runs 8 independent vec4 FMA chains. */
function fmaProgram(): Program {
  return {
    key: 'ceiling/fma', inputs: 1, outputs: 1, uniform: true,
    source: () => `${U}
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let x = a[lid % 8u];
  let y = a[8u + lid % 8u];
  var c0 = x; var c1 = y; var c2 = x + y; var c3 = x - y; var c4 = x * 0.5; var c5 = y * 0.5; var c6 = x * y; var c7 = -x;
  for (var it = 0u; it < u.iters; it++) {
    c0 = fma(c0, x, y); c1 = fma(c1, x, y); c2 = fma(c2, x, y); c3 = fma(c3, x, y);
    c4 = fma(c4, x, y); c5 = fma(c5, x, y); c6 = fma(c6, x, y); c7 = fma(c7, x, y);
  }
  let s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
  if (s.x == 12345.678) { out[gid.x] = s; }
}`,
  };
}

/** Reads every vec4 once (a reduction per thread), or copies it. */
function memProgram(copy: boolean): Program {
  return {
    key: `ceiling/${copy ? 'copy' : 'read'}`, inputs: 1, outputs: 1, uniform: true,
    source: () => `${uniformStruct('U', [['n4', 'u32']])}
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let threads = nwg.x * 256u;
  var acc = vec4<f32>(0.0);
  for (var i = wid.x * 256u + lid; i < u.n4; i += threads) {
    ${copy ? 'out[i] = a[i];' : 'acc += a[i];'}
  }
  ${copy ? '' : 'if (acc.x == 12345.678) { out[lid] = acc; }'}
}`,
  };
}

interface Row { probe: string; medianMs: number; minMs: number; maxMs: number; tflops?: number; tbps?: number; notes: string }

const be = await probeBackend('ceilings');
const rows: Row[] = [];
const record = (r: Row) => {
  rows.push(r);
  console.log(`${r.probe}: ${r.medianMs.toFixed(3)} ms${r.tflops ? ` ${r.tflops.toFixed(1)} TFLOP/s` : ''}${r.tbps ? ` ${r.tbps.toFixed(2)} TB/s` : ''} (${r.notes})`);
};
const sgSize = be.caps.subgroupMaxSize || 32;
const small = be.createBuffer('ceilings', 1 << 20);
const outBuf = be.createBuffer('ceilings', 64 << 20);

const wgs = 132 * 16;
const run = async (probe: string, program: Program, uniforms: ArrayBuffer, groups: number, work: { flops?: number; bytes?: number }, notes: string) => {
  try {
    const t = await timeIt(be, () => be.dispatch({ program, inputs: [small], outputs: [outBuf], uniforms, grid: [groups, 1, 1] }), { reps: 7 });
    be.checkHealthy(probe);
    record({ probe, ...t, tflops: work.flops ? work.flops / (t.medianMs * 1e9) : undefined, tbps: work.bytes ? work.bytes / (t.medianMs * 1e9) : undefined, notes });
  } catch (e) {
    record({ probe, medianMs: NaN, minMs: NaN, maxMs: NaN, notes: `failed: ${(e as Error).message.slice(0, 300)}` });
  }
};

if (be.caps.subgroupMatrixConfigs.some((c) => c.componentType === 'f16')) {
  for (const [acc, FR, FC, sg] of [['f32', 2, 2, 4], ['f32', 4, 4, 4], ['f32', 2, 4, 8], ['f16', 2, 2, 4], ['f16', 4, 4, 4]] as const) {
    const iters = 1024;
    const flops = wgs * sg * iters * FR * FC * 2 * 16 ** 3;
    await run(`mma-${acc}-${FR}x${FC}-sg${sg}`, mmaProgram(acc, FR, FC, sg, sgSize), packUniforms([['u32', iters]]), wgs, { flops },
      `f16 x f16 -> ${acc} subgroup matrices, ${FR}x${FC} resident result fragments per subgroup, ${sg} subgroups per workgroup, ${wgs} workgroups, no memory traffic in the loop`);
  }
  for (const [FR, FC, sg, stride] of [[1, 1, 4, 72], [2, 2, 4, 72], [4, 4, 4, 72], [2, 2, 16, 72], [4, 4, 4, 64], [2, 4, 8, 72]] as const) {
    const iters = 256;
    const flops = wgs * sg * iters * FR * FC * 2 * 16 ** 3;
    await run(`mma-wgload-${FR}x${FC}-sg${sg}-stride${stride}`, mmaWorkgroupProgram(FR, FC, sg, sgSize, stride), packUniforms([['u32', iters]]), wgs, { flops },
      `f16 x f16 -> f32 subgroup matrices, ${FR}+${FC} fragments reloaded from workgroup memory (rows of ${stride} halves) per ${FR}x${FC} multiplies, ${sg} subgroups per workgroup, ${wgs} workgroups`);
  }
} else {
  console.log('no f16 subgroup-matrix config on this adapter: MMA ceilings skipped');
}
{
  const iters = 4096;
  const groups = 132 * 64;
  await run('fma-f32', fmaProgram(), packUniforms([['u32', iters]]), groups, { flops: groups * 256 * iters * 8 * 4 * 2 }, '8 independent vec4 FMA chains per thread');
}
const n = be.caps.maxStorageBufferBindingSize >= 1 << 30 ? 1 << 30 : 32 << 20;
const big = be.createBuffer('ceilings', n);
const bigOut = be.createBuffer('ceilings', n);
for (const copy of [false, true]) {
  const program = memProgram(copy);
  const probe = copy ? 'copy' : 'read';
  try {
    const t = await timeIt(be, () => be.dispatch({ program, inputs: [big], outputs: [bigOut], uniforms: packUniforms([['u32', n / 16]]), grid: [132 * 32, 1, 1] }), { reps: 7 });
    record({ probe, ...t, tbps: (copy ? 2 * n : n) / (t.medianMs * 1e9), notes: `${n >> 20} MiB ${copy ? 'read + written' : 'read'}, vec4 grid-stride loop` });
  } catch (e) {
    record({ probe, medianMs: NaN, minMs: NaN, maxMs: NaN, notes: `failed: ${(e as Error).message.slice(0, 300)}` });
  }
}
// `--out DIR` (as benchmarks/gpu/round.sh passes it) or a file name.
const outAt = process.argv.indexOf('--out');
const file = outAt > 0 ? `${process.argv[outAt + 1]}/ceilings.json` : process.argv[2] ?? 'ceilings.json';
writeFileSync(file, JSON.stringify({ device: be.name, rows }, null, 2) + '\n');
be.destroy();
