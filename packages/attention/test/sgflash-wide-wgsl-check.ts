// Validates the WGSL of one wide (or, with argv[3] = 'pingpong', ping-pong) subgroup-matrix
// prefill variant (JSON in argv[2]) on
// Dawn's null backend, which runs Tint's full front end (types, uniformity, builtins) and
// nothing else; prints one line `WGSL-CHECK ["error ..."]`. One module per process: several
// subgroup-matrix modules in one process aborted Dawn now and then (see wgsl-check.ts).
import { create, globals } from 'webgpu';
import { sgPingPongSource, type SgPingPongVariant } from '../src/webgpu/sgflash-pingpong.js';
import { sgWideSource, type SgWideVariant } from '../src/webgpu/sgflash-wide.js';

Object.assign(globalThis, globals);
const adapter = await create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
const want = ['chromium-experimental-subgroup-matrix', 'subgroups', 'shader-f16'] as GPUFeatureName[];
if (!adapter || !want.every((f) => adapter.features.has(f))) {
  console.log(`WGSL-CHECK ${JSON.stringify(['error: the null adapter offers no subgroup matrices'])}`);
  process.exit(0);
}
const device = await adapter.requestDevice({ requiredFeatures: want });
const variant = JSON.parse(process.argv[2]!) as unknown;
const code = process.argv[3] === 'pingpong' ? sgPingPongSource(variant as SgPingPongVariant) : sgWideSource(variant as SgWideVariant);
const module = device.createShaderModule({ code });
const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error').map((m) => `error ${m.lineNum}:${m.linePos} ${m.message}`);
console.log(`WGSL-CHECK ${JSON.stringify(errors)}`);
process.exit(0);
