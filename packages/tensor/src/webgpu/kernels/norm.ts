import { AttnkitError } from '../../errors.js';
// TODO(helper): GPU kernels.
export function runRmsnorm(..._args: unknown[]): never { throw new AttnkitError('runRmsnorm: not implemented on WebGPU yet'); }
export function runLayernorm(..._args: unknown[]): never { throw new AttnkitError('runLayernorm: not implemented on WebGPU yet'); }
