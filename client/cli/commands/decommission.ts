/**
 * `nodeboot decommission <node> [--input file]`: decommissionNode with the
 * node's last provisioning input. An open provisioning run is cancelled first
 * and its compensation awaited, so the two never run undos side by side.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError } from '@temporalio/client';
import type { ProvisionInputJson } from '../../../common/input.js';
import { PROVISIONED_NODE_RULES } from '../../../common/validate.js';
import type { DecommissionResult } from '../../../common/definitions.js';
import { rootFailureType, startDecommission } from '../../provision.js';
import { emit, note, timeoutMs, type Context } from '../context.js';
import { CliError, oneLine } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { readJsonInput, validateForStart } from '../input.js';
import { suggestionFor } from '../suggestions.js';
import { findRun, runInput, type FoundRun } from '../runs.js';
import { followWithProgress } from './start.js';

export async function decommission(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  const deadline = Date.now() + (timeoutMs(ctx.flags) ?? Number.POSITIVE_INFINITY);
  let last: FoundRun | null = null;
  try {
    last = await findRun(t, nodeId);
  } catch (err) {
    if (!(err instanceof CliError && err.exitCode === EXIT.NOT_FOUND) || !ctx.flags.input) throw err;
  }

  let raw: unknown;
  if (ctx.flags.input) raw = await readJsonInput(ctx.flags.input, ctx.stdin);
  else raw = await runInput(t, last!.desc.workflowId, last!.desc.runId);
  // A node provisioned when a `port` alone named the built-in workload must still come off.
  const input = validateForStart(
    raw,
    ctx.flags.input ?? `the input of run ${last!.desc.runId}`,
    PROVISIONED_NODE_RULES,
  );
  if (input.nodeId !== nodeId) {
    throw new CliError(EXIT.INVALID, `the input is for node "${input.nodeId}", not "${nodeId}"`, {
      code: 'INVALID_INPUT',
      fields: [{ path: 'nodeId', message: `must be "${nodeId}"` }],
    });
  }

  let cancelledRun: string | null = null;
  if (last && last.desc.status.name === 'RUNNING') {
    await last.handle.cancel();
    cancelledRun = last.desc.runId;
    note(
      ctx,
      `cancelled the open provisioning run ${last.desc.runId}; waiting for its compensation before decommissioning`,
    );
    const view = await followWithProgress(ctx, t, nodeId, last.desc.runId, { stopWhenHeld: false });
    if (view.execution === 'RUNNING') {
      throw new CliError(
        EXIT.RUNNING,
        `the provisioning run ${view.runId} is still compensating after --timeout: decommission not started`,
        {
          suggestion: `\`nodeboot watch ${nodeId}\`, then decommission again`,
        },
      );
    }
  }

  const handle = await startDecommission(t.client, raw as ProvisionInputJson, {
    taskQueue: t.config.TEMPORAL_TASK_QUEUE,
  });
  const runId = (await handle.describe()).runId;
  note(ctx, `decommissioning ${nodeId}: ${handle.workflowId} run ${runId}`);
  const base = { nodeId, cancelledProvisionRun: cancelledRun, workflowId: handle.workflowId, runId };
  if (!ctx.flags.wait)
    return emit(ctx, EXIT.OK, { ...base, state: 'started' }, [`${handle.workflowId} run ${runId}: started`]);

  let result: DecommissionResult | undefined;
  try {
    result = await withTimeout(handle.result(), deadline);
  } catch (err) {
    if (err instanceof TimeoutError) {
      return emit(ctx, EXIT.RUNNING, { ...base, state: 'running' }, [
        `${handle.workflowId} run ${runId}: still running after --timeout`,
      ]);
    }
    if (!(err instanceof WorkflowFailedError)) throw err;
    const type = rootFailureType(err) ?? 'Error';
    const failure = { type, message: oneLine(err.cause ?? err), suggestion: suggestionFor(type, nodeId) };
    return emit(ctx, EXIT.INCOMPLETE, { ...base, state: 'failed', failure }, [
      `decommission of ${nodeId} left something behind (${type}): ${failure.message}`,
      `hint: ${failure.suggestion}; decommission is safe to run again`,
    ]);
  }
  const removed = Object.entries(result.removed).map(
    ([step, what]) => `  ${step}: ${what?.length ? what.join(', ') : 'nothing there'}`,
  );
  return emit(ctx, EXIT.OK, { ...base, state: 'succeeded', result }, [
    `decommissioned ${nodeId} (${handle.workflowId} run ${runId})`,
    ...removed,
  ]);
}

class TimeoutError extends Error {}

async function withTimeout<T>(p: Promise<T>, deadline: number): Promise<T> {
  if (!Number.isFinite(deadline)) return p;
  const ac = new AbortController();
  try {
    return await Promise.race([
      p,
      sleep(Math.max(0, deadline - Date.now()), undefined, { signal: ac.signal }).then(() => {
        throw new TimeoutError('timeout');
      }),
    ]);
  } finally {
    ac.abort();
  }
}
