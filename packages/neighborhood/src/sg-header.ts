import { uniformStruct } from '@attnkit/tensor';
import { UFIELDS } from './kernel.js';

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
