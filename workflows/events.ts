/**
 * Best-effort ledger events from a workflow.
 *
 * The workflow history is the record of a run; the ledger's event log is the
 * view people and reports query. An unreachable ledger (after the retry policy
 * gave up) must not fail or undo a bootstrap that is otherwise fine, so a
 * failed write is logged and the run goes on. Cancellation still propagates.
 */
import { isCancellation, log, workflowInfo } from '@temporalio/workflow';
import type { LedgerEvent, LedgerEventKind } from '../activities/types.js';
import type { RunActivities } from './proxies.js';

export type RecordEvent = (
  step: LedgerEvent['step'],
  kind: LedgerEventKind,
  extra?: Pick<LedgerEvent, 'attempt' | 'errorType' | 'detail'>,
) => Promise<void>;

/** What the Web UI shows on the event's activity: "event: installOverlay started". */
export const eventSummary = (step: LedgerEvent['step'], kind: LedgerEventKind) => `event: ${step} ${kind}`;

/** `record(step, kind, extra)` for this run of `nodeId`. */
export function eventRecorder(recordEvent: RunActivities['recordEvent'], nodeId: string): RecordEvent {
  const { workflowId, runId } = workflowInfo();
  return async (step, kind, extra = {}) => {
    try {
      await recordEvent({ nodeId, run: { workflowId, runId }, step, kind, ...extra }, eventSummary(step, kind));
    } catch (err) {
      if (isCancellation(err)) throw err;
      log.warn('ledger event not recorded', { step, kind, error: err instanceof Error ? err.message : String(err) });
    }
  };
}
