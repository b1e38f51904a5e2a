import { describe, expect, it } from 'vitest';
import { ArgumentError, type WebGpuBackend } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';
import { resolveProblem } from '../src/problem.js';
import { checkSgFlashVariant, runSgFlash, SG_FLASH_DEFAULT, SG_FLASH_FALLBACKS, sgFlashLayout, sgFlashSource, type SgFlashVariant } from '../src/webgpu/sgflash.js';
import type { AttentionOptions } from '../src/options.js';
import { emulateSubgroupMatrices } from './sg-emulate.js';
import { causalVis, type Dims, type Visible } from './oracle.js';
import { sgOracleCase } from './sg-case.js';

// The tiled subgroup-matrix kernel runs on hardware only where subgroup matrices exist
// (the H200 probe benchmarks/gpu/probes/attn-sg-sweep.ts checks it there against the CPU).
// Here its exact data flow runs on lavapipe with the matrices emulated per lane.
const backends = await backendsForTests();
const gpu = backends.find((b) => b.kind === 'webgpu') as WebGpuBackend | undefined;
// Where sync 'subgroup' relies on a converged subgroup, the emulation (subgroups as slices of
// the workgroup) needs a real barrier.
// f16 scores are multiplied in f32 here (data flow, not rounding, is what lavapipe can check).
const EMU = {
  tag: 'emulated',
  rewrite: (src: string) => emulateSubgroupMatrices(src.replaceAll('subgroupMatrixMultiply<f16>(', 'subgroupMatrixMultiply<f32>('))
    .replaceAll('subgroup_sync();', 'workgroupBarrier();')
    .replace('enable chromium_disable_uniformity_analysis;\n', '')
    .replaceAll('subgroupMatrixScalarMultiply(', 'sml_scale(') +
    'fn sml_scale(a: array<f32, 256>, s: f16) -> array<f32, 256> {\n  var c = a;\n  for (var i = 0u; i < 256u; i++) { c[i] = a[i] * f32(s); }\n  return c;\n}\n',
};

async function runCase(be: WebGpuBackend, v: Omit<SgFlashVariant, 'D' | 'sgSize'>, d: Dims, opts: AttentionOptions, vis: Visible): Promise<{ err: number; lseErr: number }> {
  return sgOracleCase(be, d, opts, vis, (q, k, vv, o) => runSgFlash(be, resolveProblem('attention', q, k, vv, o), q, k, vv, { ...v, D: d.D, sgSize: 32 }, EMU));
}

describe('tiled subgroup-matrix prefill (sgflash)', () => {
  it('generates one kernel per variant with the staging, padding and rescale asked for', () => {
    const base: SgFlashVariant = { D: 128, NSG: 4, KT: 32, stage: 'frag', pad: 8, rescale: 'lazy', tau: 8, sgSize: 32 };
    expect(() => checkSgFlashVariant({ ...base, stage: 'global', prefetch: true })).toThrow(/prefetch/);
    const lazy = sgFlashSource(base);
    expect(lazy).toContain('@workgroup_size(128)');
    expect(lazy).toContain('var<workgroup> ks: array<f16, 4352>;');
    expect(lazy).toContain('workgroupUniformLoad(&flags)');
    // O accumulators are declared once, outside every loop (a zero-init in a loop body was hoisted on the H200).
    expect(lazy.match(/var o\d: subgroup_matrix_result<f32, 16, 16>;/g)?.length).toBe(8);
    expect(lazy.indexOf('var o7:')).toBeLessThan(lazy.indexOf('for (var it'));
    const two = sgFlashSource({ ...base, rescale: 'twopass' });
    expect(two).not.toContain('workgroupUniformLoad');
    expect(two.match(/for \(var it = 0u/g)?.length).toBe(2);
    expect(sgFlashSource({ ...base, stage: 'smem' })).toContain('var<storage, read> kb: array<vec4<u32>>;');
    expect(sgFlashSource({ ...base, stage: 'global' })).not.toContain('var<workgroup> ks');
    expect(sgFlashLayout(base)).toMatchObject({ KS: 136, PS: 40, SS: 36, pInK: true });
  });

  it('the default or one of its fallbacks builds for the usual head dims within 48 KiB of workgroup memory', () => {
    for (const D of [32, 64, 96, 128, 256]) {
      const builds = [SG_FLASH_DEFAULT, ...SG_FLASH_FALLBACKS].filter((v) => {
        const full = { ...v, D, sgSize: 32 };
        try { checkSgFlashVariant(full); } catch { return false; }
        return sgFlashLayout(full).bytes <= 49152;
      });
      expect(builds.length, `D ${D}`).toBeGreaterThan(0);
    }
    expect(sgFlashLayout({ ...SG_FLASH_DEFAULT, D: 128, sgSize: 32 }).bytes).toBe(46112); // with the 32-byte rescale vote of workgroup sync
  });

  it('rejects variants it cannot build with a typed error', () => {
    const base: SgFlashVariant = { D: 128, NSG: 4, KT: 32, stage: 'frag', pad: 8, rescale: 'lazy', tau: 8, sgSize: 32 };
    expect(() => checkSgFlashVariant({ ...base, KT: 24 })).toThrow(ArgumentError);
    expect(() => checkSgFlashVariant({ ...base, NSG: 3 })).toThrow(/NSG/);
    expect(() => checkSgFlashVariant({ ...base, NSG: 2 })).toThrow(/NSG/);
    expect(() => checkSgFlashVariant({ ...base, pad: 4 })).toThrow(/pad/);
    expect(() => checkSgFlashVariant({ ...base, D: 72 })).toThrow(/D/);
    expect(() => checkSgFlashVariant({ ...base, rescale: 'restart' as 'lazy' })).toThrow(/rescale/);
    expect(() => checkSgFlashVariant({ ...base, ablate: ['nothing' as 'pv'] })).toThrow(/ablate/);
    expect(() => checkSgFlashVariant({ ...base, double: true, prefetch: true })).toThrow(/double/);
  });

  if (gpu) {
    // Small on purpose: every lane multiplies whole 16x16 matrices here (1-3 s per case on an
    // idle machine; a busy one made llvmpipe's compiles 10-20x slower).
    // What the library runs: the default's code at 4 subgroups (its first fallback; 8 subgroups
    // need D >= 64 for its 16-byte staging, twice the emulation cost) and the whole-fragment
    // staging with workgroup barriers (the last fallbacks). llvmpipe's compiles of these take
    // 10-40 s each without Mesa's shader cache, so the options (f16 scores, double buffering,
    // ...) are checked on the H200 by the probe and here only as valid WGSL.
    const window20 = (d: Dims): Visible => (_b, _h, i, j) => { const p = d.kvLength - d.S + i; return j <= p && (j > p - 20 || j < 3); };
    const cases: Array<[string, Omit<SgFlashVariant, 'D' | 'sgSize'>, Dims, AttentionOptions, (d: Dims) => Visible]> = [
      ['the default at 4 subgroups, causal GQA, queries at the end, partial last tile', { ...SG_FLASH_DEFAULT, NSG: 4 }, { B: 1, Hq: 2, Hkv: 1, S: 48, L: 96, kvLength: 80, D: 32 }, { causal: true }, causalVis],
      ['whole-fragment staging, workgroup barriers (fallback), window 20 with 3 sinks', SG_FLASH_FALLBACKS[2]!, { B: 1, Hq: 1, Hkv: 1, S: 64, L: 64, kvLength: 64, D: 32 }, { mask: { kind: 'window', window: 20, sinks: 3 } }, window20],
    ];
    for (const [name, v, d, opts, vis] of cases) {
      it(`on ${gpu.name} (matrices emulated): ${name} matches the float64 oracle`, async () => {
        const { err, lseErr } = await runCase(gpu, v, d, opts, vis(d));
        expect(err).toBeLessThan(4e-3);
        // f16 scores round S (|S| up to ~13 here, a half-ulp of 2^-8) before the log-sum-exp.
        expect(lseErr).toBeLessThan(v.scores === 'f16' ? 4e-3 : 1e-3);
      });
    }
  }
});
