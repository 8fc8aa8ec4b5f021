/**
 * Idempotency under worker death, on real components: for each of the six
 * steps, the worker (a separate OS process, workers/worker.ts) is SIGKILLed
 * while that step's activity runs, at the worst moment: its work is done and
 * its result is not yet in history (NODEBOOT_FAULT_PAUSE holds the result
 * back; workers/fault-injection.ts). A new worker without the fault picks the
 * run up: the step runs again after the heartbeat timeout, and the run must
 * complete with no duplicate overlay allocation, registration entry, attested
 * agent, interface or workload process. Then decommission leaves no residue.
 *
 * Each case has its own lab node, node id, task queue and pair of worker
 * processes; three cases run at a time. The last test fetches the history of
 * every run these cases made and asserts no private key, join token or
 * database password appears in it (the worker processes use a DATABASE_URL
 * with a canary password).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it, type ExpectStatic } from 'vitest';
import type { Ledger } from '../../inventory/index.js';
import { localTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import * as server from '../../activities/spire/server-cli.js';
import { startDecommission, startProvisioning } from '../../client/provision.js';
import type { ProvisionInputJson } from '../../common/input.js';
import { STEPS } from '../../common/steps.js';
import { labProvisionInput } from '../../lab/inputs.js';
import type { Lab } from '../../lab/lab.js';
import type { TestDatabase } from '../helpers/database.js';
import { startLabStack, stopLabStack } from '../helpers/lab-stack.js';
import { limiter } from '../helpers/limiter.js';
import { nodeProcesses } from '../helpers/node-residue.js';
import {
  fetchTaskQueueHistories,
  findLeaks,
  historyText,
  hubKeySecrets,
  joinTokenSecrets,
  leakReport,
  nodeFileSecrets,
  withCanaryPassword,
  type Secret,
} from '../helpers/secret-scan.js';
import { eventually, uniqueId, uniqueTaskQueue, type TemporalTestEnv } from '../helpers/temporal.js';
import { startWorkerProcess, stopAllWorkerProcesses, type WorkerProcess } from '../helpers/worker-process.js';

const TD = 'crash.nodeboot.test';
/** Cases running at once (each: its own lab node, task queue and worker processes). */
const CONCURRENCY = 3;
/** How long the faulty worker holds a finished step's result back (it is killed ~1 s into it). */
const PAUSE_MS = 20_000;
/** Every step gets 40 s (heartbeat timeout 10 s, workflows/proxies.ts): a dead worker is noticed within ~10 s. */
const TIMEOUTS = {
  installOverlay: 40,
  issueOverlayKey: 40,
  gatePeerHealth: 40,
  startSpireAgent: 40,
  registerEntries: 40,
  launchWorkloads: 40,
  compensation: 60,
};
const RETRY = { initialIntervalMs: 500, maximumIntervalMs: 2_000, maximumAttempts: 5 };
// Generous: on a busy 2-core machine each worker start (bundling the workflows) can take 40 s.
const CASE_TIMEOUT_MS = 600_000;

const CASES = STEPS.map((step, i) => ({ step, node: `n${i + 1}`, uid: 63001 + i }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('worker SIGKILLed in the middle of each step (real components)', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  let workerDbUrl: string;
  const secrets: Secret[] = [];
  const taskQueues: string[] = [];
  const slot = limiter(CONCURRENCY);

  beforeAll(async () => {
    ({ lab, db, ledger, env } = await startLabStack({ nodes: CASES.length, ephemeral: true, trustDomain: TD }));
    const canary = withCanaryPassword(db.url, `canary-${randomBytes(12).toString('hex')}`);
    workerDbUrl = canary.url;
    secrets.push(canary.secret, ...hubKeySecrets(lab));
  });

  afterAll(async () => {
    await stopAllWorkerProcesses();
    await stopLabStack({ lab, db, ledger, env });
  });

  const workerOpts = (taskQueue: string) => ({
    taskQueue,
    databaseUrl: workerDbUrl,
    temporalAddress: inject('temporalAddress'),
    namespace: inject('temporalNamespace'),
  });

  async function crashCase(c: (typeof CASES)[number], expect: ExpectStatic) {
    const { step } = c;
    const nodeId = uniqueId(`wc${c.uid - 63000}`);
    const workload = { name: 'api', spiffePath: `/ns/crash/sa/${step.toLowerCase()}`, uid: c.uid, port: 9443 };
    const input: ProvisionInputJson = labProvisionInput(lab, c.node, {
      nodeId,
      workloads: [workload],
      overrides: { timeouts: TIMEOUTS, retry: RETRY },
    });
    const workloadId = `spiffe://${TD}${workload.spiffePath}`;
    const alias = `spiffe://${TD}/node/${nodeId}`;
    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    const taskQueue = uniqueTaskQueue(`crash${c.uid - 63000}`);
    taskQueues.push(taskQueue);
    const workers: WorkerProcess[] = [];
    const t0 = Date.now();
    const marks: string[] = [];
    const mark = (what: string) => marks.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    try {
      // 1. A worker that holds this step's result back, and the run.
      const faulty = await startWorkerProcess({
        ...workerOpts(taskQueue),
        faultPause: `${step}:${PAUSE_MS}`,
        name: `faulty worker (${step})`,
      });
      workers.push(faulty);
      expect(faulty.output()).toMatch(
        new RegExp(`WARNING: fault injection is ON \\(NODEBOOT_FAULT_PAUSE\\): ${step} pauses ${PAUSE_MS} ms`),
      );
      const { handle, started } = await startProvisioning(env.client, input, { taskQueue });
      expect(started).toBe(true);
      const runId = (await handle.describe()).runId;
      mark(`faulty worker ready in ${(faulty.readyMs / 1000).toFixed(1)}s, run started`);

      // 2. The step has started (ledger) and finished its work (the pause began): kill the worker ~1 s into the pause.
      await eventually(
        async () => (await ledger.listEvents(nodeId, { runId })).some((e) => e.step === step && e.kind === 'started'),
        {
          timeoutMs: 120_000,
          intervalMs: 250,
          what: `ledger event "${step} started"`,
        },
      );
      await faulty.waitFor(
        new RegExp(`fault injection: ${step} attempt \\d+ of provision/${nodeId} did its work; pausing`),
        120_000,
      );
      await sleep(1_000);
      const exit = await faulty.kill();
      mark('killed');
      expect(exit.signal).toBe('SIGKILL');
      expect(faulty.output()).not.toMatch(
        new RegExp(`${step} attempt \\d+ of provision/${nodeId} returns after the pause`),
      );
      // Nothing reported the step done: its result died with the worker.
      expect(
        (await ledger.listEvents(nodeId, { runId })).filter((e) => e.step === step && e.kind === 'succeeded'),
      ).toEqual([]);

      // 3. A new worker without the fault finishes the run.
      const fresh = await startWorkerProcess({ ...workerOpts(taskQueue), name: `fresh worker (${step})` });
      workers.push(fresh);
      expect(fresh.output()).not.toMatch(/fault injection/);
      mark(`fresh worker ready in ${(fresh.readyMs / 1000).toFixed(1)}s`);
      const receipt = await handle.result();
      expect(receipt.runId).toBe(runId);
      mark('run succeeded');

      // The step really ran again: scheduled once, its activity retried (attempt >= 2) after a heartbeat timeout.
      const history = await handle.fetchHistory();
      const events = history.events ?? [];
      const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === step);
      expect(scheduled).toHaveLength(1);
      const startedEv = events.find(
        (e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled[0]!.eventId),
      );
      expect(startedEv?.activityTaskStartedEventAttributes?.attempt).toBeGreaterThanOrEqual(2);
      expect(
        String(startedEv?.activityTaskStartedEventAttributes?.lastFailure?.timeoutFailureInfo?.timeoutType),
      ).toMatch(/^(4|TIMEOUT_TYPE_HEARTBEAT)$/);
      const stepEvents = (await ledger.listEvents(nodeId, { runId })).filter((e) => e.step === step);
      expect(stepEvents.map((e) => e.kind)).toEqual(['started', 'succeeded']);

      // 4. No duplicates. The ledger: one address (the receipt's), one peer, one entry, one workload.
      const allocations = await ledger.listAllocations(nodeId);
      expect(allocations).toHaveLength(1);
      expect(allocations[0]!.ip).toBe(receipt.overlayIp);
      expect(await ledger.listPeers(nodeId)).toHaveLength(1);
      expect((await ledger.listEntries(nodeId)).map((e) => e.entryId)).toEqual([receipt.entries[0]!.entryId]);
      expect(await ledger.listWorkloads(nodeId)).toHaveLength(1);

      // SPIRE: one entry under the node alias (the receipt's), no copy of it anywhere; one alias, one attested agent.
      const underAlias = await server.entryShow(srv, { parentId: alias });
      expect(underAlias.map((e) => [e.spiffeId, e.id])).toEqual([[workloadId, receipt.entries[0]!.entryId]]);
      expect(await server.entryShow(srv, { spiffeId: workloadId })).toHaveLength(1);
      const aliasEntries = await server.entryShow(srv, { spiffeId: alias });
      expect(aliasEntries).toHaveLength(1);
      const agentIds = aliasEntries[0]!.selectors
        .filter((s) => s.startsWith('spiffe_id:'))
        .map((s) => s.slice('spiffe_id:'.length));
      const agents = (await server.agentList(srv)).filter((a) => agentIds.includes(a.spiffeId));
      expect(agents).toHaveLength(1);
      expect(agents[0]!.banned).toBe(false);

      // The node: one WireGuard interface (the receipt's), one wireguard-go, one agent, one workload process.
      const nodeT = lab.nodeTransport(c.node);
      const links = (await ip.listLinks(nodeT)).map((l) => l.ifname).filter((n) => n !== 'lo' && n !== 'eth0');
      expect(links).toEqual([receipt.interface]);
      const procs = await nodeProcesses(lab, c.node);
      expect(procs.map((p) => p.comm)).toEqual(['demo-workload', 'spire-agent', 'wireguard-go']);
      // ... and the workload that runs is the one the ledger (and so the undo) knows.
      expect(procs[0]!.pid).toBe((await ledger.listWorkloads(nodeId))[0]!.pid);
      // The hub: one peer for the node's address, with the node's key.
      const hubPeers = (await wg.show(lab.hubTransport(), lab.hub.interface)).peers.filter((p) =>
        p.allowedIps.includes(`${receipt.overlayIp}/32`),
      );
      expect(hubPeers.map((p) => p.publicKey)).toEqual([receipt.publicKey]);

      // 5. Secrets that exist now, for the history scan at the end.
      secrets.push(
        ...nodeFileSecrets(input, `${c.node} (${step} case)`),
        ...(await joinTokenSecrets(lab, `${c.node} (${step} case) join token`, agentIds)),
      );

      // 6. Decommission: nothing of the node is left.
      const dec = await startDecommission(env.client, input, { taskQueue });
      await dec.result();
      expect((await ip.listLinks(nodeT)).map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
      expect(await ip.netnsPids(localTransport(), lab.node(c.node).netns)).toEqual([]);
      expect(await ledger.getNode(nodeId)).toBeNull();
      expect(await ledger.listAllocations(nodeId)).toEqual([]);
      expect(await ledger.listPeers(nodeId)).toEqual([]);
      expect(await ledger.listEntries(nodeId)).toEqual([]);
      expect(await ledger.listWorkloads(nodeId)).toEqual([]);
      expect(await server.entryShow(srv, { parentId: alias })).toEqual([]);
      expect(await server.entryShow(srv, { spiffeId: alias })).toEqual([]);
      expect((await server.agentList(srv)).filter((a) => agentIds.includes(a.spiffeId))).toEqual([]);
      expect(
        (await wg.show(lab.hubTransport(), lab.hub.interface)).peers.filter((p) => p.publicKey === receipt.publicKey),
      ).toEqual([]);
      mark('decommissioned');
      await fresh.stop();
      console.log(`[crash ${step}] ${marks.join(', ')}`);
    } catch (err) {
      console.error(`[crash ${step}] ${marks.join(', ')}`);
      // The workers' own account of what happened, for whoever reads the failure.
      for (const w of workers)
        console.error(`--- ${w.name} (pid ${w.pid}) output tail ---\n${w.output().split('\n').slice(-60).join('\n')}`);
      throw err;
    } finally {
      for (const w of workers) await w.kill();
    }
  }

  for (const c of CASES) {
    it.concurrent(
      `${c.step}: SIGKILL after its work, before its result; a new worker completes the run with no duplicate`,
      ({ expect }) => slot(() => crashCase(c, expect)),
      CASE_TIMEOUT_MS,
    );
  }

  it('left nothing in SPIRE or on the hub, and no secret in the history of any run', async () => {
    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    expect(await server.entryShow(srv)).toEqual([]);
    expect(await server.agentList(srv)).toEqual([]);
    expect((await wg.show(lab.hubTransport(), lab.hub.interface)).peers).toEqual([]);

    // Every case: a provision run and a decommission run on its own task queue.
    expect(taskQueues).toHaveLength(CASES.length);
    const histories = (await Promise.all(taskQueues.map((tq) => fetchTaskQueueHistories(env.client, tq, 2)))).flat();
    expect(histories.map((h) => h.type).sort()).toEqual([
      ...CASES.map(() => 'decommissionNode'),
      ...CASES.map(() => 'provisionNode'),
    ]);
    // 6 WireGuard keys and 6 SVID keys and 6 join tokens were collected, plus the hub key and the password.
    expect(secrets.filter((s) => s.label.endsWith('WireGuard private key (base64)'))).toHaveLength(CASES.length + 1);
    expect(secrets.filter((s) => /join token #\d+$/.test(s.label))).toHaveLength(CASES.length);
    expect(secrets.filter((s) => s.label.endsWith('SVID private key (body)'))).toHaveLength(CASES.length);
    expect(leakReport(histories, secrets)).toEqual([]);

    // The scanner sees into real payload bytes: the receipts' fields are readable text in the
    // histories, and a key planted in one real history's payload is found.
    for (const x of histories.filter((y) => y.type === 'provisionNode'))
      expect(x.text).toMatch(/\\"keyFingerprint\\":\\"[0-9a-f]{16}\\"/);
    const h = histories.find((x) => x.type === 'provisionNode')!;
    const payload = h.history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    expect(payload?.data).toBeInstanceOf(Uint8Array);
    const original = payload!.data;
    const planted = secrets.find((s) => s.label === 'hub WireGuard private key (base64)')!;
    try {
      payload!.data = Buffer.from(JSON.stringify({ note: 'planted', key: planted.value }));
      expect(findLeaks(historyText(h.history), secrets).map((l) => l.label)).toContain(planted.label);
    } finally {
      payload!.data = original;
    }
    expect(findLeaks(historyText(h.history), secrets)).toEqual([]);
  });
});
