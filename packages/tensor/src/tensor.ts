import type { Backend } from './backend.js';
import { BYTES_PER_ELEMENT, type DType, type ValueArray } from './dtype.js';
import { DisposedError, ShapeError } from './errors.js';
import { decodeF16 } from './f16.js';
import { checkShape, fmt, sizeOf, type Shape } from './shape.js';
import { currentScope } from './scope.js';

/** Reference-counted backend storage shared by a tensor and its reshaped views. */
export class Storage {
  private refs = 1;
  constructor(readonly backend: Backend, readonly handle: unknown, readonly byteLength: number) {}
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) this.backend.release(this.handle);
  }
}

let nextId = 1;

/**
 * A dense, row-major, contiguous n-d array on one backend. Ops live in ops.ts; the
 * tensor itself only knows its metadata, its storage and how to read itself back.
 */
export class Tensor {
  readonly id = nextId++;
  readonly size: number;
  private disposed = false;

  constructor(
    readonly backend: Backend,
    readonly dtype: DType,
    readonly shape: Shape,
    private readonly _storage: Storage,
  ) {
    this.size = sizeOf(shape);
    currentScope()?.track(this);
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  get byteLength(): number {
    return this.size * BYTES_PER_ELEMENT[this.dtype];
  }

  /** The backend handle; throws DisposedError once disposed. */
  storage(op = 'tensor'): Storage {
    if (this.disposed) throw new DisposedError(op, `tensor #${this.id} ${this.dtype}${fmt(this.shape)}`);
    return this._storage;
  }

  handle(op = 'tensor'): unknown {
    return this.storage(op).handle;
  }

  /** Free: a new view of the same storage. */
  reshape(shape: Shape): Tensor {
    const resolved = resolveReshape(this.shape, shape);
    const s = this.storage('reshape');
    s.retain();
    return new Tensor(this.backend, this.dtype, resolved, s);
  }

  /** Values as a JS typed array; f16 is widened to Float32Array. */
  async toArray(): Promise<ValueArray> {
    this.storage('toArray'); // the same DisposedError on every backend
    const raw = await this.backend.read(this);
    if (this.dtype === 'f16') return decodeF16(raw as Uint16Array);
    return raw as ValueArray;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this._storage.release();
  }

  toString(): string {
    return `Tensor(${this.dtype}${fmt(this.shape)} on ${this.backend.name})`;
  }
}

function resolveReshape(from: Shape, to: Shape): number[] {
  const out = [...to];
  const inferred = out.indexOf(-1);
  if (inferred >= 0) {
    const rest = out.reduce((p, d, i) => (i === inferred ? p : p * d), 1);
    out[inferred] = sizeOf(from) / rest;
  }
  checkShape('reshape', 'shape', out);
  if (sizeOf(out) !== sizeOf(from)) {
    throw new ShapeError('reshape', 'shape', `a shape with ${sizeOf(from)} elements (from ${fmt(from)})`, to);
  }
  return out;
}
