/**
 * The fleet asks this when a node's child run cannot start because a run
 * already completed: is the node still provisioned, or was it decommissioned
 * since (then the fleet gives it a new run)? Read-only: it describes the node's
 * latest provision and decommission runs through the worker's own Temporal
 * client and applies the same rule as `nodeboot start` (common/lifecycle.ts).
 */
import { Context } from '@temporalio/activity';
import { readNodeLifecycle } from '../../client/lifecycle.js';
import type { FleetActivities } from '../types.js';

export function createLifecycleActivities(): Pick<FleetActivities, 'nodeLifecycle'> {
  return {
    async nodeLifecycle({ nodeId }) {
      return readNodeLifecycle(Context.current().client, nodeId);
    },
  };
}
