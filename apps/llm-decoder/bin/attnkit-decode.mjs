#!/usr/bin/env node
// The `attnkit-decode` command. A built package (dist/) runs directly; a source checkout
// (a fresh clone, no build step) runs the TypeScript through tsx with the workspace's
// '@attnkit/source' export condition, in a child Node that shares this terminal.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// `npm run demo` / `npm run decode` run in this package's folder; relative paths in the
// flags mean the folder the user typed the command in.
if (process.env.INIT_CWD && process.env.npm_lifecycle_event) process.chdir(process.env.INIT_CWD);

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'main.js');
if (existsSync(built) && !process.env.ATTNKIT_FROM_SOURCE) {
  await import(built);
} else {
  const r = spawnSync(process.execPath, ['--conditions=@attnkit/source', '--import', import.meta.resolve('tsx'), join(root, 'src', 'main.ts'), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
}
