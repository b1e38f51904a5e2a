/** Element types a Tensor can hold. f16 is stored as raw IEEE half bits. */
export type DType = 'f32' | 'f16' | 'i8' | 'u8' | 'i32' | 'u32';

export const DTYPES: readonly DType[] = ['f32', 'f16', 'i8', 'u8', 'i32', 'u32'];

export const BYTES_PER_ELEMENT: Record<DType, number> = {
  f32: 4, f16: 2, i8: 1, u8: 1, i32: 4, u32: 4,
};

/** Raw storage array for each dtype (f16 keeps its 16-bit pattern in a Uint16Array). */
export type StorageArray = Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array | Uint32Array;

/** What `toArray()` hands back: f16 is widened to Float32Array because Node 20 has no Float16Array. */
export type ValueArray = Float32Array | Int8Array | Uint8Array | Int32Array | Uint32Array;

export function isFloat(d: DType): boolean {
  return d === 'f32' || d === 'f16';
}

export function allocStorage(dtype: DType, n: number): StorageArray {
  switch (dtype) {
    case 'f32': return new Float32Array(n);
    case 'f16': return new Uint16Array(n);
    case 'i8': return new Int8Array(n);
    case 'u8': return new Uint8Array(n);
    case 'i32': return new Int32Array(n);
    case 'u32': return new Uint32Array(n);
  }
}

/** Storage view over bytes (used when reading back GPU buffers). */
export function storageFromBytes(dtype: DType, bytes: ArrayBuffer, n: number): StorageArray {
  switch (dtype) {
    case 'f32': return new Float32Array(bytes, 0, n);
    case 'f16': return new Uint16Array(bytes, 0, n);
    case 'i8': return new Int8Array(bytes, 0, n);
    case 'u8': return new Uint8Array(bytes, 0, n);
    case 'i32': return new Int32Array(bytes, 0, n);
    case 'u32': return new Uint32Array(bytes, 0, n);
  }
}
