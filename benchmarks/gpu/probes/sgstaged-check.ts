// Checks the staged subgroup-matrix matmul in every transpose and with a batch against the
// float64 CPU backend (lavapipe has no subgroup matrices, so this runs on the H200 only).
//   node .gpu/sgstaged-check.mjs --out DIR
import { CpuBackend, createBackend, matmul, matmulParams, matmulWith, parseMatmulVariant, random, WebGpuBackend, type Backend } from '@attnkit/tensor';
import { writeFileSync } from 'node:fs';

const FLAGS = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness,disable_workgroup_init'];
const be = await createBackend({ backend: 'webgpu', dawnFlags: FLAGS });
if (!(be instanceof WebGpuBackend)) throw new Error('sgstaged-check: needs WebGPU');
const cpu = new CpuBackend();
const rows: Array<Record<string, unknown>> = [];
const [M, K, N, B] = [256, 384, 512, 2];
for (const spec of ['sgstaged', 'sgstaged:2,2,4,4,32,8,1,0', 'sgstaged:4,4,2,2,32,8,1,1']) {
  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    const make = (b: Backend) => [
      random(b, [B, ...(transA ? [K, M] : [M, K])], { seed: 1, dtype: 'f16' }),
      random(b, [B, ...(transB ? [N, K] : [K, N])], { seed: 2, dtype: 'f16' }),
    ] as const;
    const [ca, cb] = make(cpu);
    const want = (await matmul(ca, cb, { transA, transB }).toArray()) as Float32Array;
    const [a, b] = make(be);
    let err: number | string;
    try {
      const got = (await matmulWith(be, a, b, matmulParams(a, b, { transA, transB }), parseMatmulVariant(spec)).toArray()) as Float32Array;
      err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
    } catch (e) {
      err = `failed: ${(e as Error).message.slice(0, 200)}`;
    }
    rows.push({ spec, transA, transB, shape: `${B}x${M}x${K}x${N}`, maxAbsErr: err });
    console.log(`${spec} transA=${transA} transB=${transB}: ${err}`);
  }
}
const outAt = process.argv.indexOf('--out');
writeFileSync(`${outAt > 0 ? process.argv[outAt + 1] : '.'}/sgstaged-check.json`, JSON.stringify({ device: be.name, rows }, null, 2) + '\n');
be.destroy();
