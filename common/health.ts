/**
 * A node's health as checkNode sees it (activities/health/), and which steps
 * maintainNode re-runs to repair it (workflows/maintain-node.ts).
 *
 * A node is a chain of links (its interface, its key on each hub, the handshake,
 * the probe, the agent, each entry, each workload); each link is owned by the
 * bootstrap step that makes it, so a broken link says which step to re-run.
 * Shared by the workflow, the activity and the clients: no Node built-ins.
 */
import { z } from 'zod';
import { shared } from './schema-cache.js';
import { STEPS, type StepName } from './steps.js';
import type { ProvisionInputJson } from './input.js';

/** ok: as provisioned; degraded: works, but will not for long (an SVID near expiry); broken: does not work. */
export type LinkStatus = 'ok' | 'degraded' | 'broken';

/** The `Health` search attribute's values: what a person filters runs (and so nodes) by. */
export const HEALTH_STATES = ['healthy', 'degraded', 'repairing', 'broken'] as const;
export type HealthState = (typeof HEALTH_STATES)[number];

/**
 * What the links are called: `interface`, `overlayKey`, `hubPeer:<hub>`,
 * `handshake:<hub>`, `probe`, `agent`, `entry:<workload>`, `workload:<workload>`.
 * A driver that has no such link (bowtie has no hub peers) does not report it.
 */
export type LinkKind =
  'interface' | 'overlayKey' | 'hubPeer' | 'handshake' | 'probe' | 'agent' | 'entry' | 'workload' | 'device';

export interface LinkCheck {
  /** `<kind>` or `<kind>:<name>`, e.g. `handshake:hub`, `workload:api`. */
  link: string;
  kind: LinkKind;
  status: LinkStatus;
  /** The bootstrap step that makes this link, so re-running it (and what follows from it) repairs it. */
  step: StepName;
  /** One line a person reads: what was found. */
  detail: string;
  /**
   * A finding that may mean the node is compromised (a key on its interface that is
   * not the node's, an agent attested as another node, an entry re-parented). Never
   * repaired automatically: the repair would re-key a node someone else may hold.
   */
  security?: boolean;
  /** Facts behind the verdict (secret-free: public keys, ages, pids, serials, expiries). */
  evidence: Record<string, unknown>;
}

export interface HealthReport {
  nodeId: string;
  driver: 'wireguard' | 'bowtie';
  /** Worker wall clock when the check ran (ISO 8601). */
  checkedAt: string;
  /** The worst link's status. */
  status: LinkStatus;
  links: LinkCheck[];
  /** How long the check took, ms. */
  durationMs: number;
}

/** Threshold inputs of a check. Ages and margins are in seconds. */
export const HealthThresholds = shared('health:HealthThresholds', () =>
  z
    .object({
      /**
       * A handshake older than this is broken. WireGuard re-handshakes every 2 min
       * while traffic (the keepalive) flows and drops a session after 180 s
       * (REJECT_AFTER_TIME), so 180 s is the default.
       */
      handshakeMaxAgeSeconds: z.number().int().min(10).max(86_400).default(180),
      /** The agent's own SVID expiring sooner than this is degraded (expired: broken). */
      agentSvidMinSeconds: z.number().int().min(0).max(31_536_000).default(600),
      /** A workload SVID expiring sooner than this is degraded (expired: broken). */
      workloadSvidMinSeconds: z.number().int().min(0).max(31_536_000).default(300),
      /** How long the probe may take to connect through the tunnel, ms. */
      probeTimeoutMs: z.number().int().min(500).max(60_000).default(3_000),
    })
    .strict(),
);
export type HealthThresholds = z.infer<typeof HealthThresholds>;
export type HealthThresholdsJson = z.input<typeof HealthThresholds>;
export const DEFAULT_THRESHOLDS: HealthThresholds = HealthThresholds.parse({});

/**
 * The steps that must run again after `step` has: those that build on what it
 * makes. A new interface has no key, address or peers (steps 2-3 again); a new
 * key needs the gate again; an agent that came back, or an entry made again,
 * needs the workloads to prove their SVIDs again (step 6 restarts only dead
 * workloads). Entries do not depend on the agent: they hang off the node alias,
 * whose SPIFFE ID is stable.
 */
export const REPAIR_DEPENDENTS: Record<StepName, readonly StepName[]> = {
  installOverlay: ['issueOverlayKey', 'gatePeerHealth'],
  issueOverlayKey: ['gatePeerHealth'],
  gatePeerHealth: [],
  startSpireAgent: ['launchWorkloads'],
  registerEntries: ['launchWorkloads'],
  launchWorkloads: [],
};

export function worstOf(statuses: readonly LinkStatus[]): LinkStatus {
  return statuses.includes('broken') ? 'broken' : statuses.includes('degraded') ? 'degraded' : 'ok';
}

export function healthOf(report: Pick<HealthReport, 'status'>): Exclude<HealthState, 'repairing'> {
  return report.status === 'ok' ? 'healthy' : report.status;
}

export const brokenLinks = (report: HealthReport) => report.links.filter((l) => l.status === 'broken');
export const securityFindings = (report: HealthReport) => report.links.filter((l) => l.security);

/**
 * The steps a repair re-runs, in runbook order: the owner of every broken link
 * and every step that depends on one of them (REPAIR_DEPENDENTS, transitively).
 */
export function repairPlan(report: HealthReport): StepName[] {
  const wanted = new Set<StepName>();
  const add = (s: StepName) => {
    if (wanted.has(s)) return;
    wanted.add(s);
    for (const d of REPAIR_DEPENDENTS[s]) add(d);
  };
  for (const l of brokenLinks(report)) add(l.step);
  return STEPS.filter((s) => wanted.has(s));
}

/** One line per broken or degraded link, e.g. "agent (startSpireAgent): broken: the agent process is not running". */
export function describeLinks(report: HealthReport): string[] {
  return report.links
    .filter((l) => l.status !== 'ok')
    .map((l) => `${l.link} (${l.step}): ${l.status}${l.security ? ' [security]' : ''}: ${l.detail}`);
}

/** What the read-only checkHealth workflow takes (nodeboot health, nodeboot fleet health). */
export interface CheckHealthInput {
  /** Each node's provisioning input (its latest provision run's). */
  nodes: ProvisionInputJson[];
  thresholds?: HealthThresholdsJson;
}
