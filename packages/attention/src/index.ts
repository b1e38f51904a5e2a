export { attention, attentionWithStats, getPrefillPath, setPrefillPath, type PrefillPath } from './attention.js';
export { decode, decodeWithLse, MAX_DECODE_QUERIES } from './decode.js';
export { blockSparseMask } from './masks.js';
export { POOL_BLOCK, type AttentionOptions, type AttentionStats, type DecodeOptions, type MaskSpec, type StatsOptions } from './options.js';
export { checkAttention, HEAD_DIM_MULTIPLE, MAX_HEAD_DIM, type AttentionPlan } from './problem.js';
export { tunePlainPrefill, type PrefillTuning } from './webgpu/prefill.js';
export { configureSgPrefill, hasF16SubgroupMatrix, sgPrefillConfig, sgPrefillSource, type SgInit, type SgKernel, type SgSync, type SgTiledOptions } from './webgpu/sgmatrix.js';
export { sgFlashSource, type SgFlashVariant } from './webgpu/sgflash.js';
export { checkSgWideVariant, runSgWide, SG_WIDE_DEFAULT, sgWideAttention, sgWideLayout, sgWideSource, sgWideUnsupported, type SgWideVariant } from './webgpu/sgflash-wide.js';
