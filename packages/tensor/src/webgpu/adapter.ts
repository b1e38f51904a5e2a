import type { Capabilities, SubgroupMatrixConfig } from '../backend.js';
import { NoAdapterError } from '../errors.js';

/** The Dawn toggles from shared/gpu/README.md: f16 on NVIDIA Vulkan and subgroup matrices. */
export const DAWN_FLAGS = [
  'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia',
  'disable-dawn-features=timestamp_quantization',
];

export const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';

export interface AcquiredGpu {
  gpu: GPU;
  adapter: GPUAdapter;
  /** Keeps Dawn's instance alive in Node: the process exits once it is dropped. */
  keepAlive: unknown;
  /**
   * False only when Dawn was asked for `disable_robustness`: kernels then run without the
   * bounds clamps of the robustness transform, which some fast paths are only fast without.
   */
  robustAccess?: boolean;
}

/** Whether a set of Dawn flags leaves the robustness transform on. */
export function robustWith(flags: readonly string[]): boolean {
  return !flags.some((f) => f.startsWith('enable-dawn-features=') && f.slice(21).split(',').includes('disable_robustness'));
}

const HOW_TO_GET_ONE_NODE =
  'On Linux without a GPU install Mesa lavapipe 25 (apt-get install -t bookworm-backports mesa-vulkan-drivers; see .ci/setup-lavapipe.sh) and set XDG_RUNTIME_DIR';
const HOW_TO_GET_ONE_BROWSER =
  "The browser's WebGPU has no adapter here: chrome://gpu (or the browser's equivalent) says why; a GPU blocklist or a headless browser without --enable-unsafe-webgpu are the usual causes";

/** Finds a real adapter: navigator.gpu in a browser, Dawn (npm `webgpu`) in Node. */
export async function acquireAdapter(extraFlags: string[] = []): Promise<AcquiredGpu> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  let gpu: GPU | undefined = nav?.gpu;
  let keepAlive: unknown = null;
  if (!gpu) {
    let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    try {
      mod = (await import('webgpu')) as unknown as typeof mod;
    } catch (e) {
      throw new NoAdapterError(`WebGPU unavailable: the npm package 'webgpu' (Dawn) could not be loaded (${(e as Error).message})`);
    }
    if (typeof process !== 'undefined' && !process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
    Object.assign(globalThis, mod.globals);
    gpu = mod.create([...DAWN_FLAGS, ...extraFlags]);
    keepAlive = gpu;
  }
  // In Node the fix is a Vulkan driver; in a browser it is the browser's own setting.
  const howTo = keepAlive ? HOW_TO_GET_ONE_NODE : HOW_TO_GET_ONE_BROWSER;
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new NoAdapterError(`WebGPU found no adapter. ${howTo}`);
  const info = adapter.info;
  // Dawn's null backend computes nothing; using it would pass tests with garbage.
  // Dawn 0.6.2 leaves vendor/architecture/description empty on it and names it only in
  // `device` ("null-backend"), so every field is checked.
  if (isNullAdapter(info)) {
    throw new NoAdapterError(`WebGPU offered only Dawn's null adapter (device '${info.device}'). ${howTo}`);
  }
  return { gpu, adapter, keepAlive, robustAccess: keepAlive ? robustWith(extraFlags) : true };
}

/** True for Dawn's null backend, which accepts every call and computes nothing. */
export function isNullAdapter(info: GPUAdapterInfo): boolean {
  const text = [info.vendor, info.architecture, info.device, info.description].join(' ');
  if (/llvmpipe|lavapipe/i.test(text)) return false;
  return /null/i.test(text);
}

export function describeAdapter(adapter: GPUAdapter): string {
  const i = adapter.info;
  return [i.vendor, i.architecture, i.description].filter(Boolean).join(' / ');
}

/** Reads capabilities; subgroup-matrix configs are WebIDL objects, so fields are copied by name. */
export function capabilitiesOf(adapter: GPUAdapter, device: GPUDevice): Capabilities {
  const info = adapter.info as GPUAdapterInfo & {
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    subgroupMatrixConfigs?: Iterable<SubgroupMatrixConfig>;
  };
  const configs: SubgroupMatrixConfig[] = [];
  if (device.features.has(SUBGROUP_MATRIX_FEATURE) && info.subgroupMatrixConfigs) {
    for (const c of info.subgroupMatrixConfigs) {
      configs.push({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K });
    }
  }
  return {
    shaderF16: device.features.has('shader-f16'),
    subgroups: device.features.has('subgroups'),
    subgroupMinSize: info.subgroupMinSize ?? 0,
    subgroupMaxSize: info.subgroupMaxSize ?? 0,
    subgroupMatrixConfigs: configs,
    timestampQuery: device.features.has('timestamp-query'),
    maxBufferSize: device.limits.maxBufferSize,
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
  };
}

/** Every numeric limit the adapter reports, to request instead of the small defaults. */
export function adapterLimits(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  // GPUSupportedLimits is a WebIDL interface: its fields live on the prototype.
  for (let o: object | null = adapter.limits; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const k of Object.getOwnPropertyNames(o)) {
      const v = (adapter.limits as unknown as Record<string, unknown>)[k];
      if (typeof v === 'number' && !(k in out)) out[k] = v;
    }
  }
  return out;
}

export function wantedFeatures(adapter: GPUAdapter): GPUFeatureName[] {
  const want = ['shader-f16', 'subgroups', 'timestamp-query', SUBGROUP_MATRIX_FEATURE];
  return want.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
}
