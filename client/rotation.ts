/**
 * The library client for key rotation: start (or attach to) a node's
 * rotateOverlayKey run, validated exactly as the workflow validates it.
 */
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { rotateWorkflowId, TASK_QUEUE } from '../common/ids.js';
import { checkRotateRequest, type RotateRequestJson } from '../common/rotation.js';
import { assertNotDecommissioned, InvalidInputError } from './provision.js';
import type { RotateOverlayKeyWorkflow } from '../common/definitions.js';

export interface RotationStart {
  handle: WorkflowHandle<RotateOverlayKeyWorkflow>;
  /** False when a rotation of this node was already open (it is attached to, never run twice). */
  started: boolean;
}

/**
 * Start rotating a node's overlay key (workflow `rotate/<nodeId>`). A rotation
 * already open for the node is attached to; a finished one does not stop a new one.
 */
export async function startRotation(
  client: Client,
  raw: RotateRequestJson,
  opts: { taskQueue?: string } = {},
): Promise<RotationStart> {
  const checked = checkRotateRequest(raw);
  if (!checked.ok) throw new InvalidInputError(checked.problems);
  const nodeId = checked.value.input.nodeId;
  await assertNotDecommissioned(client, nodeId, 'there is no key to rotate');
  const workflowId = rotateWorkflowId(nodeId);
  const before = Date.now();
  try {
    const handle = await client.workflow.start<RotateOverlayKeyWorkflow>('rotateOverlayKey', {
      workflowId,
      taskQueue: opts.taskQueue ?? TASK_QUEUE,
      args: [raw],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: `rotate the overlay key of ${nodeId}`,
    });
    const desc = await handle.describe();
    return { handle, started: desc.startTime.getTime() >= before - 2_000 };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      return { handle: client.workflow.getHandle<RotateOverlayKeyWorkflow>(workflowId), started: false };
    throw err;
  }
}
