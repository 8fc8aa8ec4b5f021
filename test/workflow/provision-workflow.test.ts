// provisionNode / decommissionNode logic against the real dev server, with
// in-memory fake activities that record every call: one test per failure mode.
import { fileURLToPath } from 'node:url';
import {
  ApplicationFailure,
  CancelledFailure,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProvisionInputJson } from '../../common/input.js';
import { decommissionWorkflowId, provisionWorkflowId } from '../../common/ids.js';
import {
  BootstrapStepKey,
  ErrorTypeKey,
  FailedStepKey,
  NodeIdKey,
  SegmentKey,
} from '../../common/search-attributes.js';
import { STEPS } from '../../common/steps.js';
import { decideUpdate, statusQuery, type ProvisionStatus } from '../../common/definitions.js';
import { decommissionNode, provisionNode } from '../../workflows/index.js';
import {
  blockUntilCancelled,
  createFakeActivities,
  failWith,
  type FakeActivities,
} from '../fixtures/fake-activities.js';
import { BAD_INPUTS } from '../fixtures/bad-inputs.js';
import { sampleInput } from '../fixtures/inputs.js';
import { expectStepFailureChain, failureOf } from '../helpers/failures.js';
import { connectTestEnv, eventually, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';

const workflowsPath = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));
const STEP_CALLS = [...STEPS];

let env: TemporalTestEnv;
beforeAll(async () => {
  env = await connectTestEnv();
});
afterAll(async () => {
  await env?.close();
});

/** Start provisionNode for `input` on a fresh worker running `fake`, and hand the handle to `fn`. */
function provision<T>(
  fake: FakeActivities,
  input: ProvisionInputJson,
  fn: (h: WorkflowHandle<typeof provisionNode>) => Promise<T>,
): Promise<T> {
  return withWorker(env, { workflowsPath, activities: fake.activities }, async (taskQueue) => {
    const workflowId =
      typeof input.nodeId === 'string' && /^[a-z0-9-]+$/.test(input.nodeId)
        ? provisionWorkflowId(input.nodeId)
        : uniqueId('provision-invalid');
    const handle = await env.client.workflow.start(provisionNode, { taskQueue, workflowId, args: [input] });
    return fn(handle);
  });
}

async function statusOf(h: WorkflowHandle): Promise<ProvisionStatus> {
  return h.query(statusQuery);
}

function untilState(h: WorkflowHandle, state: ProvisionStatus['state']): Promise<ProvisionStatus> {
  return eventually(
    async () => {
      const s = await statusOf(h);
      return s.state === state ? s : undefined;
    },
    { what: `state ${state}` },
  );
}

describe('provisionNode', () => {
  it("leaves the step events to the steps (StepRequest.events): the only local activities are the preflight and the run's end, whose marker names its event in the Web UI timeline", async () => {
    const fake = createFakeActivities();
    const history = await provision(fake, sampleInput(uniqueId()), async (h) => {
      await h.result();
      return h.fetchHistory();
    });
    const summaries = (history.events ?? [])
      .filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity')
      .map((e) =>
        e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary) : null,
      );
    expect(summaries).toEqual([
      'preflight: read-only checks before step 1',
      'event: launchWorkloads succeeded · event: workflow succeeded',
    ]);
    expect(fake.events.map((e) => `${e.step} ${e.kind}${e.attempt ? ` #${e.attempt}` : ''}`)).toEqual([
      'workflow started',
      ...STEP_CALLS.flatMap((step) => [`${step} started #1`, `${step} succeeded #1`]),
      'workflow succeeded',
    ]);
    expect(fake.events.find((e) => e.kind === 'succeeded' && e.step !== 'workflow')?.detail).toMatchObject({
      durationMs: expect.any(Number),
    });
  });

  it('writes the events it handed to a step that then failed again with the failure: the ledger has each once, in order', async () => {
    const fake = createFakeActivities({ issueOverlayKey: failWith('ToolMissing') });
    const written: string[] = [];
    fake.stepEventSink = async (event) => {
      written.push(`${event.step} ${event.kind}`);
      await fake.activities.recordEvent(event);
    };
    await provision(fake, sampleInput(uniqueId()), (h) => failureOf(h.result()));
    // The step's activity wrote them; the workflow cannot know it did, so its "failed" write carries them again.
    expect(written).toEqual([
      'workflow started',
      'installOverlay started',
      'installOverlay succeeded',
      'issueOverlayKey started',
    ]);
    expect(fake.events.map((e) => `${e.step} ${e.kind}`)).toEqual([
      'workflow started',
      'installOverlay started',
      'installOverlay succeeded',
      'issueOverlayKey started',
      'issueOverlayKey failed',
      'issueOverlayKey compensated',
      'installOverlay compensated',
      'workflow compensated',
    ]);
    expect(fake.count('recordEvent')).toBeGreaterThan(fake.events.length);
  });

  it('runs the six steps in order and returns the receipt; status shows all evidence', async () => {
    const fake = createFakeActivities();
    const nodeId = uniqueId();
    const { receipt, status, description } = await provision(fake, sampleInput(nodeId), async (h) => ({
      receipt: await h.result(),
      status: await statusOf(h),
      description: await h.describe(),
    }));

    expect(fake.names()).toEqual(STEP_CALLS);
    expect(receipt).toMatchObject({
      nodeId,
      segment: 'lab',
      workflowId: `provision/${nodeId}`,
      overlayIp: '10.200.0.10',
      keyFingerprint: '3f1c2a9b7d5e4f60',
      hubHandshakes: [{ hub: 'hub-a', latestHandshakeUnix: 1_760_000_000, handshakeAgeSeconds: 2 }],
      nodeAliasId: `spiffe://example.org/node/${nodeId}`,
      entries: [
        { workload: 'api', entryId: 'entry-1' },
        { workload: 'db', entryId: 'entry-2' },
      ],
      workloads: [
        { name: 'api', svidSerial: '01ab', svidNotAfter: '2030-01-01T01:00:00.000Z' },
        { name: 'db', svidSerial: '02ab', svidNotAfter: '2030-01-01T01:00:00.000Z' },
      ],
    });
    expect(Object.keys(receipt.durationsMs)).toEqual(STEP_CALLS);
    expect(JSON.stringify(receipt)).not.toContain('private.key');

    expect(status.state).toBe('succeeded');
    expect(status.currentStep).toBeNull();
    expect(status.lastFailure).toBeNull();
    for (const s of status.steps) {
      expect(s, s.step).toMatchObject({ state: 'succeeded', runs: 1 });
      expect(s.evidence, s.step).toBeDefined();
      expect(typeof s.durationMs).toBe('number');
    }
    expect(status.steps.map((s) => s.step)).toEqual(STEP_CALLS);

    const sa = description.typedSearchAttributes;
    expect(sa.get(NodeIdKey)).toBe(nodeId);
    expect(sa.get(SegmentKey)).toBe('lab');
    // Done well within timeouts.reportStepAfter: listed by how it ended, not by a step.
    expect(sa.get(BootstrapStepKey)).toBeUndefined();
    expect(sa.get(FailedStepKey)).toBeUndefined();

    const kinds = fake.events.map((e) => `${e.step}:${e.kind}`);
    expect(kinds[0]).toBe('workflow:started');
    expect(kinds.at(-1)).toBe('workflow:succeeded');
    expect(kinds).toContain('startSpireAgent:started');
    expect(kinds).toContain('startSpireAgent:succeeded');
    expect(
      fake.events.every((e) => e.run.workflowId === `provision/${nodeId}` && e.run.runId === description.runId),
    ).toBe(true);
  });

  it('fails invalid input at once with InvalidInput naming each bad field, before any activity runs', async () => {
    const fake = createFakeActivities();
    const input = sampleInput(uniqueId());
    input.nodeId = 'Bad_Node';
    input.overlay.hubs![0]!.endpoint = 'not-an-endpoint';
    const { err, status } = await provision(fake, input, async (h) => ({
      err: await failureOf(h.result()),
      status: await statusOf(h),
    }));

    const cause = err.cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect((cause as ApplicationFailure).type).toBe('InvalidInput');
    expect((cause as ApplicationFailure).nonRetryable).toBe(true);
    expect(cause?.message).toMatch(/nodeId: /);
    expect(cause?.message).toMatch(/overlay\.hubs\.0\.endpoint: /);
    expect(fake.calls).toEqual([]);
    expect(fake.count('recordEvent')).toBe(0);
    expect(status.state).toBe('failed');
    expect(status.lastFailure).toMatchObject({ step: 'workflow', type: 'InvalidInput' });
  });

  it('refuses, before any activity, every input the one validation refuses (the same rules as nodeboot start)', async () => {
    const fake = createFakeActivities();
    const failures = await withWorker(env, { workflowsPath, activities: fake.activities }, (taskQueue) =>
      Promise.all(
        BAD_INPUTS.map(async (c) => {
          const input = { ...c.input, nodeId: uniqueId('bad') };
          const handle = await env.client.workflow.start(provisionNode, {
            taskQueue,
            workflowId: provisionWorkflowId(input.nodeId),
            args: [input],
          });
          return { c, err: await failureOf(handle.result()) };
        }),
      ),
    );
    for (const { c, err } of failures) {
      expect((err.cause as ApplicationFailure).type, c.why).toBe('InvalidInput');
      expect(err.cause?.message, c.why).toMatch(new RegExp(`${c.field.replace(/\./g, '\\.')}: `));
    }
    expect(fake.calls).toEqual([]);
  });

  it('rejects a retry policy whose maximum interval is below its initial interval', async () => {
    const fake = createFakeActivities();
    const input = sampleInput(uniqueId(), {
      retry: { initialIntervalMs: 5000, maximumIntervalMs: 100, maximumAttempts: 3 },
    });
    const err = await provision(fake, input, (h) => failureOf(h.result()));
    expect((err.cause as ApplicationFailure).type).toBe('InvalidInput');
    expect(err.cause?.message).toMatch(/retry\.maximumIntervalMs/);
    expect(fake.calls).toEqual([]);
  });

  it('retries a transient failure and succeeds', async () => {
    const fake = createFakeActivities({ startSpireAgent: failWith('AgentUnhealthy', 2) });
    const receipt = await provision(fake, sampleInput(uniqueId()), (h) => h.result());
    expect(receipt.nodeAliasId).toMatch(/^spiffe:\/\/example\.org\/node\//);
    expect(fake.calls.filter((c) => c.name === 'startSpireAgent').map((c) => c.attempt)).toEqual([1, 2, 3]);
    expect(fake.undos()).toEqual([]);
  });

  it('compensates once a transient failure exhausts its retries', async () => {
    const fake = createFakeActivities({ gatePeerHealth: failWith('PeerHandshakeTimeout') });
    const err = await provision(fake, sampleInput(uniqueId()), (h) => failureOf(h.result()));
    expectStepFailureChain(err, 'PeerHandshakeTimeout', 'gatePeerHealth');
    expect(fake.count('gatePeerHealth')).toBe(3);
    expect(fake.undos().map((c) => c.name)).toEqual(['undoIssueOverlayKey', 'undoInstallOverlay']);
  });

  it('compensates a permanent failure at step 4: undoes 4, 2, 1 in reverse (no undo for the gate)', async () => {
    const fake = createFakeActivities({ startSpireAgent: failWith('ToolMissing') });
    const { err, status } = await provision(fake, sampleInput(uniqueId()), async (h) => ({
      err: await failureOf(h.result()),
      status: await statusOf(h),
    }));

    const { top } = expectStepFailureChain(err, 'ToolMissing', 'startSpireAgent');
    expect(top.message).toMatch(/^startSpireAgent failed \(ToolMissing\): fake ToolMissing/);
    expect(top.message).toMatch(/undone: startSpireAgent, issueOverlayKey, installOverlay/);
    expect(fake.count('startSpireAgent')).toBe(1); // not retried
    expect(fake.names()).toEqual([
      'installOverlay',
      'issueOverlayKey',
      'gatePeerHealth',
      'startSpireAgent',
      'undoStartSpireAgent',
      'undoIssueOverlayKey',
      'undoInstallOverlay',
    ]);
    expect(fake.undos().every((c) => c.reason === 'failure')).toBe(true);

    expect(status.state).toBe('compensated');
    expect(status.lastFailure).toMatchObject({ step: 'startSpireAgent', type: 'ToolMissing' });
    expect(status.steps.map((s) => s.state)).toEqual([
      'compensated',
      'compensated',
      'succeeded',
      'compensated',
      'pending',
      'pending',
    ]);
    const kinds = fake.events.map((e) => `${e.step}:${e.kind}`);
    expect(kinds).toContain('startSpireAgent:failed');
    expect(kinds).toContain('installOverlay:compensated');
    expect(kinds.at(-1)).toBe('workflow:compensated');
  });

  it("passes reason 'security' to every undo on a security failure", async () => {
    const fake = createFakeActivities({ startSpireAgent: failWith('AttestationRejected') });
    const err = await provision(fake, sampleInput(uniqueId()), (h) => failureOf(h.result()));
    expectStepFailureChain(err, 'AttestationRejected', 'startSpireAgent');
    expect(fake.count('startSpireAgent')).toBe(1);
    expect(fake.undos().map((c) => [c.name, c.reason])).toEqual([
      ['undoStartSpireAgent', 'security'],
      ['undoIssueOverlayKey', 'security'],
      ['undoInstallOverlay', 'security'],
    ]);
  });

  it('logs a failing undo, still runs the others, and rethrows the original failure', async () => {
    const fake = createFakeActivities({
      registerEntries: failWith('EntryRejected'),
      undoStartSpireAgent: failWith('ToolMissing'),
    });
    const { err, status } = await provision(fake, sampleInput(uniqueId()), async (h) => ({
      err: await failureOf(h.result()),
      status: await statusOf(h),
    }));

    const { top } = expectStepFailureChain(err, 'EntryRejected', 'registerEntries');
    expect(top.message).toMatch(/undo failed: startSpireAgent \(ToolMissing\)/);
    expect(fake.undos().map((c) => c.name)).toEqual([
      'undoRegisterEntries',
      'undoStartSpireAgent',
      'undoIssueOverlayKey',
      'undoInstallOverlay',
    ]);
    expect(status.state).toBe('failed');
    expect(status.steps.find((s) => s.step === 'startSpireAgent')).toMatchObject({
      state: 'compensation_failed',
      undo: { reason: 'failure', error: { type: 'ToolMissing' } },
    });
    expect(
      fake.events.some(
        (e) => e.step === 'startSpireAgent' && e.kind === 'compensation_failed' && e.errorType === 'ToolMissing',
      ),
    ).toBe(true);
  });

  it('never compensates a step twice, even when it ran twice', async () => {
    // Held twice on the same step (retried once), then compensated.
    const fake = createFakeActivities({ startSpireAgent: failWith('ToolMissing') });
    const { err } = await provision(fake, sampleInput(uniqueId(), { onFailure: 'hold' }), async (h) => {
      await untilState(h, 'held');
      await h.executeUpdate(decideUpdate, { args: [{ action: 'retry' }] });
      await eventually(async () => (await statusOf(h)).steps[3]!.runs === 2 && (await statusOf(h)).state === 'held', {
        what: 'second hold',
      });
      await h.executeUpdate(decideUpdate, { args: [{ action: 'compensate' }] });
      return { err: await failureOf(h.result()) };
    });
    expectStepFailureChain(err, 'ToolMissing', 'startSpireAgent');
    expect(fake.count('startSpireAgent')).toBe(2);
    const undoNames = fake.undos().map((c) => c.name);
    expect(undoNames).toEqual(['undoStartSpireAgent', 'undoIssueOverlayKey', 'undoInstallOverlay']);
    expect(new Set(undoNames).size).toBe(undoNames.length);
  });

  it('holds a permanent failure; a retry decision re-runs the failed step and continues', async () => {
    const fake = createFakeActivities({ startSpireAgent: failWith('ToolMissing', 1) });
    const nodeId = uniqueId();
    const { receipt, held, listed, cleared } = await provision(
      fake,
      sampleInput(nodeId, { onFailure: 'hold' }),
      async (h) => {
        const held = await untilState(h, 'held');
        // Visibility is eventually consistent: poll the list query.
        const listed = await eventually(
          async () => {
            for await (const wf of env.client.workflow.list({
              query: `FailedStep="startSpireAgent" AND NodeId="${nodeId}"`,
            }))
              return wf;
            return undefined;
          },
          { what: 'FailedStep in visibility' },
        );

        await expect(h.executeUpdate(decideUpdate, { args: [{ action: 'nuke' as 'retry' }] })).rejects.toBeInstanceOf(
          WorkflowUpdateFailedError,
        );
        const ack = await h.executeUpdate(decideUpdate, { args: [{ action: 'retry' }] });
        expect(ack).toEqual({ action: 'retry', step: 'startSpireAgent' });
        const receipt = await h.result();
        const cleared = (await h.describe()).typedSearchAttributes;
        return { receipt, held, listed, cleared };
      },
    );

    expect(held).toMatchObject({
      state: 'held',
      heldStep: 'startSpireAgent',
      lastFailure: { step: 'startSpireAgent', type: 'ToolMissing' },
    });
    expect(listed.workflowId).toBe(`provision/${nodeId}`);
    expect(listed.typedSearchAttributes.get(ErrorTypeKey)).toBe('ToolMissing');
    expect(receipt.nodeId).toBe(nodeId);
    expect(fake.names()).toEqual([
      'installOverlay',
      'issueOverlayKey',
      'gatePeerHealth',
      'startSpireAgent',
      'startSpireAgent',
      'registerEntries',
      'launchWorkloads',
    ]);
    expect(fake.undos()).toEqual([]);
    expect(cleared.get(FailedStepKey)).toBeUndefined();
    // Named at its failure (well within reportStepAfter), the run follows each step after it.
    expect(cleared.get(BootstrapStepKey)).toBe('launchWorkloads');
    expect(fake.events.map((e) => `${e.step}:${e.kind}`)).toEqual(
      expect.arrayContaining(['startSpireAgent:held', 'startSpireAgent:decision']),
    );
  });

  it('holds a permanent failure; a compensate decision undoes and fails with the original type', async () => {
    const fake = createFakeActivities({ registerEntries: failWith('EntryRejected') });
    const { err, rejected } = await provision(fake, sampleInput(uniqueId(), { onFailure: 'hold' }), async (h) => {
      // Nothing to decide while running.
      const rejected = await h.executeUpdate(decideUpdate, { args: [{ action: 'retry' }] }).then(
        () => false,
        (e: unknown) => e instanceof WorkflowUpdateFailedError,
      );
      await untilState(h, 'held');
      expect(fake.undos()).toEqual([]);
      await h.executeUpdate(decideUpdate, { args: [{ action: 'compensate' }] });
      return { err: await failureOf(h.result()), rejected };
    });
    expect(rejected).toBe(true);
    expectStepFailureChain(err, 'EntryRejected', 'registerEntries');
    expect(fake.undos().map((c) => [c.name, c.reason])).toEqual([
      ['undoRegisterEntries', 'failure'],
      ['undoStartSpireAgent', 'failure'],
      ['undoIssueOverlayKey', 'failure'],
      ['undoInstallOverlay', 'failure'],
    ]);
  });

  it('does not hold a security failure: it compensates at once', async () => {
    const fake = createFakeActivities({ launchWorkloads: failWith('SvidInvalid') });
    const err = await provision(fake, sampleInput(uniqueId(), { onFailure: 'hold' }), (h) => failureOf(h.result()));
    expectStepFailureChain(err, 'SvidInvalid', 'launchWorkloads');
    expect(fake.undos().map((c) => c.reason)).toEqual(['security', 'security', 'security', 'security', 'security']);
  });

  it('compensates when cancelled mid-step, after the step acknowledged the cancellation', async () => {
    const fake = createFakeActivities({ launchWorkloads: blockUntilCancelled('launchWorkloads') });
    const { err, status } = await provision(fake, sampleInput(uniqueId()), async (h) => {
      await fake.entered('launchWorkloads');
      await h.cancel();
      return { err: await failureOf(h.result()), status: await statusOf(h) };
    });
    expect(err.cause).toBeInstanceOf(CancelledFailure);
    expect(fake.undos().map((c) => [c.name, c.reason])).toEqual([
      ['undoLaunchWorkloads', 'cancel'],
      ['undoRegisterEntries', 'cancel'],
      ['undoStartSpireAgent', 'cancel'],
      ['undoIssueOverlayKey', 'cancel'],
      ['undoInstallOverlay', 'cancel'],
    ]);
    // The step stopped before its undo ran.
    expect(fake.timeline.indexOf('launchWorkloads:cancelled')).toBeGreaterThan(-1);
    expect(fake.timeline.indexOf('launchWorkloads:cancelled')).toBeLessThan(
      fake.timeline.indexOf('undoLaunchWorkloads'),
    );
    expect(status.state).toBe('compensated');
    expect(status.lastFailure).toMatchObject({ step: 'launchWorkloads', type: 'Cancelled' });
  });

  it('compensates when cancelled while held', async () => {
    const fake = createFakeActivities({ issueOverlayKey: failWith('PoolExhausted') });
    const err = await provision(fake, sampleInput(uniqueId(), { onFailure: 'hold' }), async (h) => {
      await untilState(h, 'held');
      await h.cancel();
      return failureOf(h.result());
    });
    expect(err.cause).toBeInstanceOf(CancelledFailure);
    expect(fake.undos().map((c) => [c.name, c.reason])).toEqual([
      ['undoIssueOverlayKey', 'cancel'],
      ['undoInstallOverlay', 'cancel'],
    ]);
  });

  it('keeps going when the ledger is down', async () => {
    const fake = createFakeActivities({ recordEvent: failWith('LedgerUnavailable') });
    // One attempt each: the server's retry timers would make this test slow, not different.
    const input = sampleInput(uniqueId(), {
      retry: { initialIntervalMs: 10, maximumIntervalMs: 50, maximumAttempts: 1 },
    });
    const receipt = await provision(fake, input, (h) => h.result());
    expect(receipt.workloads).toHaveLength(2);
    expect(fake.names()).toEqual(STEP_CALLS);
  });

  it('shows FailedStep and ErrorType in visibility after a compensated failure', async () => {
    const fake = createFakeActivities({ startSpireAgent: failWith('AttestationRejected') });
    const nodeId = uniqueId();
    await provision(fake, sampleInput(nodeId), (h) => failureOf(h.result()));
    const found = await eventually(
      async () => {
        for await (const wf of env.client.workflow.list({
          query: `FailedStep="startSpireAgent" AND ErrorType="AttestationRejected" AND NodeId="${nodeId}"`,
        })) {
          if (wf.status.name === 'FAILED') return wf;
        }
        return undefined;
      },
      { what: 'the failed run in visibility' },
    );
    expect(found.workflowId).toBe(`provision/${nodeId}`);
    expect(found.typedSearchAttributes.get(SegmentKey)).toBe('lab');
    // It ended before timeouts.reportStepAfter, and names the step it failed at.
    expect(found.typedSearchAttributes.get(BootstrapStepKey)).toBe('startSpireAgent');
  });

  it('names its step in BootstrapStep once it has run timeouts.reportStepAfter, and each step after', async () => {
    // gatePeerHealth takes 2.5 s: the run passes reportStepAfter (1 s) inside it.
    const fake = createFakeActivities({ gatePeerHealth: () => new Promise((resolve) => setTimeout(resolve, 2_500)) });
    const input = sampleInput(uniqueId());
    input.timeouts = { ...input.timeouts, reportStepAfter: 1 };
    const { during, history } = await provision(fake, input, async (h) => {
      await fake.entered('gatePeerHealth');
      const during = await eventually(async () => (await h.describe()).typedSearchAttributes.get(BootstrapStepKey), {
        timeoutMs: 5_000,
        what: 'BootstrapStep set',
      });
      await h.result();
      return { during, history: await h.fetchHistory() };
    });
    expect(during).toBe('gatePeerHealth');
    // From the history: no step named before the timer fired, then the step it fired in and each one after.
    const named = (history.events ?? []).flatMap((e) => {
      if (e.timerFiredEventAttributes) return ['(timer fired)'];
      const field = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.BootstrapStep;
      return field ? [defaultPayloadConverter.fromPayload<string>(field)] : [];
    });
    expect(named).toEqual(['(timer fired)', 'gatePeerHealth', 'startSpireAgent', 'registerEntries', 'launchWorkloads']);
  });
});

describe('decommissionNode', () => {
  function decommission<T>(
    fake: FakeActivities,
    input: ProvisionInputJson,
    fn: (h: WorkflowHandle<typeof decommissionNode>) => Promise<T>,
  ) {
    return withWorker(env, { workflowsPath, activities: fake.activities }, async (taskQueue) =>
      fn(
        await env.client.workflow.start(decommissionNode, {
          taskQueue,
          workflowId: decommissionWorkflowId(input.nodeId),
          args: [input],
        }),
      ),
    );
  }

  it("runs every undo in reverse runbook order with reason 'decommission'", async () => {
    const fake = createFakeActivities();
    const nodeId = uniqueId();
    const result = await decommission(fake, sampleInput(nodeId), (h) => h.result());
    expect(fake.names()).toEqual([
      'undoLaunchWorkloads',
      'undoRegisterEntries',
      'undoStartSpireAgent',
      'undoIssueOverlayKey',
      'undoInstallOverlay',
    ]);
    expect(fake.undos().every((c) => c.reason === 'decommission')).toBe(true);
    expect(result).toMatchObject({ nodeId, workflowId: `decommission/${nodeId}` });
    expect(result.removed.startSpireAgent).toEqual([`undoStartSpireAgent:${nodeId}`]);
  });

  it('runs the other undos when one fails, then fails saying it is safe to run again', async () => {
    const fake = createFakeActivities({ undoRegisterEntries: failWith('SpireServerUnavailable') });
    const err = await decommission(fake, sampleInput(uniqueId()), (h) => failureOf(h.result()));
    expect(fake.names().filter((n) => n !== 'undoRegisterEntries')).toEqual([
      'undoLaunchWorkloads',
      'undoStartSpireAgent',
      'undoIssueOverlayKey',
      'undoInstallOverlay',
    ]);
    expect(fake.count('undoRegisterEntries')).toBe(3); // transient: retried by policy
    expect((err.cause as ApplicationFailure).type).toBe('SpireServerUnavailable');
    expect(err.cause?.message).toMatch(/safe to run again/);
  });
});
