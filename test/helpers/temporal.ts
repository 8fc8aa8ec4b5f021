/**
 * Test helpers for the shared dev server (test/helpers/dev-server.global-setup.ts):
 * a client + native connection, unique task queues and workflow ids, and
 * `withWorker` / `executeWithWorker`, which run a worker with the given
 * activities for exactly as long as the test needs it.
 */
import { randomBytes } from 'node:crypto';
import { Client, Connection, type WorkflowStartOptions } from '@temporalio/client';
import type { Workflow, WorkflowResultType } from '@temporalio/common';
import { DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { bundleWorkflows } from '../../workers/bundle.js';

// Keep test output readable: expected failures log warnings by the dozen; errors only.
try {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
} catch {
  // already installed in this process
}

export interface TemporalTestEnv {
  client: Client;
  connection: Connection;
  nativeConnection: NativeConnection;
  namespace: string;
  close(): Promise<void>;
}

/** Connect to the dev server the global setup started (inside vitest only). */
export async function connectTestEnv(): Promise<TemporalTestEnv> {
  const { inject } = await import('vitest');
  return connectEnv(inject('temporalAddress'), inject('temporalNamespace'));
}

/** Connect to a server at `address` (scripts use this directly). */
export async function connectEnv(address: string, namespace = 'default'): Promise<TemporalTestEnv> {
  const connection = await Connection.connect({ address });
  const nativeConnection = await NativeConnection.connect({ address });
  return {
    client: new Client({ connection, namespace }),
    connection,
    nativeConnection,
    namespace,
    async close() {
      await nativeConnection.close();
      await connection.close();
    },
  };
}

/** A short unique id, usable as a node id ("t-<time>-<hex>", lowercase, < 40 chars). */
export function uniqueId(prefix = 't'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export function uniqueTaskQueue(prefix = 'test'): string {
  return uniqueId(prefix);
}

// Bundling workflow code takes seconds: once per workflowsPath per test process.
const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();
export function workflowBundle(workflowsPath: string): Promise<WorkflowBundleWithSourceMap> {
  let bundle = bundles.get(workflowsPath);
  if (!bundle) {
    bundle = bundleWorkflows(workflowsPath);
    bundles.set(workflowsPath, bundle);
  }
  return bundle;
}

export interface WorkerSpec {
  /** Module exporting the workflows (e.g. workflows/index.ts). */
  workflowsPath: string;
  activities?: object;
  /** Default: a fresh queue per call. */
  taskQueue?: string;
}

/**
 * Run a worker on its own task queue while `fn` runs, then shut it down.
 * Heartbeats are flushed every 100 ms so cancellations reach activities fast.
 */
export async function withWorker<R>(
  env: TemporalTestEnv,
  spec: WorkerSpec,
  fn: (taskQueue: string) => Promise<R>,
): Promise<R> {
  const taskQueue = spec.taskQueue ?? uniqueTaskQueue();
  const worker = await Worker.create({
    connection: env.nativeConnection,
    namespace: env.namespace,
    taskQueue,
    workflowBundle: await workflowBundle(spec.workflowsPath),
    activities: spec.activities ?? {},
    maxHeartbeatThrottleInterval: 100,
    defaultHeartbeatThrottleInterval: 100,
  });
  return worker.runUntil(() => fn(taskQueue));
}

/** Start `workflow` on a fresh worker and task queue, wait for its result. */
export async function executeWithWorker<W extends Workflow>(
  env: TemporalTestEnv,
  spec: WorkerSpec,
  workflow: W,
  options: Omit<WorkflowStartOptions<W>, 'taskQueue' | 'workflowId'> & { workflowId?: string },
): Promise<WorkflowResultType<W>> {
  return withWorker(env, spec, (taskQueue) =>
    env.client.workflow.execute(workflow, {
      ...options,
      taskQueue,
      workflowId: options.workflowId ?? uniqueId('wf'),
    } as WorkflowStartOptions<W>),
  );
}

/** Poll `fn` until it returns a truthy value or the deadline passes (visibility is eventually consistent). */
export async function eventually<T>(
  fn: () => Promise<T | undefined | null | false>,
  { timeoutMs = 15_000, intervalMs = 200, what = 'condition' } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
