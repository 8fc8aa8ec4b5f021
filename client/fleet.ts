/**
 * The typed client for fleets: start a provisionFleet run (validated first,
 * idempotent while it runs) and read its progress, running or finished.
 */
import {
  WorkflowFailedError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import { checkFleet, type FleetInputJson, type ValidFleet } from '../common/fleet.js';
import { fleetWorkflowId, TASK_QUEUE } from '../common/ids.js';
import { progressQuery, type FleetProgress, type ProvisionFleetWorkflow } from '../common/definitions.js';
import { InvalidInputError, rootFailureType } from './provision.js';

/** Validate a fleet and every node's merged input before anything reaches Temporal. */
export function validateFleetInput(raw: unknown): ValidFleet {
  const { fleet, problems } = checkFleet(raw);
  if (!fleet) throw new InvalidInputError(problems);
  return fleet;
}

/**
 * Start the fleet's rollout as `fleet/<fleetId>`, or attach to it while it
 * runs. Starting a finished fleet again is a new rollout over the same nodes:
 * provisioned nodes are skipped, failed ones and ones decommissioned since get a new run.
 */
export async function startFleet(
  client: Client,
  raw: FleetInputJson,
  opts: { taskQueue?: string } = {},
): Promise<{ handle: WorkflowHandle<ProvisionFleetWorkflow>; started: boolean; fleet: ValidFleet }> {
  const fleet = validateFleetInput(raw);
  const before = Date.now();
  const handle = await client.workflow.start<ProvisionFleetWorkflow>('provisionFleet', {
    workflowId: fleetWorkflowId(fleet.input.fleetId),
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    args: [raw],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    staticSummary: `fleet ${fleet.input.fleetId}: ${fleet.nodes.length} nodes, window ${fleet.input.window}`,
  });
  const desc = await handle.describe();
  return { handle, started: desc.startTime.getTime() >= before - 2_000, fleet };
}

export interface FleetView {
  workflowId: string;
  runId: string;
  /** Temporal's status of the fleet's latest run. */
  execution: WorkflowExecutionDescription['status']['name'];
  /** The progress (query while running, the result once completed); null when neither answers. */
  progress: FleetProgress | null;
  /** Why the run failed, when it did (e.g. invalid input). */
  failure: { type: string | null; message: string } | null;
}

/** The fleet's latest run (after any continue-as-new) and its progress. Throws WorkflowNotFoundError. */
export async function viewFleet(
  client: Client,
  fleetId: string,
  opts: { queryTimeoutMs?: number } = {},
): Promise<FleetView> {
  const handle = client.workflow.getHandle<ProvisionFleetWorkflow>(fleetWorkflowId(fleetId));
  const desc = await handle.describe();
  const run = client.workflow.getHandle<ProvisionFleetWorkflow>(desc.workflowId, desc.runId);
  const view: FleetView = {
    workflowId: desc.workflowId,
    runId: desc.runId,
    execution: desc.status.name,
    progress: null,
    failure: null,
  };
  if (view.execution === 'COMPLETED') {
    view.progress = await run.result();
    return view;
  }
  if (view.execution !== 'RUNNING') {
    await run.result().catch((err: unknown) => {
      const cause = err instanceof WorkflowFailedError ? (err.cause ?? err) : err;
      view.failure = {
        type: rootFailureType(err) ?? null,
        message: cause instanceof Error ? cause.message : String(cause),
      };
    });
  }
  try {
    view.progress = await client.withDeadline(Date.now() + (opts.queryTimeoutMs ?? 5_000), () =>
      run.query(progressQuery),
    );
  } catch {
    // No worker answered (or a run that failed before it had progress): what Temporal knows is all there is.
  }
  return view;
}
