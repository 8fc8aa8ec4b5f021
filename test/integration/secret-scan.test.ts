/**
 * "No secret in workflow history" (DESIGN.md), checked on real runs.
 *
 * Real components (lab namespaces, wireguard-go, SPIRE, PostgreSQL, the
 * Temporal dev server) and the real worker as its own process, connected to
 * the ledger with a DATABASE_URL holding a canary password (trust auth ignores
 * it). Two nodes: n1 provisions and is decommissioned; n2's workload exits at
 * once, so its run fails at launchWorkloads, holds for an operator, and is
 * compensated on the operator's decision (failure messages, an update, undo
 * results all land in history). While both nodes are up, the secrets are
 * collected from where they live: the nodes' and the hub's WireGuard private
 * keys, the workloads' SVID private keys, the join tokens (inside the agents'
 * SPIFFE IDs). Then the full history of every run on the task queue is
 * fetched and none of them may hold any of it, nor a PEM private key.
 *
 * The scanner is checked first on synthetic histories, so a leak would fail
 * this test rather than slip through a blind scanner.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Ledger } from '../../inventory/index.js';
import * as server from '../../activities/spire/server-cli.js';
import { rootFailureType, startDecommission, startProvisioning } from '../../client/provision.js';
import type { ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import type { Lab } from '../../lab/lab.js';
import { decideUpdate, statusQuery } from '../../common/definitions.js';
import type { TestDatabase } from '../helpers/database.js';
import { LAB_FAST, startLabStack, stopLabStack } from '../helpers/lab-stack.js';
import {
  fetchTaskQueueHistories,
  findLeaks,
  historyText,
  hubKeySecrets,
  joinTokenSecrets,
  leakReport,
  nodeFileSecrets,
  pemKeySecrets,
  withCanaryPassword,
  wireguardKeySecrets,
  type Secret,
} from '../helpers/secret-scan.js';
import { eventually, uniqueId, uniqueTaskQueue, type TemporalTestEnv } from '../helpers/temporal.js';
import { startWorkerProcess, stopAllWorkerProcesses, type WorkerProcess } from '../helpers/worker-process.js';

const TD = 'secrets.nodeboot.test';

describe('the secret scanner itself', () => {
  const wgKey = randomBytes(32).toString('base64');
  const token = '4b3c2a10-9d8e-4f7a-b6c5-d4e3f2a1b0c9';
  const pem = [
    '-----BEGIN PRIVATE KEY-----',
    'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgc2VjcmV0LXN5bnRo',
    'ZXRpYy1rZXktbWF0ZXJpYWwtZm9yLXRlc3RzoUQDQgAEAAAAAAAAAAAAAAAAAAAA',
    '-----END PRIVATE KEY-----',
    '',
  ].join('\n');
  const secrets: Secret[] = [
    ...wireguardKeySecrets('wg key', wgKey),
    ...pemKeySecrets('svid key', pem),
    { label: 'join token', value: token },
    { label: 'database password', value: 'canary-0123456789abcdef' },
  ];
  /** Bytes hidden the way a protobuf message hides them: its toJSON prints base64. */
  class ProtoLike {
    constructor(readonly data: Uint8Array) {}
    toJSON() {
      return { data: Buffer.from(this.data).toString('base64') };
    }
  }
  const payload = (v: unknown) => ({
    metadata: { encoding: Buffer.from('json/plain') },
    data: Buffer.from(JSON.stringify(v)),
  });
  const synthetic = (result: unknown, message: string) => ({
    events: [
      { eventId: 1n, workflowExecutionStartedEventAttributes: { input: { payloads: [payload({ nodeId: 'n1' })] } } },
      { eventId: 2n, activityTaskCompletedEventAttributes: { result: { payloads: [result] } } },
      { eventId: 3n, activityTaskFailedEventAttributes: { failure: { message } } },
    ],
  });

  it('renders bigints and finds nothing in a clean history', () => {
    const text = historyText(synthetic(payload({ publicKey: randomBytes(32).toString('base64') }), 'tool failed'));
    expect(text).toContain('"eventId":"1"');
    expect(findLeaks(text, secrets)).toEqual([]);
  });

  it.each([
    ['a WireGuard key in a payload (Buffer)', payload({ key: wgKey }), 'ok', 'wg key (base64)'],
    [
      'a WireGuard key in a payload (plain Uint8Array)',
      { data: new TextEncoder().encode(`{"k":"${wgKey}"}`) },
      'ok',
      'wg key (base64)',
    ],
    ['a WireGuard key as raw bytes', { data: Buffer.from(wgKey, 'base64') }, 'ok', 'wg key (base64)'],
    ['a WireGuard key in hex', payload({ k: Buffer.from(wgKey, 'base64').toString('hex') }), 'ok', 'wg key (hex)'],
    [
      'a key behind a protobuf-style toJSON',
      new ProtoLike(Buffer.from(JSON.stringify({ key: wgKey }))),
      'ok',
      'wg key (base64)',
    ],
    [
      'a join token in a failure message (upper case)',
      payload({}),
      `agent refused: token ${token.toUpperCase()}`,
      'join token',
    ],
    [
      'the database password in a failure message',
      payload({}),
      'connect postgres://postgres:canary-0123456789abcdef@db/x failed',
      'database password',
    ],
    ['a PEM private key in a result', payload({ pem }), 'ok', 'svid key (line 1)'],
  ])('finds %s', (_, result, message, label) => {
    const leaks = findLeaks(historyText(synthetic(result, message)), secrets);
    expect(leaks.map((l) => l.label)).toContain(label);
    // Reports never print the secret.
    for (const l of leaks)
      for (const s of secrets) expect(l.context.toLowerCase()).not.toContain(s.value.toLowerCase());
  });

  it('flags a PEM private-key marker even when the key itself was never collected', () => {
    const leaks = findLeaks(
      historyText(synthetic(payload({}), 'dump: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI...')),
      [],
    );
    expect(leaks.map((l) => l.label)).toEqual(['PEM private key marker "-----BEGIN EC PRIVATE KEY-----"']);
  });
});

describe('no secret in the history of real runs', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  let worker: WorkerProcess | undefined;

  beforeAll(async () => {
    ({ lab, db, ledger, env } = await startLabStack({ nodes: 2, ephemeral: true, trustDomain: TD }));
  });

  afterAll(async () => {
    await stopAllWorkerProcesses();
    await stopLabStack({ lab, db, ledger, env });
  });

  it('provisions, fails and holds, compensates, decommissions: no key, token or password in any history', async () => {
    const canary = withCanaryPassword(db.url, `canary-${randomBytes(12).toString('hex')}`);
    const taskQueue = uniqueTaskQueue('secrets');
    worker = await startWorkerProcess({
      taskQueue,
      databaseUrl: canary.url,
      temporalAddress: inject('temporalAddress'),
      namespace: inject('temporalNamespace'),
      name: 'worker (secret scan)',
    });
    const tag = uniqueId('sec').slice(-10);
    const good: ProvisionInputJson = labProvisionInput(lab, 'n1', {
      nodeId: `${tag}-ok`,
      workloads: [{ name: 'api', spiffePath: '/ns/secrets/sa/api', uid: 63101, port: 9443 }],
      overrides: LAB_FAST,
    });
    // The workload exits at once: launchWorkloads fails (after its SVID was fetched and verified), and the run holds.
    const broken: ProvisionInputJson = labProvisionInput(lab, 'n2', {
      nodeId: `${tag}-hold`,
      workloads: [{ name: 'quitter', spiffePath: '/ns/secrets/sa/quitter', uid: 63102, command: ['/bin/false'] }],
      overrides: { ...LAB_FAST, retry: { ...LAB_FAST.retry, maximumAttempts: 1 }, onFailure: 'hold' },
    });

    const [ok, held] = await Promise.all([
      startProvisioning(env.client, good, { taskQueue }),
      startProvisioning(env.client, broken, { taskQueue }),
    ]);
    const receipt = await ok.handle.result();
    expect(receipt.workloads).toHaveLength(1);
    // A second start attaches to the finished run (no new run, nothing minted).
    expect((await startProvisioning(env.client, good, { taskQueue })).started).toBe(false);
    const status = await eventually(
      async () => {
        const s = await held.handle.query(statusQuery);
        return s.state === 'held' ? s : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500, what: 'the broken node to hold' },
    );
    expect(status.heldStep).toBe('launchWorkloads');
    expect(status.lastFailure?.type).toBe('WorkloadFailed');

    // Both nodes are up to their SPIRE agent: collect every secret that exists now.
    const agents = await server.agentList({ transport: lab.hubTransport(), socketPath: lab.spire!.socketPath });
    expect(agents).toHaveLength(2);
    const secrets: Secret[] = [
      canary.secret,
      ...hubKeySecrets(lab),
      ...nodeFileSecrets(good, 'n1'),
      ...nodeFileSecrets(broken, 'n2'),
      ...(await joinTokenSecrets(lab)),
    ];
    expect(secrets.filter((s) => /join token #\d+$/.test(s.label))).toHaveLength(2);
    expect(secrets.filter((s) => s.label.endsWith('WireGuard private key (base64)'))).toHaveLength(3);
    expect(secrets.filter((s) => s.label.endsWith('SVID private key (body)'))).toHaveLength(2);

    // The operator compensates the held run; n1 is decommissioned.
    await held.handle.executeUpdate(decideUpdate, { args: [{ action: 'compensate' }] });
    const failure = await held.handle.result().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(rootFailureType(failure)).toBe('WorkloadFailed');
    await (await startDecommission(env.client, good, { taskQueue })).result();
    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    expect(await server.entryShow(srv)).toEqual([]);
    expect(await server.agentList(srv)).toEqual([]);
    for (const i of [good, broken]) expect(await ledger.listAllocations(i.nodeId)).toEqual([]);

    // Every run on the queue: two provisions and one decommission.
    const histories = await fetchTaskQueueHistories(env.client, taskQueue, 3);
    expect(histories.map((h) => h.type).sort()).toEqual(['decommissionNode', 'provisionNode', 'provisionNode']);
    // The histories are readable (payloads decoded): the receipt, the failure and the undo results are in them.
    const all = histories.map((h) => h.text).join('\n');
    expect(all).toContain(receipt.keyFingerprint);
    expect(all).toMatch(/workload quitter exited right after start/);
    expect(all).toMatch(/\\"action\\":\\"compensate\\"/);
    expect(leakReport(histories, secrets)).toEqual([]);

    // And the same scan would have caught a leak: plant the hub key in a real payload.
    const h = histories.find((x) => x.type === 'provisionNode')!;
    const p = h.history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    expect(p?.data).toBeInstanceOf(Uint8Array);
    const original = p!.data;
    try {
      p!.data = Buffer.from(
        JSON.stringify({ leaked: secrets.find((s) => s.label === 'hub WireGuard private key (base64)')!.value }),
      );
      expect(findLeaks(historyText(h.history), secrets).map((l) => l.label)).toContain(
        'hub WireGuard private key (base64)',
      );
    } finally {
      p!.data = original;
    }

    // The worker's own log holds none of it either.
    expect(findLeaks(worker.output(), secrets).map((l) => l.label)).toEqual([]);
    await worker.stop();
  });
});
