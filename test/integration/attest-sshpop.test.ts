/**
 * sshpop node attestation end to end, on real components (lab namespaces,
 * wireguard-go, the SPIRE server and agents, PostgreSQL, the Temporal dev
 * server). The lab's server trusts the lab SSH CA (lab/spire-server.ts); each
 * node's host key is made on the node (0600, root's) and signed by that CA as
 * a host certificate (lab/ssh-ca.ts, `ssh-keygen -s -h`). Cases:
 *   (a) provisionNode: receipt, status and `spire-server agent list` name
 *       sshpop and can re-attest; the alias is parented on the node's agent ID;
 *   (b) `agent evict`: the agent attests again by itself (new SVID serial)
 *       and the workload still fetches a valid SVID;
 *   (c) a host certificate for another principal, an expired one, one from
 *       another CA, one for another key: AttestationRejected, compensated, the
 *       node does not come back, the other node is untouched (never banned);
 *   (d) compensation and decommission leave an agent that does not come back;
 *   (e) the worker SIGKILLed in the middle of startSpireAgent: the run still
 *       ends provisioned with one agent and one alias entry;
 * and no node's host key (nor any other secret) is in any history.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { localTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import { fetchX509Svid } from '../../activities/spire/agent-cli.js';
import * as server from '../../activities/spire/server-cli.js';
import { verifySvid } from '../../activities/workloads/svid.js';
import { stepLine } from '../../client/cli/render.js';
import { rootFailureType, startDecommission, startProvisioning } from '../../client/provision.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { nodePaths } from '../../common/paths.js';
import { labProvisionInput } from '../../lab/inputs.js';
import {
  hostKeyPaths,
  issueExpiredHostCert,
  issueHostCertForPrincipal,
  issueHostCertFromOtherCa,
  issueNodeHostCert,
  labHostKeyDir,
  labSshCa,
  makeNodeHostKey,
  signHostKey,
  sshpopAttestorInput,
  type IssuedHostCert,
} from '../../lab/ssh-ca.js';
import { statusQuery } from '../../common/definitions.js';
import { LAB_FAST, startLabSuite, stopLabSuite, type LabSuite } from '../helpers/lab-stack.js';
import {
  attestationKeySecrets,
  fetchTaskQueueHistories,
  hubKeySecrets,
  leakReport,
  nodeFileSecrets,
  withCanaryPassword,
  type Secret,
} from '../helpers/secret-scan.js';
import { eventually, uniqueId, uniqueTaskQueue } from '../helpers/temporal.js';
import { startWorkerProcess, stopAllWorkerProcesses, type WorkerProcess } from '../helpers/worker-process.js';
import { isAgentDaemon } from '../helpers/procs.js';

const TD = 'sshpop.nodeboot.test';
/** SPIRE's agent sync interval (5 s): "does not come back" waits more than two of them. */
const SYNC_MS = 5_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sshpop node attestation (real components)', () => {
  let stack: LabSuite;
  const taskQueue = uniqueTaskQueue('sshpop');
  const tag = uniqueId('sp').slice(-8);
  const secrets: Secret[] = [];
  /** Runs started per task queue (the history scan waits for all of them). */
  const runs = new Map<string, number>([[taskQueue, 0]]);
  const counted = (q: string) => runs.set(q, (runs.get(q) ?? 0) + 1);
  /** n1's node, provisioned by (a) and kept until (d): the "other node" of the refusals. */
  let victim: { nodeId: string; agentId: string } | undefined;

  const srv = () => ({ transport: stack.lab.hubTransport(), socketPath: stack.lab.spire!.socketPath });
  const agentIdOf = (nodeId: string) => `spiffe://${TD}/spire/agent/sshpop/${nodeId}`;
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

  /** An input for lab node `node` attesting with host key + certificate `cert`. */
  function inputFor(
    node: string,
    nodeId: string,
    cert: Pick<IssuedHostCert, 'keyFile' | 'certFile'>,
    uid: number,
    extra: Partial<ProvisionInputJson> = {},
  ): ProvisionInputJson {
    return labProvisionInput(stack.lab, node, {
      nodeId,
      nodeAttestor: sshpopAttestorInput(cert),
      workloads: [{ name: 'api', spiffePath: `/ns/sshpop/sa/${nodeId}`, uid, port: 9443 }],
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

  it('(a) provisions with sshpop: receipt, status and agent list say sshpop, can re-attest; (b) an evicted agent comes back by itself', async () => {
    const nodeId = `${tag}-a`;
    const cert = await issueNodeHostCert(stack.lab, 'n1', nodeId);
    // Made on the node, root's, 0600; the certificate names the node.
    const key = statSync(cert.keyFile);
    expect([key.uid, key.mode & 0o777]).toEqual([0, 0o600]);
    expect(path.dirname(cert.keyFile)).toBe(labHostKeyDir(stack.lab, 'n1'));
    expect(cert.principals).toEqual([nodeId]);
    const input = inputFor('n1', nodeId, cert, 65001);
    const { handle } = await startProvisioning(stack.env.client, input, { taskQueue });
    counted(taskQueue);
    const receipt = await handle.result();
    expect(receipt).toMatchObject({ attestationType: 'sshpop', canReattest: true, nodeAliasId: aliasOf(nodeId) });
    const status = await handle.query(statusQuery);
    const step4 = status.steps.find((s) => s.step === 'startSpireAgent')!;
    expect(step4.evidence).toMatchObject({ attestationType: 'sshpop', canReattest: true });
    expect(stepLine(step4)).toMatch(/\(sshpop, can re-attest\)/);

    // The server's own view, as an operator reads it.
    const list = await stack.lab
      .hubTransport()
      .run('spire-server', ['agent', 'list', '-socketPath', stack.lab.spire!.socketPath]);
    expect(list.stdout).toContain(agentIdOf(nodeId));
    expect(list.stdout).toMatch(/Attestation type\s*:\s*sshpop/);
    expect(list.stdout).toMatch(/Can re-attest\s*:\s*true/);
    const agent = (await agentOf(nodeId))!;
    expect(agent).toMatchObject({ attestationType: 'sshpop', canReattest: true, banned: false, selectors: [] });
    // sshpop gives no selectors: the alias hangs off this node's agent ID, and nothing looser.
    const aliases = await server.entryShow(srv(), { spiffeId: aliasOf(nodeId) });
    expect(aliases).toHaveLength(1);
    expect(aliases[0]!.parentId).toBe(agentIdOf(nodeId));
    expect(aliases[0]!.selectors).toEqual([`spiffe_id:${agentIdOf(nodeId)}`]);
    secrets.push(...nodeFileSecrets(input, 'n1'));

    // (b) Evict: the running agent attests again by itself, with a new SVID.
    expect(await server.agentEvict(srv(), agentIdOf(nodeId))).toBe(true);
    const evictedAt = Date.now();
    const back = await eventually(
      async () => {
        const a = await agentOf(nodeId);
        return a && a.x509SvidSerialNumber !== agent.x509SvidSerialNumber ? a : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: 'the evicted agent to attest again' },
    );
    console.log(`[sshpop] re-attested ${((Date.now() - evictedAt) / 1000).toFixed(1)} s after the eviction`);
    expect(back).toMatchObject({ banned: false, canReattest: true, attestationType: 'sshpop' });
    // The alias survived the eviction (only join_token aliases cascade) and still names the agent.
    expect((await server.entryShow(srv(), { spiffeId: aliasOf(nodeId) })).map((e) => e.parentId)).toEqual([
      agentIdOf(nodeId),
    ]);
    // Each workload still gets a valid SVID from it.
    const p = nodePaths(ProvisionInput.parse(input));
    const probeDir = `/tmp/nbsshpop-${randomBytes(4).toString('hex')}`;
    const svid = await fetchX509Svid(
      { transport: stack.lab.nodeTransport('n1'), socketPath: p.agentSocket },
      { writeDir: probeDir, uid: 65001, gid: 65001, waitMs: 30_000 },
    );
    await localTransport().run('rm', ['-rf', '--', probeDir]);
    expect(svid.spiffeId).toBe(`spiffe://${TD}/ns/sshpop/sa/${nodeId}`);
    const check = await verifySvid(svid.svidPem, svid.bundlePem, { spiffeId: svid.spiffeId, ttlSeconds: 3600 });
    expect(new Date(check.notAfter).getTime()).toBeGreaterThan(Date.now());
    victim = { nodeId, agentId: agentIdOf(nodeId) };
  });

  it('(c) refuses a host certificate for another principal, an expired one, one from another CA, one for another key: compensated, the node stays out, the other node untouched', async () => {
    const victimId = victim?.nodeId ?? `${tag}-v`;
    const victimBefore = victim ? await agentOf(victim.nodeId) : undefined;
    const cases = [
      {
        why: 'another principal',
        issue: (nodeId: string) => issueHostCertForPrincipal(stack.lab, 'n2', nodeId, victimId),
        message: /issued to .*not to node/,
      },
      {
        why: 'expired',
        issue: (nodeId: string) => issueExpiredHostCert(stack.lab, 'n2', nodeId),
        message: /expired at 2020-01-0/,
      },
      {
        why: 'another CA',
        issue: (nodeId: string) => issueHostCertFromOtherCa(stack.lab, 'n2', nodeId),
        message: /refused by the server.*no authorities for hostname/,
      },
      {
        why: 'another key',
        // A valid certificate for this node, but of a second host key: the input pairs it with the first key.
        issue: async (nodeId: string) => {
          const own = await makeNodeHostKey(stack.lab.nodeTransport('n2'), labHostKeyDir(stack.lab, 'n2'), nodeId);
          const other = await makeNodeHostKey(
            stack.lab.nodeTransport('n2'),
            `${labHostKeyDir(stack.lab, 'n2')}-other`,
            nodeId,
          );
          const cert = await signHostKey(await labSshCa(stack.lab), other, { principals: [nodeId] });
          return { keyFile: own.keyFile, certFile: cert.certFile };
        },
        message: /is not the key certified by/,
      },
    ];
    for (const [i, c] of cases.entries()) {
      const nodeId = `${tag}-c${i}`;
      const input = inputFor('n2', nodeId, await c.issue(nodeId), 65002);
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
    // The node whose principal was tried is neither banned nor disturbed (its SVID is the one it had).
    const victimAfter = await agentOf(victimId);
    if (victimBefore) {
      expect(victimAfter).toMatchObject({ banned: false, x509SvidSerialNumber: victimBefore.x509SvidSerialNumber });
    } else {
      expect(victimAfter?.banned ?? false).toBe(false);
    }
  });

  it('(c2) refuses, before the agent starts, a host key others can read (UnsafePath) and a user certificate (InvalidInput)', async () => {
    const cases = [
      {
        why: 'key readable by group',
        issue: async (nodeId: string) => {
          const cert = await issueNodeHostCert(stack.lab, 'n2', nodeId, {
            dir: `${stack.lab.node('n2').dir}/attest-loose`,
          });
          await stack.lab.nodeTransport('n2').run('chmod', ['640', '--', cert.keyFile]);
          return cert;
        },
        type: 'UnsafePath',
        message: /hostKeyPath: .* must be owned by root with mode 0600 \(is uid 0, mode 640\)/,
      },
      {
        why: 'user certificate',
        issue: async (nodeId: string) => {
          const host = await makeNodeHostKey(
            stack.lab.nodeTransport('n2'),
            `${stack.lab.node('n2').dir}/attest-user`,
            nodeId,
          );
          // No -h: a user certificate for the same principal, from the trusted CA.
          const pub = readFileSync(host.pubFile, 'utf8');
          const ca = await labSshCa(stack.lab);
          const tmp = `${ca.dir}/user-${randomBytes(4).toString('hex')}`;
          await localTransport().run('sh', ['-c', 'umask 077; mkdir "$1" && cat > "$1/u.pub"', 'w', tmp], {
            input: pub,
          });
          await localTransport().run('ssh-keygen', [
            '-q',
            '-s',
            ca.keyFile,
            '-I',
            nodeId,
            '-n',
            nodeId,
            '-V',
            '-5m:+1d',
            `${tmp}/u.pub`,
          ]);
          await stack.lab.nodeTransport('n2').run('cp', ['--', `${tmp}/u-cert.pub`, host.certFile]);
          await localTransport().run('rm', ['-rf', '--', tmp]);
          return host;
        },
        type: 'InvalidInput',
        message: /hostCertPath: .* is a user certificate/,
      },
    ];
    for (const [i, c] of cases.entries()) {
      const nodeId = `${tag}-f${i}`;
      const input = inputFor('n2', nodeId, await c.issue(nodeId), 65002);
      const { handle } = await startProvisioning(stack.env.client, input, { taskQueue });
      counted(taskQueue);
      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(rootFailureType(err), c.why).toBe(c.type);
      const status = await handle.query(statusQuery);
      expect(status.state, c.why).toBe('compensated');
      expect(status.lastFailure, c.why).toMatchObject({ step: 'startSpireAgent', type: c.type });
      expect(status.lastFailure!.message, c.why).toMatch(c.message);
      secrets.push(...attestationKeySecrets(input, `n2 (${c.why})`));
      // Nothing was presented: no agent ran, the server never saw the node.
      expect(await agentProcs('n2')).toEqual([]);
      expect(await agentOf(nodeId)).toBeUndefined();
      expect(await server.entryShow(srv(), { spiffeId: aliasOf(nodeId) })).toEqual([]);
    }
  });

  it('(d) compensation and decommission leave an agent that does not come back', async () => {
    // Compensation: the workload exits at once, launchWorkloads fails for good after step 4 attested.
    const nodeId = `${tag}-d`;
    const cert = await issueNodeHostCert(stack.lab, 'n3', nodeId);
    const input = labProvisionInput(stack.lab, 'n3', {
      nodeId,
      nodeAttestor: sshpopAttestorInput(cert),
      workloads: [{ name: 'quitter', spiffePath: `/ns/sshpop/sa/${nodeId}`, uid: 65003, command: ['/bin/false'] }],
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
      expect.arrayContaining([
        'agent process',
        expect.stringMatching(/\(evicted\)$/),
        expect.stringMatching(/^alias entry /),
      ]),
    );
    secrets.push(...attestationKeySecrets(input, 'n3'));
    await expectStaysOut('n3', nodeId);

    // Decommission of (a)'s node, which re-attested after an eviction.
    if (!victim) return;
    const n1 = inputFor('n1', victim.nodeId, hostKeyPaths(labHostKeyDir(stack.lab, 'n1')), 65001);
    await (await startDecommission(stack.env.client, n1, { taskQueue })).result();
    counted(taskQueue);
    await expectStaysOut('n1', victim.nodeId);
    victim = undefined;
  });

  it('(e) the worker killed in the middle of startSpireAgent: the run ends provisioned with one agent and one alias', async () => {
    const crashQueue = uniqueTaskQueue('sshpopcrash');
    const canary = withCanaryPassword(stack.db.url, `canary-${randomBytes(12).toString('hex')}`);
    secrets.push(canary.secret);
    const opts = {
      taskQueue: crashQueue,
      databaseUrl: canary.url,
      temporalAddress: inject('temporalAddress'),
      namespace: inject('temporalNamespace'),
    };
    const nodeId = `${tag}-e`;
    const cert = await issueNodeHostCert(stack.lab, 'n4', nodeId);
    const input = inputFor('n4', nodeId, cert, 65004, {
      timeouts: { ...LAB_FAST.timeouts, startSpireAgent: 40 },
      retry: { initialIntervalMs: 500, maximumIntervalMs: 2_000, maximumAttempts: 5 },
    });
    const workers: WorkerProcess[] = [];
    try {
      const faulty = await startWorkerProcess({
        ...opts,
        faultPause: 'startSpireAgent:20000',
        name: 'faulty worker (sshpop step 4)',
      });
      workers.push(faulty);
      const { handle } = await startProvisioning(stack.env.client, input, { taskQueue: crashQueue });
      counted(crashQueue);
      await faulty.waitFor(
        new RegExp(`fault injection: startSpireAgent attempt \\d+ of provision/${nodeId} did its work; pausing`),
        180_000,
      );
      // The work was done: the agent runs and is attested as this node before the kill.
      expect(await agentOf(nodeId)).toMatchObject({ attestationType: 'sshpop', banned: false });
      await sleep(1_000);
      expect((await faulty.kill()).signal).toBe('SIGKILL');
      const fresh = await startWorkerProcess({ ...opts, name: 'fresh worker (sshpop step 4)' });
      workers.push(fresh);
      const receipt = await handle.result();
      expect(receipt).toMatchObject({ attestationType: 'sshpop', canReattest: true });
      // step 4 really ran again (attempt >= 2, after the heartbeat timeout), and once succeeded.
      const events = (await handle.fetchHistory()).events ?? [];
      const scheduled = events.filter(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'startSpireAgent',
      );
      expect(scheduled).toHaveLength(1);
      const started = events.find(
        (e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled[0]!.eventId),
      );
      expect(started?.activityTaskStartedEventAttributes?.attempt).toBeGreaterThanOrEqual(2);
      // One agent of this node (attested once: no re-attestation), one alias, one agent process.
      const mine = (await server.agentList(srv())).filter((a) => a.spiffeId.includes(nodeId));
      expect(mine.map((a) => a.spiffeId)).toEqual([agentIdOf(nodeId)]);
      const aliases = await server.entryShow(srv(), { spiffeId: aliasOf(nodeId) });
      expect(aliases.map((e) => [e.parentId, e.selectors])).toEqual([
        [agentIdOf(nodeId), [`spiffe_id:${agentIdOf(nodeId)}`]],
      ]);
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

  it('no host key, WireGuard key or password in any history of these runs', async () => {
    expect(secrets.filter((s) => /sshpop host key \(body\)$/.test(s.label)).length).toBeGreaterThanOrEqual(1);
    const histories = (
      await Promise.all([...runs].map(([q, n]) => fetchTaskQueueHistories(stack.env.client, q, n)))
    ).flat();
    expect(histories.length).toBe([...runs.values()].reduce((a, b) => a + b, 0));
    expect(leakReport(histories, secrets)).toEqual([]);
  });
});
