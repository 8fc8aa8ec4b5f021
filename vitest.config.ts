import { defineConfig } from 'vitest/config';

// Three projects, named by what they need, run in this order by `npm test`:
//   unit         pure code and the recorded replay histories: nothing but `npm ci`
//                (no server, no .tools, no PostgreSQL, not root);
//   workflow     a Temporal dev server (the pinned CLI from `npm run tools`) with
//                activity fakes: no root, no PostgreSQL, no namespaces;
//   integration  root, network namespaces, real SPIRE, wireguard-go and PostgreSQL.
// Each fails loudly when what it needs is missing.
const DEV_SERVER = 'test/helpers/dev-server.global-setup.ts';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/replay/**/*.test.ts'],
          sequence: { groupOrder: 0 },
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'workflow',
          include: ['test/workflow/**/*.test.ts'],
          sequence: { groupOrder: 1 },
          // One Temporal dev server for the project (address via inject('temporalAddress')).
          globalSetup: [DEV_SERVER],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: 'integration',
          sequence: { groupOrder: 2 },
          include: ['test/integration/**/*.test.ts'],
          globalSetup: [DEV_SERVER],
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
