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
  inputs: 1, outputs: 1, uniform: true,
  source: () => `
${bindings(['src'], ['dst'], 'U')}
${U}
${LINEAR_GROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${WG}u + li;
  if (i >= u.total) { return; }
  let w = i % u.words;
  let r = (i / u.words) % u.rows;
  let bh = i / (u.words * u.rows);
  dst[(bh * u.cap + u.offset + r) * u.words + w] = src[i];
}`,
};

export function writeRows(dst: Tensor, src: Tensor, offset: number): void {
  const op = 'kvWriteRows';
  if (dst.dtype !== src.dtype) throw new ArgumentError(op, 'src.dtype', `equal to the cache dtype ${dst.dtype}`, src.dtype);
  if (dst.rank !== 4 || src.rank !== 4 || dst.shape[0] !== src.shape[0] || dst.shape[1] !== src.shape[1] || dst.shape[3] !== src.shape[3]) {
    throw new ShapeError(op, 'src', `[${dst.shape[0]}, ${dst.shape[1]}, S, ${dst.shape[3]}] to match the cache [${dst.shape.join(', ')}]`, src.shape);
  }
  const [B, H, cap, D] = dst.shape as [number, number, number, number];
  const S = src.shape[2]!;
  if (offset < 0 || offset + S > cap) throw new ArgumentError(op, 'offset', `in [0, ${cap - S}] for ${S} new rows`, offset);
  if (dst.backend !== src.backend) throw new ArgumentError(op, 'src.backend', dst.backend.name, src.backend.name);
  const be = dst.backend;
  if (be instanceof WebGpuBackend) {
    const bytesPerRow = D * (dst.dtype === 'f16' ? 2 : 4);
    if (bytesPerRow % 4) throw new ArgumentError(op, 'head dim', 'a whole number of 32-bit words per row', D);
    const words = bytesPerRow / 4;
    const total = B * H * S * words;
    be.dispatch({
      program: copyRows,
      inputs: [be.buffer(src, op)],
      outputs: [be.buffer(dst, op)],
      uniforms: packUniforms([['u32', S], ['u32', words], ['u32', cap], ['u32', offset], ['u32', total]]),
      grid: gridFor(Math.ceil(total / WG)),
    });
    return;
  }
  // CPU backend: the handle is the storage array itself.
  const d = dst.handle(op) as StorageArray;
  const s = src.handle(op) as StorageArray;
  for (let bh = 0; bh < B * H; bh++) {
    d.set(s.subarray(bh * S * D, (bh + 1) * S * D), (bh * cap + offset) * D);
  }
}
