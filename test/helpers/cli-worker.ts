/**
 * A real worker on its own task queue while a test runs, and the `nodeboot`
 * CLI bound to it (same Temporal namespace, task queue and ledger database),
 * asserting each command's exit code. The lab tests that drive the product
 * the way an on-call engineer does (repair, rerun, reprovision) use it.
 */
import { expect, inject } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Ledger } from '../../inventory/index.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { describeRun, nodeboot, type CliRun } from '../fixtures/nodeboot-cli.js';
import { withWorker, type TemporalTestEnv } from './temporal.js';

/** Runs `nodeboot <args>` and expects exit `code`; `soft` reports a wrong code and goes on (one run shows every wrong state). */
export type BoundCli = (args: string[], code: number, opts?: { soft?: boolean }) => Promise<CliRun>;

/** How long one CLI command may take (a `--wait` on a full provisioning included). */
const CLI_TIMEOUT_MS = 240_000;

/** Runs `fn` with a real worker (activities against `ledger`) on a fresh task queue and a `nodeboot` bound to it. */
export function withCliWorker<T>(
  env: TemporalTestEnv,
  ledger: Ledger,
  databaseUrl: string,
  fn: (cli: BoundCli, taskQueue: string) => Promise<T>,
): Promise<T> {
  const spec = { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) };
  return withWorker(env, spec, (taskQueue) => {
    const cliEnv = {
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: env.namespace,
      TEMPORAL_TASK_QUEUE: taskQueue,
      DATABASE_URL: databaseUrl,
    };
    const cli: BoundCli = async (args, code, opts = {}) => {
      const r = await nodeboot(args, cliEnv, { timeoutMs: CLI_TIMEOUT_MS });
      (opts.soft ? expect.soft : expect)(r.code, describeRun(args, r)).toBe(code);
      return r;
    };
    return fn(cli, taskQueue);
  });
}
