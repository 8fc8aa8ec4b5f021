/**
 * decommissionNode: take a node out of the fabric. Runs every undo in reverse
 * runbook order with reason 'decommission'. Each undo is idempotent, so this
 * is safe on a node that was never (fully) provisioned, and safe to run again
 * after a partial failure. Runs as `decommission/<nodeId>` (common/ids.ts).
 *
 * It does not stop a provisionNode run that is still open for the node:
 * cancel that first (its own compensation then undoes what it did).
 */
import { ApplicationFailure, log, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { UndoRequest } from '../activities/types.js';
import { redactSecrets } from '../common/errors.js';
import type { ProvisionInputJson } from '../common/input.js';
import { ErrorTypeKey, FailedStepKey, NodeIdKey, SegmentKey } from '../common/search-attributes.js';
import type { DecommissionResult } from './definitions.js';
import { validateInput, validationRules } from './failures.js';
import { ledgerFor } from './ledger.js';
import { activitiesFor } from './proxies.js';
import { Compensations } from './saga.js';

/** Remove the node: stop workloads, delete entries, stop/evict the agent, remove the key and peers, uninstall. */
export async function decommissionNode(rawInput: ProvisionInputJson): Promise<DecommissionResult> {
  // A node provisioned when a `port` alone named the built-in workload must still come off.
  const input = validateInput(rawInput, { ...validationRules(), acceptPortOnlyWorkloads: true });
  const acts = activitiesFor(input);
  const { workflowId, runId } = workflowInfo();
  upsertSearchAttributes([
    { key: NodeIdKey, value: input.nodeId },
    { key: SegmentKey, value: input.segment },
  ]);
  const record = ledgerFor(acts.recordEvent, input.nodeId);
  await record('workflow', 'started', { detail: { decommission: true } });

  const req = (reason: UndoRequest['reason']): UndoRequest => ({ input, run: { workflowId, runId }, reason });
  // Pushed in runbook order, unwound in reverse: the same order a failed provisioning undoes in.
  const undos = new Compensations();
  undos.push('installOverlay', (reason) => acts.undoInstallOverlay(req(reason)));
  undos.push('issueOverlayKey', (reason) => acts.undoIssueOverlayKey(req(reason)));
  undos.push('startSpireAgent', (reason) => acts.undoStartSpireAgent(req(reason)));
  undos.push('registerEntries', (reason) => acts.undoRegisterEntries(req(reason)));
  undos.push('launchWorkloads', (reason) => acts.undoLaunchWorkloads(req(reason)));

  const removed: DecommissionResult['removed'] = {};
  const report = await undos.unwind('decommission', {
    undone: async (step, result) => {
      removed[step] = result.removed;
      await record(step, 'compensated', { detail: { reason: 'decommission', removed: result.removed } });
    },
    undoFailed: async (step, error) => {
      await record(step, 'compensation_failed', { errorType: error.type, detail: { reason: 'decommission', message: error.message } });
    },
  });

  const first = report.failed[0];
  if (first) {
    upsertSearchAttributes([
      { key: FailedStepKey, value: first.step },
      { key: ErrorTypeKey, value: first.type },
    ]);
    await record('workflow', 'failed', { errorType: first.type, detail: { undoFailed: report.failed.map((f) => f.step) } });
    log.error('decommission left something behind; it is safe to run again', { failed: report.failed });
    throw ApplicationFailure.create({
      type: first.type,
      message: redactSecrets(
        `decommission incomplete: ${report.failed.map((f) => `${f.step} (${f.type}): ${f.message}`).join('; ')}; removed: ${report.undone.join(', ') || 'nothing'}; safe to run again`,
      ),
      nonRetryable: true,
      details: [{ undone: report.undone, undoFailed: report.failed }],
    });
  }
  await record('workflow', 'succeeded', { detail: { decommission: true } });
  return { nodeId: input.nodeId, workflowId, runId, removed };
}
