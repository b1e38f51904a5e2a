import { describe, expect, it } from 'vitest';
import { ArgumentError, tensor, type WebGpuBackend } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';
import { checkSgWideVariant, SG_WIDE_DEFAULT, sgWideAttention, sgWideChoose, sgWideLayout, sgWideSource, type SgWideVariant } from '../src/webgpu/sgflash-wide.js';
import type { AttentionOptions } from '../src/options.js';
import { resolveProblem } from '../src/problem.js';
import { emulateSubgroupMatrices } from './sg-emulate.js';
import { causalVis, type Dims, type Visible } from './oracle.js';
import { nullBackendWgslErrors } from './null-wgsl.js';
import { sgOracleCase } from './sg-case.js';

// The wide subgroup-matrix kernel runs on hardware only where subgroup matrices exist (the
// H200 probe benchmarks/gpu/probes/attn-sg-wide.ts checks it there against the CPU). Here
// its exact data flow runs on lavapipe with the matrices emulated per lane; the emulation
// votes for a rescale on every tile, so the O-through-workgroup-memory path runs each time.
const backends = await backendsForTests();
const cpu = backends.find((b) => b.kind === 'cpu')!;
const gpu = backends.find((b) => b.kind === 'webgpu') as WebGpuBackend | undefined;
const EMU = { tag: 'emulated', rewrite: emulateSubgroupMatrices };
type Shape = Omit<SgWideVariant, 'D' | 'sgSize'>;

async function runCase(be: WebGpuBackend, v: Shape, d: Dims, opts: AttentionOptions, vis: Visible): Promise<{ err: number; lseErr: number }> {
  return sgOracleCase(be, d, opts, vis, (q, k, vv, o) => sgWideAttention(q, k, vv, o, v, EMU));
}

const base: SgWideVariant = { D: 128, NSG: 8, KT: 32, pad: 8, tau: 8, lookahead: true, sgSize: 32 };

describe('wide subgroup-matrix prefill (sgflash-wide)', () => {
  it('generates one kernel per variant: pairs share K and V fragments, three barriers per key tile', () => {
    const src = sgWideSource(base);
    expect(src).toContain('@workgroup_size(256)');
    // 2 row blocks x 8 d fragments of Q resident, 2 x 4 O result fragments per subgroup.
    expect(src.match(/let q[01]_\d+ = subgroupMatrixLoad/g)?.length).toBe(16);
    expect(src.match(/var o[01]_\d: subgroup_matrix_result<f32, 16, 16>;/g)?.length).toBe(8);
    expect(src.indexOf('var o1_3:')).toBeLessThan(src.indexOf('for (var it'));
    // Every K fragment loaded in Q·Kᵀ feeds two multiplies, every V fragment in P·V two.
    const loop = src.slice(src.indexOf('for (var it'), src.indexOf('if (part == 0u) { rowf[wr] = select'));
    expect(loop.match(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>\(&ks/g)?.length).toBe(8);
    expect(loop.match(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>\(&vs/g)?.length).toBe(8);
    expect(loop.match(/subgroupMatrixMultiply(Accumulate\(|<f32>\()/g)?.length).toBe(32);
    // Outside the rarely taken rescale branch: scores ready, P ready (uniform load), V dead.
    const outsideRescale = loop.slice(0, loop.indexOf('if (fl[0]')) + loop.slice(loop.indexOf('let p0 = subgroupMatrixLoad'));
    expect(outsideRescale.match(/workgroupBarrier\(\)/g)?.length).toBe(2);
    expect(outsideRescale.match(/workgroupUniformLoad/g)?.length).toBe(1);
    expect(sgWideLayout(base)).toMatchObject({ KS: 136, PS: 40, SS: 36, bytes: 46624 });
    expect(sgWideSource({ ...base, vGlobal: true })).not.toContain('var<workgroup> vs');
    const own = sgWideSource({ ...base, qk: 'own-rows' });
    expect(own.match(/let qh_\d+ = subgroupMatrixLoad/g)?.length).toBe(8);
    expect(own).not.toContain('let q1_0');
  });

  // Lavapipe has no subgroup matrices; Dawn's null backend validates the real WGSL (the
  // emulated runs below replace every matrix call), one module per child process.
  // The default (what the probe times), the three-barrier schedule with fragment staging and
  // the overlapped schedule ('b2o').
  const probeVariants: SgWideVariant[] = [
    { ...SG_WIDE_DEFAULT, D: 128, sgSize: 32 },
    { ...base, D: 64, NSG: 4, stage: 'frag', lookahead: 'short', qk: 'own-rows', expF16: true },
    { ...SG_WIDE_DEFAULT, D: 128, sgSize: 32, sched: 'b2o' },
  ];
  for (const v of probeVariants) {
    it(`is valid WGSL for Tint (Dawn null backend): ${JSON.stringify(v)}`, () => {
      const { errors, why } = nullBackendWgslErrors(v);
      expect(errors, why).toEqual([]);
    });
  }

  it('rejects variants it cannot build with a typed error', () => {
    expect(() => checkSgWideVariant({ ...base, KT: 48 })).toThrow(ArgumentError);
    expect(() => checkSgWideVariant({ ...base, NSG: 2 })).toThrow(/NSG/);
    expect(() => checkSgWideVariant({ ...base, pad: 4 })).toThrow(/pad/);
    expect(() => checkSgWideVariant({ ...base, D: 80 })).toThrow(/D/);
    expect(() => checkSgWideVariant({ ...base, D: 256 })).toThrow(/D/);
    expect(() => checkSgWideVariant({ ...base, tau: 20 })).toThrow(/tau/);
    expect(() => checkSgWideVariant({ ...base, qkEarly: true })).toThrow(/qkEarly/);
    expect(() => checkSgWideVariant({ ...base, sched: 'b2o', lookahead: 'short' })).toThrow(/sched/);
    expect(() => checkSgWideVariant({ ...base, sched: 'b2o' })).not.toThrow();
    expect(() => checkSgWideVariant({ ...base, spad: 2 })).toThrow(/spad/);
    expect(() => checkSgWideVariant({ ...base, NSG: 4, group: 4 })).toThrow(/NSG/);
    expect(() => checkSgWideVariant({ ...base, NSG: 16, group: 4, D: 96 })).toThrow(/D/);
    expect(sgWideLayout({ ...base, NSG: 16, group: 4 }).bytes).toBe(sgWideLayout(base).bytes + 32);
    // 'frag' staging: 16 fragments per tile over 8 subgroups is fine, 12 over 8 is not whole.
    expect(() => checkSgWideVariant({ ...base, stage: 'frag' })).not.toThrow();
    expect(() => checkSgWideVariant({ ...base, D: 96, stage: 'frag' })).toThrow(/stage/);
  });

  it('declines problems it cannot take, saying why', async () => {
    const mk = (be: typeof cpu, dtype: 'f16' | 'f32', S: number, L: number) =>
      [tensor(be, new Float32Array(S * 32), [1, 1, S, 32], dtype), tensor(be, new Float32Array(L * 32), [1, 1, L, 32], dtype), tensor(be, new Float32Array(L * 32), [1, 1, L, 32], dtype)] as const;
    expect(() => sgWideAttention(...mk(cpu, 'f16', 32, 32))).toThrow(ArgumentError);
    if (gpu) {
      expect(() => sgWideAttention(...mk(gpu, 'f16', 32, 32))).toThrow(/subgroup-matrix configs/);
      expect(() => sgWideAttention(...mk(gpu, 'f32', 32, 32), {}, undefined, EMU)).toThrow(/f16 inputs/);
      expect(() => sgWideAttention(...mk(gpu, 'f16', 24, 32), {}, undefined, EMU)).toThrow(/multiple of 16/);
      // kvLength 40 rounds up to 64 keys, past a capacity of 48.
      expect(() => sgWideAttention(...mk(gpu, 'f16', 32, 48), { kvLength: 40 }, { ...base, NSG: 4 }, EMU)).toThrow(/capacity/);
      // The chooser names why when the adapter has no subgroup matrices.
      const [cq, ck, cv] = mk(gpu, 'f16', 32, 32);
      expect(sgWideChoose(gpu, resolveProblem('attention', cq, ck, cv)).why).toMatch(/subgroup-matrix configs/);
      // 8 subgroups with a staged V need more than lavapipe's 32 KB of workgroup memory.
      expect(() => sgWideAttention(...mk(gpu, 'f16', 32, 32), {}, { ...base, NSG: 8 }, EMU)).toThrow(/workgroup memory/);
    }
  });

  if (gpu) {
    // Small on purpose: every lane multiplies whole 16x16 matrices in the emulation.
    // The other options are checked on the H200 by the probe (each variant against the
    // float64 CPU reference and the library's kernel); here they would cost minutes.
    // The default's code at 4 subgroups (8 need more than lavapipe's 32 KB of workgroup
    // memory; 4 is also what an adapter with less would run), at D32: with D64, or with the
    // other options, llvmpipe took 6-90 s to build one emulated kernel. D64/D128 and the
    // options are checked as WGSL above and, every variant, on the H200 by the probe.
    const DEF4: Shape = { ...SG_WIDE_DEFAULT, NSG: 4 };
    const cases: Array<[string, Shape, Dims, AttentionOptions, (d: Dims) => Visible]> = [
      ['the default at 4 subgroups, causal GQA, last pair half past S', DEF4,
        { B: 1, Hq: 2, Hkv: 1, S: 48, L: 64, kvLength: 48, D: 32 }, { causal: true }, causalVis],
      ['the default at 4 subgroups, window 20 with 3 sinks', DEF4,
        { B: 1, Hq: 1, Hkv: 1, S: 64, L: 64, kvLength: 64, D: 32 },
        { mask: { kind: 'window', window: 20, sinks: 3 } }, (d) => (_b, _h, i, j) => { const p = d.kvLength - d.S + i; return j <= p && (j > p - 20 || j < 3); }],
      ['the default at 4 subgroups, batch 2, GQA, causal with odd kvLength, queries at the end', DEF4,
        { B: 2, Hq: 2, Hkv: 1, S: 32, L: 64, kvLength: 45, D: 32 }, { causal: true }, causalVis],
    ];
    for (const [name, v, d, opts, vis] of cases) {
      it(`on ${gpu.name} (matrices emulated): ${name} matches the float64 oracle`, async () => {
        const { err, lseErr } = await runCase(gpu, v, d, opts, vis(d));
        expect(err).toBeLessThan(4e-3);
        expect(lseErr).toBeLessThan(1e-3);
      });
    }
  }
});
