import { ArgumentError, type Tensor, type WebGpuBackend } from '@attnkit/tensor';
import type { Problem } from '../problem.js';

export function sgPrefillSupported(be: WebGpuBackend, p: Problem, explain = false): boolean {
  if (explain) throw new ArgumentError(p.op, 'prefill path', 'an adapter with f16 subgroup-matrix configs', `none on ${be.name}`);
  return false;
}

export function runSgPrefill(be: WebGpuBackend, p: Problem, _q: Tensor, _k: Tensor, _v: Tensor): { out: Tensor; lse: Tensor } {
  throw new ArgumentError(p.op, 'prefill path', 'subgroup-matrix support', be.name);
}
