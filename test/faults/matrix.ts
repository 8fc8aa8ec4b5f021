/**
 * The fault matrix (issue 16): every dependency failing while each listed
 * step's activity runs, with the outcome each cell must end in stated here,
 * before anything runs. test/faults/runner.ts runs a cell; test/faults/
 * matrix.test.ts runs them all (`npm run faults`) and
 * test/integration/fault-subset.test.ts runs SUBSET in `npm test`.
 *
 * Outcomes:
 *   provisioned  the fault healed within the step's retry policy; the run finished
 *   compensated  it did not: the step failed with `errorType` and everything done was undone
 *   cancelled    the run was cancelled (to make it compensate) and everything done was undone
 *   repaired     (reboot) maintainNode found the node broken and repaired it
 * `retried`: the faulted activity ran more than once (true), exactly once (false).
 *
 * When a dependency is "not started again", the step fails and the undos that
 * need that dependency cannot finish either: they keep retrying (the run stays
 * `compensating`, the pending undo's last failure names the dependency) rather
 * than giving up and leaking. The cell checks exactly that for `observeS`
 * seconds, then brings the dependency back — the operator's fix — and the
 * compensation must then finish with nothing left behind.
 */
import type { ErrorType } from '../../common/errors.js';
import { STEPS, UNDO_ACTIVITIES, type StepName, type UndoActivity } from '../../common/steps.js';

export type Row = 'temporal' | 'postgres' | 'spire' | 'hub' | 'tunnel' | 'reboot' | 'undo-kill' | 'race' | 'disk';
export type Outcome = 'provisioned' | 'compensated' | 'cancelled' | 'repaired';

export interface Expected {
  outcome: Outcome;
  /**
   * compensated: the type the run fails with. provisioned/cancelled: a type the
   * faulted activity met and retried past (null: it met none, or it is not fixed).
   */
  errorType: ErrorType | 'Cancelled' | null;
  /** Did the faulted activity run more than once ('either': a race the cell says it does not decide). */
  retried: boolean | 'either';
}

export interface Cell {
  /** "<row>/<variant>/<where>", stable: the results file and the page key on it. */
  id: string;
  row: Row;
  /** What is broken, for the page. */
  fault: string;
  /** The step (or undo) whose activity runs into the fault. */
  at: StepName | UndoActivity | 'after provisioning';
  /** The dependency comes back during the run (after the outage); false: only after the run gave up. */
  heals: boolean;
  expected: Expected;
}

/** Rows that break something the whole lab (or stack) shares: their cells run one at a time per stack. */
export const SHARED_ROWS: readonly Row[] = ['temporal', 'postgres', 'spire', 'hub'];

const cell = (c: Omit<Cell, 'id'> & { variant: string }): Cell => {
  const { variant, ...rest } = c;
  return { id: `${c.row}/${variant}/${c.at}`, ...rest };
};

const SPIRE_STEPS = ['startSpireAgent', 'registerEntries', 'launchWorkloads'] as const;

export const MATRIX: readonly Cell[] = [
  // Temporal: the server dies (SIGKILL) while the step's worker holds its finished result;
  // it comes back on the same SQLite file and port. The worker reports the result while the
  // server is down and the SDK retries that report; whether it lands before the restarted
  // server times the attempt out on its heartbeat (and the step runs again, idempotently)
  // is a race between the restart and the heartbeat timeout: either way, provisioned, once.
  ...STEPS.map((at) =>
    cell({
      row: 'temporal',
      variant: 'sigkill-restart',
      at,
      fault: 'Temporal dev server SIGKILLed mid-step, restarted on the same SQLite file',
      heals: true,
      expected: { outcome: 'provisioned', errorType: null, retried: 'either' },
    }),
  ),
  // PostgreSQL (the ledger): every step writes its rows there.
  ...(['issueOverlayKey', 'registerEntries', 'launchWorkloads'] as const).flatMap((at) => [
    cell({
      row: 'postgres',
      variant: 'stop-start',
      at,
      fault: 'PostgreSQL stopped, started again after the outage',
      heals: true,
      expected: { outcome: 'provisioned', errorType: 'LedgerUnavailable', retried: true },
    }),
    cell({
      row: 'postgres',
      variant: 'stop',
      at,
      fault: 'PostgreSQL stopped, not started again',
      heals: false,
      expected: { outcome: 'compensated', errorType: 'LedgerUnavailable', retried: true },
    }),
  ]),
  cell({
    row: 'postgres',
    variant: 'stop-start',
    at: 'undoRegisterEntries',
    fault: 'PostgreSQL stopped during compensation, started again after the outage',
    heals: true,
    expected: { outcome: 'cancelled', errorType: 'LedgerUnavailable', retried: true },
  }),
  cell({
    row: 'postgres',
    variant: 'stop',
    at: 'undoRegisterEntries',
    fault: 'PostgreSQL stopped during compensation, not started again',
    heals: false,
    expected: { outcome: 'cancelled', errorType: 'LedgerUnavailable', retried: true },
  }),
  // The SPIRE server: the join token is minted on it (4), entries are created on it (5), the
  // workloads' launch reads the server's trust bundle from it (6): each step finds it down.
  ...SPIRE_STEPS.flatMap((at) => {
    const errorType = 'SpireServerUnavailable';
    return [
      cell({
        row: 'spire',
        variant: 'stop-start',
        at,
        fault: 'SPIRE server stopped, started again after the outage',
        heals: true,
        expected: { outcome: 'provisioned', errorType, retried: true },
      }),
      cell({
        row: 'spire',
        variant: 'stop',
        at,
        fault: 'SPIRE server stopped, not started again',
        heals: false,
        expected: { outcome: 'compensated', errorType, retried: true },
      }),
    ];
  }),
  // The hub: its interface down for the outage (then up), or the node's peer removed from it (for good).
  ...(['gatePeerHealth', 'startSpireAgent'] as const).flatMap((at) => [
    cell({
      row: 'hub',
      variant: 'interface-down',
      at,
      fault: 'hub WireGuard interface down, up again after the outage',
      heals: true,
      // The gate's probe and the agent's attestation both keep trying within their attempt:
      // the hub is back before either gives up.
      expected: { outcome: 'provisioned', errorType: null, retried: false },
    }),
    cell({
      row: 'hub',
      variant: 'peer-removed',
      at,
      fault: "the node's peer removed from the hub",
      heals: false,
      expected: {
        outcome: 'compensated',
        // The handshake made during step 2 is still recent: the probe through the tunnel is what fails.
        errorType: at === 'gatePeerHealth' ? 'ProbeFailed' : 'AgentUnhealthy',
        retried: true,
      },
    }),
  ]),
  // The node's tunnel: its WireGuard interface deleted (wireguard-go goes with it).
  ...(['startSpireAgent', 'registerEntries', 'launchWorkloads'] as const).map((at) =>
    cell({
      row: 'tunnel',
      variant: 'interface-deleted',
      at,
      fault: "the node's WireGuard interface deleted",
      heals: false,
      // Entries are made on the hub's admin socket (no tunnel needed): step 5 succeeds, and the
      // agent, cut off from the server, never gets the workloads' SVIDs in step 6.
      expected: {
        outcome: 'compensated',
        errorType: at === 'startSpireAgent' ? 'AgentUnhealthy' : 'WorkloadFailed',
        retried: at !== 'registerEntries',
      },
    }),
  ),
  cell({
    row: 'reboot',
    variant: 'reboot',
    at: 'after provisioning',
    fault: "simulated reboot: every node process SIGKILLed, the node's run dir emptied",
    heals: false,
    expected: { outcome: 'repaired', errorType: null, retried: false },
  }),
  // The worker dies while each undo runs (the run was cancelled during step 6, so every undo runs).
  ...UNDO_ACTIVITIES.map((at) =>
    cell({
      row: 'undo-kill',
      variant: 'sigkill',
      at,
      fault: 'worker SIGKILLed during the undo, after its work, before its result',
      heals: true,
      expected: { outcome: 'cancelled', errorType: null, retried: true },
    }),
  ),
  // A second worker on the same task queue joins while the step runs; both serve the rest of the run.
  ...STEPS.map((at) =>
    cell({
      row: 'race',
      variant: 'second-worker',
      at,
      fault: 'a second worker started on the same task queue mid-step',
      heals: true,
      expected: { outcome: 'provisioned', errorType: null, retried: false },
    }),
  ),
  // nodeDir on a 16 MB tmpfs, filled to the last byte.
  ...(['issueOverlayKey', 'startSpireAgent', 'launchWorkloads'] as const).map((at) =>
    cell({
      row: 'disk',
      variant: 'full',
      at,
      fault: 'disk full in nodeDir (16 MB tmpfs filled)',
      heals: false,
      expected: {
        outcome: 'compensated',
        // Each step writes a file through `cat >` (the key; the agent's config and bundle; the
        // workload's pid file) and that write fails: ToolFailed.
        errorType: 'ToolFailed',
        retried: true,
      },
    }),
  ),
];

/** The cells `npm test` runs (test/integration/fault-subset.test.ts): one per dependency, the quick ones. */
export const SUBSET: readonly string[] = [
  'temporal/sigkill-restart/registerEntries',
  'postgres/stop-start/registerEntries',
  'spire/stop-start/registerEntries',
  'hub/peer-removed/gatePeerHealth',
  'tunnel/interface-deleted/startSpireAgent',
  'reboot/reboot/after provisioning',
  'undo-kill/sigkill/undoStartSpireAgent',
  'race/second-worker/issueOverlayKey',
  'disk/full/issueOverlayKey',
];

export function cellById(id: string): Cell {
  const c = MATRIX.find((x) => x.id === id);
  if (!c) throw new Error(`no fault-matrix cell "${id}"`);
  return c;
}
