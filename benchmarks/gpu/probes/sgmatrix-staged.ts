// Bisects the crash of staged subgroup-matrix matmuls (shared/gpu/README.md): each probe
// is one kernel shape, run in its own process by run-probes.sh, so a crash (signal or
// abort) marks that probe alone. A probe that survives is checked for exact results on
// small-integer data (f16 inputs in {-2..2}, sums exact in f32) and, with `time`, timed
// at 8192^3.
//   node .gpu/sgmatrix-staged.mjs <probe> [time]
import { create, globals } from 'webgpu';

interface Probe {
  /** none: fragments from storage; once: tiles staged before the K loop; loop: staged every K step */
  stage: 'none' | 'once' | 'loop';
  /** workgroupBarrier()s inside the K loop */
  barriers: boolean;
  /** subgroupMatrixLoad reads the staged tiles (else storage, even when tiles are staged) */
  fromWorkgroup: boolean;
  SGR: number; SGC: number; FR: number; FC: number; BK: number;
  flags?: string[];
  asyncPipeline?: boolean;
  /** each thread stages 4 consecutive halves per step (row-wise copy) instead of one */
  vecStage?: boolean;
  /** results are wrong by design (races or stale tiles): only survival is checked */
  compileOnly?: boolean;
}

const base = { SGR: 2, SGC: 2, FR: 2, FC: 2, BK: 32 };
const PROBES: Record<string, Probe> = {
  'global': { ...base, stage: 'none', barriers: false, fromWorkgroup: false },
  'global-barrier': { ...base, stage: 'none', barriers: true, fromWorkgroup: false },
  'staged-once': { ...base, stage: 'once', barriers: false, fromWorkgroup: true, compileOnly: true },
  'staged-loop-nobarrier': { ...base, stage: 'loop', barriers: false, fromWorkgroup: true, compileOnly: true },
  'staged-loop-fromglobal': { ...base, stage: 'loop', barriers: true, fromWorkgroup: false },
  'staged': { ...base, stage: 'loop', barriers: true, fromWorkgroup: true },
  'staged-1sg': { SGR: 1, SGC: 1, FR: 1, FC: 1, BK: 16, stage: 'loop', barriers: true, fromWorkgroup: true },
  'staged-norobust': { ...base, stage: 'loop', barriers: true, fromWorkgroup: true, flags: ['disable_robustness'] },
  'staged-noinit': { ...base, stage: 'loop', barriers: true, fromWorkgroup: true, flags: ['disable_workgroup_init'] },
  'staged-norobust-noinit': { ...base, stage: 'loop', barriers: true, fromWorkgroup: true, flags: ['disable_robustness', 'disable_workgroup_init'] },
  'staged-async': { ...base, stage: 'loop', barriers: true, fromWorkgroup: true, asyncPipeline: true },
  'staged-vec': { ...base, stage: 'loop', barriers: true, fromWorkgroup: true, vecStage: true },
  'staged-vec-norobust': { ...base, stage: 'loop', barriers: true, fromWorkgroup: true, vecStage: true, flags: ['disable_robustness', 'disable_workgroup_init'] },
  'staged-big-norobust': { SGR: 2, SGC: 2, FR: 4, FC: 4, BK: 32, stage: 'loop', barriers: true, fromWorkgroup: true, vecStage: true, flags: ['disable_robustness', 'disable_workgroup_init'] },
  'staged-big-bk64-norobust': { SGR: 2, SGC: 2, FR: 4, FC: 4, BK: 64, stage: 'loop', barriers: true, fromWorkgroup: true, vecStage: true, flags: ['disable_robustness', 'disable_workgroup_init'] },
};

function source(p: Probe, M: number, N: number, K: number): string {
  const NSG = p.SGR * p.SGC;
  const WG = 32 * NSG;
  const BM = 16 * p.SGR * p.FR;
  const BN = 16 * p.SGC * p.FC;
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  const staged = p.stage !== 'none';
  // A [M,K] row-major, B [N,K] row-major (C = A B^T); tiles As [BM][BK], Bs [BN][BK].
  const stageTile = (k0: string) => p.vecStage
    ? `for (var v = lid; v < ${(BM * p.BK) / 4}u; v += ${WG}u) { let r = v / ${p.BK / 4}u; let c = (v % ${p.BK / 4}u) * 4u; let g = (r0 + r) * ${K}u + ${k0} + c; let o = r * ${p.BK}u + c; As[o] = A[g]; As[o + 1u] = A[g + 1u]; As[o + 2u] = A[g + 2u]; As[o + 3u] = A[g + 3u]; }
    for (var v = lid; v < ${(BN * p.BK) / 4}u; v += ${WG}u) { let r = v / ${p.BK / 4}u; let c = (v % ${p.BK / 4}u) * 4u; let g = (c0 + r) * ${K}u + ${k0} + c; let o = r * ${p.BK}u + c; Bs[o] = B[g]; Bs[o + 1u] = B[g + 1u]; Bs[o + 2u] = B[g + 2u]; Bs[o + 3u] = B[g + 3u]; }`
    : `for (var v = lid; v < ${BM * p.BK}u; v += ${WG}u) { As[v] = A[(r0 + v / ${p.BK}u) * ${K}u + ${k0} + v % ${p.BK}u]; }
    for (var v = lid; v < ${BN * p.BK}u; v += ${WG}u) { Bs[v] = B[(c0 + v / ${p.BK}u) * ${K}u + ${k0} + v % ${p.BK}u]; }`;
  const loads: string[] = [];
  for (let i = 0; i < p.FR; i++) {
    loads.push(p.fromWorkgroup
      ? `let l${i} = subgroupMatrixLoad<${L}>(&As, (sr * ${p.FR * 16}u + ${i * 16}u) * ${p.BK}u + kk, false, ${p.BK}u);`
      : `let l${i} = subgroupMatrixLoad<${L}>(&A, (r0 + sr * ${p.FR * 16}u + ${i * 16}u) * ${K}u + k0 + kk, false, ${K}u);`);
  }
  for (let j = 0; j < p.FC; j++) {
    loads.push(p.fromWorkgroup
      ? `let q${j} = subgroupMatrixLoad<${R}>(&Bs, (sc * ${p.FC * 16}u + ${j * 16}u) * ${p.BK}u + kk, true, ${p.BK}u);`
      : `let q${j} = subgroupMatrixLoad<${R}>(&B, (c0 + sc * ${p.FC * 16}u + ${j * 16}u) * ${K}u + k0 + kk, true, ${K}u);`);
  }
  const mma: string[] = [];
  const decl: string[] = [];
  const store: string[] = [];
  for (let i = 0; i < p.FR; i++) {
    for (let j = 0; j < p.FC; j++) {
      decl.push(`var acc${i}_${j}: subgroup_matrix_result<f32, 16, 16>;`);
      mma.push(`acc${i}_${j} = subgroupMatrixMultiplyAccumulate(l${i}, q${j}, acc${i}_${j});`);
      store.push(`subgroupMatrixStore(&C, (r0 + sr * ${p.FR * 16}u + ${i * 16}u) * ${N}u + c0 + sc * ${p.FC * 16}u + ${j * 16}u, acc${i}_${j}, false, ${N}u);`);
    }
  }
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
${staged ? `var<workgroup> As: array<f16, ${BM * p.BK}>;\nvar<workgroup> Bs: array<f16, ${BN * p.BK}>;` : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32) {
  let r0 = wid.y * ${BM}u;
  let c0 = wid.x * ${BN}u;
  let sr = sg / ${p.SGC}u;
  let sc = sg % ${p.SGC}u;
  ${decl.join('\n  ')}
  ${p.stage === 'once' ? `${stageTile('0u')}\n  workgroupBarrier();` : ''}
  for (var k0 = 0u; k0 < ${K}u; k0 += ${p.BK}u) {
    ${p.stage === 'loop' ? stageTile('k0') : ''}
    ${p.barriers ? 'workgroupBarrier();' : ''}
    for (var kk = 0u; kk < ${p.BK}u; kk += 16u) {
      ${loads.join('\n      ')}
      ${mma.join('\n      ')}
    }
    ${p.barriers ? 'workgroupBarrier();' : ''}
  }
  ${store.join('\n  ')}
}`;
}

function f16Bits(v: number): number {
  // small integers only: exact in f16
  if (v === 0) return 0;
  const s = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  return s | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

async function main(): Promise<void> {
  const name = process.argv[2] ?? '';
  const p = PROBES[name];
  if (!p) {
    console.log(`probes: ${Object.keys(PROBES).join(' ')}`);
    process.exit(2);
  }
  Object.assign(globalThis, globals);
  const flags = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia', ...(p.flags ?? [])];
  const gpu = create([`enable-dawn-features=${flags.join(',')}`]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no adapter');
  const want = ['chromium-experimental-subgroup-matrix', 'subgroups', 'shader-f16'] as GPUFeatureName[];
  if (!want.every((f) => adapter.features.has(f))) throw new Error(`adapter lacks ${want.filter((f) => !adapter.features.has(f)).join(', ')}`);
  const limits: Record<string, number> = {};
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX']) limits[k] = (adapter.limits as unknown as Record<string, number>)[k]!;
  const device = await adapter.requestDevice({ requiredFeatures: want, requiredLimits: limits });
  const errors: string[] = [];
  device.addEventListener('uncapturederror', (e) => errors.push((e as GPUUncapturedErrorEvent).error.message.slice(0, 300)));

  const run = async (n: number, timed: boolean): Promise<void> => {
    const M = n, N = n, K = n;
    const code = source(p, M, N, K);
    const t0 = performance.now();
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    for (const m of info.messages) if (m.type === 'error') throw new Error(`WGSL: ${m.message}`);
    console.log(`[${name}] n=${n} shader module ok (${(performance.now() - t0).toFixed(0)} ms); creating pipeline${p.asyncPipeline ? ' (async)' : ''}...`);
    const desc: GPUComputePipelineDescriptor = { layout: 'auto', compute: { module, entryPoint: 'main' } };
    const pipe = p.asyncPipeline ? await device.createComputePipelineAsync(desc) : device.createComputePipeline(desc);
    console.log(`[${name}] pipeline created (${(performance.now() - t0).toFixed(0)} ms)`);
    const vals = [-2, -1, 0, 1, 2];
    const ha = new Uint16Array(M * K);
    const hb = new Uint16Array(N * K);
    for (let i = 0; i < ha.length; i++) ha[i] = f16Bits(vals[(i * 7 + (i >> 9)) % 5]!);
    for (let i = 0; i < hb.length; i++) hb[i] = f16Bits(vals[(i * 3 + (i >> 7)) % 5]!);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const A = device.createBuffer({ size: ha.byteLength, usage });
    const B = device.createBuffer({ size: hb.byteLength, usage });
    const C = device.createBuffer({ size: M * N * 4, usage });
    device.queue.writeBuffer(A, 0, ha);
    device.queue.writeBuffer(B, 0, hb);
    const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [A, B, C].map((buffer, binding) => ({ binding, resource: { buffer } })) });
    const BM = 16 * p.SGR * p.FR;
    const BN = 16 * p.SGC * p.FC;
    const dispatch = (times: number) => {
      const enc = device.createCommandEncoder();
      for (let i = 0; i < times; i++) {
        const pass = enc.beginComputePass();
        pass.setPipeline(pipe);
        pass.setBindGroup(0, bg);
        pass.dispatchWorkgroups(N / BN, M / BM);
        pass.end();
      }
      device.queue.submit([enc.finish()]);
    };
    dispatch(1);
    await device.queue.onSubmittedWorkDone();
    if (errors.length) throw new Error(`GPU error: ${errors.join(' | ')}`);
    if (!timed) {
      const rb = device.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(C, 0, rb, 0, M * N * 4);
      device.queue.submit([enc.finish()]);
      await rb.mapAsync(GPUMapMode.READ);
      const got = new Float32Array(rb.getMappedRange().slice(0));
      const dec = (h: number) => (h === 0 ? 0 : (h & 0x8000 ? -1 : 1) * 2 ** (((h >> 10) & 31) - 15) * (1 + (h & 1023) / 1024));
      let bad = 0;
      let checked = 0;
      for (let t = 0; t < 4096; t++) {
        const i = (t * 7919) % M;
        const j = (t * 104729 + 13) % N;
        let s = 0;
        for (let k = 0; k < K; k++) s += dec(ha[i * K + k]!) * dec(hb[j * K + k]!);
        checked++;
        if (got[i * N + j] !== s) bad++;
      }
      console.log(`[${name}] n=${n} ran; ${p.compileOnly ? 'results not meaningful (by design)' : bad ? `WRONG: ${bad}/${checked} sampled entries differ` : `exact on ${checked} sampled entries`}`);
      return;
    }
    const iters = 10;
    const t1 = performance.now();
    dispatch(iters);
    await device.queue.onSubmittedWorkDone();
    const ms = (performance.now() - t1) / iters;
    console.log(`[${name}] n=${n} ${ms.toFixed(2)} ms = ${((2 * M * N * K) / ms / 1e9).toFixed(1)} TFLOP/s (wall clock over ${iters} dispatches in one submit)`);
  };
  await run(1024, false);
  if (process.argv[3] === 'time' && !p.compileOnly) await run(8192, true);
  device.destroy();
  process.exit(0);
}

await main();
