import { AttnkitError } from '../../errors.js';
// TODO(helper): GPU kernels.
export function runQuantizeInt8(..._args: unknown[]): never { throw new AttnkitError('runQuantizeInt8: not implemented on WebGPU yet'); }
export function runDequantizeInt8(..._args: unknown[]): never { throw new AttnkitError('runDequantizeInt8: not implemented on WebGPU yet'); }
