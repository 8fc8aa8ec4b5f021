/**
 * provisionNode: take one machine from "just booted" to "its workloads hold
 * SPIFFE identities over the overlay", and undo what was done when a step
 * cannot succeed. Runs as `provision/<nodeId>` (common/ids.ts).
 *
 * Failure handling, by class of the failure's type (common/errors.ts):
 * - transient: retried by the activity retry policy (input.retry); only
 *   reaches the workflow once retries are exhausted, and then counts as permanent;
 * - permanent: compensate (onFailure 'compensate') or hold for an operator's
 *   `decide` update (onFailure 'hold');
 * - security: always compensate at once with reason 'security' (the SPIRE undo
 *   bans the agent): a possibly hostile node is not left attested while
 *   someone decides;
 * - cancellation of the run: compensate with reason 'cancel', end cancelled.
 */
import {
  CancellationScope,
  TemporalFailure,
  isCancellation,
  log,
  patched,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { LedgerEvent, StepEvidence, StepRequest, UndoRequest, UndoResult } from '../activities/types.js';
import { errorClassOf } from '../common/errors.js';
import type { ProvisionInput, ProvisionInputJson } from '../common/input.js';
import { BootstrapStepKey, ErrorTypeKey, FailedStepKey, NodeIdKey, SegmentKey } from '../common/search-attributes.js';
import { STEPS, type StepName } from '../common/steps.js';
import {
  decideUpdate,
  statusQuery,
  type Decision,
  type FailureInfo,
  type ProvisionReceipt,
  type ProvisionStatus,
  type StepStatus,
  type UndoReason,
} from '../common/definitions.js';
import { acceptDecisions, type Decisions } from './decisions.js';
import { compensatedFailure, describeFailure, validateInput, validationRules } from './failures.js';
import { batchedEventRecorder, eventRecorder, type DeferEvent, type HandOff, type RecordEvent } from './events.js';
import { activitiesFor, LEAN_RUN_2_PATCH, LEAN_RUN_PATCH, PREFLIGHT_PATCH, type RunActivities } from './proxies.js';
import { Compensations } from './saga.js';

/** Provision one node. Returns the receipt; fails with the failing step's error type after compensating. */
export async function provisionNode(rawInput: ProvisionInputJson): Promise<ProvisionReceipt> {
  const run = new ProvisionRun(); // `status` and `decide` answer from the first moment
  // Asked first: a new run asks no older patch (proxies.ts), so it records one marker.
  const lean2 = patched(LEAN_RUN_2_PATCH);
  const lean = lean2 || patched(LEAN_RUN_PATCH);
  const input = run.accept(rawInput, lean); // invalid input fails here, before any activity runs
  const acts = activitiesFor(input, lean, { undoUntilDone: true });
  try {
    await run.begin(input, acts, lean, lean2);
    if (lean || patched(PREFLIGHT_PATCH)) await run.preflight(acts.preflight); // read-only: nothing to undo
    const installed = await run.step('installOverlay', acts.installOverlay, acts.undoInstallOverlay);
    const key = await run.step('issueOverlayKey', acts.issueOverlayKey, acts.undoIssueOverlayKey);
    const health = await run.step('gatePeerHealth', acts.gatePeerHealth, null); // read-only: nothing to undo
    const agent = await run.step('startSpireAgent', acts.startSpireAgent, acts.undoStartSpireAgent);
    const entries = await run.step('registerEntries', acts.registerEntries, acts.undoRegisterEntries);
    const launched = await run.step('launchWorkloads', acts.launchWorkloads, acts.undoLaunchWorkloads);
    return await run.succeed(receiptOf(input, { installed, key, health, agent, entries, launched }, run.durations()));
  } catch (err) {
    throw await run.fail(err);
  }
}

type StepFn<S extends StepName> = (req: StepRequest) => Promise<StepEvidence[S]>;
type UndoFn = (req: UndoRequest) => Promise<UndoResult>;

/** The bookkeeping around the runbook: status, saga, holds, ledger, search attributes. */
class ProvisionRun {
  private readonly status: ProvisionStatus;
  private readonly saga = new Compensations();
  private input!: ProvisionInput;
  private record!: RecordEvent;
  /** Queue a ledger event for the next `record`: runs after LEAN_RUN_PATCH only (null before). */
  private defer: DeferEvent | null = null;
  /** Give the queue and this step's "started" to the step's activity to write: runs after LEAN_RUN_2_PATCH only. */
  private handOff: HandOff | null = null;
  /** Name each step in BootstrapStep as it starts: from input.timeouts.reportStepAfter on after LEAN_RUN_2_PATCH, always before. */
  private listSteps = true;
  private decisions!: Decisions;

  constructor() {
    const { workflowId, runId } = workflowInfo();
    this.status = {
      workflowId,
      runId,
      nodeId: null,
      segment: null,
      state: 'running',
      currentStep: null,
      steps: STEPS.map((step): StepStatus => ({ step, state: 'pending', runs: 0 })),
      lastFailure: null,
      heldStep: null,
    };
    setHandler(statusQuery, () => this.status);
    this.decisions = acceptDecisions(decideUpdate, {
      run: 'run',
      state: () => this.status.state,
      ack: (d) => ({ action: d.action, step: this.status.heldStep! }),
    });
  }

  /** Validate the input; an invalid one fails the run with InvalidInput. */
  accept(raw: unknown, lean: boolean): ProvisionInput {
    try {
      return validateInput(raw, validationRules(lean));
    } catch (err) {
      this.status.state = 'failed';
      this.status.lastFailure = describeFailure('workflow', err);
      throw err;
    }
  }

  async begin(input: ProvisionInput, acts: RunActivities, lean: boolean, lean2: boolean): Promise<void> {
    this.input = input;
    this.status.nodeId = input.nodeId;
    this.status.segment = input.segment;
    // A lean run started with both already set (provisionFleet sets them) needs no upsert: one visibility write less.
    const sa = workflowInfo().typedSearchAttributes;
    if (!lean || sa.get(NodeIdKey) !== input.nodeId || sa.get(SegmentKey) !== input.segment) {
      upsertSearchAttributes([
        { key: NodeIdKey, value: input.nodeId },
        { key: SegmentKey, value: input.segment },
      ]);
    }
    if (lean) {
      const events = batchedEventRecorder(acts.recordEvents, input.nodeId);
      ({ record: this.record, defer: this.defer } = events);
      if (lean2) this.handOff = events.handOff;
    } else {
      this.record = eventRecorder(acts.recordEvent, input.nodeId);
    }
    if (lean2) this.listStepsFrom(input.timeouts.reportStepAfter);
    // LEAN_RUN_2_PATCH: the preflight, the run's first activity, writes it.
    if (!this.handOff) await this.record('workflow', 'started', this.startedEvent());
  }

  /**
   * LEAN_RUN_2_PATCH: name the current step in BootstrapStep once the run has
   * run `afterSeconds`, and every step it enters from then on. One timer per
   * run instead of one visibility write per step; the timer is not cancelled
   * with the run (that would be one more command): it ends with the run.
   */
  private listStepsFrom(afterSeconds: number): void {
    this.listSteps = false;
    CancellationScope.nonCancellable(() => sleep(afterSeconds * 1000)).then(
      () => {
        this.listSteps = true;
        const step = this.status.currentStep;
        if (step) upsertSearchAttributes([{ key: BootstrapStepKey, value: step }]);
      },
      () => undefined,
    );
  }

  private startedEvent() {
    return { detail: { segment: this.input.segment, onFailure: this.input.onFailure } };
  }

  /**
   * The read-only checks before step 1. A failure is the run's (no step ran):
   * it fails the run at once, with nothing to undo.
   */
  async preflight(check: (req: StepRequest) => Promise<unknown>): Promise<void> {
    try {
      await check(this.request(this.handOff?.('workflow', 'started', this.startedEvent())));
      this.handOff?.delivered();
    } catch (err) {
      this.handOff?.undelivered();
      if (isCancellation(err)) throw err;
      const info = describeFailure('workflow', err);
      this.status.lastFailure = info;
      upsertSearchAttributes([{ key: ErrorTypeKey, value: info.type }]);
      await this.record('workflow', 'failed', {
        errorType: info.type,
        detail: { check: 'preflight', message: info.message },
      });
      throw err;
    }
  }

  /**
   * Run one step: push its undo first, then run it until it succeeds, or it
   * fails and nobody asks to retry it. Returns the step's evidence.
   */
  async step<S extends StepName>(name: S, run: StepFn<S>, undo: UndoFn | null): Promise<StepEvidence[S]> {
    const s = this.stepStatus(name);
    for (;;) {
      if (undo) this.saga.push(name, (reason) => undo({ ...this.request(), reason }));
      s.state = 'running';
      s.runs += 1;
      s.startedAt = new Date().toISOString();
      s.failure = undefined;
      this.status.currentStep = name;
      if (this.listSteps) upsertSearchAttributes([{ key: BootstrapStepKey, value: name }]);
      // LEAN_RUN_2_PATCH: the step's activity writes its "started" and the queue (the last step's "succeeded").
      const events = this.handOff?.(name, 'started', { attempt: s.runs });
      if (!events) await this.record(name, 'started', { attempt: s.runs });
      const started = Date.now();
      try {
        const evidence = await run(this.request(events));
        this.handOff?.delivered();
        s.durationMs = Date.now() - started;
        s.state = 'succeeded';
        s.evidence = evidence;
        const succeeded = { attempt: s.runs, detail: { durationMs: s.durationMs } };
        // Written with the next event (the next step's "started", or the run's end) when batching.
        if (this.defer) this.defer(name, 'succeeded', succeeded);
        else await this.record(name, 'succeeded', succeeded);
        return evidence;
      } catch (err) {
        this.handOff?.undelivered();
        s.durationMs = Date.now() - started;
        if (isCancellation(err)) {
          s.state = 'cancelled';
          throw err;
        }
        const info = describeFailure(name, err);
        s.state = 'failed';
        s.failure = info;
        this.status.lastFailure = info;
        upsertSearchAttributes([
          { key: FailedStepKey, value: name },
          { key: ErrorTypeKey, value: info.type },
          // A run that has not named its steps yet names the one it failed at, and follows each step from now on.
          ...(this.listSteps ? [] : [{ key: BootstrapStepKey, value: name }]),
        ]);
        this.listSteps = true;
        await this.record(name, 'failed', { attempt: s.runs, errorType: info.type, detail: { message: info.message } });
        if (this.input.onFailure !== 'hold' || errorClassOf(info.type) === 'security') throw err;
        if ((await this.hold(name, info)) === 'compensate') throw err;
      }
    }
  }

  /** Wait for an operator's `decide`. Cancelling the run while held compensates. */
  private async hold(step: StepName, info: FailureInfo): Promise<Decision['action']> {
    this.status.state = 'held';
    this.status.heldStep = step;
    this.status.currentStep = null;
    log.warn('step failed; holding for an operator decision', { step, errorType: info.type });
    await this.record(step, 'held', { errorType: info.type });
    const { action } = await this.decisions.next();
    this.status.heldStep = null;
    this.status.state = 'running';
    await this.record(step, 'decision', { detail: { action } });
    if (action === 'retry') {
      // The failure is being retried: stop listing the run under FailedStep.
      upsertSearchAttributes([
        { key: FailedStepKey, value: null },
        { key: ErrorTypeKey, value: null },
      ]);
    }
    return action;
  }

  async succeed(receipt: ProvisionReceipt): Promise<ProvisionReceipt> {
    this.status.currentStep = null;
    await this.record('workflow', 'succeeded', { detail: { durationsMs: receipt.durationsMs } });
    this.status.state = 'succeeded';
    return receipt;
  }

  /**
   * Undo everything pushed so far, in reverse, without being cancellable, and
   * return what the workflow should throw: the cancellation as-is (the run ends
   * cancelled) or the original failure wrapped with what was undone.
   */
  async fail(err: unknown): Promise<unknown> {
    // A bug in workflow code (not a Temporal failure) fails the workflow task
    // instead: the run stays open, to be fixed and replayed, so nothing is undone.
    if (!(err instanceof TemporalFailure)) return err;
    const cancelled = isCancellation(err);
    const info: FailureInfo = cancelled
      ? {
          step: this.status.currentStep ?? this.status.heldStep ?? 'workflow',
          type: 'Cancelled',
          message: 'the run was cancelled',
        }
      : (this.status.lastFailure ?? describeFailure('workflow', err));
    const reason: UndoReason = cancelled ? 'cancel' : errorClassOf(info.type) === 'security' ? 'security' : 'failure';
    this.status.lastFailure = info;
    // A run cancelled before it named its steps names the one it was cancelled at.
    if (cancelled && !this.listSteps && info.step !== 'workflow') {
      upsertSearchAttributes([{ key: BootstrapStepKey, value: info.step }]);
    }

    return CancellationScope.nonCancellable(async () => {
      this.status.state = 'compensating';
      this.status.currentStep = null;
      this.status.heldStep = null;
      const report = await this.saga.unwind(reason, {
        undoing: (step) => {
          this.stepStatus(step).state = 'compensating';
        },
        undone: async (step, { removed }) => {
          Object.assign(this.stepStatus(step), { state: 'compensated', undo: { reason, removed } });
          await this.record(step, 'compensated', { detail: { reason, removed } });
        },
        undoFailed: async (step, error) => {
          Object.assign(this.stepStatus(step), { state: 'compensation_failed', undo: { reason, error } });
          await this.record(step, 'compensation_failed', {
            errorType: error.type,
            detail: { reason, message: error.message },
          });
        },
      });
      this.status.state = report.failed.length ? 'failed' : 'compensated';
      await this.record('workflow', report.failed.length ? 'failed' : 'compensated', {
        errorType: info.type,
        detail: { step: info.step, reason, undone: report.undone, undoFailed: report.failed.map((f) => f.step) },
      });
      return cancelled ? err : compensatedFailure(info, reason, report, err);
    });
  }

  durations(): Record<StepName, number> {
    return Object.fromEntries(this.status.steps.map((s) => [s.step, s.durationMs ?? 0])) as Record<StepName, number>;
  }

  private request(events?: LedgerEvent[]): StepRequest {
    const run = { workflowId: this.status.workflowId, runId: this.status.runId };
    return events ? { input: this.input, run, events } : { input: this.input, run };
  }

  private stepStatus(step: StepName): StepStatus {
    return this.status.steps.find((s) => s.step === step)!;
  }
}

interface AllEvidence {
  installed: StepEvidence['installOverlay'];
  key: StepEvidence['issueOverlayKey'];
  health: StepEvidence['gatePeerHealth'];
  agent: StepEvidence['startSpireAgent'];
  entries: StepEvidence['registerEntries'];
  launched: StepEvidence['launchWorkloads'];
}

function receiptOf(input: ProvisionInput, e: AllEvidence, durationsMs: Record<StepName, number>): ProvisionReceipt {
  const { workflowId, runId } = workflowInfo();
  return {
    nodeId: input.nodeId,
    segment: input.segment,
    workflowId,
    runId,
    interface: e.key.interface ?? e.installed.interface ?? '',
    overlayIp: e.key.overlayIp,
    publicKey: e.key.publicKey,
    keyFingerprint: e.key.keyFingerprint,
    hubHandshakes: e.health.hubs.map((h) => ({
      hub: h.name,
      latestHandshakeUnix: h.latestHandshakeUnix,
      handshakeAgeSeconds: h.handshakeAgeSeconds,
    })),
    ...(e.health.device
      ? {
          overlayDevice: {
            id: e.health.device.id,
            state: e.health.device.state,
            lastSeenAgeSeconds: e.health.device.lastSeenAgeSeconds,
          },
        }
      : {}),
    probe: e.health.probe,
    nodeAliasId: e.agent.nodeAliasId,
    agentIdDigest: e.agent.agentIdDigest,
    attestationType: e.agent.attestationType,
    // Evidence recorded before attestors carries no canReattest: those were join_token agents.
    canReattest: e.agent.canReattest ?? false,
    entries: e.entries.entries,
    workloads: e.launched.workloads.map(({ name, spiffeId, svidSerial, svidNotAfter, svidTtlSeconds }) => ({
      name,
      spiffeId,
      svidSerial,
      svidNotAfter,
      svidTtlSeconds,
    })),
    durationsMs,
  };
}
