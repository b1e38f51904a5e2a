import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder of the small reference checkpoint shipped inside this package
 * (assets/reference-llama), so the decoder runs with no download. Resolved from this
 * module's own location (src/ or dist/ are both one level below the package root);
 * ATTNKIT_REFERENCE_MODEL overrides it (bundled runners, where the module moved).
 */
export function referenceModelDir(): string {
  const env = typeof process !== 'undefined' ? process.env.ATTNKIT_REFERENCE_MODEL : undefined;
  if (env) return resolve(env);
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', 'assets', 'reference-llama'), join(process.cwd(), 'packages', 'models', 'assets', 'reference-llama')];
  return candidates.find((d) => existsSync(join(d, 'config.json'))) ?? candidates[0]!;
}
