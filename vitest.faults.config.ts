import { defineConfig } from 'vitest/config';

// `npm run faults` (scripts/faults.sh): the whole fault matrix (test/faults/matrix.ts) on real
// components. Not a project of vitest.config.ts, so `npm test` does not run it; its quick subset
// is test/integration/fault-subset.test.ts.
export default defineConfig({
  test: {
    name: 'faults',
    include: ['test/faults/**/*.test.ts'],
    globalSetup: ['test/helpers/dev-server.global-setup.ts'],
    testTimeout: 3 * 3600_000,
    hookTimeout: 3 * 3600_000,
    fileParallelism: false,
  },
});
