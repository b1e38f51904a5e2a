import { uniformStruct } from '@attnkit/tensor';
import { UFIELDS } from './kernel.js';
import { TILE_GROUP_WGSL } from './window-wgsl.js';

/**
 * The opening of every subgroup-matrix neighborhood kernel: the extensions, the f16 Q, K,
 * V and output bindings, and the kernel uniform (the plain kernel's fields).
 */
export const SG_HEADER_WGSL = `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, subgroup_uniformity);
@group(0) @binding(0) var<storage, read> qb: array<f16>;
@group(0) @binding(1) var<storage, read> kb: array<f16>;
@group(0) @binding(2) var<storage, read> vb: array<f16>;
@group(0) @binding(3) var<storage, read_write> ob: array<f16>;
@group(0) @binding(4) var<uniform> u: U;
${uniformStruct('U', UFIELDS)}`;

/**
 * The entry point of a subgroup-matrix neighborhood kernel with `wgSize` invocations up to
 * its tile: (batch, head) from wid.z, the tile index `tile` (clamped into `T`, `live` when in
 * range) and the tile's dilation group and axis coordinates (TILE_GROUP_WGSL).
 */
export function sgEntryWgsl(wgSize: number, tile: string, tileExpr: string): string {
  return `@compute @workgroup_size(${wgSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let bh = wid.z;
  let h = bh % u.H;
  let b = bh / u.H;
  let kvh = h / (u.H / u.Hkv);
  let ${tile} = ${tileExpr};
  let live = ${tile} < u.tilesX;
  let T = min(${tile}, u.tilesX - 1u);
  let Lv = vec3<u32>(u.L0, u.L1, u.L2);
${TILE_GROUP_WGSL}`;
}
