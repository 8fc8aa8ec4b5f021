/**
 * Operator decisions and cancellation:
 *   approve / retry <node>   held run: run the failed step again and continue
 *   compensate <node>        held run: undo everything and fail
 *   cancel <node>            any open run: it compensates and ends cancelled
 */
import { decideUpdate, type Decision } from '../../../common/definitions.js';
import { emit, note, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { findRun, hasPollers, viewRun, type RunView } from '../runs.js';
import { finalLines, followWithProgress } from './start.js';

/** How long a decision may wait for a worker to run the update. */
const DECIDE_TIMEOUT_MS = 30_000;

export async function decide(ctx: Context, action: Decision['action']): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  const { handle, desc } = await findRun(t, nodeId);
  if (desc.status.name !== 'RUNNING') {
    throw new CliError(
      EXIT.CONFLICT,
      `the latest run of ${nodeId} is ${desc.status.name.toLowerCase()}, not held: there is nothing to decide`,
      {
        suggestion: `\`nodeboot status ${nodeId}\`; a failed node is rerun with \`nodeboot rerun ${nodeId}\``,
      },
    );
  }
  if (!(await hasPollers(t, desc.taskQueue))) {
    throw new CliError(
      EXIT.ERROR,
      `no worker is polling task queue ${desc.taskQueue}: the decision would wait for one`,
      {
        code: 'NO_WORKER',
        suggestion: 'start a worker (`npm run worker`) on that task queue, then decide again',
      },
    );
  }
  // The update's validator refuses (exit 7) unless the run is held; nothing enters history then.
  const ack = await t.client.withDeadline(Date.now() + DECIDE_TIMEOUT_MS, () =>
    handle.executeUpdate(decideUpdate, { args: [{ action }] }),
  );
  note(
    ctx,
    `${action === 'retry' ? 'approved: retrying' : 'compensating after'} ${ack.step} on ${desc.workflowId} run ${desc.runId}`,
  );
  if (!ctx.flags.wait) {
    const view = await viewRun(t, nodeId, desc.runId);
    return emit(ctx, EXIT.OK, { decision: ack, run: view }, [
      `${ack.action} ${ack.step}: accepted`,
      `${view.workflowId} run ${view.runId}: ${view.outcome}`,
    ]);
  }
  const view = await followWithProgress(ctx, t, nodeId, desc.runId, { stopWhenHeld: action === 'retry' });
  return emit(ctx, undoCode(action === 'compensate', view), { decision: ack, run: view }, finalLines(ctx, view));
}

export async function cancel(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  const { handle, desc } = await findRun(t, nodeId);
  if (desc.status.name === 'COMPLETED') {
    throw new CliError(EXIT.CONFLICT, `${nodeId} is provisioned: there is no run to cancel`, {
      suggestion: `\`nodeboot decommission ${nodeId}\` removes it`,
    });
  }
  if (desc.status.name !== 'RUNNING') {
    // Idempotent: the run already ended (failed, cancelled, terminated).
    const view = await viewRun(t, nodeId, desc.runId);
    return emit(ctx, EXIT.OK, { cancelRequested: false, run: view }, [
      `nothing to cancel: the latest run already ended (${view.outcome})`,
    ]);
  }
  await handle.cancel();
  note(
    ctx,
    `cancellation requested for ${desc.workflowId} run ${desc.runId}: it compensates (undoes its finished steps) and ends cancelled`,
  );
  const view = ctx.flags.wait
    ? await followWithProgress(ctx, t, nodeId, desc.runId, { stopWhenHeld: false })
    : await viewRun(t, nodeId, desc.runId);
  const exitCode = ctx.flags.wait ? undoCode(true, view) : EXIT.OK;
  return emit(
    ctx,
    exitCode,
    { cancelRequested: true, run: view },
    ctx.flags.wait
      ? finalLines(ctx, view)
      : [`${view.workflowId} run ${view.runId}: cancel requested (${view.outcome})`],
  );
}

/**
 * Exit code after a run was asked to undo itself: 0 when everything was undone
 * (cancelled / compensated), 9 when something was left behind, else the
 * outcome's own code (it finished or was held before the request landed).
 */
function undoCode(undoWanted: boolean, view: RunView): ExitCode {
  if (!undoWanted) return view.exitCode;
  if (view.outcome === 'cancelled' || view.outcome === 'compensated') return EXIT.OK;
  if (view.outcome === 'failed') return EXIT.INCOMPLETE;
  return view.exitCode;
}
