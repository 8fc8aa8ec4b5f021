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

/** Queue an event for the next write (LEAN_RUN_PATCH): it goes out with the next `record`. */
export type DeferEvent = (
  step: LedgerEvent['step'],
  kind: LedgerEventKind,
  extra?: Pick<LedgerEvent, 'attempt' | 'errorType' | 'detail'>,
) => void;

/**
 * The queued events plus one more, for the activity about to run to write
 * (LEAN_RUN_2_PATCH, StepRequest.events), then `delivered()` once that
 * activity returned its result, or `undelivered()` if it may not have run
 * to its end: the events go back to the queue, for the next write to write again
 * (a second append of the same event changes nothing).
 */
export interface HandOff {
  (...event: Parameters<DeferEvent>): LedgerEvent[];
  delivered(): void;
  undelivered(): void;
}

/**
 * `record` and `defer` for this run of `nodeId`, writing in batches: `defer`
 * queues an event, `record` writes the queue and its own event, in order, in one
 * local activity. A step's "succeeded" is deferred so that it goes out with the
 * next step's "started" (or the run's end), in the workflow task that follows
 * anyway: one ledger write per workflow task instead of two. Failures are
 * logged as eventRecorder's are; a write cut short by cancellation keeps the
 * queued events for the next write (the compensation's). `handOff` gives the
 * queue to an activity instead (LEAN_RUN_2_PATCH): no local activity at all.
 */
export function batchedEventRecorder(
  recordEvents: RunActivities['recordEvents'],
  nodeId: string,
): { record: RecordEvent; defer: DeferEvent; handOff: HandOff } {
  const { workflowId, runId } = workflowInfo();
  const queued: LedgerEvent[] = [];
  let handed: LedgerEvent[] = [];
  const eventOf = (...[step, kind, extra = {}]: Parameters<DeferEvent>): LedgerEvent => ({
    nodeId,
    run: { workflowId, runId },
    step,
    kind,
    ...extra,
  });
  const handOff: HandOff = Object.assign(
    (...event: Parameters<DeferEvent>) => {
      handed = [...queued.splice(0), eventOf(...event)];
      return handed;
    },
    {
      delivered: () => {
        handed = [];
      },
      undelivered: () => {
        queued.unshift(...handed);
        handed = [];
      },
    },
  );
  return {
    defer: (...args) => {
      queued.push(eventOf(...args));
    },
    handOff,
    record: async (step, kind, extra) => {
      const deferred = queued.splice(0);
      const events = [...deferred, eventOf(step, kind, extra)];
      try {
        await recordEvents(events, events.map((e) => eventSummary(e.step, e.kind)).join(' · '));
      } catch (err) {
        if (isCancellation(err)) {
          queued.unshift(...deferred);
          throw err;
        }
        log.warn('ledger events not recorded', {
          events: events.map((e) => `${e.step} ${e.kind}`),
          error: err instanceof Error ? err.message : String(err),
        });
      }
    },
  };
}
