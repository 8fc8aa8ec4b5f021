// The JSON-line log formatter and the activity log context: one parseable line
// per entry, correlation fields at the top level, no secrets.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { failure } from '../../common/errors.js';
import { activityLoggingInterceptor, formatLogLine, jsonLineLogger, nodeIdOf } from '../../workers/logging.js';

const T = 1_763_898_000_123_000_000n; // 2025-11-23T11:40:00.123Z in ns

describe('formatLogLine', () => {
  it('writes one JSON line with time, level, msg and the correlation fields first', () => {
    const line = formatLogLine({
      level: 'INFO',
      message: 'step started',
      timestampNanos: T,
      meta: {
        sdkComponent: 'activity',
        activityType: 'issueOverlayKey',
        workflowId: 'provision/edge-01',
        workflowRunId: 'run-1',
        nodeId: 'edge-01',
        step: 'issueOverlayKey',
        attempt: 2,
        taskToken: 'AAAA',
      },
    });
    expect(line).not.toContain('\n');
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(parsed).toEqual({
      time: '2025-11-23T11:40:00.123Z',
      level: 'INFO',
      msg: 'step started',
      workflowId: 'provision/edge-01',
      runId: 'run-1',
      nodeId: 'edge-01',
      step: 'issueOverlayKey',
      attempt: 2,
      sdkComponent: 'activity',
      activityType: 'issueOverlayKey',
    });
    expect(Object.keys(parsed).slice(0, 8)).toEqual([
      'time',
      'level',
      'msg',
      'workflowId',
      'runId',
      'nodeId',
      'step',
      'attempt',
    ]);
  });

  it('keeps a workflow logger runId as is and omits fields that are absent', () => {
    const parsed = JSON.parse(
      formatLogLine({
        level: 'WARN',
        message: 'x',
        timestampNanos: T,
        meta: { workflowId: 'w', runId: 'r', nodeId: undefined },
      }),
    );
    expect(parsed).toEqual({ time: '2025-11-23T11:40:00.123Z', level: 'WARN', msg: 'x', workflowId: 'w', runId: 'r' });
  });

  it('serializes errors with their failure type and bigints as strings', () => {
    const err = ApplicationFailure.create({
      type: 'PoolExhausted',
      message: 'no free address in lab',
      nonRetryable: true,
    });
    const parsed = JSON.parse(
      formatLogLine({
        level: 'WARN',
        message: 'step failed',
        timestampNanos: T,
        meta: { error: err, errorType: 'PoolExhausted', big: 10n },
      }),
    );
    expect(parsed.error).toMatchObject({
      name: 'ApplicationFailure',
      message: 'no free address in lab',
      type: 'PoolExhausted',
      nonRetryable: true,
    });
    expect(parsed.errorType).toBe('PoolExhausted');
    expect(parsed.big).toBe('10');
  });

  it('redacts key material and tokens in the message and in meta', () => {
    const key = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
    const token = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
    const line = formatLogLine({
      level: 'ERROR',
      message: `wg said ${key}`,
      timestampNanos: T,
      meta: { detail: { output: `token ${token}` }, error: new Error(`join ${token}`) },
    });
    expect(line).not.toContain(key);
    expect(line).not.toContain(token);
    expect(line).toContain('[redacted key]');
    expect(line).toContain('[redacted token]');
  });
});

describe('jsonLineLogger', () => {
  it('writes formatted lines at or above its level only', () => {
    const lines: string[] = [];
    const logger = jsonLineLogger('INFO', (l) => lines.push(l));
    logger.debug('hidden');
    logger.info('shown', { nodeId: 'edge-01' });
    logger.error('also shown');
    expect(lines.map((l) => JSON.parse(l) as { msg: string; level: string; nodeId?: string })).toMatchObject([
      { msg: 'shown', level: 'INFO', nodeId: 'edge-01' },
      { msg: 'also shown', level: 'ERROR' },
    ]);
  });
});

describe('nodeIdOf', () => {
  it('finds the node id in a step request, an undo request and a ledger event', () => {
    expect(nodeIdOf([{ input: { nodeId: 'edge-01' }, run: {} }])).toBe('edge-01');
    expect(nodeIdOf([{ input: { nodeId: 'edge-02' }, reason: 'failure' }])).toBe('edge-02');
    expect(nodeIdOf([{ nodeId: 'edge-03', step: 'workflow', kind: 'started' }])).toBe('edge-03');
    expect(nodeIdOf([])).toBeUndefined();
    expect(nodeIdOf([{ input: { nodeId: 7 } }])).toBeUndefined();
  });
});

describe('activityLoggingInterceptor', () => {
  const info = {
    activityType: 'issueOverlayKey',
    attempt: 3,
    workflowExecution: { workflowId: 'provision/edge-01', runId: 'run-9' },
  };
  const req = { input: { nodeId: 'edge-01' }, run: { workflowId: 'provision/edge-01', runId: 'run-9' } };

  function runWith(activityType: string, fn: () => Promise<unknown>) {
    const lines: string[] = [];
    const mock = new MockActivityEnvironment(
      { ...info, activityType },
      { logger: jsonLineLogger('DEBUG', (l) => lines.push(l)), interceptors: [activityLoggingInterceptor()] },
    );
    const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    return mock.run(fn, req).then(
      () => ({ ok: true, lines: parsed() }),
      (err: unknown) => ({ ok: false, err, lines: parsed() }),
    );
  }

  it('puts workflowId, runId, nodeId, step and attempt on every line of a step, plus one line per outcome', async () => {
    const { ok, lines } = await runWith('issueOverlayKey', async () => {
      Context.current().log.info('allocating');
    });
    expect(ok).toBe(true);
    const ours = lines.filter((l) => ['step started', 'allocating', 'step succeeded'].includes(l.msg as string));
    expect(ours.map((l) => l.msg)).toEqual(['step started', 'allocating', 'step succeeded']);
    for (const l of ours)
      expect(l).toMatchObject({
        workflowId: 'provision/edge-01',
        runId: 'run-9',
        nodeId: 'edge-01',
        step: 'issueOverlayKey',
        attempt: 3,
      });
    expect(ours[2]!.durationMs).toBeTypeOf('number');
  });

  it('logs a failed step with its error type, and names the undone step for a compensation', async () => {
    const failed = await runWith('startSpireAgent', async () => {
      throw failure('AttestationRejected', 'server refused the agent');
    });
    expect(failed.ok).toBe(false);
    expect(failed.lines.find((l) => l.msg === 'step failed')).toMatchObject({
      level: 'WARN',
      step: 'startSpireAgent',
      nodeId: 'edge-01',
      errorType: 'AttestationRejected',
    });

    const undo = await runWith('undoStartSpireAgent', async () => undefined);
    expect(undo.lines.find((l) => l.msg === 'compensation succeeded')).toMatchObject({
      step: 'startSpireAgent',
      compensation: true,
      nodeId: 'edge-01',
    });
  });
});
