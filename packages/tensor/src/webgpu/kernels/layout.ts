import { AttnkitError } from '../../errors.js';
// TODO(helper): GPU kernels.
export function runPermute(..._args: unknown[]): never { throw new AttnkitError('runPermute: not implemented on WebGPU yet'); }
export function runSlice(..._args: unknown[]): never { throw new AttnkitError('runSlice: not implemented on WebGPU yet'); }
export function runConcat(..._args: unknown[]): never { throw new AttnkitError('runConcat: not implemented on WebGPU yet'); }
export function runGatherRows(..._args: unknown[]): never { throw new AttnkitError('runGatherRows: not implemented on WebGPU yet'); }
