/**
 * The stack most lab tests run against: a fresh lab, a fresh PostgreSQL
 * database with the ledger migrated into it, and a connection to the Temporal
 * dev server. Start it in `beforeAll`, stop it in `afterAll` (after the
 * test's own workers are stopped: they use all three).
 */
import type { WorkerOptions } from '@temporalio/worker';
import { Ledger } from '../../inventory/index.js';
import { Lab, type LabUpOptions } from '../../lab/lab.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { requireRealComponents } from './prereqs.js';
import { startRealWorker, type RealWorker } from './real-worker.js';
import { connectTestEnv, type TemporalTestEnv } from './temporal.js';

/**
 * Provision-input overrides the lab tests share: short step timeouts (seconds)
 * and quick retries, so a run meant to fail fails soon.
 */
export const LAB_FAST = {
  timeouts: {
    installOverlay: 60,
    issueOverlayKey: 40,
    gatePeerHealth: 40,
    startSpireAgent: 60,
    registerEntries: 40,
    launchWorkloads: 40,
    compensation: 60,
  },
  retry: { initialIntervalMs: 500, maximumIntervalMs: 2_000, maximumAttempts: 3 },
};

export interface LabStack {
  lab: Lab;
  db: TestDatabase;
  ledger: Ledger;
  env: TemporalTestEnv;
}

/**
 * Checks for root and the real components, then brings up the lab, the
 * database and the Temporal connection side by side, then the ledger. If the
 * ledger cannot connect, the rest is stopped again before the error is thrown.
 */
export async function startLabStack(labOpts: LabUpOptions): Promise<LabStack> {
  requireRealComponents(['temporal', 'spire-server', 'spire-agent']);
  const [lab, db, env] = await Promise.all([Lab.up(labOpts), createTestDatabase(), connectTestEnv()]);
  try {
    return { lab, db, env, ledger: await Ledger.connect(db.url, { migrate: true }) };
  } catch (err) {
    await stopLabStack({ lab, db, env });
    throw err;
  }
}

/** Closes the ledger, then takes down the rest; a part that never started (undefined) is skipped. */
export async function stopLabStack(stack: Partial<LabStack>): Promise<void> {
  await stack.ledger?.close();
  await Promise.allSettled([stack.lab?.down(), stack.db?.drop(), stack.env?.close()]);
}

/** A lab stack and a real worker (test/helpers/real-worker.ts) on one task queue. */
export interface LabSuite extends LabStack, RealWorker {}

/** `startLabStack`, then a real worker on `taskQueue`; if the worker cannot start, the stack is stopped again. */
export async function startLabSuite(
  labOpts: LabUpOptions,
  taskQueue: string,
  workerOpts: Pick<WorkerOptions, 'interceptors'> = {},
): Promise<LabSuite> {
  const stack = await startLabStack(labOpts);
  try {
    return { ...stack, ...(await startRealWorker(stack.env, stack.ledger, taskQueue, workerOpts)) };
  } catch (err) {
    await stopLabStack(stack);
    throw err;
  }
}

/** Shuts the worker down and waits for it, then `stopLabStack`; a part that never started is skipped. */
export async function stopLabSuite(suite: Partial<LabSuite>): Promise<void> {
  suite.worker?.shutdown();
  await suite.running?.catch(() => undefined);
  await stopLabStack(suite);
}
