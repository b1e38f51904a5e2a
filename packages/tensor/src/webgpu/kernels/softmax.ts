import { AttnkitError } from '../../errors.js';
// TODO(helper): GPU kernels.
export function runSoftmax(..._args: unknown[]): never { throw new AttnkitError('runSoftmax: not implemented on WebGPU yet'); }
