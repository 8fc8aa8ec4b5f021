/**
 * tpm_devid on real components: each lab node gets a software TPM (swtpm in
 * its network namespace, lab/tpm.ts) with an EK certificate from the lab's EK
 * CA and a DevID key + certificate from the lab's DevID CA; the lab's SPIRE
 * server trusts both. The SPIRE agent opens the TPM through its unix socket.
 *
 * - provisionNode attests with tpm_devid: the receipt names it with
 *   canReattest, `agent list` shows the agent (ID = sha1 of the DevID
 *   certificate) as tpm_devid / can re-attest, and the workload gets an SVID;
 * - an evicted agent re-attests by itself, with a new SVID serial, and the
 *   workload still gets SVIDs; decommission leaves a node that does not come back;
 * - a DevID certificate from another CA is refused by the server, and one for
 *   another node by the worker before the agent starts: both are security
 *   failures, compensated, and the node does not come back;
 * - compensation after attestation stops the agent, then evicts it; a security
 *   undo stops it, then bans it, and decommission keeps the ban: neither comes back;
 * - the worker SIGKILLed in step 4 after its work: a new worker completes the
 *   run with one agent, one alias, and no secret in the history; a retry after
 *   a worker died between attestation and alias adopts the agent;
 * - the lab's teardown leaves no swtpm.
 *
 * TPM RSA keygens are slow on a busy 2-core machine: every duration is generous and an input.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Ledger } from '../../inventory/index.js';
import { localTransport, transportFor, type HostTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import { nodePaths } from '../../activities/paths.js';
import { fetchX509Svid, startAgent } from '../../activities/spire/agent-cli.js';
import { tpmDevidAgentId, tpmDevidAttestor } from '../../activities/spire/attestors/tpm-devid.js';
import { readProcessRef } from '../../activities/host/process.js';
import * as server from '../../activities/spire/server-cli.js';
import { rootFailureType, startDecommission, startProvisioning } from '../../client/provision.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput, type LabWorkload } from '../../lab/inputs.js';
import type { Lab } from '../../lab/lab.js';
import {
  createDevidCa,
  labTpmAuthority,
  provisionLabNodeTpm,
  reissueDevidCert,
  swtpmRunning,
  tpmDevidAttestorSpec,
  type NodeTpm,
} from '../../lab/tpm.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { statusQuery } from '../../common/definitions.js';
import type { TestDatabase } from '../helpers/database.js';
import { startLabStack, stopLabStack } from '../helpers/lab-stack.js';
import { expectStepFailureChain, failureOf } from '../helpers/failures.js';
import { fetchTaskQueueHistories, leakReport, type Secret } from '../helpers/secret-scan.js';
import { eventually, uniqueId, uniqueTaskQueue, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';
import { startWorkerProcess, stopAllWorkerProcesses, type WorkerProcess } from '../helpers/worker-process.js';

const TD = 'tpm.nodeboot.test';
/** Step deadlines (s): an attestation makes an SRK, an AK and an EK (three RSA keygens in libtpms). */
const TIMEOUTS = { startSpireAgent: 120, gatePeerHealth: 60, compensation: 120 };
const RETRY = { initialIntervalMs: 500, maximumIntervalMs: 2_000, maximumAttempts: 3 };
/** How long an evicted agent gets to attest again by itself (it notices at its next sync, every 5 s). */
const REATTEST_WITHIN_MS = 60_000;
/** How long a node that must not come back is watched (> 2 agent sync intervals). */
const STAYS_OUT_MS = 15_000;
const CASE_TIMEOUT_MS = 600_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('tpm_devid attestation with a software TPM per lab node (real components)', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  const srv = () => ({ transport: lab.hubTransport(), socketPath: lab.spire!.socketPath });

  beforeAll(async () => {
    ({ lab, db, ledger, env } = await startLabStack({ nodes: 4, ephemeral: true, trustDomain: TD }));
  });

  afterAll(async () => {
    await stopAllWorkerProcesses();
    await stopLabStack({ lab, db, ledger, env });
  });

  const tpmInput = (node: string, nodeId: string, tpm: NodeTpm, workloads: LabWorkload[] = []): ProvisionInputJson =>
    labProvisionInput(lab, node, {
      nodeId,
      nodeAttestor: tpmDevidAttestorSpec(tpm),
      workloads,
      overrides: { timeouts: TIMEOUTS, retry: RETRY },
    });

  /** The processes in a lab node's namespace, by name (sorted). */
  const nodeProcs = async (node: string) =>
    (
      await Promise.all(
        (await ip.netnsPids(localTransport(), lab.node(node).netns)).map(async (pid) =>
          readFileSync(`/proc/${pid}/comm`, 'utf8').trim(),
        ),
      )
    ).sort();

  /** Not attested, no alias, no agent process on the node: now and for a while (an agent that could re-attest would be back by then). */
  async function expectStaysOut(node: string, input: ProvisionInputJson, agentId: string, banned: boolean) {
    for (const wait of [0, STAYS_OUT_MS]) {
      await sleep(wait);
      const agents = (await server.agentList(srv())).filter((a) => a.spiffeId === agentId);
      if (banned) {
        // Banned: the row is kept with no serial, so no SVID is ever issued to it again.
        expect(agents.map((a) => a.banned)).toEqual([true]);
      } else {
        expect(agents).toEqual([]);
      }
      expect(await server.entryShow(srv(), { spiffeId: `spiffe://${TD}/node/${input.nodeId}` })).toEqual([]);
      expect(await nodeProcs(node)).not.toContain('spire-agent');
    }
  }

  describe('provision, evict, decommission', () => {
    const nodeId = uniqueId('tpm1');
    let tpm: NodeTpm;
    let input: ProvisionInputJson;
    let agentId: string;
    const workload = { name: 'api', spiffePath: '/ns/tpm/sa/api', uid: 64001, port: 9443 };

    it(
      'provisions end to end with tpm_devid: receipt and agent list say tpm_devid / can re-attest, the workload has an SVID',
      async () => {
        tpm = await provisionLabNodeTpm(lab, 'n1', nodeId);
        input = tpmInput('n1', nodeId, tpm, [workload]);
        agentId = tpmDevidAgentId(TD, Buffer.from(new X509Certificate(readFileSync(tpm.devidCertPath)).raw));
        expect(agentId).toBe(`spiffe://${TD}/spire/agent/tpm_devid/${tpm.devidCertSha1}`);

        const receipt = await withWorker(
          env,
          { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
          async (taskQueue) => {
            const { handle } = await startProvisioning(env.client, input, { taskQueue });
            return handle.result();
          },
        );
        expect(receipt.attestationType).toBe('tpm_devid');
        expect(receipt.canReattest).toBe(true);
        expect(receipt.nodeAliasId).toBe(`spiffe://${TD}/node/${nodeId}`);
        expect(receipt.workloads[0]!.svidTtlSeconds).toBeGreaterThan(3000);

        const agents = (await server.agentList(srv())).filter((a) => a.spiffeId === agentId);
        expect(agents).toHaveLength(1);
        expect(agents[0]).toMatchObject({ attestationType: 'tpm_devid', canReattest: true, banned: false });
        const ca = await labTpmAuthority(lab);
        expect(agents[0]!.selectors).toEqual(
          expect.arrayContaining([
            `tpm_devid:subject:cn:${nodeId}`,
            `tpm_devid:ca:fingerprint:${ca.devidCaFingerprint}`,
          ]),
        );
        // The alias is bound to exactly this agent (this DevID certificate).
        const alias = await server.entryShow(srv(), { spiffeId: receipt.nodeAliasId });
        expect(alias.map((e) => [e.parentId, e.selectors])).toEqual([[agentId, [`spiffe_id:${agentId}`]]]);
        expect(await nodeProcs('n1')).toEqual(expect.arrayContaining(['spire-agent', 'swtpm']));
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'an evicted agent attests again by itself (new SVID serial) and the workload keeps getting SVIDs',
      async () => {
        expect(agentId).toBeDefined();
        const before = (await server.agentList(srv())).find((a) => a.spiffeId === agentId)!;
        expect(await server.agentEvict(srv(), agentId)).toBe(true);
        const t0 = Date.now();
        const back = await eventually(
          async () =>
            (await server.agentList(srv())).find(
              (a) => a.spiffeId === agentId && a.x509SvidSerialNumber !== before.x509SvidSerialNumber,
            ),
          { timeoutMs: REATTEST_WITHIN_MS, intervalMs: 500, what: 'the evicted tpm_devid agent attested again' },
        );
        console.log(`[tpm] evicted agent back after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        expect(back).toMatchObject({ attestationType: 'tpm_devid', canReattest: true, banned: false });
        const p = nodePaths(ProvisionInput.parse(input));
        const svid = await fetchX509Svid(
          { transport: lab.nodeTransport('n1'), socketPath: p.agentSocket },
          {
            writeDir: `${p.workloadDir(workload.name)}/evict-check`,
            uid: workload.uid,
            gid: workload.uid,
            waitMs: 30_000,
          },
        );
        expect(svid.spiffeId).toBe(`spiffe://${TD}${workload.spiffePath}`);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'decommission stops the agent before evicting it: it does not come back, the TPM stays',
      async () => {
        expect(agentId).toBeDefined();
        await withWorker(
          env,
          { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
          async (taskQueue) => {
            await (await startDecommission(env.client, input, { taskQueue })).result();
          },
        );
        await expectStaysOut('n1', input, agentId, false);
        expect(await ledger.getNode(nodeId)).toBeNull();
        // The TPM is the node's hardware: decommission does not touch it.
        expect(await nodeProcs('n1')).toEqual(['swtpm']);
      },
      CASE_TIMEOUT_MS,
    );
  });

  it(
    'a DevID certificate from another CA: the server refuses it, a security failure, compensated, the node does not come back',
    async () => {
      const nodeId = uniqueId('tpm2');
      const other = await createDevidCa(`${lab.state.dir}/other-devid-ca`, 'not the lab DevID CA');
      const tpm = await reissueDevidCert(await provisionLabNodeTpm(lab, 'n2', nodeId), { ca: other, cn: nodeId });
      const input = tpmInput('n2', nodeId, tpm);
      const err = await withWorker(
        env,
        { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
        async (taskQueue) => {
          const { handle } = await startProvisioning(env.client, input, { taskQueue });
          return failureOf(handle.result());
        },
      );
      const { original } = expectStepFailureChain(err, 'AttestationRejected', 'startSpireAgent');
      expect(original.message).toMatch(
        /refused by the server.*tpm_devid.*unable to verify DevID signature.*unknown authority/,
      );
      await expectStaysOut(
        'n2',
        input,
        tpmDevidAgentId(TD, Buffer.from(new X509Certificate(readFileSync(tpm.devidCertPath)).raw)),
        false,
      );
      // Compensated: the overlay address is released too.
      expect((await ledger.getNode(nodeId))?.state).toBe('compensated');
      expect(await ledger.listAllocations(nodeId)).toEqual([]);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'a DevID certificate for another node: refused before the agent starts (never presented), compensated',
    async () => {
      const nodeId = uniqueId('tpm3');
      const ca = await labTpmAuthority(lab);
      const tpm = await reissueDevidCert(await provisionLabNodeTpm(lab, 'n3', nodeId), {
        ca: { certPath: ca.devidCaPath, keyPath: ca.devidCaKeyPath },
        cn: `${nodeId}-other`,
      });
      const input = tpmInput('n3', nodeId, tpm);
      // Every daemon the worker starts: a spire-agent must not be one of them.
      const daemons: string[] = [];
      const recording = (spec: ProvisionInput['host']): HostTransport => {
        const inner = transportFor(spec);
        return {
          ...inner,
          run: inner.run.bind(inner),
          spawnDaemon: (command, args, o) => (daemons.push(command), inner.spawnDaemon(command, args, o)),
        };
      };
      const err = await withWorker(
        env,
        { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger, transport: recording }) },
        async (taskQueue) => {
          const { handle } = await startProvisioning(env.client, input, { taskQueue });
          return failureOf(handle.result());
        },
      );
      const { original } = expectStepFailureChain(err, 'AttestationRejected', 'startSpireAgent');
      expect(original.message).toMatch(
        new RegExp(`DevID certificate .* is issued to CN=\\["${nodeId}-other"\\], not to node ${nodeId}`),
      );
      // Never presented: no agent was started (the overlay's wireguard-go was), the server knows no agent for that certificate.
      expect(daemons).toContain('wireguard-go');
      expect(daemons).not.toContain('spire-agent');
      await expectStaysOut('n3', input, `spiffe://${TD}/spire/agent/tpm_devid/${tpm.devidCertSha1}`, false);
      expect((await ledger.getNode(nodeId))?.state).toBe('compensated');
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'compensation after attestation (a workload that exits) stops the agent before evicting it: it does not come back',
    async () => {
      const nodeId = uniqueId('tpm5');
      const tpm = await provisionLabNodeTpm(lab, 'n2', nodeId);
      const input = labProvisionInput(lab, 'n2', {
        nodeId,
        nodeAttestor: tpmDevidAttestorSpec(tpm),
        workloads: [{ name: 'quitter', spiffePath: '/ns/tpm/sa/quitter', uid: 64005, command: ['/bin/false'] }],
        overrides: { timeouts: TIMEOUTS, retry: { ...RETRY, maximumAttempts: 1 } },
      });
      const agentId = `spiffe://${TD}/spire/agent/tpm_devid/${tpm.devidCertSha1}`;
      const status = await withWorker(
        env,
        { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
        async (taskQueue) => {
          const { handle } = await startProvisioning(env.client, input, { taskQueue });
          const err = await handle.result().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(rootFailureType(err)).toBe('WorkloadFailed');
          return handle.query(statusQuery);
        },
      );
      const step4 = status.steps.find((x) => x.step === 'startSpireAgent');
      expect(step4).toMatchObject({ state: 'compensated', undo: { reason: 'failure' } });
      // The agent had attested (it was evicted), and was stopped first.
      expect(step4!.undo!.removed).toEqual(
        expect.arrayContaining(['agent process', expect.stringMatching(/\(evicted\)$/)]),
      );
      await expectStaysOut('n2', input, agentId, false);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'a security undo of a running tpm_devid agent stops and bans it; decommission keeps the ban',
    async () => {
      const nodeId = uniqueId('tpm6');
      const tpm = await provisionLabNodeTpm(lab, 'n3', nodeId);
      const input = tpmInput('n3', nodeId, tpm);
      const agentId = `spiffe://${TD}/spire/agent/tpm_devid/${tpm.devidCertSha1}`;
      await withWorker(
        env,
        { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
        async (taskQueue) => {
          await (await startProvisioning(env.client, input, { taskQueue })).handle.result();
          expect((await server.agentList(srv())).find((a) => a.spiffeId === agentId)).toMatchObject({
            banned: false,
            canReattest: true,
          });
          // What the workflow runs on a security failure, on a running re-attestable agent.
          const undo = await createActivities({ ledger }).undoStartSpireAgent({
            input: ProvisionInput.parse(input),
            run: { workflowId: `provision/${nodeId}`, runId: 'security-undo' },
            reason: 'security',
          });
          expect(undo.removed).toEqual(expect.arrayContaining(['agent process', expect.stringMatching(/\(banned\)$/)]));
          await expectStaysOut('n3', input, agentId, true);
          await (await startDecommission(env.client, input, { taskQueue })).result();
        },
      );
      await expectStaysOut('n3', input, agentId, true);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'startSpireAgent: worker SIGKILLed after its work, before its result; a new worker completes the run with one agent and one alias',
    async () => {
      const nodeId = uniqueId('tpm4');
      const tpm = await provisionLabNodeTpm(lab, 'n4', nodeId);
      const input = tpmInput('n4', nodeId, tpm);
      const agentId = `spiffe://${TD}/spire/agent/tpm_devid/${tpm.devidCertSha1}`;
      const taskQueue = uniqueTaskQueue('tpmcrash');
      const opts = {
        taskQueue,
        databaseUrl: db.url,
        temporalAddress: inject('temporalAddress'),
        namespace: inject('temporalNamespace'),
      };
      const workers: WorkerProcess[] = [];
      try {
        const faulty = await startWorkerProcess({
          ...opts,
          faultPause: 'startSpireAgent:20000',
          name: 'faulty worker (tpm startSpireAgent)',
        });
        workers.push(faulty);
        const { handle } = await startProvisioning(env.client, input, { taskQueue });
        const runId = (await handle.describe()).runId;
        await faulty.waitFor(
          new RegExp(`fault injection: startSpireAgent attempt \\d+ of provision/${nodeId} did its work; pausing`),
          300_000,
        );
        await sleep(1_000);
        expect((await faulty.kill()).signal).toBe('SIGKILL');
        expect(
          (await ledger.listEvents(nodeId, { runId })).filter(
            (e) => e.step === 'startSpireAgent' && e.kind === 'succeeded',
          ),
        ).toEqual([]);

        const fresh = await startWorkerProcess({ ...opts, name: 'fresh worker (tpm startSpireAgent)' });
        workers.push(fresh);
        const receipt = await handle.result();
        expect(receipt.attestationType).toBe('tpm_devid');
        // The step really ran again (attempt >= 2), and adopted the agent: one agent, one alias, one agent process.
        const events = (await handle.fetchHistory()).events ?? [];
        const scheduled = events.filter(
          (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'startSpireAgent',
        );
        expect(scheduled).toHaveLength(1);
        const started = events.find(
          (e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled[0]!.eventId),
        );
        expect(started?.activityTaskStartedEventAttributes?.attempt).toBeGreaterThanOrEqual(2);
        const agents = (await server.agentList(srv())).filter(
          (a) => a.attestationType === 'tpm_devid' && a.selectors.includes(`tpm_devid:subject:cn:${nodeId}`),
        );
        expect(agents.map((a) => a.spiffeId)).toEqual([agentId]);
        expect((await server.entryShow(srv(), { spiffeId: receipt.nodeAliasId })).map((e) => e.parentId)).toEqual([
          agentId,
        ]);
        expect(await nodeProcs('n4')).toEqual(['spire-agent', 'swtpm', 'wireguard-go']);

        // The DevID key blob (TPM-wrapped) and the CA keys are in no history of the run.
        const ca = await labTpmAuthority(lab);
        const secrets: Secret[] = [
          { label: 'n4 DevID private blob (base64)', value: readFileSync(tpm.devidPrivPath).toString('base64') },
          { label: 'n4 DevID private blob (hex)', value: readFileSync(tpm.devidPrivPath).toString('hex') },
          { label: 'lab DevID CA key', value: readFileSync(ca.devidCaKeyPath, 'utf8').split('\n')[1]! },
        ];
        await (await startDecommission(env.client, input, { taskQueue })).result();
        expect(leakReport(await fetchTaskQueueHistories(env.client, taskQueue, 2), secrets)).toEqual([]);
        await expectStaysOut('n4', input, agentId, false);
        await fresh.stop();
      } catch (err) {
        for (const w of workers)
          console.error(
            `--- ${w.name} (pid ${w.pid}) output tail ---\n${w.output().split('\n').slice(-60).join('\n')}`,
          );
        throw err;
      } finally {
        for (const w of workers) await w.kill();
      }
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'startSpireAgent retried after a worker died between attestation and the alias: it adopts the agent, and the undo finds it',
    async () => {
      const nodeId = uniqueId('tpm7');
      const tpm = await provisionLabNodeTpm(lab, 'n2', nodeId);
      const input = ProvisionInput.parse(tpmInput('n2', nodeId, tpm));
      const run = { workflowId: `provision/${nodeId}`, runId: 'died-mid-step-4' };
      const acts = createActivities({ ledger });
      const t = lab.nodeTransport('n2');
      const p = nodePaths(input);
      const agentId = `spiffe://${TD}/spire/agent/tpm_devid/${tpm.devidCertSha1}`;
      try {
        await acts.installOverlay({ input, run });
        await acts.issueOverlayKey({ input, run });
        await acts.gatePeerHealth({ input, run });
        // The attempt that died: what step 4 does up to a healthy, attested agent, and no further.
        const ctx = {
          input,
          spec: input.spire.nodeAttestor as Extract<ProvisionInput['spire']['nodeAttestor'], { type: 'tpm_devid' }>,
          node: t,
          server: srv(),
        };
        const attestation = await tpmDevidAttestor.prepare(ctx);
        await startAgent({
          transport: t,
          nodeAttestor: { type: 'tpm_devid', pluginData: attestation.pluginData },
          trustBundlePem: await server.bundleShow(srv()),
          trustDomain: TD,
          serverAddress: input.spire.serverAddress,
          serverPort: input.spire.serverPort,
          dataDir: p.agentDataDir,
          socketPath: p.agentSocket,
          pidFile: p.agentPid,
          logFile: p.agentLog,
          healthTimeoutMs: 110_000,
        });
        expect((await server.agentList(srv())).map((a) => a.spiffeId)).toContain(agentId);
        // The retry: the running agent is this node's (not an OwnershipConflict), adopted, not restarted.
        const pid = (await readProcessRef(t, p.agentPid))!.pid;
        const evidence = await acts.startSpireAgent({ input, run });
        expect(evidence).toMatchObject({ attestationType: 'tpm_devid', canReattest: true, agentPid: pid });
        expect((await server.entryShow(srv(), { spiffeId: evidence.nodeAliasId })).map((e) => e.parentId)).toEqual([
          agentId,
        ]);
      } finally {
        const undo = await acts.undoStartSpireAgent({ input, run, reason: 'failure' });
        await acts.undoIssueOverlayKey({ input, run, reason: 'failure' });
        await acts.undoInstallOverlay({ input, run, reason: 'failure' });
        expect(undo.removed).toEqual(expect.arrayContaining(['agent process', expect.stringMatching(/\(evicted\)$/)]));
      }
      await expectStaysOut('n2', tpmInput('n2', nodeId, tpm), agentId, false);
    },
    CASE_TIMEOUT_MS,
  );

  it('the lab teardown leaves no swtpm', async () => {
    const running = await Promise.all(lab.nodes.map((n) => swtpmRunning(lab.nodeTransport(n), `${n.dir}/tpm`)));
    expect(running.filter(Boolean).length).toBeGreaterThan(0);
    const dir = lab.state.dir;
    await lab.down();
    const left = (await localTransport().run('pgrep', ['-a', 'swtpm'], { allowNonZeroExit: true })).stdout
      .split('\n')
      .filter((l) => l.includes(dir));
    expect(left).toEqual([]);
  });
});
