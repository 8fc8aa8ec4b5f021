/**
 * The one activity the workflows call on the inventory ledger directly:
 * recordEvent, which appends to the event log and moves the node's row along
 * with its runs. Other steps use the Ledger through their own activities' deps.
 * Its errors are mapped to failures by the activity boundary, like every step's.
 */
import type { Ledger } from '../inventory/index.js';
import type { Activities, LedgerEvent } from './types.js';

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
