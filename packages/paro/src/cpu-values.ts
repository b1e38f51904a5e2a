import { f16BitsToF32, type StorageArray, type Tensor } from '@attnkit/tensor';

/** A CPU-backend tensor's values as float64 (f16 decoded); synchronous, no copy through read(). */
export function cpuValues(t: Tensor, op: string): Float64Array {
  const raw = t.handle(op) as StorageArray;
  const out = new Float64Array(t.size);
  if (t.dtype === 'f16') for (let i = 0; i < t.size; i++) out[i] = f16BitsToF32(raw[i]!);
  else for (let i = 0; i < t.size; i++) out[i] = raw[i]!;
  return out;
}
