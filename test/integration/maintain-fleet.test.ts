/**
 * Fleet maintenance on real components: two lab nodes provisioned as a fleet,
 * then `nodeboot health` / `fleet health` (exit codes, --json naming the
 * broken link and its step), the remediation budget (one node of two broken
 * is over a 30 % budget: hold, repair nothing; under a 60 % one the scheduled
 * run repairs it with one child maintainNode), the per-node gauges, and a
 * broken shared dependency (the SPIRE server stopped) under the Temporal
 * Schedule: the run holds, checks no node and repairs none. And key rotation
 * from the schedule: a node whose key is older than its overlay.maxKeyAgeDays
 * (the ledger's record backdated) gets a new key; the next run leaves it be.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import pg from 'pg';
import { keyFingerprint } from '../../inventory/index.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import { processAlive } from '../../activities/host/transport.js';
import { readPidFile } from '../../activities/host/process.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import { startProvisioning } from '../../client/provision.js';
import { deleteFleetMaintenance, scheduleFleetMaintenance } from '../../client/schedule.js';
import type { FleetInputJson } from '../../common/fleet.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import {
  fleetMaintenanceQuery,
  type FleetMaintainResult,
  type MaintainFleetInput,
} from '../../common/maintain-fleet.js';
import { nodePaths } from '../../common/paths.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { stopSpireServerByDir } from '../../lab/spire-server.js';
import { metricsInterceptor, StepMetrics } from '../../workers/metrics.js';
import { fleetDecideUpdate } from '../../workflows/maintain-fleet.js';
import { describeRun, nodeboot } from '../fixtures/nodeboot-cli.js';
import { startLabSuite, stopLabSuite, type LabSuite } from '../helpers/lab-stack.js';
import { eventually, uniqueId, uniqueTaskQueue, type TemporalTestEnv } from '../helpers/temporal.js';

describe('fleet maintenance on real lab nodes', () => {
  let stack: LabSuite;
  const metrics = new StepMetrics();
  const taskQueue = uniqueTaskQueue('mfleet');
  const fleetId = uniqueId('mfleet');
  let raws: ProvisionInputJson[];
  let inputs: ProvisionInput[];
  let fleet: FleetInputJson;
  let fleetPath: string;
  let scheduleId: string | undefined;

  beforeAll(async () => {
    stack = await startLabSuite({ nodes: 2, ephemeral: true, trustDomain: 'mfleet.nodeboot.test' }, taskQueue, {
      interceptors: { activity: [metricsInterceptor(metrics)] },
    });
    raws = (['n1', 'n2'] as const).map((n, i) =>
      labProvisionInput(stack.lab, n, {
        nodeId: uniqueId(`mf${i + 1}`),
        workloads: [{ name: 'api', spiffePath: `/ns/mfleet/sa/api${i}`, uid: 62061 + i, port: 9451 + i }],
      }),
    );
    inputs = raws.map((r) => ProvisionInput.parse(r));
    fleet = { fleetId, nodes: raws as FleetInputJson['nodes'] };
    fleetPath = join(mkdtempSync(join(tmpdir(), 'nb-mfleet-')), 'fleet.json');
    writeFileSync(fleetPath, JSON.stringify(fleet));
  });

  afterAll(async () => {
    if (scheduleId) await deleteFleetMaintenance(stack.env.client, scheduleId).catch(() => undefined);
    await stopLabSuite(stack ?? {});
  });

  const cliEnv = () => ({
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: stack.env.namespace,
    TEMPORAL_TASK_QUEUE: taskQueue,
  });

  /** Activities scheduled and child workflows started in a run. */
  async function commands(h: WorkflowHandle) {
    const activities: Record<string, number> = {};
    const children: string[] = [];
    for (const e of (await h.fetchHistory()).events ?? []) {
      const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
      if (name) activities[name] = (activities[name] ?? 0) + 1;
      const child = e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId;
      if (child) children.push(child);
    }
    return { activities, children };
  }

  async function killWorkload(i: number) {
    const pid = (await readPidFile(
      stack.lab.nodeTransport(i === 0 ? 'n1' : 'n2'),
      nodePaths(inputs[i]!).workloadPid('api'),
    ))!;
    process.kill(pid, 'SIGKILL');
    await eventually(async () => !processAlive(pid), { what: 'the workload to die' });
  }

  const heldRun = (h: WorkflowHandle) =>
    eventually(
      async () => {
        const s = await h.query(fleetMaintenanceQuery).catch(() => undefined);
        return s?.state === 'held' ? s : undefined;
      },
      { what: 'the fleet run to hold', timeoutMs: 120_000 },
    );

  it('provisions two nodes; `nodeboot health` of a fresh node exits 0 with its key age, expiries and handshake age', async () => {
    await Promise.all(
      raws.map(async (r) => (await startProvisioning(stack.env.client, r, { taskQueue })).handle.result()),
    );
    const args = ['health', inputs[0]!.nodeId, '--json'];
    const r = await nodeboot(args, cliEnv(), { timeoutMs: 120_000 });
    expect(r.code, describeRun(args, r)).toBe(EXIT.OK);
    const [n] = r.json.nodes;
    expect(n).toMatchObject({ nodeId: inputs[0]!.nodeId, status: 'ok', broken: [] });
    expect(n.keyAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(n.agentSvidSecondsLeft).toBeGreaterThan(0);
    expect(n.workloadSvids).toEqual([{ name: 'api', secondsLeft: expect.any(Number) }]);
    expect(n.lastHandshakeAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(n.soonestExpirySeconds).toBeGreaterThan(0);
    // The worker's gauges saw that check.
    const text = metrics.render();
    expect(text).toContain(`nodeboot_node_health{node="${inputs[0]!.nodeId}",status="ok"} 1`);
    expect(
      Number(
        new RegExp(`nodeboot_node_soonest_expiry_seconds\\{node="${inputs[0]!.nodeId}"\\} (\\d+)`).exec(text)?.[1],
      ),
    ).toBeGreaterThan(0);
  });

  it('a killed workload: `health` exits 10 naming the link and its step; `fleet health` tells the broken node from the healthy one', async () => {
    await killWorkload(0);
    const args = ['health', inputs[0]!.nodeId, '--json'];
    const r = await nodeboot(args, cliEnv(), { timeoutMs: 120_000 });
    expect(r.code, describeRun(args, r)).toBe(EXIT.UNHEALTHY);
    expect(r.json.nodes[0].broken).toContainEqual(
      expect.objectContaining({ link: 'workload:api', step: 'launchWorkloads' }),
    );
    const fargs = ['fleet', 'health', fleetId, '--input', fleetPath, '--json'];
    const f = await nodeboot(fargs, cliEnv(), { timeoutMs: 120_000 });
    expect(f.code, describeRun(fargs, f)).toBe(EXIT.UNHEALTHY);
    expect(f.json.nodes.map((n: { nodeId: string; status: string }) => [n.nodeId, n.status])).toEqual([
      [inputs[0]!.nodeId, 'broken'],
      [inputs[1]!.nodeId, 'ok'],
    ]);
    expect(metrics.render()).toContain(`nodeboot_node_health{node="${inputs[0]!.nodeId}",status="broken"} 1`);
  });

  it('one node of two broken is over a 30 % budget: the run holds and repairs nothing', async () => {
    const input: MaintainFleetInput = { fleet, budget: { maxBrokenPercent: 30 } };
    const h = await stack.env.client.workflow.start('maintainFleet', {
      workflowId: uniqueId('mfleet-budget'),
      taskQueue,
      args: [input],
    });
    const s = await heldRun(h);
    expect(s.heldFor?.reason).toBe('over-budget');
    expect([s.checked, s.broken, s.repairsStarted]).toEqual([2, 1, 0]);
    const c = await commands(h);
    expect(c.children).toEqual([]);
    expect(c.activities.checkNode).toBe(2);
    expect(Object.keys(c.activities).sort()).toEqual(['checkFleetDependencies', 'checkNode', 'listProvisionedNodes']);
    expect(
      await processAlive((await readPidFile(stack.lab.nodeTransport('n1'), nodePaths(inputs[0]!).workloadPid('api')))!),
    ).toBe(false);
    await h.executeUpdate(fleetDecideUpdate, { args: [{ action: 'compensate' }] });
    expect(((await h.result()) as FleetMaintainResult).outcome).toBe('stopped');
  });

  it('the schedule (60 % budget), triggered now: one child maintainNode repairs the broken node, the healthy one is left alone', async () => {
    const created = await scheduleFleetMaintenance(stack.env.client, fleet, {
      every: '1h',
      taskQueue,
      budget: { maxBrokenPercent: 60, maxConcurrentRepairs: 1 },
    });
    scheduleId = created.scheduleId;
    expect(scheduleId).toBe(`maintain-fleet-${fleetId}`);
    await created.handle.trigger();
    const h = await scheduledRun(created.handle, 0);
    const result = (await h.result()) as FleetMaintainResult;
    expect(result.outcome).toBe('done');
    const c = await commands(h);
    expect(c.children).toEqual([`maintain/${inputs[0]!.nodeId}`]);
    expect(result.nodes.find((n) => n.nodeId === inputs[0]!.nodeId)?.repair?.health).toBe('healthy');
    expect(result.nodes.find((n) => n.nodeId === inputs[1]!.nodeId)?.repair).toBeUndefined();
    expect(result.rotationDue).toEqual([]);
    // Only the workload step was re-run, in the child.
    const child = await commands(stack.env.client.workflow.getHandle(`maintain/${inputs[0]!.nodeId}`));
    expect(child.activities.launchWorkloads).toBe(1);
    expect(child.activities.startSpireAgent ?? 0).toBe(0);
    expect(metrics.render()).toContain(`nodeboot_node_health{node="${inputs[0]!.nodeId}",status="ok"} 1`);
  });

  it('a key older than overlay.maxKeyAgeDays: the triggered schedule rotates it (new key on the interface, one hub peer); the next trigger does not', async () => {
    // The same nodes, n2 now with a 2-day key limit, under their own schedule. Its key is made
    // 3 days old honestly: the ledger's record of when the node got it (its first peering) is backdated.
    const aged = { ...raws[1]!, overlay: { ...raws[1]!.overlay, maxKeyAgeDays: 2 } } as ProvisionInputJson;
    const rotFleet = { fleetId: `${fleetId}-rot`, nodes: [raws[0]!, aged] as FleetInputJson['nodes'] };
    const node = inputs[1]!;
    const iface = nodePaths(node).interface;
    const oldKey = (await wg.publicKey(stack.lab.nodeTransport('n2'), iface))!;
    const pgc = new pg.Client({ connectionString: stack.db.url });
    await pgc.connect();
    try {
      expect((await pgc.query(`SELECT 1 FROM overlay_keys WHERE node_id = $1`, [node.nodeId])).rowCount).toBe(0);
      const r = await pgc.query(`UPDATE peers SET created_at = now() - interval '3 days' WHERE node_id = $1`, [
        node.nodeId,
      ]);
      expect(r.rowCount).toBeGreaterThan(0);
    } finally {
      await pgc.end();
    }
    const created = await scheduleFleetMaintenance(stack.env.client, rotFleet, {
      every: '1h',
      taskQueue,
      budget: { maxBrokenPercent: 60, maxConcurrentRepairs: 1 },
      handshakeTimeoutSeconds: 20,
    });
    try {
      await created.handle.trigger();
      const h = await scheduledRun(created.handle, 0);
      const result = (await h.result()) as FleetMaintainResult;
      expect(result.outcome).toBe('done');
      expect(result.rotationDue).toEqual([node.nodeId]);
      expect((await commands(h)).children).toEqual([`rotate/${node.nodeId}`]);
      const outcome = result.nodes.find((n) => n.nodeId === node.nodeId)!;
      expect(outcome.rotation).toMatchObject({ workflowId: `rotate/${node.nodeId}`, outcome: 'rotated' });
      expect(result.nodes.find((n) => n.nodeId === inputs[0]!.nodeId)?.rotation).toBeUndefined();

      // `wg show` in n2's namespace: a new key; the hub: exactly one peer for n2's address, with that key.
      const newKey = (await wg.publicKey(stack.lab.nodeTransport('n2'), iface))!;
      expect(newKey).not.toBe(oldKey);
      expect(keyFingerprint(newKey)).toBe(outcome.rotation!.fingerprint);
      const overlayIp = (await stack.ledger.getAllocation(node.nodeId, node.overlay.cidr))!;
      const hubPeers = (await wg.show(stack.lab.hubTransport(), stack.lab.hub.interface)).peers;
      expect(hubPeers.filter((p) => p.allowedIps.includes(`${overlayIp}/32`)).map((p) => p.publicKey)).toEqual([
        newKey,
      ]);
      expect(hubPeers.some((p) => p.publicKey === oldKey)).toBe(false);

      // The rotation reset the key's age (the ledger's rotation time): the next run rotates nothing.
      await created.handle.trigger();
      const h2 = await scheduledRun(created.handle, 1);
      const again = (await h2.result()) as FleetMaintainResult;
      expect(again.outcome).toBe('done');
      expect(again.rotationDue).toEqual([]);
      expect((await commands(h2)).children).toEqual([]);
      expect(await wg.publicKey(stack.lab.nodeTransport('n2'), iface)).toBe(newKey);
    } finally {
      await deleteFleetMaintenance(stack.env.client, created.scheduleId).catch(() => undefined);
    }
  });

  it('the SPIRE server stopped under the scheduled check: the run holds, checks no node, repairs none', async () => {
    const eventsBefore = await Promise.all(inputs.map(async (i) => (await stack.ledger.listEvents(i.nodeId)).length));
    await stopSpireServerByDir(stack.lab.spire!.dataDir);
    const handle = stack.env.client.schedule.getHandle(scheduleId!);
    await handle.trigger();
    const h = await scheduledRun(handle, 1);
    const s = await heldRun(h);
    expect(s.heldFor?.reason).toBe('dependency-down');
    expect(s.down.map((d) => d.name)).toContain('spire-server');
    const c = await commands(h);
    expect(c.children).toEqual([]);
    expect(c.activities.checkNode ?? 0).toBe(0);
    expect(s.repairsStarted).toBe(0);
    // Nothing was recorded for either node meanwhile: no maintain run, no repair step.
    expect(await Promise.all(inputs.map(async (i) => (await stack.ledger.listEvents(i.nodeId)).length))).toEqual(
      eventsBefore,
    );
    await h.executeUpdate(fleetDecideUpdate, { args: [{ action: 'compensate' }] });
    expect(((await h.result()) as FleetMaintainResult).outcome).toBe('stopped');
  });

  /** The workflow the schedule started as its `n`th action (0-based). */
  async function scheduledRun(
    handle: ReturnType<TemporalTestEnv['client']['schedule']['getHandle']>,
    n: number,
  ): Promise<WorkflowHandle> {
    const id = await eventually(
      async () => (await handle.describe()).info.recentActions[n]?.action.workflow.workflowId,
      { what: 'the schedule to start a run', timeoutMs: 30_000 },
    );
    return stack.env.client.workflow.getHandle(id);
  }
});
