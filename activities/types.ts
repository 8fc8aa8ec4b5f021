/**
 * The contract between the provisionNode workflow and its activities.
 *
 * Workflows import this file as types only. Every step takes the validated
 * input (plus the run's identity for the ledger) and returns evidence: facts a
 * person can check, never a secret. Every step is idempotent: it inspects what
 * already exists and finishes the job from there. Every undo is idempotent too,
 * and safe to call for a step that never ran or only half ran.
 */
import type { NodeLifecycle } from '../common/lifecycle.js';
import type { HubSpec, ProvisionInput } from '../common/input.js';
import type { HealthReport, HealthThresholds } from '../common/health.js';
import type { StepName, UndoActivity } from '../common/steps.js';

export interface RunRef {
  workflowId: string;
  runId: string;
}

export interface StepRequest {
  input: ProvisionInput;
  run: RunRef;
  /**
   * Ledger events of this run for the activity to write as it starts, in
   * order, beside its own work (runs after LEAN_RUN_2_PATCH,
   * workflows/proxies.ts; activities/record-event.ts withRunEvents): the
   * previous step's "succeeded" and this step's "started". Absent, the workflow
   * writes them itself.
   */
  events?: LedgerEvent[];
}

export interface InstallEvidence {
  /** The overlay interface (wireguard). The Bowtie client names its own once accepted: see KeyEvidence. */
  interface?: string;
  /** `wg --version` on the node, or the Bowtie client package and version. */
  toolVersion: string;
  /** True when the interface (wireguard) or package (bowtie) was already there (a retry or rerun). */
  alreadyPresent: boolean;
}

export interface KeyEvidence {
  overlayIp: string;
  publicKey: string;
  /** sha256 of the public key, hex, first 16 chars: what a person compares. */
  keyFingerprint: string;
  /** Where the private key lives on the node (mode 0600; wireguard). The key itself never leaves the node. */
  privateKeyPath?: string;
  /** The interface carrying the overlay address (bowtie: the one the client made). */
  interface?: string;
  /** The device's id on the Bowtie controller (bowtie). */
  deviceId?: string;
  /** The WireGuard peers: hubs (wireguard) or the Bowtie controllers. */
  hubs: { name: string; publicKey: string; endpoint: string }[];
}

export interface HealthEvidence {
  /** Fresh handshakes with every hub (wireguard; empty for bowtie, whose client owns the tunnel). */
  hubs: { name: string; latestHandshakeUnix: number; handshakeAgeSeconds: number }[];
  /** The controller's view of the device (bowtie): accepted and recently seen. */
  device?: { id: string; state: string; lastSeen: string; lastSeenAgeSeconds: number };
  probe: { target: string; connectMs: number };
}

export interface AgentEvidence {
  /** Stable node alias SPIFFE ID: the parent of this node's workload entries. */
  nodeAliasId: string;
  /** The agent's own SPIFFE ID. Join-token agent IDs embed the (consumed) token, so only its digest is kept. */
  agentIdDigest: string;
  agentPid: number;
  attestationType: string;
  /**
   * The server re-attests this agent by itself after an eviction (x509pop...;
   * false for join_token). Absent in evidence recorded before attestors.
   */
  canReattest?: boolean;
}

export interface EntriesEvidence {
  entries: { workload: string; spiffeId: string; entryId: string; created: boolean }[];
}

export interface WorkloadsEvidence {
  workloads: {
    name: string;
    spiffeId: string;
    pid: number;
    svidSerial: string;
    svidNotAfter: string;
    svidTtlSeconds: number;
  }[];
}

/** What the read-only preflight checked before step 1 (activities/preflight.ts). */
export interface PreflightEvidence {
  checks: { name: string; detail: string }[];
}

export interface StepEvidence {
  installOverlay: InstallEvidence;
  issueOverlayKey: KeyEvidence;
  gatePeerHealth: HealthEvidence;
  startSpireAgent: AgentEvidence;
  registerEntries: EntriesEvidence;
  launchWorkloads: WorkloadsEvidence;
}

export interface UndoRequest extends StepRequest {
  /** Why we undo: a security failure bans the agent instead of evicting it. */
  reason: 'failure' | 'security' | 'cancel' | 'decommission';
}

export interface UndoResult {
  /** What was actually removed (empty when nothing was there: idempotent). */
  removed: string[];
}

/** `checked`: a maintain run's health check (detail: the overall status and the links that are not ok). */
export type LedgerEventKind =
  'started' | 'succeeded' | 'failed' | 'compensated' | 'compensation_failed' | 'held' | 'decision' | 'checked';

export interface LedgerEvent {
  nodeId: string;
  run: RunRef;
  step: StepName | 'workflow';
  kind: LedgerEventKind;
  attempt?: number;
  errorType?: string;
  /** Secret-free details. */
  detail?: Record<string, unknown>;
}

/** Steps 1-3 and the undos of 1 and 2: what each overlay driver (overlay/wireguard/, overlay/bowtie/) provides. */
export type OverlayDriver = Pick<
  Activities,
  'installOverlay' | 'undoInstallOverlay' | 'issueOverlayKey' | 'undoIssueOverlayKey' | 'gatePeerHealth'
>;

/** Everything the provisionNode / decommissionNode workflows call. */
export interface Activities {
  /** Read-only checks of the input against the fabric, before step 1 changes anything. */
  preflight(req: StepRequest): Promise<PreflightEvidence>;
  installOverlay(req: StepRequest): Promise<InstallEvidence>;
  issueOverlayKey(req: StepRequest): Promise<KeyEvidence>;
  gatePeerHealth(req: StepRequest): Promise<HealthEvidence>;
  startSpireAgent(req: StepRequest): Promise<AgentEvidence>;
  registerEntries(req: StepRequest): Promise<EntriesEvidence>;
  launchWorkloads(req: StepRequest): Promise<WorkloadsEvidence>;

  undoInstallOverlay(req: UndoRequest): Promise<UndoResult>;
  undoIssueOverlayKey(req: UndoRequest): Promise<UndoResult>;
  undoStartSpireAgent(req: UndoRequest): Promise<UndoResult>;
  undoRegisterEntries(req: UndoRequest): Promise<UndoResult>;
  undoLaunchWorkloads(req: UndoRequest): Promise<UndoResult>;

  /** Append to the ledger's event log (never throws for a duplicate). */
  recordEvent(event: LedgerEvent): Promise<void>;
  /** recordEvent for each, in order (one local activity for several events; a retry re-appends none twice). */
  recordEvents(events: LedgerEvent[]): Promise<void>;

  /**
   * Read-only: check every link of a provisioned node (activities/health/).
   * A broken link is a result, not a failure: this throws only when it cannot
   * look (the ledger is down).
   */
  checkNode(req: CheckRequest): Promise<HealthReport>;
}

export interface CheckRequest {
  input: ProvisionInput;
  thresholds: HealthThresholds;
}

/**
 * Compile-time check: every undo the step table (common/steps.ts) names is an
 * activity above, taking an UndoRequest.
 */
type Holds<T extends true> = T;
export type UndoActivitiesAreActivities = Holds<
  Pick<Activities, UndoActivity> extends Record<UndoActivity, (req: UndoRequest) => Promise<UndoResult>> ? true : false
>;

// --- provisionFleet's circuit breaker ----------------------------------------------------

export interface DependencyCheckRequest {
  spire: Pick<ProvisionInput['spire'], 'serverHost' | 'serverSocketPath'>;
  hubs: HubSpec[];
  /** The Bowtie controller the nodes enroll with (bowtie driver). */
  bowtieControllerUrl?: string;
}

export interface DependencyState {
  /** "spire-server", "hub:<name>", "bowtie-controller" or "ledger". */
  name: string;
  healthy: boolean;
  /** Why it counts as down (secret-free). */
  detail?: string;
}

export interface DependencyHealth {
  healthy: boolean;
  dependencies: DependencyState[];
}

export interface FleetActivities {
  checkFleetDependencies(req: DependencyCheckRequest): Promise<DependencyHealth>;
  /** The node's lifecycle state from its latest provision and decommission runs (read-only). */
  nodeLifecycle(req: { nodeId: string }): Promise<NodeLifecycle>;
}

/** What maintainFleet asks the ledger (activities/fleet/provisioned.ts). */
export interface FleetMaintenanceActivities {
  /** The nodes the ledger says are provisioned (`ready`), by node id; read-only. */
  listProvisionedNodes(req: { segment?: string }): Promise<{ nodeId: string; segment: string }[]>;
}
