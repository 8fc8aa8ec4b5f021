/**
 * provisionFleet: roll provisionNode out to many nodes, as child runs.
 *
 * - Window: at most `window` nodes provision at the same time.
 * - Failure budget: once more than `maxFailed` nodes (or `maxFailedPercent` of
 *   the fleet) have failed for good, no new node is launched; the running ones
 *   finish or compensate, and the fleet ends `halted`.
 * - Circuit breaker: before launching, the fleet checks the dependencies every
 *   node shares (SPIRE server, hubs, ledger) when its last check is stale or a
 *   node just failed for a dependency-shaped reason. While one is down the
 *   rollout pauses and rechecks, instead of failing node after node; a node
 *   that failed that way is queued again rather than charged to the budget.
 * - Continue-as-new: after `nodesPerRun` launches the fleet lets its running
 *   nodes finish and continues as a new run carrying its counters, so a fleet
 *   of thousands keeps every run's history bounded.
 *
 * Each node runs as `provision/<nodeId>`, like a single start: a node already
 * provisioned (or provisioning elsewhere) is skipped, a node whose last run
 * failed, or that was decommissioned since its last run, gets a new run. Cancelling the fleet cancels its running nodes, which
 * compensate. Runs as `fleet/<fleetId>`.
 */
import {
  CancellationScope,
  TemporalFailure,
  condition,
  continueAsNew,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { FleetActivities } from '../activities/types.js';
import { compensationDetailsOf } from '../common/compensation.js';
import {
  allowedFailures,
  validateFleet,
  type FleetInput,
  type FleetInputJson,
  type ValidFleet,
} from '../common/fleet.js';
import { provisionWorkflowId } from '../common/ids.js';
import { NodeIdKey, SegmentKey } from '../common/search-attributes.js';
import { failure } from '../common/errors.js';
import type { ProvisionInput } from '../common/input.js';
import { needsNewProvisionRun } from '../common/lifecycle.js';
import { progressQuery, type FleetNodeFailure, type FleetProgress, type FleetResult } from '../common/definitions.js';
import { describeFailure, validationRules } from './failures.js';
import { provisionNode } from './provision-node.js';

/** Failure types that say "something every node needs is down", not "this node is broken". */
const DEPENDENCY_FAILURES = new Set([
  'SpireServerUnavailable',
  'PeerHandshakeTimeout',
  'ProbeFailed',
  'LedgerUnavailable',
]);
const RECENT_FAILURES = 20;

/** What one run of the fleet hands to the next on continue-as-new. */
export interface FleetCarry {
  generation: number;
  startedAtMs: number;
  /** Index into input.nodes of the first node never launched. */
  cursor: number;
  /** Node ids queued again after a dependency failure, in launch order. */
  requeue: string[];
  /** Times each node has been queued again. */
  requeues: Record<string, number>;
  counts: Pick<FleetProgress['counts'], 'succeeded' | 'failed' | 'skipped' | 'cancelled' | 'requeued'>;
  failuresByType: Record<string, number>;
  recentFailures: FleetNodeFailure[];
  breakerOpened: number;
}

/** patched() marker: a node decommissioned since its last run gets a new run instead of being skipped. */
export const REPROVISION_DECOMMISSIONED = 'fleet-reprovision-decommissioned';

/**
 * patched() marker: children start with their NodeId and Segment search
 * attributes set, so they need not upsert them (a visibility write per node).
 */
export const CHILD_SEARCH_ATTRIBUTES_PATCH = 'fleet-child-search-attributes';

const { checkFleetDependencies, nodeLifecycle } = proxyActivities<FleetActivities>({
  startToCloseTimeout: 30_000,
  retry: { maximumAttempts: 2, initialInterval: 1_000 },
});

/** Provision every node of the fleet. Returns the final progress; fails only for invalid input. */
export async function provisionFleet(raw: FleetInputJson, carried?: FleetCarry): Promise<FleetResult> {
  const rollout = new FleetRollout(carried); // `progress` answers from the first moment
  const fleet = rollout.accept(raw); // invalid input (any node's) fails here, before anything starts
  try {
    const handOver = await rollout.launch(fleet);
    await rollout.drain();
    if (handOver) await continueAsNew<typeof provisionFleet>(raw, rollout.carry());
    return rollout.finish();
  } catch (err) {
    // Cancelling the fleet cancels its running nodes; wait for them to compensate.
    if (isCancellation(err)) await CancellationScope.nonCancellable(() => rollout.drain('cancelled'));
    throw err;
  }
}

class FleetRollout {
  /** Progress but the counts and the budget, which snapshot() derives from `state`. */
  private readonly progress: Omit<FleetProgress, 'counts' | 'budget'>;
  /** Nodes provisioning now. */
  private running = 0;
  /** Failures the budget allows; null: no budget. */
  private allowed: number | null = null;
  private readonly state: FleetCarry;
  private fleet!: ValidFleet;
  private byId = new Map<string, ProvisionInput>();
  private launchedThisRun = 0;
  private lastCheckMs: number | null = null;
  /** A node just failed for a dependency-shaped reason: check before the next launch. */
  private suspect = false;
  /** CHILD_SEARCH_ATTRIBUTES_PATCH, asked once per run (in accept). */
  private childSearchAttributes = false;

  constructor(carried?: FleetCarry) {
    const { workflowId, runId } = workflowInfo();
    this.state = carried ?? {
      generation: 1,
      startedAtMs: Date.now(),
      cursor: 0,
      requeue: [],
      requeues: {},
      counts: { succeeded: 0, failed: 0, skipped: 0, cancelled: 0, requeued: 0 },
      failuresByType: {},
      recentFailures: [],
      breakerOpened: 0,
    };
    this.progress = {
      fleetId: null,
      workflowId,
      runId,
      state: 'running',
      generation: this.state.generation,
      window: 0,
      total: 0,
      failuresByType: this.state.failuresByType,
      recentFailures: this.state.recentFailures,
      breaker: { open: false, openSince: null, opened: this.state.breakerOpened, lastCheckedAt: null, down: [] },
      startedAt: new Date(this.state.startedAtMs).toISOString(),
    };
    setHandler(progressQuery, () => this.snapshot());
  }

  accept(raw: unknown): ValidFleet {
    try {
      this.fleet = validateFleet(raw, validationRules());
    } catch (err) {
      this.progress.state = 'failed';
      throw err;
    }
    this.childSearchAttributes = patched(CHILD_SEARCH_ATTRIBUTES_PATCH);
    const { input, nodes } = this.fleet;
    this.byId = new Map(nodes.map((n) => [n.nodeId, n]));
    Object.assign(this.progress, { fleetId: input.fleetId, window: input.window, total: nodes.length });
    this.allowed = allowedFailures(input.failureBudget, nodes.length);
    return this.fleet;
  }

  /**
   * Launch nodes until none is left, the budget is spent, or this run has
   * launched its share. Returns true when the next run must take over.
   */
  async launch({ input }: ValidFleet): Promise<boolean> {
    for (;;) {
      if (this.budgetExhausted()) {
        log.warn('failure budget spent: no more nodes will be launched', { failed: this.state.counts.failed });
        return false;
      }
      if (!this.hasPending()) {
        if (this.running === 0) return false;
        // A running node may still be queued again: wait for that or for the last one to end.
        await condition(() => this.hasPending() || this.running === 0);
        continue;
      }
      if (this.launchedThisRun >= input.nodesPerRun || workflowInfo().continueAsNewSuggested) return true;
      await condition(() => this.running < input.window);
      const node = this.peekPending();
      await this.dependenciesUp(node, input.breaker);
      if (this.budgetExhausted()) continue;
      this.start(this.takePending());
    }
  }

  /** Wait for every running node to end. */
  async drain(state: 'draining' | 'cancelled' = 'draining'): Promise<void> {
    this.progress.state = state;
    await condition(() => this.running === 0);
  }

  carry(): FleetCarry {
    return { ...this.state, generation: this.state.generation + 1, counts: this.countsToCarry() };
  }

  finish(): FleetResult {
    this.progress.state = this.budgetExhausted()
      ? 'halted'
      : this.state.counts.cancelled > 0
        ? 'cancelled'
        : 'completed';
    return { ...this.snapshot(), durationMs: Date.now() - this.state.startedAtMs };
  }

  // --- the circuit breaker -----------------------------------------------------------

  /** Return once the node's shared dependencies answer; while they do not, the rollout is paused. */
  private async dependenciesUp(node: ProvisionInput, breaker: FleetInput['breaker']): Promise<void> {
    const due = this.suspect || this.lastCheckMs === null || Date.now() - this.lastCheckMs >= breaker.checkIntervalMs;
    if (!due) return;
    this.suspect = false;
    for (;;) {
      const down = await this.checkDependencies(node);
      if (down.length === 0) {
        if (this.progress.breaker.open) log.info('shared dependencies are back: resuming the rollout');
        Object.assign(this.progress.breaker, { open: false, openSince: null, down: [] });
        this.progress.state = 'running';
        return;
      }
      if (!this.progress.breaker.open) {
        this.state.breakerOpened += 1;
        Object.assign(this.progress.breaker, {
          open: true,
          openSince: new Date().toISOString(),
          opened: this.state.breakerOpened,
        });
        log.warn('a shared dependency is down: pausing the rollout', { down: down.map((d) => d.name) });
      }
      this.progress.breaker.down = down;
      this.progress.state = 'paused';
      await sleep(breaker.recheckIntervalMs);
    }
  }

  private async checkDependencies(node: ProvisionInput): Promise<FleetProgress['breaker']['down']> {
    this.lastCheckMs = Date.now();
    this.progress.breaker.lastCheckedAt = new Date().toISOString();
    try {
      const health = await checkFleetDependencies({
        spire: node.spire,
        hubs: node.overlay.hubs,
        ...(node.overlay.bowtie ? { bowtieControllerUrl: node.overlay.bowtie.controllerUrl } : {}),
      });
      return health.dependencies.filter((d) => !d.healthy);
    } catch (err) {
      if (isCancellation(err)) throw err;
      // The check itself failed (no worker answered it): that is no green light either.
      return [{ name: 'dependency-check', healthy: false, detail: describeFailure('workflow', err).message }];
    }
  }

  // --- one node ----------------------------------------------------------------------

  private start(node: ProvisionInput): void {
    this.launchedThisRun += 1;
    this.running += 1;
    void this.provision(node).finally(() => {
      this.running -= 1;
    });
  }

  private async provision(node: ProvisionInput): Promise<void> {
    try {
      await this.provisionRun(node);
      this.state.counts.succeeded += 1;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        this.state.counts.skipped += 1; // provisioned already, or provisioning in someone else's run
      } else if (isCancellation(err)) {
        this.state.counts.cancelled += 1;
      } else if (err instanceof TemporalFailure) {
        this.failed(node.nodeId, err);
      } else {
        throw err; // a bug in this workflow: fail the task, keep the run
      }
    }
  }

  /**
   * The node's child run to its end. A node whose run is open or completed
   * cannot start one (WorkflowExecutionAlreadyStartedError: skipped), unless
   * its state says it was decommissioned after that run: then it gets a NEW
   * run, like `nodeboot start` (common/lifecycle.ts). A node being
   * decommissioned fails as NodeDecommissioning.
   */
  private async provisionRun(node: ProvisionInput): Promise<void> {
    try {
      await this.child(node, 'ALLOW_DUPLICATE_FAILED_ONLY');
    } catch (err) {
      // Before the patch a refused start was always "skipped": histories from then replay unchanged.
      if (!(err instanceof WorkflowExecutionAlreadyStartedError) || !patched(REPROVISION_DECOMMISSIONED)) throw err;
      const { state, decommission } = await nodeLifecycle({ nodeId: node.nodeId });
      if (state === 'decommissioning') {
        throw failure(
          'NodeDecommissioning',
          `${node.nodeId} is being decommissioned (${decommission?.workflowId} run ${decommission?.runId}): not provisioned by this rollout; start the fleet again once it ends`,
        );
      }
      if (!needsNewProvisionRun(state)) throw err;
      log.info('node was decommissioned after its last run: provisioning it again', {
        nodeId: node.nodeId,
        decommissionRunId: decommission?.runId,
      });
      await this.child(node, 'ALLOW_DUPLICATE');
    }
  }

  private async child(
    node: ProvisionInput,
    workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY' | 'ALLOW_DUPLICATE',
  ): Promise<void> {
    const child = await startChild(provisionNode, {
      workflowId: provisionWorkflowId(node.nodeId),
      args: [node],
      parentClosePolicy: 'REQUEST_CANCEL',
      workflowIdReusePolicy,
      staticSummary: `provision ${node.nodeId} (${node.segment})`,
      // Listed by node and segment from its first moment; a lean child then skips its own upsert of them.
      ...(this.childSearchAttributes
        ? {
            typedSearchAttributes: [
              { key: NodeIdKey, value: node.nodeId },
              { key: SegmentKey, value: node.segment },
            ],
          }
        : {}),
    });
    await child.result();
  }

  private failed(nodeId: string, err: TemporalFailure): void {
    const info = describeFailure('workflow', err);
    const step = stepOf(err);
    if (
      DEPENDENCY_FAILURES.has(info.type) &&
      (this.state.requeues[nodeId] ?? 0) < this.fleet.input.breaker.requeueLimit
    ) {
      // Probably not this node's fault: check the shared dependencies, then try it again.
      this.state.requeues[nodeId] = (this.state.requeues[nodeId] ?? 0) + 1;
      this.state.requeue.push(nodeId);
      this.state.counts.requeued += 1;
      this.suspect = true;
      log.info('node failed for a dependency-shaped reason: queued again', { nodeId, errorType: info.type });
      return;
    }
    this.state.counts.failed += 1;
    this.state.failuresByType[info.type] = (this.state.failuresByType[info.type] ?? 0) + 1;
    this.state.recentFailures.push({ nodeId, step, type: info.type, message: info.message });
    if (this.state.recentFailures.length > RECENT_FAILURES) this.state.recentFailures.shift();
  }

  // --- bookkeeping -------------------------------------------------------------------

  private hasPending(): boolean {
    return this.state.requeue.length > 0 || this.state.cursor < this.fleet.nodes.length;
  }

  private peekPending(): ProvisionInput {
    const requeued = this.state.requeue[0];
    return requeued !== undefined ? this.byId.get(requeued)! : this.fleet.nodes[this.state.cursor]!;
  }

  private takePending(): ProvisionInput {
    const requeued = this.state.requeue.shift();
    if (requeued !== undefined) return this.byId.get(requeued)!;
    return this.fleet.nodes[this.state.cursor++]!;
  }

  private budgetExhausted(): boolean {
    return this.allowed !== null && this.state.counts.failed > this.allowed;
  }

  private countsToCarry(): FleetCarry['counts'] {
    const { succeeded, failed, skipped, cancelled, requeued } = this.state.counts;
    return { succeeded, failed, skipped, cancelled, requeued };
  }

  /** The progress as of now (derived counts computed, nothing mutated: queries call it). */
  private snapshot(): FleetProgress {
    const pending = this.fleet ? this.fleet.nodes.length - this.state.cursor + this.state.requeue.length : 0;
    return {
      ...this.progress,
      counts: { ...this.countsToCarry(), pending, running: this.running },
      budget: { failed: this.state.counts.failed, allowed: this.allowed, exhausted: this.budgetExhausted() },
    };
  }
}

/** The step a compensated node failed at (provisionNode puts it in its failure's details). */
function stepOf(err: TemporalFailure): string | null {
  return compensationDetailsOf(err)?.step ?? null;
}
