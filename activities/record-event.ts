/**
 * The one activity the workflows call on the inventory ledger directly:
 * recordEvent, which appends to the event log and moves the node's row along
 * with its runs. Other steps use the Ledger through their own activities' deps.
 * Its errors are mapped to failures by the activity boundary, like every step's.
 */
import { log } from '@temporalio/activity';
import type { Ledger } from '../inventory/index.js';
import { STEPS } from '../common/steps.js';
import type { Activities, LedgerEvent, StepRequest } from './types.js';

export function createRecordEvent(deps: { ledger: Ledger }): Pick<Activities, 'recordEvent' | 'recordEvents'> {
  /** Append to the event log; a retried append of the same event is a no-op. */
  const recordEvent = async (event: LedgerEvent): Promise<void> => {
    await deps.ledger.appendEvent(event);
    await followRunState(deps.ledger, event);
  };
  return { recordEvent, recordEvents: inOrder(recordEvent) };
}

/** `recordEvents` from a `recordEvent`: each event in order, stopping at the first that fails (a retry redoes none twice: appends dedupe). */
export function inOrder(recordEvent: Activities['recordEvent']): Activities['recordEvents'] {
  return async (events) => {
    for (const event of events) await recordEvent(event);
  };
}

/** The activities a run asks to write its ledger events (StepRequest.events). */
export const EVENT_WRITING_ACTIVITIES = ['preflight', ...STEPS] as const;
type EventWriting = (typeof EVENT_WRITING_ACTIVITIES)[number];

/** Tries per batch of events, and the pause after each failed try. */
const EVENT_WRITE_PAUSES_MS = [50, 250];

/**
 * The preflight and the six steps, each writing the ledger events its request
 * carries (LEAN_RUN_2_PATCH): in order, beside its own work (neither waits
 * for the other), and returning only once they are written. The run then needs
 * no local activity of its own per step. As the workflow's own writes are,
 * these are best-effort: a batch the ledger still refuses after a few quick
 * tries is logged and the step goes on (a step that needs the ledger fails on
 * its own). The workflow hands an event on again if the activity may not have
 * written it; a second append of the same event changes nothing.
 */
export function withRunEvents<T extends Pick<Activities, EventWriting>>(
  activities: T,
  recordEvents: Activities['recordEvents'],
): T {
  const write = async (events: LedgerEvent[]): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        await recordEvents(events);
        return;
      } catch (err) {
        const pause = EVENT_WRITE_PAUSES_MS[attempt];
        if (pause === undefined) {
          warn('ledger events not recorded', {
            events: events.map((e) => `${e.step} ${e.kind}`),
            error: err instanceof Error ? err.message : String(err),
          });
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  };
  const wrapped: Record<string, unknown> = { ...activities };
  for (const name of EVENT_WRITING_ACTIVITIES) {
    const fn = activities[name] as (req: StepRequest) => Promise<unknown>;
    wrapped[name] = async (req: StepRequest) => {
      if (!req.events?.length) return fn(req);
      const written = write(req.events);
      try {
        return await fn(req);
      } finally {
        await written;
      }
    };
  }
  return wrapped as T;
}

/** The activity's logger inside an activity; stderr when a script calls the step directly. */
function warn(message: string, attrs: Record<string, unknown>): void {
  try {
    log.warn(message, attrs);
  } catch {
    console.warn(message, attrs);
  }
}

/**
 * The node row mirrors its runs: the workflow's own events move it through
 * provisioning → ready / held / failed / compensated, and a finished
 * decommission purges everything of the node but its event log.
 */
async function followRunState(ledger: Ledger, event: LedgerEvent): Promise<void> {
  // A maintain run checks and repairs a node that stays provisioned: its events are
  // the node's log, not its lifecycle (a held repair must not make the node 'held').
  if (event.run.workflowId.startsWith('maintain/')) return;
  const decommission = event.run.workflowId.startsWith('decommission/');
  if (event.kind === 'held') {
    await ledger.setNodeState(event.nodeId, 'held');
    return;
  }
  if (event.step !== 'workflow') return;
  if (decommission) {
    if (event.kind === 'started') await ledger.setNodeState(event.nodeId, 'decommissioning');
    else if (event.kind === 'succeeded') await ledger.purgeNode(event.nodeId);
    else if (event.kind === 'failed') await ledger.setNodeState(event.nodeId, 'failed');
    return;
  }
  const next = ({ started: 'provisioning', succeeded: 'ready', failed: 'failed', compensated: 'compensated' } as const)[
    event.kind as string
  ];
  if (next) await ledger.setNodeState(event.nodeId, next);
}
