export * from './errors.js';
export {
  bf16ToF32, decodeTensor, encodeSafetensors, hostToF16Bits, hostToF32, MAX_HEADER_BYTES, parseHeader, parseHeaderLength, parseSafetensors,
  SAFETENSORS_ITEMSIZE, SafetensorsFile, type HostTensor, type SafetensorsDType, type SafetensorsHeader, type TensorEntry, type TensorToWrite,
} from './safetensors.js';
export { WeightSource } from './weights.js';
export { parseLlamaConfig, readLlamaConfig, ropeInvFreq, SUPPORTED_ARCHITECTURES, type Architecture, type LlamaConfig, type RopeScaling } from './config.js';
export { TextTokenizer, type ChatMessage } from './tokenizer.js';
export { StaticKvCache, type KvCache, type KvShape, type KvView } from './kv-cache.js';
export { writeKvRows } from './kv-write.js';
export { addRmsnorm, RopeTable, splitHeadsRope, swiglu } from './fused.js';
export { attend, composedAttention, supportsWindow, type AttendOptions, type AttendResult } from './attention-call.js';
export { LlamaModel, type DecoderHooks, type ForwardOptions, type ForwardResult, type HookContext, type LayerWeights, type LlamaWeights, type ResidualSite } from './llama.js';
export { expectedWeights, loadLlama, type LoadedModel, type LoadError, type LoadOptions } from './load.js';
export { argmaxHost, isGreedy, Sampler, validateSampling, type SamplingOptions } from './sampling.js';
export { generate, type GenerateOptions, type GenerateResult } from './generate.js';
export { referenceModelDir } from './reference.js';
