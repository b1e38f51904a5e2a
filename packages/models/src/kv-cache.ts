import { zeros, type Backend, type Tensor } from '@attnkit/tensor';
import { ContextLengthError } from './errors.js';
import { writeKvRows } from './kv-write.js';

/** One layer's keys and values as attention reads them. */
export interface KvView {
  /** [1, numKvHeads, capacity, headDim]; rows [0, length) are valid. */
  k: Tensor;
  v: Tensor;
  length: number;
}

/**
 * The interface the decoder talks to. A KV policy (eviction, paging, offload, gists)
 * implements it: `append` receives each step's new keys/values per layer (already
 * rotated), `view` hands attention the rows to read. `position` counts every token ever
 * appended, so positions keep increasing even when a policy drops rows.
 */
export interface KvCache {
  readonly numLayers: number;
  /** Rows a layer can hold. */
  readonly capacity: number;
  /** Tokens appended so far (the next token's position). */
  readonly position: number;
  /** k, v: [1, numKvHeads, S, headDim] new rows for `layer`. */
  append(layer: number, k: Tensor, v: Tensor): void;
  view(layer: number): KvView;
  /** Device bytes held by the cache (allocated, not just used). */
  bytes(): number;
  /** Forgets every row (keeps the allocation). */
  reset(): void;
  dispose(): void;
}

export interface KvShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  capacity: number;
  dtype?: 'f32' | 'f16';
}

/**
 * The plain cache: one preallocated [1, Hkv, capacity, D] buffer per layer for keys and
 * one for values; appends write rows in place, nothing is ever evicted.
 */
export class StaticKvCache implements KvCache {
  readonly numLayers: number;
  readonly capacity: number;
  private readonly ks: Tensor[];
  private readonly vs: Tensor[];
  private readonly lengths: number[];

  constructor(readonly backend: Backend, readonly shape: KvShape) {
    this.numLayers = shape.numLayers;
    this.capacity = shape.capacity;
    const dims = [1, shape.numKvHeads, shape.capacity, shape.headDim];
    const dtype = shape.dtype ?? 'f32';
    this.ks = Array.from({ length: shape.numLayers }, () => zeros(backend, dims, dtype));
    this.vs = Array.from({ length: shape.numLayers }, () => zeros(backend, dims, dtype));
    this.lengths = new Array<number>(shape.numLayers).fill(0);
  }

  get position(): number {
    return this.lengths[0] ?? 0;
  }

  append(layer: number, k: Tensor, v: Tensor): void {
    const at = this.lengths[layer]!;
    const S = k.shape[2]!;
    if (at + S > this.capacity) throw new ContextLengthError(`KV cache (layer ${layer})`, at + S, this.capacity);
    writeKvRows(this.ks[layer]!, this.vs[layer]!, k, v, at);
    this.lengths[layer] = at + S;
  }

  view(layer: number): KvView {
    return { k: this.ks[layer]!, v: this.vs[layer]!, length: this.lengths[layer]! };
  }

  bytes(): number {
    return this.ks.reduce((n, t) => n + t.byteLength, 0) * 2;
  }

  /** Bytes of rows actually in use (what a smaller cache would need for the same tokens). */
  usedBytes(): number {
    const perRow = this.ks[0] ? this.ks[0].byteLength / this.capacity : 0;
    return this.lengths.reduce((n, l) => n + l * perRow * 2, 0);
  }

  reset(): void {
    this.lengths.fill(0);
  }

  dispose(): void {
    for (const t of [...this.ks, ...this.vs]) t.dispose();
  }
}
