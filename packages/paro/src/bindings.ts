import { vecBinding, type FloatDType } from '@attnkit/tensor';

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
