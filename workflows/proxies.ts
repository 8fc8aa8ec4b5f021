/**
 * Activity proxies for one run, grouped by timeout class. Every deadline and
 * the retry policy come from the validated input, so tests (and impatient
 * operators) can shorten them without a code change.
 */
import {
  ActivityCancellationType,
  patched,
  proxyActivities,
  proxyLocalActivities,
  type ActivityOptions,
  type RetryPolicy,
} from '@temporalio/workflow';
import type { Activities, LedgerEvent } from '../activities/types.js';
import { NON_RETRYABLE_ERROR_TYPES } from '../common/errors.js';
import type { ProvisionInput } from '../common/input.js';
import { STEP_TITLES, UNDO_ACTIVITIES, type UndoActivity } from '../common/steps.js';

/** Ledger writes are single-row inserts: a fixed, short deadline. */
const LEDGER_TIMEOUT_MS = 30_000;

/**
 * Runs started after this patch write ledger events as local activities: a
 * single-row insert does not need its own round of server tasks (14 per node
 * run), so they ride on the workflow task that follows them. Runs recorded
 * before it (test/replay/histories) replay with regular activities.
 */
export const LEDGER_LOCAL_PATCH = 'ledger-events-as-local-activities';

/**
 * Runs started after this patch run the read-only `preflight` activity before
 * step 1 (an input at odds with the fabric fails before the node changes).
 * Runs recorded before it (test/replay/histories) go straight to step 1.
 */
export const PREFLIGHT_PATCH = 'preflight-before-install';

/**
 * Runs started after this patch ask one patch instead of four: each `patched()`
 * a run calls for the first time costs a marker event and a TemporalChangeVersion
 * search-attribute upsert (a visibility write on the server), and a new run takes
 * every earlier patch's new path anyway. Such a run also
 * - runs its preflight as a local activity: a few reads that end in well under a
 *   second need no activity task and workflow task of their own (they ride on the
 *   run's first workflow task, retried by the same policy);
 * - writes ledger events in batches: one local activity per workflow task
 *   (`recordEvents`) instead of one per event (workflows/events.ts);
 * - skips the NodeId/Segment upsert when its starter set them (provisionFleet does).
 * - retries an undo's transient failures until it succeeds (UNDO_UNTIL_DONE_PATCH's rule).
 * Runs recorded before it replay down the older patches, unchanged.
 */
export const LEAN_RUN_PATCH = 'lean-run';

/**
 * Runs started after this patch take LEAN_RUN_PATCH's path without asking it, and
 * - leave the ledger events around each step to the activities: the workflow
 *   hands each activity the events due (the run's "started" to the preflight,
 *   the last step's "succeeded" and its own "started" to each step:
 *   StepRequest.events, activities/record-event.ts withRunEvents), so only what
 *   the workflow alone knows (a failure, a hold, a decision, an undo, the run's
 *   end) is written from a local activity: two per run instead of eight;
 * - name their step in BootstrapStep once they have run for
 *   input.timeouts.reportStepAfter (and then at every step), and the step
 *   they fail or are cancelled at: one visibility write per step was the
 *   largest cost of a run over a bare workflow, and a run that ends sooner is
 *   listed by how it ended (bench/results/report.md, P3).
 * Runs recorded before it replay down LEAN_RUN_PATCH, unchanged.
 */
export const LEAN_RUN_2_PATCH = 'lean-run-2';

/**
 * Runs started after this patch retry an undo's transient failures until the
 * undo succeeds, instead of giving up after input.retry.maximumAttempts and
 * leaving what the step made behind (an agent attested in a SPIRE server that
 * was down, an address held in a ledger that was down). Until the dependency is
 * back the run stays `compensating` and its pending undo's last failure says
 * what it waits for (docs/reliability.md). Permanent and security failures of an
 * undo still end it at once (compensation_failed). Runs recorded before the
 * patch keep the bounded policy; lean runs (LEAN_RUN_PATCH) follow it without asking.
 * Only a provisioning run's compensation (`undoUntilDone`): a decommission or a maintain run
 * keeps the bounded policy, runs the other undos and fails saying it is safe to run again.
 */
export const UNDO_UNTIL_DONE_PATCH = 'undo-retries-until-done';

/** The preflight only reads (the SPIRE server's bundle, ...): a fixed, short deadline. */
const PREFLIGHT_TIMEOUT_MS = 60_000;
const PREFLIGHT_SUMMARY = 'preflight: read-only checks before step 1';

/**
 * Long steps must heartbeat at least this often: a quarter of the step's
 * start-to-close, between 5 s and 30 s. A dead worker is then noticed in
 * seconds rather than at the deadline, and a cancellation reaches the activity.
 */
export function heartbeatTimeoutMs(startToCloseSeconds: number): number {
  return Math.min(30_000, Math.max(5_000, (startToCloseSeconds * 1000) / 4));
}

export function retryPolicyFor(input: ProvisionInput): RetryPolicy {
  return {
    initialInterval: input.retry.initialIntervalMs,
    maximumInterval: input.retry.maximumIntervalMs,
    maximumAttempts: input.retry.maximumAttempts,
    backoffCoefficient: 2,
    nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
  };
}

/**
 * The activities one run calls.
 *
 * - step: each step's own start-to-close plus a heartbeat timeout (every
 *   activity heartbeats while it runs, so a killed worker is noticed in seconds).
 * - undo: one compensation deadline for every undo the step table names
 *   (common/steps.ts; input.timeouts.compensation), same heartbeat.
 * - ledger: event writes, short and fixed; local activities (LEDGER_LOCAL_PATCH),
 *   each with a summary naming its step and event (workflows/events.ts), so the
 *   Web UI's timeline says what each marker recorded; `recordEvents` writes a
 *   batch of them in one (LEAN_RUN_PATCH).
 *
 * Steps wait for a cancelled activity to acknowledge before the workflow moves
 * on, so an undo never races the step it undoes.
 */
export function activitiesFor(input: ProvisionInput, lean = false, opts: { undoUntilDone?: boolean } = {}) {
  const t = input.timeouts;
  const base: ActivityOptions = {
    retry: retryPolicyFor(input),
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  };
  // `summary` is what the Web UI shows on each activity: the runbook's step title.
  const step = (seconds: number, summary: string) =>
    proxyActivities<Activities>({
      ...base,
      startToCloseTimeout: seconds * 1000,
      heartbeatTimeout: heartbeatTimeoutMs(seconds),
      summary,
    });
  const undo = proxyActivities<Activities>({
    ...base,
    // A lean run takes the patch's path without asking (one marker per run: LEAN_RUN_PATCH).
    retry:
      opts.undoUntilDone && (lean || patched(UNDO_UNTIL_DONE_PATCH))
        ? { ...base.retry, maximumAttempts: Number.POSITIVE_INFINITY }
        : base.retry,
    startToCloseTimeout: t.compensation * 1000,
    heartbeatTimeout: heartbeatTimeoutMs(t.compensation),
    summary: 'compensation (undo a finished step)',
  });
  const undos = Object.fromEntries(UNDO_ACTIVITIES.map((name) => [name, undo[name]])) as Pick<
    typeof undo,
    UndoActivity
  >;
  const ledgerOptions = { retry: base.retry, startToCloseTimeout: LEDGER_TIMEOUT_MS };
  // A summary is user metadata: it is not part of the command sequence, so replays are unaffected.
  // Runs recorded before LEDGER_LOCAL_PATCH keep their plain, summary-less activities.
  const recordEvent: (event: LedgerEvent, summary: string) => Promise<void> =
    lean || patched(LEDGER_LOCAL_PATCH)
      ? (event, summary) => proxyLocalActivities<Activities>({ ...ledgerOptions, summary }).recordEvent(event)
      : (event) => proxyActivities<Activities>(ledgerOptions).recordEvent(event);
  // LEAN_RUN_PATCH: several events in one local activity, in order.
  const recordEvents = (events: LedgerEvent[], summary: string) =>
    proxyLocalActivities<Activities>({ ...ledgerOptions, summary }).recordEvents(events);

  return {
    preflight: lean
      ? proxyLocalActivities<Activities>({
          ...base,
          startToCloseTimeout: PREFLIGHT_TIMEOUT_MS,
          summary: PREFLIGHT_SUMMARY,
        }).preflight
      : proxyActivities<Activities>({
          ...base,
          startToCloseTimeout: PREFLIGHT_TIMEOUT_MS,
          heartbeatTimeout: heartbeatTimeoutMs(PREFLIGHT_TIMEOUT_MS / 1000),
          summary: PREFLIGHT_SUMMARY,
        }).preflight,
    installOverlay: step(t.installOverlay, STEP_TITLES.installOverlay).installOverlay,
    issueOverlayKey: step(t.issueOverlayKey, STEP_TITLES.issueOverlayKey).issueOverlayKey,
    gatePeerHealth: step(t.gatePeerHealth, STEP_TITLES.gatePeerHealth).gatePeerHealth,
    startSpireAgent: step(t.startSpireAgent, STEP_TITLES.startSpireAgent).startSpireAgent,
    registerEntries: step(t.registerEntries, STEP_TITLES.registerEntries).registerEntries,
    launchWorkloads: step(t.launchWorkloads, STEP_TITLES.launchWorkloads).launchWorkloads,

    ...undos,

    recordEvent,
    recordEvents,
  };
}

export type RunActivities = ReturnType<typeof activitiesFor>;
