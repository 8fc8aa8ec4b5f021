/**
 * decommissionNode: take a node out of the fabric. Runs every undo in the step
 * table's decommission order (common/steps.ts: the reverse of the runbook)
 * with reason 'decommission'. Each undo is idempotent, so this
 * is safe on a node that was never (fully) provisioned, and safe to run again
 * after a partial failure. Runs as `decommission/<nodeId>` (common/ids.ts).
 *
 * It does not stop a provisionNode run that is still open for the node:
 * cancel that first (its own compensation then undoes what it did).
 */
import { ApplicationFailure, log, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { UndoRequest } from '../activities/types.js';
import type { CompensationDetails } from '../common/compensation.js';
import { redactSecrets } from '../common/errors.js';
import type { ProvisionInputJson } from '../common/input.js';
import { ErrorTypeKey, FailedStepKey, NodeIdKey, SegmentKey } from '../common/search-attributes.js';
import type { DecommissionResult } from '../common/definitions.js';
import { DECOMMISSION_ORDER } from '../common/steps.js';
import { PROVISIONED_NODE_RULES } from '../common/validate.js';
import { validateInput, validationRules } from './failures.js';
import { eventRecorder } from './events.js';
import { activitiesFor } from './proxies.js';
import { Compensations } from './saga.js';

/** Remove the node: stop workloads, delete entries, stop/evict the agent, remove the key and peers, uninstall. */
export async function decommissionNode(rawInput: ProvisionInputJson): Promise<DecommissionResult> {
  // A node provisioned when a `port` alone named the built-in workload must still come off.
  const input = validateInput(rawInput, { ...validationRules(), ...PROVISIONED_NODE_RULES });
  const acts = activitiesFor(input);
  const { workflowId, runId } = workflowInfo();
  upsertSearchAttributes([
    { key: NodeIdKey, value: input.nodeId },
    { key: SegmentKey, value: input.segment },
  ]);
  const record = eventRecorder(acts.recordEvent, input.nodeId);
  await record('workflow', 'started', { detail: { decommission: true } });

  const req = (reason: UndoRequest['reason']): UndoRequest => ({ input, run: { workflowId, runId }, reason });
  // A stack unwinds last-in first: push the decommission order backwards.
  const undos = new Compensations();
  for (const { step, undo } of [...DECOMMISSION_ORDER].reverse()) undos.push(step, (reason) => acts[undo](req(reason)));

  const removed: DecommissionResult['removed'] = {};
  const report = await undos.unwind('decommission', {
    undone: async (step, result) => {
      removed[step] = result.removed;
      await record(step, 'compensated', { detail: { reason: 'decommission', removed: result.removed } });
    },
    undoFailed: async (step, error) => {
      await record(step, 'compensation_failed', {
        errorType: error.type,
        detail: { reason: 'decommission', message: error.message },
      });
    },
  });

  const first = report.failed[0];
  if (first) {
    upsertSearchAttributes([
      { key: FailedStepKey, value: first.step },
      { key: ErrorTypeKey, value: first.type },
    ]);
    await record('workflow', 'failed', {
      errorType: first.type,
      detail: { undoFailed: report.failed.map((f) => f.step) },
    });
    log.error('decommission left something behind; it is safe to run again', { failed: report.failed });
    throw ApplicationFailure.create({
      type: first.type,
      message: redactSecrets(
        `decommission incomplete: ${report.failed.map((f) => `${f.step} (${f.type}): ${f.message}`).join('; ')}; removed: ${report.undone.join(', ') || 'nothing'}; safe to run again`,
      ),
      nonRetryable: true,
      details: [{ undone: report.undone, undoFailed: report.failed } satisfies CompensationDetails],
    });
  }
  await record('workflow', 'succeeded', { detail: { decommission: true } });
  return { nodeId: input.nodeId, workflowId, runId, removed };
}
