import type { Backend, BinaryOp, Capabilities, MatmulParams, QuantParams, RopeParams, SoftmaxParams, UnaryOp } from '../backend.js';
import { allocStorage, isFloat, type DType, type StorageArray } from '../dtype.js';
import { broadcastStrides, sizeOf, stridesOf, type Shape } from '../shape.js';
import { Storage, Tensor } from '../tensor.js';
import { gelu, geluTanh, silu } from './math.js';
import { encode, values } from './storage.js';

const CPU_CAPS: Capabilities = {
  shaderF16: true,
  subgroups: false,
  subgroupMinSize: 1,
  subgroupMaxSize: 1,
  subgroupMatrixConfigs: [],
  timestampQuery: false,
  maxBufferSize: 2 ** 31 - 1,
  maxStorageBufferBindingSize: 2 ** 31 - 1,
  maxComputeWorkgroupStorageSize: 0,
};

/**
 * The reference backend: plain loops, float64 accumulation, results rounded once to the
 * output dtype. Every GPU kernel is checked against it, so it favours obviousness.
 */
export class CpuBackend implements Backend {
  readonly kind = 'cpu' as const;
  readonly name = 'cpu';
  readonly caps = CPU_CAPS;

  fromStorage(dtype: DType, shape: Shape, data: StorageArray): Tensor {
    return new Tensor(this, dtype, [...shape], new Storage(this, data.slice(), data.byteLength));
  }
  zeros(dtype: DType, shape: Shape): Tensor {
    const data = allocStorage(dtype, sizeOf(shape));
    return new Tensor(this, dtype, [...shape], new Storage(this, data, data.byteLength));
  }
  private out(dtype: DType, shape: Shape, v: ArrayLike<number>): Tensor {
    const data = encode(dtype, v);
    return new Tensor(this, dtype, [...shape], new Storage(this, data, data.byteLength));
  }
  async read(t: Tensor): Promise<StorageArray> {
    return (t.handle('read') as StorageArray).slice();
  }
  release(): void {}
  async sync(): Promise<void> {}
  destroy(): void {}

  matmul(a: Tensor, b: Tensor, p: MatmulParams): Tensor {
    // f32 storage is read in place (each product is still formed in float64): copying a
    // large weight matrix to float64 on every call cost more than the multiply.
    const A = a.dtype === 'f32' ? (a.handle('matmul') as Float32Array) : values(a, 'matmul');
    const B = b.dtype === 'f32' ? (b.handle('matmul') as Float32Array) : values(b, 'matmul');
    const { M, N, K } = p;
    const out = new Float64Array(p.batch * M * N);
    for (let z = 0; z < p.batch; z++) {
      const ao = (p.batchA === 1 ? 0 : z) * M * K;
      const bo = (p.batchB === 1 ? 0 : z) * K * N;
      const oo = z * M * N;
      if (p.transB) {
        // b rows are contiguous along k: one dot product per output.
        for (let i = 0; i < M; i++) {
          let j = 0;
          if (!p.transA) {
            // Four outputs per pass over the a row (one load of a[k] feeds four sums);
            // each sum still runs over k in order, so results do not change.
            const ar = ao + i * K;
            for (; j + 3 < N; j += 4) {
              const b0 = bo + j * K;
              const b1 = b0 + K;
              const b2 = b1 + K;
              const b3 = b2 + K;
              let s0 = 0;
              let s1 = 0;
              let s2 = 0;
              let s3 = 0;
              for (let k = 0; k < K; k++) {
                const av = A[ar + k]!;
                s0 += av * B[b0 + k]!;
                s1 += av * B[b1 + k]!;
                s2 += av * B[b2 + k]!;
                s3 += av * B[b3 + k]!;
              }
              const o = oo + i * N + j;
              out[o] = s0;
              out[o + 1] = s1;
              out[o + 2] = s2;
              out[o + 3] = s3;
            }
          }
          for (; j < N; j++) {
            const br = bo + j * K;
            let s = 0;
            if (p.transA) for (let k = 0; k < K; k++) s += A[ao + k * M + i]! * B[br + k]!;
            else for (let k = 0, ar = ao + i * K; k < K; k++) s += A[ar + k]! * B[br + k]!;
            out[oo + i * N + j] = s;
          }
        }
        continue;
      }
      // i-k-j order streams rows of b and of the output; each output still sums its
      // products in k order, so results are bit-identical to the i-j-k loop.
      // Four rows at a time share each load of b[k, j].
      const aAt = (i: number, k: number) => A[ao + (p.transA ? k * M + i : i * K + k)]!;
      let i = 0;
      for (; i + 3 < M; i += 4) {
        const r0 = oo + i * N;
        const r1 = r0 + N;
        const r2 = r1 + N;
        const r3 = r2 + N;
        for (let k = 0; k < K; k++) {
          const a0 = aAt(i, k);
          const a1 = aAt(i + 1, k);
          const a2 = aAt(i + 2, k);
          const a3 = aAt(i + 3, k);
          const bk = bo + k * N;
          for (let j = 0; j < N; j++) {
            const bv = B[bk + j]!;
            out[r0 + j]! += a0 * bv;
            out[r1 + j]! += a1 * bv;
            out[r2 + j]! += a2 * bv;
            out[r3 + j]! += a3 * bv;
          }
        }
      }
      for (; i < M; i++) {
        const row = oo + i * N;
        for (let k = 0; k < K; k++) {
          const av = aAt(i, k);
          const bk = bo + k * N;
          for (let j = 0; j < N; j++) out[row + j]! += av * B[bk + j]!;
        }
      }
    }
    return this.out(p.outDtype, p.outShape, out);
  }

  binary(op: BinaryOp, a: Tensor, b: Tensor, outShape: number[]): Tensor {
    const A = values(a, op);
    const B = values(b, op);
    const sa = broadcastStrides(a.shape, outShape);
    const sb = broadcastStrides(b.shape, outShape);
    const n = sizeOf(outShape);
    const out = new Float64Array(n);
    const idx = new Array<number>(outShape.length).fill(0);
    const f = { add: (x: number, y: number) => x + y, sub: (x: number, y: number) => x - y, mul: (x: number, y: number) => x * y, div: (x: number, y: number) => x / y }[op];
    const isInt = a.dtype === 'i32' || a.dtype === 'u32';
    for (let i = 0; i < n; i++) {
      let ia = 0;
      let ib = 0;
      for (let d = 0; d < idx.length; d++) {
        ia += idx[d]! * sa[d]!;
        ib += idx[d]! * sb[d]!;
      }
      let r = f(A[ia]!, B[ib]!);
      // Integer products wrap like 32-bit hardware (a float64 product loses low bits past
      // 2^53); integer division truncates and x / 0 gives 0.
      if (isInt && op === 'mul') r = Math.imul(A[ia]!, B[ib]!);
      else if (isInt && op === 'div') r = B[ib] === 0 ? 0 : Math.trunc(r);
      out[i] = r;
      for (let d = idx.length - 1; d >= 0; d--) {
        if (++idx[d]! < outShape[d]!) break;
        idx[d] = 0;
      }
    }
    if (a.dtype === 'i32') return this.out('i32', outShape, Int32Array.from(out, (v) => v | 0));
    if (a.dtype === 'u32') return this.out('u32', outShape, Uint32Array.from(out, (v) => v >>> 0));
    return this.out(a.dtype, outShape, out);
  }

  unary(op: UnaryOp, x: Tensor, alpha: number): Tensor {
    const X = values(x, op);
    const f: (v: number) => number = {
      scale: (v: number) => v * alpha,
      silu,
      gelu,
      gelu_tanh: geluTanh,
      exp: Math.exp,
      neg: (v: number) => -v,
      relu: (v: number) => Math.max(v, 0),
    }[op];
    return this.out(x.dtype, x.shape, X.map(f));
  }

  /**
   * Float to integer truncates toward zero and saturates (NaN gives 0), as WGSL's
   * conversions do; integer to integer keeps the low 32 bits (two's complement wrap).
   */
  cast(x: Tensor, dtype: DType): Tensor {
    const X = values(x, 'cast');
    const fromFloat = isFloat(x.dtype);
    const sat = (v: number, lo: number, hi: number) => (Number.isNaN(v) ? 0 : Math.min(hi, Math.max(lo, Math.trunc(v))));
    // The bounds are the largest f32 values inside the integer range (2^31 - 128 and
    // 2^32 - 256), which is where WGSL's f32 -> i32/u32 conversion clamps.
    if (dtype === 'i32') return this.out(dtype, x.shape, Int32Array.from(X, (v) => (fromFloat ? sat(v, -(2 ** 31), 2 ** 31 - 128) : v | 0)));
    if (dtype === 'u32') return this.out(dtype, x.shape, Uint32Array.from(X, (v) => (fromFloat ? sat(v, 0, 2 ** 32 - 256) : v >>> 0)));
    return this.out(dtype, x.shape, X);
  }

  softmax(x: Tensor, p: SoftmaxParams): Tensor {
    const X = values(x, 'softmax');
    const L = x.shape[x.rank - 1]!;
    const S = x.rank >= 2 ? x.shape[x.rank - 2]! : 1;
    const rows = x.size / L;
    const mask = p.mask ? this.broadcastValues(p.mask, x.shape) : null;
    const out = new Float64Array(x.size);
    for (let r = 0; r < rows; r++) {
      const visible = p.causal ? L - S + (r % S) + 1 : L;
      let m = -Infinity;
      const row = new Float64Array(L).fill(-Infinity);
      for (let j = 0; j < visible; j++) {
        row[j] = X[r * L + j]! + (mask ? mask[r * L + j]! : 0);
        m = Math.max(m, row[j]!);
      }
      if (m === -Infinity) continue; // fully masked row: zeros
      let s = 0;
      for (let j = 0; j < L; j++) {
        const e = row[j] === -Infinity ? 0 : Math.exp(row[j]! - m);
        row[j] = e;
        s += e;
      }
      for (let j = 0; j < L; j++) out[r * L + j] = row[j]! / s;
    }
    return this.out(x.dtype, x.shape, out);
  }

  private broadcastValues(t: Tensor, shape: Shape): Float64Array {
    const v = values(t, 'broadcast');
    const st = broadcastStrides(t.shape, shape);
    const n = sizeOf(shape);
    const out = new Float64Array(n);
    const full = stridesOf(shape);
    for (let i = 0; i < n; i++) {
      let src = 0;
      let rem = i;
      for (let d = 0; d < shape.length; d++) {
        const c = Math.floor(rem / full[d]!);
        rem -= c * full[d]!;
        src += c * st[d]!;
      }
      out[i] = v[src]!;
    }
    return out;
  }

  rmsnorm(x: Tensor, weight: Tensor, eps: number): Tensor {
    const X = values(x, 'rmsnorm');
    const W = values(weight, 'rmsnorm');
    const D = W.length;
    const out = new Float64Array(x.size);
    for (let r = 0; r < x.size / D; r++) {
      let ss = 0;
      for (let j = 0; j < D; j++) ss += X[r * D + j]! ** 2;
      const inv = 1 / Math.sqrt(ss / D + eps);
      for (let j = 0; j < D; j++) out[r * D + j] = X[r * D + j]! * inv * W[j]!;
    }
    return this.out(x.dtype, x.shape, out);
  }

  layernorm(x: Tensor, weight: Tensor, bias: Tensor | null, eps: number): Tensor {
    const X = values(x, 'layernorm');
    const W = values(weight, 'layernorm');
    const Bv = bias ? values(bias, 'layernorm') : null;
    const D = W.length;
    const out = new Float64Array(x.size);
    for (let r = 0; r < x.size / D; r++) {
      let mean = 0;
      for (let j = 0; j < D; j++) mean += X[r * D + j]!;
      mean /= D;
      let v = 0;
      for (let j = 0; j < D; j++) v += (X[r * D + j]! - mean) ** 2;
      const inv = 1 / Math.sqrt(v / D + eps);
      for (let j = 0; j < D; j++) out[r * D + j] = (X[r * D + j]! - mean) * inv * W[j]! + (Bv ? Bv[j]! : 0);
    }
    return this.out(x.dtype, x.shape, out);
  }

  rope(x: Tensor, p: RopeParams): Tensor {
    const X = values(x, 'rope');
    const D = x.shape[x.rank - 1]!;
    const S = x.shape[x.rank - 2]!;
    const half = p.rotaryDim / 2;
    const out = Float64Array.from(X);
    for (let r = 0; r < x.size / D; r++) {
      const pos = (p.positionOffset + (r % S)) * p.positionScale;
      for (let i = 0; i < half; i++) {
        const inv = p.invFreq ? p.invFreq[i]! : Math.pow(p.theta, (-2 * i) / p.rotaryDim);
        const ang = pos * inv;
        const c = Math.cos(ang);
        const s = Math.sin(ang);
        const a = X[r * D + i]!;
        const b = X[r * D + i + half]!;
        out[r * D + i] = a * c - b * s;
        out[r * D + i + half] = b * c + a * s;
      }
    }
    return this.out(x.dtype, x.shape, out);
  }

  permute(x: Tensor, perm: number[]): Tensor {
    const src = x.handle('permute') as StorageArray;
    const outShape = perm.map((p) => x.shape[p]!);
    const inStrides = stridesOf(x.shape);
    const st = perm.map((p) => inStrides[p]!);
    const out = allocStorage(x.dtype, x.size);
    const idx = new Array<number>(outShape.length).fill(0);
    for (let i = 0; i < x.size; i++) {
      let s = 0;
      for (let d = 0; d < idx.length; d++) s += idx[d]! * st[d]!;
      out[i] = src[s]!;
      for (let d = idx.length - 1; d >= 0; d--) {
        if (++idx[d]! < outShape[d]!) break;
        idx[d] = 0;
      }
    }
    return this.fromStorage(x.dtype, outShape, out);
  }

  gatherRows(table: Tensor, index: Tensor): Tensor {
    const T = table.handle('gatherRows') as StorageArray;
    const I = index.handle('gatherRows') as StorageArray;
    const [rows, D] = table.shape as [number, number];
    const out = allocStorage(table.dtype, I.length * D);
    for (let i = 0; i < I.length; i++) {
      const r = I[i]!;
      // Out-of-range ids give zero rows, matching the GPU kernel (which cannot throw).
      if (r < 0 || r >= rows) continue;
      out.set(T.subarray(r * D, r * D + D), i * D);
    }
    return this.fromStorage(table.dtype, [...index.shape, D], out);
  }

  slice(x: Tensor, starts: number[], sizes: number[]): Tensor {
    const src = x.handle('slice') as StorageArray;
    const st = stridesOf(x.shape);
    const n = sizeOf(sizes);
    const out = allocStorage(x.dtype, n);
    const idx = new Array<number>(sizes.length).fill(0);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let d = 0; d < idx.length; d++) s += (idx[d]! + starts[d]!) * st[d]!;
      out[i] = src[s]!;
      for (let d = idx.length - 1; d >= 0; d--) {
        if (++idx[d]! < sizes[d]!) break;
        idx[d] = 0;
      }
    }
    return this.fromStorage(x.dtype, sizes, out);
  }

  concat(xs: Tensor[], axis: number): Tensor {
    const first = xs[0]!;
    const outer = sizeOf(first.shape.slice(0, axis));
    const inner = sizeOf(first.shape.slice(axis + 1));
    const total = xs.reduce((s, t) => s + t.shape[axis]!, 0);
    const outShape = [...first.shape];
    outShape[axis] = total;
    const out = allocStorage(first.dtype, sizeOf(outShape));
    let off = 0;
    for (const t of xs) {
      const src = t.handle('concat') as StorageArray;
      const chunk = t.shape[axis]! * inner;
      for (let o = 0; o < outer; o++) out.set(src.subarray(o * chunk, (o + 1) * chunk), o * total * inner + off * inner);
      off += t.shape[axis]!;
    }
    return this.fromStorage(first.dtype, outShape, out);
  }

  argmax(x: Tensor): Tensor {
    const X = values(x, 'argmax');
    const L = x.shape[x.rank - 1]!;
    const out = new Int32Array(x.size / L);
    for (let r = 0; r < out.length; r++) {
      let best = 0;
      for (let j = 1; j < L; j++) if (X[r * L + j]! > X[r * L + best]!) best = j;
      out[r] = best;
    }
    return this.fromStorage('i32', x.shape.slice(0, -1), out);
  }

  topk(x: Tensor, k: number): [Tensor, Tensor] {
    const X = values(x, 'topk');
    const L = x.shape[x.rank - 1]!;
    const rows = x.size / L;
    const vals = new Float64Array(rows * k);
    const idx = new Int32Array(rows * k);
    for (let r = 0; r < rows; r++) {
      const order = Array.from({ length: L }, (_, j) => j);
      // Descending by value, ties by lower index: the order the GPU kernel also produces.
      order.sort((p, q) => X[r * L + q]! - X[r * L + p]! || p - q);
      for (let i = 0; i < k; i++) {
        idx[r * k + i] = order[i]!;
        vals[r * k + i] = X[r * L + order[i]!]!;
      }
    }
    const shape = [...x.shape.slice(0, -1), k];
    return [this.out(x.dtype, shape, vals), this.fromStorage('i32', shape, idx)];
  }

  quantizeInt8(x: Tensor, p: QuantParams): [Tensor, Tensor] {
    const X = values(x, 'quantizeInt8');
    const nBlocks = x.size / p.blockSize;
    const q = new Int8Array(x.size);
    const scales = new Float32Array(nBlocks);
    for (let b = 0; b < nBlocks; b++) {
      let m = 0;
      for (let j = 0; j < p.blockSize; j++) m = Math.max(m, Math.abs(X[b * p.blockSize + j]!));
      const s = Math.fround(m / 127);
      scales[b] = s;
      const inv = s > 0 ? 1 / s : 0;
      for (let j = 0; j < p.blockSize; j++) {
        const v = Math.round(X[b * p.blockSize + j]! * inv);
        q[b * p.blockSize + j] = Math.max(-127, Math.min(127, v));
      }
    }
    const n = x.shape[x.rank - 1]!;
    return [this.fromStorage('i8', x.shape, q), this.fromStorage('f32', [...x.shape.slice(0, -1), n / p.blockSize], scales)];
  }

  dequantizeInt8(q: Tensor, scales: Tensor, p: QuantParams): Tensor {
    const Q = values(q, 'dequantizeInt8');
    const S = values(scales, 'dequantizeInt8');
    const out = new Float64Array(q.size);
    for (let i = 0; i < q.size; i++) out[i] = Q[i]! * S[Math.floor(i / p.blockSize)]!;
    return this.out('f32', q.shape, out);
  }
}
