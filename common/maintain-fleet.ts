/**
 * The public face of maintainFleet (workflows/maintain-fleet.ts): the fleet
 * maintenance a Temporal Schedule starts (`nodeboot maintain schedule`), its
 * remediation budget, its `fleetMaintenance` query and what it returns.
 *
 * Where the nodes come from: the fleet file (the same one `nodeboot fleet
 * start` rolled out: it holds every node's provisioning input, which a repair
 * needs), narrowed to the nodes the ledger says are provisioned (`ready`) and,
 * optionally, to one segment. A node in the file but not ready (never
 * provisioned, decommissioned, failed) is not checked: there is nothing to keep.
 *
 * Imported by workflows: no Node built-ins.
 */
import { defineQuery } from '@temporalio/workflow';
import { z } from 'zod';
import { shared } from './schema-cache.js';
import type { FleetInputJson } from './fleet.js';
import {
  HealthThresholds,
  brokenLinks,
  securityFindings,
  type HealthReport,
  type HealthThresholdsJson,
} from './health.js';
import { summarizeHealth } from './health-summary.js';
import type { ProvisionInput } from './input.js';
import type { MaintainResult } from './maintain.js';
import { NodeId } from './names.js';

const Label = shared('maintain-fleet:Label', () =>
  z
    .string()
    .max(64)
    .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, 'must be lowercase letters, digits and inner hyphens only'),
);

/**
 * The remediation budget: how much repairing one fleet run may do. A shared
 * dependency that breaks (the SPIRE server, a hub) makes every node look
 * broken at once; repairing them all would re-attest every agent and re-make
 * every entry against a server that is down — a repair storm. So: a dependency
 * down, or more than `maxBrokenPercent` of the checked nodes broken, repairs
 * nothing and holds for an operator.
 */
export const RemediationBudget = shared('maintain-fleet:RemediationBudget', () =>
  z
    .object({
      /** At most this many maintainNode repairs run at the same time (K). */
      maxConcurrentRepairs: z.number().int().min(1).max(100).default(2),
      /** More than this share (0–100) of the checked nodes broken: repair none, hold (X). */
      maxBrokenPercent: z.number().min(0).max(100).default(30),
    })
    .strict(),
);
export type RemediationBudget = z.infer<typeof RemediationBudget>;

export const MaintainFleetOptions = shared('maintain-fleet:MaintainFleetOptions', () =>
  z
    .object({
      /** Only this segment's nodes. */
      segment: Label.optional(),
      budget: RemediationBudget.default(() => RemediationBudget.parse({})),
      thresholds: HealthThresholds.default(() => HealthThresholds.parse({})),
      /** Nodes checked at the same time (checks are read-only, but each reads a dozen things). */
      checkWindow: z.number().int().min(1).max(100).default(5),
      /** Each scheduled key rotation's handshake budget (rotateOverlayKey's own default when absent). */
      handshakeTimeoutSeconds: z.number().int().min(2).max(600).optional(),
    })
    .strict(),
);
export type MaintainFleetOptions = z.infer<typeof MaintainFleetOptions>;

export interface MaintainFleetInput {
  /** The fleet file (common/fleet.ts): every node's provisioning input. */
  fleet: FleetInputJson;
  segment?: string;
  budget?: z.input<typeof RemediationBudget>;
  thresholds?: HealthThresholdsJson;
  checkWindow?: number;
  handshakeTimeoutSeconds?: number;
}

/** The schedule that runs maintainFleet: `maintain-fleet-<fleetId>[-<segment>]`. */
export function maintainScheduleId(fleetId: string, segment?: string): string {
  const id = NodeId.parse(fleetId);
  return segment ? `maintain-fleet-${id}-${Label.parse(segment)}` : `maintain-fleet-${id}`;
}

/** What the fleet run is doing: checking, repairing, held (repairing nothing), done. */
export type FleetMaintainState = 'dependencies' | 'checking' | 'repairing' | 'held' | 'done';

export interface FleetHold {
  /**
   * dependency-down: a shared dependency is down; over-budget: too many nodes broken at once;
   * rotation-rollback-failed: a scheduled key rotation failed and so did its rollback (a node
   * may be on neither key cleanly: an operator looks before anything else is rotated).
   */
  reason: 'dependency-down' | 'over-budget' | 'rotation-rollback-failed';
  detail: string;
}

export interface FleetNodeOutcome {
  nodeId: string;
  /** The check's verdict. */
  status: HealthReport['status'];
  /** Broken links, `link (step)`. */
  broken: string[];
  /** What the repair (a child maintainNode) ended with; absent when the node was not repaired. */
  repair?: { workflowId: string; health: MaintainResult['health'] | 'held' | 'failed'; rounds: number };
  /** The scheduled key rotation (a child rotateOverlayKey); absent when the key was not due. */
  rotation?: FleetRotationOutcome;
}

/**
 * rotated: the node is on a new key; rolled-back: the new key failed and the node is back on
 * its old one, tunnel verified (reported, not held: the next run tries again); failed: refused
 * before anything changed, or the rollback failed too (then the run holds); running: another
 * rotation of the node was already under way (left to it).
 */
export interface FleetRotationOutcome {
  workflowId: string;
  outcome: 'rotated' | 'rolled-back' | 'failed' | 'running';
  /** The key the node is on afterwards, when known. */
  fingerprint?: string;
  /** Why it did not rotate. */
  reason?: string;
}

export interface FleetMaintainStatus {
  workflowId: string;
  runId: string;
  fleetId: string | null;
  segment: string | null;
  state: FleetMaintainState;
  heldFor: FleetHold | null;
  /** Dependencies found down (the fleet breaker's checks). */
  down: { name: string; detail?: string }[];
  checked: number;
  broken: number;
  /** Repairs (child maintainNode runs) started so far. */
  repairsStarted: number;
  nodes: FleetNodeOutcome[];
  /**
   * Healthy nodes whose overlay key is older than their `overlay.maxKeyAgeDays`:
   * each gets a child rotateOverlayKey (`rotate/<nodeId>`) within the repair window K.
   */
  rotationDue: string[];
  /** Rotations (child rotateOverlayKey runs) started so far. */
  rotationsStarted: number;
}

export interface FleetMaintainResult extends Omit<FleetMaintainStatus, 'state'> {
  /** done: checked (and repaired what it could); stopped: an operator chose `compensate` on a hold. */
  outcome: 'done' | 'stopped';
  /** Each node's check report (one per checked node). */
  reports: HealthReport[];
}

export const fleetMaintenanceQuery = defineQuery<FleetMaintainStatus>('fleetMaintenance');

/** Broken nodes the budget allows to be repaired: all of them, or none when more than X % are broken. */
export function overBudget(broken: number, checked: number, budget: RemediationBudget): boolean {
  return checked > 0 && (broken * 100) / checked > budget.maxBrokenPercent;
}

/**
 * Whether the schedule rotates this node's overlay key: the node sets
 * `overlay.maxKeyAgeDays`, its check found nothing broken and no security
 * finding (a broken or possibly compromised node is repaired or held, never
 * re-keyed), and the key's age in the check's evidence (the ledger's
 * getOverlayKey().since: the last rotation, else the first peering) exceeds it.
 */
export function keyRotationDue(node: ProvisionInput, report: HealthReport): boolean {
  const maxDays = node.overlay.maxKeyAgeDays;
  if (maxDays === undefined || report.nodeId !== node.nodeId) return false;
  if (brokenLinks(report).length > 0 || securityFindings(report).length > 0) return false;
  const age = summarizeHealth(report).keyAgeSeconds;
  return age !== null && age > maxDays * 86_400;
}
