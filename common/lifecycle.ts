/**
 * Which state a node's life is in, from its latest `provision/<nodeId>` run and
 * its latest `decommission/<nodeId>` run (DESIGN.md, "A node's life"). Every
 * answer that depends on it — `nodeboot start` and `status`, the library
 * client, the fleet — asks this one rule, never one run alone: a provision run
 * that completed says nothing once a decommission has run after it.
 *
 * Pure and free of Node built-ins: the fleet's activity and the client both
 * call it, and a unit test covers every case.
 */

/** Temporal's execution status names (WorkflowExecutionStatusName), as plain strings. */
export type RunStatusName =
  | 'RUNNING'
  | 'COMPLETED'
  | 'FAILED'
  | 'CANCELLED'
  | 'TERMINATED'
  | 'CONTINUED_AS_NEW'
  | 'TIMED_OUT'
  | 'PAUSED'
  | 'UNKNOWN'
  | 'UNSPECIFIED';

/** What the rule needs to know about one run. */
export interface RunFacts {
  workflowId: string;
  runId: string;
  status: RunStatusName;
  /** ISO 8601. */
  startTime: string;
  /** ISO 8601; null while the run is open. */
  closeTime: string | null;
}

/**
 * - new: no run at all (or Temporal's retention dropped them): start provisions it.
 * - provisioning: a provision run is open: start attaches to it.
 * - provisioned: the latest provision run completed and no decommission ran after it.
 * - failed: the latest provision run ended without provisioning (failed, cancelled,
 *   terminated, timed out): start gives it a new run (a rerun).
 * - decommissioning: a decommission run is open: start is refused until it ends.
 * - decommissioned: a decommission completed after the latest provision run
 *   ended: the node is out of the fabric, start gives it a NEW provision run.
 * - decommission-failed: the latest decommission ended without finishing (an undo
 *   failed, or it was cancelled/terminated): parts of the node may be left; a new
 *   provision run adopts what is left (every step is idempotent), or decommission again.
 */
export type NodeLifecycleState =
  'new' | 'provisioning' | 'provisioned' | 'failed' | 'decommissioning' | 'decommissioned' | 'decommission-failed';

export interface NodeLifecycle {
  nodeId: string;
  state: NodeLifecycleState;
  provision: RunFacts | null;
  decommission: RunFacts | null;
}

const isOpen = (r: RunFacts) => r.status === 'RUNNING' || r.status === 'PAUSED';

/**
 * The rule. An open decommission wins over everything (its undos are under
 * way, so nothing may start); then an open provision run. Between two closed
 * runs the one that closed last says what the node is: `nodeboot decommission`
 * waits for an open provision run to end before it starts, so in normal use the
 * decommission closes last exactly when it ran after the provisioning.
 */
export function lifecycleState(provision: RunFacts | null, decommission: RunFacts | null): NodeLifecycleState {
  if (decommission && isOpen(decommission)) return 'decommissioning';
  if (provision && isOpen(provision)) return 'provisioning';
  if (decommission && (!provision || closedAfter(decommission, provision))) {
    return decommission.status === 'COMPLETED' ? 'decommissioned' : 'decommission-failed';
  }
  if (!provision) return 'new';
  return provision.status === 'COMPLETED' ? 'provisioned' : 'failed';
}

/** True when `a` closed at or after `b` (both closed). */
function closedAfter(a: RunFacts, b: RunFacts): boolean {
  return Date.parse(a.closeTime ?? a.startTime) >= Date.parse(b.closeTime ?? b.startTime);
}

/**
 * States in which a node is not in the fabric as its last provision run says,
 * so a start must make a NEW provision run even though that run completed
 * (workflow-id reuse policy ALLOW_DUPLICATE instead of ALLOW_DUPLICATE_FAILED_ONLY).
 */
export function needsNewProvisionRun(state: NodeLifecycleState): boolean {
  return state === 'decommissioned' || state === 'decommission-failed';
}
