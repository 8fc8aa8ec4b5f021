/**
 * Vitest globalSetup for the workflow and integration projects: one Temporal dev server
 * (the pinned binary from `npm run tools`, headless, random port, throwaway
 * SQLite file) for the whole run. Tests reach it with `inject('temporalAddress')`
 * (test/helpers/temporal.ts wraps that).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { TEMPORAL_BIN, assertTemporalBinary, startDevServer } from '../../lab/temporal.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** "host:port" of the shared Temporal dev server. */
    temporalAddress: string;
    temporalNamespace: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  try {
    assertTemporalBinary();
  } catch {
    throw new Error(`the ${project.name} tests need the Temporal CLI at ${TEMPORAL_BIN}: run \`npm run tools\` first`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'nb-temporal-'));
  const server = await startDevServer({
    headless: true,
    dbFilename: join(dir, 'temporal.db'),
    logFile: join(dir, 'server.log'),
  });
  project.provide('temporalAddress', server.address);
  project.provide('temporalNamespace', server.namespace);
  return async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
