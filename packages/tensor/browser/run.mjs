#!/usr/bin/env node
// Runs browser/page.ts in headless Debian Chromium and checks that @attnkit/tensor's
// WebGPU backend, found through navigator.gpu, matches the CPU reference there.
// Not part of `npm test` (CI has no Chromium): `npm run test:browser -w packages/tensor`.
// Exit 0 only when an adapter was found and every check matched.
//
// Options: --chromium PATH (default /usr/bin/chromium or $CHROMIUM), --out FILE (the JSON
// report), --gpu-report FILE (chrome://gpu as text, for when no adapter shows up),
// --timeout SECONDS (default 180).
import { build } from 'esbuild';
import { createServer } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

const { values: opts } = parseArgs({
  options: {
    chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    out: { type: 'string' },
    'gpu-report': { type: 'string' },
    timeout: { type: 'string', default: '180' },
  },
});

// WebGPU in headless Chromium on a machine without a GPU: Vulkan through SwiftShader
// (Chromium's bundled software Vulkan), which Chromium only allows with
// --enable-unsafe-swiftshader.
const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-webgpu-adapter=swiftshader',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
];

async function bundlePage(dir) {
  await build({
    entryPoints: [join(here, 'page.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    conditions: ['@attnkit/source'],
    // Dawn is the Node path; a page has navigator.gpu and never imports it.
    external: ['webgpu'],
    outfile: join(dir, 'page.js'),
    logLevel: 'warning',
  });
  await writeFile(
    join(dir, 'index.html'),
    '<!doctype html><meta charset="utf-8"><title>attnkit browser check</title><link rel="icon" href="data:,"><body>running</body><script type="module" src="/page.js"></script>\n',
  );
}

function serve(dir) {
  const types = { '.html': 'text/html', '.js': 'text/javascript' };
  const server = createServer(async (req, res) => {
    const name = req.url === '/' ? 'index.html' : (req.url ?? '').slice(1);
    const ext = name.slice(name.lastIndexOf('.'));
    if (!/^[\w.-]+$/.test(name) || !(ext in types)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(join(dir, name));
      res.writeHead(200, { 'content-type': types[ext] }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'attnkit-browser-'));
  let server;
  let browser;
  try {
    await bundlePage(dir);
    server = await serve(dir);
    const url = `http://127.0.0.1:${server.address().port}/`;
    browser = await chromium.launch({ executablePath: opts.chromium, headless: false, args: CHROMIUM_FLAGS });
    const page = await browser.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    await page.goto(url);
    const handle = await page.waitForFunction(() => window.__attnkitBrowserReport, null, { timeout: Number(opts.timeout) * 1000 });
    const report = { chromium: browser.version(), flags: CHROMIUM_FLAGS, ...(await handle.jsonValue()), console: consoleLines };
    if (opts['gpu-report']) {
      await page.goto('chrome://gpu');
      await page.waitForTimeout(2000);
      // chrome://gpu renders inside shadow roots; collect their text too.
      const text = await page.evaluate(() => {
        const parts = [];
        const walk = (root) => {
          for (const el of root.querySelectorAll('*')) if (el.shadowRoot) parts.push(el.shadowRoot.textContent ?? ''), walk(el.shadowRoot);
        };
        parts.push(document.body.innerText);
        walk(document);
        return parts.join('\n');
      });
      await writeFile(opts['gpu-report'], text);
    }
    const json = JSON.stringify(report, null, 2);
    console.log(json);
    if (opts.out) await writeFile(opts.out, json + '\n');
    for (const c of report.checks) console.error(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.message}`);
    if (!report.adapter) console.error('FAIL: Chromium exposed no WebGPU adapter');
    if (report.error) console.error(`FAIL: ${report.error}`);
    console.error(report.ok ? `browser check passed on ${report.backend}` : 'browser check FAILED');
    return report.ok ? 0 : 1;
  } finally {
    await browser?.close();
    server?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`browser check could not run: ${e.stack ?? e}`);
    process.exit(2);
  },
);
