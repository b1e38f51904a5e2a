import { AttnkitError } from '@attnkit/tensor';

/** A token layout that does not describe the tensor it is applied to. */
export class LayoutError extends AttnkitError {
  override readonly name = 'LayoutError';
  constructor(readonly op: string, readonly expected: string, readonly actual: string) {
    super(`${op}: layout must be ${expected}, got ${actual}`);
  }
}

/** A block density outside (0, 1]. */
export class DensityError extends AttnkitError {
  override readonly name = 'DensityError';
  constructor(readonly op: string, readonly density: unknown) {
    super(`${op}: density must be a number in (0, 1], got ${String(density)}`);
  }
}

/** A calibration file that is not a valid PARO calibration; names the field. */
export class CalibrationFormatError extends AttnkitError {
  override readonly name = 'CalibrationFormatError';
  constructor(readonly source: string, readonly field: string, readonly problem: string) {
    super(`${source}: ${field} ${problem}`);
  }
}
