/**
 * nodeboot's exit codes: the one place they are defined. CI branches on them,
 * so they are part of the interface: never renumber one, only add.
 */
export const EXIT = {
  /** The node is provisioned, or the command did what it was asked. */
  OK: 0,
  /** Anything else: an unexpected error (a bug, a server error, no worker answering). */
  ERROR: 1,
  /** Invalid input file or usage: nothing was started or changed. */
  INVALID: 2,
  /** The run failed (or was cancelled) and everything it did was undone. Safe to rerun. */
  FAILED: 3,
  /** The run is on hold: a step failed and it waits for approve/retry or compensate. */
  HELD: 4,
  /** No run (or no ledger event) for that node. */
  NOT_FOUND: 5,
  /** Cannot reach Temporal (for `history`: the ledger). Retry later. */
  UNREACHABLE: 6,
  /** The command does not apply to the run's current state (e.g. approve a run that is not held). */
  CONFLICT: 7,
  /** Still running: `status` of a run in progress, or `--wait` gave up at `--timeout`. */
  RUNNING: 8,
  /** The run failed and something was left behind (an undo failed, or the run was terminated). Decommission it. */
  INCOMPLETE: 9,
  /** `status`: the node was decommissioned after its last run; `nodeboot start` provisions it again. */
  DECOMMISSIONED: 10,
  /** maintain --wait: the node ended degraded or broken (no run is held). */
  UNHEALTHY: 11,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
export type ExitName = keyof typeof EXIT;

export function exitName(code: ExitCode): ExitName {
  return (Object.keys(EXIT) as ExitName[]).find((k) => EXIT[k] === code) ?? 'ERROR';
}

/** The table printed by `nodeboot --help` and copied into docs/operating.md. */
export const EXIT_CODE_HELP = `exit codes:
  0  ok: provisioned, or the command did what it was asked
  1  other failure (unexpected error, no worker answering)
  2  invalid input or usage (nothing was started)
  3  failed and compensated (or cancelled): nothing left behind, safe to rerun
  4  on hold: waiting for approve/retry or compensate
  5  not found: no run (or no ledger event) for that node
  6  cannot reach Temporal (history: the ledger)
  7  conflict: the command does not apply to the run's current state
  8  still running (status of a run in progress; --wait hit --timeout)
  9  failed and NOT fully compensated (an undo failed, or the run was terminated): decommission
     (status: also a decommission that did not finish)
 10  decommissioned (status): not provisioned; \`nodeboot start\` provisions it again (a new run)
 11  maintain --wait: the node ended degraded or broken
  (cancel, compensate --wait, decommission --wait: 0 = everything undone, 9 = something left behind)`;
