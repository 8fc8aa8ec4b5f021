/**
 * `createActivities(deps)`: every activity the workflows call, built from
 * injected dependencies (the ledger, how to reach a host), so the worker and
 * the tests wire different drivers into the same code.
 */
import type { ProvisionInput } from '../common/input.js';
import { withBoundary } from './boundary.js';
import { activitySignal } from './host/heartbeat.js';
import { transportFor, type HostTransport } from './host/transport.js';
import { createFleetActivities } from './fleet/dependencies.js';
import type { Ledger } from '../inventory/index.js';
import { createLifecycleActivities } from './fleet/lifecycle.js';
import { createProvisionedNodes } from './fleet/provisioned.js';
import { createHealthActivities } from './health/check.js';
import type { BowtieTrust } from './overlay/bowtie/trust.js';
import { createOverlaySteps } from './overlay/index.js';
import { createRotationActivities } from './overlay/wireguard/rotate.js';
import type { RotationActivities } from './types-rotation.js';
import { createPreflight } from './preflight.js';
import { createRecordEvent, withRunEvents } from './record-event.js';
import { createSpireSteps } from './spire/steps.js';
import type { Activities, FleetActivities, FleetMaintenanceActivities } from './types.js';
import { createWorkloadSteps } from './workloads/steps.js';

export type { Activities } from './types.js';
export type { DependencyCheckRequest, DependencyHealth, FleetActivities, FleetMaintenanceActivities } from './types.js';

export interface ActivityDeps {
  ledger: Ledger;
  /** How a command reaches a host named in the input (default: local / netns). */
  transport?: (spec: ProvisionInput['host']) => HostTransport;
  /** Where overlay controller credentials named in inputs are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** The Bowtie controllers the worker talks to, and an extra CA (worker config). Unset: no controller is allowed. */
  bowtie?: BowtieTrust;
  /** The SPIRE server's config file on `spire.serverHost` (worker config): the preflight reads which NodeAttestors it runs. */
  spireServerConfig?: string;
}

export function createActivities(
  deps: ActivityDeps,
): Activities & FleetActivities & FleetMaintenanceActivities & RotationActivities {
  const shared = {
    ledger: deps.ledger,
    transport: deps.transport ?? transportFor,
    signal: activitySignal,
    env: deps.env,
    bowtie: deps.bowtie,
  };
  const events = createRecordEvent({ ledger: deps.ledger });
  // The preflight and the steps write the ledger events their requests carry (StepRequest.events).
  const steps = withRunEvents(
    {
      ...createPreflight({ ...shared, spireServerConfig: deps.spireServerConfig }),
      ...createOverlaySteps(shared),
      ...createSpireSteps(shared),
      ...createWorkloadSteps(shared),
    },
    events.recordEvents,
  );
  return withBoundary<Activities & FleetActivities & FleetMaintenanceActivities & RotationActivities>({
    ...steps,
    ...events,
    ...createFleetActivities(shared),
    ...createRotationActivities(shared),
    ...createLifecycleActivities(),
    ...createProvisionedNodes(shared),
    ...createHealthActivities(shared),
  });
}
