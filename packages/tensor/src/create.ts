import type { Backend } from './backend.js';
import { allocStorage, type DType, type StorageArray } from './dtype.js';
import { ArgumentError, ShapeError } from './errors.js';
import { encodeF16 } from './f16.js';
import { normalArray, uniformArray } from './random.js';
import { checkShape, sizeOf, type Shape } from './shape.js';
import type { Tensor } from './tensor.js';

/**
 * Makes a tensor from values. Float dtypes take numbers (f16 is rounded to nearest even);
 * integer dtypes take integers in range; a typed array of the dtype's storage type is
 * used as is (a Uint16Array for f16 is taken as raw half bits).
 */
export function tensor(backend: Backend, data: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): Tensor {
  checkShape('tensor', 'shape', shape);
  if (data.length !== sizeOf(shape)) {
    throw new ShapeError('tensor', 'data', `${sizeOf(shape)} values for shape [${shape.join(', ')}]`, `${data.length} values`);
  }
  return backend.fromStorage(dtype, shape, toStorage(dtype, data));
}

const INT_RANGE: Record<Exclude<DType, 'f32' | 'f16'>, [number, number]> = {
  i8: [-128, 127],
  u8: [0, 255],
  i32: [-(2 ** 31), 2 ** 31 - 1],
  u32: [0, 2 ** 32 - 1],
};

export function toStorage(dtype: DType, data: ArrayLike<number>): StorageArray {
  if (dtype === 'f16') return data instanceof Uint16Array ? data : encodeF16(data);
  const out = allocStorage(dtype, data.length);
  if (dtype !== 'f32') {
    // Typed arrays wrap out-of-range integers silently (300 becomes 44 in an Int8Array).
    const [lo, hi] = INT_RANGE[dtype];
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      if (!Number.isInteger(v) || v < lo || v > hi) throw new ArgumentError('tensor', `data[${i}]`, `an integer in [${lo}, ${hi}] for dtype ${dtype}`, v);
    }
  }
  out.set(data as ArrayLike<number>);
  return out;
}

export function zeros(backend: Backend, shape: Shape, dtype: DType = 'f32'): Tensor {
  checkShape('zeros', 'shape', shape);
  return backend.zeros(dtype, shape);
}

export interface RandomOptions {
  seed?: number;
  dtype?: 'f32' | 'f16';
  distribution?: 'uniform' | 'normal';
  /** uniform: [lo, hi); normal: mean 0 and `std`. */
  lo?: number;
  hi?: number;
  std?: number;
}

/** Seeded random tensor; the same seed gives the same values on every backend. */
export function random(backend: Backend, shape: Shape, opts: RandomOptions = {}): Tensor {
  checkShape('random', 'shape', shape);
  const n = sizeOf(shape);
  const seed = opts.seed ?? 0;
  const values = opts.distribution === 'normal' ? normalArray(n, seed, opts.std ?? 1) : uniformArray(n, seed, opts.lo ?? -1, opts.hi ?? 1);
  return tensor(backend, values, shape, opts.dtype ?? 'f32');
}
