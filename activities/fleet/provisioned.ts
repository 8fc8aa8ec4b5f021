/**
 * Which nodes fleet maintenance keeps: those the ledger says are provisioned
 * (`ready`), optionally of one segment. Read-only.
 */
import type { Ledger } from '../../inventory/index.js';
import type { FleetMaintenanceActivities } from '../types.js';

export function createProvisionedNodes(deps: {
  ledger: Ledger;
}): Pick<FleetMaintenanceActivities, 'listProvisionedNodes'> {
  return {
    async listProvisionedNodes({ segment }) {
      // A LedgerError becomes its typed failure at the activity boundary (activities/boundary.ts).
      const nodes = await deps.ledger.listNodes({ state: 'ready', ...(segment ? { segment } : {}) });
      return nodes.map((n) => ({ nodeId: n.nodeId, segment: n.segment }));
    },
  };
}
