import { matmul, random, type Backend } from '@attnkit/tensor';
import { peerKey, timeIt, withPeer, type BenchRow, type Suite } from '../harness.js';

export const matmulSuite: Suite = {
  name: 'matmul',
  async run(be: Backend, ctx) {
    const sizes = ctx.big ? [4096, 8192] : be.kind === 'cpu' ? [128] : [256, 512];
    const rows: BenchRow[] = [];
    for (const n of sizes) {
      for (const dtype of ['f32', 'f16'] as const) {
        const a = random(be, [n, n], { seed: 1, dtype });
        const b = random(be, [n, n], { seed: 2, dtype });
        const t = await timeIt(be, () => matmul(a, b).dispose(), { reps: ctx.big ? 9 : 3, maxInner: ctx.big ? 64 : 4 });
        const flops = 2 * n ** 3;
        const s = `${n}x${n}x${n}`;
        const row: BenchRow = { package: 'tensor', kernel: 'matmul', shape: s, dtype, backend: be.kind, device: ctx.device, ...t, gflops: flops / (t.medianMs * 1e6) };
        rows.push(withPeer(row, ctx.peers.get(peerKey('matmul', s, dtype)), { flops }));
        a.dispose();
        b.dispose();
      }
    }
    return rows;
  },
};
