/**
 * NATTEN's window placement in WGSL, shared by every neighborhood kernel (the plain one and
 * the subgroup-matrix ones): the size of a dilation group along an axis, and the first and
 * last in-group key index of a query's window: causal windows end at the query, others are
 * centred and clamped inward, clamp(i - floor(k/2), 0, Lg - k). `window.ts` is the same
 * rule on the host.
 */
export const WINDOW_WGSL = `fn group_len(L: u32, d: u32, g: u32) -> i32 { return i32(L / d + select(0u, 1u, g < L % d)); }
fn win_start(i: i32, lg: i32, k: i32, causal: bool) -> i32 {
  if (causal) { return max(0, i - k + 1); }
  return clamp(i - k / 2, 0, lg - k);
}
fn win_end(i: i32, lg: i32, k: i32, causal: bool) -> i32 {
  if (causal) { return i; }
  return win_start(i, lg, k, false) + k - 1;
}`;

/** The same per axis of a 3-D position (the subgroup-matrix kernels work on boxes). */
export const WINDOW3_WGSL = `${WINDOW_WGSL}
fn ws3(i: vec3<i32>, lg: vec3<i32>, k: vec3<i32>, c: vec3<bool>) -> vec3<i32> {
  return vec3<i32>(win_start(i.x, lg.x, k.x, c.x), win_start(i.y, lg.y, k.y, c.y), win_start(i.z, lg.z, k.z, c.z));
}
fn we3(i: vec3<i32>, lg: vec3<i32>, k: vec3<i32>, c: vec3<bool>) -> vec3<i32> {
  return vec3<i32>(win_end(i.x, lg.x, k.x, c.x), win_end(i.y, lg.y, k.y, c.y), win_end(i.z, lg.z, k.z, c.z));
}`;

/**
 * WGSL statements: the kernel uniform's per-axis window `kk`, dilation `dd` and causal flags
 * `cz`, and for tile `T` (tiles are numbered dilation group by group, `tpg` tiles per group
 * per axis) its dilation group `g` and its axis coordinates `ta` over all groups.
 */
export const TILE_GROUP_WGSL = `  let kk = vec3<i32>(i32(u.k0), i32(u.k1), i32(u.k2));
  let dd = vec3<u32>(u.d0, u.d1, u.d2);
  let cz = vec3<bool>((u.causal & 1u) != 0u, (u.causal & 2u) != 0u, (u.causal & 4u) != 0u);
  let tpg = vec3<u32>(u.n0, u.n1, u.n2);
  let nt = tpg * dd;
  let ta = vec3<u32>(T / (nt.y * nt.z), (T / nt.z) % nt.y, T % nt.z);
  let g = ta / tpg;`;
