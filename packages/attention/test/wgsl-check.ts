// Validates the WGSL of tiled subgroup-matrix prefill variants on Dawn's null backend
// (Tint's full front end; nothing is run). Reads the variants as JSON from argv[2] and
// prints one JSON line: the error messages per variant. sgflash-wgsl.test.ts runs it once
// per variant, each in its own process: several subgroup-matrix modules in one process
// aborted Dawn ("std::system_error: Invalid argument" / "The futex facility returned an
// unexpected error code", the crash shared/gpu/README.md describes), one per process never did.
import { create, globals } from 'webgpu';
import { sgFlashSource, type SgFlashVariant } from '../src/webgpu/sgflash.js';

Object.assign(globalThis, globals);
const adapter = await create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
const want = ['chromium-experimental-subgroup-matrix', 'subgroups', 'shader-f16'] as GPUFeatureName[];
if (!adapter || !want.every((f) => adapter.features.has(f))) {
  console.log(JSON.stringify({ error: 'the null adapter offers no subgroup matrices' }));
  process.exit(0);
}
const device = await adapter.requestDevice({ requiredFeatures: want });
const variants = JSON.parse(process.argv[2]!) as SgFlashVariant[];
const errors: string[][] = [];
for (const v of variants) {
  const module = device.createShaderModule({ code: sgFlashSource(v) });
  errors.push((await module.getCompilationInfo()).messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`));
}
console.log(`WGSL-CHECK ${JSON.stringify({ errors })}`);
process.exit(0);
