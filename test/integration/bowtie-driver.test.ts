/**
 * provisionNode with `overlay.driver: "bowtie"` end to end, on the real
 * everything-else: a lab node (network namespace), the real dpkg installing a
 * package into the node's install root, a real wireguard-go tunnel to the
 * lab hub, the SPIRE server and agent, the ledger and the dev server.
 *
 * Bowtie's controller and client are proprietary, so two test doubles stand in
 * for them (test/standins/): the controller speaks the documented API and,
 * when a device is accepted, makes it a peer of the lab hub; the client .deb
 * starts a daemon in the node's namespace that makes its key there, serves the
 * local API on :17133 and brings the tunnel up once accepted.
 *
 * Proven here: the same receipt as the WireGuard driver (overlay address, key
 * fingerprint, probe, agent, entries, SVIDs) plus the controller's view of the
 * device; the device's private key only on the node; the segment's policy
 * upserted once, and it is what grants the route to the SPIRE server;
 * pre-approval by serial with session auth; a device an operator rejected
 * fails the run for good and compensates; wrong credentials fail for good, the
 * node is cleaned and a decommission with fixed credentials clears the
 * controller; decommission leaves nothing on the node, the controller, the hub
 * or in the ledger.
 *
 * Trust (issue 11): every stand-in serves TLS from a CA the test makes, which
 * the worker's activities and the stand-in client trust explicitly. A
 * controller or entrypoint off the worker's allow-list, or plain http, is
 * refused before anything changes and gets no request; a bad package is found
 * before the config is seeded or the serial pre-approved; a pre-approval is
 * withdrawn by a failed run's compensation and by decommission.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { Ledger } from '../../inventory/index.js';
import { localTransport } from '../../activities/host/transport.js';
import { BowtieController } from '../../activities/overlay/bowtie/controller.js';
import { policyIds } from '../../activities/overlay/bowtie/steps.js';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import * as server from '../../activities/spire/server-cli.js';
import { startDecommission, startProvisioning } from '../../client/provision.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { Lab } from '../../lab/lab.js';
import type { BowtieTrust } from '../../activities/overlay/bowtie/trust.js';
import { decideUpdate, statusQuery, type ProvisionStatus } from '../../common/definitions.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { expectStepFailureChain, failureOf } from '../helpers/failures.js';
import { requireRealComponents } from '../helpers/prereqs.js';
import { findLeaks, historyText, wireguardKeySecrets } from '../helpers/secret-scan.js';
import { connectTestEnv, eventually, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';
import { BowtieControllerStandIn } from '../standins/bowtie-controller.js';
import {
  buildStandInPackage,
  servePackages,
  type PackageServer,
  type StandInPackage,
} from '../standins/bowtie-package.js';
import { loopbackTls } from '../standins/tls.js';

const KEY = { id: 'nodeboot-test-key', secret: 'bowtie-api-secret-canary-5c1f' };
const USER = { email: 'ops@example.org', password: 'bowtie-password-canary-77a2' };
const DEVICE_POOL = '10.200.128.0/17';
/** What the worker's environment holds; the input only names these variables. */
const WORKER_ENV = {
  NODEBOOT_CRED_BOWTIE_KEY_ID: KEY.id,
  NODEBOOT_CRED_BOWTIE_KEY_SECRET: KEY.secret,
  NODEBOOT_CRED_BOWTIE_EMAIL: USER.email,
  NODEBOOT_CRED_BOWTIE_PASSWORD: USER.password,
};

describe('the bowtie overlay driver, end to end against the stand-ins', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  let controller: BowtieControllerStandIn;
  let pkg: StandInPackage;
  let pkgServer: PackageServer;
  let pkgUrl = '';
  /** The worker's Bowtie config: the stand-in controller allowed, the test CA trusted. */
  let trust: BowtieTrust;
  let tls: Awaited<ReturnType<typeof loopbackTls>>;
  /** The test CA on the nodes' (shared) filesystem, for the stand-in client. */
  let caFile = '';
  const td = 'bowtie.nodeboot.test';
  /** The activities as the worker builds them. */
  const activities = (workerEnv: NodeJS.ProcessEnv = WORKER_ENV) =>
    createActivities({ ledger, env: workerEnv, bowtie: trust });

  beforeAll(async () => {
    requireRealComponents(['temporal', 'spire-server', 'spire-agent']);
    [lab, db, env] = await Promise.all([
      Lab.up({ nodes: 2, ephemeral: true, trustDomain: td }),
      createTestDatabase(),
      connectTestEnv(),
    ]);
    ledger = await Ledger.connect(db.url, { migrate: true });
    tls = await loopbackTls();
    caFile = path.join(lab.state.dir, 'bowtie-test-ca.pem');
    writeFileSync(caFile, tls.ca);
    controller = new BowtieControllerStandIn({
      apiKeys: [KEY],
      users: [USER],
      tls: tls.server,
      wireguard: {
        hubNetns: lab.hub.netns,
        hubInterface: lab.hub.interface,
        hubPublicKey: lab.hub.publicKey,
        endpoint: lab.hub.endpoint,
        devicePool: DEVICE_POOL,
        overlayCidr: lab.hub.overlayCidr,
        clientSocket: path.join(lab.state.dir, 'bowtie-controller.sock'),
      },
    });
    await controller.start();
    trust = { controllers: [controller.url], ca: tls.ca };
    const pkgDir = path.join(lab.state.dir, 'bowtie-package');
    mkdirSync(pkgDir, { recursive: true });
    pkg = buildStandInPackage(pkgDir);
    // The package source is a URL the worker downloads (the "package API").
    pkgServer = await servePackages({ '/packages/bowtie-service_amd64.deb': () => readFileSync(pkg.path) }, tls.server);
    pkgUrl = `${pkgServer.url}/packages/bowtie-service_amd64.deb`;
  });

  afterAll(async () => {
    await controller?.stop();
    await pkgServer?.close();
    await ledger?.close();
    await Promise.allSettled([lab?.down(), db?.drop(), env?.close()]);
  });

  /** A lab node's input with the bowtie driver. */
  function bowtieInput(
    nodeName: string,
    nodeId: string,
    bowtie: Record<string, unknown> = {},
    workloads = true,
  ): ProvisionInputJson {
    const node = lab.node(nodeName);
    const serial = `LAB-${lab.prefix}-${nodeName}`;
    const base = labProvisionInput(lab, nodeName, {
      nodeId,
      workloads: workloads
        ? [{ name: 'api', spiffePath: `/ns/bowtie/sa/api-${nodeName}`, uid: 62021, port: 9443, allow: [] }]
        : [],
    });
    return {
      ...base,
      overlay: {
        driver: 'bowtie',
        cidr: lab.hub.overlayCidr,
        bowtie: {
          controllerUrl: controller.url,
          auth: {
            kind: 'apiKey',
            keyIdEnv: 'NODEBOOT_CRED_BOWTIE_KEY_ID',
            secretEnv: 'NODEBOOT_CRED_BOWTIE_KEY_SECRET',
          },
          package: { source: pkgUrl, sha256: pkg.sha256 },
          installRoot: `${node.dir}/root`,
          serial,
          // The stand-in client's own knobs (the real client reads its serial from the machine).
          clientConfig: {
            standin_controller_socket: path.join(lab.state.dir, 'bowtie-controller.sock'),
            standin_interface: `${lab.prefix}b${nodeName.slice(1)}`,
            standin_serial: serial,
            standin_ca_file: caFile,
          },
          ...bowtie,
        },
      },
    } as ProvisionInputJson;
  }

  /** Nothing of the node is left anywhere; a compensated run keeps only the node's record, marked compensated. */
  async function expectNoResidue(
    input: ProvisionInputJson,
    nodeName: string,
    ledgerState: 'gone' | 'compensated' = 'gone',
  ) {
    const node = lab.node(nodeName);
    const t = lab.nodeTransport(nodeName);
    expect((await ip.listLinks(t)).map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
    expect(await ip.netnsPids(localTransport(), node.netns)).toEqual([]);
    const root = `${node.dir}/root`;
    // What the package, the seed and the client made is gone (dpkg's own, now empty, database stays in the root).
    const left = await t.run('sh', [
      '-c',
      'find "$1/etc" "$1/usr" "$1/var/lib/bowtie" "$1/var/log/bowtie" "$2/bowtie" -mindepth 1 2>/dev/null; true',
      'find',
      root,
      node.dir,
    ]);
    expect(left.stdout.trim()).toBe('');
    expect([...controller.devices.values()].filter((d) => d.serial === `LAB-${lab.prefix}-${nodeName}`)).toEqual([]);
    for (const g of controller.deviceGroups.values()) expect(g.members.size).toBe(0);
    expect((await wg.show(lab.hubTransport(), lab.hub.interface)).peers).toEqual([]);
    if (ledgerState === 'gone') expect(await ledger.getNode(input.nodeId)).toBeNull();
    else expect(await ledger.getNode(input.nodeId)).toMatchObject({ state: 'compensated' });
    expect(await ledger.listAllocations(input.nodeId)).toEqual([]);
    expect(await ledger.getOverlayDevice(input.nodeId)).toBeNull();
    expect(await ledger.listEntries(input.nodeId)).toEqual([]);
  }

  /** The stand-in's pre-approval ("accepted" decision) for a serial, if one stands. */
  function preApprovalOf(serial: string) {
    const d = controller.authDecisions.get(serial);
    return d?.enforce_state === 'accepted' ? d : undefined;
  }

  /** Everything a run could change on a node: its files, links and processes. */
  async function nodeSnapshot(nodeName: string) {
    const node = lab.node(nodeName);
    const t = lab.nodeTransport(nodeName);
    return {
      files: (await t.run('sh', ['-c', 'find "$1" -mindepth 1 | LC_ALL=C sort', 'snapshot', node.dir])).stdout
        .split('\n')
        .filter(Boolean),
      links: (await ip.listLinks(t)).map((l) => l.ifname).sort(),
      pids: await ip.netnsPids(localTransport(), node.netns),
    };
  }

  /** The run, once held for an operator at `step` (input onFailure "hold"). */
  function heldAt(h: WorkflowHandle, step: string): Promise<ProvisionStatus> {
    return eventually(
      async () => {
        const st = await h.query(statusQuery);
        return st.state === 'held' && st.heldStep === step ? st : undefined;
      },
      { timeoutMs: 60_000, what: `held at ${step}` },
    );
  }

  it('provisions a node through the Bowtie client and controller with the same receipt, then decommissions it without residue', async () => {
    const input = bowtieInput('n1', `${uniqueId('bt').slice(-10)}-n1`);
    await withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities() }, async (taskQueue) => {
      const run = await startProvisioning(env.client, input, { taskQueue });
      const r = await run.handle.result();

      // The receipt the WireGuard driver gives, from the Bowtie side.
      expect(r.nodeId).toBe(input.nodeId);
      expect(r.overlayIp).toMatch(/^10\.200\.(1[2-9]\d|2[0-5]\d)\.\d+$/); // from the controller's pool
      expect(r.interface).toBe(`${lab.prefix}b1`);
      expect(r.keyFingerprint).toMatch(/^[0-9a-f]{16}$/);
      expect(r.probe.target).toBe(`${lab.hub.overlayIp}:${lab.spire!.port}`);
      expect(r.nodeAliasId).toBe(`spiffe://${td}/node/${input.nodeId}`);
      expect(r.entries).toHaveLength(1);
      expect(r.workloads[0]!.svidTtlSeconds).toBeGreaterThan(3000);
      expect(r.hubHandshakes).toEqual([]);
      expect(r.overlayDevice).toMatchObject({ state: 'accepted' });
      expect(r.overlayDevice!.lastSeenAgeSeconds).toBeLessThanOrEqual(120);
      console.log(`bowtie: step durations ${JSON.stringify(r.durationsMs)}`);

      // The controller: one accepted device with the node's public key, in the segment's group; policy upserted once.
      const device = controller.devices.get(r.overlayDevice!.id)!;
      expect(device).toMatchObject({ state: 'accepted', public_key: r.publicKey, serial: `LAB-${lab.prefix}-n1` });
      const ids = policyIds(ProvisionInput.parse(input));
      expect([...controller.deviceGroups.get(ids.deviceGroup)!.members]).toEqual([device.id]);
      expect([...controller.resources.keys()]).toEqual([ids.resource]);
      expect(controller.policies.get(ids.policy)).toMatchObject({
        action: 'Accept',
        dest: ids.resourceGroup,
        source: { predicate: { InDeviceGroup: ids.deviceGroup } },
      });
      expect(await ledger.getOverlayDevice(input.nodeId)).toMatchObject({
        deviceId: device.id,
        publicKey: r.publicKey,
      });
      expect(await ledger.getAllocation(input.nodeId, lab.hub.overlayCidr)).toBe(r.overlayIp);

      // The device key was made on the node, 0600, and is in no history; nor are the controller credentials.
      const keyFile = `${lab.node('n1').dir}/root/var/lib/bowtie/device.key`;
      const node = lab.nodeTransport('n1');
      expect((await node.run('stat', ['-c', '%a', keyFile])).stdout.trim()).toBe('600');
      const privateKey = (await node.run('cat', [keyFile])).stdout.trim();
      expect((await node.run('wg', ['pubkey'], { input: privateKey })).stdout.trim()).toBe(r.publicKey);
      const history = historyText(await run.handle.fetchHistory());
      const secrets = [
        ...wireguardKeySecrets('device private key', privateKey),
        { label: 'API key secret', value: KEY.secret },
      ];
      expect(findLeaks(history, secrets).map((l) => l.label)).toEqual([]);

      // The policy is what lets the device reach the SPIRE server: out of the segment's group, the
      // controller withdraws the route and the connection fails; back in, it works again.
      const api = new BowtieController({
        url: controller.url,
        auth: { kind: 'apiKey', keyId: KEY.id, secret: KEY.secret },
        allowedOrigins: trust.controllers,
        ca: tls.ca,
      });
      const reachable = async () =>
        (
          await node.run(
            'timeout',
            ['2', 'bash', '-c', 'exec 3<>"/dev/tcp/$1/$2"', 'probe', lab.hub.overlayIp, String(lab.spire!.port)],
            { allowNonZeroExit: true },
          )
        ).exitCode === 0;
      expect(await reachable()).toBe(true);
      await api.removeDevicesFromGroup(ids.deviceGroup, [device.id]);
      await expect.poll(reachable, { timeout: 10_000, interval: 300 }).toBe(false);
      await api.addDevicesToGroup(ids.deviceGroup, [device.id]);
      await expect.poll(reachable, { timeout: 10_000, interval: 300 }).toBe(true);

      // Steps 1-2 run again (a retry) find everything in place: no second device, address or policy object.
      const acts = activities();
      const req = { input: ProvisionInput.parse(input), run: { workflowId: 'rerun', runId: 'rerun' } };
      const devicesBefore = controller.devices.size;
      expect(await new MockActivityEnvironment().run(acts.installOverlay, req)).toMatchObject({ alreadyPresent: true });
      expect(await new MockActivityEnvironment().run(acts.issueOverlayKey, req)).toMatchObject({
        overlayIp: r.overlayIp,
        deviceId: device.id,
        publicKey: r.publicKey,
      });
      expect(controller.devices.size).toBe(devicesBefore);
      expect([
        controller.deviceGroups.size,
        controller.resources.size,
        controller.resourceGroups.size,
        controller.policies.size,
      ]).toEqual([1, 1, 1, 1]);

      const dec = await startDecommission(env.client, input, { taskQueue });
      const removed = (await dec.result()).removed;
      expect(removed.issueOverlayKey).toEqual(
        expect.arrayContaining([`device ${device.name}`, 'ledger device', `address ${r.overlayIp}`]),
      );
      expect(removed.installOverlay).toEqual(
        expect.arrayContaining(['package bowtie-service', 'client config', 'staged package']),
      );
    });
    await expectNoResidue(input, 'n1');
    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    expect(await server.entryShow(srv)).toEqual([]);
    // The segment's policy objects stay for the segment's other nodes.
    expect(controller.policies.size).toBe(1);
  });

  it('pre-approves by serial with session auth: the device enrolls straight into accepted', async () => {
    const input = bowtieInput(
      'n2',
      `${uniqueId('bt').slice(-10)}-n2`,
      {
        approval: 'preApprove',
        auth: { kind: 'session', emailEnv: 'NODEBOOT_CRED_BOWTIE_EMAIL', passwordEnv: 'NODEBOOT_CRED_BOWTIE_PASSWORD' },
      },
      false,
    );
    const stateCalls = controller.count('POST', '/device/state');
    await withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities() }, async (taskQueue) => {
      const r = await (await startProvisioning(env.client, input, { taskQueue })).handle.result();
      expect(r.overlayDevice).toMatchObject({ state: 'accepted' });
      expect(controller.authDecisions.get(`LAB-${lab.prefix}-n2`)).toMatchObject({ enforce_state: 'accepted' });
      // Nobody had to approve it: the only device state change is the decommission's reject, later.
      expect(controller.count('POST', '/device/state')).toBe(stateCalls);
      expect(controller.count('POST', '/user/login')).toBeGreaterThan(0);
      await (await startDecommission(env.client, input, { taskQueue })).result();
    });
    await expectNoResidue(input, 'n2');
    // The decommission withdrew the pre-approval: the serial would not enroll accepted again.
    expect(preApprovalOf(`LAB-${lab.prefix}-n2`)).toBeUndefined();
    controller.authDecisions.clear();
  });

  it('a device an operator rejected fails the run for good (OverlayRejected) and compensates everything', async () => {
    const input = bowtieInput('n1', `${uniqueId('bt').slice(-10)}-n1`, {}, false);
    // The operator's decision for this serial, made before the node enrolls.
    controller.authDecisions.set(`LAB-${lab.prefix}-n1`, { serial: `LAB-${lab.prefix}-n1`, enforce_state: 'rejected' });
    await withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities() }, async (taskQueue) => {
      const run = await startProvisioning(env.client, input, { taskQueue });
      const { original } = expectStepFailureChain(
        await failureOf(run.handle.result()),
        'OverlayRejected',
        'issueOverlayKey',
      );
      expect(original.message).toMatch(/is rejected on the controller/);
    });
    controller.authDecisions.clear();
    await expectNoResidue(input, 'n1', 'compensated');
  });

  it('wrong controller credentials fail the run for good (OverlayAuth); the node is cleaned, and a decommission with fixed credentials clears the controller', async () => {
    const input = bowtieInput('n2', `${uniqueId('bt').slice(-10)}-n2`, {}, false);
    const badEnv = { ...WORKER_ENV, NODEBOOT_CRED_BOWTIE_KEY_SECRET: 'not-the-secret' };
    await withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities(badEnv) }, async (taskQueue) => {
      const run = await startProvisioning(env.client, input, { taskQueue });
      const { original } = expectStepFailureChain(
        await failureOf(run.handle.result()),
        'OverlayAuth',
        'issueOverlayKey',
      );
      expect(original.message).toMatch(/answered 401$/);
    });
    // Compensation purged the package (the client is stopped, the tunnel never came up), but the
    // device the client enrolled is still pending on the controller: nobody could log in to delete it.
    expect(await ip.netnsPids(localTransport(), lab.node('n2').netns)).toEqual([]);
    expect(
      [...controller.devices.values()].filter((d) => d.serial === `LAB-${lab.prefix}-n2`).map((d) => d.state),
    ).toEqual(['pending']);
    const failed = (await ledger.listEvents(input.nodeId))
      .filter((e) => e.kind === 'compensation_failed')
      .map((e) => [e.step, e.errorType]);
    expect(failed).toEqual(expect.arrayContaining([['issueOverlayKey', 'OverlayAuth']]));

    // The operator fixes the worker's credentials and decommissions: the rest goes.
    await withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities() }, async (taskQueue) => {
      await (await startDecommission(env.client, input, { taskQueue })).result();
    });
    await expectNoResidue(input, 'n2');
  });
  it("a controller off the worker's allow-list fails InvalidInput before any change: no request reaches it, no credential is read or sent", async () => {
    // A controller the input chose, serving TLS the worker would even trust: only the allow-list keeps it out.
    const other = new BowtieControllerStandIn({ apiKeys: [KEY], users: [USER], tls: tls.server });
    await other.start();
    try {
      const input = {
        ...bowtieInput(
          'n1',
          `${uniqueId('bt').slice(-10)}-n1`,
          { controllerUrl: other.url, approval: 'preApprove' },
          false,
        ),
        onFailure: 'hold',
      } as ProvisionInputJson;
      const before = await nodeSnapshot('n1');
      const ours = controller.requests.length;
      // A worker environment that counts every credential read.
      const reads: string[] = [];
      const countingEnv = new Proxy({ ...WORKER_ENV } as NodeJS.ProcessEnv, {
        get: (o, k) => (typeof k === 'string' && k.startsWith('NODEBOOT_CRED_') && reads.push(k), o[k as string]),
      });
      await withWorker(
        env,
        { workflowsPath: WORKFLOWS_PATH, activities: activities(countingEnv) },
        async (taskQueue) => {
          const run = await startProvisioning(env.client, input, { taskQueue });
          const held = await heldAt(run.handle, 'installOverlay');
          expect(held.lastFailure).toMatchObject({ type: 'InvalidInput' });
          expect(held.lastFailure!.message).toContain(
            `overlay.bowtie.controllerUrl: ${other.url} is not a controller this worker talks to (NODEBOOT_BOWTIE_CONTROLLERS)`,
          );
          // At the failure: the node is as it was, nobody was called, no credential was read.
          expect(await nodeSnapshot('n1')).toEqual(before);
          expect(other.requests).toEqual([]);
          expect(controller.requests.length).toBe(ours);
          expect(reads).toEqual([]);
          await run.handle.executeUpdate(decideUpdate, { args: [{ action: 'compensate' }] });
          expectStepFailureChain(await failureOf(run.handle.result()), 'InvalidInput', 'installOverlay');
        },
      );
      // The compensation did not call it either, and left the node as it was.
      expect(other.requests).toEqual([]);
      expect(reads).toEqual([]);
      expect(await nodeSnapshot('n1')).toEqual(before);

      // An entrypoint the node would be pointed at is held to the same list.
      const acts = activities(countingEnv);
      const epInput = ProvisionInput.parse(
        bowtieInput('n1', `${uniqueId('bt').slice(-10)}-n1`, { entrypoints: [controller.url, other.url] }, false),
      );
      const ep = await new MockActivityEnvironment()
        .run(acts.installOverlay, { input: epInput, run: { workflowId: 'ep', runId: 'ep' } })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(ep).toBeInstanceOf(ApplicationFailure);
      expect(ep).toMatchObject({
        type: 'InvalidInput',
        nonRetryable: true,
        message: expect.stringContaining(
          `overlay.bowtie.entrypoints[1]: ${other.url} is not a controller this worker talks to`,
        ),
      });
      expect(await nodeSnapshot('n1')).toEqual(before);
      expect(other.requests).toEqual([]);
      expect(reads).toEqual([]);
    } finally {
      await other.stop();
    }
  });

  it('a plain-http controller is refused, even one a worker lists: no request, no credential', async () => {
    const plain = new BowtieControllerStandIn({ apiKeys: [KEY], users: [USER] }); // no tls: http://
    await plain.start();
    try {
      expect(plain.url).toMatch(/^http:\/\//);
      // Past the schema (which refuses http:// too): the driver is its own wall.
      const input = ProvisionInput.parse(bowtieInput('n2', `${uniqueId('bt').slice(-10)}-n2`, {}, false));
      input.overlay.bowtie!.controllerUrl = plain.url;
      const before = await nodeSnapshot('n2');
      const acts = createActivities({
        ledger,
        env: WORKER_ENV,
        bowtie: { controllers: [...trust.controllers, plain.url], ca: tls.ca },
      });
      const err = await new MockActivityEnvironment()
        .run(acts.installOverlay, { input, run: { workflowId: 'plain', runId: 'plain' } })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toMatchObject({
        type: 'InvalidInput',
        nonRetryable: true,
        message: expect.stringContaining('overlay.bowtie.controllerUrl: must be an https:// URL'),
      });
      expect(await nodeSnapshot('n2')).toEqual(before);
      expect(plain.requests).toEqual([]);
    } finally {
      await plain.stop();
    }
  });

  it('a bad package (wrong sha256, a 404) fails before the config is seeded or the serial pre-approved', async () => {
    const serial = `LAB-${lab.prefix}-n2`;
    const cases = [
      {
        why: 'sha256',
        pkgSpec: { source: pkgUrl, sha256: '0'.repeat(64) },
        message: /overlay\.bowtie\.package\.sha256: .* has sha256 [0-9a-f]{64}, expected 0{64}/,
      },
      {
        why: '404',
        pkgSpec: { source: `${pkgServer.url}/packages/missing.deb`, sha256: pkg.sha256 },
        message: /overlay\.bowtie\.package\.source: .*missing\.deb answered 404/,
      },
    ];
    for (const c of cases) {
      const input = {
        ...bowtieInput('n2', `${uniqueId('bt').slice(-10)}-n2`, { approval: 'preApprove', package: c.pkgSpec }, false),
        onFailure: 'hold',
      } as ProvisionInputJson;
      const before = await nodeSnapshot('n2');
      const decisions = controller.count('POST', '/device/auth_decisions');
      await withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities() }, async (taskQueue) => {
        const run = await startProvisioning(env.client, input, { taskQueue });
        const held = await heldAt(run.handle, 'installOverlay');
        expect(held.lastFailure, c.why).toMatchObject({
          type: 'InvalidInput',
          message: expect.stringMatching(c.message),
        });
        // Found first: nothing seeded (nor staged) on the node, nothing asked of the controller.
        expect(await nodeSnapshot('n2'), c.why).toEqual(before);
        expect(controller.count('POST', '/device/auth_decisions'), c.why).toBe(decisions);
        expect(controller.authDecisions.has(serial), c.why).toBe(false);
        await run.handle.executeUpdate(decideUpdate, { args: [{ action: 'compensate' }] });
        expectStepFailureChain(await failureOf(run.handle.result()), 'InvalidInput', 'installOverlay');
      });
      expect(await nodeSnapshot('n2'), c.why).toEqual(before);
      expect(controller.authDecisions.has(serial), c.why).toBe(false);
    }
  });

  it('a run that fails after pre-approving withdraws the pre-approval in its compensation', async () => {
    const serial = `LAB-${lab.prefix}-n1`;
    const input = bowtieInput('n1', `${uniqueId('bt').slice(-10)}-n1`, { approval: 'preApprove' }, false);
    // The controller refuses the segment's policy (a permanent 4xx) after installOverlay pre-approved the serial.
    controller.inject = (method, p) =>
      method === 'POST' && p === '/device_group/upsert' ? { status: 400 } : undefined;
    try {
      await withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities() }, async (taskQueue) => {
        const run = await startProvisioning(env.client, input, { taskQueue });
        expectStepFailureChain(await failureOf(run.handle.result()), 'OverlayRejected', 'issueOverlayKey');
      });
    } finally {
      controller.inject = null;
    }
    expect(controller.count('POST', '/device/auth_decisions')).toBeGreaterThanOrEqual(2); // made, then withdrawn
    expect(preApprovalOf(serial)).toBeUndefined();
    await expectNoResidue(input, 'n1', 'compensated');
    controller.authDecisions.clear();
  });
});
