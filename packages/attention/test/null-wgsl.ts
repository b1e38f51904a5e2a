import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Tint's errors for one subgroup-matrix prefill variant, compiled on Dawn's null backend in a
 * child process (sgflash-wide-wgsl-check.ts; `kernel` 'pingpong' selects that kernel).
 * Dawn's process itself aborts now and then (the futex error): that is retried, and when no
 * answer comes the result says why instead of an error list.
 */
export function nullBackendWgslErrors(variant: object, kernel?: 'pingpong'): { errors?: string[]; why: string } {
  let why = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const args = ['--conditions=@attnkit/source', '--import', 'tsx', join(here, 'sgflash-wide-wgsl-check.ts'), JSON.stringify(variant), ...(kernel ? [kernel] : [])];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000 });
    const line = r.stdout.split('\n').find((l) => l.startsWith('WGSL-CHECK '));
    if (line) return { errors: JSON.parse(line.slice('WGSL-CHECK '.length)) as string[], why: '' };
    why = `checker exited ${r.status} ${r.signal ?? ''}: ${r.stderr.slice(-300)}`;
  }
  return { why };
}
