import type { MatmulParams } from '../../backend.js';
import { packUniforms, uniformStruct } from '../program.js';

/** The uniform block every matmul variant reads: sizes and per-batch element strides (0 = broadcast). */
export const MATMUL_UNIFORM = uniformStruct('U', [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['strideA', 'u32'], ['strideB', 'u32']]);

export function matmulUniforms(p: MatmulParams): ArrayBuffer {
  return packUniforms([
    ['u32', p.M], ['u32', p.N], ['u32', p.K],
    ['u32', p.batchA === 1 ? 0 : p.M * p.K],
    ['u32', p.batchB === 1 ? 0 : p.K * p.N],
  ]);
}
