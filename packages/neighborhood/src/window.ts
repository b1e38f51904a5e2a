/**
 * NATTEN's neighborhood rule for one axis, written literally from its reference mask
 * (stride 1). Everything works in *in-group* coordinates: with dilation d a coordinate x
 * belongs to group x mod d and sits at in-group index floor(x / d); queries only see keys
 * of their own group, and the group behaves like an undilated axis of length L_g.
 *
 * This file is the definition the CPU reference and the tests use. The WGSL kernels use the
 * equivalent closed form start = clamp(i - left, 0, L_g - k) (see kernel.ts); the tests
 * compare the two.
 */

export interface AxisSpec {
  /** Axis length L. */
  length: number;
  /** Window (kernel) size k. */
  kernel: number;
  /** Dilation d. */
  dilation: number;
  causal: boolean;
}

/** Length of dilation group g: floor(L/d) plus one when g < L mod d. */
export function groupLength(L: number, d: number, g: number): number {
  return Math.floor(L / d) + (g < L % d ? 1 : 0);
}

/** Keys left and right of the centre: odd k is symmetric, even k sees one more on the left. */
export function windowHalves(k: number): { left: number; right: number } {
  const left = Math.floor(k / 2);
  return { left, right: Math.floor(k / 2) + (k % 2) - 1 };
}

/**
 * The inclusive in-group key range [start, end] that in-group query index i sees, in a
 * group of length Lg. Non-causal: the centre is clamped to [left, Lg-1-right], so the
 * window shifts inward at borders and always holds k keys. Causal: keys j <= i with
 * i - j < k (fewer than k near the start).
 */
export function axisWindow(i: number, Lg: number, k: number, causal: boolean): { start: number; end: number } {
  if (causal) return { start: Math.max(0, i - k + 1), end: i };
  const { left, right } = windowHalves(k);
  const c = Math.min(Math.max(i, left), Lg - 1 - right);
  return { start: c - left, end: c + right };
}

/** Whether query coordinate x sees key coordinate y on one axis. */
export function axisVisible(x: number, y: number, a: AxisSpec): boolean {
  const d = a.dilation;
  if (x % d !== y % d) return false;
  const Lg = groupLength(a.length, d, x % d);
  const { start, end } = axisWindow(Math.floor(x / d), Lg, a.kernel, a.causal);
  const j = Math.floor(y / d);
  return j >= start && j <= end;
}

/** The neighborhood is a box: visible iff visible on every axis. */
export function visible(x: readonly number[], y: readonly number[], axes: readonly AxisSpec[]): boolean {
  for (let a = 0; a < axes.length; a++) if (!axisVisible(x[a]!, y[a]!, axes[a]!)) return false;
  return true;
}
