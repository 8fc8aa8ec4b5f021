// provisionFleet's rollout logic against the real dev server: the same
// provisionNode children as production, with in-memory node activities.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ApplicationFailure } from '@temporalio/client';
import {
  WorkflowFailedError,
  WorkflowNotFoundError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { FleetInputJson } from '../../common/fleet.js';
import { fleetWorkflowId, provisionWorkflowId } from '../../common/ids.js';
import { progressQuery, type FleetProgress, type FleetResult } from '../../common/definitions.js';
import { provisionFleet } from '../../workflows/index.js';
import { createFleetFakes, type FleetFakes } from '../fixtures/fleet-activities.js';
import { sampleInput } from '../fixtures/inputs.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import { nodeboot } from '../fixtures/nodeboot-cli.js';
import { connectTestEnv, eventually, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';

const workflowsPath = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));

let env: TemporalTestEnv;
let dir: string;
beforeAll(async () => {
  env = await connectTestEnv();
  dir = mkdtempSync(path.join(tmpdir(), 'nb-fleet-'));
});
afterAll(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A fleet of `n` sample nodes "<prefix>-n1".."<prefix>-n<n>"; node ids are unique per call. */
function fleetOf(n: number, overrides: Partial<FleetInputJson> = {}): FleetInputJson & { nodeIds: string[] } {
  const prefix = uniqueId('f');
  const { nodeId: _unused, ...defaults } = sampleInput('template', {
    retry: { initialIntervalMs: 10, maximumIntervalMs: 50, maximumAttempts: 1 },
  });
  const nodeIds = Array.from({ length: n }, (_, i) => `${prefix}-n${i + 1}`);
  return {
    fleetId: prefix,
    defaults,
    nodes: nodeIds.map((nodeId) => ({ nodeId, nodeDir: `/var/lib/node-bootstrap/${nodeId}` })),
    breaker: { checkIntervalMs: 60_000, recheckIntervalMs: 200 },
    ...overrides,
    nodeIds,
  };
}

function rollout<T>(
  fakes: FleetFakes,
  fleet: FleetInputJson & { nodeIds?: string[] },
  fn: (h: WorkflowHandleWithFirstExecutionRunId<typeof provisionFleet>) => Promise<T>,
): Promise<T> {
  const { nodeIds: _ids, ...input } = fleet;
  return withWorker(env, { workflowsPath, activities: fakes.activities }, async (taskQueue) => {
    const workflowId =
      typeof input.fleetId === 'string' && /^[a-z0-9-]+$/.test(input.fleetId)
        ? fleetWorkflowId(input.fleetId)
        : uniqueId('fleet-invalid');
    return fn(await env.client.workflow.start(provisionFleet, { taskQueue, workflowId, args: [input] }));
  });
}

async function runExists(workflowId: string): Promise<boolean> {
  try {
    await env.client.workflow.getHandle(workflowId).describe();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

const untilProgress = (h: WorkflowHandle, what: string, ok: (p: FleetProgress) => boolean) =>
  eventually(
    async () => {
      const p = await h.query(progressQuery);
      return ok(p) ? p : undefined;
    },
    { what, timeoutMs: 30_000, intervalMs: 50 },
  );

describe('provisionFleet', () => {
  it('never runs more nodes at once than the window, and provisions them all', async () => {
    const fakes = createFleetFakes({ stepDelayMs: 100 });
    const fleet = fleetOf(9, { window: 3 });
    const result: FleetResult = await rollout(fakes, fleet, (h) => h.result());

    expect(result.state).toBe('completed');
    expect(result.counts).toMatchObject({ succeeded: 9, failed: 0, pending: 0, running: 0, skipped: 0 });
    expect(fakes.maxInFlight()).toBe(3); // reached, never exceeded
    expect([...fakes.started].sort()).toEqual([...fleet.nodeIds].sort());
    expect(await env.client.workflow.getHandle(provisionWorkflowId(fleet.nodeIds[0]!)).result()).toMatchObject({
      nodeId: fleet.nodeIds[0],
    });
  });

  it('stops launching once the failure budget is spent, and reports failures by type', async () => {
    const fakes = createFleetFakes();
    const fleet = fleetOf(8, { window: 1, failureBudget: { maxFailed: 1 } });
    const bad = new Set([fleet.nodeIds[1], fleet.nodeIds[3], fleet.nodeIds[5]]);
    fakes.failNode = (nodeId) => (bad.has(nodeId) ? 'EntryRejected' : undefined);

    const result = await rollout(fakes, fleet, (h) => h.result());

    // n1 ok, n2 fails (1 = budget), n3 ok, n4 fails (2 > 1): nothing after n4 starts.
    expect(result.state).toBe('halted');
    expect(result.counts).toMatchObject({ succeeded: 2, failed: 2, pending: 4, running: 0 });
    expect(result.budget).toEqual({ failed: 2, allowed: 1, exhausted: true });
    expect(result.failuresByType).toEqual({ EntryRejected: 2 });
    expect(result.recentFailures.map((f) => [f.nodeId, f.step, f.type])).toEqual([
      [fleet.nodeIds[1], 'issueOverlayKey', 'EntryRejected'],
      [fleet.nodeIds[3], 'issueOverlayKey', 'EntryRejected'],
    ]);
    expect(fakes.started).toEqual(fleet.nodeIds.slice(0, 4));
    expect(await runExists(provisionWorkflowId(fleet.nodeIds[4]!))).toBe(false);
    // The failed nodes compensated like any provisionNode run.
    expect(fakes.fake.undos().map((c) => c.name)).toEqual([
      'undoIssueOverlayKey',
      'undoInstallOverlay',
      'undoIssueOverlayKey',
      'undoInstallOverlay',
    ]);
  });

  it('pauses while a shared dependency is down and resumes when it recovers', async () => {
    const fakes = createFleetFakes();
    fakes.dependencies.healthy = false;
    const fleet = fleetOf(4, { window: 2 });

    const result = await rollout(fakes, fleet, async (h) => {
      const paused = await untilProgress(h, 'breaker open', (p) => p.state === 'paused');
      expect(paused.breaker).toMatchObject({ open: true, opened: 1 });
      expect(paused.breaker.down.map((d) => d.name)).toEqual(['spire-server']);
      // Checks keep coming while paused, and nothing is launched.
      await eventually(async () => fakes.dependencies.checks >= 3, { what: 'rechecks' });
      expect(fakes.started).toEqual([]);
      expect((await h.query(progressQuery)).counts).toMatchObject({ pending: 4, running: 0 });

      fakes.dependencies.healthy = true;
      return h.result();
    });
    expect(result.state).toBe('completed');
    expect(result.counts).toMatchObject({ succeeded: 4, failed: 0 });
    expect(result.breaker).toMatchObject({ open: false, opened: 1, down: [] });
  });

  it('queues a node that failed because a dependency went down again, instead of charging the budget', async () => {
    const fakes = createFleetFakes();
    const fleet = fleetOf(4, { window: 1, failureBudget: { maxFailed: 0 } });
    const victim = fleet.nodeIds[1]!;
    // The SPIRE server "goes down" while the second node provisions.
    fakes.failNode = (nodeId, call) => {
      if (nodeId !== victim || call > 1) return undefined;
      fakes.dependencies.healthy = false;
      setTimeout(() => (fakes.dependencies.healthy = true), 1_000);
      return 'SpireServerUnavailable';
    };

    const result = await rollout(fakes, fleet, (h) => h.result());

    expect(result.state).toBe('completed');
    expect(result.counts).toMatchObject({ succeeded: 4, failed: 0, requeued: 1 });
    expect(result.breaker.opened).toBe(1);
    // The victim ran twice (first run compensated), and nothing launched while the breaker was open.
    expect(fakes.started).toEqual([fleet.nodeIds[0], victim, victim, fleet.nodeIds[2], fleet.nodeIds[3]]);
  });

  it('continues as new after nodesPerRun launches and carries its counts across runs', async () => {
    const fakes = createFleetFakes();
    const fleet = fleetOf(7, { window: 2, nodesPerRun: 3 });
    const bad = fleet.nodeIds[4]!;
    fakes.failNode = (nodeId) => (nodeId === bad ? 'PoolExhausted' : undefined);

    const { result, firstRunId } = await rollout(fakes, { ...fleet, failureBudget: { maxFailed: 5 } }, async (h) => ({
      firstRunId: h.firstExecutionRunId,
      result: await h.result(), // follows the continue-as-new chain
    }));

    expect(result.generation).toBe(3);
    expect(result.state).toBe('completed');
    expect(result.counts).toMatchObject({ succeeded: 6, failed: 1, pending: 0 });
    expect(result.failuresByType).toEqual({ PoolExhausted: 1 });
    expect(result.runId).not.toBe(firstRunId);
    const first = await env.client.workflow.getHandle(fleetWorkflowId(fleet.fleetId as string), firstRunId).describe();
    expect(first.status.name).toBe('CONTINUED_AS_NEW');
    expect([...fakes.started].sort()).toEqual([...fleet.nodeIds].sort()); // each node once
  });

  it('skips nodes that are already provisioned when the fleet is started again', async () => {
    const fakes = createFleetFakes();
    const fleet = fleetOf(3, { window: 3 });
    await rollout(fakes, fleet, (h) => h.result());
    const again = await rollout(fakes, { ...fleet, fleetId: uniqueId('f') }, (h) => h.result());
    expect(again.counts).toMatchObject({ succeeded: 0, skipped: 3, failed: 0 });
    expect(fakes.started).toHaveLength(3);
  });

  it('rejects an invalid node input naming the field, before any node starts', async () => {
    const fakes = createFleetFakes();
    const fleet = fleetOf(3);
    const nodes = [...fleet.nodes];
    nodes[1] = { ...nodes[1]!, nodeDir: 'relative/dir' };
    nodes[2] = { nodeId: fleet.nodeIds[0]! };
    const err = await rollout(fakes, { ...fleet, nodes }, (h) => h.result()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('InvalidInput');
    expect(cause.message).toContain('nodes.1.nodeDir:');
    expect(cause.message).toContain('nodes.2.nodeId: duplicate node id');
    expect(fakes.started).toEqual([]);
  });
});

describe('nodeboot fleet', () => {
  const cli = (taskQueue: string, args: string[]) =>
    nodeboot(args, {
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: env.namespace,
      TEMPORAL_TASK_QUEUE: taskQueue,
    });
  const fileOf = (fleet: FleetInputJson & { nodeIds?: string[] }) => {
    const { nodeIds: _ids, ...input } = fleet;
    const file = path.join(dir, `${uniqueId('fleet')}.json`);
    writeFileSync(file, JSON.stringify(input));
    return file;
  };

  it('start --wait --json follows the rollout and exits 3 when a node failed; status and watch report the same counts', async () => {
    const fakes = createFleetFakes();
    const fleet = fleetOf(3, { window: 2, failureBudget: { maxFailed: 2 } });
    fakes.failNode = (nodeId) => (nodeId === fleet.nodeIds[2] ? 'EntryRejected' : undefined);
    await withWorker(env, { workflowsPath, activities: fakes.activities }, async (taskQueue) => {
      const run = await cli(taskQueue, ['fleet', 'start', '--wait', '--json', '--interval', '200', fileOf(fleet)]);
      expect(run.code, run.stderr).toBe(EXIT.FAILED);
      expect(run.json).toMatchObject({
        ok: false,
        exitCode: EXIT.FAILED,
        started: true,
        fleet: { execution: 'COMPLETED' },
      });
      expect(run.json.fleet.progress.counts).toMatchObject({ succeeded: 2, failed: 1, pending: 0 });
      expect(run.json.fleet.progress.failuresByType).toEqual({ EntryRejected: 1 });
      expect(run.stderr).toContain(`fleet/${fleet.fleetId}`);

      const status = await cli(taskQueue, ['fleet', 'status', fleet.fleetId as string]);
      expect(status.code).toBe(EXIT.FAILED);
      expect(status.stdout).toContain('3 nodes: 2 provisioned, 1 failed, 0 running, 0 pending');
      expect(status.stdout).toContain(`${fleet.nodeIds[2]}  issueOverlayKey  EntryRejected`);

      const watch = await cli(taskQueue, ['fleet', 'watch', '--json', fleet.fleetId as string]);
      expect(watch.code).toBe(EXIT.FAILED);
      expect(watch.lines().at(-1)).toMatchObject({
        result: { exitCode: EXIT.FAILED, fleet: { progress: { state: 'completed' } } },
      });
    });
  });

  it('refuses a bad fleet file with exit 2 naming each bad field, and starts nothing; an unknown fleet is exit 5', async () => {
    const fleet = fleetOf(2);
    const nodes = [{ ...fleet.nodes[0]!, host: { kind: 'netns', netns: 'Bad Name' } }, { nodeId: 'x;rm' }];
    const bad = await cli('unused-queue', ['fleet', 'start', '--json', fileOf({ ...fleet, nodes, window: 0 })]);
    expect(bad.code).toBe(EXIT.INVALID);
    const paths = (bad.json.error.fields as { path: string }[]).map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['nodes.1.nodeId', 'window']));
    expect(await runExists(fleetWorkflowId(fleet.fleetId as string))).toBe(false);

    const nodeLevel = await cli('unused-queue', [
      'fleet',
      'start',
      fileOf({ ...fleet, nodes: [{ ...fleet.nodes[0]!, host: { kind: 'netns', netns: 'Bad Name' } }] }),
    ]);
    expect(nodeLevel.code).toBe(EXIT.INVALID);
    expect(nodeLevel.stderr).toContain('nodes.0.host.netns');

    const missing = await cli('unused-queue', ['fleet', 'status', 'no-such-fleet']);
    expect(missing.code).toBe(EXIT.NOT_FOUND);
  });
});
