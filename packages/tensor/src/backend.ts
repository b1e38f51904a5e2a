import type { DType, StorageArray } from './dtype.js';
import type { Shape } from './shape.js';
import type { Tensor } from './tensor.js';

/** What the adapter can do; the CPU backend reports everything it emulates. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface Capabilities {
  shaderF16: boolean;
  subgroups: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  subgroupMatrixConfigs: readonly SubgroupMatrixConfig[];
  timestampQuery: boolean;
  /** Largest single buffer / storage binding, in bytes. */
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupStorageSize: number;
}

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';
export type UnaryOp = 'scale' | 'silu' | 'gelu' | 'gelu_tanh' | 'exp' | 'neg' | 'relu';

export interface MatmulParams {
  transA: boolean;
  transB: boolean;
  /** Output dtype; accumulation is always f32. */
  outDtype: 'f32' | 'f16';
  /** Batch count of the output; a or b may have batch 1 (broadcast). */
  batch: number;
  batchA: number;
  batchB: number;
  M: number;
  N: number;
  K: number;
  outShape: number[];
}

export interface SoftmaxParams {
  /** Causal with queries placed at the end of the keys: row r of S may see keys < L - S + r + 1. */
  causal: boolean;
  /** Optional additive mask, broadcast to x's shape. */
  mask: Tensor | null;
}

export interface RopeParams {
  theta: number;
  /** Number of leading dims of each head that rotate (partial rotary); even. */
  rotaryDim: number;
  positionOffset: number;
  /** Linear position scaling factor (HF rope_scaling type 'linear'); 1 means none. */
  positionScale: number;
  /** Optional per-frequency inverse frequencies (for llama3/dynamic scaling computed by the caller). */
  invFreq: Float32Array | null;
}

export interface QuantParams {
  /** Elements per scale along the last axis; equal to the row length means per-row. */
  blockSize: number;
}

/**
 * The op set every backend implements with the same meaning. Arguments arrive already
 * validated by ops.ts (shapes, dtypes, same backend), so implementations stay simple.
 */
export interface Backend {
  readonly kind: 'cpu' | 'webgpu';
  readonly name: string;
  readonly caps: Capabilities;

  /** Wraps raw storage (already encoded for the dtype) into a tensor on this backend. */
  fromStorage(dtype: DType, shape: Shape, data: StorageArray): Tensor;
  zeros(dtype: DType, shape: Shape): Tensor;
  /** Reads raw storage back (f16 as bits). */
  read(t: Tensor): Promise<StorageArray>;
  /** Releases the storage handle (called once, when the last view is disposed). */
  release(handle: unknown): void;
  /** Waits for all queued work. */
  sync(): Promise<void>;
  destroy(): void;

  matmul(a: Tensor, b: Tensor, p: MatmulParams): Tensor;
  binary(op: BinaryOp, a: Tensor, b: Tensor, outShape: number[]): Tensor;
  unary(op: UnaryOp, x: Tensor, alpha: number): Tensor;
  cast(x: Tensor, dtype: DType): Tensor;
  softmax(x: Tensor, p: SoftmaxParams): Tensor;
  rmsnorm(x: Tensor, weight: Tensor, eps: number): Tensor;
  layernorm(x: Tensor, weight: Tensor, bias: Tensor | null, eps: number): Tensor;
  rope(x: Tensor, p: RopeParams): Tensor;
  permute(x: Tensor, perm: number[]): Tensor;
  gatherRows(table: Tensor, index: Tensor): Tensor;
  slice(x: Tensor, starts: number[], sizes: number[]): Tensor;
  concat(xs: Tensor[], axis: number): Tensor;
  argmax(x: Tensor): Tensor;
  topk(x: Tensor, k: number): [Tensor, Tensor];
  quantizeInt8(x: Tensor, p: QuantParams): [Tensor, Tensor];
  dequantizeInt8(q: Tensor, scales: Tensor, p: QuantParams): Tensor;
}
