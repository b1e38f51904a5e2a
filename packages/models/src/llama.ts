import { add, ArgumentError, cast, gatherRows, matmul, permute, rmsnorm, slice, tensor, tidy, WebGpuBackend, type Backend, type Tensor } from '@attnkit/tensor';
import { attend, supportsWindow } from './attention-call.js';
import { addRmsnorm, RopeTable, splitHeadsRope, swiglu } from './fused.js';
import { ropeInvFreq, type LlamaConfig } from './config.js';
import { ContextLengthError } from './errors.js';
import { StaticKvCache, type KvCache } from './kv-cache.js';

/*
 * A Llama-family decoder (Llama, Mistral, Qwen2), read top to bottom:
 *
 *   x = embed[ids]
 *   for each layer:
 *     h = rmsnorm(x)                      -> q|k|v in one projection (+ bias on Qwen2)
 *     q, k = rope(q, k) at the cache's position
 *     cache.append(k, v); z = attention(q, cache)   (causal, grouped-query)
 *     x = x + o_proj(z)
 *     x = x + down(silu(gate(m)) * up(m)),  m = rmsnorm(x), gate|up in one projection
 *   logits = lm_head(rmsnorm(x))          (lm_head may be the embedding, tied)
 *
 * Activations are f32; projection weights are f16 or f32 ([out, in] as in the checkpoint,
 * multiplied with transB). q/k/v and gate/up weights are stacked at load time so each pair
 * or triple is one matmul (a batch-1 decode step is bound by kernel launches). Batch is 1.
 * Hooks observe or patch the probabilities, the per-head outputs and the residual stream;
 * nothing extra is computed unless asked.
 */

export interface LayerWeights {
  inputNorm: Tensor;
  postAttnNorm: Tensor;
  /** q_proj, k_proj, v_proj stacked by rows: [(Hq + 2 Hkv) D, hidden]. */
  qkv: Tensor;
  qkvBias?: Tensor;
  o: Tensor;
  oBias?: Tensor;
  /** gate_proj then up_proj stacked by rows: [2 intermediate, hidden]. */
  gateUp: Tensor;
  gateUpBias?: Tensor;
  down: Tensor;
  downBias?: Tensor;
}

export interface LlamaWeights {
  embed: Tensor;
  layers: LayerWeights[];
  norm: Tensor;
  /** The same tensor as `embed` when the config ties them. */
  lmHead: Tensor;
}

export type ResidualSite = 'attn_in' | 'mlp_in' | 'out';

export interface HookContext {
  /** Position of the first token of this step. */
  position: number;
  /** Keeps a tensor alive after the step (the caller then owns and disposes it). */
  keep<T extends Tensor>(t: T): T;
}

/**
 * Per-layer observation and patching. Tensors handed to a hook are freed when the step
 * ends unless kept with ctx.keep (reading one with toArray() inside the hook also works:
 * the read is queued at once). A hook that returns a tensor replaces the value it saw.
 */
export interface DecoderHooks {
  /** Restricts the hooks to these layers (all layers when absent). */
  layers?: readonly number[];
  /** probs: [1, Hq, S, kvLength] softmax weights of this step's queries. */
  onAttentionProbs?(layer: number, probs: Tensor, ctx: HookContext): void;
  /**
   * The pooled form, for long contexts: max and sum of the probabilities over each block of
   * 16 keys, [1, Hq, S, ceil(kvLength / 16)] each (what KV-selection policies read).
   */
  onPooledAttention?(layer: number, pooled: { max: Tensor; sum: Tensor }, ctx: HookContext): void;
  /** z: [1, Hq, S, headDim] per-head attention outputs, before o_proj. */
  onHeadOutputs?(layer: number, z: Tensor, ctx: HookContext): Tensor | void;
  /** x: [S, hidden] residual stream entering attention, entering the MLP, or leaving the layer. */
  onResidual?(layer: number, site: ResidualSite, x: Tensor, ctx: HookContext): Tensor | void;
}

export interface ForwardOptions {
  hooks?: DecoderHooks;
  /** 'last' (default) gives logits [1, vocab] for the newest token; 'all' gives [S, vocab]. */
  logits?: 'last' | 'all';
}

export interface ForwardResult {
  logits: Tensor;
  /** Tensors hooks kept (owned by the caller). */
  kept: Tensor[];
}

export class LlamaModel {
  private readonly invFreq: Float32Array;
  private readonly ropeTable: RopeTable;
  private readonly linearScale: number;

  constructor(readonly config: LlamaConfig, readonly weights: LlamaWeights, readonly backend: Backend) {
    this.invFreq = ropeInvFreq(config);
    this.linearScale = config.ropeScaling.kind === 'linear' ? config.ropeScaling.factor : 1;
    this.ropeTable = new RopeTable(this.invFreq, 1 / this.linearScale, config.maxPositions);
  }

  /** A static cache sized for `capacity` tokens (default: the model's context). */
  newCache(capacity = this.config.maxPositions, dtype: 'f32' | 'f16' = 'f32'): StaticKvCache {
    return new StaticKvCache(this.backend, { numLayers: this.config.numLayers, numKvHeads: this.config.numKvHeads, headDim: this.config.headDim, capacity, dtype });
  }

  /** Runs `ids` (the next tokens after what the cache holds) through the model. */
  forward(ids: readonly number[] | Int32Array, cache: KvCache, opts: ForwardOptions = {}): ForwardResult {
    const c = this.config;
    const S = ids.length;
    const position = cache.position;
    if (S === 0) throw new ContextLengthError('forward (no tokens given)', 0, 0);
    if (position + S > c.maxPositions) throw new ContextLengthError(`${c.architecture} context (max_position_embeddings)`, position + S, c.maxPositions);
    if (c.slidingWindow !== null && position + S > c.slidingWindow && !supportsWindow(c.headDim)) {
      throw new ContextLengthError(`${c.architecture} sliding window with head dim ${c.headDim} (the composed attention path has no window)`, position + S, c.slidingWindow);
    }
    if (position + S > cache.capacity) throw new ContextLengthError('KV cache capacity', position + S, cache.capacity);
    for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < c.vocabSize)) throw new ArgumentError('forward', 'token id', `an integer in [0, ${c.vocabSize}) (vocab_size)`, id);

    const kept: Tensor[] = [];
    const hooks = opts.hooks;
    const ctx: HookContext = { position, keep: (t) => (kept.push(t), t) };
    const hooked = (layer: number) => !!hooks && (!hooks.layers || hooks.layers.includes(layer));

    // The rotary table outlives this step: build or grow it outside the step's scope.
    if (this.backend instanceof WebGpuBackend) this.ropeTable.forPositions(this.backend, position + S);
    return tidy(() => {
      const w = this.weights;
      const L = c.numLayers;
      // residual(x, delta, norm, sites): x + delta, the residual hooks at `sites` (which may
      // replace it), then rmsnorm for the next block; one fused kernel when no hook is set.
      const residual = (x: Tensor, delta: Tensor, norm: Tensor, sites: Array<[number, ResidualSite]>) => {
        const live = sites.filter(([l]) => hooked(l) && hooks!.onResidual);
        if (!live.length) return addRmsnorm(x, delta, norm, c.rmsNormEps);
        let y = add(x, delta);
        for (const [l, site] of live) y = hooks!.onResidual!(l, site, y, ctx) ?? y;
        return { x: y, normed: rmsnorm(y, norm, c.rmsNormEps) };
      };

      const idx = tensor(this.backend, Int32Array.from(ids), [S], 'i32');
      let x = f32(gatherRows(w.embed, idx)); // [S, hidden]
      if (hooked(0)) x = hooks!.onResidual?.(0, 'attn_in', x, ctx) ?? x;
      let h = rmsnorm(x, w.layers[0]!.inputNorm, c.rmsNormEps);
      for (let l = 0; l < L; l++) {
        const lw = w.layers[l]!;
        const hk = hooked(l) ? hooks : undefined;

        // Attention block (h = rmsnorm(x) for this layer).
        const { q, k, v } = splitHeadsRope(linear(h, lw.qkv, lw.qkvBias), {
          numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, position,
          table: this.ropeTable, invFreq: this.invFreq, linearScale: this.linearScale, theta: c.ropeTheta,
        }); // each [1, H, S, D]; q and k rotated
        cache.append(l, k, v);
        const att = attend(q, cache.view(l), { scale: 1 / Math.sqrt(c.headDim), probs: !!hk?.onAttentionProbs, pooled: !!hk?.onPooledAttention, window: c.slidingWindow });
        if (att.probs) hk!.onAttentionProbs!(l, att.probs, ctx);
        if (att.pooledMax && att.pooledSum) hk!.onPooledAttention!(l, { max: att.pooledMax, sum: att.pooledSum }, ctx);
        const z = hk?.onHeadOutputs?.(l, att.out, ctx) ?? att.out; // [1, Hq, S, D]
        const merged = S === 1 ? z.reshape([1, c.numHeads * c.headDim]) : permute(z.reshape([c.numHeads, S, c.headDim]), [1, 0, 2]).reshape([S, c.numHeads * c.headDim]);
        const afterAttn = residual(x, linear(merged, lw.o, lw.oBias), lw.postAttnNorm, [[l, 'mlp_in']]);
        x = afterAttn.x;

        // SwiGLU MLP block; its output's norm is the next layer's input norm (or the final one).
        const act = swiglu(linear(afterAttn.normed, lw.gateUp, lw.gateUpBias)); // silu(gate) * up
        const nextNorm = l + 1 < L ? w.layers[l + 1]!.inputNorm : w.norm;
        const sites: Array<[number, ResidualSite]> = l + 1 < L ? [[l, 'out'], [l + 1, 'attn_in']] : [[l, 'out']];
        ({ x, normed: h } = residual(x, linear(act, lw.down, lw.downBias), nextNorm, sites));
      }
      // h is now the final norm of the residual stream (norms are per row, so slice after).
      const last = opts.logits === 'all' || S === 1 ? h : slice(h, [S - 1, 0]);
      return { logits: linear(last, w.lmHead), kept };
    });
  }

  /** Every weight tensor once (a tied embedding and lm_head are one tensor). */
  private uniqueWeights(): Set<Tensor> {
    const w = this.weights;
    const all = [w.embed, w.norm, w.lmHead, ...w.layers.flatMap((l) => Object.values(l) as Array<Tensor | undefined>)];
    return new Set(all.filter((t): t is Tensor => !!t));
  }

  /** Weight bytes on the device. */
  weightBytes(): number {
    let n = 0;
    for (const t of this.uniqueWeights()) n += t.byteLength;
    return n;
  }

  parameterCount(): number {
    let n = 0;
    for (const t of this.uniqueWeights()) n += t.size;
    return n;
  }

  dispose(): void {
    this.ropeTable.dispose();
    for (const t of this.uniqueWeights()) t.dispose();
  }
}

/** x [S, in] times W [out, in] (checkpoint layout) plus an optional bias [out]. */
function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  const y = matmul(x, w, { transB: true });
  return bias ? add(y, bias) : y;
}

function f32(t: Tensor): Tensor {
  return t.dtype === 'f32' ? t : cast(t, 'f32');
}
