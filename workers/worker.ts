/**
 * The node-bootstrap worker: connects to the ledger (migrating it), then to
 * Temporal, and runs the provisioning workflows and their activities.
 *
 *   DATABASE_URL=postgres://... TEMPORAL_ADDRESS=127.0.0.1:7233 tsx workers/worker.ts
 */
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { Ledger } from '../activities/inventory/ledger.js';
import { loadWorkerConfig, type WorkerConfig } from './config.js';
import { describeFaultPause, faultPauseInterceptor } from './fault-injection.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** Build (but do not run) a worker; the caller owns `shutdown` and the ledger. */
export async function createWorker(config: WorkerConfig): Promise<{ worker: Worker; ledger: Ledger; connection: NativeConnection }> {
  const ledger = await Ledger.connect(config.DATABASE_URL, { migrate: true });
  try {
    const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
    const fault = config.NODEBOOT_FAULT_PAUSE;
    if (fault) console.error(`[worker] WARNING: fault injection is ON (NODEBOOT_FAULT_PAUSE): ${describeFaultPause(fault)}. Never set this outside tests.`);
    const worker = await Worker.create({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      workflowsPath: WORKFLOWS_PATH,
      activities: createActivities({ ledger }),
      maxConcurrentActivityTaskExecutions: config.NODEBOOT_MAX_CONCURRENT_ACTIVITIES,
      ...(fault ? { interceptors: { activity: [faultPauseInterceptor(fault)] } } : {}),
    });
    return { worker, ledger, connection };
  } catch (err) {
    await ledger.close();
    throw err;
  }
}

async function main() {
  const config = loadWorkerConfig();
  const { worker, ledger, connection } = await createWorker(config);
  console.error(`[worker] polling ${config.TEMPORAL_TASK_QUEUE} on ${config.TEMPORAL_ADDRESS}/${config.TEMPORAL_NAMESPACE}`);
  try {
    await worker.run();
  } finally {
    await ledger.close();
    await connection.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error(`[worker] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
