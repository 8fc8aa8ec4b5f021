/**
 * `nodeboot repair <node> [--input fixed.json]`: a provisioned node lost
 * something (its agent was evicted and cannot re-attest, a workload died, a
 * reboot wiped its run state): a new provision run with the last run's input
 * redoes only what is missing, because every step first finds what still
 * stands. For a join-token agent step 4 mints a fresh token (one is never
 * reused). The repair holds on a failure instead of undoing a node that was
 * working until now.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { startRepair } from '../../provision.js';
import { emit, note, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { validateForStart } from '../input.js';
import { viewRun } from '../runs.js';
import { finalLines, followWithProgress } from './start.js';
import { assertSameNode, provisionedNode } from '../provisioned.js';

export async function repair(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  const { last, raw, source } = await provisionedNode(ctx, t, nodeId, 'there is nothing to repair');
  assertSameNode(source, validateForStart(raw, source).nodeId, nodeId);
  let runId: string;
  try {
    const handle = await startRepair(t.client, raw as never, { taskQueue: t.config.TEMPORAL_TASK_QUEUE });
    runId = handle.firstExecutionRunId;
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(EXIT.CONFLICT, `${nodeId} has a run in progress: a repair would race it`, {
        suggestion: `\`nodeboot watch ${nodeId}\` to follow it`,
      });
    }
    throw err;
  }
  note(
    ctx,
    `repair: started provision/${nodeId} run ${runId} (input from ${ctx.flags.input ?? 'the last run'}); it holds on a failure`,
  );
  const view = ctx.flags.wait ? await followWithProgress(ctx, t, nodeId, runId) : await viewRun(t, nodeId, runId);
  const exitCode =
    ctx.flags.wait || (view.outcome !== 'running' && view.outcome !== 'compensating') ? view.exitCode : EXIT.OK;
  return emit(
    ctx,
    exitCode,
    { started: true, repairOf: { runId: last.desc.runId }, run: view },
    ctx.flags.wait ? finalLines(ctx, view) : [`${view.workflowId} run ${view.runId}: ${view.outcome}`],
  );
}
