import { AttnkitError } from '../../errors.js';
// TODO(helper): GPU kernels.
export function runArgmax(..._args: unknown[]): never { throw new AttnkitError('runArgmax: not implemented on WebGPU yet'); }
export function runTopk(..._args: unknown[]): never { throw new AttnkitError('runTopk: not implemented on WebGPU yet'); }
