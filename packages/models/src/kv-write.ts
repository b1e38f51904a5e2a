import { ArgumentError, ShapeError, WebGpuBackend, packUniforms, gridFor, LINEAR_GROUP, bindings, uniformStruct, type Program, type StorageArray, type Tensor } from '@attnkit/tensor';

/*
 * Writes new rows into a preallocated KV buffer in place: dst [B, H, capacity, D] receives
 * src [B, H, S, D] at rows [offset, offset + S). The tensor layer has no in-place op (its
 * ops return new tensors), so this module is the one place that writes into an existing
 * buffer: a direct store on the CPU backend, a word-copy kernel on WebGPU recorded in the
 * same command stream as the ops around it (so ordering is preserved).
 */

const U = uniformStruct('U', [['rows', 'u32'], ['words', 'u32'], ['cap', 'u32'], ['offset', 'u32'], ['total', 'u32']]);
const WG = 256;

const copyRows: Program = {
  key: 'models/kv-write-rows',
  inputs: 2, outputs: 2, uniform: true,
  source: () => `
${bindings(['srcK', 'srcV'], ['dstK', 'dstV'], 'U')}
${U}
${LINEAR_GROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${WG}u + li;
  if (i >= u.total) { return; }
  let w = i % u.words;
  let r = (i / u.words) % u.rows;
  let bh = i / (u.words * u.rows);
  let o = (bh * u.cap + u.offset + r) * u.words + w;
  dstK[o] = srcK[i];
  dstV[o] = srcV[i];
}`,
};

/** Writes new keys and values (same shape) into their cache buffers in one pass. */
export function writeKvRows(dstK: Tensor, dstV: Tensor, k: Tensor, v: Tensor, offset: number): void {
  checkRows(dstK, k, offset);
  checkRows(dstV, v, offset);
  if (dstK.shape.join() !== dstV.shape.join() || k.shape.join() !== v.shape.join()) throw new ShapeError('kvWriteRows', 'v', `the shape of k [${k.shape.join(', ')}]`, v.shape);
  const be = dstK.backend;
  if (be instanceof WebGpuBackend) {
    const [B, H, cap, D] = dstK.shape as [number, number, number, number];
    const S = k.shape[2]!;
    const words = (D * (dstK.dtype === 'f16' ? 2 : 4)) / 4;
    const total = B * H * S * words;
    const op = 'kvWriteRows';
    be.dispatch({
      program: copyRows,
      inputs: [be.buffer(k, op), be.buffer(v, op)],
      outputs: [be.buffer(dstK, op), be.buffer(dstV, op)],
      uniforms: packUniforms([['u32', S], ['u32', words], ['u32', cap], ['u32', offset], ['u32', total]]),
      grid: gridFor(Math.ceil(total / WG)),
    });
    return;
  }
  cpuWrite(dstK, k, offset);
  cpuWrite(dstV, v, offset);
}

function checkRows(dst: Tensor, src: Tensor, offset: number): void {
  const op = 'kvWriteRows';
  if (dst.dtype !== src.dtype) throw new ArgumentError(op, 'src.dtype', `equal to the cache dtype ${dst.dtype}`, src.dtype);
  if (dst.rank !== 4 || src.rank !== 4 || dst.shape[0] !== src.shape[0] || dst.shape[1] !== src.shape[1] || dst.shape[3] !== src.shape[3]) {
    throw new ShapeError(op, 'src', `[${dst.shape[0]}, ${dst.shape[1]}, S, ${dst.shape[3]}] to match the cache [${dst.shape.join(', ')}]`, src.shape);
  }
  const cap = dst.shape[2]!;
  const D = dst.shape[3]!;
  const S = src.shape[2]!;
  if (offset < 0 || offset + S > cap) throw new ArgumentError(op, 'offset', `in [0, ${cap - S}] for ${S} new rows`, offset);
  if (dst.backend !== src.backend) throw new ArgumentError(op, 'src.backend', dst.backend.name, src.backend.name);
  if ((D * (dst.dtype === 'f16' ? 2 : 4)) % 4) throw new ArgumentError(op, 'head dim', 'a whole number of 32-bit words per row', D);
}

/** CPU backend: the handle is the storage array itself. */
function cpuWrite(dst: Tensor, src: Tensor, offset: number): void {
  const op = 'kvWriteRows';
  const [B, H, cap, D] = dst.shape as [number, number, number, number];
  const S = src.shape[2]!;
  const d = dst.handle(op) as StorageArray;
  const s = src.handle(op) as StorageArray;
  for (let bh = 0; bh < B * H; bh++) {
    d.set(s.subarray(bh * S * D, (bh + 1) * S * D), (bh * cap + offset) * D);
  }
}
