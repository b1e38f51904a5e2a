import { describe, expect, it } from 'vitest';
import { ArgumentError, CpuBackend, matmul, random, type Backend, type Tensor } from '@attnkit/tensor';
import { compareClose, gpuForTests } from '@attnkit/tensor/testing';
import type { MatmulParams } from '../src/backend.js';
import type { WebGpuBackend } from '../src/webgpu/backend.js';
import {
  chooseVariant, GEMV_DEFAULT, matmulWith, parseVariant, SGSTAGED_DEFAULT, TILED_LARGE, TILED_SMALL, variantName, type MatmulVariant,
} from '../src/webgpu/kernels/matmul.js';
import { sgmatrixSource } from '../src/webgpu/kernels/matmul-sgmatrix.js';
import { sgstagedSource } from '../src/webgpu/kernels/matmul-sgstaged.js';

// Every matmul variant lavapipe can run, forced explicitly, against the float64 CPU
// reference on odd shapes, both float dtypes, all transposes and batches.
const gpu = (await gpuForTests()) as WebGpuBackend | null;
const cpu = new CpuBackend();

type DT = 'f32' | 'f16';
interface Case { M: number; K: number; N: number; ta?: boolean; tb?: boolean; da?: DT; db?: DT; batchA?: number[]; batchB?: number[] }

function params(c: Case): MatmulParams {
  const nA = (c.batchA ?? []).reduce((x, y) => x * y, 1);
  const nB = (c.batchB ?? []).reduce((x, y) => x * y, 1);
  const batchShape = (c.batchA ?? []).length >= (c.batchB ?? []).length ? c.batchA ?? [] : c.batchB ?? [];
  return { transA: !!c.ta, transB: !!c.tb, outDtype: 'f32', batch: Math.max(nA, nB), batchA: nA, batchB: nB, M: c.M, N: c.N, K: c.K, outShape: [...batchShape, c.M, c.N] };
}

function operands(be: Backend, c: Case): [Tensor, Tensor] {
  const a = random(be, [...(c.batchA ?? []), ...(c.ta ? [c.K, c.M] : [c.M, c.K])], { seed: 11 + c.M, dtype: c.da ?? 'f32' });
  const b = random(be, [...(c.batchB ?? []), ...(c.tb ? [c.N, c.K] : [c.K, c.N])], { seed: 29 + c.N, dtype: c.db ?? 'f32' });
  return [a, b];
}

async function check(be: WebGpuBackend, v: MatmulVariant, c: Case): Promise<void> {
  const [a, b] = operands(be, c);
  const [ca, cb] = operands(cpu, c);
  const got = await matmulWith(be, a, b, params(c), v).toArray();
  const want = await matmul(ca, cb, { transA: c.ta, transB: c.tb }).toArray();
  // f32 accumulation over K terms of size ~1: error grows like sqrt(K) ulps.
  const rep = compareClose(got, want, 2e-5 * Math.sqrt(c.K) + 1e-6, 1e-5);
  expect(rep.message, `${variantName(v)} ${JSON.stringify(c)}`).toBe('ok');
}

const oddShapes: Case[] = [
  { M: 1, K: 7, N: 1 },
  { M: 7, K: 63, N: 65 },
  { M: 65, K: 129, N: 127 },
  { M: 129, K: 65, N: 63 },
  { M: 127, K: 1, N: 129 },
];

const layouts: Array<Pick<Case, 'ta' | 'tb' | 'da' | 'db'>> = [
  {},
  { ta: true },
  { tb: true, db: 'f16' },
  { ta: true, tb: true, da: 'f16', db: 'f16' },
  { da: 'f16' },
];

const tiledVariants: MatmulVariant[] = [
  { kind: 'generic' },
  { kind: 'tiled', config: TILED_LARGE },
  { kind: 'tiled', config: TILED_SMALL },
  { kind: 'tiled', config: { BM: 64, BN: 128, BK: 16, TM: 4, TN: 8 } },
  { kind: 'tiled', config: { ...TILED_LARGE, DB: true } },
  { kind: 'tiled', config: { BM: 32, BN: 32, BK: 4, TM: 4, TN: 4, DB: true } },
];

describe.runIf(gpu)('matmul variants on the WebGPU backend', () => {
  const be = gpu!;
  describe.each(tiledVariants.map((v) => [variantName(v), v] as const))('%s', (_, v) => {
    it.each(oddShapes.map((s) => [`${s.M}x${s.K}x${s.N}`, s] as const))('odd shape %s in every layout', async (_, s) => {
      for (const l of layouts) await check(be, v, { ...s, ...l });
    });
    it('shapes that divide the tile (unchecked loads and stores)', async () => {
      await check(be, v, { M: 128, K: 32, N: 128 });
      await check(be, v, { M: 128, K: 64, N: 128, ta: true, tb: true, da: 'f16' });
    });
    it('batches, with either operand broadcast', async () => {
      await check(be, v, { M: 9, K: 20, N: 33, batchA: [3], batchB: [3] });
      await check(be, v, { M: 9, K: 20, N: 33, batchA: [2, 2], tb: true });
      await check(be, v, { M: 9, K: 21, N: 33, batchB: [3], ta: true, db: 'f16' });
    });
  });

  describe('gemv (M <= 16, x @ W^T, 8 rows of x per dispatch)', () => {
    const v: MatmulVariant = { kind: 'gemv', config: GEMV_DEFAULT };
    it.each([1, 2, 3, 7, 8])('M=%i with f16 and f32 weights, N not a multiple of R', async (M) => {
      await check(be, v, { M, K: 136, N: 67, tb: true, db: 'f16' });
      await check(be, v, { M, K: 64, N: 65, tb: true });
      await check(be, v, { M, K: 8, N: 1, tb: true, da: 'f16', db: 'f16' });
    });
    it.each([9, 16])('M=%i goes in blocks of 8 rows (a partial last block)', async (M) => {
      await check(be, v, { M, K: 40, N: 37, tb: true, db: 'f16' });
    });
    it('other row blocks and workgroup sizes', async () => {
      await check(be, { kind: 'gemv', config: { R: 1, WG: 32 } }, { M: 3, K: 1032, N: 7, tb: true, db: 'f16' });
      await check(be, { kind: 'gemv', config: { R: 8, WG: 64 } }, { M: 1, K: 256, N: 129, tb: true, db: 'f16' });
    });
    it('batches with the weight broadcast', async () => {
      await check(be, v, { M: 2, K: 16, N: 33, tb: true, db: 'f16', batchA: [3] });
      await check(be, v, { M: 1, K: 16, N: 9, tb: true, batchA: [2], batchB: [2] });
      await check(be, v, { M: 11, K: 16, N: 9, tb: true, db: 'f16', batchA: [2], batchB: [2] });
    });
    it('rejects shapes it does not handle', () => {
      const [a, b] = operands(be, { M: 17, K: 16, N: 4, tb: true });
      expect(() => matmulWith(be, a, b, params({ M: 17, K: 16, N: 4, tb: true }), v)).toThrow(ArgumentError);
      const [a2, b2] = operands(be, { M: 1, K: 12, N: 4, tb: true });
      expect(() => matmulWith(be, a2, b2, params({ M: 1, K: 12, N: 4, tb: true }), v)).toThrow(/K % 8/);
      const [a3, b3] = operands(be, { M: 1, K: 16, N: 4 });
      expect(() => matmulWith(be, a3, b3, params({ M: 1, K: 16, N: 4 }), v)).toThrow(ArgumentError);
    });
  });

  it('refuses subgroup matrices where the adapter has none, or on f32 operands', () => {
    const c: Case = { M: 128, K: 64, N: 128, da: 'f16', db: 'f16' };
    const [a, b] = operands(be, c);
    for (const v of [parseVariant('sgmatrix'), parseVariant('sgstaged')]) {
      if (be.caps.subgroupMatrixConfigs.length === 0) expect(() => matmulWith(be, a, b, params(c), v)).toThrow(/subgroup matrices/);
      const [a32, b32] = operands(be, { M: 128, K: 64, N: 128 });
      expect(() => matmulWith(be, a32, b32, params({ M: 128, K: 64, N: 128 }), v)).toThrow(ArgumentError);
    }
  });

  it('chooses gemv for decode, tiled for large and small outputs, generic for tiny ones', () => {
    const pick = (c: Case) => { const [a, b] = operands(be, c); return chooseVariant(be, a, b, params(c)).kind; };
    expect(pick({ M: 1, K: 64, N: 64, tb: true, db: 'f16' })).toBe('gemv');
    expect(pick({ M: 8, K: 64, N: 64, tb: true })).toBe('gemv');
    expect(pick({ M: 16, K: 64, N: 256, tb: true, db: 'f16' })).toBe('gemv');
    expect(pick({ M: 17, K: 64, N: 256, tb: true, db: 'f16' })).toBe('tiled');
    expect(pick({ M: 1, K: 63, N: 4096, tb: true })).toBe('tiled');
    expect(pick({ M: 256, K: 64, N: 256 })).toBe('tiled');
    expect(pick({ M: 7, K: 64, N: 9 })).toBe('generic');
  });

  it('chooses staged subgroup matrices only on an adapter that has them with robustness off', () => {
    // The same adapter seen three ways: as it is, with f16 subgroup matrices, and with them and robustness off.
    const sg = [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }];
    const as = (caps: object, robustAccess: boolean) => ({ caps: { ...be.caps, shaderF16: true, maxComputeWorkgroupStorageSize: 49152, ...caps }, robustAccess }) as unknown as WebGpuBackend;
    const c: Case = { M: 256, K: 256, N: 256, da: 'f16', db: 'f16' };
    const [a, b] = operands(be, c);
    expect(chooseVariant(as({ subgroupMatrixConfigs: [] }, false), a, b, params(c)).kind).toBe('tiled');
    expect(chooseVariant(as({ subgroupMatrixConfigs: sg }, true), a, b, params(c)).kind).toBe('sgmatrix');
    expect(chooseVariant(as({ subgroupMatrixConfigs: sg }, false), a, b, params(c))).toEqual({ kind: 'sgstaged', config: SGSTAGED_DEFAULT });
    // a shape the 256x128 staged tile does not divide falls back
    const odd: Case = { M: 384, K: 256, N: 256, da: 'f16', db: 'f16' };
    const [a2, b2] = operands(be, odd);
    expect(chooseVariant(as({ subgroupMatrixConfigs: sg }, false), a2, b2, params(odd)).kind).not.toBe('sgstaged');
  });

  it('writes into a given f32 output and refuses one of the wrong shape or dtype', async () => {
    const c: Case = { M: 33, K: 17, N: 31 };
    const [a, b] = operands(be, c);
    const [ca, cb] = operands(cpu, c);
    const want = await matmul(ca, cb).toArray();
    const v = parseVariant('tiled');
    const into = be.empty('test', 'f32', [33, 31]);
    const got = matmulWith(be, a, b, params(c), v, into);
    expect(got).toBe(into);
    expect(compareClose(await into.toArray(), want, 2e-4, 1e-5).message).toBe('ok');
    expect(() => matmulWith(be, a, b, params(c), v, be.empty('test', 'f32', [31, 33]))).toThrow(/into.*an f32 tensor of shape \[33, 31\]/);
    expect(() => matmulWith(be, a, b, params(c), v, be.empty('test', 'f16', [33, 31]))).toThrow(ArgumentError);
  });

  it('ATTNKIT_MATMUL_VARIANT forces a variant through the public matmul', async () => {
    const c: Case = { M: 33, K: 17, N: 31 };
    const [a, b] = operands(be, c);
    const [ca, cb] = operands(cpu, c);
    const want = await matmul(ca, cb).toArray();
    try {
      for (const spec of ['generic', 'tiled:32,32,4,4,4', 'tiled:64,32,8,4,4', 'tiled:64,64,8,4,4,1']) {
        process.env.ATTNKIT_MATMUL_VARIANT = spec;
        expect(compareClose(await matmul(a, b).toArray(), want, 2e-4, 1e-5).message, spec).toBe('ok');
      }
      process.env.ATTNKIT_MATMUL_VARIANT = 'gemv';
      expect(() => matmul(a, b)).toThrow(ArgumentError);
    } finally {
      delete process.env.ATTNKIT_MATMUL_VARIANT;
    }
  });
});

describe('variant specs', () => {
  it('parses every kind and its configuration', () => {
    expect(parseVariant('generic')).toEqual({ kind: 'generic' });
    expect(parseVariant('tiled:64,32,8,4,4')).toEqual({ kind: 'tiled', config: { BM: 64, BN: 32, BK: 8, TM: 4, TN: 4 } });
    expect(parseVariant('tiled:64,32,8,4,4,1')).toEqual({ kind: 'tiled', config: { BM: 64, BN: 32, BK: 8, TM: 4, TN: 4, DB: true } });
    expect(parseVariant('sgmatrix:2,4,2,2,2')).toEqual({ kind: 'sgmatrix', config: { SGR: 2, SGC: 4, FR: 2, FC: 2, KU: 2 } });
    expect(parseVariant('gemv:4,64')).toEqual({ kind: 'gemv', config: { R: 4, WG: 64 } });
    expect(parseVariant('sgstaged:2,2,4,4,32')).toEqual({ kind: 'sgstaged', config: { SGR: 2, SGC: 2, FR: 4, FC: 4, BK: 32 } });
    expect(parseVariant('sgstaged:2,4,4,2,32,8,0')).toEqual({ kind: 'sgstaged', config: { SGR: 2, SGC: 4, FR: 4, FC: 2, BK: 32, PAD: 8, DB: false } });
    expect(parseVariant('sgstaged:4,4,2,2,32,8,1,1')).toEqual({ kind: 'sgstaged', config: { SGR: 4, SGC: 4, FR: 2, FC: 2, BK: 32, PAD: 8, DB: true, FP: true } });
    expect(() => parseVariant('sgstaged:2,2,4,4,32,4')).toThrow(/multiple of 8/);
  });
  it('rejects unknown kinds and inconsistent configurations with ArgumentError', () => {
    expect(() => parseVariant('fast')).toThrow(ArgumentError);
    expect(() => parseVariant('tiled:128,128,8,8')).toThrow(/5 positive integers/);
    expect(() => parseVariant('tiled:128,128,8,8,8,1,1')).toThrow(ArgumentError);
    expect(() => parseVariant('tiled:128,128,8,6,8')).toThrow(/multiples of 4/);
    expect(() => parseVariant('tiled:256,256,8,4,4')).toThrow(/threads/);
    expect(() => parseVariant('gemv:4,96')).toThrow(/power-of-two/);
    expect(() => parseVariant('sgstaged:2,2,4,4,24')).toThrow(/multiple of 16/);
  });
});

describe('subgroup-matrix WGSL (compiles only where the adapter has subgroup matrices)', () => {
  const cfg = { SGR: 2, SGC: 2, FR: 4, FC: 2, KU: 2 };
  const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
  it('declares the extensions and a workgroup of whole subgroups', () => {
    const src = sgmatrixSource({ transA: false, transB: true }, cfg, 32);
    expect(src.startsWith('enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;')).toBe(true);
    expect(src).toContain('@workgroup_size(128)');
    expect(src).toContain('@builtin(subgroup_id) sg: u32');
  });
  it('loads FR + FC fragments per K step, reuses them in FR x FC multiplies, stores FR x FC results', () => {
    const src = sgmatrixSource({ transA: false, transB: false }, cfg, 32);
    expect(count(src, /subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>/g)).toBe(cfg.FR * cfg.KU);
    expect(count(src, /subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>/g)).toBe(cfg.FC * cfg.KU);
    expect(count(src, /subgroupMatrixMultiplyAccumulate\(/g)).toBe(cfg.FR * cfg.FC * cfg.KU);
    expect(count(src, /subgroupMatrixStore\(/g)).toBe(cfg.FR * cfg.FC);
    expect(count(src, /var acc\d+_\d+: subgroup_matrix_result<f32, 16, 16>/g)).toBe(cfg.FR * cfg.FC);
    expect(src).toContain('k += 32u');
  });
  it('maps transposes onto the column-major flag and stride of each load', () => {
    const nn = sgmatrixSource({ transA: false, transB: false }, cfg, 32);
    expect(nn).toMatch(/left<f16, 16, 16>>\(&a, aOff \+ \(row0 \+ 0u\) \* u\.K \+ k \+ 0u, false, u\.K\)/);
    expect(nn).toMatch(/right<f16, 16, 16>>\(&b, bOff \+ \(k \+ 0u\) \* u\.N \+ col0 \+ 0u, false, u\.N\)/);
    const tt = sgmatrixSource({ transA: true, transB: true }, cfg, 32);
    expect(tt).toMatch(/left<f16, 16, 16>>\(&a, aOff \+ \(k \+ 0u\) \* u\.M \+ row0 \+ 0u, true, u\.M\)/);
    expect(tt).toMatch(/right<f16, 16, 16>>\(&b, bOff \+ \(col0 \+ 0u\) \* u\.K \+ k \+ 0u, true, u\.K\)/);
  });
  it('stages nothing in workgroup memory and has no barriers (the staged form crashes the driver)', () => {
    const src = sgmatrixSource({ transA: false, transB: true }, cfg, 32);
    expect(src).not.toContain('var<workgroup>');
    expect(src).not.toContain('Barrier');
  });
});

describe('staged subgroup-matrix WGSL (compiles only where the adapter has subgroup matrices)', () => {
  const cfg = { SGR: 2, SGC: 2, FR: 4, FC: 4, BK: 32 };
  const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
  it('double-buffers padded BM x BK and BN x BK tiles with one barrier per K slice', () => {
    const src = sgstagedSource({ transA: false, transB: true }, cfg, 32);
    // 128 rows x (32 + 8 padding) halves, two stages
    expect(src).toContain('var<workgroup> ta: array<f16, 10240>;');
    expect(src).toContain('var<workgroup> tb: array<f16, 10240>;');
    expect(count(src, /workgroupBarrier\(\);/g)).toBe(1);
    expect(src).toContain('@workgroup_size(128)');
    expect(count(src, /subgroupMatrixMultiplyAccumulate\(/g)).toBe(32); // 16 per 16-wide step, unrolled
    expect(count(src, /subgroupMatrixStore\(/g)).toBe(16);
  });
  it('keeps two barriers with a single staging buffer', () => {
    const src = sgstagedSource({ transA: false, transB: false }, { ...cfg, DB: false, PAD: 0 }, 32);
    expect(src).toContain('var<workgroup> ta: array<f16, 4096>;');
    expect(count(src, /workgroupBarrier\(\);/g)).toBe(2);
  });
  it('loads 16 bytes per global read and prefetches the next slice while multiplying', () => {
    const src = sgstagedSource({ transA: false, transB: false }, cfg, 32);
    expect(src).toContain('var<storage, read> a: array<vec4<u32>>;');
    // 128 x 32 halves = 512 16-byte loads over 128 invocations: 4 registers per side
    expect(count(src, /var ar\d+: vec4<u32>;/g)).toBe(4);
    expect(src).toContain('ar0 = a[(aOff + (r0 + r) * u.K + k1 + cc) / 8u];');
  });
  it('with FP issues the fragment loads of the next step before the multiplies of this one', () => {
    const src = sgstagedSource({ transA: false, transB: false }, { ...cfg, FP: true }, 32);
    const loadNext = src.indexOf('let l0_1 = ');
    const firstMma = src.indexOf('acc0_0 = subgroupMatrixMultiplyAccumulate(l0_0, q0_0, acc0_0)');
    expect(loadNext).toBeGreaterThan(0);
    expect(firstMma).toBeGreaterThan(loadNext);
    expect(src).toContain('acc3_3 = subgroupMatrixMultiplyAccumulate(l3_1, q3_1, acc3_3)');
  });
  it('keeps each operand in its own layout and loads fragments with the matching major order and padded stride', () => {
    const nt = sgstagedSource({ transA: false, transB: true }, cfg, 32);
    expect(nt).toContain('subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&ta, sta + (sr + 0u) * 40u + 16u, false, 40u)');
    expect(nt).toContain('subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&tb, stb + (sc + 0u) * 40u + 16u, true, 40u)');
    const tn = sgstagedSource({ transA: true, transB: false }, cfg, 32);
    expect(tn).toContain('subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&ta, sta + (16u) * 136u + sr + 16u, true, 136u)');
    expect(tn).toContain('subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&tb, stb + (16u) * 136u + sc + 16u, false, 136u)');
    expect(tn).toContain('ar0 = a[(aOff + (k0 + r) * u.M + r0 + cc) / 8u];');
    expect(tn).toContain('br0 = b[(bOff + (k0 + r) * u.N + c0 + cc) / 8u];');
  });
});
