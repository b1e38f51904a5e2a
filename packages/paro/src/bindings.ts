import { packUniforms, uniformStruct, vecBinding, type FloatDType } from '@attnkit/tensor';

/**
 * The bindings every sparse PARO kernel ends with, after its own operands: the block lists
 * (absent when dense), the per-head order (when the order is fused in), the output and the
 * uniform block. Appends them to `lines` from binding `first` on; returns how many bindings
 * are inputs (the Program's `inputs`).
 */
export function appendSparseTail(lines: string[], first: number, dense: boolean, gathered: boolean, outDtype: FloatDType): number {
  let b = first;
  if (!dense) {
    lines.push(`@group(0) @binding(${b++}) var<storage, read> counts: array<u32>;`);
    lines.push(`@group(0) @binding(${b++}) var<storage, read> lists: array<u32>;`);
  }
  if (gathered) lines.push(`@group(0) @binding(${b++}) var<storage, read> perm: array<u32>;`);
  const inputs = b;
  lines.push(vecBinding(b++, 'ob', outDtype, true));
  lines.push(`@group(0) @binding(${b++}) var<uniform> u: U;`);
  return inputs;
}

/** The uniform every sparse kernel reads: heads, KV heads, tokens, 64-token blocks, and the softmax scale in log2 units. */
const SPARSE_FIELDS = [['H', 'u32'], ['Hkv', 'u32'], ['N', 'u32'], ['nB', 'u32'], ['scale', 'f32']] as const;

/** WGSL: the sparse kernels' uniform struct `U`. */
export const SPARSE_UNIFORM_WGSL = uniformStruct('U', SPARSE_FIELDS);

/** The host side of SPARSE_UNIFORM_WGSL. */
export function sparseUniforms(v: Record<(typeof SPARSE_FIELDS)[number][0], number>): ArrayBuffer {
  return packUniforms(SPARSE_FIELDS.map(([name, type]) => [type, v[name]] as const));
}
