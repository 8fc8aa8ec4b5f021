/**
 * `nodeboot list`: runs found through visibility, by the search attributes
 * NodeId / Segment / BootstrapStep / FailedStep / ErrorType and ExecutionStatus.
 * One row per run, newest first. Visibility is eventually consistent: a run
 * started a moment ago may take a second to show.
 */
import {
  BootstrapStepKey,
  ErrorTypeKey,
  FailedStepKey,
  NodeIdKey,
  SegmentKey,
} from '../../../common/search-attributes.js';
import type { Flags, ListState } from '../args.js';
import { emit, type Context } from '../context.js';
import { EXIT, type ExitCode } from '../exit-codes.js';

const STATE_CLAUSE: Record<ListState, string> = {
  open: 'ExecutionStatus = "Running"',
  closed: 'ExecutionStatus != "Running"',
  // A held run is open with FailedStep set (a retry decision clears it). A run
  // compensating after a failure looks the same for the few seconds it takes.
  held: 'ExecutionStatus = "Running" AND FailedStep IS NOT NULL',
  running: 'ExecutionStatus = "Running" AND FailedStep IS NULL',
  succeeded: 'ExecutionStatus = "Completed"',
  failed: 'ExecutionStatus = "Failed"',
  cancelled: 'ExecutionStatus = "Canceled"',
  terminated: 'ExecutionStatus = "Terminated"',
  'timed-out': 'ExecutionStatus = "TimedOut"',
};

const TYPE_CLAUSE = {
  provision: 'WorkflowType = "provisionNode"',
  decommission: 'WorkflowType = "decommissionNode"',
  any: 'NodeId IS NOT NULL',
} as const;

/**
 * The visibility query for the filters. Every value was validated against a
 * strict pattern (args.ts), so none can close the quotes.
 */
export function listQuery(
  flags: Pick<Flags, 'type' | 'segment' | 'state' | 'step' | 'failed-step' | 'error-type' | 'node'>,
): string {
  const clauses: string[] = [TYPE_CLAUSE[flags.type]];
  if (flags.node) clauses.push(`NodeId = "${flags.node}"`);
  if (flags.segment) clauses.push(`Segment = "${flags.segment}"`);
  if (flags.step) clauses.push(`BootstrapStep = "${flags.step}"`);
  if (flags['failed-step']) clauses.push(`FailedStep = "${flags['failed-step']}"`);
  if (flags['error-type']) clauses.push(`ErrorType = "${flags['error-type']}"`);
  if (flags.state) clauses.push(STATE_CLAUSE[flags.state]);
  return clauses.join(' AND ');
}

export interface ListedRun {
  nodeId: string | null;
  segment: string | null;
  workflowType: string;
  workflowId: string;
  runId: string;
  status: string;
  bootstrapStep: string | null;
  failedStep: string | null;
  errorType: string | null;
  startTime: string;
  closeTime: string | null;
}

export async function list(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const query = listQuery(ctx.flags);
  const limit = ctx.flags.limit ?? 100;
  const runs: ListedRun[] = [];
  for await (const wf of t.client.workflow.list({ query, pageSize: Math.min(limit, 1000) })) {
    const sa = wf.typedSearchAttributes;
    runs.push({
      nodeId: sa.get(NodeIdKey) ?? null,
      segment: sa.get(SegmentKey) ?? null,
      workflowType: wf.type,
      workflowId: wf.workflowId,
      runId: wf.runId,
      status: wf.status.name,
      bootstrapStep: sa.get(BootstrapStepKey) ?? null,
      failedStep: sa.get(FailedStepKey) ?? null,
      errorType: sa.get(ErrorTypeKey) ?? null,
      startTime: wf.startTime.toISOString(),
      closeTime: wf.closeTime?.toISOString() ?? null,
    });
    if (runs.length >= limit) break;
  }
  const human = runs.length
    ? [
        row(['NODE', 'SEGMENT', 'STATUS', 'STEP', 'FAILED STEP', 'ERROR', 'STARTED', 'RUN']),
        ...runs.map((r) =>
          row([
            r.nodeId ?? '-',
            r.segment ?? '-',
            heldOr(r),
            r.bootstrapStep ?? '-',
            r.failedStep ?? '-',
            r.errorType ?? '-',
            r.startTime.slice(0, 19),
            r.runId,
          ]),
        ),
      ]
    : [`no runs match: ${query}`];
  return emit(ctx, EXIT.OK, { query, count: runs.length, runs }, human);
}

function heldOr(r: ListedRun): string {
  return r.status === 'RUNNING' && r.failedStep ? 'HELD' : r.status;
}

const WIDTHS = [24, 12, 11, 16, 16, 22, 20, 36];
function row(cells: string[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(WIDTHS[i] ?? 12))).join(' ');
}
