/**
 * `nodeboot rerun <node> [--input fixed.json]`: a new run for a node whose last
 * run failed, was cancelled or terminated, or is held.
 *
 * Nothing finished is redone: every step first looks at what exists and
 * finishes from there (DESIGN.md), so the new run adopts the interface, key,
 * overlay address and peers a held run left in place. That is why a HELD run is
 * terminated, not cancelled: cancelling would compensate (undo) those steps.
 * The new run then owns them: it pushes each step's undo as it re-runs it.
 */
import type { ProvisionInputJson } from '../../../common/input.js';
import { assertNotDecommissioned, startProvisioning } from '../../provision.js';
import { emit, note, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { readJsonInput, validateForStart } from '../input.js';
import { findRun, runInput, viewRun } from '../runs.js';
import { finalLines, followWithProgress } from './start.js';

export const RERUN_TERMINATE_REASON =
  'superseded by nodeboot rerun: finished steps are kept for the new run (no compensation)';

export async function rerun(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  const last = await findRun(t, nodeId);
  const execution = last.desc.status.name;

  // After a decommission there is nothing to resume: a start provisions the node again.
  await assertNotDecommissioned(t.client, nodeId, 'there is nothing to rerun');
  if (execution === 'COMPLETED') {
    throw new CliError(EXIT.CONFLICT, `${nodeId} is provisioned (run ${last.desc.runId}): there is nothing to rerun`, {
      suggestion: `\`nodeboot decommission ${nodeId}\` first to provision it again from scratch`,
    });
  }
  let held = false;
  if (execution === 'RUNNING') {
    const current = await viewRun(t, nodeId, last.desc.runId, last);
    held = current.outcome === 'held';
    if (!held) {
      throw new CliError(EXIT.CONFLICT, `${nodeId} has a run in progress (${current.outcome}): a rerun would race it`, {
        suggestion: `\`nodeboot watch ${nodeId}\` to follow it, or \`nodeboot cancel ${nodeId}\` to stop (and compensate) it`,
      });
    }
  }

  // Validate the input before touching the held run: a bad file changes nothing.
  let raw: unknown;
  let inputFrom: 'file' | 'last-run';
  if (ctx.flags.input) {
    raw = await readJsonInput(ctx.flags.input, ctx.stdin);
    inputFrom = 'file';
  } else {
    raw = await runInput(t, last.desc.workflowId, last.desc.runId);
    inputFrom = 'last-run';
  }
  const source = inputFrom === 'file' ? ctx.flags.input! : `the input of run ${last.desc.runId}`;
  let input;
  try {
    input = validateForStart(raw, source);
  } catch (err) {
    if (inputFrom === 'last-run' && err instanceof CliError) {
      throw new CliError(err.exitCode, err.message, {
        ...err.opts,
        suggestion: `pass a fixed input: \`nodeboot rerun ${nodeId} --input fixed.json\``,
      });
    }
    throw err;
  }
  if (input.nodeId !== nodeId) {
    throw new CliError(EXIT.INVALID, `${source} is for node "${input.nodeId}", not "${nodeId}"`, {
      code: 'INVALID_INPUT',
      fields: [{ path: 'nodeId', message: `must be "${nodeId}"` }],
    });
  }

  if (held) {
    await last.handle.terminate(RERUN_TERMINATE_REASON);
    note(
      ctx,
      `terminated the held run ${last.desc.runId} without compensation: its finished steps stay for the new run`,
    );
  }
  const { started } = await startProvisioning(t.client, raw as ProvisionInputJson, {
    taskQueue: t.config.TEMPORAL_TASK_QUEUE,
  });
  const { desc } = await findRun(t, nodeId);
  note(
    ctx,
    started
      ? `rerun: started ${desc.workflowId} run ${desc.runId} (input from ${inputFrom === 'file' ? ctx.flags.input : 'the last run'})`
      : `someone started ${desc.runId} meanwhile: attached to it`,
  );

  const view = ctx.flags.wait
    ? await followWithProgress(ctx, t, nodeId, desc.runId)
    : await viewRun(t, nodeId, desc.runId);
  const exitCode =
    ctx.flags.wait || (view.outcome !== 'running' && view.outcome !== 'compensating') ? view.exitCode : EXIT.OK;
  return emit(
    ctx,
    exitCode,
    { started, rerunOf: { runId: last.desc.runId, execution, terminated: held }, inputFrom, run: view },
    ctx.flags.wait ? finalLines(ctx, view) : [`${view.workflowId} run ${view.runId}: ${view.outcome}`],
  );
}
