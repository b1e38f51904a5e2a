import type { DType } from '../dtype.js';

// Small WGSL builders shared by kernels. All tensors are bound as array<u32> in the
// generic kernels, so one code path reads every dtype (f16 and i8/u8 packed in words),
// and f16 storage works even where the adapter lacks shader-f16.

/** `fn load_<name>(i: u32) -> f32` reading element i of a packed buffer. */
export function floatLoader(name: string, dtype: DType): string {
  const body: Record<DType, string> = {
    f32: `return bitcast<f32>(${name}[i]);`,
    f16: `return unpack2x16float(${name}[i >> 1u])[i & 1u];`,
    i8: `return f32(extractBits(bitcast<i32>(${name}[i >> 2u]), (i & 3u) * 8u, 8u));`,
    u8: `return f32(extractBits(${name}[i >> 2u], (i & 3u) * 8u, 8u));`,
    i32: `return f32(bitcast<i32>(${name}[i]));`,
    u32: `return f32(${name}[i]);`,
  };
  return `fn load_${name}(i: u32) -> f32 { ${body[dtype]} }`;
}

/** Elements of a dtype held by one 32-bit word. */
export function perWord(dtype: DType): number {
  return dtype === 'f16' ? 2 : dtype === 'i8' || dtype === 'u8' ? 4 : 1;
}

/**
 * WGSL statements packing `vals[0..per)` (f32 values named v0..v3) into one output word
 * for `dtype`, assigned to `word`.
 */
export function packWord(dtype: DType, names: string[]): string {
  switch (dtype) {
    case 'f32': return `bitcast<u32>(${names[0]})`;
    case 'f16': return `pack2x16float(vec2<f32>(${names[0]}, ${names[1]}))`;
    case 'i32': return `bitcast<u32>(i32(${names[0]}))`;
    case 'u32': return `u32(${names[0]})`;
    case 'i8': return names.map((n, k) => `((bitcast<u32>(i32(${n})) & 0xffu) << ${k * 8}u)`).join(' | ');
    case 'u8': return names.map((n, k) => `((u32(${n}) & 0xffu) << ${k * 8}u)`).join(' | ');
  }
}

/** Linear workgroup index for grids folded by gridFor(). */
export const LINEAR_GROUP = `fn linear_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }`;

export function bindings(inputs: string[], outputs: string[], uniformType?: string): string {
  const lines: string[] = [];
  let b = 0;
  for (const n of inputs) lines.push(`@group(0) @binding(${b++}) var<storage, read> ${n}: array<u32>;`);
  for (const n of outputs) lines.push(`@group(0) @binding(${b++}) var<storage, read_write> ${n}: array<u32>;`);
  if (uniformType) lines.push(`@group(0) @binding(${b++}) var<uniform> u: ${uniformType};`);
  return lines.join('\n');
}

/** Float dtypes the vec4 helpers below handle. */
export type FloatDType = 'f32' | 'f16';

// Vec4 I/O for kernels that move four elements at a time (attention, neighborhood, PARO):
// f32 is bound as array<vec4<f32>>, f16 as array<vec2<u32>> (four halves) and unpacked with
// unpack2x16float, so the f16 path needs no shader-f16. Callers guarantee the last dim is a
// multiple of 4; buffers are padded to 16 bytes by the backend, so every access is aligned.

export function vecBinding(binding: number, name: string, dtype: FloatDType, write: boolean): string {
  const access = write ? 'read_write' : 'read';
  const elem = dtype === 'f32' ? 'vec4<f32>' : 'vec2<u32>';
  return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<${elem}>;`;
}

/** `fn ld_<name>(i4: u32) -> vec4<f32>`: the i4-th group of four elements. */
export function vecLoader(name: string, dtype: FloatDType): string {
  if (dtype === 'f32') return `fn ld_${name}(i4: u32) -> vec4<f32> { return ${name}[i4]; }`;
  return `fn ld_${name}(i4: u32) -> vec4<f32> { let w = ${name}[i4]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }`;
}

/** `fn st_<name>(i4: u32, x: vec4<f32>)`. */
export function vecStorer(name: string, dtype: FloatDType): string {
  if (dtype === 'f32') return `fn st_${name}(i4: u32, x: vec4<f32>) { ${name}[i4] = x; }`;
  return `fn st_${name}(i4: u32, x: vec4<f32>) { ${name}[i4] = vec2<u32>(pack2x16float(x.xy), pack2x16float(x.zw)); }`;
}
