/**
 * Rewrites a subgroup-matrix kernel so it runs on adapters without subgroup matrices
 * (lavapipe): every lane holds a whole 16x16 matrix as array<f32, 256>, loads and stores
 * it whole and multiplies it whole. All lanes of a "subgroup" then hold identical copies,
 * so the data flow is exactly the kernel's; only its speed is not. Subgroups become
 * 32-invocation slices of the workgroup (lavapipe's real subgroups are 8 wide, which keeps
 * the kernel's pairwise lane shuffles inside one real subgroup), and the rescale vote
 * (subgroupAny) always says yes, so the rescale path runs on every tile. The 16-step loops
 * take their bound from the uniform buffer `u` (always 16 at run time) so that llvmpipe
 * does not unroll 4096-step multiplies at every call site (that made compiles take minutes).
 */
export function emulateSubgroupMatrices(src: string): string {
  const loads = new Set<string>();
  const stores = new Set<string>();
  let out = src
    .replace('enable chromium_experimental_subgroup_matrix;\n', '')
    .replace(/subgroupMatrixLoad<subgroup_matrix_\w+<[^>]*>>\(&(\w+), /g, (_, n: string) => { loads.add(n); return `sml_load_${n}(`; })
    .replace(/subgroupMatrixStore\(&(\w+), /g, (_, n: string) => { stores.add(n); return `sml_store_${n}(`; })
    .replace(/subgroupMatrixMultiply<f32>\(/g, 'sml_mul(')
    .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'sml_mma(')
    .replace(/subgroup_matrix_(left|right|result)<[^>]*>/g, 'array<f32, 256>')
    .replace(/subgroupAny\(\w+\)/g, 'true');
  const sig = ', @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32';
  if (!out.includes(sig)) throw new Error('emulateSubgroupMatrices: unexpected entry point signature');
  out = out.replace(sig, '');
  const at = out.indexOf('{', out.indexOf('fn main('));
  out = `${out.slice(0, at + 1)}\n  let sg = lid / 32u;\n  let lane = lid % 32u;${out.slice(at + 1)}`;
  const elem = (n: string) => new RegExp(`var<(?:storage, read(?:_write)?|workgroup)> ${n}: array<(\\w+)`).exec(src)?.[1] ?? 'f32';
  const N = 'select(16u, 15u, u.B == 0xffffffffu)';
  const helpers = [
    `fn sml_mul(a: array<f32, 256>, b: array<f32, 256>) -> array<f32, 256> {
  var c: array<f32, 256>;
  return sml_mma(a, b, c);
}
fn sml_mma(a: array<f32, 256>, b: array<f32, 256>, c0: array<f32, 256>) -> array<f32, 256> {
  var c = c0;
  let n16 = ${N};
  for (var m = 0u; m < n16; m++) { for (var n = 0u; n < n16; n++) {
    var s = c[m * 16u + n];
    for (var k = 0u; k < n16; k++) { s += a[m * 16u + k] * b[k * 16u + n]; }
    c[m * 16u + n] = s;
  } }
  return c;
}`,
    ...[...loads].map((n) => `fn sml_load_${n}(off: u32, cm: bool, stride: u32) -> array<f32, 256> {
  var x: array<f32, 256>;
  let n16 = ${N};
  for (var r = 0u; r < n16; r++) { for (var c = 0u; c < n16; c++) { x[r * 16u + c] = f32(${n}[off + select(r * stride + c, c * stride + r, cm)]); } }
  return x;
}`),
    ...[...stores].map((n) => `fn sml_store_${n}(off: u32, x: array<f32, 256>, cm: bool, stride: u32) {
  let n16 = ${N};
  for (var r = 0u; r < n16; r++) { for (var c = 0u; c < n16; c++) { ${n}[off + select(r * stride + c, c * stride + r, cm)] = ${elem(n)}(x[r * 16u + c]); } }
}`),
  ];
  return `${out}\n${helpers.join('\n')}\n`;
}
