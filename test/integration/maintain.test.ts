/**
 * maintainNode on real components: one lab node is provisioned, then each of
 * its links is broken in turn (a workload killed, an entry deleted with
 * spire-server's CLI, the agent killed, the agent's data dir wiped, the node's
 * peer removed from the hub, the interface deleted). Each time the check must
 * name the broken link and its owning step, the repair must re-run only that
 * step and the ones that depend on it (counted in the workflow history), and
 * the run must end healthy. A foreign key on the interface must hold the run
 * and change nothing. Prints the time from break to healthy for each link.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import { processAlive } from '../../activities/host/transport.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import { readPidFile } from '../../activities/host/process.js';
import * as server from '../../activities/spire/server-cli.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import { startMaintain } from '../../client/maintain.js';
import { startProvisioning } from '../../client/provision.js';
import type { HealthReport } from '../../common/health.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { maintainStatusQuery, type MaintainResult } from '../../common/maintain.js';
import { nodePaths } from '../../common/paths.js';
import { HealthKey } from '../../common/search-attributes.js';
import { STEPS, type StepName } from '../../common/steps.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { decideUpdate } from '../../common/definitions.js';
import { describeRun, nodeboot } from '../fixtures/nodeboot-cli.js';
import { startLabSuite, stopLabSuite, type LabSuite } from '../helpers/lab-stack.js';
import { eventually, uniqueId, uniqueTaskQueue } from '../helpers/temporal.js';

describe('maintainNode on a real lab node', () => {
  let stack: LabSuite;
  let raw: ProvisionInputJson;
  let input: ProvisionInput;
  const taskQueue = uniqueTaskQueue('maintain');
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    stack = await startLabSuite({ nodes: 1, ephemeral: true, trustDomain: 'maintain.nodeboot.test' }, taskQueue);
    raw = labProvisionInput(stack.lab, 'n1', {
      nodeId: uniqueId('maint'),
      workloads: [{ name: 'api', spiffePath: '/ns/maint/sa/api', uid: 62051, port: 9443 }],
    });
    input = ProvisionInput.parse(raw);
  });

  afterAll(async () => {
    console.log(`break → healthy (ms): ${JSON.stringify(timings)}`);
    await stopLabSuite(stack ?? {});
  });

  const node = () => stack.lab.nodeTransport('n1');
  const srv = () => ({ transport: stack.lab.hubTransport(), socketPath: stack.lab.spire!.socketPath });
  const paths = () => nodePaths(input);

  /** How often each step's activity was scheduled in the run (activity retries are not new executions). */
  async function stepExecutions(
    h: WorkflowHandle,
  ): Promise<Partial<Record<StepName | 'checkNode' | 'undoStartSpireAgent', number>>> {
    const counts: Record<string, number> = {};
    for (const e of (await h.fetchHistory()).events ?? []) {
      const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
      if (name) counts[name] = (counts[name] ?? 0) + 1;
    }
    return counts;
  }

  const brokenOf = (r: HealthReport) =>
    r.links.filter((l) => l.status === 'broken').map((l) => ({ link: l.link, step: l.step, security: !!l.security }));

  /** Run maintainNode once; the node must end healthy after one round that re-ran exactly `plan`. */
  async function repairs(
    what: string,
    brokenStarted: number,
    expectLink: { link: string; step: StepName },
    plan: StepName[],
    extra: Record<string, number> = {},
  ) {
    const h = await startMaintain(stack.env.client, raw, { taskQueue });
    const result: MaintainResult = await h.result();
    timings[what] = Date.now() - brokenStarted;
    expect(brokenOf(result.firstCheck), what).toContainEqual({ ...expectLink, security: false });
    expect(
      result.rounds.map((r) => r.steps),
      what,
    ).toEqual([plan]);
    expect(result.health, `${what}: ${JSON.stringify(brokenOf(result.lastCheck))}`).toBe('healthy');
    const counts = await stepExecutions(h);
    for (const s of STEPS) expect(counts[s] ?? 0, `${what}: ${s} executions`).toBe(plan.includes(s) ? 1 : 0);
    expect(counts.checkNode).toBe(2);
    for (const [name, n] of Object.entries(extra)) expect(counts[name as StepName], `${what}: ${name}`).toBe(n);
    expect((await h.describe()).typedSearchAttributes.get(HealthKey)).toBe('healthy');
    // The ledger's log says what was found and what was re-run.
    const events = await stack.ledger.listEvents(input.nodeId, { runId: result.runId });
    expect(events.filter((e) => e.kind === 'checked')).toHaveLength(2);
    expect(events.filter((e) => e.kind === 'succeeded' && e.step !== 'workflow').map((e) => e.step)).toEqual(plan);
    return result;
  }

  it('provisions the node; a check of the fresh node is healthy and repairs nothing', async () => {
    const run = await startProvisioning(stack.env.client, raw, { taskQueue });
    await run.handle.result();
    const h = await startMaintain(stack.env.client, raw, { taskQueue });
    const result = await h.result();
    expect(result.health, JSON.stringify(brokenOf(result.lastCheck))).toBe('healthy');
    expect(result.rounds).toEqual([]);
    expect(result.firstCheck.links.map((l) => l.link)).toEqual([
      'interface',
      'overlayKey',
      'hubPeer:hub',
      'handshake:hub',
      'probe',
      'agent',
      'entry:api',
      'workload:api',
    ]);
    expect(Object.keys(await stepExecutions(h))).toEqual(['checkNode']);
    // Provisioned, not touched by the maintain run.
    expect((await stack.ledger.getNode(input.nodeId))?.state).toBe('ready');
  });

  it('a killed workload: launchWorkloads only (through `nodeboot maintain --wait`)', async () => {
    const pid = (await readPidFile(node(), paths().workloadPid('api')))!;
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    await eventually(async () => !processAlive(pid), { what: 'the workload to die' });
    const r = await nodeboot(
      ['maintain', input.nodeId, '--wait', '--json'],
      {
        TEMPORAL_ADDRESS: (await import('vitest')).inject('temporalAddress'),
        TEMPORAL_NAMESPACE: stack.env.namespace,
        TEMPORAL_TASK_QUEUE: taskQueue,
      },
      { timeoutMs: 240_000 },
    );
    timings.workload = Date.now() - t0;
    expect(r.code, describeRun(['maintain'], r)).toBe(EXIT.OK);
    expect(r.json.result.health).toBe('healthy');
    expect(r.json.result.rounds.map((x: { steps: string[] }) => x.steps)).toEqual([['launchWorkloads']]);
    expect(brokenOf(r.json.result.firstCheck)).toContainEqual({
      link: 'workload:api',
      step: 'launchWorkloads',
      security: false,
    });
    const counts = await stepExecutions(stack.env.client.workflow.getHandle(r.json.workflowId, r.json.runId));
    expect(STEPS.filter((s) => counts[s])).toEqual(['launchWorkloads']);
  });

  it('a deleted registration entry: registerEntries, then launchWorkloads', async () => {
    const [entry] = await stack.ledger.listEntries(input.nodeId);
    const t0 = Date.now();
    const del = await stack.lab
      .hubTransport()
      .run('spire-server', ['entry', 'delete', '-socketPath', stack.lab.spire!.socketPath, '-entryID', entry!.entryId]);
    expect(del.exitCode).toBe(0);
    await repairs('entry', t0, { link: 'entry:api', step: 'registerEntries' }, ['registerEntries', 'launchWorkloads']);
    const now = await stack.ledger.listEntries(input.nodeId);
    expect(now).toHaveLength(1);
    expect(now[0]!.entryId).not.toBe(entry!.entryId);
  });

  it('a killed agent: startSpireAgent (after its undo), then launchWorkloads', async () => {
    const pid = (await readPidFile(node(), paths().agentPid))!;
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    await eventually(async () => !processAlive(pid), { what: 'the agent to die' });
    await repairs('agent', t0, { link: 'agent', step: 'startSpireAgent' }, ['startSpireAgent', 'launchWorkloads'], {
      undoStartSpireAgent: 1,
    });
  });

  it('a wiped agent data dir: startSpireAgent (after its undo), then launchWorkloads', async () => {
    const t0 = Date.now();
    await node().run('sh', ['-c', 'rm -rf -- "$1"/*', 'wipe', paths().agentDataDir]);
    await repairs(
      'agentDataDir',
      t0,
      { link: 'agent', step: 'startSpireAgent' },
      ['startSpireAgent', 'launchWorkloads'],
      { undoStartSpireAgent: 1 },
    );
  });

  it("the node's peer removed from the hub: issueOverlayKey, then gatePeerHealth", async () => {
    const [peer] = await stack.ledger.listPeers(input.nodeId);
    const t0 = Date.now();
    await wg.removePeer(stack.lab.hubTransport(), stack.lab.hub.interface, peer!.nodePublicKey);
    await repairs('hubPeer', t0, { link: 'hubPeer:hub', step: 'issueOverlayKey' }, [
      'issueOverlayKey',
      'gatePeerHealth',
    ]);
  });

  it('a deleted interface: installOverlay, issueOverlayKey, gatePeerHealth', async () => {
    const t0 = Date.now();
    await node().run('ip', ['link', 'del', paths().interface]);
    await repairs('interface', t0, { link: 'interface', step: 'installOverlay' }, [
      'installOverlay',
      'issueOverlayKey',
      'gatePeerHealth',
    ]);
  });

  it('a foreign key on the interface: holds, re-runs nothing, re-keys nothing; an operator fixes it and retries', async () => {
    const foreign = `${stack.lab.node('n1').dir}/foreign.key`;
    await node().run('sh', ['-c', 'umask 077; wg genkey > "$1"', 'genkey', foreign]);
    await node().run('wg', ['set', paths().interface, 'private-key', foreign]);
    const before = {
      key: await wg.keyFilePublicKey(node(), paths().wgKey),
      hub: await wg.peerAllowedIps(stack.lab.hubTransport(), stack.lab.hub.interface),
    };

    const h = await startMaintain(stack.env.client, raw, { taskQueue });
    const status = await eventually(
      async () => {
        const s = await h.query(maintainStatusQuery);
        return s.state === 'held' ? s : undefined;
      },
      { what: 'the run to hold', timeoutMs: 60_000 },
    );
    expect(status.heldFor).toMatchObject({ reason: 'security', step: 'issueOverlayKey' });
    expect(brokenOf(status.lastCheck!)).toContainEqual({ link: 'overlayKey', step: 'issueOverlayKey', security: true });
    expect(status.rounds).toEqual([]);
    expect(Object.keys(await stepExecutions(h))).toEqual(['checkNode']);
    expect((await h.describe()).typedSearchAttributes.get(HealthKey)).toBe('broken');
    // Nothing was re-keyed: the node's key file and the hub's peers are as they were.
    expect(await wg.keyFilePublicKey(node(), paths().wgKey)).toBe(before.key);
    expect(await wg.peerAllowedIps(stack.lab.hubTransport(), stack.lab.hub.interface)).toEqual(before.hub);
    const held = (await stack.ledger.listEvents(input.nodeId, { runId: status.runId })).filter(
      (e) => e.kind === 'held',
    );
    expect(held).toHaveLength(1);

    // The operator puts the node's own key back and asks for another check.
    await node().run('wg', ['set', paths().interface, 'private-key', paths().wgKey]);
    await h.executeUpdate(decideUpdate, { args: [{ action: 'retry' }] });
    const result = await h.result();
    expect(result.stoppedByOperator).toBe(false);
    // The node's key is back, so WireGuard must handshake again: a repair of step 3 at most, never step 2.
    expect(result.rounds.flatMap((r) => r.steps)).not.toContain('issueOverlayKey');
    expect(['healthy']).toContain(result.health);
    // The spire-server CLI sees the agent and entries still in place.
    expect(
      (await server.entryShow(srv(), { parentId: `spiffe://${input.spire.trustDomain}/node/${input.nodeId}` })).length,
    ).toBe(1);
  });
});
