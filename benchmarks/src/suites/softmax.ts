import { random, softmax, type Backend } from '@attnkit/tensor';
import { peerKey, timeIt, withPeer, type BenchRow, type Suite } from '../harness.js';

export const softmaxSuite: Suite = {
  name: 'softmax',
  async run(be: Backend, ctx) {
    const shapes = ctx.big ? [[32, 4096, 4096]] : [[4, 256, 256]];
    const rows: BenchRow[] = [];
    for (const shape of shapes) {
      const x = random(be, shape, { seed: 1 });
      const t = await timeIt(be, () => softmax(x).dispose(), { reps: ctx.big ? 9 : 5 });
      const bytes = x.byteLength * 2;
      const s = shape.join('x');
      const row: BenchRow = { package: 'tensor', kernel: 'softmax', shape: s, dtype: 'f32', backend: be.kind, device: ctx.device, ...t, gbps: bytes / (t.medianMs * 1e6) };
      rows.push(withPeer(row, ctx.peers.get(peerKey('softmax', s, 'f32')), { bytes }));
      x.dispose();
    }
    return rows;
  },
};
