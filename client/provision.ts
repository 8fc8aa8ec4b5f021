/**
 * The typed client library: start (idempotently), follow and decommission
 * node bootstraps. Used by the nodeboot CLI, the demo and the tests.
 */
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { decommissionWorkflowId, provisionWorkflowId, TASK_QUEUE } from '../common/ids.js';
import type { ProvisionInput, ProvisionInputJson } from '../common/input.js';
import { checkProvisionInput, type CheckOptions } from '../common/validate.js';
import type { DecommissionNodeWorkflow, ProvisionNodeWorkflow } from '../common/definitions.js';

export class InvalidInputError extends Error {
  constructor(readonly fields: string[]) {
    super(`invalid provisioning input:\n  ${fields.join('\n  ')}`);
    this.name = 'InvalidInputError';
  }
}

/** Validate before anything reaches Temporal, exactly as the workflow will: a bad input starts no run. */
export function validateProvisionInput(raw: unknown, opts: CheckOptions = {}): ProvisionInput {
  const checked = checkProvisionInput(raw, opts);
  if (!checked.ok) throw new InvalidInputError(checked.problems);
  return checked.value;
}

export interface StartResult {
  handle: WorkflowHandle<ProvisionNodeWorkflow>;
  /** False when a run for this node already existed (running, or finished successfully). */
  started: boolean;
}

/**
 * Start provisioning a node, or attach to its existing run. A node that is
 * provisioning or provisioned is never bootstrapped twice; a node whose last
 * run failed gets a new run (a rerun).
 */
export async function startProvisioning(client: Client, raw: ProvisionInputJson, opts: { taskQueue?: string } = {}): Promise<StartResult> {
  const input = validateProvisionInput(raw);
  const workflowId = provisionWorkflowId(input.nodeId);
  const before = Date.now();
  try {
    const handle = await client.workflow.start<ProvisionNodeWorkflow>('provisionNode', {
      workflowId,
      taskQueue: opts.taskQueue ?? TASK_QUEUE,
      // Plain JSON as given (defaults are applied again inside the workflow).
      args: [raw],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
      staticSummary: `provision ${input.nodeId} (${input.segment})`,
    });
    // USE_EXISTING hands back a running run without saying so: its start time tells.
    const desc = await handle.describe();
    return { handle, started: desc.startTime.getTime() >= before - 2_000 };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      return { handle: client.workflow.getHandle<ProvisionNodeWorkflow>(workflowId), started: false };
    }
    throw err;
  }
}

/**
 * A new provisioning run for a node that is provisioned (its last run
 * completed) but lost something since: every step is idempotent, so the run
 * redoes only what is missing. It holds on a failure (`onFailure: "hold"`)
 * rather than undo a node that was working; security failures still compensate.
 */
export async function startRepair(client: Client, raw: ProvisionInputJson, opts: { taskQueue?: string } = {}) {
  const repairInput = { ...raw, onFailure: 'hold' } as ProvisionInputJson;
  const input = validateProvisionInput(repairInput);
  return client.workflow.start<ProvisionNodeWorkflow>('provisionNode', {
    workflowId: provisionWorkflowId(input.nodeId),
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    args: [repairInput],
    // The completed run stays in history; a running one is refused (nothing starts twice).
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    workflowIdConflictPolicy: 'FAIL',
    staticSummary: `repair ${input.nodeId} (${input.segment})`,
  });
}

export async function startDecommission(client: Client, raw: ProvisionInputJson, opts: { taskQueue?: string } = {}) {
  // As the workflow does: a node provisioned when a `port` alone named the built-in workload must still come off.
  const input = validateProvisionInput(raw, { acceptPortOnlyWorkloads: true });
  return client.workflow.start<DecommissionNodeWorkflow>('decommissionNode', {
    workflowId: decommissionWorkflowId(input.nodeId),
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    args: [raw],
    workflowIdConflictPolicy: 'USE_EXISTING',
    staticSummary: `decommission ${input.nodeId}`,
  });
}

/** The ApplicationFailure type at the root of a workflow failure chain, if any. */
export function rootFailureType(err: unknown): string | undefined {
  let e: unknown = err;
  let found: string | undefined;
  while (e && typeof e === 'object') {
    if (e instanceof ApplicationFailure && e.type) found = e.type;
    e = (e as { cause?: unknown }).cause;
  }
  return found;
}
