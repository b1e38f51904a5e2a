// WGSL validity of every subgroup-matrix variant the H200 probe sweeps, on Dawn's null
// backend (it offers subgroup matrices, which lavapipe lacks, and runs Tint's full
// validation: types, uniformity, builtins; it computes nothing). Each case compiles in its
// own child process: Dawn's null backend crashed intermittently after several of these
// modules in one process (also inside a vitest worker), which is why this is a script and
// not a *.test.ts file.
//   node --conditions=@attnkit/source --import tsx packages/neighborhood/test/wgsl-check.ts
import { spawnSync } from 'node:child_process';
import { create, globals } from 'webgpu';
import { sgProgram, type SgConfig, type SgShape } from '../src/index.js';

const base: SgConfig = { sub: [1, 4, 4], chunkBlocks: 16, subgroups: 1, sDtype: 'f16', oDtype: 'f16' };
const S2: SgShape = { D: 64, k: [1, 13, 13] };
const S3: SgShape = { D: 64, k: [7, 7, 7] };
const CASES: Array<[SgConfig, SgShape]> = [
  [base, S2],
  [{ ...base, subgroups: 2 }, S2],
  [{ ...base, oDtype: 'f32' }, S2],
  [{ ...base, sDtype: 'f32', oDtype: 'f32' }, S2],
  [{ ...base, sDtype: 'f32', oDtype: 'f32', chunkBlocks: 8, subgroups: 2 }, S2],
  [{ ...base, pad: false }, S2],
  [{ ...base, unroll: true, subgroups: 2 }, S2],
  [{ ...base, stack: 2 }, S2],
  [{ ...base, stack: 2, oDtype: 'f32' }, S2],
  [{ ...base, stack: 4 }, S2],
  [{ ...base, share: true, subgroups: 4 }, S2],
  [{ ...base, share: true, subgroups: 2, oDtype: 'f32', stageBlocks: 8 }, S2],
  [{ ...base, share: true, subgroups: 4, stageBlocks: 2 }, { D: 32, k: [1, 5, 7] }],
  [{ ...base, sub: [2, 2, 4], oDtype: 'f32' }, S3],
  [{ ...base, sub: [2, 2, 4], sDtype: 'f32', oDtype: 'f32', chunkBlocks: 8, subgroups: 4 }, S3],
  [{ ...base, sub: [1, 2, 8], oDtype: 'f32', unroll: true }, S3],
  [{ ...base, sub: [1, 1, 16], oDtype: 'f32' }, { D: 32, k: [1, 1, 13] }],
  [{ ...base, subgroups: 4 }, S2],
  [{ ...base, oDtype: 'f32', pad: false }, S2],
  [{ ...base, share: true, subgroups: 2 }, S2],
  [{ ...base, sub: [2, 2, 4], oDtype: 'f32', subgroups: 4 }, S3],
  [{ ...base, sub: [2, 2, 4], oDtype: 'f32', subgroups: 4, chunkBlocks: 8 }, S3],
  [{ ...base, sub: [2, 2, 4], sDtype: 'f32', oDtype: 'f32', subgroups: 2 }, S3],
  [{ ...base, share: true, subgroups: 4 }, { D: 32, k: [1, 9, 7] }],
  [{ ...base, share: true, subgroups: 2, oDtype: 'f32', stageBlocks: 8 }, { D: 32, k: [1, 5, 7] }],
  [{ ...base, share: true, subgroups: 2, oDtype: 'f32', stageBlocks: 4 }, S2],
  [{ ...base, sub: [2, 2, 4], oDtype: 'f32', subgroups: 2, chunkBlocks: 8 }, S3],
  [{ ...base, sub: [1, 2, 8], oDtype: 'f32' }, S3],
  [{ ...base, oDtype: 'f32', chunkBlocks: 16 }, { D: 32, k: [1, 17, 17] }],
  [{ ...base, oDtype: 'f32', pad: false, unrollRows: true }, S2],
  [{ ...base, oDtype: 'f32', pad: false, unroll: true }, S2],
  [{ ...base, oDtype: 'f32', pad: false, ablate: 'nos' }, S2],
  [{ ...base, oDtype: 'f32', pad: false, ablate: 'nosoftmax' }, S2],
  [{ ...base, oDtype: 'f32', pad: false, ablate: 'nopv' }, S2],
  [{ ...base, oDtype: 'f32', pad: false, ablate: 'io' }, S2],
  [{ ...base, sub: [2, 2, 4], oDtype: 'f32', pad: false, ablate: 'io' }, S3],
  [{ ...base, sub: [2, 2, 4], oDtype: 'f32', pad: false, chunkBlocks: 8, subgroups: 2 }, S3],
];

const which = process.argv[2];
if (which === undefined) {
  let bad = 0;
  for (let i = 0; i < CASES.length; i++) {
    const key = sgProgram(...CASES[i]!).key;
    let verdict = '';
    for (let attempt = 0; attempt < 3 && !verdict.startsWith('ok') && !verdict.startsWith('INVALID'); attempt++) {
      const r = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, String(i)], { encoding: 'utf8', timeout: 60_000 });
      const line = r.stdout.split('\n').find((l) => l.startsWith('ok') || l.startsWith('INVALID'));
      verdict = line ?? `crashed (status ${r.status}, signal ${r.signal})`;
    }
    if (!verdict.startsWith('ok')) bad++;
    console.log(`${key}: ${verdict}`);
  }
  console.log(bad ? `${bad} of ${CASES.length} variants are not valid WGSL` : `all ${CASES.length} variants are valid WGSL`);
  process.exit(bad ? 1 : 0);
}

Object.assign(globalThis, globals);
const adapter = await create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
const want = ['chromium-experimental-subgroup-matrix', 'subgroups', 'shader-f16'] as GPUFeatureName[];
if (!adapter || !want.every((f) => adapter.features.has(f))) throw new Error('Dawn null backend without subgroup matrices');
const device = await adapter.requestDevice({ requiredFeatures: want, requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize } });
const module = device.createShaderModule({ code: sgProgram(...CASES[Number(which)]!).source() });
const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
console.log(errors.length ? `INVALID ${errors.join(' | ')}` : 'ok');
process.exit(0);
