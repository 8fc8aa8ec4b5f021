// The JSON-line log formatter and the activity log context: one parseable line
// per entry, correlation fields at the top level, no secrets.
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { formatLogLine, jsonLineLogger, nodeIdOf } from '../../workers/logging.js';

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
    expect(Object.keys(parsed).slice(0, 8)).toEqual(['time', 'level', 'msg', 'workflowId', 'runId', 'nodeId', 'step', 'attempt']);
  });

  it('keeps a workflow logger runId as is and omits fields that are absent', () => {
    const parsed = JSON.parse(formatLogLine({ level: 'WARN', message: 'x', timestampNanos: T, meta: { workflowId: 'w', runId: 'r', nodeId: undefined } }));
    expect(parsed).toEqual({ time: '2025-11-23T11:40:00.123Z', level: 'WARN', msg: 'x', workflowId: 'w', runId: 'r' });
  });

  it('serializes errors with their failure type and bigints as strings', () => {
    const err = ApplicationFailure.create({ type: 'PoolExhausted', message: 'no free address in lab', nonRetryable: true });
    const parsed = JSON.parse(formatLogLine({ level: 'WARN', message: 'step failed', timestampNanos: T, meta: { error: err, errorType: 'PoolExhausted', big: 10n } }));
    expect(parsed.error).toMatchObject({ name: 'ApplicationFailure', message: 'no free address in lab', type: 'PoolExhausted', nonRetryable: true });
    expect(parsed.errorType).toBe('PoolExhausted');
    expect(parsed.big).toBe('10');
  });

  it('redacts key material and tokens in the message and in meta', () => {
    const key = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
    const token = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
    const line = formatLogLine({ level: 'ERROR', message: `wg said ${key}`, timestampNanos: T, meta: { detail: { output: `token ${token}` }, error: new Error(`join ${token}`) } });
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
