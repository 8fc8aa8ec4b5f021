/**
 * rotateOverlayKey on real components: one lab node (wireguard-go in a network
 * namespace, the hub, the SPIRE server behind the tunnel), provisioned once and
 * rotated three times, in order:
 *
 *   1. `nodeboot rotate --wait`: the node's interface holds a new key (read with
 *      `wg show` in its namespace), the hub has exactly one peer for the node
 *      (the new key, the node's address), a fresh handshake, the probe works,
 *      the ledger has the new fingerprint and rotation time.
 *   2. rollback: while the hub knows the new peer (the worker holds stage 2's
 *      result back), the hub is given a preshared key for it that the node does
 *      not have: the new key can never complete a handshake. The worker is killed
 *      while verify waits, the next one while it rolls back. The run fails with
 *      PeerHandshakeTimeout after rolling back: the node is on its old key, the
 *      tunnel works, the hub holds only the old peer, the new key file is gone.
 *   3. the worker is SIGKILLed in every stage, one after the other, in one run
 *      (each stage done, its result not yet in history): the next worker
 *      repeats that stage and goes on; the tunnel works at every kill, and the
 *      node ends on the key stage 1 made, with no stale peer.
 *
 * Then: no private key (old, new, rolled back) nor the worker's database
 * password is in the history of any run, and decommission leaves no peer.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { keyFingerprint } from '../../inventory/index.js';
import { probeThroughTunnel } from '../../activities/overlay/probe.js';
import { nextKeyPathOf } from '../../activities/overlay/wireguard/rotation-keys.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import { startDecommission, startProvisioning } from '../../client/provision.js';
import { startRotation } from '../../client/rotation.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { nodePaths } from '../../common/paths.js';
import { ROTATION_ACTIVITIES } from '../../activities/types-rotation.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { describeRun, nodeboot } from '../fixtures/nodeboot-cli.js';
import { LAB_FAST, startLabStack, stopLabStack, type LabStack } from '../helpers/lab-stack.js';
import {
  fetchTaskQueueHistories,
  hubKeySecrets,
  joinTokenSecrets,
  leakReport,
  wireguardKeySecrets,
  withCanaryPassword,
  type Secret,
} from '../helpers/secret-scan.js';
import { eventually, uniqueId, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { startWorkerProcess, stopAllWorkerProcesses, type WorkerProcess } from '../helpers/worker-process.js';

const TD = 'rotate.nodeboot.test';
/** Stage deadlines of 20 s (the rotation's stages take issueOverlayKey's): a 5 s heartbeat timeout, so a dead worker is noticed within ~5 s. */
const TIMEOUTS = { ...LAB_FAST.timeouts, issueOverlayKey: 20, compensation: 30 };
const RETRY = { ...LAB_FAST.retry, maximumAttempts: 5 };
/** How long a faulty worker holds a finished stage's result back (it is killed ~0.5 s into it). */
const PAUSE_MS = 20_000;
const STAGES = ROTATION_ACTIVITIES.filter((a) => a !== 'rotateRollback');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('rotateOverlayKey (real stack.lab)', () => {
  let stack: LabStack;
  let workerDbUrl: string;
  let input: ProvisionInputJson;
  let nodeId: string;
  let files: { iface: string; keyPath: string; nextPath: string };
  let overlayIp: string;
  const secrets: Secret[] = [];
  const taskQueues: string[] = [];
  const node = () => stack.lab.nodeTransport('n1');

  beforeAll(async () => {
    stack = await startLabStack({ nodes: 1, ephemeral: true, trustDomain: TD });
    const canary = withCanaryPassword(stack.db.url, `canary-${randomBytes(12).toString('hex')}`);
    workerDbUrl = canary.url;
    secrets.push(canary.secret, ...hubKeySecrets(stack.lab));
    nodeId = uniqueId('rot');
    input = labProvisionInput(stack.lab, 'n1', { nodeId, overrides: { timeouts: TIMEOUTS, retry: RETRY } });
    const p = nodePaths(ProvisionInput.parse(input));
    files = { iface: p.interface, keyPath: p.wgKey, nextPath: nextKeyPathOf(p.wgKey) };
    const taskQueue = uniqueTaskQueue('rot-prov');
    taskQueues.push(taskQueue);
    const receipt = await withWorker(
      stack.env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger: stack.ledger }), taskQueue },
      async () => {
        const { handle } = await startProvisioning(stack.env.client, input, { taskQueue });
        return handle.result();
      },
    );
    overlayIp = receipt.overlayIp;
    secrets.push(...wireguardKeySecrets('provisioned WireGuard private key', readFileSync(files.keyPath, 'utf8')));
  });

  afterAll(async () => {
    await stopAllWorkerProcesses();
    await stopLabStack(stack ?? {});
  });

  const workerOpts = (taskQueue: string) => ({
    taskQueue,
    databaseUrl: workerDbUrl,
    temporalAddress: inject('temporalAddress'),
    namespace: inject('temporalNamespace'),
  });

  /** The hub's peers that route the node's address, and every peer that is one of `keys`. */
  async function hubPeersOf(keys: string[]) {
    const peers = (await wg.show(stack.lab.hubTransport(), stack.lab.hub.interface)).peers;
    return {
      routing: peers.filter((p) => p.allowedIps.includes(`${overlayIp}/32`)),
      known: peers.filter((p) => keys.includes(p.publicKey)),
      all: peers,
    };
  }

  /** The tunnel carries traffic from the node's overlay address to the SPIRE server port (10 s budget). */
  async function tunnelWorks(): Promise<void> {
    await probeThroughTunnel(
      node(),
      { address: stack.lab.hub.overlayIp, port: stack.lab.spire!.port },
      Date.now() + 10_000,
      undefined,
      { interface: files.iface, sourceIp: overlayIp },
    );
  }

  /** The node runs on `key` (interface and key file), no next key is left, the hub knows only it, the tunnel works. */
  async function expectSettledOn(key: string, others: string[]): Promise<void> {
    expect(await wg.publicKey(node(), files.iface)).toBe(key);
    expect(await wg.keyFilePublicKey(node(), files.keyPath)).toBe(key);
    expect(statSync(files.keyPath).mode & 0o777).toBe(0o600);
    expect(existsSync(files.nextPath)).toBe(false);
    const hub = await hubPeersOf([key, ...others]);
    expect(hub.routing.map((p) => p.publicKey)).toEqual([key]);
    expect(hub.known.map((p) => p.publicKey)).toEqual([key]);
    expect(hub.all).toHaveLength(1); // the lab's only node: nothing stale of it under any key
    await tunnelWorks();
  }

  it('nodeboot rotate --wait: a new key on the interface, one peer on the hub, a fresh handshake, the probe, the ledger', async () => {
    const oldKey = (await wg.publicKey(node(), files.iface))!;
    const before = Math.floor(Date.now() / 1000);
    const r = await withWorker(
      stack.env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger: stack.ledger }) },
      async (taskQueue) => {
        taskQueues.push(taskQueue);
        const cliEnv = {
          TEMPORAL_ADDRESS: inject('temporalAddress'),
          TEMPORAL_NAMESPACE: stack.env.namespace,
          TEMPORAL_TASK_QUEUE: taskQueue,
        };
        const args = ['rotate', nodeId, '--wait', '--json', '--handshake-timeout', '20'];
        const run = await nodeboot(args, cliEnv, { timeoutMs: 180_000 });
        expect(run.code, describeRun(args, run)).toBe(EXIT.OK);
        return run;
      },
    );
    const receipt = r.json.receipt;
    expect(r.json).toMatchObject({ ok: true, state: 'rotated', workflowId: `rotate/${nodeId}` });
    expect(receipt.publicKey).not.toBe(oldKey);
    expect(receipt).toMatchObject({
      fingerprint: keyFingerprint(receipt.publicKey),
      previousFingerprint: keyFingerprint(oldKey),
      resumed: false,
      removedOldPeer: ['hub'],
    });

    // `wg show <if> public-key` in the node's namespace; the hub: one peer for the node, the new key, its address.
    await expectSettledOn(receipt.publicKey, [oldKey]);
    const hubPeer = (await hubPeersOf([receipt.publicKey])).known[0]!;
    expect(hubPeer.allowedIps).toEqual([`${overlayIp}/32`]);
    // A handshake made by the new key, after the rotation began (the hub's own record).
    expect(hubPeer.latestHandshake).toBeGreaterThanOrEqual(before);
    expect(receipt.hubs[0].latestHandshakeUnix).toBeGreaterThanOrEqual(before);

    const key = await stack.ledger.getOverlayKey(nodeId);
    expect(key).toMatchObject({
      publicKey: receipt.publicKey,
      fingerprint: receipt.fingerprint,
      rotatedAt: receipt.rotatedAt,
    });
    expect((await stack.ledger.listPeers(nodeId)).map((p) => p.nodePublicKey)).toEqual([receipt.publicKey]);
    // The rotation's events sit under the key step; the node stays provisioned.
    const events = (await stack.ledger.listEvents(nodeId)).filter((e) => e.workflowId === `rotate/${nodeId}`);
    expect(events.map((e) => [e.step, e.kind])).toEqual([
      ['issueOverlayKey', 'started'],
      ['issueOverlayKey', 'succeeded'],
    ]);
    expect((await stack.ledger.getNode(nodeId))?.state).toBe('ready');
    secrets.push(...wireguardKeySecrets('rotated WireGuard private key', readFileSync(files.keyPath, 'utf8')));
  });

  it('rollback: a new key the hub cannot handshake with fails the run with the reason (worker killed in verify and in the rollback); the node is back on its old key', async () => {
    const oldKey = (await wg.publicKey(node(), files.iface))!;
    const fingerprintBefore = (await stack.ledger.getOverlayKey(nodeId))!.fingerprint;
    const taskQueue = uniqueTaskQueue('rot-rb');
    taskQueues.push(taskQueue);
    const workers: WorkerProcess[] = [];
    const pskFile = path.join(stack.lab.hub.dir, 'rotate-test.psk');
    try {
      const w1 = await startWorkerProcess({
        ...workerOpts(taskQueue),
        faultPause: `rotateAddHubPeers:6000`,
        name: 'rollback worker 1',
      });
      workers.push(w1);
      const { handle } = await startRotation(stack.env.client, { input, handshakeTimeoutSeconds: 8 }, { taskQueue });
      await w1.waitFor(
        new RegExp(`fault injection: rotateAddHubPeers attempt \\d+ of rotate/${nodeId} did its work; pausing`),
        120_000,
      );
      // The hub knows the new peer now. A preshared key only the hub has: the handshake can never complete.
      const newKey = (await wg.keyFilePublicKey(node(), files.nextPath))!;
      secrets.push(...wireguardKeySecrets('rolled-back WireGuard private key', readFileSync(files.nextPath, 'utf8')));
      expect((await hubPeersOf([newKey])).known.map((p) => [p.publicKey, p.allowedIps])).toEqual([[newKey, []]]);
      await tunnelWorks(); // stage 2 left the old tunnel alone
      writeFileSync(pskFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
      await stack.lab
        .hubTransport()
        .run('wg', ['set', stack.lab.hub.interface, 'peer', newKey, 'preshared-key', pskFile]);

      // Killed while verify waits for the handshake; the next worker verifies again, fails, and is killed in the rollback.
      const scheduled = (name: string) => async () =>
        ((await handle.fetchHistory()).events ?? []).some(
          (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === name,
        );
      await eventually(scheduled('rotateVerify'), {
        timeoutMs: 60_000,
        intervalMs: 250,
        what: 'rotateVerify scheduled',
      });
      await sleep(2_000);
      await w1.kill();
      const w2 = await startWorkerProcess({
        ...workerOpts(taskQueue),
        faultPause: `rotateRollback:${PAUSE_MS}`,
        name: 'rollback worker 2',
      });
      workers.push(w2);
      await w2.waitFor(
        new RegExp(`fault injection: rotateRollback attempt \\d+ of rotate/${nodeId} did its work; pausing`),
        120_000,
      );
      await sleep(500);
      await w2.kill();
      await tunnelWorks(); // the rollback's work is done, on the old key
      workers.push(await startWorkerProcess({ ...workerOpts(taskQueue), name: 'rollback worker 3' }));

      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const cause = (err as WorkflowFailedError).cause;
      expect(cause).toBeInstanceOf(ApplicationFailure);
      expect((cause as ApplicationFailure).type).toBe('PeerHandshakeTimeout');
      expect((cause as ApplicationFailure).message).toMatch(
        /failed at stage verify \(PeerHandshakeTimeout\): .*no handshake of key [0-9a-f]{16} with hub\(s\) hub within 8 s.*rolled back: the node is on its old key [0-9a-f]{16}, tunnel verified/,
      );
      expect((cause as ApplicationFailure).details?.[0]).toMatchObject({
        stage: 'verify',
        rolledBack: true,
        fingerprint: keyFingerprint(oldKey),
      });

      await expectSettledOn(oldKey, [newKey]);
      expect((await stack.ledger.getOverlayKey(nodeId))!.fingerprint).toBe(fingerprintBefore);
      expect((await stack.ledger.listPeers(nodeId)).map((p) => p.nodePublicKey)).toEqual([oldKey]);
      const kinds = (await stack.ledger.listEvents(nodeId, { runId: (await handle.describe()).runId })).map(
        (e) => e.kind,
      );
      expect(kinds).toEqual(['started', 'failed', 'compensated']);
      // verify and the rollback each ran again after their worker died (attempt >= 2).
      const events = (await handle.fetchHistory()).events ?? [];
      for (const name of ['rotateVerify', 'rotateRollback']) {
        const sched = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === name);
        expect(sched, name).toHaveLength(1);
        const started = events.find(
          (e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(sched[0]!.eventId),
        );
        expect(started?.activityTaskStartedEventAttributes?.attempt, name).toBeGreaterThanOrEqual(2);
      }
    } catch (e) {
      for (const w of workers)
        console.error(`--- ${w.name} output tail ---\n${w.output().split('\n').slice(-40).join('\n')}`);
      throw e;
    } finally {
      for (const w of workers) await w.kill();
      rmSync(pskFile, { force: true });
    }
  }, 600_000);

  it('SIGKILL in every stage of one rotation: each stage is repeated by the next stack.worker; the tunnel works throughout; the node ends on the new key', async () => {
    const oldKey = (await wg.publicKey(node(), files.iface))!;
    const taskQueue = uniqueTaskQueue('rot-crash');
    taskQueues.push(taskQueue);
    const workers: WorkerProcess[] = [];
    const marks: string[] = [];
    const t0 = Date.now();
    const mark = (what: string) => marks.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    let newKey: string | null = null;
    try {
      let handle: Awaited<ReturnType<typeof startRotation>>['handle'] | undefined;
      for (const stage of STAGES) {
        // The previous stage's retry and this stage run on this worker; it holds this stage's result back.
        const w = await startWorkerProcess({
          ...workerOpts(taskQueue),
          faultPause: `${stage}:${PAUSE_MS}`,
          name: `faulty worker (${stage})`,
        });
        workers.push(w);
        mark(`${stage} worker ready in ${(w.readyMs / 1000).toFixed(1)}s`);
        handle ??= (await startRotation(stack.env.client, { input, handshakeTimeoutSeconds: 20 }, { taskQueue }))
          .handle;
        await w.waitFor(
          new RegExp(`fault injection: ${stage} attempt \\d+ of rotate/${nodeId} did its work; pausing`),
          180_000,
        );
        await sleep(500);
        expect((await w.kill()).signal).toBe('SIGKILL');
        mark(`killed in ${stage}`);
        if (stage === 'rotatePrepareKey') newKey = await wg.keyFilePublicKey(node(), files.nextPath);
        // Never without a working tunnel, on whichever key the interface holds now.
        expect([oldKey, newKey]).toContain(await wg.publicKey(node(), files.iface));
        await tunnelWorks();
      }
      const fresh = await startWorkerProcess({ ...workerOpts(taskQueue), name: 'fresh worker' });
      workers.push(fresh);
      const receipt = await handle!.result();
      mark('rotated');
      // The key stage 1 made the first time (its retry reused it): no second key was made.
      expect(newKey).not.toBeNull();
      expect(receipt.publicKey).toBe(newKey);
      await expectSettledOn(newKey!, [oldKey]);
      expect((await stack.ledger.getOverlayKey(nodeId))!.fingerprint).toBe(keyFingerprint(newKey!));

      // Every stage was scheduled once and its activity retried (attempt >= 2) after a heartbeat timeout.
      const events = (await handle!.fetchHistory()).events ?? [];
      for (const stage of STAGES) {
        const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === stage);
        expect(scheduled, stage).toHaveLength(1);
        const started = events.find(
          (e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled[0]!.eventId),
        );
        expect(started?.activityTaskStartedEventAttributes?.attempt, stage).toBeGreaterThanOrEqual(2);
      }
      expect(events.some((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'rotateRollback')).toBe(
        false,
      );
      secrets.push(...wireguardKeySecrets('crash-rotated WireGuard private key', readFileSync(files.keyPath, 'utf8')));
      await fresh.stop();
      console.log(`[rotate crash] ${marks.join(', ')}`);
    } catch (err) {
      console.error(`[rotate crash] ${marks.join(', ')}`);
      for (const w of workers)
        console.error(`--- ${w.name} (pid ${w.pid}) output tail ---\n${w.output().split('\n').slice(-40).join('\n')}`);
      throw err;
    } finally {
      for (const w of workers) await w.kill();
    }
  }, 900_000);

  it('no private key in any history; a rotated node decommissions without residue', async () => {
    const taskQueue = uniqueTaskQueue('rot-dec');
    taskQueues.push(taskQueue);
    secrets.push(...(await joinTokenSecrets(stack.lab, 'join token')));
    await withWorker(
      stack.env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger: stack.ledger }), taskQueue },
      async () => {
        await (await startDecommission(stack.env.client, input, { taskQueue })).result();
      },
    );
    expect((await wg.show(stack.lab.hubTransport(), stack.lab.hub.interface)).peers).toEqual([]);
    expect(await stack.ledger.getOverlayKey(nodeId)).toBeNull();

    // provision, three rotations (one rolled back), decommission.
    const histories = (
      await Promise.all(taskQueues.map((tq) => fetchTaskQueueHistories(stack.env.client, tq, 1)))
    ).flat();
    expect(histories.map((h) => h.type).sort()).toEqual([
      'decommissionNode',
      'provisionNode',
      'rotateOverlayKey',
      'rotateOverlayKey',
      'rotateOverlayKey',
    ]);
    expect(secrets.filter((s) => s.label.endsWith('WireGuard private key (base64)'))).toHaveLength(5); // hub, provisioned, 3 rotations
    expect(leakReport(histories, secrets)).toEqual([]);
    // The scanner sees the receipts' public fields: it would see a key too.
    for (const h of histories.filter((x) => x.type === 'rotateOverlayKey'))
      expect(h.text).toMatch(/\\"newFingerprint\\":\\"[0-9a-f]{16}\\"/);
  });
});
