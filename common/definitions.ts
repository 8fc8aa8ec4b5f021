/**
 * The public face of the node-bootstrap workflows: their signatures, query and
 * update definitions, and the shapes they return.
 *
 * Clients (nodeboot, tests) import this module instead of the workflows: it
 * holds no workflow logic, so importing it outside the workflow sandbox is
 * safe, and the workflows import it too. No Node built-ins here.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { StepEvidence, UndoRequest, UndoResult } from '../activities/types.js';
import type { FleetInputJson } from './fleet.js';
import type { ProvisionInputJson } from './input.js';
import type { CheckHealthInput, HealthReport } from './health.js';
import type { MaintainInput, MaintainResult } from './maintain.js';
import type { FleetMaintainResult, MaintainFleetInput } from './maintain-fleet.js';
import type { RotateRequestJson, RotationReceipt } from './rotation.js';
import type { StepName } from './steps.js';

/** What each step proved, by step (the `evidence` of a StepStatus). */
export type { StepEvidence };

/**
 * The workflows as a client starts them: by type name, with these argument
 * and result types (`client.workflow.start<ProvisionNodeWorkflow>('provisionNode', ...)`).
 * test/unit/workflow-signatures.test.ts checks that the workflows match.
 */
export interface Workflows {
  provisionNode: (input: ProvisionInputJson) => Promise<ProvisionReceipt>;
  decommissionNode: (input: ProvisionInputJson) => Promise<DecommissionResult>;
  provisionFleet: (input: FleetInputJson) => Promise<FleetResult>;
  rotateOverlayKey: (request: RotateRequestJson) => Promise<RotationReceipt>;
  maintainNode: (input: MaintainInput) => Promise<MaintainResult>;
  maintainFleet: (input: MaintainFleetInput) => Promise<FleetMaintainResult>;
  checkHealth: (input: CheckHealthInput) => Promise<HealthReport[]>;
}
export type ProvisionNodeWorkflow = Workflows['provisionNode'];
export type DecommissionNodeWorkflow = Workflows['decommissionNode'];
export type ProvisionFleetWorkflow = Workflows['provisionFleet'];
export type RotateOverlayKeyWorkflow = Workflows['rotateOverlayKey'];
export type MaintainNodeWorkflow = Workflows['maintainNode'];
export type MaintainFleetWorkflow = Workflows['maintainFleet'];
export type CheckHealthWorkflow = Workflows['checkHealth'];

export type UndoReason = UndoRequest['reason'];

/**
 * running: steps are executing; held: a step failed for good and the run waits
 * for `decide`; compensating: undoing; compensated: failed or cancelled and
 * every undo succeeded; failed: failed and left something behind (an undo
 * failed) or the input was invalid; succeeded: all six steps done.
 */
export type RunState = 'running' | 'held' | 'compensating' | 'compensated' | 'failed' | 'succeeded';

export type StepState =
  'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'compensating' | 'compensated' | 'compensation_failed';

/** A failure as people read it. `type` is the ApplicationFailure type (one of ERROR_TYPES for our activities). */
export interface FailureInfo {
  step: StepName | 'workflow';
  type: string;
  message: string;
}

export interface StepStatus {
  step: StepName;
  state: StepState;
  /** Times this run started the step (an operator retry adds one; activity retries do not). */
  runs: number;
  /** Workflow time the latest run of the step began (ISO 8601). */
  startedAt?: string;
  /** Duration of the latest run of the step, in ms of workflow time. */
  durationMs?: number;
  /** What the step proved (secret-free by contract). */
  evidence?: StepEvidence[StepName];
  failure?: FailureInfo;
  undo?: { reason: UndoReason; removed?: string[]; error?: FailureInfo };
}

export interface ProvisionStatus {
  workflowId: string;
  runId: string;
  /** Null only when the input was invalid. */
  nodeId: string | null;
  segment: string | null;
  state: RunState;
  /** The step executing now (null before the first, after the last, and while compensating). */
  currentStep: StepName | null;
  /** The six steps, in runbook order. */
  steps: StepStatus[];
  lastFailure: FailureInfo | null;
  /** The step that waits for an operator decision while state is 'held'. */
  heldStep: StepName | null;
}

/** An operator's decision for a held run. */
export interface Decision {
  /** retry: run the failed step again and continue; compensate: undo what was done and fail. */
  action: 'retry' | 'compensate';
}

export interface DecisionAck {
  action: Decision['action'];
  step: StepName;
}

/** `status`: the run's state, current step, per-step evidence and durations, last failure. */
export const statusQuery = defineQuery<ProvisionStatus>('status');

/**
 * `decide`: resolve a held run. The validator rejects it (nothing enters
 * history) unless the run is held and the action is 'retry' or 'compensate'.
 */
export const decideUpdate = defineUpdate<DecisionAck, [Decision]>('decide');

/** What provisionNode returns: the facts a person checks after a bootstrap. */
export interface ProvisionReceipt {
  nodeId: string;
  segment: string;
  workflowId: string;
  runId: string;
  interface: string;
  overlayIp: string;
  publicKey: string;
  keyFingerprint: string;
  hubHandshakes: { hub: string; latestHandshakeUnix: number; handshakeAgeSeconds: number }[];
  /** Bowtie driver: the device on the controller, accepted and recently seen. */
  overlayDevice?: { id: string; state: string; lastSeenAgeSeconds: number };
  probe: { target: string; connectMs: number };
  nodeAliasId: string;
  agentIdDigest: string;
  attestationType: string;
  /** The agent re-attests by itself after an eviction (x509pop...; false for join_token). */
  canReattest: boolean;
  entries: { workload: string; spiffeId: string; entryId: string; created: boolean }[];
  workloads: { name: string; spiffeId: string; svidSerial: string; svidNotAfter: string; svidTtlSeconds: number }[];
  durationsMs: Record<StepName, number>;
}

/** What decommissionNode returns: what each undo removed (empty lists when nothing was there). */
export interface DecommissionResult {
  nodeId: string;
  workflowId: string;
  runId: string;
  removed: Partial<Record<StepName, UndoResult['removed']>>;
}

// --- provisionFleet --------------------------------------------------------------------

/**
 * running: launching nodes; paused: a shared dependency is down, nothing new is
 * launched until it recovers; draining: no more launches in this run (budget
 * spent, or handing over to the next run), waiting for running nodes; then
 * completed (every node tried), halted (the failure budget stopped the
 * rollout) or cancelled.
 */
export type FleetState = 'running' | 'paused' | 'draining' | 'completed' | 'halted' | 'cancelled' | 'failed';

export interface FleetNodeFailure {
  nodeId: string;
  /** The step that failed, when the node's failure says so. */
  step: string | null;
  type: string;
  message: string;
}

export interface FleetDependencyState {
  name: string;
  healthy: boolean;
  detail?: string;
}

export interface FleetProgress {
  fleetId: string | null;
  workflowId: string;
  runId: string;
  state: FleetState;
  /** 1 for the first run, +1 for each continue-as-new. */
  generation: number;
  window: number;
  /** Nodes in the fleet. */
  total: number;
  counts: {
    /** Not launched yet (queued again after a dependency failure included). */
    pending: number;
    running: number;
    succeeded: number;
    /** Failed for good (their runs compensated). */
    failed: number;
    /** Already provisioned, or provisioning in a run the fleet did not start. */
    skipped: number;
    cancelled: number;
    /** Launches that were a second try after a dependency failure. */
    requeued: number;
  };
  failuresByType: Record<string, number>;
  /** The latest failures, newest last (at most 20). */
  recentFailures: FleetNodeFailure[];
  budget: { failed: number; allowed: number | null; exhausted: boolean };
  breaker: {
    open: boolean;
    /** Workflow time the breaker opened (while open). */
    openSince: string | null;
    /** Times it has opened over the whole rollout. */
    opened: number;
    lastCheckedAt: string | null;
    /** The dependencies the last check found down. */
    down: FleetDependencyState[];
  };
  startedAt: string;
}

/** What provisionFleet returns: its final progress and how long the rollout took. */
export interface FleetResult extends FleetProgress {
  durationMs: number;
}

/** `progress`: counts by state, failures by type, the budget and the breaker. */
export const progressQuery = defineQuery<FleetProgress>('progress');
