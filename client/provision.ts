/**
 * The typed client library: start (idempotently), follow and decommission
 * node bootstraps. Used by the nodeboot CLI, the demo and the tests.
 */
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { decommissionWorkflowId, provisionWorkflowId, TASK_QUEUE } from '../common/ids.js';
import { NodeIdKey, SegmentKey } from '../common/search-attributes.js';
import type { ProvisionInput, ProvisionInputJson } from '../common/input.js';
import {
  needsNewProvisionRun,
  type NodeLifecycle,
  type NodeLifecycleState,
  type RunFacts,
} from '../common/lifecycle.js';
import { checkProvisionInput, PROVISIONED_NODE_RULES, type CheckOptions } from '../common/validate.js';
import type { DecommissionNodeWorkflow, ProvisionNodeWorkflow } from '../common/definitions.js';
import { readNodeLifecycle } from './lifecycle.js';

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
  /** The node's state as found just before the start (decommissioned: this is a NEW run after a decommission). */
  lifecycle: NodeLifecycle;
}

/**
 * A start or repair the node's state does not allow: a decommission is still
 * open (its undos are under way), or — for a repair — the node was
 * decommissioned, so there is nothing to repair (start provisions it again).
 */
export class NodeStateError extends Error {
  constructor(
    readonly nodeId: string,
    readonly state: NodeLifecycleState,
    /** The run that put the node in that state (its decommission run). */
    readonly run: RunFacts | null,
    message: string,
  ) {
    super(message);
    this.name = 'NodeStateError';
  }
}

function decommissioningError(lifecycle: NodeLifecycle): NodeStateError {
  const run = lifecycle.decommission!;
  return new NodeStateError(
    lifecycle.nodeId,
    'decommissioning',
    run,
    `${lifecycle.nodeId} is being decommissioned (${run.workflowId} run ${run.runId} is still running): it cannot be provisioned until that ends`,
  );
}

/**
 * NodeStateError when the node is being decommissioned, or was decommissioned
 * after its last provisioning run (common/lifecycle.ts, the rule `status` and
 * `start` use): a day-2 operation (repair, maintain, rotate, rerun) then has
 * nothing to work on — `nothing` says what, e.g. "there is nothing to repair" —
 * and `startProvisioning` provisions the node again.
 */
export async function assertNotDecommissioned(client: Client, nodeId: string, nothing: string): Promise<void> {
  const lifecycle = await readNodeLifecycle(client, nodeId);
  const run = lifecycle.decommission;
  if (lifecycle.state === 'decommissioning') {
    throw new NodeStateError(
      nodeId,
      lifecycle.state,
      run,
      `${nodeId} is being decommissioned (${run!.workflowId} run ${run!.runId}): ${nothing}`,
    );
  }
  if (needsNewProvisionRun(lifecycle.state)) {
    throw new NodeStateError(
      nodeId,
      lifecycle.state,
      run,
      `${nodeId} was decommissioned (${run!.workflowId} run ${run!.runId}${lifecycle.state === 'decommission-failed' ? ', which did not finish' : ''}): ${nothing}`,
    );
  }
}

/**
 * Start provisioning a node, or attach to its existing run, as the node's
 * state says (common/lifecycle.ts): a node that is provisioning or provisioned
 * is never bootstrapped twice (attach); a node whose last run failed gets a new
 * run (a rerun); a node decommissioned since its last run gets a NEW run under
 * the same id `provision/<nodeId>`; a node being decommissioned is refused
 * (NodeDecommissioningError).
 *
 * Two starts at once get one run: both start with conflict policy USE_EXISTING,
 * so the second attaches to the run the first made.
 */
export async function startProvisioning(
  client: Client,
  raw: ProvisionInputJson,
  opts: { taskQueue?: string } = {},
): Promise<StartResult> {
  const input = validateProvisionInput(raw);
  let lifecycle = await readNodeLifecycle(client, input.nodeId);
  for (let attempt = 1; ; attempt++) {
    if (lifecycle.state === 'decommissioning') throw decommissioningError(lifecycle);
    const result = await startOrAttach(client, raw, input, lifecycle, opts.taskQueue ?? TASK_QUEUE);
    if (result.started || lifecycle.state !== 'provisioned' || attempt > 1) return { ...result, lifecycle };
    // Attached to a completed run: a decommission may have ended between reading the state and the start.
    const now = await readNodeLifecycle(client, input.nodeId);
    if (now.state === 'provisioned') return { ...result, lifecycle };
    lifecycle = now;
  }
}

async function startOrAttach(
  client: Client,
  raw: ProvisionInputJson,
  input: ProvisionInput,
  lifecycle: NodeLifecycle,
  taskQueue: string,
) {
  const workflowId = provisionWorkflowId(input.nodeId);
  const before = Date.now();
  try {
    const handle = await client.workflow.start<ProvisionNodeWorkflow>('provisionNode', {
      workflowId,
      taskQueue,
      // Plain JSON as given (defaults are applied again inside the workflow).
      args: [raw],
      workflowIdConflictPolicy: 'USE_EXISTING',
      // A completed run blocks a new one, unless the node was decommissioned after it.
      workflowIdReusePolicy: needsNewProvisionRun(lifecycle.state) ? 'ALLOW_DUPLICATE' : 'ALLOW_DUPLICATE_FAILED_ONLY',
      staticSummary: `provision ${input.nodeId} (${input.segment})`,
      // Listed by node and segment from the start; the run then need not upsert them (one visibility write less).
      typedSearchAttributes: nodeSearchAttributes(input),
    });
    // USE_EXISTING hands back a running run without saying so: its run id and start time tell.
    const desc = await handle.describe();
    const started = desc.runId !== lifecycle.provision?.runId && desc.startTime.getTime() >= before - 2_000;
    return { handle, started };
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
 * A node decommissioned since (or being decommissioned) is refused with
 * NodeStateError: there is nothing to repair, `startProvisioning` provisions it again.
 */
export async function startRepair(client: Client, raw: ProvisionInputJson, opts: { taskQueue?: string } = {}) {
  const repairInput = { ...raw, onFailure: 'hold' } as ProvisionInputJson;
  const input = validateProvisionInput(repairInput);
  await assertNotDecommissioned(client, input.nodeId, 'there is nothing to repair');
  return client.workflow.start<ProvisionNodeWorkflow>('provisionNode', {
    workflowId: provisionWorkflowId(input.nodeId),
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    args: [repairInput],
    // The completed run stays in history; a running one is refused (nothing starts twice).
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    workflowIdConflictPolicy: 'FAIL',
    staticSummary: `repair ${input.nodeId} (${input.segment})`,
    typedSearchAttributes: nodeSearchAttributes(input),
  });
}

export async function startDecommission(client: Client, raw: ProvisionInputJson, opts: { taskQueue?: string } = {}) {
  // As the workflow does: a node provisioned when a `port` alone named the built-in workload must still come off.
  const input = validateProvisionInput(raw, PROVISIONED_NODE_RULES);
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

/** NodeId and Segment, as provisionNode would upsert them (it skips the upsert when they are already set). */
function nodeSearchAttributes(input: ProvisionInput) {
  return [
    { key: NodeIdKey, value: input.nodeId },
    { key: SegmentKey, value: input.segment },
  ];
}
