/**
 * The typed client for maintainNode: start one check-and-repair of a node
 * (`maintain/<nodeId>`), or attach to the one already running.
 */
import type { Client } from '@temporalio/client';
import { maintainWorkflowId, TASK_QUEUE } from '../common/ids.js';
import type { ProvisionInputJson } from '../common/input.js';
import { MaintainOptions, type MaintainInput } from '../common/maintain.js';
import type { MaintainNodeWorkflow } from '../common/definitions.js';
import { assertNotDecommissioned, InvalidInputError, validateProvisionInput } from './provision.js';

/**
 * Start maintainNode for the node `provision` (its latest provisioning input)
 * describes. A maintain run already open for the node is attached to (two
 * repairs of one node never run side by side); a finished one may run again.
 */
export async function startMaintain(
  client: Client,
  provision: ProvisionInputJson,
  opts: Omit<MaintainInput, 'provision'> & { taskQueue?: string } = {},
) {
  const input = validateProvisionInput(provision);
  await assertNotDecommissioned(client, input.nodeId, 'there is nothing to maintain');
  const { taskQueue, ...options } = opts;
  // Same check as the workflow's: bad thresholds start no run (InvalidInputError names the field).
  const checked = MaintainOptions.safeParse(options);
  if (!checked.success)
    throw new InvalidInputError(checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  return client.workflow.start<MaintainNodeWorkflow>('maintainNode', {
    workflowId: maintainWorkflowId(input.nodeId),
    taskQueue: taskQueue ?? TASK_QUEUE,
    args: [{ provision, ...options }],
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    workflowIdConflictPolicy: 'USE_EXISTING',
    staticSummary: `maintain ${input.nodeId} (${input.segment})`,
  });
}
