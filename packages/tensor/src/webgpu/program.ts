/**
 * A GPU kernel as a small object: a cache key, a WGSL source built by a TypeScript
 * function, and its binding layout. Pipelines are cached by key, so a kernel's WGSL is
 * generated and compiled once per distinct key.
 *
 * Binding order (group 0): inputs (read-only storage) 0..inputs-1, then outputs
 * (read_write storage), then the uniform buffer if `uniform` is set.
 */
export interface Program {
  key: string;
  source(): string;
  inputs: number;
  outputs: number;
  uniform: boolean;
}

export interface Dispatch {
  program: Program;
  inputs: GPUBuffer[];
  outputs: GPUBuffer[];
  uniforms?: ArrayBuffer;
  /** Workgroup counts; x may exceed 65535 and is then folded into y by gridFor(). */
  grid: [number, number, number];
}

export const MAX_GROUPS_PER_DIM = 65535;

/**
 * Splits a 1-D workgroup count into an x*y grid within the per-dimension limit. Kernels
 * recover the linear index with `linearGroup()` from wgsl.ts.
 */
export function gridFor(groups: number): [number, number, number] {
  if (groups <= MAX_GROUPS_PER_DIM) return [Math.max(groups, 1), 1, 1];
  const y = Math.ceil(groups / MAX_GROUPS_PER_DIM);
  return [Math.ceil(groups / y), y, 1];
}

/** Packs scalars into a uniform buffer image: each 4 bytes, struct padded to 16 bytes. */
export function packUniforms(fields: ReadonlyArray<readonly ['u32' | 'i32' | 'f32', number]>): ArrayBuffer {
  const buf = new ArrayBuffer(Math.max(16, Math.ceil((fields.length * 4) / 16) * 16));
  const dv = new DataView(buf);
  fields.forEach(([t, v], i) => {
    if (t === 'f32') dv.setFloat32(i * 4, v, true);
    else if (t === 'i32') dv.setInt32(i * 4, v, true);
    else dv.setUint32(i * 4, v >>> 0, true);
  });
  return buf;
}

/** The WGSL struct that matches packUniforms for the same field list. */
export function uniformStruct(name: string, fields: ReadonlyArray<readonly [string, 'u32' | 'i32' | 'f32']>): string {
  const pad = (4 - (fields.length % 4)) % 4;
  const padFields = Array.from({ length: pad }, (_, i) => `_pad${i}: u32,`);
  return `struct ${name} {\n${fields.map(([n, t]) => `  ${n}: ${t},`).concat(padFields).join('\n')}\n}`;
}
