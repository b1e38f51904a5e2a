import type { Backend, BinaryOp, Capabilities, MatmulParams, QuantParams, RopeParams, SoftmaxParams, UnaryOp } from '../backend.js';
import { BYTES_PER_ELEMENT, storageFromBytes, type DType, type StorageArray } from '../dtype.js';
import { DeviceLostError, GpuError, LimitError } from '../errors.js';
import { sizeOf, type Shape } from '../shape.js';
import { Storage, Tensor } from '../tensor.js';
import { adapterLimits, capabilitiesOf, describeAdapter, wantedFeatures, type AcquiredGpu } from './adapter.js';
import type { Dispatch, Program } from './program.js';
import { runArgmax, runTopk } from './kernels/argmax.js';
import { runBinary, runCast, runUnary } from './kernels/elementwise.js';
import { runConcat, runPermute, runSlice, runGatherRows } from './kernels/layout.js';
import { runMatmul } from './kernels/matmul.js';
import { runLayernorm, runRmsnorm } from './kernels/norm.js';
import { runDequantizeInt8, runQuantizeInt8 } from './kernels/quant.js';
import { runRope } from './kernels/rope.js';
import { runSoftmax } from './kernels/softmax.js';

/** Dispatches are batched into one command encoder and submitted every this many. */
const FLUSH_EVERY = 64;

/** Buffers below this size are not pooled: the clearing submit would cost more than a fresh one. */
const POOL_MIN_BYTES = 1 << 20;
/** At most this much (or twice the binding limit, if less) is held for reuse. */
const POOL_MAX_BYTES = 1 << 30;

/**
 * The WebGPU backend: owns the device, a pipeline cache keyed by Program.key, and a
 * pending command encoder. Buffers are padded to whole 32-bit words so packed f16/i8
 * kernels can read and write words.
 */
export class WebGpuBackend implements Backend {
  readonly kind = 'webgpu' as const;
  readonly name: string;
  readonly caps: Capabilities;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private encoder: GPUCommandEncoder | null = null;
  private pending = 0;
  private readonly deferredFree: GPUBuffer[] = [];
  /** Released storage buffers kept for reuse, longest-pooled first (see retire). */
  private readonly pool: GPUBuffer[] = [];
  private readonly poolable = new WeakSet<GPUBuffer>();
  private poolBytes = 0;
  private readonly poolCap: number;
  private lost: DeviceLostError | null = null;
  private gpuErrors: string[] = [];

  private constructor(
    readonly device: GPUDevice,
    readonly adapter: GPUAdapter,
    private readonly keepAlive: unknown,
    /** WGSL language features of the GPU object (e.g. 'subgroup_id'); kernels with variants check it. */
    readonly wgslLanguageFeatures: ReadonlySet<string> = new Set(),
    /** False when Dawn runs without its robustness transform (see AcquiredGpu.robustAccess). */
    readonly robustAccess = true,
  ) {
    this.name = `webgpu(${describeAdapter(adapter)})`;
    this.caps = capabilitiesOf(adapter, device);
    this.poolCap = Math.min(POOL_MAX_BYTES, 2 * this.caps.maxStorageBufferBindingSize);
    // Every loss stops the backend, including a GPUDevice.destroy() that someone else
    // called (reason 'destroyed'): work recorded on a destroyed device never completes,
    // so it must be refused with DeviceLostError rather than waited on. Our own destroy()
    // sets `lost` first, so later use of a destroyed backend is reported the same way.
    device.lost.then((info) => {
      this.lost ??= new DeviceLostError(info.reason ?? 'unknown', info.message || 'no message');
    });
    device.addEventListener('uncapturederror', (ev) => {
      this.gpuErrors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
  }

  static async create(acq: AcquiredGpu): Promise<WebGpuBackend> {
    const { adapter } = acq;
    const device = await adapter.requestDevice({
      requiredFeatures: wantedFeatures(adapter),
      requiredLimits: adapterLimits(adapter),
    });
    const features = (acq.gpu as { wgslLanguageFeatures?: Iterable<string> }).wgslLanguageFeatures;
    return new WebGpuBackend(device, adapter, acq.keepAlive, new Set(features ?? []), acq.robustAccess ?? true);
  }

  /** Throws if the device is gone or WebGPU reported an error since the last check. */
  checkHealthy(op: string): void {
    if (this.lost) throw this.lost;
    if (this.gpuErrors.length) {
      const msg = this.gpuErrors.splice(0).join('\n');
      throw new GpuError(`${op}: WebGPU reported an error: ${msg}`);
    }
  }

  /** Allocates a word-padded storage buffer after checking the device limits. */
  createBuffer(op: string, byteLength: number, extraUsage = 0): GPUBuffer {
    this.checkHealthy(op);
    const size = Math.max(16, Math.ceil(byteLength / 16) * 16);
    if (size > this.caps.maxBufferSize) throw new LimitError(op, 'maxBufferSize (bytes)', size, this.caps.maxBufferSize);
    if (size > this.caps.maxStorageBufferBindingSize) {
      throw new LimitError(op, 'maxStorageBufferBindingSize (bytes)', size, this.caps.maxStorageBufferBindingSize);
    }
    const poolSized = extraUsage === 0 && size >= POOL_MIN_BYTES;
    // A buffer of this size released since the last submit joins the pool only once its
    // uses are submitted: submitting now is far cheaper than a fresh allocation (an op run
    // in a loop releases its last output just before asking for the next).
    if (poolSized && !this.pool.some((b) => b.size === size) && this.deferredFree.some((b) => b.size === size && this.poolable.has(b))) this.flush();
    const pooled = poolSized ? this.takePooled(size) : undefined;
    if (pooled) {
      // Zeroed like a fresh buffer, in its own submission: ordered after every earlier use
      // (all submitted before the buffer entered the pool) and before any later writeBuffer.
      const enc = this.device.createCommandEncoder();
      enc.clearBuffer(pooled);
      this.device.queue.submit([enc.finish()]);
      return pooled;
    }
    const buf = this.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage });
    if (poolSized) this.poolable.add(buf);
    return buf;
  }

  /**
   * A buffer whose uses are all submitted: kept for reuse when it is a plain storage buffer
   * of at least POOL_MIN_BYTES and the pool has room, else destroyed. Allocating a fresh
   * 256 MB buffer cost several milliseconds per call on the H200 (an 8192^2 f32 matmul
   * output: 36.7 ms per call against 25.4 ms into a reused output), like PyTorch's caching
   * allocator this keeps that off the hot path.
   */
  private retire(buf: GPUBuffer): void {
    const size = buf.size;
    if (this.lost || !this.poolable.has(buf) || size > this.poolCap) {
      buf.destroy();
      return;
    }
    // The buffer just released is the likeliest to be asked for again (the same op in a
    // loop): make room by destroying the longest-pooled buffers rather than this one.
    while (this.poolBytes + size > this.poolCap) {
      const old = this.pool.shift()!;
      this.poolBytes -= old.size;
      old.destroy();
    }
    this.pool.push(buf);
    this.poolBytes += size;
  }

  /** The most recently pooled buffer of exactly `size` bytes, taken out of the pool. */
  private takePooled(size: number): GPUBuffer | undefined {
    for (let i = this.pool.length - 1; i >= 0; i--) {
      if (this.pool[i]!.size === size) {
        this.poolBytes -= size;
        return this.pool.splice(i, 1)[0];
      }
    }
    return undefined;
  }

  /** Bytes held in the reuse pool (tests, diagnostics). */
  get pooledBytes(): number {
    return this.poolBytes;
  }

  /** Destroys every pooled buffer (memory back to the device now). */
  trimPool(): void {
    for (const b of this.pool.splice(0)) b.destroy();
    this.poolBytes = 0;
  }

  /** A new tensor with an uninitialised (zeroed by WebGPU) buffer. */
  empty(op: string, dtype: DType, shape: Shape): Tensor {
    const bytes = sizeOf(shape) * BYTES_PER_ELEMENT[dtype];
    const buf = this.createBuffer(op, bytes);
    return new Tensor(this, dtype, [...shape], new Storage(this, buf, bytes));
  }

  buffer(t: Tensor, op: string): GPUBuffer {
    return t.handle(op) as GPUBuffer;
  }

  fromStorage(dtype: DType, shape: Shape, data: StorageArray): Tensor {
    const t = this.empty('tensor', dtype, shape);
    const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
    padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.flush();
    this.device.queue.writeBuffer(this.buffer(t, 'tensor'), 0, padded);
    return t;
  }

  zeros(dtype: DType, shape: Shape): Tensor {
    return this.empty('zeros', dtype, shape);
  }

  async read(t: Tensor): Promise<StorageArray> {
    this.checkHealthy('toArray');
    const src = this.buffer(t, 'toArray');
    const bytes = Math.ceil(t.byteLength / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(bytes, 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.takeEncoder();
    enc.copyBufferToBuffer(src, 0, staging, 0, bytes);
    this.submit(enc);
    try {
      await this.guard('toArray', staging.mapAsync(GPUMapMode.READ).catch((e: unknown) => this.lostOr(e)));
      const copy = staging.getMappedRange().slice(0);
      staging.unmap();
      this.checkHealthy('toArray');
      return storageFromBytes(t.dtype, copy, t.size);
    } finally {
      staging.destroy();
    }
  }

  /** Races a promise against device loss so a lost device is reported, never hung on. */
  private async guard<T>(op: string, p: Promise<T>): Promise<T> {
    const lost = this.device.lost.then((info) => {
      throw new DeviceLostError(info.reason ?? 'unknown', `${op}: ${info.message || 'no message'}`);
    });
    return Promise.race([p, lost]);
  }

  /** A failed map on a device that is being lost is reported as the loss, not as an abort. */
  private async lostOr(e: unknown): Promise<never> {
    const info = await Promise.race([this.device.lost, new Promise<null>((r) => setTimeout(() => r(null), 200))]);
    if (info) throw new DeviceLostError(info.reason ?? 'unknown', `toArray: ${info.message || 'no message'}`);
    throw e;
  }

  release(handle: unknown): void {
    // A buffer may still be referenced by recorded but unsubmitted commands.
    if (this.encoder) this.deferredFree.push(handle as GPUBuffer);
    else this.retire(handle as GPUBuffer);
  }

  async sync(): Promise<void> {
    this.flush();
    await this.guard('sync', this.device.queue.onSubmittedWorkDone());
    this.checkHealthy('sync');
  }

  destroy(): void {
    if (this.lost) return;
    this.flush();
    this.trimPool();
    this.lost = new DeviceLostError('destroyed', `${this.name} was destroyed by backend.destroy()`);
    this.device.destroy();
  }

  private takeEncoder(): GPUCommandEncoder {
    const enc = this.encoder ?? this.device.createCommandEncoder();
    this.encoder = null;
    this.pending = 0;
    return enc;
  }

  private submit(enc: GPUCommandEncoder): void {
    this.device.queue.submit([enc.finish()]);
    for (const b of this.deferredFree.splice(0)) this.retire(b);
  }

  /** Submits whatever is recorded. */
  flush(): void {
    if (this.encoder) this.submit(this.takeEncoder());
  }

  pipeline(program: Program): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout } {
    let pipeline = this.pipelines.get(program.key);
    let layout = this.layouts.get(program.key);
    if (!pipeline || !layout) {
      const entries: GPUBindGroupLayoutEntry[] = [];
      let b = 0;
      for (let i = 0; i < program.inputs; i++) entries.push({ binding: b++, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } });
      for (let i = 0; i < program.outputs; i++) entries.push({ binding: b++, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } });
      if (program.uniform) entries.push({ binding: b++, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
      layout = this.device.createBindGroupLayout({ entries });
      const module = this.device.createShaderModule({ code: program.source(), label: program.key });
      pipeline = this.device.createComputePipeline({
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: 'main' },
        label: program.key,
      });
      this.pipelines.set(program.key, pipeline);
      this.layouts.set(program.key, layout);
    }
    return { pipeline, layout };
  }

  /** Records one dispatch; submission happens in batches or on read. */
  dispatch(d: Dispatch, timestampWrites?: GPUComputePassTimestampWrites): void {
    this.checkHealthy(d.program.key);
    const { pipeline, layout } = this.pipeline(d.program);
    const entries: GPUBindGroupEntry[] = [];
    let b = 0;
    for (const buf of [...d.inputs, ...d.outputs]) entries.push({ binding: b++, resource: { buffer: buf } });
    let ubuf: GPUBuffer | null = null;
    if (d.program.uniform) {
      if (!d.uniforms) throw new GpuError(`${d.program.key}: program declares a uniform buffer but none was passed`);
      ubuf = this.device.createBuffer({ size: d.uniforms.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      this.device.queue.writeBuffer(ubuf, 0, d.uniforms);
      entries.push({ binding: b++, resource: { buffer: ubuf } });
    }
    const bindGroup = this.device.createBindGroup({ layout, entries });
    this.encoder ??= this.device.createCommandEncoder();
    const pass = this.encoder.beginComputePass(timestampWrites ? { timestampWrites } : undefined);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(d.grid[0], d.grid[1], d.grid[2]);
    pass.end();
    if (ubuf) this.deferredFree.push(ubuf);
    if (++this.pending >= FLUSH_EVERY) this.flush();
  }

  /** Small read-only u32 buffer (shapes/strides for index-mapping kernels). */
  meta(values: readonly number[]): GPUBuffer {
    const data = new Uint32Array(Math.max(values.length, 4));
    data.set(values);
    const buf = this.createBuffer('meta', data.byteLength);
    this.device.queue.writeBuffer(buf, 0, data);
    this.deferredFree.push(buf);
    return buf;
  }

  matmul(a: Tensor, b: Tensor, p: MatmulParams): Tensor { return runMatmul(this, a, b, p); }
  binary(op: BinaryOp, a: Tensor, b: Tensor, outShape: number[]): Tensor { return runBinary(this, op, a, b, outShape); }
  unary(op: UnaryOp, x: Tensor, alpha: number): Tensor { return runUnary(this, op, x, alpha); }
  cast(x: Tensor, dtype: DType): Tensor { return runCast(this, x, dtype); }
  softmax(x: Tensor, p: SoftmaxParams): Tensor { return runSoftmax(this, x, p); }
  rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor { return runRmsnorm(this, x, w, eps); }
  layernorm(x: Tensor, w: Tensor, bias: Tensor | null, eps: number): Tensor { return runLayernorm(this, x, w, bias, eps); }
  rope(x: Tensor, p: RopeParams): Tensor { return runRope(this, x, p); }
  permute(x: Tensor, perm: number[]): Tensor { return runPermute(this, x, perm); }
  gatherRows(table: Tensor, index: Tensor): Tensor { return runGatherRows(this, table, index); }
  slice(x: Tensor, starts: number[], sizes: number[]): Tensor { return runSlice(this, x, starts, sizes); }
  concat(xs: Tensor[], axis: number): Tensor { return runConcat(this, xs, axis); }
  argmax(x: Tensor): Tensor { return runArgmax(this, x); }
  topk(x: Tensor, k: number): [Tensor, Tensor] { return runTopk(this, x, k); }
  quantizeInt8(x: Tensor, p: QuantParams): [Tensor, Tensor] { return runQuantizeInt8(this, x, p); }
  dequantizeInt8(q: Tensor, s: Tensor, p: QuantParams): Tensor { return runDequantizeInt8(this, q, s, p); }
}
