/**
 * Vector I/O helpers for the attention kernels: f32 tensors are bound as array<vec4<f32>>,
 * f16 tensors as array<vec2<u32>> (four halves) and unpacked with unpack2x16float, so the
 * f16 path needs no shader-f16 feature. Buffers are padded to 16 bytes by the backend and
 * the head dim is a multiple of 4, so every vec4 access is in bounds and aligned.
 */
export type FloatDType = 'f32' | 'f16';

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
