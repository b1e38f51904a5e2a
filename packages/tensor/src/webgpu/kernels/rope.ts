import { AttnkitError } from '../../errors.js';
// TODO(helper): GPU kernels.
export function runRope(..._args: unknown[]): never { throw new AttnkitError('runRope: not implemented on WebGPU yet'); }
