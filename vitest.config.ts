import { defineConfig } from 'vitest/config';

// Two projects: `unit` runs anywhere in seconds; `integration` drives the real
// Temporal dev server, SPIRE, wireguard-go in network namespaces and PostgreSQL,
// so it needs root and `npm run tools` first (it fails loudly otherwise).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          sequence: { groupOrder: 0 },
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          // Runs after the unit project (which is fast and catches the cheap mistakes first).
          sequence: { groupOrder: 1 },
          include: ['test/integration/**/*.test.ts', 'test/replay/**/*.test.ts'],
          // One Temporal dev server for the whole run (address via inject('temporalAddress')).
          globalSetup: ['test/integration/global-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          // Integration files build real namespaces and processes; two at a time
          // is what a 2-core machine carries without timing flakes.
          maxWorkers: 2,
          fileParallelism: true,
        },
      },
    ],
  },
});
