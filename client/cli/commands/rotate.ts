/**
 * `nodeboot rotate <node> [--wait] [--input file] [--handshake-timeout SEC]`:
 * a new WireGuard key for a provisioned node (rotateOverlayKey, workflow
 * rotate/<nodeId>) with its last provisioning input. With --wait: exit 0 when
 * the node runs on the new key; 3 when the rotation failed and was rolled back
 * (the node is on its old key, tunnel verified); 9 when the rollback failed too.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { ProvisionInputJson } from '../../../common/input.js';
import { checkRotateRequest } from '../../../common/rotation.js';
import { rootFailureType } from '../../provision.js';
import { startRotation } from '../../rotation.js';
import { emit, note, timeoutMs, type Context } from '../context.js';
import { CliError, oneLine } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { suggestionFor } from '../suggestions.js';
import { assertSameNode, provisionedNode } from '../provisioned.js';

export async function rotate(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  const { raw, source } = await provisionedNode(ctx, t, nodeId, 'there is no key to rotate');
  const request = {
    input: raw as ProvisionInputJson,
    ...(ctx.flags['handshake-timeout'] !== undefined
      ? { handshakeTimeoutSeconds: ctx.flags['handshake-timeout'] }
      : {}),
  };
  const checked = checkRotateRequest(request);
  if (!checked.ok) {
    throw new CliError(EXIT.INVALID, `cannot rotate with ${source}: nothing was started`, {
      code: 'INVALID_INPUT',
      fields: checked.problems.map((p) => ({
        path: p.slice(0, Math.max(0, p.indexOf(':'))) || '(input)',
        message: p.slice(p.indexOf(':') + 1).trim(),
      })),
    });
  }
  assertSameNode(source, checked.value.input.nodeId, nodeId);

  const { handle, started } = await startRotation(t.client, request, { taskQueue: t.config.TEMPORAL_TASK_QUEUE });
  const runId = (await handle.describe()).runId;
  note(
    ctx,
    `${started ? 'rotating' : 'attached to the open rotation of'} ${nodeId}: ${handle.workflowId} run ${runId}`,
  );
  const base = { nodeId, workflowId: handle.workflowId, runId, attached: !started };
  if (!ctx.flags.wait)
    return emit(ctx, EXIT.OK, { ...base, state: 'started' }, [`${handle.workflowId} run ${runId}: started`]);

  const deadline = Date.now() + (timeoutMs(ctx.flags) ?? Number.POSITIVE_INFINITY);
  const outcome = await Promise.race([
    handle.result().then(
      (receipt) => ({ receipt }),
      (error: unknown) => ({ error }),
    ),
    ...(Number.isFinite(deadline)
      ? [sleep(Math.max(0, deadline - Date.now())).then(() => ({ timedOut: true as const }))]
      : []),
  ]);
  if ('timedOut' in outcome)
    return emit(ctx, EXIT.RUNNING, { ...base, state: 'running' }, [
      `${handle.workflowId} run ${runId}: still running after --timeout`,
    ]);
  if ('receipt' in outcome) {
    const r = outcome.receipt;
    return emit(ctx, EXIT.OK, { ...base, state: 'rotated', receipt: r }, [
      `rotated the overlay key of ${nodeId}: ${r.previousFingerprint} -> ${r.fingerprint} (${handle.workflowId} run ${runId})`,
      `  handshakes: ${r.hubs.map((h) => `${h.name} ${h.handshakeAgeSeconds}s ago`).join(', ')}; probe ${r.probe.target} ${r.probe.connectMs} ms`,
    ]);
  }
  if (!(outcome.error instanceof WorkflowFailedError)) throw outcome.error;
  const type = rootFailureType(outcome.error) ?? 'Error';
  const cause = outcome.error.cause;
  const details =
    cause instanceof ApplicationFailure
      ? (cause.details?.[0] as { rolledBack?: boolean; stage?: string } | undefined)
      : undefined;
  const rolledBack = details?.rolledBack === true || /nothing was changed/.test(oneLine(cause ?? outcome.error));
  const failure = {
    type,
    stage: details?.stage ?? null,
    rolledBack,
    message: oneLine(cause ?? outcome.error),
    suggestion: suggestionFor(type, nodeId),
  };
  return emit(
    ctx,
    rolledBack ? EXIT.FAILED : EXIT.INCOMPLETE,
    { ...base, state: rolledBack ? 'rolled-back' : 'failed', failure },
    [`key rotation of ${nodeId} failed (${type}): ${failure.message}`, `hint: ${failure.suggestion}`],
  );
}
