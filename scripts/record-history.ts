/**
 * Record workflow histories for the replay test (test/replay/provision-replay.test.ts).
 *
 *   npx tsx scripts/record-history.ts [--only name,name]
 *
 * Starts a throwaway dev server, runs each scenario with the in-memory fake
 * activities, and writes each run's history to test/replay/histories/<name>.json
 * (the same JSON `temporal workflow show --output json` prints, so histories
 * from real runs can be dropped in too). Re-record only on purpose: a workflow
 * change that breaks replay of the committed histories would break runs in flight.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import {
  decommissionWorkflowId,
  fleetWorkflowId,
  maintainWorkflowId,
  provisionWorkflowId,
  rotateWorkflowId,
} from '../common/ids.js';
import type { LinkCheck } from '../common/health.js';
import { maintainStatusQuery } from '../common/maintain.js';
import { startDevServer } from '../lab/temporal.js';
import {
  blockUntilCancelled,
  createFakeActivities,
  failWith,
  type FakeActivities,
} from '../test/fixtures/fake-activities.js';
import { sampleInput } from '../test/fixtures/inputs.js';
import { historyToJson } from '../test/replay/history-json.js';
import { connectEnv, eventually, uniqueId, withWorker, type TemporalTestEnv } from '../test/helpers/temporal.js';
import { decideUpdate, statusQuery } from '../common/definitions.js';
import {
  decommissionNode,
  maintainFleet,
  maintainNode,
  provisionFleet,
  provisionNode,
  rotateOverlayKey,
} from '../workflows/index.js';
import { fleetMaintenanceQuery } from '../common/maintain-fleet.js';
import { fleetDecideUpdate } from '../workflows/maintain-fleet.js';
import type { DependencyHealth } from '../activities/types.js';
import { createFleetFakes } from '../test/fixtures/fleet-activities.js';
import { createFakeRotation } from '../test/fixtures/rotation-activities.js';

const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
const outDir = fileURLToPath(new URL('../test/replay/histories/', import.meta.url));

interface Scenario {
  name: string;
  fake: () => FakeActivities;
  run: (env: TemporalTestEnv, taskQueue: string, fake: FakeActivities) => Promise<WorkflowHandle>;
}

/** A broken link as checkNode reports it (for the maintainNode scenarios). */
const brokenLink = (link: string, step: LinkCheck['step'], security = false): LinkCheck => ({
  link,
  kind: link.split(':')[0] as LinkCheck['kind'],
  status: 'broken',
  step,
  detail: `fake: ${link} broken`,
  ...(security ? { security: true } : {}),
  evidence: {},
});

/** A healthy check whose overlayKey evidence says since when the node holds its key. */
const healthyWithKeySince = (keyRecordedAt: string): FakeActivities['healthReports'][number] => ({
  status: 'ok',
  links: [
    {
      link: 'overlayKey',
      kind: 'overlayKey',
      status: 'ok',
      step: 'issueOverlayKey',
      detail: 'fake: the recorded key',
      evidence: { keyRecordedAt },
    },
  ],
});

/** The fake activities plus maintainFleet's: every node provisioned, the shared dependencies as given. */
function fleetMaintenanceFake(
  fake: FakeActivities,
  nodeIds: () => string[],
  dependencies: DependencyHealth,
): FakeActivities {
  return Object.assign(fake, {
    activities: {
      ...fake.activities,
      checkFleetDependencies: async () => dependencies,
      listProvisionedNodes: async () => nodeIds().map((nodeId) => ({ nodeId, segment: 'default' })),
    },
  });
}

const settle = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    () => undefined,
  );

/**
 * A scenario's `run` for one fresh node: starts `workflow` with the id and the
 * arguments made from a new node id, then `then` drives the run to its end
 * (by default: wait for the result, failing the recording if the run fails).
 */
function runForNode<A>(
  workflow: (arg: A) => Promise<unknown>,
  workflowIdOf: (nodeId: string) => string,
  argOf: (nodeId: string) => A,
  then: (h: WorkflowHandle, fake: FakeActivities) => Promise<unknown> = (h) => h.result(),
): Scenario['run'] {
  return async (env, taskQueue, fake) => {
    const nodeId = uniqueId('replay');
    const h = await env.client.workflow.start(workflow, {
      taskQueue,
      workflowId: workflowIdOf(nodeId),
      args: [argOf(nodeId)],
    });
    await then(h, fake);
    return h;
  };
}

/** A plain successful provisionNode run. */
const provisionToTheEnd = runForNode(provisionNode, provisionWorkflowId, sampleInput);

/** The nodes of the last fleetOf() (the fake ledger lists them as provisioned). */
let fleetNodes: { nodeId: string; nodeDir: string }[] = [];

function fleetOf(n: number, overlay: { maxKeyAgeDays?: number } = {}) {
  const fleetId = uniqueId('replay');
  const { nodeId: _n, ...template } = sampleInput('template');
  const defaults = { ...template, overlay: { ...template.overlay, ...overlay } };
  fleetNodes = Array.from({ length: n }, (_, i) => ({
    nodeId: `${fleetId}-n${i + 1}`,
    nodeDir: `/var/lib/node-bootstrap/${fleetId}-n${i + 1}`,
  }));
  return { fleetId, defaults, nodes: fleetNodes };
}

/** Three nodes through a window of two, one fails for good (the fleet parent's histories). */
const fleetThreeNodes: Omit<Scenario, 'name'> = {
  fake: () => {
    const fakes = createFleetFakes();
    fakes.failNode = (nodeId) => (nodeId.endsWith('-n2') ? 'EntryRejected' : undefined);
    return { ...fakes.fake, activities: fakes.activities };
  },
  async run(env, taskQueue) {
    const fleetId = uniqueId('replay');
    const { nodeId: _n, ...defaults } = sampleInput('template', {
      retry: { initialIntervalMs: 10, maximumIntervalMs: 50, maximumAttempts: 1 },
    });
    const nodes = [1, 2, 3].map((i) => ({
      nodeId: `${fleetId}-n${i}`,
      nodeDir: `/var/lib/node-bootstrap/${fleetId}-n${i}`,
    }));
    const h = await env.client.workflow.start(provisionFleet, {
      taskQueue,
      workflowId: fleetWorkflowId(fleetId),
      args: [{ fleetId, defaults, nodes, window: 2, failureBudget: { maxFailed: 1 } }],
    });
    await h.result();
    return h;
  },
};

const scenarios: Scenario[] = [
  {
    name: 'provision-success',
    fake: () => createFakeActivities(),
    run: provisionToTheEnd,
  },
  {
    name: 'provision-compensated',
    fake: () =>
      createFakeActivities({ startSpireAgent: failWith('ToolMissing'), undoIssueOverlayKey: failWith('ToolMissing') }),
    run: runForNode(provisionNode, provisionWorkflowId, sampleInput, (h) => settle(h.result())),
  },
  {
    name: 'provision-hold-retry',
    fake: () => createFakeActivities({ registerEntries: failWith('EntryRejected', 1) }),
    run: runForNode(
      provisionNode,
      provisionWorkflowId,
      (nodeId) => sampleInput(nodeId, { onFailure: 'hold' }),
      async (h) => {
        await eventually(async () => (await h.query(statusQuery)).state === 'held', { what: 'held' });
        await h.executeUpdate(decideUpdate, { args: [{ action: 'retry' }] });
        await h.result();
      },
    ),
  },
  {
    name: 'provision-cancelled',
    fake: () => createFakeActivities({ launchWorkloads: blockUntilCancelled('launchWorkloads') }),
    run: runForNode(provisionNode, provisionWorkflowId, sampleInput, async (h, fake) => {
      await fake.entered('launchWorkloads');
      await h.cancel();
      await settle(h.result());
    }),
  },
  {
    // After LEDGER_LOCAL_PATCH: ledger events as local activities (markers in history).
    name: 'provision-success-local-ledger',
    fake: () => createFakeActivities(),
    run: provisionToTheEnd,
  },
  {
    // After LEAN_RUN_PATCH: one patch marker, ledger events batched one local activity per workflow task.
    name: 'provision-success-lean',
    fake: () => createFakeActivities(),
    run: provisionToTheEnd,
  },
  {
    // After LEAN_RUN_PATCH, failing and compensating: the deferred "succeeded" events go out with the failure.
    name: 'provision-compensated-lean',
    fake: () =>
      createFakeActivities({ startSpireAgent: failWith('ToolMissing'), undoIssueOverlayKey: failWith('ToolMissing') }),
    run: runForNode(provisionNode, provisionWorkflowId, sampleInput, (h) => settle(h.result())),
  },
  {
    // After LEAN_RUN_2_PATCH: the steps write the step events; local activities for the preflight and the run's end only.
    name: 'provision-success-lean-2',
    fake: () => createFakeActivities(),
    run: provisionToTheEnd,
  },
  {
    // After LEAN_RUN_2_PATCH, failing and compensating: the events handed to the failed step go out again with its failure.
    name: 'provision-compensated-lean-2',
    fake: () =>
      createFakeActivities({ startSpireAgent: failWith('ToolMissing'), undoIssueOverlayKey: failWith('ToolMissing') }),
    run: runForNode(provisionNode, provisionWorkflowId, sampleInput, (h) => settle(h.result())),
  },
  {
    // The fleet parent: three nodes through a window of two, one fails for good.
    name: 'fleet-three-nodes',
    ...fleetThreeNodes,
  },
  {
    // After CHILD_SEARCH_ATTRIBUTES_PATCH: the same fleet, children started with NodeId and Segment set.
    name: 'fleet-three-nodes-child-attributes',
    ...fleetThreeNodes,
  },
  {
    // rotateOverlayKey: all five stages.
    name: 'rotate-success',
    fake: () => createFakeRotation(),
    run: runForNode(rotateOverlayKey, rotateWorkflowId, (nodeId) => ({
      input: sampleInput(nodeId),
      handshakeTimeoutSeconds: 10,
    })),
  },
  {
    // rotateOverlayKey: the new key does not handshake; rolled back to the old one.
    name: 'rotate-rolled-back',
    fake: () => createFakeRotation({ fail: { stage: 'rotateVerify', type: 'PeerHandshakeTimeout' } }),
    run: runForNode(
      rotateOverlayKey,
      rotateWorkflowId,
      (nodeId) => ({ input: sampleInput(nodeId), handshakeTimeoutSeconds: 10 }),
      (h) => settle(h.result()),
    ),
  },
  {
    // maintainNode: the hub lost the node's peer; steps 2-3 re-run; the next check is healthy.
    name: 'maintain-repair',
    fake: () => {
      const fake = createFakeActivities();
      fake.healthReports.push({ status: 'broken', links: [brokenLink('hubPeer:hub', 'issueOverlayKey')] });
      return fake;
    },
    run: runForNode(maintainNode, maintainWorkflowId, (nodeId) => ({ provision: sampleInput(nodeId) })),
  },
  {
    // maintainNode: a foreign key on the interface holds the run; the operator retries; healthy.
    name: 'maintain-security-hold',
    fake: () => {
      const fake = createFakeActivities();
      fake.healthReports.push({ status: 'broken', links: [brokenLink('overlayKey', 'issueOverlayKey', true)] });
      return fake;
    },
    run: runForNode(
      maintainNode,
      maintainWorkflowId,
      (nodeId) => ({ provision: sampleInput(nodeId) }),
      async (h) => {
        await eventually(async () => (await h.query(maintainStatusQuery)).state === 'held', { what: 'held' });
        await h.executeUpdate(decideUpdate, { args: [{ action: 'retry' }] });
        await h.result();
      },
    ),
  },
  {
    // maintainFleet: three nodes checked, one broken: one child maintainNode repairs it (steps 2-3).
    name: 'maintain-fleet-repair',
    fake: () => {
      const fake = createFakeActivities();
      // The fleet's three checks (one broken), then the child's first check (broken), then ok.
      fake.healthReports.push(
        { status: 'broken', links: [brokenLink('hubPeer:hub', 'issueOverlayKey')] },
        { status: 'ok', links: [] },
        { status: 'ok', links: [] },
      );
      fake.healthReports.push({ status: 'broken', links: [brokenLink('hubPeer:hub', 'issueOverlayKey')] });
      return fleetMaintenanceFake(fake, () => fleetNodes.map((n) => n.nodeId), {
        healthy: true,
        dependencies: [{ name: 'spire-server', healthy: true }],
      });
    },
    async run(env, taskQueue) {
      const h = await env.client.workflow.start(maintainFleet, {
        taskQueue,
        workflowId: uniqueId('maintain-fleet-replay'),
        args: [{ fleet: fleetOf(3), budget: { maxBrokenPercent: 50, maxConcurrentRepairs: 1 } }],
      });
      await h.result();
      return h;
    },
  },
  {
    // maintainFleet: two healthy nodes, keys limited to 7 days; n1's is 31 days old (the fake check
    // is dated 2030-01-01; checked one at a time), n2's half a day: one child rotateOverlayKey rotates n1, nothing else.
    name: 'maintain-fleet-rotate',
    fake: () => {
      const fake = createFakeRotation();
      fake.healthReports.push(
        healthyWithKeySince('2029-12-01T00:00:00.000Z'),
        healthyWithKeySince('2029-12-31T12:00:00.000Z'),
      );
      return fleetMaintenanceFake(fake, () => fleetNodes.map((n) => n.nodeId), {
        healthy: true,
        dependencies: [{ name: 'spire-server', healthy: true }],
      });
    },
    async run(env, taskQueue) {
      const fleet = fleetOf(2, { maxKeyAgeDays: 7 });
      const h = await env.client.workflow.start(maintainFleet, {
        taskQueue,
        workflowId: uniqueId('maintain-fleet-replay'),
        args: [{ fleet, handshakeTimeoutSeconds: 10, checkWindow: 1 }], // one check at a time: the reports in order
      });
      const r = await h.result();
      const rotated = r.nodes.filter((n) => n.rotation).map((n) => [n.nodeId, n.rotation!.outcome]);
      if (JSON.stringify(rotated) !== JSON.stringify([[fleetNodes[0]!.nodeId, 'rotated']]))
        throw new Error(`maintain-fleet-rotate: expected only n1 rotated, got ${JSON.stringify(rotated)}`);
      return h;
    },
  },
  {
    // maintainFleet: the SPIRE server is down: hold, check and repair nothing; the operator stops it.
    name: 'maintain-fleet-dependency-hold',
    fake: () =>
      fleetMaintenanceFake(createFakeActivities(), () => fleetNodes.map((n) => n.nodeId), {
        healthy: false,
        dependencies: [{ name: 'spire-server', healthy: false, detail: 'fake: not serving' }],
      }),
    async run(env, taskQueue) {
      const h = await env.client.workflow.start(maintainFleet, {
        taskQueue,
        workflowId: uniqueId('maintain-fleet-replay'),
        args: [{ fleet: fleetOf(2) }],
      });
      await eventually(async () => (await h.query(fleetMaintenanceQuery)).state === 'held', { what: 'held' });
      await h.executeUpdate(fleetDecideUpdate, { args: [{ action: 'compensate' }] });
      await h.result();
      return h;
    },
  },
  {
    name: 'decommission',
    fake: () => createFakeActivities(),
    run: runForNode(decommissionNode, decommissionWorkflowId, sampleInput),
  },
];

const { values } = parseArgs({ options: { only: { type: 'string' } } });
const only = values.only ? new Set(values.only.split(',')) : null;

const server = await startDevServer({ headless: true });
const env = await connectEnv(server.address, server.namespace);
try {
  mkdirSync(outDir, { recursive: true });
  for (const s of scenarios.filter((x) => !only || only.has(x.name))) {
    const fake = s.fake();
    const handle = await withWorker(env, { workflowsPath, activities: fake.activities }, (taskQueue) =>
      s.run(env, taskQueue, fake),
    );
    const history = await handle.fetchHistory();
    writeFileSync(`${outDir}${s.name}.json`, `${JSON.stringify(JSON.parse(historyToJson(history)), null, 1)}\n`);
    console.log(`recorded ${s.name}: ${history.events?.length ?? 0} events`);
  }
} finally {
  await env.close();
  await server.stop();
}
