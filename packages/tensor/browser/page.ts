import { createBackend } from '@attnkit/tensor';
import { runChecks, type CheckResult } from './checks.js';

/**
 * Runs in the page (bundled by run.mjs): the WebGPU backend comes from createBackend(),
 * which must take navigator.gpu, and every check is compared with the CPU reference.
 * The verdict goes to window.__attnkitBrowserReport for the runner to read.
 */
export interface BrowserReport {
  ok: boolean;
  userAgent: string;
  navigatorGpu: boolean;
  adapter: { vendor: string; architecture: string; device: string; description: string } | null;
  backend: string | null;
  shaderF16: boolean | null;
  checks: CheckResult[];
  error: string | null;
}

async function adapterInfo(): Promise<BrowserReport['adapter']> {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return null;
  const { vendor, architecture, device, description } = adapter.info;
  return { vendor, architecture, device, description };
}

async function run(): Promise<BrowserReport> {
  const report: BrowserReport = {
    ok: false,
    userAgent: navigator.userAgent,
    navigatorGpu: 'gpu' in navigator && !!navigator.gpu,
    adapter: null,
    backend: null,
    shaderF16: null,
    checks: [],
    error: null,
  };
  try {
    if (!report.navigatorGpu) throw new Error('navigator.gpu is missing: this browser exposes no WebGPU');
    report.adapter = await adapterInfo();
    const be = await createBackend({ backend: 'webgpu' });
    report.backend = be.name;
    report.shaderF16 = be.caps.shaderF16;
    report.checks = await runChecks(be);
    report.ok = be.kind === 'webgpu' && report.checks.length > 0 && report.checks.every((c) => c.ok);
    be.destroy();
  } catch (e) {
    report.error = `${(e as Error).name}: ${(e as Error).message}`;
  }
  return report;
}

declare global {
  interface Window {
    __attnkitBrowserReport?: BrowserReport;
  }
}

void run().then((report) => {
  window.__attnkitBrowserReport = report;
  document.body.textContent = JSON.stringify(report, null, 2);
});
