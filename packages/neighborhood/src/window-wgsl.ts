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
