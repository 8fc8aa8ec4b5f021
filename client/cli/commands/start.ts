/** `nodeboot start <input.json|->`: validate, start or attach, optionally follow to the end. */
import { ProvisionInput, type ProvisionInputJson } from '../../../common/input.js';
import { needsNewProvisionRun } from '../../../common/lifecycle.js';
import { startProvisioning } from '../../provision.js';
import { emit, note, sameJson, timeoutMs, type Context } from '../context.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { validateForStart, readJsonInput } from '../input.js';
import { ProgressPrinter, renderStatus } from '../render.js';
import { findRun, follow, runInput, viewRun, type RunView, type Temporal } from '../runs.js';

export async function start(ctx: Context): Promise<ExitCode> {
  const path = ctx.cmd.target!;
  const raw = await readJsonInput(path, ctx.stdin);
  const input = validateForStart(raw, path === '-' ? 'stdin' : path);
  const t = await ctx.temporal();

  const { started, lifecycle } = await startProvisioning(t.client, raw as ProvisionInputJson, {
    taskQueue: t.config.TEMPORAL_TASK_QUEUE,
  });
  const { desc } = await findRun(t, input.nodeId);
  let inputDiffers = false;
  const after = needsNewProvisionRun(lifecycle.state) ? lifecycle.decommission : null;
  if (started) {
    note(
      ctx,
      `started ${desc.workflowId} run ${desc.runId} on task queue ${desc.taskQueue}${after ? ` (a new run: the node was decommissioned by ${after.workflowId} run ${after.runId})` : ''}`,
    );
  } else {
    inputDiffers = !(await sameInputAs(t, desc.workflowId, desc.runId, raw));
    note(
      ctx,
      `attached to the existing run ${desc.workflowId} run ${desc.runId} (${desc.status.name.toLowerCase()}): a node is never bootstrapped twice`,
    );
    if (inputDiffers)
      note(
        ctx,
        `warning: that run was started with a different input; once it ends, \`nodeboot rerun ${input.nodeId} --input ${path}\` applies this one`,
      );
  }

  const view = ctx.flags.wait
    ? await followWithProgress(ctx, t, input.nodeId, desc.runId)
    : await viewRun(t, input.nodeId, desc.runId);
  // Without --wait, a run that is under way is what was asked for.
  const exitCode =
    ctx.flags.wait || (view.outcome !== 'running' && view.outcome !== 'compensating') ? view.exitCode : EXIT.OK;
  return emit(
    ctx,
    exitCode,
    { started, attached: !started, inputDiffers, nodeStateBefore: lifecycle.state, run: view },
    ctx.flags.wait
      ? finalLines(ctx, view)
      : [
          `${view.workflowId} run ${view.runId}: ${view.outcome}`,
          ...(view.next.length ? [`next: ${view.next.join('  |  ')}`] : []),
        ],
  );
}

/** Human lines after following a run: the final status block, unless the live block on this terminal already shows it. */
export function finalLines(ctx: Context, view: RunView): string[] {
  return ctx.io.isTTY('err') && ctx.io.isTTY('out') ? [] : renderStatus(view);
}

/** Follow a run to its end (or hold), printing progress on stderr: the CI log gets every step. */
export function followWithProgress(
  ctx: Context,
  t: Temporal,
  nodeId: string,
  runId: string,
  opts: { stopWhenHeld?: boolean } = {},
): Promise<RunView> {
  const printer = new ProgressPrinter(ctx.io, 'err', { json: false });
  return follow(t, nodeId, {
    runId,
    intervalMs: ctx.flags.interval,
    timeoutMs: timeoutMs(ctx.flags),
    stopWhenHeld: opts.stopWhenHeld ?? true,
    onView: (v, prev) => printer.update(v, prev),
  });
}

async function sameInputAs(t: Temporal, workflowId: string, runId: string, raw: unknown): Promise<boolean> {
  const existing = ProvisionInput.safeParse(await runInput(t, workflowId, runId));
  const given = ProvisionInput.safeParse(raw);
  return existing.success && given.success && sameJson(existing.data, given.data);
}
