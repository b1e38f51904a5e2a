import { attention, blockSparseMask, configureSgPrefill, decode, hasF16SubgroupMatrix, setFlashF32Enabled, setPrefillPath, sgPrefillConfig, tunePlainPrefill, type SgInit, type SgSync } from '@attnkit/attention';
import { CpuBackend, mulberry32, random, tensor, type Backend, type Tensor } from '@attnkit/tensor';
import { peerKey, timeIt, withPeer, type BenchRow, type Suite, type SuiteContext } from '../harness.js';

// @attnkit/attention beside PyTorch SDPA (B1 H32 S4096 D128 on the H200).
// FLOPs: 4*B*H*S*L*D for dense prefill; causal counts half of that (what PyTorch's
// peers usually report). Decode bandwidth: the K and V bytes read, 2*B*Hkv*L*D*bytes.
// Block-sparse rows take our own dense run of the same kernel (every block listed) as peer.

interface Shape { B: number; H: number; S: number; D: number }

const BIG: Shape = { B: 1, H: 32, S: 4096, D: 128 };
const SMALL: Shape = { B: 1, H: 4, S: 256, D: 64 };

function shapeName(s: Shape, L = s.S): string {
  return `B${s.B}xH${s.H}xS${s.S}xL${L}xD${s.D}`;
}

function prefillFlops(s: Shape, causal: boolean): number {
  const dense = 4 * s.B * s.H * s.S * s.S * s.D;
  return causal ? dense / 2 : dense;
}

function qkv(be: Backend, s: Shape, dtype: 'f32' | 'f16', L = s.S): [Tensor, Tensor, Tensor] {
  return [
    random(be, [s.B, s.H, s.S, s.D], { seed: 1, dtype }),
    random(be, [s.B, s.H, L, s.D], { seed: 2, dtype }),
    random(be, [s.B, s.H, L, s.D], { seed: 3, dtype }),
  ];
}

function row(ctx: SuiteContext, be: Backend, kernel: string, shape: string, dtype: string, t: Awaited<ReturnType<typeof timeIt>>, work: { flops?: number; bytes?: number }, notes: string): BenchRow {
  const r: BenchRow = { package: 'attention', kernel, shape, dtype, backend: be.kind, device: ctx.device, ...t, notes };
  if (work.flops) r.gflops = work.flops / (t.medianMs * 1e6);
  if (work.bytes) r.gbps = work.bytes / (t.medianMs * 1e6);
  return withPeer(r, ctx.peers.get(peerKey(kernel, shape, dtype)), work);
}

async function maxAbsDiff(a: Tensor, b: Tensor): Promise<number> {
  const x = await a.toArray();
  const y = await b.toArray();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}


export const attentionSuite: Suite = {
  name: 'attention',
  async run(be, ctx) {
    const s = ctx.big ? BIG : SMALL;
    const reps = ctx.big ? 7 : 3;
    const rows: BenchRow[] = [];
    setPrefillPath('plain');
    const sh = shapeName(s);

    // f32 causal prefill: the library default (the matmul-structured flash kernel,
    // webgpu/flash-f32.ts, where it fits the adapter) first, then the plain FMA kernel it
    // replaced, at its chooser's pick (variant row).
    if (be.kind === 'webgpu' || !ctx.big) {
      const [q, k, v] = qkv(be, s, 'f32');
      const t = await timeIt(be, () => attention(q, k, v, { causal: true }).dispose(), { reps });
      rows.push(row(ctx, be, 'prefill-causal', sh, 'f32', t, { flops: prefillFlops(s, true) }, 'library default (f32 flash kernel where it fits, else the plain kernel); causal FLOPs counted as half of 4*B*H*S*L*D'));
      const td = await timeIt(be, () => attention(q, k, v).dispose(), { reps });
      rows.push(row(ctx, be, 'prefill', sh, 'f32', td, { flops: prefillFlops(s, false) }, 'library default, no mask'));
      if (be.kind === 'webgpu') {
        setFlashF32Enabled(false);
        tunePlainPrefill({});
        try {
          const tp = await timeIt(be, () => attention(q, k, v, { causal: true }).dispose(), { reps });
          const r = row(ctx, be, 'prefill-causal', sh, 'f32', tp, { flops: prefillFlops(s, true) }, 'variant: the plain FMA kernel (webgpu/prefill.ts, ATTNKIT_F32_FLASH=0), its chooser pick');
          rows.push({ ...r, kernel: 'prefill-causal[plain kernel]' });
        } finally {
          setFlashF32Enabled(true);
        }
      }
      for (const x of [q, k, v]) x.dispose();
    }

    // f16 causal prefill on the plain kernel (the subgroup-matrix rows are in attention-sg).
    {
      const [q, k, v] = qkv(be, s, 'f16');
      const t = await timeIt(be, () => attention(q, k, v, { causal: true }).dispose(), { reps });
      rows.push(row(ctx, be, 'prefill-causal-plain', sh, 'f16', t, { flops: prefillFlops(s, true) }, 'plain kernel, f16 in/out, f32 accumulation; causal FLOPs halved'));

      // Block-sparse at 25% of 64x64 blocks kept (random per query block) vs the same kernel
      // with every block listed.
      const qb = 64;
      const nB = Math.ceil(s.S / qb);
      const rnd = mulberry32(5);
      const all = Array.from({ length: nB }, () => Array.from({ length: nB }, (_, j) => j));
      const quarter = all.map((l) => {
        const ids = [...l];
        for (let i = ids.length - 1; i > 0; i--) {
          const j = Math.floor(rnd() * (i + 1));
          [ids[i], ids[j]] = [ids[j]!, ids[i]!];
        }
        return ids.slice(0, Math.max(1, Math.round(nB / 4)));
      });
      const dense = blockSparseMask(be, all, { queryBlock: qb, keyBlock: qb, kvLength: s.S });
      const sparse = blockSparseMask(be, quarter, { queryBlock: qb, keyBlock: qb, kvLength: s.S });
      const td = await timeIt(be, () => attention(q, k, v, { mask: dense }).dispose(), { reps });
      const ts = await timeIt(be, () => attention(q, k, v, { mask: sparse }).dispose(), { reps });
      const kept = quarter.reduce((a, l) => a + l.length, 0) / (nB * nB);
      const flops = prefillFlops(s, false);
      const dr = row(ctx, be, 'prefill-blocks-all', sh, 'f16', td, { flops }, 'block-list kernel with every 64x64 block listed (the dense run of the same kernel)');
      rows.push(dr);
      const sr: BenchRow = { ...row(ctx, be, 'prefill-blocks-25pct', sh, 'f16', ts, { flops: flops * kept }, `${(kept * 100).toFixed(1)}% of 64x64 blocks kept; FLOPs count kept blocks only; peer = same kernel, all blocks`) };
      rows.push(withPeer(sr, { name: 'attnkit block-list kernel, all blocks (same run)', medianMs: td.medianMs }, { flops: flops * kept }));
      for (const x of [q, k, v, dense.indices, sparse.indices]) x.dispose();
    }

    // Decode: 1 query over a long KV (32k on the H200), f16 and f32, several split counts.
    {
      const L = ctx.big ? 32768 : 4096;
      const ds: Shape = { ...s, S: 1 };
      const dsh = shapeName(ds, L);
      for (const dtype of ['f16', 'f32'] as const) {
        const [q, k, v] = qkv(be, ds, dtype, L);
        const bytes = 2 * ds.B * ds.H * L * ds.D * (dtype === 'f16' ? 2 : 4);
        const splitsList = be.kind === 'webgpu' && ctx.big ? [undefined, 64, 128, 256] : [undefined];
        // The first timed decode on freshly uploaded 0.5 GB K/V ran 2-3x slower than the same
        // configuration later in the run (H200, twice): warm up well before timing.
        for (let w = 0; w < 20; w++) decode(q, k, v).dispose();
        await be.sync();
        for (const splits of splitsList) {
          const t = await timeIt(be, () => decode(q, k, v, { splits }).dispose(), { reps });
          const r = row(ctx, be, 'decode', dsh, dtype, t, { bytes }, `split-K decode, splits=${splits ?? 'auto'}; bandwidth = K+V bytes read`);
          rows.push(splits === undefined ? r : { ...r, kernel: `decode[splits=${splits}]` });
        }
        // The same KV through a list of all 16-key blocks in reverse order (the selection path).
        const nb = Math.ceil(L / 16);
        const ids = Int32Array.from({ length: ds.B * ds.H * nb }, (_, i) => nb - 1 - (i % nb));
        const blocks = tensor(be, ids, [ds.B, ds.H, nb], 'i32');
        const t = await timeIt(be, () => decode(q, k, v, { blocks }).dispose(), { reps });
        rows.push(row(ctx, be, 'decode-selected-all', dsh, dtype, t, { bytes }, 'decode over a block list naming every 16-key block, reversed'));
        for (const x of [q, k, v, blocks]) x.dispose();
      }
    }
    return rows;
  },
};

/**
 * The subgroup-matrix f16 prefill, in its own suite (and process on the H200), because
 * staged subgroup-matrix kernels have crashed Dawn before. ATTNKIT_SG_SYNC picks the
 * variant ('barrier' or 'none'); each is checked against the plain kernel in the same run.
 */
export const attentionSgSuite: Suite = {
  name: 'attention-sg',
  async run(be, ctx) {
    if (be.kind !== 'webgpu' || !hasF16SubgroupMatrix(be.caps)) {
      console.error(`attention-sg: ${be.name} offers no f16 subgroup matrices; nothing to run`);
      return [];
    }
    const s = ctx.big ? BIG : SMALL;
    const sync = (process.env.ATTNKIT_SG_SYNC ?? 'barrier') as SgSync;
    const keyTiles = (process.env.ATTNKIT_SG_KT ?? '64').split(',').map(Number);
    const inits = (process.env.ATTNKIT_SG_INIT ?? 'ctor').split(',') as SgInit[];
    const rows: BenchRow[] = [];
    const sh = shapeName(s);

    // Small problem against the float64 CPU reference first: says which kernel is wrong if they disagree.
    const cpu = new CpuBackend();
    const small: Shape = { B: 1, H: 2, S: 128, D: s.D };
    const smallRef = new Map<boolean, Float32Array>();
    for (const causal of [false, true]) {
      const [cq, ck, cv] = qkv(cpu, small, 'f16');
      smallRef.set(causal, (await attention(cq, ck, cv, { causal }).toArray()) as Float32Array);
    }
    const [sq, sk, sv] = qkv(be, small, 'f16');
    const errVsCpu = async (): Promise<string> => {
      const parts: string[] = [];
      for (const causal of [false, true]) {
        const got = attention(sq, sk, sv, { causal });
        const x = await got.toArray();
        got.dispose();
        const want = smallRef.get(causal)!;
        let m = 0;
        let at = 0;
        for (let i = 0; i < x.length; i++) {
          const d = Math.abs(x[i]! - want[i]!);
          if (!(d <= m)) { m = d; at = i; }
        }
        parts.push(`${causal ? 'causal' : 'dense'} max|err| ${m.toExponential(2)} at row ${Math.floor(at / small.D)} col ${at % small.D}`);
      }
      return parts.join('; ');
    };
    setPrefillPath('plain');
    console.error(`attention-sg: plain kernel vs CPU (B1 H2 S128 D${s.D} f16): ${await errVsCpu()}`);

    const [q, k, v] = qkv(be, s, 'f16');
    const ref = attention(q, k, v, { causal: true });
    await be.sync();
    // The library's default subgroup-matrix choice first (the row the figure comes
    // from: the wide kernel where it fits), then the tiled kernel, the ping-pong kernel and
    // the first kernel (v1) in the variants ATTNKIT_SG_SYNC/KT/INIT name.
    const runs: Array<{ kernel: 'auto' | 'tiled' | 'pingpong' | 'v1'; init?: SgInit; kt?: number }> = [{ kernel: 'auto' }, { kernel: 'tiled' }, { kernel: 'pingpong' }];
    for (const init of inits) for (const kt of keyTiles) runs.push({ kernel: 'v1', init, kt });
    for (const [n, r] of runs.entries()) {
      configureSgPrefill(r.kernel === 'v1' ? { kernel: 'v1', sync, keyTile: r.kt, init: r.init } : { kernel: r.kernel, tiled: {} });
      setPrefillPath('subgroup-matrix');
      const cfg = sgPrefillConfig();
      const tag = r.kernel === 'v1' ? `v1 sync=${sync} init=${r.init} keyTile=${r.kt}` : r.kernel === 'auto' ? 'library default (wide kernel where it fits, else tiled)'
        : r.kernel === 'pingpong' ? 'ping-pong (two teams of pairs, SG_PINGPONG_DEFAULT)' : `tiled ${JSON.stringify(cfg.tiled)}`;
      try {
        const small = await errVsCpu();
        console.error(`attention-sg: ${tag}: vs CPU: ${small}`);
        const got = attention(q, k, v, { causal: true });
        const err = await maxAbsDiff(got, ref);
        got.dispose();
        console.error(`attention-sg: ${tag}: max |sg - plain| = ${err}`);
        const t = await timeIt(be, () => attention(q, k, v, { causal: true }).dispose(), { reps: 9 });
        const row0 = row(ctx, be, 'prefill-causal', sh, 'f16', t, { flops: prefillFlops(s, true) },
          `subgroup-matrix kernel (${tag}); max |out - plain kernel out| = ${err.toExponential(2)} at this shape; small check vs float64 CPU: ${small}; causal FLOPs counted as half of 4*B*H*S*L*D; peer is bf16`);
        rows.push(n === 0 ? row0 : { ...row0, kernel: r.kernel === 'v1' ? `prefill-causal[v1,${r.init},kt=${r.kt}]` : `prefill-causal[${r.kernel}]` });
      } catch (e) {
        console.error(`attention-sg: ${tag} failed: ${(e as Error).message}`);
      }
    }
    configureSgPrefill({ kernel: 'auto', tiled: {} });
    setPrefillPath('plain');
    for (const x of [q, k, v, ref, sq, sk, sv]) x.dispose();
    return rows;
  },
};
