/**
 * `nodeboot maintain <node> [--wait] [--input file]`: one check-and-repair of
 * a provisioned node now (maintainNode, `maintain/<nodeId>`), with the input of
 * the node's latest provisioning run. With --wait: exit 0 when the node ends
 * healthy, 11 when it ends degraded or broken, 4 when the run holds for an
 * operator (a security finding, a repair that failed); without: 0 once started.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { describeLinks } from '../../../common/health.js';
import { maintainStatusQuery, type MaintainResult, type MaintainStatus } from '../../../common/maintain.js';
import type { ProvisionInputJson } from '../../../common/input.js';
import { startMaintain } from '../../maintain.js';
import { rootFailureType } from '../../provision.js';
import { emit, note, timeoutMs, type Context } from '../context.js';
import { oneLine } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { validateForStart } from '../input.js';
import { QUERY_TIMEOUT_MS } from '../runs.js';
import { assertSameNode, inputOf, provisionedNode } from '../provisioned.js';

const POLL_MS = 1_000;

export async function maintain(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  // With --input the caller names the input; without, it is the node's latest (completed) provisioning run's.
  const { raw, source } = ctx.flags.input
    ? await inputOf(ctx, t, null)
    : await provisionedNode(ctx, t, nodeId, 'there is nothing to maintain');
  assertSameNode(source, validateForStart(raw, source).nodeId, nodeId);

  const handle = await startMaintain(t.client, raw as ProvisionInputJson, { taskQueue: t.config.TEMPORAL_TASK_QUEUE });
  const runId = (await handle.describe()).runId;
  note(ctx, `maintaining ${nodeId}: ${handle.workflowId} run ${runId} (input from ${source})`);
  const base = { nodeId, workflowId: handle.workflowId, runId };
  if (!ctx.flags.wait)
    return emit(ctx, EXIT.OK, { ...base, state: 'started' }, [`${handle.workflowId} run ${runId}: started`]);

  const deadline = Date.now() + (timeoutMs(ctx.flags) ?? Number.POSITIVE_INFINITY);
  const end = await untilDoneOrHeld(handle, deadline);
  if (end.kind === 'timeout')
    return emit(ctx, EXIT.RUNNING, { ...base, state: 'running' }, [
      `${handle.workflowId} run ${runId}: still running after --timeout`,
    ]);
  if (end.kind === 'failed') {
    const type = rootFailureType(end.error) ?? 'Error';
    return emit(
      ctx,
      EXIT.ERROR,
      { ...base, state: 'failed', failure: { type, message: oneLine(end.error.cause ?? end.error) } },
      [`maintain run of ${nodeId} failed (${type}): ${oneLine(end.error.cause ?? end.error)}`],
    );
  }
  if (end.kind === 'held') {
    const h = end.status.heldFor!;
    return emit(
      ctx,
      EXIT.HELD,
      {
        ...base,
        state: 'held',
        heldFor: h,
        health: end.status.health,
        lastCheck: end.status.lastCheck,
        rounds: end.status.rounds,
      },
      [
        `${nodeId} is held (${h.reason}) at ${h.step}: ${h.detail}`,
        `hint: investigate, then \`temporal workflow update execute --workflow-id ${handle.workflowId} --name decide --input '{"action":"retry"}'\` to check and repair again ('compensate': stop, change nothing)`,
      ],
    );
  }
  const r = end.result;
  const lines = [
    `${nodeId}: ${r.health} after ${r.rounds.length} repair round(s)`,
    ...r.rounds.map(
      (x) =>
        `  round ${x.round}: ${x.broken.join(', ')} → re-ran ${x.steps.join(', ')}${x.failedStep ? ` (${x.failedStep} failed: ${x.errorType})` : ''}`,
    ),
    ...describeLinks(r.lastCheck).map((l) => `  ${l}`),
  ];
  return emit(ctx, r.health === 'healthy' ? EXIT.OK : EXIT.UNHEALTHY, { ...base, state: 'done', result: r }, lines);
}

type End =
  | { kind: 'done'; result: MaintainResult }
  | { kind: 'held'; status: MaintainStatus }
  | { kind: 'failed'; error: WorkflowFailedError }
  | { kind: 'timeout' };

/** Follow the run until it returns, holds or `deadline` passes. */
async function untilDoneOrHeld(handle: WorkflowHandle, deadline: number): Promise<End> {
  const result = handle.result().then(
    (r: MaintainResult): End => ({ kind: 'done', result: r }),
    (err: unknown): End => {
      if (err instanceof WorkflowFailedError) return { kind: 'failed', error: err };
      throw err;
    },
  );
  for (;;) {
    const polled = await Promise.race([result, sleep(POLL_MS).then(() => undefined)]);
    if (polled) return polled;
    const status = await Promise.race([
      handle.query(maintainStatusQuery).catch(() => null),
      sleep(QUERY_TIMEOUT_MS).then(() => null),
    ]);
    if (status?.state === 'held') return { kind: 'held', status };
    if (Date.now() >= deadline) return { kind: 'timeout' };
  }
}
