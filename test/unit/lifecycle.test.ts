// The one rule that says which state a node's life is in (common/lifecycle.ts).
import { describe, expect, it } from 'vitest';
import { lifecycleState, needsNewProvisionRun, type RunFacts, type RunStatusName } from '../../common/lifecycle.js';

const run = (
  kind: 'provision' | 'decommission',
  status: RunStatusName,
  start: number,
  close: number | null,
): RunFacts => ({
  workflowId: `${kind}/n1`,
  runId: `${kind}-${start}`,
  status,
  startTime: new Date(Date.UTC(2026, 0, 1, 0, start)).toISOString(),
  closeTime: close === null ? null : new Date(Date.UTC(2026, 0, 1, 0, close)).toISOString(),
});

describe('lifecycleState', () => {
  it('no run at all: new', () => {
    expect(lifecycleState(null, null)).toBe('new');
  });

  it('follows the provision run while no decommission ran after it', () => {
    expect(lifecycleState(run('provision', 'RUNNING', 1, null), null)).toBe('provisioning');
    expect(lifecycleState(run('provision', 'COMPLETED', 1, 2), null)).toBe('provisioned');
    for (const s of ['FAILED', 'CANCELLED', 'TERMINATED', 'TIMED_OUT'] as const)
      expect(lifecycleState(run('provision', s, 1, 2), null)).toBe('failed');
    // A decommission that closed before the provision run: the node was provisioned again since.
    expect(lifecycleState(run('provision', 'COMPLETED', 5, 6), run('decommission', 'COMPLETED', 3, 4))).toBe(
      'provisioned',
    );
    expect(lifecycleState(run('provision', 'RUNNING', 5, null), run('decommission', 'COMPLETED', 3, 4))).toBe(
      'provisioning',
    );
  });

  it('a decommission that closed after the provision run decides', () => {
    expect(lifecycleState(run('provision', 'COMPLETED', 1, 2), run('decommission', 'COMPLETED', 3, 4))).toBe(
      'decommissioned',
    );
    expect(lifecycleState(run('provision', 'FAILED', 1, 2), run('decommission', 'COMPLETED', 3, 4))).toBe(
      'decommissioned',
    );
    expect(lifecycleState(null, run('decommission', 'COMPLETED', 3, 4))).toBe('decommissioned');
    expect(lifecycleState(run('provision', 'COMPLETED', 1, 2), run('decommission', 'FAILED', 3, 4))).toBe(
      'decommission-failed',
    );
    expect(lifecycleState(run('provision', 'COMPLETED', 1, 2), run('decommission', 'TERMINATED', 3, 4))).toBe(
      'decommission-failed',
    );
  });

  it('an open decommission wins, even over an open provision run', () => {
    expect(lifecycleState(run('provision', 'COMPLETED', 1, 2), run('decommission', 'RUNNING', 3, null))).toBe(
      'decommissioning',
    );
    expect(lifecycleState(run('provision', 'RUNNING', 1, null), run('decommission', 'RUNNING', 3, null))).toBe(
      'decommissioning',
    );
  });

  it('only a decommissioned node needs a new run despite a completed one', () => {
    expect(needsNewProvisionRun('decommissioned')).toBe(true);
    expect(needsNewProvisionRun('decommission-failed')).toBe(true);
    for (const s of ['new', 'provisioning', 'provisioned', 'failed', 'decommissioning'] as const)
      expect(needsNewProvisionRun(s)).toBe(false);
  });
});
