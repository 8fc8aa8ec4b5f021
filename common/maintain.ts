/**
 * The public face of maintainNode (workflows/maintain-node.ts): its input,
 * its `maintenance` query and what it returns. It holds with the same `decide`
 * update as provisionNode (workflows/definitions.ts).
 *
 * Where the repair's input comes from: the node's latest provisioning run's
 * input (`nodeboot maintain` reads it from that run's history, as `repair` and
 * `decommission` do). The steps a repair re-runs are the same idempotent
 * activities with the same StepRequest shape provisionNode uses; only `run`
 * names the maintain run, so what a repair makes (an entry) is recorded as made
 * by it. Imported by workflows: no Node built-ins.
 */
import { defineQuery } from '@temporalio/workflow';
import { z } from 'zod';
import { shared } from './schema-cache.js';
import type { ProvisionInputJson } from './input.js';
import { HealthThresholds, type HealthReport, type HealthState, type HealthThresholdsJson } from './health.js';
import type { StepName } from './steps.js';

export const MaintainOptions = shared('maintain:MaintainOptions', () =>
  z
    .object({
      thresholds: HealthThresholds.default(() => HealthThresholds.parse({})),
      /** Repair rounds (re-run the plan, check again) before holding for an operator. */
      maxRepairRounds: z.number().int().min(0).max(10).default(2),
    })
    .strict(),
);
export type MaintainOptions = z.infer<typeof MaintainOptions>;

export interface MaintainInput {
  /** The node's provisioning input (its latest provision run's). */
  provision: ProvisionInputJson;
  thresholds?: HealthThresholdsJson;
  maxRepairRounds?: number;
}

/** What one repair round re-ran, and how it ended. */
export interface RepairRound {
  round: number;
  /** The broken links that called for it. */
  broken: string[];
  steps: StepName[];
  /** The step that failed (the round stopped there), or null. */
  failedStep: StepName | null;
  errorType?: string;
}

export type MaintainState = 'checking' | 'repairing' | 'held' | 'done';

export interface MaintainStatus {
  workflowId: string;
  runId: string;
  nodeId: string | null;
  state: MaintainState;
  health: HealthState | null;
  /** Why the run is held (state 'held'): a security finding, a failed repair, or rounds spent. */
  heldFor: { reason: 'security' | 'repair-failed' | 'still-broken'; step: StepName; detail: string } | null;
  rounds: RepairRound[];
  lastCheck: HealthReport | null;
}

/** What maintainNode returns: the node's health at the end, and what was done to get there. */
export interface MaintainResult {
  nodeId: string;
  workflowId: string;
  runId: string;
  health: Exclude<HealthState, 'repairing'>;
  /** The first check and the last (the same object when nothing was repaired). */
  firstCheck: HealthReport;
  lastCheck: HealthReport;
  rounds: RepairRound[];
  /** An operator chose `compensate` on a hold: the run stopped without repairing (nothing is undone). */
  stoppedByOperator: boolean;
}

/** `maintenance`: state, health, the repair rounds so far and the last check. */
export const maintainStatusQuery = defineQuery<MaintainStatus>('maintenance');
