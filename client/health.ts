/**
 * The typed client for checkHealth: run checkNode on the worker (read-only)
 * for one node or many and wait for the reports. The caller needs no root and
 * none of the worker's secrets: only a Temporal connection.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { HealthReport, HealthThresholdsJson } from '../common/health.js';
import { TASK_QUEUE } from '../common/ids.js';
import type { ProvisionInputJson } from '../common/input.js';
import type { CheckHealthWorkflow } from '../common/definitions.js';

/** `health/<name>/<uuid>`: every check is its own short run (nothing to attach to, nothing shared). */
export function healthWorkflowId(name: string): string {
  return `health/${name}/${randomUUID()}`;
}

export async function checkHealthNow(
  client: Client,
  nodes: ProvisionInputJson[],
  opts: { name: string; thresholds?: HealthThresholdsJson; taskQueue?: string; timeoutMs?: number },
): Promise<HealthReport[]> {
  return client.workflow.execute<CheckHealthWorkflow>('checkHealth', {
    workflowId: healthWorkflowId(opts.name),
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    args: [{ nodes, ...(opts.thresholds ? { thresholds: opts.thresholds } : {}) }],
    // A check is read-only and bounded: a run nobody answers must not linger.
    workflowExecutionTimeout: opts.timeoutMs ?? 10 * 60_000,
    staticSummary: `health check of ${opts.name} (${nodes.length} node(s), read-only)`,
  });
}
