/**
 * Typed errors. Every error names the operation (or file/limit) and the expectation, so a
 * caller can tell what went wrong without reading our source.
 */
export class AttnkitError extends Error {
  override readonly name: string = 'AttnkitError';
}

/** A tensor's shape does not fit what the op expects. */
export class ShapeError extends AttnkitError {
  override readonly name = 'ShapeError';
  constructor(readonly op: string, readonly arg: string, readonly expected: string, readonly actual: readonly number[] | string) {
    super(`${op}: ${arg} must be ${expected}, got ${Array.isArray(actual) ? `[${actual.join(', ')}]` : actual}`);
  }
}

/** A tensor's dtype is not one the op accepts. */
export class DTypeError extends AttnkitError {
  override readonly name = 'DTypeError';
  constructor(readonly op: string, readonly arg: string, readonly expected: readonly string[], readonly actual: string) {
    super(`${op}: ${arg} must have dtype ${expected.join(' or ')}, got ${actual}`);
  }
}

/** A scalar argument or option is out of its range. */
export class ArgumentError extends AttnkitError {
  override readonly name = 'ArgumentError';
  constructor(readonly op: string, readonly arg: string, readonly expected: string, readonly actual: unknown) {
    super(`${op}: ${arg} must be ${expected}, got ${String(actual)}`);
  }
}

/** A request beyond a device limit; says which limit and by how much. */
export class LimitError extends AttnkitError {
  override readonly name = 'LimitError';
  constructor(readonly op: string, readonly limit: string, readonly requested: number, readonly allowed: number) {
    super(`${op}: needs ${requested} for ${limit} but the device allows ${allowed} (over by ${requested - allowed})`);
  }
}

/** Tensors from two different backends were mixed in one op. */
export class BackendMismatchError extends AttnkitError {
  override readonly name = 'BackendMismatchError';
  constructor(readonly op: string, readonly arg: string, readonly expected: string, readonly actual: string) {
    super(`${op}: ${arg} lives on backend '${actual}' but the op runs on '${expected}'; move it with toBackend() first`);
  }
}

/** A tensor was used after dispose(). */
export class DisposedError extends AttnkitError {
  override readonly name = 'DisposedError';
  constructor(readonly op: string, readonly what: string) {
    super(`${op}: ${what} was disposed and cannot be used`);
  }
}

/** The GPU device was lost; no further work is accepted on it. */
export class DeviceLostError extends AttnkitError {
  override readonly name = 'DeviceLostError';
  constructor(readonly reason: string, readonly detail: string) {
    super(`WebGPU device lost (${reason}): ${detail}. Create a new backend to continue.`);
  }
}

/** No usable WebGPU adapter was found. */
export class NoAdapterError extends AttnkitError {
  override readonly name = 'NoAdapterError';
}

/** WebGPU reported a validation or out-of-memory error for a kernel. */
export class GpuError extends AttnkitError {
  override readonly name = 'GpuError';
}
