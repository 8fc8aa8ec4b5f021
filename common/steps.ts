/**
 * The step table: the six bootstrap steps in runbook order, each with its
 * title, the activity that undoes it and its place in a decommission. The
 * workflows build the undo proxies and the decommission stack from it, the
 * worker's metrics and fault injection name undos from it, and the CLI prints
 * the titles. (`workflows/provision-node.ts` still calls the six steps one line
 * each: that is the runbook.) Imported by workflows: no Node built-ins.
 */
const STEP_TABLE = [
  { name: 'installOverlay', title: '1 install overlay agent', undo: 'undoInstallOverlay', decommissionOrder: 5 },
  { name: 'issueOverlayKey', title: '2 issue overlay key', undo: 'undoIssueOverlayKey', decommissionOrder: 4 },
  // Read-only: nothing to undo.
  { name: 'gatePeerHealth', title: '3 gate on peer health', undo: null, decommissionOrder: null },
  { name: 'startSpireAgent', title: '4 start SPIRE agent', undo: 'undoStartSpireAgent', decommissionOrder: 3 },
  { name: 'registerEntries', title: '5 register entries', undo: 'undoRegisterEntries', decommissionOrder: 2 },
  { name: 'launchWorkloads', title: '6 launch workloads', undo: 'undoLaunchWorkloads', decommissionOrder: 1 },
] as const;

type StepRow = (typeof STEP_TABLE)[number];
export type StepName = StepRow['name'];
/** The activities that undo a step (activities/types.ts checks each one is an activity). */
export type UndoActivity = NonNullable<StepRow['undo']>;

/** The six bootstrap steps, in runbook order. */
export const STEPS: readonly StepName[] = STEP_TABLE.map((s) => s.name);

/** What the Web UI and the CLI call each step. */
export const STEP_TITLES = Object.fromEntries(STEP_TABLE.map((s) => [s.name, s.title])) as Record<StepName, string>;

/** The activity that undoes each step; null for a read-only step. */
export const UNDO_OF = Object.fromEntries(STEP_TABLE.map((s) => [s.name, s.undo])) as {
  [R in StepRow as R['name']]: R['undo'];
};

/** Every undo activity, in runbook order of the step it undoes. */
export const UNDO_ACTIVITIES: readonly UndoActivity[] = STEP_TABLE.flatMap((s) => (s.undo ? [s.undo] : []));

/**
 * What a decommission undoes, in the order it undoes it (first = first undone):
 * the reverse of the runbook, the same order a failed provisioning undoes in.
 */
export const DECOMMISSION_ORDER: readonly { step: StepName; undo: UndoActivity }[] = STEP_TABLE.flatMap((s) =>
  s.undo && s.decommissionOrder !== null ? [{ step: s.name, undo: s.undo, order: s.decommissionOrder }] : [],
)
  .sort((a, b) => a.order - b.order)
  .map(({ step, undo }) => ({ step, undo }));
