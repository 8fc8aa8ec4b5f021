/**
 * A worker in the test process running the real workflows and the real
 * activities (against `ledger`) on `taskQueue`, for the lab tests. Heartbeats
 * are flushed every 100 ms, so a cancellation or a dead attempt is seen quickly.
 */
import { Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../../activities/index.js';
import type { Ledger } from '../../inventory/index.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { workflowBundle, type TemporalTestEnv } from './temporal.js';

export interface RealWorker {
  worker: Worker;
  /** Resolves when the worker has shut down (`worker.shutdown()`). */
  running: Promise<void>;
}

export async function startRealWorker(
  env: TemporalTestEnv,
  ledger: Ledger,
  taskQueue: string,
  opts: Pick<WorkerOptions, 'interceptors'> = {},
): Promise<RealWorker> {
  const worker = await Worker.create({
    connection: env.nativeConnection,
    namespace: env.namespace,
    taskQueue,
    workflowBundle: await workflowBundle(WORKFLOWS_PATH),
    activities: createActivities({ ledger }),
    ...opts,
    maxHeartbeatThrottleInterval: 100,
    defaultHeartbeatThrottleInterval: 100,
  });
  return { worker, running: worker.run() };
}
