/**
 * checkHealth: run checkNode (read-only) on one node or many and return the
 * reports. What `nodeboot health` and `nodeboot fleet health` start: the check
 * runs on the worker, which has the root, the namespaces and the ledger; the
 * CLI needs none of them. Changes nothing, records nothing; the worker's
 * health gauges are updated from the results (workers/health-metrics.ts).
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/types.js';
import { HealthThresholds, type CheckHealthInput, type HealthReport } from '../common/health.js';
import { failure } from '../common/errors.js';
import { validateInput } from './failures.js';

/** Nodes checked at the same time. */
const WINDOW = 5;

const { checkNode } = proxyActivities<Activities>({
  startToCloseTimeout: 120_000,
  heartbeatTimeout: 30_000,
  retry: { maximumAttempts: 2, initialInterval: 2_000 },
  summary: 'check every link of the node (read-only)',
});

export async function checkHealth(raw: CheckHealthInput): Promise<HealthReport[]> {
  const th = HealthThresholds.safeParse(raw?.thresholds ?? {});
  if (!th.success)
    throw failure(
      'InvalidInput',
      `invalid input: ${th.error.issues.map((i) => `thresholds.${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const inputs = (raw?.nodes ?? []).map((n) => validateInput(n, {}));
  const out: HealthReport[] = new Array(inputs.length);
  let next = 0;
  const lane = async () => {
    while (next < inputs.length) {
      const i = next++;
      out[i] = await checkNode({ input: inputs[i]!, thresholds: th.data });
    }
  };
  await Promise.all(Array.from({ length: Math.min(WINDOW, inputs.length) }, lane));
  return out;
}
