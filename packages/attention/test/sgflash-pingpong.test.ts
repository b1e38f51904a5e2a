import { describe, expect, it } from 'vitest';
import { ArgumentError, tensor, type WebGpuBackend } from '@attnkit/tensor';
import { backendsForTests } from '@attnkit/tensor/testing';
import { checkSgPingPongVariant, SG_PINGPONG_DEFAULT, sgPingPongAttention, sgPingPongLayout, sgPingPongSource, type SgPingPongVariant } from '../src/webgpu/sgflash-pingpong.js';
import type { AttentionOptions } from '../src/options.js';
import { emulateSubgroupMatrices } from './sg-emulate.js';
import { causalVis, type Dims, type Visible } from './oracle.js';
import { nullBackendWgslErrors } from './null-wgsl.js';
import { sgOracleCase } from './sg-case.js';

// The ping-pong kernel runs on hardware only where subgroup matrices exist (the H200 probe
// benchmarks/gpu/probes/attn-sg-wide.ts checks it there against the CPU). Here its exact
// data flow (the two teams' staggered phases, the shared single-buffered K/V tiles, the
// rescale of the team that ran its softmax) runs on lavapipe with the matrices emulated per
// lane; the emulation votes for a rescale at every step, so that path runs every time.
const backends = await backendsForTests();
const cpu = backends.find((b) => b.kind === 'cpu')!;
const gpu = backends.find((b) => b.kind === 'webgpu') as WebGpuBackend | undefined;
const EMU = { tag: 'emulated', rewrite: emulateSubgroupMatrices };
type Shape = Omit<SgPingPongVariant, 'D' | 'sgSize'>;
const base: SgPingPongVariant = { ...SG_PINGPONG_DEFAULT, D: 128, sgSize: 32 };

describe('ping-pong subgroup-matrix prefill (sgflash-pingpong)', () => {
  it('generates one kernel: each phase once, teams staggered by one step, three barriers per key tile', () => {
    const src = sgPingPongSource(base);
    expect(src).toContain('@workgroup_size(256)');
    expect(src.match(/let q[01]_\d+ = subgroupMatrixLoad/g)?.length).toBe(16);
    expect(src.match(/var o[01]_\d: subgroup_matrix_result<f32, 16, 16>;/g)?.length).toBe(8);
    const loop = src.slice(src.indexOf('for (var s = 0u'), src.indexOf('if (part == 0u) { rowf[wr] = select'));
    // Q·Kᵀ: 8 K fragments for 16 multiplies; P·V: 4 V fragments per key block of 16, 16 multiplies.
    expect(loop.match(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>\(&ks/g)?.length).toBe(8);
    expect(loop.match(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>\(&vs/g)?.length).toBe(8);
    expect(loop.match(/subgroupMatrixMultiply(Accumulate\(|<f32>\()/g)?.length).toBe(32);
    expect(loop).toContain('let ph = s - team;');
    // Outside the rarely taken rescale: the step's vote (a uniform load) and the staging barrier.
    const rescale = loop.indexOf('if (fl[0]');
    const outside = loop.slice(0, rescale) + loop.slice(loop.indexOf('if ((s & 1u) == 1u)'));
    expect(outside.match(/workgroupBarrier\(\)/g)?.length).toBe(1);
    expect(outside.match(/workgroupUniformLoad/g)?.length).toBe(1);
    expect(sgPingPongLayout(base)).toMatchObject({ KS: 136, PS: 40, SS: 40, rows: 128, bytes: 48672 });
    expect(sgPingPongSource({ ...base, order: 'pv-qk' }).indexOf('let p0 = subgroupMatrixLoad')).toBeLessThan(sgPingPongSource({ ...base, order: 'pv-qk' }).indexOf('let kf0 = subgroupMatrixLoad'));
  });

  const probeVariants: SgPingPongVariant[] = [base, { ...base, D: 64, NSG: 4, order: 'pv-qk', spad: 4 }];
  for (const v of probeVariants) {
    it(`is valid WGSL for Tint (Dawn null backend): ${JSON.stringify(v)}`, () => {
      const { errors, why } = nullBackendWgslErrors(v, 'pingpong');
      expect(errors, why).toEqual([]);
    });
  }

  it('rejects variants it cannot build with a typed error', () => {
    expect(() => checkSgPingPongVariant({ ...base, NSG: 2 })).toThrow(ArgumentError);
    expect(() => checkSgPingPongVariant({ ...base, D: 80 })).toThrow(/D/);
    expect(() => checkSgPingPongVariant({ ...base, pad: 4 })).toThrow(/pad/);
    expect(() => checkSgPingPongVariant({ ...base, spad: 2 })).toThrow(/spad/);
    expect(() => checkSgPingPongVariant({ ...base, tau: 13 })).toThrow(/tau/);
    expect(() => checkSgPingPongVariant({ ...base, sgSize: 8 })).toThrow(/subgroup size/);
  });

  it('declines problems it cannot take, saying why', () => {
    const mk = (be: typeof cpu, dtype: 'f16' | 'f32', S: number, L: number) =>
      [tensor(be, new Float32Array(S * 32), [1, 1, S, 32], dtype), tensor(be, new Float32Array(L * 32), [1, 1, L, 32], dtype), tensor(be, new Float32Array(L * 32), [1, 1, L, 32], dtype)] as const;
    expect(() => sgPingPongAttention(...mk(cpu, 'f16', 32, 32))).toThrow(ArgumentError);
    if (gpu) {
      expect(() => sgPingPongAttention(...mk(gpu, 'f16', 32, 32))).toThrow(/subgroup-matrix configs/);
      expect(() => sgPingPongAttention(...mk(gpu, 'f32', 32, 32), {}, undefined, EMU)).toThrow(/f16 inputs/);
      expect(() => sgPingPongAttention(...mk(gpu, 'f16', 24, 32), {}, undefined, EMU)).toThrow(/multiple of 16/);
      expect(() => sgPingPongAttention(...mk(gpu, 'f16', 32, 48), { kvLength: 40 }, { ...base, NSG: 4 }, EMU)).toThrow(/capacity/);
      // 8 subgroups need more than lavapipe's 32 KB of workgroup memory.
      expect(() => sgPingPongAttention(...mk(gpu, 'f16', 32, 32), {}, base, EMU)).toThrow(/workgroup memory/);
    }
  });

  if (gpu) {
    // 4 subgroups (two teams of one pair): 8 need more than lavapipe's 32 KB of workgroup
    // memory. D32 keeps llvmpipe's compile of the emulated kernel short.
    const P4: Shape = { ...SG_PINGPONG_DEFAULT, NSG: 4 };
    const cases: Array<[string, Shape, Dims, AttentionOptions, (d: Dims) => Visible]> = [
      ['causal GQA, the last team half past S', P4, { B: 1, Hq: 2, Hkv: 1, S: 48, L: 64, kvLength: 48, D: 32 }, { causal: true }, causalVis],
      ['window 20 with 3 sinks, P·V before Q·Kᵀ', { ...P4, order: 'pv-qk' }, { B: 1, Hq: 1, Hkv: 1, S: 64, L: 96, kvLength: 96, D: 32 },
        { mask: { kind: 'window', window: 20, sinks: 3 } }, (d) => (_b, _h, i, j) => { const p = d.kvLength - d.S + i; return j <= p && (j > p - 20 || j < 3); }],
      ['batch 2, GQA, causal with odd kvLength, queries at the end', P4, { B: 2, Hq: 2, Hkv: 1, S: 32, L: 64, kvLength: 45, D: 32 }, { causal: true }, causalVis],
    ];
    for (const [name, v, d, opts, vis] of cases) {
      it(`on ${gpu.name} (matrices emulated): ${name} matches the float64 oracle`, async () => {
        const { err, lseErr } = await sgOracleCase(gpu, d, opts, vis(d), (q, k, vv, o) => sgPingPongAttention(q, k, vv, o, v, EMU));
        expect(err).toBeLessThan(4e-3);
        expect(lseErr).toBeLessThan(1e-3);
      });
    }
  }
});
