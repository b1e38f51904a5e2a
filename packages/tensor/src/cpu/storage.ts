import { allocStorage, type DType, type StorageArray } from '../dtype.js';
import { f16BitsToF32, f32ToF16Bits } from '../f16.js';
import type { Tensor } from '../tensor.js';

/** Reads any tensor's values as float64 numbers (f16 decoded). */
export function values(t: Tensor, op: string): Float64Array {
  const raw = t.handle(op) as StorageArray;
  const out = new Float64Array(raw.length);
  if (t.dtype === 'f16') for (let i = 0; i < raw.length; i++) out[i] = f16BitsToF32(raw[i]!);
  else for (let i = 0; i < raw.length; i++) out[i] = raw[i]!;
  return out;
}

/** Encodes numbers into storage of a dtype, with the dtype's rounding. */
export function encode(dtype: DType, v: ArrayLike<number>): StorageArray {
  const out = allocStorage(dtype, v.length);
  if (dtype === 'f16') {
    for (let i = 0; i < v.length; i++) out[i] = f32ToF16Bits(v[i]!);
  } else if (dtype === 'i32' || dtype === 'u32' || dtype === 'i8' || dtype === 'u8') {
    for (let i = 0; i < v.length; i++) out[i] = Math.trunc(v[i]!);
  } else {
    out.set(v as ArrayLike<number>);
  }
  return out;
}
