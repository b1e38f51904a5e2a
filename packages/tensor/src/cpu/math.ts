// Scalar definitions shared by the CPU reference (float64).
export function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is only 1e-7 accurate; use a series / continued fraction
  // that holds 1e-15 so the reference is not the weak side of a comparison.
  const t = Math.abs(x);
  if (t < 2.5) {
    let sum = t;
    let term = t;
    const x2 = t * t;
    for (let n = 1; n < 80; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for the tail.
  let f = t;
  let c = t;
  let d = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    d = t + an * d;
    d = 1 / d;
    c = t + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-t * t) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export const silu = (x: number): number => x / (1 + Math.exp(-x));
export const gelu = (x: number): number => 0.5 * x * (1 + erf(x / Math.SQRT2));
export const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
