/**
 * Read a node's lifecycle state from Temporal: describe its latest
 * `provision/<nodeId>` and `decommission/<nodeId>` runs and apply the one rule
 * in common/lifecycle.ts. Used by `startProvisioning`, `nodeboot status` and the
 * fleet's `nodeLifecycle` activity, so all three answer the same.
 */
import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { decommissionWorkflowId, provisionWorkflowId } from '../common/ids.js';
import { lifecycleState, type NodeLifecycle, type RunFacts } from '../common/lifecycle.js';

export async function readNodeLifecycle(client: Client, nodeId: string): Promise<NodeLifecycle> {
  const [provision, decommission] = await Promise.all([
    latestRun(client, provisionWorkflowId(nodeId)),
    latestRun(client, decommissionWorkflowId(nodeId)),
  ]);
  return { nodeId, state: lifecycleState(provision, decommission), provision, decommission };
}

/** The latest run of `workflowId`, or null when Temporal has none (never started, or past retention). */
export async function latestRun(client: Client, workflowId: string): Promise<RunFacts | null> {
  try {
    return runFacts(await client.workflow.getHandle(workflowId).describe());
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

export function runFacts(desc: WorkflowExecutionDescription): RunFacts {
  return {
    workflowId: desc.workflowId,
    runId: desc.runId,
    status: desc.status.name,
    startTime: desc.startTime.toISOString(),
    closeTime: desc.closeTime?.toISOString() ?? null,
  };
}
