/**
 * maintainFleet: check every provisioned node of a fleet and repair the broken
 * ones within a remediation budget. What `nodeboot maintain schedule` runs
 * every N minutes (a Temporal Schedule, `maintain-fleet-<fleetId>[-<segment>]`).
 *
 *   shared dependencies down (the fleet breaker's checks: SPIRE server, hubs,
 *     ledger)                      → hold for an operator, check and repair nothing
 *   the ledger's `ready` nodes of the fleet (one segment, optionally): checkNode each
 *   more than X % of them broken   → hold, repair nothing (a shared cause is likelier
 *                                    than many nodes breaking at once: no repair storm)
 *   otherwise                      → a child maintainNode (`maintain/<nodeId>`) per
 *                                    broken node and a child rotateOverlayKey
 *                                    (`rotate/<nodeId>`) per healthy node whose key is
 *                                    older than its overlay.maxKeyAgeDays, at most K
 *                                    of them at a time
 *
 * A rotation that fails and rolls back is reported (the node is on its old key,
 * tunnel verified; the next run tries again); one whose rollback failed too
 * holds the run: the node may not be on one key cleanly, and nothing more is
 * rotated until an operator has looked (retry or compensate both end the run).
 *
 * A node with a security finding is not repaired here: maintainNode would hold
 * on it anyway, and one held child would stall the fleet's repair slots; it is
 * reported (and shows as broken in the metrics) for `nodeboot maintain <node>`.
 * `decide` on a hold: retry checks everything again; compensate stops the run
 * (nothing is undone: nothing was done). The schedule skips its next runs while
 * one is open, so a held run also holds the schedule.
 */
import {
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
  defineUpdate,
} from '@temporalio/workflow';
import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { Activities, FleetActivities, FleetMaintenanceActivities } from '../activities/types.js';
import { failure } from '../common/errors.js';
import { validateFleet } from '../common/fleet.js';
import { brokenLinks, securityFindings, type HealthReport } from '../common/health.js';
import { maintainWorkflowId, rotateWorkflowId } from '../common/ids.js';
import type { ProvisionInput } from '../common/input.js';
import type { MaintainResult } from '../common/maintain.js';
import {
  fleetMaintenanceQuery,
  keyRotationDue,
  MaintainFleetOptions,
  overBudget,
  type FleetHold,
  type FleetMaintainResult,
  type FleetMaintainStatus,
  type FleetNodeOutcome,
  type FleetRotationOutcome,
  type MaintainFleetInput,
} from '../common/maintain-fleet.js';
import type { Decision } from '../common/definitions.js';
import { PROVISIONED_NODE_RULES } from '../common/validate.js';
import { acceptDecisions } from './decisions.js';
import { describeFailure } from './failures.js';
import { maintainNode } from './maintain-node.js';
import { rotateOverlayKey } from './rotate-overlay-key.js';

/** patched() marker: the schedule rotates keys older than overlay.maxKeyAgeDays (runs recorded before rotate none). */
export const FLEET_KEY_ROTATION_PATCH = 'maintain-fleet-key-rotation';

/** Same name as provisionNode's and maintainNode's `decide`, so one command answers every hold. */
export const fleetDecideUpdate = defineUpdate<{ action: Decision['action']; heldFor: FleetHold['reason'] }, [Decision]>(
  'decide',
);

const CHECK_TIMEOUT_SECONDS = 120;

const { checkFleetDependencies, listProvisionedNodes } = proxyActivities<FleetActivities & FleetMaintenanceActivities>({
  startToCloseTimeout: 30_000,
  retry: { maximumAttempts: 3, initialInterval: 1_000 },
});
const { checkNode } = proxyActivities<Activities>({
  startToCloseTimeout: CHECK_TIMEOUT_SECONDS * 1000,
  heartbeatTimeout: 30_000,
  retry: { maximumAttempts: 2, initialInterval: 2_000 },
  summary: 'check every link of the node (read-only)',
});

export async function maintainFleet(raw: MaintainFleetInput): Promise<FleetMaintainResult> {
  const { workflowId, runId } = workflowInfo();
  const status: FleetMaintainStatus = {
    workflowId,
    runId,
    fleetId: null,
    segment: null,
    state: 'dependencies',
    heldFor: null,
    down: [],
    checked: 0,
    broken: 0,
    repairsStarted: 0,
    nodes: [],
    rotationDue: [],
    rotationsStarted: 0,
  };
  setHandler(fleetMaintenanceQuery, () => status);
  const decisions = acceptDecisions(fleetDecideUpdate, {
    run: 'fleet maintenance',
    state: () => status.state,
    ack: (d) => ({ action: d.action, heldFor: status.heldFor!.reason }),
  });

  const opts = parseOptions(raw);
  // Nodes provisioned when a `port` alone named the built-in workload are still maintained
  // (a repair of their step 6 then fails InvalidInput naming workloads.N.command).
  const fleet = validateFleet(raw?.fleet, PROVISIONED_NODE_RULES);
  Object.assign(status, { fleetId: fleet.input.fleetId, segment: opts.segment ?? null });
  const inFleet = fleet.nodes.filter((n) => !opts.segment || n.segment === opts.segment);

  /** Hold until an operator decides; true when they chose to stop. */
  const hold = async (h: FleetHold): Promise<boolean> => {
    status.state = 'held';
    status.heldFor = h;
    log.warn('fleet maintenance holding for an operator: nothing is repaired', { ...h });
    const stop = (await decisions.next()).action === 'compensate';
    status.heldFor = null;
    return stop;
  };

  let reports: HealthReport[] = [];
  for (;;) {
    status.state = 'dependencies';
    status.down = await dependenciesDown(inFleet);
    if (status.down.length) {
      if (
        await hold({
          reason: 'dependency-down',
          detail: `down: ${status.down.map((d) => `${d.name}${d.detail ? ` (${d.detail})` : ''}`).join(', ')}`,
        })
      )
        return finish('stopped');
      continue;
    }

    status.state = 'checking';
    const ready = new Set(
      (await listProvisionedNodes(opts.segment ? { segment: opts.segment } : {})).map((n) => n.nodeId),
    );
    const targets = inFleet.filter((n) => ready.has(n.nodeId));
    reports = await inWindow(targets, opts.checkWindow, (input) => checkNode({ input, thresholds: opts.thresholds }));
    status.nodes = reports.map(outcomeOf);
    status.checked = reports.length;
    status.broken = reports.filter((r) => brokenLinks(r).length > 0).length;
    status.rotationDue = rotationDue(targets, reports);
    // Only a run that has a key to rotate asks (and records the marker): the others' commands are unchanged.
    if (status.rotationDue.length && !patched(FLEET_KEY_ROTATION_PATCH)) status.rotationDue = [];

    if (overBudget(status.broken, status.checked, opts.budget)) {
      const detail = `${status.broken} of ${status.checked} nodes broken (more than ${opts.budget.maxBrokenPercent} %): a shared cause is likely`;
      if (await hold({ reason: 'over-budget', detail })) return finish('stopped');
      continue;
    }
    break;
  }

  status.state = 'repairing';
  const byId = new Map(inFleet.map((n) => [n.nodeId, n]));
  const toRepair = reports.filter((r) => brokenLinks(r).length > 0 && securityFindings(r).length === 0);
  // Repairs and rotations share the window K; a node being repaired is never rotated in the same run.
  const repairing = new Set(toRepair.map((r) => r.nodeId));
  const jobs: { node: ProvisionInput; kind: 'repair' | 'rotate' }[] = [
    ...toRepair.map((r) => ({ node: byId.get(r.nodeId)!, kind: 'repair' as const })),
    ...status.rotationDue
      .filter((id) => !repairing.has(id))
      .map((id) => ({ node: byId.get(id)!, kind: 'rotate' as const })),
  ];
  const rollbackFailed: string[] = [];
  await inWindow(jobs, opts.budget.maxConcurrentRepairs, async ({ node, kind }) => {
    if (kind === 'repair') return repair(node);
    if (!(await rotate(node))) rollbackFailed.push(node.nodeId);
  });
  if (rollbackFailed.length) {
    const detail = `key rotation of ${rollbackFailed.join(', ')} failed and so did the rollback: see each node's rotation reason; rotate again (every stage resumes) or repair the node`;
    if (await hold({ reason: 'rotation-rollback-failed', detail })) return finish('stopped');
  }
  return finish('done');

  /** Rotate the node's key in a child run; false only when the rotation and its rollback both failed. */
  async function rotate(node: ProvisionInput): Promise<boolean> {
    const outcome = status.nodes.find((o) => o.nodeId === node.nodeId)!;
    const id = rotateWorkflowId(node.nodeId);
    status.rotationsStarted += 1;
    const set = (r: Omit<FleetRotationOutcome, 'workflowId'>) => (outcome.rotation = { workflowId: id, ...r });
    try {
      const child = await startChild(rotateOverlayKey, {
        workflowId: id,
        args: [
          {
            input: node,
            ...(opts.handshakeTimeoutSeconds ? { handshakeTimeoutSeconds: opts.handshakeTimeoutSeconds } : {}),
          },
        ],
        parentClosePolicy: 'REQUEST_CANCEL',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        staticSummary: `rotate the overlay key of ${node.nodeId} (older than ${node.overlay.maxKeyAgeDays} days)`,
      });
      const r = await child.result();
      set({ outcome: 'rotated', fingerprint: r.fingerprint });
      return true;
    } catch (err) {
      if (isCancellation(err)) throw err;
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        status.rotationsStarted -= 1; // someone is rotating it right now: leave it to them
        set({ outcome: 'running' });
        return true;
      }
      const info = describeFailure('workflow', err);
      const d = rotationFailureDetails(err);
      log.warn('key rotation failed', { nodeId: node.nodeId, ...info });
      if (d.rolledBack) {
        set({ outcome: 'rolled-back', reason: info.message, ...(d.fingerprint ? { fingerprint: d.fingerprint } : {}) });
        return true;
      }
      set({ outcome: 'failed', reason: info.message });
      // Refused before anything changed (no rollback was needed) is not a hold; a failed rollback is.
      return !d.rollbackFailed;
    }
  }

  async function repair(node: ProvisionInput): Promise<void> {
    const outcome = status.nodes.find((o) => o.nodeId === node.nodeId)!;
    const id = maintainWorkflowId(node.nodeId);
    status.repairsStarted += 1;
    try {
      const child = await startChild(maintainNode, {
        workflowId: id,
        args: [{ provision: node, thresholds: opts.thresholds }],
        parentClosePolicy: 'REQUEST_CANCEL',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        staticSummary: `repair ${node.nodeId} (${node.segment}) for fleet maintenance`,
      });
      const r: MaintainResult = await child.result();
      outcome.repair = { workflowId: id, health: r.health, rounds: r.rounds.length };
    } catch (err) {
      if (isCancellation(err)) throw err;
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        status.repairsStarted -= 1; // someone is maintaining it right now: leave it to them
        outcome.repair = { workflowId: id, health: 'held', rounds: 0 };
        return;
      }
      log.warn('repair failed', { nodeId: node.nodeId, ...describeFailure('workflow', err) });
      outcome.repair = { workflowId: id, health: 'failed', rounds: 0 };
    }
  }

  function finish(outcome: FleetMaintainResult['outcome']): FleetMaintainResult {
    status.state = 'done';
    const { state: _s, ...rest } = status;
    return { ...rest, outcome, reports };
  }
}

/** The fleet breaker's checks, once per distinct set of shared dependencies among the nodes. */
async function dependenciesDown(nodes: ProvisionInput[]): Promise<FleetMaintainStatus['down']> {
  const seen = new Map<string, ProvisionInput>();
  for (const n of nodes) {
    const key = JSON.stringify([
      n.spire.serverHost,
      n.spire.serverSocketPath,
      n.overlay.hubs.map((h) => [h.name, h.host, h.interface]),
      n.overlay.bowtie?.controllerUrl ?? null,
    ]);
    if (!seen.has(key)) seen.set(key, n);
  }
  const down: FleetMaintainStatus['down'] = [];
  for (const n of seen.values()) {
    try {
      const health = await checkFleetDependencies({
        spire: n.spire,
        hubs: n.overlay.hubs,
        ...(n.overlay.bowtie ? { bowtieControllerUrl: n.overlay.bowtie.controllerUrl } : {}),
      });
      for (const d of health.dependencies)
        if (!d.healthy && !down.some((x) => x.name === d.name))
          down.push({ name: d.name, ...(d.detail ? { detail: d.detail } : {}) });
    } catch (err) {
      if (isCancellation(err)) throw err;
      // The check itself failed (no worker answered it): no green light either.
      down.push({ name: 'dependency-check', detail: describeFailure('workflow', err).message });
    }
  }
  return down;
}

function outcomeOf(r: HealthReport): FleetNodeOutcome {
  return {
    nodeId: r.nodeId,
    status: r.status,
    broken: brokenLinks(r).map((l) => `${l.link} (${l.step})${l.security ? ' [security]' : ''}`),
  };
}

/** The checked nodes whose key the schedule rotates (common/maintain-fleet.ts keyRotationDue). */
function rotationDue(nodes: ProvisionInput[], reports: HealthReport[]): string[] {
  const byId = new Map(nodes.map((n) => [n.nodeId, n]));
  return reports.filter((r) => byId.has(r.nodeId) && keyRotationDue(byId.get(r.nodeId)!, r)).map((r) => r.nodeId);
}

/**
 * What rotateOverlayKey's failure says about the node (its details, workflows/rotate-overlay-key.ts):
 * rolled back to the old key, or the rollback failed too. A child's failure wraps it as the cause.
 */
function rotationFailureDetails(err: unknown): { rolledBack: boolean; rollbackFailed: boolean; fingerprint?: string } {
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (!(e instanceof ApplicationFailure)) continue;
    const d = (e.details?.[0] ?? {}) as { rolledBack?: unknown; rollbackError?: unknown; fingerprint?: unknown };
    if (typeof d.rolledBack !== 'boolean') continue;
    return {
      rolledBack: d.rolledBack,
      rollbackFailed: d.rollbackError !== undefined,
      ...(typeof d.fingerprint === 'string' ? { fingerprint: d.fingerprint } : {}),
    };
  }
  // No details (a timeout, a termination): the node's state is unknown, as after a failed rollback.
  return { rolledBack: false, rollbackFailed: true };
}

/** Run `fn` over `items`, at most `width` at a time; results in input order. */
async function inWindow<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
  return out;
}

function parseOptions(raw: MaintainFleetInput): MaintainFleetOptions {
  const { fleet: _f, ...rest } = raw ?? ({} as MaintainFleetInput);
  const r = MaintainFleetOptions.safeParse(rest);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`);
  throw failure('InvalidInput', `invalid input: ${problems.join('; ')}`, { details: [{ issues: problems }] });
}
