import { LayoutError } from './errors.js';

/**
 * Tokens of a video (or image, frames = 1) DiT: `text` leading tokens that stay dense and in
 * place, then frames x height x width visual tokens flattened frame-major (F, H, W).
 */
export interface VideoLayout {
  frames: number;
  height: number;
  width: number;
  text?: number;
}

/** The six flattening orders of (F, H, W); the first letter is the outermost axis. */
export const AXIS_ORDERS = ['FHW', 'FWH', 'HFW', 'HWF', 'WFH', 'WHF'] as const;
export type AxisOrder = (typeof AXIS_ORDERS)[number];

export function tokenCount(l: VideoLayout): number {
  return (l.text ?? 0) + l.frames * l.height * l.width;
}

export function checkLayout(op: string, l: VideoLayout, tokens?: number): void {
  for (const [name, v] of [['frames', l.frames], ['height', l.height], ['width', l.width]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new LayoutError(op, `${name} a positive integer`, String(v));
  }
  const text = l.text ?? 0;
  if (!Number.isInteger(text) || text < 0) throw new LayoutError(op, 'text a non-negative integer', String(text));
  if (tokens !== undefined && tokenCount(l) !== tokens) {
    throw new LayoutError(
      op,
      `text + frames*height*width = the token count ${tokens}`,
      `${text} + ${l.frames}*${l.height}*${l.width} = ${tokenCount(l)}`,
    );
  }
}

/**
 * perm[newPosition] = oldPosition for re-flattening the visual tokens in `order` (text
 * tokens keep positions 0..text-1). Applying it to Q, K and V makes the axis named last
 * the innermost one, so attention that aggregates along that axis lands near the diagonal.
 */
export function orderPermutation(l: VideoLayout, order: AxisOrder): Uint32Array {
  const text = l.text ?? 0;
  const size: Record<string, number> = { F: l.frames, H: l.height, W: l.width };
  const stride: Record<string, number> = { F: l.height * l.width, H: l.width, W: 1 };
  const [a, b, c] = order.split('') as [string, string, string];
  const perm = new Uint32Array(tokenCount(l));
  for (let t = 0; t < text; t++) perm[t] = t;
  let n = text;
  for (let i = 0; i < size[a]!; i++) {
    for (let j = 0; j < size[b]!; j++) {
      for (let k = 0; k < size[c]!; k++) perm[n++] = text + i * stride[a]! + j * stride[b]! + k * stride[c]!;
    }
  }
  return perm;
}

export function invertPermutation(perm: Uint32Array): Uint32Array {
  const inv = new Uint32Array(perm.length);
  for (let i = 0; i < perm.length; i++) inv[perm[i]!] = i;
  return inv;
}
