/**
 * The inventory subsystem: the PostgreSQL ledger, its migrations, IPv4 helpers,
 * and the one activity the workflows call on it directly (recordEvent).
 * Other steps use the Ledger through their own activities' deps.
 */
import { failure } from '../../common/errors.js';
import type { Activities, LedgerEvent } from '../types.js';
import { LedgerError } from './errors.js';
import type { Ledger } from './ledger.js';

export * from './errors.js';
export * from './ipv4.js';
export * from './ledger.js';
export { MIGRATIONS, applyMigrations, type Migration, type MigrationResult } from './migrations.js';

/** A LedgerError becomes the ApplicationFailure of its type; anything else is passed through. */
export function ledgerFailure(err: unknown): unknown {
  return err instanceof LedgerError ? failure(err.type, err.message, { details: err.code ? [{ code: err.code }] : undefined }) : err;
}

export function createInventoryActivities(deps: { ledger: Ledger }): Pick<Activities, 'recordEvent'> {
  return {
    /** Append to the event log; a retried append of the same event is a no-op. */
    async recordEvent(event: LedgerEvent): Promise<void> {
      try {
        await deps.ledger.appendEvent(event);
        await followRunState(deps.ledger, event);
      } catch (err) {
        throw ledgerFailure(err);
      }
    },
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
  const next = ({ started: 'provisioning', succeeded: 'ready', failed: 'failed', compensated: 'compensated' } as const)[event.kind as string];
  if (next) await ledger.setNodeState(event.nodeId, next);
}
