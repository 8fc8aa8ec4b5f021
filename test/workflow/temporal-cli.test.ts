// The Temporal CLI as a first-class entry point: the real `.tools/bin/temporal`
// (v1.5.1) against the dev server, driving provisionNode on a worker in this
// process with fake activities that keep the real steps' idempotency contract
// (test/fixtures/counting-activities.ts): start with a plain-JSON input file,
// query `status`, `decide` a held run with an update, find failed runs by
// search attribute, and reset a finished run to an earlier step without
// anything being allocated twice.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionWorkflowId } from '../../common/ids.js';
import type { ProvisionInputJson } from '../../common/input.js';
import { STEPS } from '../../common/steps.js';
import { TEMPORAL_BIN } from '../../lab/temporal.js';
import type { ProvisionReceipt, ProvisionStatus } from '../../common/definitions.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createCountingActivities } from '../fixtures/counting-activities.js';
import { failWith, type FakeActivities } from '../fixtures/fake-activities.js';
import { cliRunOf, type CliRun } from '../fixtures/nodeboot-cli.js';
import { sampleInput } from '../fixtures/inputs.js';
import { connectTestEnv, eventually, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';

let env: TemporalTestEnv;
let address: string;
let dir: string;

beforeAll(async () => {
  env = await connectTestEnv();
  const { inject } = await import('vitest');
  address = inject('temporalAddress');
  dir = mkdtempSync(path.join(tmpdir(), 'nb-tcli-'));
});

afterAll(async () => {
  await env?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Run the real temporal CLI against the test server; no profile or env config of the machine leaks in. */
async function temporal(args: string[]): Promise<CliRun> {
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_')));
  const r = await execa(
    TEMPORAL_BIN,
    [...args, '--address', address, '--namespace', env.namespace, '--disable-config-file', '--disable-config-env'],
    {
      env: cleanEnv,
      extendEnv: false,
      reject: false,
      timeout: 60_000,
      stdin: 'ignore',
    },
  );
  return cliRunOf(r);
}

function ok(r: CliRun, what: string) {
  expect(r.code, `${what}\n${r.stdout}\n${r.stderr}`).toBe(0);
}

function inputFile(input: ProvisionInputJson): string {
  const file = path.join(dir, `${input.nodeId}.json`);
  writeFileSync(file, JSON.stringify(input, null, 2));
  return file;
}

/** `temporal workflow start` exactly as DESIGN.md documents it, with the input as a plain JSON file. */
async function startWithTemporal(taskQueue: string, input: ProvisionInputJson): Promise<string> {
  const workflowId = provisionWorkflowId(input.nodeId);
  const r = await temporal([
    'workflow', 'start',
    '--type', 'provisionNode',
    '--task-queue', taskQueue,
    '--workflow-id', workflowId,
    '--input-file', inputFile(input),
    '--static-summary', `provision ${input.nodeId}`,
    '-o', 'json',
  ]); // prettier-ignore
  ok(r, 'temporal workflow start');
  expect(r.json).toMatchObject({ workflowId });
  return workflowId;
}

async function queryStatus(workflowId: string): Promise<ProvisionStatus> {
  const r = await temporal(['workflow', 'query', '--workflow-id', workflowId, '--type', 'status', '-o', 'json']);
  ok(r, 'temporal workflow query --type status');
  return r.json.queryResult[0] as ProvisionStatus;
}

function withFake<T>(fake: FakeActivities, fn: (taskQueue: string) => Promise<T>): Promise<T> {
  return withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: fake.activities }, fn);
}

describe('temporal CLI', () => {
  it('workflow start --input-file (plain JSON) provisions the node; workflow query --type status shows each step', async () => {
    const fake = createCountingActivities();
    const input = sampleInput(uniqueId('tcli'));
    const { receipt, status } = await withFake(fake, async (taskQueue) => {
      const workflowId = await startWithTemporal(taskQueue, input);
      const receipt = await env.client.workflow.getHandle<() => Promise<ProvisionReceipt>>(workflowId).result();
      return { receipt, status: await queryStatus(workflowId) };
    });
    expect(receipt).toMatchObject({ nodeId: input.nodeId, segment: 'lab', overlayIp: '10.200.0.10' });
    expect(status).toMatchObject({ state: 'succeeded', nodeId: input.nodeId, currentStep: null, lastFailure: null });
    expect(status.steps.map((s) => [s.step, s.state])).toEqual(STEPS.map((s) => [s, 'succeeded']));
    expect(status.steps[1]!.evidence).toMatchObject({ overlayIp: '10.200.0.10' });
  });

  it('workflow update execute --name decide resolves a held run; the validator refuses a bad action; a finished run refuses any', async () => {
    const fake = createCountingActivities({ startSpireAgent: failWith('ToolMissing', 1) });
    const input = sampleInput(uniqueId('tcli'), { onFailure: 'hold' });
    await withFake(fake, async (taskQueue) => {
      const workflowId = await startWithTemporal(taskQueue, input);
      const held = await eventually(
        async () => {
          const s = await queryStatus(workflowId);
          return s.state === 'held' ? s : undefined;
        },
        { what: 'the run held', timeoutMs: 30_000 },
      );
      expect(held).toMatchObject({ heldStep: 'startSpireAgent', lastFailure: { type: 'ToolMissing' } });

      const bad = await temporal([
        'workflow',
        'update',
        'execute',
        '--workflow-id',
        workflowId,
        '--name',
        'decide',
        '--input',
        '{"action":"nuke"}',
      ]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr + bad.stdout).toMatch(/unable to update workflow: action must be .*retry.* or .*compensate/);

      const r = await temporal([
        'workflow',
        'update',
        'execute',
        '--workflow-id',
        workflowId,
        '--name',
        'decide',
        '--input',
        '{"action":"retry"}',
        '-o',
        'json',
      ]);
      ok(r, 'temporal workflow update execute --name decide');
      expect(r.json).toMatchObject({ name: 'decide', result: { action: 'retry', step: 'startSpireAgent' } });
      const receipt = await env.client.workflow.getHandle<() => Promise<ProvisionReceipt>>(workflowId).result();
      expect(receipt.nodeId).toBe(input.nodeId);

      const late = await temporal([
        'workflow',
        'update',
        'execute',
        '--workflow-id',
        workflowId,
        '--name',
        'decide',
        '--input',
        '{"action":"retry"}',
      ]);
      expect(late.code).not.toBe(0);
    });
    expect(fake.count('startSpireAgent')).toBe(2);
    expect(fake.undos()).toEqual([]);
  });

  it('workflow list --query \'FailedStep="startSpireAgent"\' finds the failed run by its search attributes', async () => {
    const fake = createCountingActivities({ startSpireAgent: failWith('AttestationRejected') });
    const input = sampleInput(uniqueId('tcli'));
    const workflowId = await withFake(fake, async (taskQueue) => {
      const id = await startWithTemporal(taskQueue, input);
      await expect(env.client.workflow.getHandle(id).result()).rejects.toThrow();
      return id;
    });
    // Visibility is eventually consistent: poll.
    const listed = await eventually(
      async () => {
        const r = await temporal([
          'workflow',
          'list',
          '--query',
          `FailedStep="startSpireAgent" AND ErrorType="AttestationRejected" AND NodeId="${input.nodeId}"`,
          '-o',
          'json',
        ]);
        ok(r, 'temporal workflow list');
        return Array.isArray(r.json) && r.json.length === 1 ? r.json[0] : undefined;
      },
      { what: 'the failed run in visibility', timeoutMs: 30_000 },
    );
    expect(listed).toMatchObject({
      execution: { workflowId },
      type: { name: 'provisionNode' },
      status: 'WORKFLOW_EXECUTION_STATUS_FAILED',
    });
    const text = await temporal([
      'workflow',
      'list',
      '--query',
      `FailedStep="startSpireAgent" AND NodeId="${input.nodeId}"`,
    ]);
    ok(text, 'temporal workflow list (text)');
    expect(text.stdout).toContain(workflowId);
    // Security failure: compensated at once, agent banned (the undo got reason 'security').
    expect(fake.undos().map((c) => c.reason)).toEqual(['security', 'security', 'security']);
  });

  it('workflow reset to a step (event id) and to FirstWorkflowTask re-runs the steps, and nothing is allocated twice', async () => {
    const fake = createCountingActivities();
    const input = sampleInput(uniqueId('tcli'));
    await withFake(fake, async (taskQueue) => {
      const workflowId = await startWithTemporal(taskQueue, input);
      const first = await env.client.workflow.getHandle<() => Promise<ProvisionReceipt>>(workflowId).result();

      // The workflow task that scheduled step 2: resetting there re-runs steps 2-6.
      const show = await temporal(['workflow', 'show', '--workflow-id', workflowId, '-o', 'json']);
      ok(show, 'temporal workflow show');
      const scheduled = (
        show.json.events as {
          eventType: string;
          activityTaskScheduledEventAttributes?: {
            activityType: { name: string };
            workflowTaskCompletedEventId: string;
          };
        }[]
      ).find(
        (e) =>
          e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED' &&
          e.activityTaskScheduledEventAttributes?.activityType.name === 'issueOverlayKey',
      );
      const eventId = scheduled!.activityTaskScheduledEventAttributes!.workflowTaskCompletedEventId;
      const reset = await temporal([
        'workflow',
        'reset',
        '--workflow-id',
        workflowId,
        '--event-id',
        String(eventId),
        '--reason',
        'test: re-run from step 2',
        '-o',
        'json',
      ]);
      ok(reset, 'temporal workflow reset --event-id');
      const second = await env.client.workflow
        .getHandle<() => Promise<ProvisionReceipt>>(workflowId, reset.json.runId)
        .result();

      const again = await temporal([
        'workflow',
        'reset',
        '--workflow-id',
        workflowId,
        '--type',
        'FirstWorkflowTask',
        '--reason',
        'test: re-run everything',
        '-o',
        'json',
      ]);
      ok(again, 'temporal workflow reset --type FirstWorkflowTask');
      const third = await env.client.workflow
        .getHandle<() => Promise<ProvisionReceipt>>(workflowId, again.json.runId)
        .result();

      for (const r of [second, third]) {
        expect(r.overlayIp).toBe(first.overlayIp);
        expect(r.entries.map((e) => e.entryId)).toEqual(first.entries.map((e) => e.entryId));
      }
      expect(second.runId).toBe(reset.json.runId);
      expect(third.entries.every((e) => !e.created)).toBe(true);
    });
    // installOverlay ran once before the step-2 reset point, then again after the full reset.
    expect(fake.count('installOverlay')).toBe(2);
    expect(fake.count('issueOverlayKey')).toBe(3);
    expect(fake.count('launchWorkloads')).toBe(3);
    expect(fake.world.created).toEqual({ addresses: 1, agents: 1, entries: 2, workloads: 2 });
    expect(fake.undos()).toEqual([]);
  });
});
