// The nodeboot CLI as CI and on-call run it: a separate process against the
// real dev server, driving provisionNode / decommissionNode on a worker in this
// process with fake activities (each test its own task queue and node). The
// fakes also write their events to a real ledger database, so `history` reads
// what a worker would have written. Asserts exit codes and --json shapes.
// The tests run concurrently: each has its own worker, task queue, nodes and
// segments, and most of their time is CLI processes waiting on Temporal.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WorkflowNotFoundError } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ledger } from '../../inventory/index.js';
import type { Activities } from '../../activities/types.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import { provisionWorkflowId } from '../../common/ids.js';
import type { ProvisionInputJson } from '../../common/input.js';
import { STEPS, STEP_TITLES } from '../../common/steps.js';
import { freePort } from '../../lab/temporal.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createCountingActivities } from '../fixtures/counting-activities.js';
import {
  blockUntilCancelled,
  createFakeActivities,
  failWith,
  type Behaviour,
  type FakeActivities,
} from '../fixtures/fake-activities.js';
import { sampleInput } from '../fixtures/inputs.js';
import { describeRun, nodeboot, spawnNodeboot, type CliRun } from '../fixtures/nodeboot-cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectTestEnv, eventually, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';
import { inOrder } from '../../activities/record-event.js';

let env: TemporalTestEnv;
let db: TestDatabase;
let ledger: Ledger;
let dir: string;
let address: string;

beforeAll(async () => {
  [env, db] = await Promise.all([connectTestEnv(), createTestDatabase()]);
  ledger = await Ledger.connect(db.url, { migrate: true });
  dir = mkdtempSync(path.join(tmpdir(), 'nb-cli-'));
  const { inject } = await import('vitest');
  address = inject('temporalAddress');
});

afterAll(async () => {
  await ledger?.close();
  await Promise.allSettled([env?.close(), db?.drop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Cli = (args: string[], opts?: { stdin?: string }) => Promise<CliRun>;

/** Run `fn` with a worker (own task queue) on `fake`, and a CLI configured for that queue. */
function withCli<T>(fake: FakeActivities, fn: (cli: Cli, taskQueue: string) => Promise<T>): Promise<T> {
  // The fakes' events also go to the real ledger, for `nodeboot history`.
  const activities: Activities = {
    ...fake.activities,
    recordEvent: async (event) => {
      await fake.activities.recordEvent(event);
      await ledger.appendEvent(event);
    },
  };
  activities.recordEvents = inOrder(activities.recordEvent);
  fake.stepEventSink = activities.recordEvent;
  return withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities }, (taskQueue) =>
    fn(cliFor(taskQueue), taskQueue),
  );
}

function cliFor(taskQueue: string, extra: Record<string, string> = {}): Cli {
  return (args, opts) =>
    nodeboot(
      args,
      {
        TEMPORAL_ADDRESS: address,
        TEMPORAL_NAMESPACE: env.namespace,
        TEMPORAL_TASK_QUEUE: taskQueue,
        DATABASE_URL: db.url,
        ...extra,
      },
      opts,
    );
}

function inputFile(input: unknown, name = `${uniqueId('in')}.json`): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify(input, null, 2));
  return file;
}

/** exit code, with the whole run in the failure message. */
function expectExit(r: CliRun, code: number, args = '') {
  expect(r.code, describeRun([args], r)).toBe(code);
}

/** Hold a step until `release()` (heartbeating, so cancellation still reaches it). */
function gate(): { behaviour: Behaviour; release: () => void } {
  let open = false;
  return {
    release: () => {
      open = true;
    },
    behaviour: async () => {
      const ctx = Context.current();
      while (!open) {
        ctx.heartbeat();
        await ctx.sleep(50);
      }
    },
  };
}

async function runOf(nodeId: string) {
  return env.client.workflow.getHandle(provisionWorkflowId(nodeId)).describe();
}

/**
 * Steps come from the `status` query, which a worker answers by replaying the
 * closed run; under CI load it can miss the CLI's 5 s query deadline (the CLI
 * then shows what Temporal knows, without steps), so ask again until a worker
 * answers.
 */
function untilWorkerAnswers(run: () => Promise<CliRun>, hasSteps: (r: CliRun) => boolean): Promise<CliRun> {
  return eventually(
    async () => {
      const r = await run();
      return hasSteps(r) ? r : undefined;
    },
    { what: 'an answer with steps', timeoutMs: 60_000, intervalMs: 1_000 },
  );
}
describe.concurrent('nodeboot start', () => {
  it('starts once, then attaches to the same run (with --wait, follows it to the end); says when the input differs', async () => {
    const fake = createFakeActivities();
    const nodeId = uniqueId('cli');
    const file = inputFile(sampleInput(nodeId));
    await withCli(fake, async (cli) => {
      const first = await cli(['start', '--json', file]);
      expectExit(first, EXIT.OK);
      expect(first.json).toMatchObject({
        ok: true,
        exitCode: 0,
        command: 'start',
        started: true,
        attached: false,
        run: { nodeId, workflowId: `provision/${nodeId}` },
      });
      expect(first.stderr).toMatch(/started provision\//);

      const again = await cli(['start', '--wait', '--json', file]);
      expectExit(again, EXIT.OK);
      expect(again.json).toMatchObject({
        ok: true,
        exitCode: 0,
        started: false,
        attached: true,
        inputDiffers: false,
        run: {
          runId: first.json.run.runId,
          execution: 'COMPLETED',
          outcome: 'provisioned',
          exitCode: 0,
          state: 'succeeded',
          lastFailure: null,
          receipt: { nodeId, overlayIp: '10.200.0.10' },
        },
      });
      expect(again.json.run.steps.map((s: { step: string; state: string }) => `${s.step}:${s.state}`)).toEqual(
        STEPS.map((s) => `${s}:succeeded`),
      );
      expect(again.stderr).toMatch(/attached to the existing run/);

      const other = await cli(['start', inputFile(sampleInput(nodeId, { segment: 'elsewhere' }))]);
      expectExit(other, EXIT.OK);
      expect(other.stderr).toMatch(/different input/);
    });
    expect(fake.count('installOverlay')).toBe(1);
  });

  it('refuses a bad input file with exit 2, naming each bad field on one screen, and starts no run', async () => {
    const nodeId = uniqueId('cli');
    const bad = sampleInput(nodeId) as ProvisionInputJson & Record<string, unknown>;
    bad.overlay.hubs![0]!.endpoint = 'hub.example:51820';
    bad.workloads![0]!.uid = 0;
    bad.spire.trustDomain = 'Not A Domain';
    bad.colour = 'blue';
    const file = inputFile(bad);
    const cli = cliFor('unused-queue');

    const [asJson, human, crossField, broken, missing] = await Promise.all([
      cli(['start', '--json', '--wait', file]),
      cli(['start', file]),
      cli([
        'start',
        inputFile(
          sampleInput(nodeId, { retry: { initialIntervalMs: 5000, maximumIntervalMs: 100, maximumAttempts: 3 } }),
        ),
      ]),
      cli(['start', '-'], { stdin: '{"nodeId": "x",' }),
      cli(['start', path.join(dir, 'no-such.json')]),
    ]);
    expectExit(asJson, EXIT.INVALID);
    expect(asJson.json).toMatchObject({ ok: false, exitCode: 2, error: { code: 'INVALID_INPUT', exitCode: 2 } });
    const paths = asJson.json.error.fields.map((f: { path: string }) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['overlay.hubs.0.endpoint', 'workloads.0.uid', 'spire.trustDomain']));
    expect(asJson.json.error.fields.some((f: { message: string }) => /colour/.test(f.message))).toBe(true);

    expectExit(human, EXIT.INVALID);
    expect(human.stdout).toBe('');
    const lines = human.stderr.trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(24);
    expect(lines[0]).toMatch(/^error: invalid provisioning input in .*: nothing was started$/);
    for (const p of ['overlay.hubs.0.endpoint: ', 'workloads.0.uid: must not be root', 'spire.trustDomain: '])
      expect(human.stderr).toContain(`  ${p}`);

    expectExit(crossField, EXIT.INVALID);
    expect(crossField.stderr).toMatch(/retry\.maximumIntervalMs: must be at least retry\.initialIntervalMs/);
    expectExit(broken, EXIT.INVALID);
    expect(broken.stderr).toMatch(/stdin is not valid JSON/);
    expectExit(missing, EXIT.INVALID);
    expect(missing.stderr).toMatch(/cannot read .*ENOENT/);

    await expect(runOf(nodeId)).rejects.toBeInstanceOf(WorkflowNotFoundError);
    const status = await cli(['status', '--json', nodeId]);
    expectExit(status, EXIT.NOT_FOUND);
    expect(status.json.error).toMatchObject({ code: 'NOT_FOUND', exitCode: 5 });
  });
});

describe.concurrent('nodeboot status / watch', () => {
  it('watch prints plain step lines as the run progresses (stdout is not a TTY), then status shows every step with evidence', async () => {
    const g = gate();
    const fake = createFakeActivities({ gatePeerHealth: g.behaviour });
    const nodeId = uniqueId('cli');
    await withCli(fake, async (cli, taskQueue) => {
      expectExit(await cli(['start', inputFile(sampleInput(nodeId))]), EXIT.OK);
      const watch = spawnNodeboot(['watch', nodeId, '--interval', '200'], {
        TEMPORAL_ADDRESS: address,
        TEMPORAL_TASK_QUEUE: taskQueue,
      });
      // Live: the gate is still closed when watch reports it running.
      await watch.waitForLine(/3 gate on peer health\s+running/);
      expect(fake.count('startSpireAgent')).toBe(0);
      g.release();
      const w = await watch.result;
      expectExit(w, EXIT.OK, 'watch');
      expect(w.stdout).not.toMatch(/\x1b\[/); // eslint-disable-line no-control-regex
      for (const step of STEPS) expect(w.stdout).toMatch(new RegExp(`${STEP_TITLES[step]}\\s+succeeded`));
      const lines = w.stdout.trim().split('\n');
      expect(lines.findIndex((l) => /gate on peer health\s+running/.test(l))).toBeLessThan(
        lines.findIndex((l) => /gate on peer health\s+succeeded/.test(l)),
      );
      expect(lines.at(-1)).toMatch(/run\s+provisioned/);

      const [status, human, watchJson] = await Promise.all([
        cli(['status', '--json', nodeId]),
        cli(['status', nodeId]),
        untilWorkerAnswers(
          () => cli(['watch', '--json', nodeId]),
          (w) => w.lines().some((e) => e.step),
        ),
      ]);
      expectExit(status, EXIT.OK);
      expect(status.json).toMatchObject({
        ok: true,
        command: 'status',
        run: { outcome: 'provisioned', source: 'query', currentStep: null, lastFailure: null },
      });
      for (const s of status.json.run.steps) {
        expect(s, s.step).toMatchObject({ state: 'succeeded', runs: 1 });
        expect(s.evidence, s.step).toBeDefined();
      }
      expect(status.json.run.steps[1].evidence).toMatchObject({
        overlayIp: '10.200.0.10',
        keyFingerprint: '3f1c2a9b7d5e4f60',
      });
      expect(JSON.stringify(status.json)).not.toMatch(/PRIVATE KEY/);
      expectExit(human, EXIT.OK);
      expect(human.stdout).toMatch(/state: provisioned/);
      expect(human.stdout).toMatch(/2 issue overlay key\s+succeeded.*overlay 10\.200\.0\.10, key 3f1c2a9b7d5e4f60/);

      expectExit(watchJson, EXIT.OK);
      const events = watchJson.lines();
      expect(events.at(-1)).toMatchObject({ result: { ok: true, exitCode: 0, run: { outcome: 'provisioned' } } });
      expect(events.filter((e) => e.step === 'launchWorkloads')).toEqual([
        expect.objectContaining({ nodeId, state: 'succeeded' }),
      ]);
    });
  });
});

describe.concurrent('nodeboot list', () => {
  it('filters by segment, state, failed step, error type and node through visibility', async () => {
    const tag = uniqueId('s').slice(-8);
    const [east, west] = [`east-${tag}`, `west-${tag}`];
    const ok = uniqueId('cli');
    const bad = uniqueId('cli');
    await withCli(createFakeActivities(), (cli) =>
      cli(['start', '--wait', inputFile(sampleInput(ok, { segment: east }))]).then((r) => expectExit(r, EXIT.OK)),
    );
    await withCli(createFakeActivities({ startSpireAgent: failWith('ToolMissing') }), (cli) =>
      cli(['start', '--wait', inputFile(sampleInput(bad, { segment: west }))]).then((r) => expectExit(r, EXIT.FAILED)),
    );
    // Visibility is eventually consistent: wait until both closed runs are listed, then ask the CLI.
    await eventually(
      async () => {
        let n = 0;
        for await (const wf of env.client.workflow.list({
          query: `(Segment = "${east}" OR Segment = "${west}") AND ExecutionStatus != "Running"`,
        }))
          n += wf ? 1 : 0;
        return n === 2;
      },
      { what: 'both runs in visibility', timeoutMs: 30_000 },
    );

    const cli = cliFor('unused-queue');
    const [bySegment, byFailedStep, failed, succeededWest, byNode, badState, badStep] = await Promise.all([
      cli(['list', '--json', '--segment', east]),
      cli([
        'list',
        '--json',
        '--step',
        'startSpireAgent',
        '--failed-step',
        'startSpireAgent',
        '--error-type',
        'ToolMissing',
        '--segment',
        west,
      ]),
      cli(['list', '--state', 'failed', '--segment', west]),
      cli(['list', '--json', '--state', 'succeeded', '--segment', west]),
      cli(['list', '--json', '--node', ok]),
      cli(['list', '--state', 'sideways']),
      cli(['list', '--failed-step', 'rebootTheWorld']),
    ]);
    expectExit(bySegment, EXIT.OK);
    expect(bySegment.json).toMatchObject({
      ok: true,
      count: 1,
      // Done within timeouts.reportStepAfter: it names no step (docs/operating.md).
      runs: [{ nodeId: ok, segment: east, status: 'COMPLETED', bootstrapStep: null, failedStep: null }],
    });
    expect(bySegment.json.query).toBe(`WorkflowType = "provisionNode" AND Segment = "${east}"`);
    expectExit(byFailedStep, EXIT.OK);
    expect(byFailedStep.json).toMatchObject({
      count: 1,
      runs: [{ nodeId: bad, status: 'FAILED', failedStep: 'startSpireAgent', errorType: 'ToolMissing' }],
    });
    expectExit(failed, EXIT.OK);
    expect(failed.stdout).toMatch(
      new RegExp(`${bad}\\s+${west}\\s+FAILED\\s+startSpireAgent\\s+startSpireAgent\\s+ToolMissing`),
    );
    expectExit(succeededWest, EXIT.OK);
    expect(succeededWest.json).toMatchObject({ count: 0, runs: [] });
    expectExit(byNode, EXIT.OK);
    expect(byNode.json.runs.map((r: { nodeId: string }) => r.nodeId)).toEqual([ok]);
    expectExit(badState, EXIT.INVALID);
    expect(badState.stderr).toMatch(/--state/);
    expectExit(badStep, EXIT.INVALID);
  });
});

describe.concurrent('operator decisions', () => {
  it('hold -> approve: start --wait exits 4 with the failure and a hint; approve --wait retries the step and provisions', async () => {
    const fake = createFakeActivities({ startSpireAgent: failWith('ToolMissing', 1) });
    const nodeId = uniqueId('cli');
    await withCli(fake, async (cli) => {
      const held = await cli(['start', '--wait', '--json', inputFile(sampleInput(nodeId, { onFailure: 'hold' }))]);
      expectExit(held, EXIT.HELD);
      expect(held.json).toMatchObject({
        ok: false,
        exitCode: 4,
        run: {
          outcome: 'held',
          execution: 'RUNNING',
          heldStep: 'startSpireAgent',
          lastFailure: { step: 'startSpireAgent', type: 'ToolMissing', errorClass: 'permanent' },
          next: [
            `nodeboot approve ${nodeId}`,
            `nodeboot compensate ${nodeId}`,
            `nodeboot rerun ${nodeId} --input fixed.json`,
          ],
        },
      });
      expect(held.json.run.lastFailure.suggestion).toMatch(/install the missing binary/);
      // The CI log (stderr) carries the progress and the failure summary.
      expect(held.stderr).toMatch(/4 start SPIRE agent\s+failed\s+ToolMissing/);
      expect(held.stderr).toMatch(/run\s+held\s+ToolMissing at startSpireAgent/);

      const [status, listed] = await Promise.all([
        cli(['status', nodeId]),
        eventually(
          async () => {
            const r = await cli(['list', '--json', '--state', 'held', '--node', nodeId]);
            return r.json?.count === 1 ? r : undefined;
          },
          { what: 'the held run listed', timeoutMs: 30_000 },
        ),
      ]);
      expectExit(status, EXIT.HELD);
      expect(status.stdout).toMatch(/state: held at 4 start SPIRE agent/);
      expect(status.stdout).toMatch(/last failure: startSpireAgent ToolMissing \(permanent\)/);
      expect(status.stdout).toMatch(/hint: install the missing binary/);
      expect(listed.json.runs[0]).toMatchObject({ nodeId, status: 'RUNNING', failedStep: 'startSpireAgent' });

      const approved = await cli(['approve', '--wait', '--json', nodeId]);
      expectExit(approved, EXIT.OK);
      expect(approved.json).toMatchObject({
        ok: true,
        decision: { action: 'retry', step: 'startSpireAgent' },
        run: { outcome: 'provisioned' },
      });
      const again = await cli(['approve', nodeId, '--json']);
      expectExit(again, EXIT.CONFLICT);
      expect(again.json.error.code).toBe('CONFLICT');
    });
    expect(fake.count('startSpireAgent')).toBe(2);
    expect(fake.undos()).toEqual([]);
  });

  it('hold -> compensate: undoes in reverse; compensate --wait exits 0, status then says failed and compensated (3)', async () => {
    const fake = createFakeActivities({ registerEntries: failWith('EntryRejected') });
    const nodeId = uniqueId('cli');
    await withCli(fake, async (cli) => {
      expectExit(await cli(['start', '--wait', inputFile(sampleInput(nodeId, { onFailure: 'hold' }))]), EXIT.HELD);
      const r = await cli(['compensate', '--wait', '--json', nodeId]);
      expectExit(r, EXIT.OK);
      expect(r.json).toMatchObject({
        ok: true,
        exitCode: 0,
        decision: { action: 'compensate', step: 'registerEntries' },
        run: { outcome: 'compensated', exitCode: 3, execution: 'FAILED' },
      });
      const status = await untilWorkerAnswers(
        () => cli(['status', '--json', nodeId]),
        (s) => s.json?.run?.steps?.length > 0,
      );
      expectExit(status, EXIT.FAILED);
      expect(status.json.run).toMatchObject({
        outcome: 'compensated',
        lastFailure: { step: 'registerEntries', type: 'EntryRejected' },
        next: [`nodeboot rerun ${nodeId}`],
      });
      expect(status.json.run.steps.map((s: { state: string }) => s.state)).toEqual([
        'compensated',
        'compensated',
        'succeeded',
        'compensated',
        'compensated',
        'pending',
      ]);
    });
    expect(fake.undos().map((c) => c.name)).toEqual([
      'undoRegisterEntries',
      'undoStartSpireAgent',
      'undoIssueOverlayKey',
      'undoInstallOverlay',
    ]);
  });

  it('cancel compensates a run mid-step; rerun and approve refuse a run in progress (7); cancel again is a no-op', async () => {
    const fake = createFakeActivities({ launchWorkloads: blockUntilCancelled('launchWorkloads') });
    const nodeId = uniqueId('cli');
    await withCli(fake, async (cli) => {
      expectExit(await cli(['start', inputFile(sampleInput(nodeId))]), EXIT.OK);
      await fake.entered('launchWorkloads');
      const [rerun, approve, status] = await Promise.all([
        cli(['rerun', nodeId]),
        cli(['approve', '--json', nodeId]),
        cli(['status', '--json', nodeId]),
      ]);
      expectExit(rerun, EXIT.CONFLICT);
      expect(rerun.stderr).toMatch(/run in progress/);
      expectExit(approve, EXIT.CONFLICT);
      expect(approve.json.error.message).toMatch(/not held/);
      expectExit(status, EXIT.RUNNING);
      expect(status.json.run).toMatchObject({ outcome: 'running', currentStep: 'launchWorkloads' });

      const cancelled = await cli(['cancel', '--wait', '--json', nodeId]);
      expectExit(cancelled, EXIT.OK);
      expect(cancelled.json).toMatchObject({
        ok: true,
        cancelRequested: true,
        run: { execution: 'CANCELLED', outcome: 'cancelled', exitCode: 3, lastFailure: { type: 'Cancelled' } },
      });
      const [after, twice] = await Promise.all([cli(['status', nodeId]), cli(['cancel', '--json', nodeId])]);
      expectExit(after, EXIT.FAILED);
      expect(after.stdout).toMatch(/state: cancelled/);
      expectExit(twice, EXIT.OK);
      expect(twice.json).toMatchObject({ cancelRequested: false });
    });
    expect(fake.undos().map((c) => [c.name, c.reason])).toEqual([
      ['undoLaunchWorkloads', 'cancel'],
      ['undoRegisterEntries', 'cancel'],
      ['undoStartSpireAgent', 'cancel'],
      ['undoIssueOverlayKey', 'cancel'],
      ['undoInstallOverlay', 'cancel'],
    ]);
  });
});

describe.concurrent('nodeboot rerun', () => {
  it("after a compensated failure: a new run with the last run's input provisions the node; a provisioned node is refused", async () => {
    const fake = createCountingActivities({ registerEntries: failWith('EntryRejected', 1) });
    const nodeId = uniqueId('cli');
    await withCli(fake, async (cli) => {
      const failed = await cli(['start', '--wait', '--json', inputFile(sampleInput(nodeId))]);
      expectExit(failed, EXIT.FAILED);
      expect(failed.json.run).toMatchObject({
        outcome: 'compensated',
        lastFailure: { step: 'registerEntries', type: 'EntryRejected', errorClass: 'permanent' },
      });

      const rerun = await cli(['rerun', '--wait', '--json', nodeId]);
      expectExit(rerun, EXIT.OK);
      expect(rerun.json).toMatchObject({
        ok: true,
        started: true,
        inputFrom: 'last-run',
        rerunOf: { runId: failed.json.run.runId, execution: 'FAILED', terminated: false },
        run: { outcome: 'provisioned' },
      });
      expect(rerun.json.run.runId).not.toBe(failed.json.run.runId);

      const refused = await cli(['rerun', nodeId]);
      expectExit(refused, EXIT.CONFLICT);
      expect(refused.stderr).toMatch(/is provisioned/);
    });
    expect(fake.world.addresses.size).toBe(1);
    expect(fake.world.entries.size).toBe(2);
  });

  it('of a held run: validates the new input first, terminates the held run WITHOUT compensation, and the new run adopts its finished steps', async () => {
    const fake = createCountingActivities({ startSpireAgent: failWith('ToolMissing', 1) });
    const nodeId = uniqueId('cli');
    await withCli(fake, async (cli) => {
      const held = await cli(['start', '--wait', '--json', inputFile(sampleInput(nodeId, { onFailure: 'hold' }))]);
      expectExit(held, EXIT.HELD);
      const heldRunId = held.json.run.runId as string;

      // A fixed input for another node is refused before anything is touched.
      const wrong = await cli([
        'rerun',
        nodeId,
        '--input',
        inputFile(sampleInput(uniqueId('other'), { onFailure: 'hold' })),
      ]);
      expectExit(wrong, EXIT.INVALID);
      expect((await runOf(nodeId)).status.name).toBe('RUNNING');

      const fixed = inputFile(sampleInput(nodeId, { onFailure: 'hold', segment: 'fixed' }));
      const rerun = await cli(['rerun', nodeId, '--input', fixed, '--wait', '--json']);
      expectExit(rerun, EXIT.OK);
      expect(rerun.json).toMatchObject({
        started: true,
        inputFrom: 'file',
        rerunOf: { runId: heldRunId, execution: 'RUNNING', terminated: true },
        run: { outcome: 'provisioned' },
      });
      expect(rerun.stderr).toMatch(/terminated the held run .* without compensation/);
      expect(rerun.json.run.searchAttributes.segment).toBe('fixed');

      const old = await cli(['status', '--json', '--run', heldRunId, nodeId]);
      expectExit(old, EXIT.INCOMPLETE);
      expect(old.json.run).toMatchObject({
        execution: 'TERMINATED',
        outcome: 'terminated',
        lastFailure: { type: 'Terminated' },
      });
      expect(old.json.run.lastFailure.message).toMatch(/superseded by nodeboot rerun/);
    });
    expect(fake.undos()).toEqual([]);
    expect(fake.count('issueOverlayKey')).toBe(2);
    expect(fake.world.created).toEqual({ addresses: 1, agents: 1, entries: 2, workloads: 2 });
  });
});

describe.concurrent('nodeboot decommission / history', () => {
  it('decommissions a provisioned node; for a held node it cancels (compensates) the run first; history reads the ledger', async () => {
    const done = uniqueId('cli');
    const held = uniqueId('cli');
    await withCli(createFakeActivities(), async (cli) => {
      expectExit(await cli(['start', '--wait', inputFile(sampleInput(done))]), EXIT.OK);
      const d1 = await cli(['decommission', '--wait', '--json', done]);
      expectExit(d1, EXIT.OK);
      expect(d1.json).toMatchObject({
        ok: true,
        nodeId: done,
        cancelledProvisionRun: null,
        workflowId: `decommission/${done}`,
        state: 'succeeded',
      });
      expect(d1.json.result.removed.startSpireAgent).toEqual([`undoStartSpireAgent:${done}`]);
      // The completed run is not the last word: the node is decommissioned (exit 10), not provisioned.
      const after = await cli(['status', '--json', done]);
      expectExit(after, EXIT.DECOMMISSIONED);
      expect(after.json.run).toMatchObject({
        execution: 'COMPLETED',
        outcome: 'decommissioned',
        decommission: { workflowId: `decommission/${done}`, runId: d1.json.runId },
      });
    });

    const fake2 = createFakeActivities({ issueOverlayKey: failWith('PoolExhausted') });
    await withCli(fake2, async (cli) => {
      const start = await cli(['start', '--wait', '--json', inputFile(sampleInput(held, { onFailure: 'hold' }))]);
      expectExit(start, EXIT.HELD);
      const d2 = await cli(['decommission', '--wait', '--json', held]);
      expectExit(d2, EXIT.OK);
      expect(d2.json).toMatchObject({ ok: true, cancelledProvisionRun: start.json.run.runId, state: 'succeeded' });
      const status = await cli(['status', '--json', held]);
      expectExit(status, EXIT.DECOMMISSIONED);
      expect(status.json.run).toMatchObject({
        execution: 'CANCELLED',
        outcome: 'decommissioned',
        decommission: { workflowId: `decommission/${held}` },
      });

      const [history, human, none, missing] = await Promise.all([
        cli(['history', '--json', held]),
        cli(['history', held]),
        cli(['history', '--json', uniqueId('ghost')]),
        cli(['decommission', uniqueId('ghost')]),
      ]);
      expectExit(history, EXIT.OK);
      const kinds = history.json.events.map((e: { step: string; kind: string }) => `${e.step}:${e.kind}`);
      expect(kinds).toEqual(
        expect.arrayContaining([
          'workflow:started',
          'issueOverlayKey:failed',
          'issueOverlayKey:held',
          'installOverlay:compensated',
          'workflow:compensated',
          'workflow:succeeded',
        ]),
      );
      expect(history.json.events.every((e: { nodeId: string }) => e.nodeId === held)).toBe(true);
      expect(new Set(history.json.events.map((e: { workflowId: string }) => e.workflowId))).toEqual(
        new Set([`provision/${held}`, `decommission/${held}`]),
      );
      expectExit(human, EXIT.OK);
      expect(human.stdout).toMatch(/issueOverlayKey\s+held\s+PoolExhausted/);
      expectExit(none, EXIT.NOT_FOUND);
      expectExit(missing, EXIT.NOT_FOUND);
    });
    expect(fake2.undos().map((c) => [c.name, c.reason])).toEqual([
      ['undoIssueOverlayKey', 'cancel'],
      ['undoInstallOverlay', 'cancel'],
      ['undoLaunchWorkloads', 'decommission'],
      ['undoRegisterEntries', 'decommission'],
      ['undoStartSpireAgent', 'decommission'],
      ['undoIssueOverlayKey', 'decommission'],
      ['undoInstallOverlay', 'decommission'],
    ]);
  });
});

describe.concurrent('configuration and reachability', () => {
  it('exits 6 when Temporal (or, for history, the ledger) cannot be reached, and validates input before connecting', async () => {
    const port = await freePort();
    const cli = cliFor('unused-queue', {
      TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
      NODEBOOT_CONNECT_TIMEOUT: '2',
      DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/nodeboot`,
    });
    const nodeId = uniqueId('cli');
    const bad = sampleInput(nodeId) as ProvisionInputJson;
    bad.nodeDir = 'relative/dir';
    const [status, start, invalid, history] = await Promise.all([
      cli(['status', '--json', nodeId]),
      cli(['start', '--wait', inputFile(sampleInput(nodeId))]),
      cli(['start', inputFile(bad)]),
      cli(['history', nodeId]),
    ]);
    expectExit(status, EXIT.UNREACHABLE);
    expect(status.json).toMatchObject({ ok: false, exitCode: 6, error: { code: 'UNREACHABLE', exitCode: 6 } });
    expect(status.json.error.message).toMatch(new RegExp(`cannot reach Temporal at 127\\.0\\.0\\.1:${port}`));
    expectExit(start, EXIT.UNREACHABLE);
    expectExit(invalid, EXIT.INVALID);
    expect(invalid.stderr).toMatch(/nodeDir: /);
    expectExit(history, EXIT.UNREACHABLE);
    expect(history.stderr).toMatch(/ledger/);
  });

  it('usage and configuration mistakes exit 2 naming the flag or variable; empty variables count as unset; --help exits 0', async () => {
    const cli = cliFor('unused-queue');
    const bad = cliFor('unused-queue', { TEMPORAL_ADDRESS: 'no port here' });
    const emptyNs = cliFor('unused-queue', { TEMPORAL_NAMESPACE: '' });
    const [none, unknown, stray, badNode, badAddr, empty, help] = await Promise.all([
      cli([]),
      cli(['frobnicate', '--json']),
      cli(['status', 'n1', '--wait']),
      cli(['status', 'Not_A_Node']),
      bad(['status', '--json', 'n1']),
      emptyNs(['status', '--json', uniqueId('ghost')]),
      cli(['--help']),
    ]);
    expectExit(none, EXIT.INVALID);
    expectExit(unknown, EXIT.INVALID);
    expect(unknown.json).toMatchObject({
      ok: false,
      error: { code: 'USAGE', message: 'unknown command "frobnicate"' },
    });
    expectExit(stray, EXIT.INVALID);
    expect(stray.stderr).toMatch(/--wait does not apply to "status"/);
    expectExit(badNode, EXIT.INVALID);
    expectExit(badAddr, EXIT.INVALID);
    expect(badAddr.json.error).toMatchObject({
      code: 'INVALID_CONFIG',
      fields: [{ path: 'TEMPORAL_ADDRESS (--address)', message: 'must be host:port' }],
    });
    expectExit(empty, EXIT.NOT_FOUND); // reached the default namespace and found no run
    expectExit(help, EXIT.OK);
    expect(help.stdout).toMatch(/exit codes:/);
    expect(help.stdout).toMatch(/WITHOUT compensation/);
  });
});
