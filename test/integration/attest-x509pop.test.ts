/**
 * x509pop node attestation end to end, on real components (lab namespaces,
 * wireguard-go, the SPIRE server and agents, PostgreSQL, the Temporal dev
 * server). The lab's server trusts the lab node CA (lab/spire-server.ts); each
 * node's key is made on the node (0600) and its certificate issued by that CA
 * (lab/pki.ts). Cases:
 *   (a) provisionNode: receipt, status and `spire-server agent list` name
 *       x509pop and can re-attest; the alias is bound to CN + CA fingerprint;
 *   (b) `agent evict`: the agent attests again by itself (new SVID serial)
 *       and the workload still fetches a valid SVID;
 *   (c) a certificate for another node, an expired one, one from another CA:
 *       AttestationRejected, compensated, the node does not come back, the
 *       other node is untouched;
 *   (d) compensation (evict), a security undo (ban) and decommission leave an
 *       agent that does not come back; decommission does not lift a ban;
 *   (e) the worker SIGKILLed in the middle of startSpireAgent: the run still
 *       ends provisioned with one agent and one alias entry;
 * and no node's attestation key (nor any other secret) is in any history.
 */
import 'reflect-metadata';
import { randomBytes, X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { localTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import { fetchX509Svid } from '../../activities/spire/agent-cli.js';
import * as server from '../../activities/spire/server-cli.js';
import { verifySvid } from '../../activities/workloads/svid.js';
import { stepLine } from '../../client/cli/render.js';
import { rootFailureType, startDecommission, startProvisioning } from '../../client/provision.js';
import { DEFAULT_THRESHOLDS } from '../../common/health.js';
import { summarizeHealth } from '../../common/health-summary.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { nodePaths } from '../../common/paths.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { ensureNodeCa, issueNodeCredential, labNodeCa, x509popAttestorInput } from '../../lab/pki.js';
import { statusQuery } from '../../common/definitions.js';
import { LAB_FAST, startLabSuite, stopLabSuite, type LabSuite } from '../helpers/lab-stack.js';
import {
  fetchTaskQueueHistories,
  hubKeySecrets,
  leakReport,
  nodeFileSecrets,
  attestationKeySecrets,
  withCanaryPassword,
  type Secret,
} from '../helpers/secret-scan.js';
import { eventually, uniqueId, uniqueTaskQueue } from '../helpers/temporal.js';
import { startWorkerProcess, stopAllWorkerProcesses, type WorkerProcess } from '../helpers/worker-process.js';
import { isAgentDaemon } from '../helpers/procs.js';
import { createActivities } from '../../activities/index.js';

const TD = 'x509.nodeboot.test';
/** SPIRE's agent sync interval (5 s): "does not come back" waits more than two of them. */
const SYNC_MS = 5_000;
const DAY = 24 * 3600 * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('x509pop node attestation (real components)', () => {
  let stack: LabSuite;
  const taskQueue = uniqueTaskQueue('x509');
  const tag = uniqueId('x5').slice(-8);
  const secrets: Secret[] = [];
  /** Runs started per task queue (the history scan waits for all of them). */
  const runs = new Map<string, number>([[taskQueue, 0]]);
  const counted = (q: string) => runs.set(q, (runs.get(q) ?? 0) + 1);
  /** n1's node, provisioned by (a) and kept until (d): the "other node" of the refusals. */
  let victim: { nodeId: string; agentId: string } | undefined;

  const srv = () => ({ transport: stack.lab.hubTransport(), socketPath: stack.lab.spire!.socketPath });
  const agentIdOf = (nodeId: string) => `spiffe://${TD}/spire/agent/x509pop/${nodeId}`;
  const aliasOf = (nodeId: string) => `spiffe://${TD}/node/${nodeId}`;
  const agentOf = async (nodeId: string) =>
    (await server.agentList(srv())).find((a) => a.spiffeId === agentIdOf(nodeId));
  const agentProcs = async (node: string) => {
    const pids = await ip.netnsPids(localTransport(), stack.lab.node(node).netns);
    return pids.filter(isAgentDaemon); // not a workload's `spire-agent api fetch` child
  };

  beforeAll(async () => {
    stack = await startLabSuite({ nodes: 4, ephemeral: true, trustDomain: TD }, taskQueue);
    secrets.push(...hubKeySecrets(stack.lab));
  });

  afterAll(async () => {
    await stopAllWorkerProcesses();
    await stopLabSuite(stack ?? {});
  });

  /** An input for lab node `node` attesting with `cred`. */
  function inputFor(
    node: string,
    nodeId: string,
    cred: Awaited<ReturnType<typeof issueNodeCredential>>,
    uid: number,
    extra: Partial<ProvisionInputJson> = {},
  ): ProvisionInputJson {
    return labProvisionInput(stack.lab, node, {
      nodeId,
      nodeAttestor: x509popAttestorInput(cred),
      workloads: [{ name: 'api', spiffePath: `/ns/x509/sa/${nodeId}`, uid, port: 9443 }],
      overrides: { ...LAB_FAST, ...extra },
    });
  }

  /** The node cannot come back by itself: no agent process, no attested agent (or a banned one), no alias. */
  async function expectStaysOut(node: string, nodeId: string, opts: { banned?: boolean } = {}) {
    await sleep(2 * SYNC_MS + 2_000);
    expect(await agentProcs(node)).toEqual([]);
    const a = await agentOf(nodeId);
    if (opts.banned) expect(a?.banned).toBe(true);
    else expect(a).toBeUndefined();
    const show = await stack.lab
      .hubTransport()
      .run(
        'spire-server',
        ['agent', 'show', '-socketPath', stack.lab.spire!.socketPath, '-spiffeID', agentIdOf(nodeId)],
        {
          allowNonZeroExit: true,
        },
      );
    if (opts.banned) expect(show.stdout).toMatch(/Banned\s*:\s*true/);
    else expect(show.stderr).toMatch(/NotFound/);
    expect(await server.entryShow(srv(), { spiffeId: aliasOf(nodeId) })).toEqual([]);
  }

  it('(a) provisions with x509pop: receipt, status and agent list say x509pop, can re-attest; (b) an evicted agent comes back by itself', async () => {
    const nodeId = `${tag}-a`;
    const cred = await issueNodeCredential(stack.lab, 'n1', nodeId);
    const key = statSync(cred.privateKeyPath);
    expect([key.uid, key.mode & 0o777]).toEqual([0, 0o600]);
    const input = inputFor('n1', nodeId, cred, 64001);
    const { handle } = await startProvisioning(stack.env.client, input, { taskQueue });
    counted(taskQueue);
    const receipt = await handle.result();
    expect(receipt).toMatchObject({ attestationType: 'x509pop', canReattest: true, nodeAliasId: aliasOf(nodeId) });
    const status = await handle.query(statusQuery);
    const step4 = status.steps.find((s) => s.step === 'startSpireAgent')!;
    expect(step4.evidence).toMatchObject({ attestationType: 'x509pop', canReattest: true });
    expect(stepLine(step4)).toMatch(/\(x509pop, can re-attest\)/);
    // checkNode reads the machine certificate's expiry (nodeboot health, the expiry gauges).
    const health = await createActivities({ ledger: stack.ledger }).checkNode({
      input: ProvisionInput.parse(input),
      thresholds: DEFAULT_THRESHOLDS,
    });
    const agentLink = health.links.find((l) => l.link === 'agent')!;
    expect(agentLink.evidence.attestorCertNotAfter).toBe(
      new Date(new X509Certificate(cred.certPem).validTo).toISOString(),
    );
    expect(summarizeHealth(health).attestorCertSecondsLeft).toBeGreaterThan(0);

    // The server's own view, as an operator reads it.
    const list = await stack.lab
      .hubTransport()
      .run('spire-server', ['agent', 'list', '-socketPath', stack.lab.spire!.socketPath]);
    expect(list.stdout).toContain(agentIdOf(nodeId));
    expect(list.stdout).toMatch(/Attestation type\s*:\s*x509pop/);
    expect(list.stdout).toMatch(/Can re-attest\s*:\s*true/);
    const agent = (await agentOf(nodeId))!;
    expect(agent).toMatchObject({ attestationType: 'x509pop', canReattest: true, banned: false });
    // The alias is a node entry bound to this CN and the lab CA, nothing looser.
    const ca = await labNodeCa(stack.lab);
    const aliases = await server.entryShow(srv(), { spiffeId: aliasOf(nodeId) });
    expect(aliases).toHaveLength(1);
    expect(aliases[0]!.parentId).toBe(`spiffe://${TD}/spire/server`);
    expect(aliases[0]!.selectors.sort()).toEqual(
      [`x509pop:ca:fingerprint:${ca.fingerprint}`, `x509pop:subject:cn:${nodeId}`].sort(),
    );
    secrets.push(...nodeFileSecrets(input, 'n1'));

    // (b) Evict: the running agent attests again by itself, with a new SVID.
    expect(await server.agentEvict(srv(), agentIdOf(nodeId))).toBe(true);
    const evictedAt = Date.now();
    const back = await eventually(
      async () => {
        const a = await agentOf(nodeId);
        return a && a.x509SvidSerialNumber !== agent.x509SvidSerialNumber ? a : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: 'the evicted agent to attest again' },
    );
    console.log(`[x509pop] re-attested ${((Date.now() - evictedAt) / 1000).toFixed(1)} s after the eviction`);
    expect(back).toMatchObject({ banned: false, canReattest: true, attestationType: 'x509pop' });
    // Each workload still gets a valid SVID from it.
    const p = nodePaths(ProvisionInput.parse(input));
    const probeDir = `/tmp/nbx509-${randomBytes(4).toString('hex')}`;
    const svid = await fetchX509Svid(
      { transport: stack.lab.nodeTransport('n1'), socketPath: p.agentSocket },
      { writeDir: probeDir, uid: 64001, gid: 64001, waitMs: 30_000 },
    );
    await localTransport().run('rm', ['-rf', '--', probeDir]);
    expect(svid.spiffeId).toBe(`spiffe://${TD}/ns/x509/sa/${nodeId}`);
    const check = await verifySvid(svid.svidPem, svid.bundlePem, { spiffeId: svid.spiffeId, ttlSeconds: 3600 });
    expect(new Date(check.notAfter).getTime()).toBeGreaterThan(Date.now());
    victim = { nodeId, agentId: agentIdOf(nodeId) };
  });

  it('(c) refuses a certificate for another node, an expired one and one from another CA: compensated, the node stays out, the other node untouched', async () => {
    const otherCa = await ensureNodeCa(`${stack.lab.state.dir}/other-ca`, 'not the lab node CA');
    const victimId = victim?.nodeId ?? `${tag}-v`;
    const victimBefore = victim ? await agentOf(victim.nodeId) : undefined;
    const cases = [
      {
        why: 'another node',
        issue: (nodeId: string) => issueNodeCredential(stack.lab, 'n2', nodeId, { cn: victimId }),
        message: /issued to CN=.*not to node/,
      },
      {
        why: 'expired',
        issue: (nodeId: string) =>
          issueNodeCredential(stack.lab, 'n2', nodeId, {
            notBefore: new Date(Date.now() - 30 * DAY),
            notAfter: new Date(Date.now() - DAY),
          }),
        message: /expired/,
      },
      {
        why: 'another CA',
        issue: (nodeId: string) => issueNodeCredential(stack.lab, 'n2', nodeId, { ca: otherCa }),
        message: /refused by the server.*(unknown authority|certificate verification failed)/,
      },
    ];
    for (const [i, c] of cases.entries()) {
      const nodeId = `${tag}-c${i}`;
      const input = inputFor('n2', nodeId, await c.issue(nodeId), 64002);
      const { handle } = await startProvisioning(stack.env.client, input, { taskQueue });
      counted(taskQueue);
      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(rootFailureType(err), c.why).toBe('AttestationRejected');
      const status = await handle.query(statusQuery);
      expect(status.state, c.why).toBe('compensated');
      expect(status.lastFailure, c.why).toMatchObject({ step: 'startSpireAgent', type: 'AttestationRejected' });
      expect(status.lastFailure!.message, c.why).toMatch(c.message);
      expect(status.steps.find((s) => s.step === 'startSpireAgent')!.undo?.reason, c.why).toBe('security');
      secrets.push(...attestationKeySecrets(input, `n2 (${c.why})`));
      await expectStaysOut('n2', nodeId);
    }
    // The node whose certificate was tried is neither banned nor disturbed (its SVID is the one it had).
    const victimAfter = await agentOf(victimId);
    if (victimBefore) {
      expect(victimAfter).toMatchObject({ banned: false, x509SvidSerialNumber: victimBefore.x509SvidSerialNumber });
    } else {
      expect(victimAfter?.banned ?? false).toBe(false);
    }
  });

  it('(c) refuses a key other users can read (UnsafePath, naming the field), without starting an agent', async () => {
    const nodeId = `${tag}-k`;
    const cred = await issueNodeCredential(stack.lab, 'n2', nodeId);
    await localTransport().run('chmod', ['644', '--', cred.privateKeyPath]);
    try {
      const { handle } = await startProvisioning(stack.env.client, inputFor('n2', nodeId, cred, 64002), { taskQueue });
      counted(taskQueue);
      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(rootFailureType(err)).toBe('UnsafePath');
      const status = await handle.query(statusQuery);
      expect(status.lastFailure).toMatchObject({ step: 'startSpireAgent', type: 'UnsafePath' });
      expect(status.lastFailure!.message).toMatch(
        /spire\.nodeAttestor\.privateKeyPath: .* must be owned by root with mode 0600 \(is uid 0, mode 644\)/,
      );
      expect(await agentProcs('n2')).toEqual([]);
      expect(await agentOf(nodeId)).toBeUndefined();
    } finally {
      await localTransport().run('chmod', ['600', '--', cred.privateKeyPath]);
    }
  });

  it('(d) compensation, a security undo (ban) and decommission leave an agent that does not come back', async () => {
    // Compensation: the workload exits at once, launchWorkloads fails for good after step 4 attested.
    const nodeId = `${tag}-d`;
    const cred = await issueNodeCredential(stack.lab, 'n3', nodeId);
    const input = labProvisionInput(stack.lab, 'n3', {
      nodeId,
      nodeAttestor: x509popAttestorInput(cred),
      workloads: [{ name: 'quitter', spiffePath: `/ns/x509/sa/${nodeId}`, uid: 64003, command: ['/bin/false'] }],
      overrides: { ...LAB_FAST, retry: { ...LAB_FAST.retry, maximumAttempts: 1 } },
    });
    const { handle } = await startProvisioning(stack.env.client, input, { taskQueue });
    counted(taskQueue);
    const err = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(rootFailureType(err)).toBe('WorkloadFailed');
    const status = await handle.query(statusQuery);
    expect(status.steps.find((s) => s.step === 'startSpireAgent')).toMatchObject({
      state: 'compensated',
      undo: { reason: 'failure' },
    });
    expect(status.steps.find((s) => s.step === 'startSpireAgent')!.undo!.removed).toEqual(
      expect.arrayContaining(['agent process', expect.stringMatching(/\(evicted\)$/)]),
    );
    secrets.push(...attestationKeySecrets(input, 'n3'));
    await expectStaysOut('n3', nodeId);

    // Decommission of (a)'s node, which re-attested after an eviction.
    if (!victim) return;
    const n1 = labProvisionInput(stack.lab, 'n1', {
      nodeId: victim.nodeId,
      nodeAttestor: x509popAttestorInput({
        certificatePath: `${stack.lab.node('n1').dir}/attest/node.pem`,
        privateKeyPath: `${stack.lab.node('n1').dir}/attest/node.key`,
        certPem: '',
      }),
      workloads: [{ name: 'api', spiffePath: `/ns/x509/sa/${victim.nodeId}`, uid: 64001, port: 9443 }],
      overrides: LAB_FAST,
    });
    // A security undo (what the workflow runs on a security failure), on a running re-attestable agent:
    // stopped first, then banned: it does not come back, and the later decommission does not lift the ban.
    const acts = createActivities({ ledger: stack.ledger });
    const undo = await acts.undoStartSpireAgent({
      input: ProvisionInput.parse(n1),
      run: { workflowId: `provision/${victim.nodeId}`, runId: 'security-undo' },
      reason: 'security',
    });
    expect(undo.removed).toEqual(expect.arrayContaining(['agent process', expect.stringMatching(/\(banned\)$/)]));
    await expectStaysOut('n1', victim.nodeId, { banned: true });
    await (await startDecommission(stack.env.client, n1, { taskQueue })).result();
    counted(taskQueue);
    await expectStaysOut('n1', victim.nodeId, { banned: true });
    victim = undefined;
  });

  it('(e) the worker killed in the middle of startSpireAgent: the run ends provisioned with one agent and one alias', async () => {
    const crashQueue = uniqueTaskQueue('x509crash');
    const canary = withCanaryPassword(stack.db.url, `canary-${randomBytes(12).toString('hex')}`);
    secrets.push(canary.secret);
    const opts = {
      taskQueue: crashQueue,
      databaseUrl: canary.url,
      temporalAddress: inject('temporalAddress'),
      namespace: inject('temporalNamespace'),
    };
    const nodeId = `${tag}-e`;
    const cred = await issueNodeCredential(stack.lab, 'n4', nodeId);
    const input = inputFor('n4', nodeId, cred, 64004, {
      timeouts: { ...LAB_FAST.timeouts, startSpireAgent: 40 },
      retry: { initialIntervalMs: 500, maximumIntervalMs: 2_000, maximumAttempts: 5 },
    });
    const workers: WorkerProcess[] = [];
    try {
      const faulty = await startWorkerProcess({
        ...opts,
        faultPause: 'startSpireAgent:20000',
        name: 'faulty worker (x509pop step 4)',
      });
      workers.push(faulty);
      const { handle } = await startProvisioning(stack.env.client, input, { taskQueue: crashQueue });
      counted(crashQueue);
      await faulty.waitFor(
        new RegExp(`fault injection: startSpireAgent attempt \\d+ of provision/${nodeId} did its work; pausing`),
        180_000,
      );
      await sleep(1_000);
      expect((await faulty.kill()).signal).toBe('SIGKILL');
      const fresh = await startWorkerProcess({ ...opts, name: 'fresh worker (x509pop step 4)' });
      workers.push(fresh);
      const receipt = await handle.result();
      expect(receipt).toMatchObject({ attestationType: 'x509pop', canReattest: true });
      const history = await handle.fetchHistory();
      // Step 4 really ran twice: scheduled once, its activity retried after the heartbeat timeout.
      const events = history.events ?? [];
      const scheduled = events.filter(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'startSpireAgent',
      );
      expect(scheduled).toHaveLength(1);
      const startedEv = events.find(
        (e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled[0]!.eventId),
      );
      expect(startedEv?.activityTaskStartedEventAttributes?.attempt).toBeGreaterThanOrEqual(2);
      // One agent of this node, one alias, one agent process.
      const mine = (await server.agentList(srv())).filter(
        (a) => a.spiffeId.includes(`/${nodeId}`) || a.selectors.includes(`x509pop:subject:cn:${nodeId}`),
      );
      expect(mine.map((a) => a.spiffeId)).toEqual([agentIdOf(nodeId)]);
      expect(await server.entryShow(srv(), { spiffeId: aliasOf(nodeId) })).toHaveLength(1);
      expect(await agentProcs('n4')).toHaveLength(1);
      secrets.push(...nodeFileSecrets(input, 'n4'));
      await (await startDecommission(stack.env.client, input, { taskQueue: crashQueue })).result();
      counted(crashQueue);
      await expectStaysOut('n4', nodeId);
      for (const w of workers) await w.stop();
    } finally {
      for (const w of workers) await w.kill().catch(() => undefined);
    }
  });

  it('no attestation key, WireGuard key or password in any history of these runs', async () => {
    expect(secrets.filter((s) => /x509pop private key \(body\)$/.test(s.label)).length).toBeGreaterThanOrEqual(1);
    const histories = (
      await Promise.all([...runs].map(([q, n]) => fetchTaskQueueHistories(stack.env.client, q, n)))
    ).flat();
    expect(histories.length).toBe([...runs.values()].reduce((a, b) => a + b, 0));
    expect(leakReport(histories, secrets)).toEqual([]);
  });
});
