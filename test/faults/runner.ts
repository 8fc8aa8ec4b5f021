/**
 * Runs fault-matrix cells (test/faults/matrix.ts) on real components and says,
 * per cell, what happened: the outcome, the error type seen, whether the
 * faulted activity was retried, how long recovery or compensation took, and
 * what was left behind (leaks) or made twice (duplicates), counted on the node,
 * the hub, the SPIRE server and the ledger (test/helpers/node-residue.ts).
 *
 * Each cell gets a lab node, a node id, a task queue and worker processes of
 * its own (workers/worker.ts as separate OS processes, test/helpers/worker-process.ts).
 * The worst moment is hit with the fault-pause hook (workers/fault-injection.ts):
 * the worker holds a finished activity's result back, and the fault is injected
 * inside that window. For "at step N" the held activity is step N-1, so step N
 * starts with the dependency broken; for the Temporal and race rows it is step N
 * itself (its work is done, its result not yet in history).
 *
 * Cells of one row share a stack (a lab; a dedicated Temporal dev server for the
 * temporal row, a dedicated PostgreSQL for the postgres row) and run one after
 * the other, so the lab-wide counts (hub peers, SPIRE entries and agents) belong
 * to the cell at hand; rows run side by side.
 */
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { Ledger } from '../../inventory/index.js';
import { Lab } from '../../lab/lab.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { startDecommission, startProvisioning } from '../../client/provision.js';
import { startMaintain } from '../../client/maintain.js';
import { statusQuery, type ProvisionStatus } from '../../common/definitions.js';
import type { ProvisionInputJson } from '../../common/input.js';
import type { MaintainResult } from '../../common/maintain.js';
import { STEPS, UNDO_ACTIVITIES, type StepName, type UndoActivity } from '../../common/steps.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { requireRealComponents } from '../helpers/prereqs.js';
import { connectEnv, uniqueId, uniqueTaskQueue, type TemporalTestEnv } from '../helpers/temporal.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';
import { limiter } from '../helpers/limiter.js';
import { duplicatesIn, leaksIn, missingIn, residueOf, type Residue } from '../helpers/node-residue.js';
import {
  DedicatedPostgres,
  DedicatedTemporal,
  SmallDisk,
  deleteNodeInterfaces,
  hub,
  rebootNode,
  spireServer,
} from './components.js';
import type { Cell, Outcome, Row } from './matrix.js';

/** The matrix's durations: inputs, real time (no time skipping). */
export interface FaultTimes {
  /** How long a healing fault lasts (s): within the retry policy below. */
  outageS: number;
  /** How long a run that gave up must be seen waiting (compensating, reason visible) before the dependency is back (s). */
  observeS: number;
  /** A run not ended this long after the fault is stuck (s). */
  stuckS: number;
}

export function faultTimesFromEnv(env: NodeJS.ProcessEnv = process.env): FaultTimes {
  const num = (name: string, dflt: number) => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: must be a positive number of seconds, got "${v}"`);
    return n;
  };
  return {
    outageS: num('NODEBOOT_FAULT_OUTAGE_S', 6),
    observeS: num('NODEBOOT_FAULT_OBSERVE_S', 10),
    stuckS: num('NODEBOOT_FAULT_STUCK_S', 420),
  };
}

/**
 * Step deadlines (s) and the retry policy every cell runs with: backoff 1, 2, 4, 4 s
 * (11 s in all) rides out an outage of `outageS` <= 8 s; a fault that lasts
 * fails the step after 5 attempts.
 */
const TIMEOUTS = {
  installOverlay: 40,
  issueOverlayKey: 30,
  gatePeerHealth: 30,
  startSpireAgent: 40,
  registerEntries: 30,
  launchWorkloads: 40,
  compensation: 60,
};
const RETRY = { initialIntervalMs: 1_000, maximumIntervalMs: 4_000, maximumAttempts: 5 };

export interface CellResult {
  id: string;
  row: Row;
  fault: string;
  at: string;
  heals: boolean;
  expected: Cell['expected'];
  observed: {
    outcome: Outcome | 'failed' | 'stuck' | 'error';
    errorType: string | null;
    retried: boolean;
    /** Highest attempt of the faulted activity. */
    attempts: number;
    /** The faulted activity's last failure before its final attempt (type or timeout), if any. */
    lastFailure: string | null;
    /** Undos that failed (compensation_failed): each one a leak waiting to happen. */
    undoFailed: string[];
    /** While waiting for a dependency that was not back: what the pending undo said. */
    waitingFor: string | null;
  };
  timings: {
    /** Fault injected -> run ended. */
    faultToEndS: number | null;
    /** Dependency back -> run ended. */
    healToEndS: number | null;
    /** First undo scheduled -> run ended (compensated / cancelled cells). */
    compensatingS: number | null;
    totalS: number;
  };
  /** null: not counted (the cell broke off before it could count). */
  duplicates: string[] | null;
  missing: string[] | null;
  leaks: string[] | null;
  /** Mismatches with `expected`, and anything else that went wrong: empty = the cell passed. */
  problems: string[];
  marks: string[];
}

interface Stack {
  row: Row;
  lab: Lab;
  ledger: Ledger;
  dbUrl: string;
  env: TemporalTestEnv;
  temporalAddress: string;
  namespace: string;
  temporal?: DedicatedTemporal;
  pg?: DedicatedPostgres;
  db?: TestDatabase;
  nextNode: number;
}

async function startStack(
  row: Row,
  nodes: number,
  shared: { temporalAddress: string; namespace: string },
): Promise<Stack> {
  requireRealComponents(['temporal', 'spire-server', 'spire-agent']);
  const temporalP = row === 'temporal' ? DedicatedTemporal.start() : Promise.resolve(undefined);
  const pgP = row === 'postgres' ? DedicatedPostgres.create() : Promise.resolve(undefined);
  const dbP = row === 'postgres' ? Promise.resolve(undefined) : createTestDatabase('nbfault');
  const labP = Lab.up({ nodes, ephemeral: true, trustDomain: `${row.replace(/[^a-z]/g, '')}.faults.nodeboot.test` });
  const parts = await Promise.allSettled([temporalP, pgP, dbP, labP]);
  const [t, p, d, l] = parts.map((x) => (x.status === 'fulfilled' ? x.value : undefined)) as [
    DedicatedTemporal | undefined,
    DedicatedPostgres | undefined,
    TestDatabase | undefined,
    Lab | undefined,
  ];
  const failed = parts.find((x) => x.status === 'rejected');
  if (failed || !l) {
    await Promise.allSettled([t?.stop(), p?.destroy(), d?.drop(), l?.down()]);
    throw (failed as PromiseRejectedResult | undefined)?.reason ?? new Error('lab did not come up');
  }
  const temporalAddress = t?.address ?? shared.temporalAddress;
  const namespace = t ? 'default' : shared.namespace;
  const dbUrl = p?.url ?? d!.url;
  const env = await connectEnv(temporalAddress, namespace);
  const ledger = await Ledger.connect(dbUrl, { migrate: true });
  return { row, lab: l, ledger, dbUrl, env, temporalAddress, namespace, temporal: t, pg: p, db: d, nextNode: 0 };
}

async function stopStack(s: Stack): Promise<void> {
  await s.ledger.close().catch(() => undefined);
  await s.env.close().catch(() => undefined);
  await Promise.allSettled([s.lab.down(), s.temporal?.stop(), s.pg?.destroy(), s.db?.drop()]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function prevActivity(step: StepName): StepName {
  const i = STEPS.indexOf(step);
  if (i < 1) throw new Error(`${step} has no step before it`);
  return STEPS[i - 1]!;
}

function prevUndo(undo: UndoActivity): UndoActivity {
  // Undos run in reverse runbook order: the one before undoX (in time) is the one after it in the table.
  const i = UNDO_ACTIVITIES.indexOf(undo);
  if (i < 0 || i === UNDO_ACTIVITIES.length - 1) throw new Error(`${undo} has no undo running before it`);
  return UNDO_ACTIVITIES[i + 1]!;
}

const pausing = (activity: string, workflowId: string) =>
  new RegExp(`fault injection: ${activity} attempt \\d+ of ${workflowId.replace('/', '\\/')} did its work; pausing`);

const pausingBefore = (activity: string, workflowId: string) =>
  new RegExp(
    `fault injection: ${activity} attempt 1 of ${workflowId.replace('/', '\\/')} pausing \\d+ ms before its work`,
  );

/** The faulted activity's attempts and last failure, from the run's history. */
function activityAttempts(events: temporal.api.history.v1.IHistoryEvent[], activity: string) {
  const scheduled = new Set(
    events
      .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity)
      .map((e) => String(e.eventId)),
  );
  let attempts = 0;
  let lastFailure: string | null = null;
  let errorType: string | null = null;
  for (const e of events) {
    const a = e.activityTaskStartedEventAttributes;
    if (!a || !scheduled.has(String(a.scheduledEventId))) continue;
    attempts = Math.max(attempts, a.attempt ?? 1);
    const f = a.lastFailure;
    if (f) {
      const type = f.applicationFailureInfo?.type ?? null;
      errorType = type ?? errorType;
      lastFailure =
        type ?? (f.timeoutFailureInfo ? `timeout (${String(f.timeoutFailureInfo.timeoutType)})` : (f.message ?? null));
    }
  }
  return { attempts, lastFailure, errorType };
}

function eventMs(e: temporal.api.history.v1.IHistoryEvent): number {
  const t = e.eventTime;
  return t ? Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : 0;
}

/** Poll `fn` until it is true or `ms` passed; returns whether it became true. */
async function within(ms: number, fn: () => Promise<boolean>, intervalMs = 500): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await fn().catch(() => false)) return true;
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}

/** What the run's pending undo says it waits for ("undoX: LedgerUnavailable"), or null. */
async function pendingUndo(handle: WorkflowHandle): Promise<string | null> {
  const d = await handle.describe();
  for (const p of d.raw.pendingActivities ?? []) {
    const name = p.activityType?.name ?? '';
    if (!(UNDO_ACTIVITIES as readonly string[]).includes(name)) continue;
    const type = p.lastFailure?.applicationFailureInfo?.type;
    if (type) return `${name}: ${type} (attempt ${p.attempt})`;
  }
  return null;
}

class CellRun {
  readonly marks: string[] = [];
  readonly problems: string[] = [];
  readonly workers: WorkerProcess[] = [];
  private readonly t0 = Date.now();
  faultAt: number | null = null;
  healedAt: number | null = null;
  endedAt: number | null = null;
  waitingFor: string | null = null;
  readonly nodeId: string;
  readonly taskQueue: string;
  readonly input: ProvisionInputJson;

  constructor(
    readonly stack: Stack,
    readonly cell: Cell,
    readonly node: string,
    uid: number,
  ) {
    this.nodeId = uniqueId(`f${cell.row.slice(0, 3)}`);
    this.taskQueue = uniqueTaskQueue(`faults-${cell.row}`);
    this.input = labProvisionInput(stack.lab, node, {
      nodeId: this.nodeId,
      workloads: [{ name: 'api', spiffePath: `/ns/faults/sa/${cell.row.replace(/[^a-z]/g, '')}`, uid, port: 9443 }],
      overrides: { timeouts: TIMEOUTS, retry: RETRY },
    });
  }

  mark(what: string) {
    this.marks.push(`${what} ${((Date.now() - this.t0) / 1000).toFixed(1)}s`);
  }

  get elapsedS() {
    return (Date.now() - this.t0) / 1000;
  }

  async worker(name: string, faultPause?: string): Promise<WorkerProcess> {
    const w = await startWorkerProcess({
      taskQueue: this.taskQueue,
      databaseUrl: this.stack.dbUrl,
      temporalAddress: this.stack.temporalAddress,
      namespace: this.stack.namespace,
      ...(faultPause ? { faultPause } : {}),
      name: `${name} (${this.cell.id})`,
    });
    this.workers.push(w);
    this.mark(`${name} ready in ${(w.readyMs / 1000).toFixed(1)}s`);
    return w;
  }

  /** Any worker still alive (a query or a decommission needs one). */
  async liveWorker(): Promise<WorkerProcess> {
    return this.workers.find((w) => w.alive()) ?? this.worker('cleanup worker');
  }

  async residue(): Promise<Residue> {
    return residueOf(this.stack.lab, this.stack.ledger, this.node, this.nodeId);
  }

  async killAll() {
    for (const w of this.workers) await w.kill();
  }
}

/** One fault: how to break the dependency and how to mend it. */
interface Fault {
  inject(r: CellRun): Promise<void>;
  /** Mend it (when the cell heals, or when the operator brings it back after the run gave up); absent: nothing to mend. */
  heal?(r: CellRun): Promise<void>;
}

function faultOf(r: CellRun, disk: SmallDisk | undefined): Fault {
  const { lab } = r.stack;
  switch (r.cell.row) {
    case 'postgres':
      return { inject: () => r.stack.pg!.stop(), heal: () => r.stack.pg!.start() };
    case 'spire':
      return { inject: () => spireServer.stop(lab), heal: () => spireServer.start(lab) };
    case 'hub':
      return r.cell.heals
        ? { inject: () => hub.down(lab), heal: () => hub.up(lab) }
        : { inject: async () => void (await hub.removePeers(lab)) };
    case 'tunnel':
      return { inject: async () => void (await deleteNodeInterfaces(lab, r.node)) };
    case 'disk':
      return { inject: () => disk!.fill() };
    default:
      throw new Error(`row ${r.cell.row} has no dependency fault`);
  }
}

/** Dependencies a run cannot finish compensating without: brought back by the test (the operator) after `observeS`. */
const OPERATOR_RESTORES: readonly Row[] = ['postgres', 'spire'];

interface Ending {
  outcome: CellResult['observed']['outcome'];
  errorType: string | null;
  status: ProvisionStatus | null;
}

/** Wait for the run's end; a run not ended by `deadlineMs` is stuck. */
async function ending(r: CellRun, handle: WorkflowHandle, deadlineMs: number): Promise<Ending> {
  const result = handle.result().then(
    () => ({ ok: true as const }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  const timer = sleep(Math.max(0, deadlineMs - Date.now())).then(() => 'stuck' as const);
  const first = await Promise.race([result, timer]);
  r.endedAt = Date.now();
  const status = await handle.query(statusQuery).catch(() => null);
  if (first === 'stuck') return { outcome: 'stuck', errorType: status?.lastFailure?.type ?? null, status };
  if (first.ok) return { outcome: 'provisioned', errorType: null, status };
  const cancelled = first.err instanceof WorkflowFailedError && first.err.cause?.name === 'CancelledFailure';
  const allUndone = status?.state === 'compensated' || (cancelled && status !== null);
  return {
    outcome: cancelled ? 'cancelled' : allUndone ? 'compensated' : 'failed',
    errorType: cancelled ? 'Cancelled' : (status?.lastFailure?.type ?? null),
    status,
  };
}

/**
 * While the run gives up (the dependency is not back): once it compensates, it
 * must be seen waiting with a visible reason for `observeS`, then the operator
 * brings the dependency back.
 */
async function operatorRestore(
  r: CellRun,
  handle: WorkflowHandle,
  fault: Fault,
  times: FaultTimes,
  done: () => boolean,
) {
  if (!fault.heal || !OPERATOR_RESTORES.includes(r.cell.row)) return;
  const compensating = await within(times.stuckS * 1000, async () => {
    if (done()) return true;
    const s = await handle.query(statusQuery);
    return s.state === 'compensating' || s.state === 'compensated' || s.state === 'failed';
  });
  if (!compensating || done()) return;
  r.mark('compensating');
  // Seen waiting: a pending undo whose last failure names what is missing (the ledger events the
  // workflow writes on the way, local activities, may take their own retries first) ...
  const seen = await within(times.stuckS * 1000, async () => {
    if (done()) return true;
    r.waitingFor = (await pendingUndo(handle)) ?? r.waitingFor;
    return r.waitingFor !== null;
  });
  if (seen && !done()) r.mark(`waiting: ${r.waitingFor}`);
  // ... and still waiting `observeS` later: it does not give up.
  const observedUntil = Date.now() + times.observeS * 1000;
  while (Date.now() < observedUntil && !done()) await sleep(1_000);
  if (done()) return;
  if (!r.waitingFor)
    r.problems.push(`compensating for ${times.observeS}s with no pending undo saying what it waits for`);
  await fault.heal(r);
  r.healedAt = Date.now();
  r.mark('dependency back (operator)');
}

async function runProvisionCell(r: CellRun, times: FaultTimes, disk: SmallDisk | undefined): Promise<Ending> {
  const { cell, stack } = r;
  const step = cell.at as StepName | UndoActivity;
  const isUndo = (UNDO_ACTIVITIES as readonly string[]).includes(step);
  const wfId = `provision/${r.nodeId}`;
  let trigger: string;
  let pauseMs: number;
  if (cell.row === 'temporal') [trigger, pauseMs] = [step, 4_000];
  else if (cell.row === 'race') [trigger, pauseMs] = [step, 20_000];
  else if (cell.row === 'undo-kill') [trigger, pauseMs] = [step, 30_000];
  else if (isUndo) [trigger, pauseMs] = [prevUndo(step as UndoActivity), 3_000];
  else [trigger, pauseMs] = [prevActivity(step as StepName), 3_000];

  // PostgreSQL: the ledger event written before each step (and undo) would ride out the outage
  // for the step; the fault lands instead while the activity holds before its work.
  const atStart = cell.row === 'postgres';
  const pause = atStart ? `${step}:${pauseMs}:before` : `${trigger}:${pauseMs}`;
  // An undo cell cancels the run while step 6 runs: step 6 holds before its work until then
  // (a step of well under a second would otherwise often finish before the cancel lands).
  const holdStep6 = `launchWorkloads:${times.stuckS * 1000}:before`;
  const w1 = await r.worker('worker', isUndo ? `${holdStep6},${pause}` : pause);
  const { handle } = await startProvisioning(stack.env.client, r.input, { taskQueue: r.taskQueue });
  r.mark('run started');

  if (isUndo) {
    // Make the run compensate: cancel it while step 6 runs (every step has an undo pushed by then).
    await w1.waitFor(pausingBefore('launchWorkloads', wfId), times.stuckS * 1000);
    await handle.cancel();
    r.mark('cancelled during launchWorkloads');
  }
  if (atStart) {
    await w1.waitFor(pausingBefore(step, wfId), times.stuckS * 1000);
    r.mark(`${step} holds before its work`);
  } else {
    await w1.waitFor(pausing(trigger, wfId), times.stuckS * 1000);
    r.mark(`${trigger} holds its result`);
  }

  let fault: Fault | undefined;
  if (cell.row === 'temporal') {
    await sleep(1_000);
    r.faultAt = Date.now();
    await stack.temporal!.kill();
    r.mark('Temporal SIGKILLed');
    // Back after the outage, on the same port and SQLite file.
    await sleep(times.outageS * 1000);
    await stack.temporal!.restart();
    r.healedAt = Date.now();
    r.mark('Temporal restarted');
  } else if (cell.row === 'undo-kill') {
    await sleep(1_000);
    r.faultAt = Date.now();
    await w1.kill();
    r.mark('worker SIGKILLed');
    await r.worker('fresh worker');
  } else if (cell.row === 'race') {
    r.faultAt = Date.now();
    await r.worker('second worker');
    // Say whether it joined while the step still held its result (the worker start can take longer on a busy machine).
    const back = new RegExp(
      `fault injection: ${trigger} attempt \\d+ of ${wfId.replace('/', '\\/')} returns after the pause`,
    );
    r.mark(
      w1
        .output()
        .split('\n')
        .some((l) => back.test(l))
        ? 'second worker joined after the step'
        : 'second worker joined mid-step',
    );
  } else {
    fault = faultOf(r, disk);
    r.faultAt = Date.now();
    await fault.inject(r);
    r.mark('fault injected');
  }

  let ended = false;
  const healing = (async () => {
    if (!fault?.heal) return;
    if (cell.heals) {
      await sleep(Math.max(0, r.faultAt! + times.outageS * 1000 - Date.now()));
      await fault.heal(r);
      r.healedAt = Date.now();
      r.mark('healed');
    } else await operatorRestore(r, handle, fault, times, () => ended);
  })();
  const end = await ending(r, handle, r.faultAt! + times.stuckS * 1000);
  ended = true;
  await healing.catch((err: unknown) => r.problems.push(`healing the fault failed: ${String(err)}`));
  // Whatever happened, the dependency is back before anything is counted.
  if (fault?.heal && r.healedAt === null) {
    await fault.heal(r).catch(() => undefined);
    r.healedAt = Date.now();
  }
  r.mark(`run ended: ${end.outcome}`);
  return end;
}

async function runRebootCell(r: CellRun, times: FaultTimes): Promise<Ending> {
  const { stack } = r;
  await r.worker('worker');
  const { handle } = await startProvisioning(stack.env.client, r.input, { taskQueue: r.taskQueue });
  await handle.result();
  r.mark('provisioned');
  r.faultAt = Date.now();
  await rebootNode(stack.lab, r.node);
  r.mark('rebooted');
  const h = await startMaintain(stack.env.client, r.input, { taskQueue: r.taskQueue });
  const result = await Promise.race([
    h.result() as Promise<MaintainResult>,
    sleep(times.stuckS * 1000).then(() => null),
  ]);
  r.endedAt = Date.now();
  if (!result) return { outcome: 'stuck', errorType: null, status: null };
  r.mark(`maintain ended: ${result.health}, rounds ${result.rounds.map((x) => x.steps.join('+')).join(' / ')}`);
  if (result.firstCheck.status === 'ok') r.problems.push('the first check found the rebooted node healthy');
  const failedRound = result.rounds.find((x) => x.failedStep);
  return {
    outcome: result.health === 'healthy' && !result.stoppedByOperator ? 'repaired' : 'failed',
    errorType: failedRound?.errorType ?? null,
    status: null,
  };
}

/** Run one cell on `stack`'s next lab node. Never throws: what went wrong is in `problems`. */
async function runCell(stack: Stack, cell: Cell, times: FaultTimes, uid: number): Promise<CellResult> {
  const node = stack.lab.nodes[stack.nextNode++]!.name;
  const r = new CellRun(stack, cell, node, uid);
  let disk: SmallDisk | undefined;
  let end: Ending = { outcome: 'error', errorType: null, status: null };
  const observed = noObservation();
  let duplicates: string[] | null = null;
  let missing: string[] | null = null;
  let leaks: string[] | null = null;
  let compensatingS: number | null = null;
  try {
    if (cell.row === 'disk') disk = await SmallDisk.mount(stack.lab.node(node).dir);
    end = cell.row === 'reboot' ? await runRebootCell(r, times) : await runProvisionCell(r, times, disk);
    Object.assign(observed, { outcome: end.outcome, errorType: end.errorType, waitingFor: r.waitingFor });
    observed.undoFailed = (end.status?.steps ?? []).filter((s) => s.state === 'compensation_failed').map((s) => s.step);

    if (cell.row !== 'reboot') {
      const handle = stack.env.client.workflow.getHandle(`provision/${r.nodeId}`);
      const events = (await handle.fetchHistory()).events ?? [];
      const a = activityAttempts(events, cell.at);
      Object.assign(observed, { attempts: a.attempts, retried: a.attempts > 1, lastFailure: a.lastFailure });
      if (end.outcome === 'provisioned') observed.errorType = a.errorType;
      const firstUndo = events.find((e) =>
        (UNDO_ACTIVITIES as readonly string[]).includes(
          e.activityTaskScheduledEventAttributes?.activityType?.name ?? '',
        ),
      );
      const last = events[events.length - 1];
      if (firstUndo && last) compensatingS = (eventMs(last) - eventMs(firstUndo)) / 1000;
      if (end.outcome === 'cancelled' && cell.row !== 'undo-kill' && cell.expected.errorType) {
        // The fault was met by the undo after the held one: its type is what the run saw.
        const u = activityAttempts(events, cell.at);
        observed.errorType = u.errorType;
      }
    } else observed.retried = false;

    // Count what is there; a process or peer on its way out gets a few seconds.
    if (end.outcome === 'provisioned' || end.outcome === 'repaired') {
      const res = await r.residue();
      duplicates = duplicatesIn(res, 1);
      missing = missingIn(res, 1);
      const w = await r.liveWorker();
      r.mark(`decommission on ${w.name}`);
      await (await startDecommission(stack.env.client, r.input, { taskQueue: r.taskQueue })).result();
    }
    let res = await r.residue();
    await within(5_000, async () => {
      res = await r.residue();
      return leaksIn(res).length === 0;
    });
    leaks = leaksIn(res);
  } catch (err) {
    r.problems.push(`error: ${err instanceof Error ? err.message : String(err)}`.slice(0, 600));
  } finally {
    // A cell that did not end cleanly leaves the stack clean for the next one.
    if (leaks?.length || r.problems.length || end.outcome === 'stuck') await cleanUp(r).catch(() => undefined);
    await r.killAll();
    await disk?.unmount();
  }

  const e = cell.expected;
  if (observed.outcome !== e.outcome) r.problems.push(`outcome ${observed.outcome}, expected ${e.outcome}`);
  if (e.errorType !== null && observed.errorType !== e.errorType && observed.outcome !== 'error')
    r.problems.push(`error type ${observed.errorType}, expected ${e.errorType}`);
  if (e.retried !== 'either' && observed.retried !== e.retried && observed.outcome !== 'error')
    r.problems.push(`retried ${observed.retried} (attempts ${observed.attempts}), expected ${e.retried}`);
  if (observed.undoFailed.length) r.problems.push(`undo failed: ${observed.undoFailed.join(', ')}`);
  for (const d of duplicates ?? []) r.problems.push(`duplicate ${d}`);
  for (const m of missing ?? []) r.problems.push(`missing ${m}`);
  for (const l of leaks ?? []) r.problems.push(`leak ${l}`);
  if (leaks === null) r.problems.push('leaks not counted');
  if (r.problems.length) {
    for (const w of r.workers)
      r.marks.push(
        `--- ${w.name} output tail ---\n${w
          .output()
          .split('\n')
          .filter((l) => !l.includes('"level":"INFO"'))
          .slice(-25)
          .map((l) => l.slice(0, 400))
          .join('\n')}`,
      );
  }
  const s = (a: number | null, b: number | null) => (a !== null && b !== null ? (b - a) / 1000 : null);
  return {
    ...cellFacts(cell),
    observed,
    timings: {
      faultToEndS: s(r.faultAt, r.endedAt),
      healToEndS:
        r.healedAt !== null && r.endedAt !== null && r.endedAt >= r.healedAt ? s(r.healedAt, r.endedAt) : null,
      compensatingS: end.outcome === 'compensated' || end.outcome === 'cancelled' ? compensatingS : null,
      totalS: r.elapsedS,
    },
    duplicates,
    missing,
    leaks,
    problems: r.problems,
    marks: r.marks,
  };
}

/** After a cell that did not end cleanly: end its runs and decommission the node, so the next cell starts from nothing. */
async function cleanUp(r: CellRun): Promise<void> {
  const { client } = r.stack.env;
  for (const id of [`provision/${r.nodeId}`, `maintain/${r.nodeId}`]) {
    await client.workflow
      .getHandle(id)
      .terminate('fault matrix: cell cleanup')
      .catch(() => undefined);
  }
  await r.liveWorker();
  await Promise.race([
    startDecommission(client, r.input, { taskQueue: r.taskQueue }).then((h) => h.result()),
    sleep(180_000),
  ]).catch(() => undefined);
}

/** What the matrix says of a cell, as its result repeats it. */
function cellFacts(cell: Cell) {
  const { id, row, fault, at, heals, expected } = cell;
  return { id, row, fault, at, heals, expected };
}

/** What a cell saw before it saw anything. */
function noObservation(): CellResult['observed'] {
  return {
    outcome: 'error',
    errorType: null,
    retried: false,
    attempts: 0,
    lastFailure: null,
    undoFailed: [],
    waitingFor: null,
  };
}

/**
 * Run `cells`: the cells of one row one after the other on that row's stack,
 * `concurrency` rows side by side. `onResult` sees each result as it comes.
 */
export async function runMatrix(
  cells: readonly Cell[],
  opts: {
    times: FaultTimes;
    shared: { temporalAddress: string; namespace: string };
    concurrency?: number;
    log?: (line: string) => void;
    onResult?: (r: CellResult) => void;
  },
): Promise<CellResult[]> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const rows = [...new Set(cells.map((c) => c.row))];
  const slot = limiter(opts.concurrency ?? 2);
  const results: CellResult[] = [];
  let uid = 64001;
  await Promise.all(
    rows.map((row) =>
      slot(async () => {
        const mine = cells.filter((c) => c.row === row);
        let stack: Stack;
        try {
          stack = await startStack(row, mine.length, opts.shared);
        } catch (err) {
          for (const c of mine) results.push(notRun(c, `the ${row} stack did not start: ${String(err)}`));
          return;
        }
        try {
          for (const c of mine) {
            log(`[faults] ${c.id}: start`);
            const res = await runCell(stack, c, opts.times, uid++);
            log(
              `[faults] ${c.id}: ${res.observed.outcome} (${res.observed.errorType ?? '-'}) in ${res.timings.totalS.toFixed(0)}s` +
                (res.problems.length ? `\n  PROBLEMS: ${res.problems.join('; ')}\n  ${res.marks.join('\n  ')}` : ''),
            );
            results.push(res);
            opts.onResult?.(res);
          }
        } finally {
          await stopStack(stack);
        }
      }),
    ),
  );
  return cells.map((c) => results.find((r) => r.id === c.id)!);
}

function notRun(cell: Cell, why: string): CellResult {
  return {
    ...cellFacts(cell),
    observed: noObservation(),
    timings: { faultToEndS: null, healToEndS: null, compensatingS: null, totalS: 0 },
    duplicates: null,
    missing: null,
    leaks: null,
    problems: [why],
    marks: [],
  };
}
