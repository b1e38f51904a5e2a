import { describe, expect, it } from 'vitest';
import { CpuBackend, matmul, random, type Backend, type Tensor } from '@attnkit/tensor';
import { compareClose, gpuForTests } from '@attnkit/tensor/testing';
import type { MatmulParams } from '../src/backend.js';
import type { WebGpuBackend } from '../src/webgpu/backend.js';
import { matmulWith } from '../src/webgpu/kernels/matmul.js';
import { tiledConfigName, tiledConfigProblem, tiledMatmul, type TiledConfig } from '../src/webgpu/kernels/matmul-tiled.js';

// The tiled kernel's optional code paths (tile-order swizzle, row-fastest staging of
// K-contiguous operands, accumulators as separate variables), forced on small tiles so
// lavapipe compiles them quickly, against the float64 CPU reference on ragged and exact
// shapes in every layout. The default configurations are covered in matmul-variants.test.ts.
const gpu = (await gpuForTests()) as WebGpuBackend | null;
const cpu = new CpuBackend();

type DT = 'f32' | 'f16';
interface Case { M: number; K: number; N: number; ta?: boolean; tb?: boolean; da?: DT; db?: DT; batch?: number }

function params(c: Case): MatmulParams {
  const n = c.batch ?? 1;
  return { transA: !!c.ta, transB: !!c.tb, outDtype: 'f32', batch: n, batchA: n, batchB: n, M: c.M, N: c.N, K: c.K, outShape: [...(c.batch ? [n] : []), c.M, c.N] };
}

function operands(be: Backend, c: Case): [Tensor, Tensor] {
  const bat = c.batch ? [c.batch] : [];
  const a = random(be, [...bat, ...(c.ta ? [c.K, c.M] : [c.M, c.K])], { seed: 3 + c.M, dtype: c.da ?? 'f32' });
  const b = random(be, [...bat, ...(c.tb ? [c.N, c.K] : [c.K, c.N])], { seed: 17 + c.N, dtype: c.db ?? 'f32' });
  return [a, b];
}

async function check(be: WebGpuBackend, config: TiledConfig, c: Case): Promise<void> {
  const [a, b] = operands(be, c);
  const [ca, cb] = operands(cpu, c);
  const got = await matmulWith(be, a, b, params(c), { kind: 'tiled', config }).toArray();
  const want = await matmul(ca, cb, { transA: c.ta, transB: c.tb }).toArray();
  const rep = compareClose(got, want, 2e-5 * Math.sqrt(c.K) + 1e-6, 1e-5);
  expect(rep.message, `${tiledConfigName(config)} ${JSON.stringify(c)}`).toBe('ok');
}

const layouts: Array<Pick<Case, 'ta' | 'tb' | 'da' | 'db'>> = [
  {},
  { tb: true },
  { ta: true, tb: true, da: 'f16', db: 'f16' },
];

// Every option is on in one of the two (lavapipe compiles slowly: few pipelines per file).
const configs: TiledConfig[] = [
  { BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, AR: true, VARS: true, SW: 2 },
  { BM: 32, BN: 16, BK: 4, TM: 8, TN: 4, AR: true, DB: true, SW: 3 },
  { BM: 16, BN: 32, BK: 8, TM: 4, TN: 8, VARS: true, DB: true },
  { BM: 32, BN: 64, BK: 8, TM: 4, TN: 8, WM: 8, AR: true },
  { BM: 64, BN: 32, BK: 8, TM: 4, TN: 8, WM: 2, SF: true },
  { BM: 32, BN: 32, BK: 4, TM: 4, TN: 4, WM: 8, DB: true, U2: true },
  { BM: 32, BN: 32, BK: 8, TM: 4, TN: 8, NP: true, AR: true, SF: true },
  { BM: 16, BN: 32, BK: 4, TM: 4, TN: 8, SF: true, VARS: true, DB: true },
];

describe.runIf(gpu)('tiled matmul options on the WebGPU backend', () => {
  const be = gpu!;
  describe.each(configs.map((c) => [tiledConfigName(c), c] as const))('%s', (_, c) => {
    it('ragged shapes (zero-filled loads, masked stores), K-contiguous or not', async () => {
      for (const l of layouts) await check(be, c, { M: 37, K: 28, N: 45, ...l });
      await check(be, c, { M: 70, K: 13, N: 9, tb: true });
    });
    it('shapes that divide the tile (a tile grid the swizzle group does not divide), batches', async () => {
      await check(be, c, { M: 160, K: 32, N: 64, tb: true });
      await check(be, c, { M: 33, K: 20, N: 35, batch: 3, tb: true });
    });
  });

  it('the options change the generated WGSL as described', () => {
    const c: Case = { M: 64, K: 64, N: 64, tb: true };
    const [a, b] = operands(be, c);
    const base: TiledConfig = { BM: 32, BN: 32, BK: 8, TM: 4, TN: 4 };
    const plain = tiledMatmul(a, b, params(c), base).source();
    const vars = tiledMatmul(a, b, params(c), { ...base, VARS: true }).source();
    expect(plain).toContain('var acc: array<vec4<f32>, 4>;');
    expect(vars).toContain('var acc_3: vec4<f32> = vec4<f32>(0.0);');
    expect(vars).not.toContain('acc[');
    const sf = tiledMatmul(a, b, params(c), { ...base, SF: true }).source();
    expect(sf).toContain('var acc: array<f32, 16>;');
    expect(sf).toContain('acc[5] = fma(a0[1], b0[1], acc[5]);');
    const sfv = tiledMatmul(a, b, params(c), { ...base, SF: true, VARS: true }).source();
    expect(sfv).toContain('acc_1_1 = fma(a0[1], b0[1], acc_1_1);');
    const sw = tiledMatmul(a, b, params(c), { ...base, SW: 4 }).source();
    expect(sw).toContain('let perGroup = 4u * nwg.x;');
    expect(plain).toContain('let r0 = wid.y * 32u;');
    // Row-fastest: consecutive threads take consecutive rows of the K-contiguous operand.
    const ar = tiledMatmul(a, b, params(c), { ...base, AR: true }).source();
    expect(ar).toContain('let r = aRow0 + (lid + 0u) % 32u;');
    expect(plain).toContain('let r = aRow0 + (lid + 0u) / 2u;');
  });
});

describe('tiled configuration checks', () => {
  it('names every option and rejects a bad swizzle group', () => {
    expect(tiledConfigName({ BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, DB: true, SW: 8, AR: true, VARS: true })).toBe('128x128x16-8x8-db-sw8-ar-vars');
    expect(tiledConfigProblem({ BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, SW: 8 })).toBeNull();
    expect(tiledConfigProblem({ BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, SW: 1.5 })).toMatch(/swizzle/);
    expect(tiledConfigProblem({ BM: 128, BN: 256, BK: 16, TM: 8, TN: 8 })).toMatch(/threads/);
    expect(tiledConfigProblem({ BM: 64, BN: 64, BK: 16, TM: 8, TN: 16, WM: 8 })).toMatch(/WM=8/);
    expect(tiledConfigProblem({ BM: 64, BN: 64, BK: 16, TM: 8, TN: 8, WM: 3 as 4 })).toMatch(/must be 1, 2, 4/);
    expect(tiledConfigProblem({ BM: 64, BN: 64, BK: 16, TM: 8, TN: 8, NP: true, DB: true })).toMatch(/NP/);
    expect(tiledConfigProblem({ BM: 64, BN: 64, BK: 16, TM: 8, TN: 8, U2: true })).toMatch(/U2/);
    expect(tiledConfigName({ BM: 64, BN: 128, BK: 16, TM: 8, TN: 8, WM: 8 })).toBe('64x128x16-8x8-wm8');
  });
});
