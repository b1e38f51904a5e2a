import { defineConfig } from 'vitest/config';
import { readdirSync, existsSync } from 'node:fs';

// One vitest project per package/app that has tests; sources are resolved through the
// '@attnkit/source' export condition so tests need no build step.
const dirs = ['packages', 'apps', 'benchmarks'].flatMap((root) =>
  existsSync(root) ? readdirSync(root).map((d) => `${root}/${d}`).filter((d) => existsSync(`${d}/test`)) : [],
);

export default defineConfig({
  resolve: { conditions: ['@attnkit/source'] },
  ssr: { resolve: { conditions: ['@attnkit/source'], externalConditions: ['@attnkit/source'] } },
  test: {
    projects: dirs.map((dir) => ({
      extends: true,
      test: {
        name: dir.split('/')[1]!,
        root: dir,
        include: ['test/**/*.test.ts'],
        testTimeout: 120_000,
        hookTimeout: 120_000,
        // Dawn holds one adapter per process; forks keep each file's device separate.
        pool: 'forks',
      },
    })),
  },
});
