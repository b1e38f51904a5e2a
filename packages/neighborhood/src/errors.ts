import { AttnkitError } from '@attnkit/tensor';

/**
 * A neighborhood window that cannot be placed on its axis: a kernel larger than the axis,
 * or a dilation whose groups are too short to hold a full window (NATTEN's k*d <= L rule).
 */
export class WindowError extends AttnkitError {
  override readonly name = 'WindowError';
  constructor(
    readonly op: string,
    readonly axis: number,
    readonly length: number,
    readonly kernelSize: number,
    readonly dilation: number,
    reason: string,
  ) {
    super(`${op}: axis ${axis} (length ${length}) cannot hold a window of ${kernelSize} with dilation ${dilation}: ${reason}`);
  }
}
