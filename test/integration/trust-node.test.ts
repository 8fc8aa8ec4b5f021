/**
 * Untrusted nodes, on real components (issue 11, items 4, 5, 6 and 8): a step
 * adopts only what this node's runs made, and an undo removes only that.
 *
 * - An `overlay.interface` naming the node's underlay veth, or a WireGuard
 *   interface someone else made, fails installOverlay with OwnershipConflict
 *   before anything changes; the interface is still there as it was.
 * - A second node on the same host and nodeDir fails at once, and the first
 *   node's agent and workload keep running (also after the second is decommissioned).
 * - A SPIRE agent already running from the nodeDir but attested as another node
 *   is not adopted, and the undo does not stop it.
 * - A pre-planted key file not owned by root with mode 0600 is refused, not used.
 * - IPAM never hands out the SPIRE server's overlay address; the gate's probe
 *   fails when the node's route to the server leaves outside the tunnel.
 * - No command the worker runs reads `wg show <if> dump` (hub private keys).
 */
import { readFileSync, statSync } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { Ledger } from '../../inventory/index.js';
import { processAlive, transportFor, type HostTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import { ensureInterface } from '../../activities/overlay/wireguard/interface.js';
import { nodePaths } from '../../activities/paths.js';
import { agentHealthcheck, startAgent, stopAgent } from '../../activities/spire/agent-cli.js';
import { readPidFile } from '../../activities/host/process.js';
import * as server from '../../activities/spire/server-cli.js';
import type { RunRef } from '../../activities/types.js';
import { startDecommission, startProvisioning } from '../../client/provision.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput, type LabWorkload } from '../../lab/inputs.js';
import { HUB_UNDERLAY_IP, Lab } from '../../lab/lab.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { expectStepFailureChain, failureOf } from '../helpers/failures.js';
import { requireRealComponents } from '../helpers/prereqs.js';
import { connectTestEnv, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';

const TD = 'trust.nodeboot.test';
// Failures that would be retried on the old code give up fast.
const FAST = {
  retry: { initialIntervalMs: 200, maximumIntervalMs: 500, maximumAttempts: 2 },
  timeouts: { gatePeerHealth: 20 },
} as const;

describe('a node adopts and undoes only what is its own (real lab)', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  /** Every command the worker ran, on every host: `wg show <if> dump` must be none of them. */
  const argv: string[][] = [];

  const recorded = (spec: ProvisionInput['host']): HostTransport => {
    const inner = transportFor(spec);
    return {
      kind: inner.kind,
      label: inner.label,
      run: (command, args, opts) => {
        argv.push([command, ...args]);
        return inner.run(command, args, opts);
      },
      spawnDaemon: (command, args, opts) => {
        argv.push([command, ...args]);
        return inner.spawnDaemon(command, args, opts);
      },
    };
  };
  const activities = () => createActivities({ ledger, transport: recorded });

  const input = (
    node: string,
    opts: { nodeId?: string; workloads?: LabWorkload[]; overrides?: Partial<ProvisionInputJson> } = {},
  ) =>
    labProvisionInput(lab, node, {
      nodeId: opts.nodeId ?? uniqueId('tn'),
      workloads: opts.workloads,
      overrides: { ...FAST, ...opts.overrides },
    });
  const withOverlay = (
    base: ProvisionInputJson,
    overlay: Partial<ProvisionInputJson['overlay']>,
  ): ProvisionInputJson => ({
    ...base,
    overlay: { ...base.overlay, ...overlay },
  });

  /** provisionNode on a real worker; the failure it ends with (or the receipt). */
  async function provision(i: ProvisionInputJson) {
    return withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities() }, async (taskQueue) => {
      const { handle } = await startProvisioning(env.client, i, { taskQueue });
      return handle.result().then(
        (receipt) => ({ receipt, err: undefined }),
        async () => ({ receipt: undefined, err: await failureOf(handle.result()) }),
      );
    });
  }

  beforeAll(async () => {
    requireRealComponents(['temporal', 'spire-server', 'spire-agent']);
    [lab, db, env] = await Promise.all([
      Lab.up({ nodes: 6, ephemeral: true, trustDomain: TD }),
      createTestDatabase(),
      connectTestEnv(),
    ]);
    ledger = await Ledger.connect(db.url, { migrate: true });
  });

  afterAll(async () => {
    await ledger?.close();
    await Promise.allSettled([lab?.down(), db?.drop(), env?.close()]);
  });

  describe('steps 2 and 3 as activities', () => {
    const run: RunRef = { workflowId: 'provision/activity-test', runId: 'activity-run' };
    const typeOf = (e: unknown) => (e instanceof ApplicationFailure ? e.type : String(e));

    it("IPAM never hands out the SPIRE server's overlay address, even when it is the next free one", async () => {
      // A fresh ledger, so the next free address after the hub's is known: 10.200.0.2.
      const db2 = await createTestDatabase();
      const ledger2 = await Ledger.connect(db2.url, { migrate: true });
      const hubT = lab.hubTransport();
      // The SPIRE server (listening on every hub address) also answers on 10.200.0.2.
      await hubT.run('ip', ['addr', 'add', '10.200.0.2/32', 'dev', lab.hub.interface]);
      const acts = createActivities({ ledger: ledger2 });
      const base = input('n6');
      const i = ProvisionInput.parse({ ...base, spire: { ...base.spire, serverAddress: '10.200.0.2' } });
      try {
        await acts.installOverlay({ input: i, run });
        const key = await acts.issueOverlayKey({ input: i, run });
        expect(key.overlayIp).not.toBe('10.200.0.2');
        expect(key.overlayIp).toBe('10.200.0.3');
        const health = await acts.gatePeerHealth({ input: i, run });
        expect(health.probe.target).toBe('10.200.0.2:8081');
      } finally {
        await acts.undoIssueOverlayKey({ input: i, run, reason: 'failure' });
        await acts.undoInstallOverlay({ input: i, run, reason: 'failure' });
        await hubT.run('ip', ['addr', 'del', '10.200.0.2/32', 'dev', lab.hub.interface]);
        await ledger2.close();
        await db2.drop();
      }
    });

    it('the probe fails when the node routes the SPIRE server outside the tunnel (ProbeFailed, naming the route)', async () => {
      const t = lab.nodeTransport('n6');
      const acts = activities();
      const i = ProvisionInput.parse({ ...input('n6'), timeouts: { gatePeerHealth: 8 } });
      try {
        await acts.installOverlay({ input: i, run });
        await acts.issueOverlayKey({ input: i, run });
        // The hub answers its overlay address on the underlay too: a route there "works", outside the tunnel.
        await t.run('ip', ['route', 'add', `${lab.hub.overlayIp}/32`, 'via', HUB_UNDERLAY_IP, 'dev', 'eth0']);
        const err = await acts.gatePeerHealth({ input: i, run }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(typeOf(err)).toBe('ProbeFailed');
        expect((err as Error).message).toMatch(/routes 10\.200\.0\.1 via eth0, not the overlay interface/);
      } finally {
        await t.run('ip', ['route', 'del', `${lab.hub.overlayIp}/32`], { allowNonZeroExit: true });
        await acts.undoIssueOverlayKey({ input: i, run, reason: 'failure' });
        await acts.undoInstallOverlay({ input: i, run, reason: 'failure' });
      }
    });
  });

  it('overlay.interface naming the underlay veth (eth0): OwnershipConflict at step 1, and eth0 keeps its address', async () => {
    const n = lab.node('n1');
    const t = lab.nodeTransport(n);
    const i = withOverlay(input('n1'), { interface: 'eth0' });
    const { err } = await provision(i);

    expect(err, 'the run must fail').toBeDefined();
    const { original } = expectStepFailureChain(err!, 'OwnershipConflict', 'installOverlay');
    expect(original.message).toMatch(/eth0 .* not a WireGuard interface/);
    expect(await ip.linkExists(t, 'eth0')).toBe(true);
    expect(await ip.addresses(t, 'eth0')).toEqual([`${n.underlayIp}/24`]);
    // Nothing of the node was made: no address.
    expect(await ledger.getAllocation(i.nodeId, lab.hub.overlayCidr)).toBeNull();
    // The underlay still carries traffic.
    expect((await t.run('ping', ['-c', '1', '-W', '2', HUB_UNDERLAY_IP], { allowNonZeroExit: true })).exitCode).toBe(0);
  });

  it('a WireGuard interface someone else made: OwnershipConflict at step 1; its key and address are untouched', async () => {
    const n = lab.node('n2');
    const t = lab.nodeTransport(n);
    await ensureInterface(t, 'wgforeign', { logFile: `${n.dir}/foreign-wg.log` });
    const foreignKey = await wg.ensureKeyPair(t, `${n.dir}/foreign/wgforeign.key`);
    await wg.setInterface(t, 'wgforeign', { privateKeyPath: `${n.dir}/foreign/wgforeign.key`, listenPort: 51999 });
    await ip.addrReplace(t, 'wgforeign', '10.99.0.1/24');

    const { err } = await provision(withOverlay(input('n2'), { interface: 'wgforeign' }));

    expect(err, 'the run must fail').toBeDefined();
    const { original } = expectStepFailureChain(err!, 'OwnershipConflict', 'installOverlay');
    expect(original.message).toMatch(/wgforeign .* another key/);
    expect((await wg.show(t, 'wgforeign')).publicKey).toBe(foreignKey);
    expect(await ip.addresses(t, 'wgforeign')).toEqual(['10.99.0.1/24']);
    expect((await wg.show(t, 'wgforeign')).listenPort).toBe(51999);
  });

  it("a second node on the same host and nodeDir fails at step 1; the first node's agent and workload keep running", async () => {
    const n = lab.node('n3');
    const t = lab.nodeTransport(n);
    const a = input('n3', { workloads: [{ name: 'api', spiffePath: '/ns/trust/sa/api', uid: 62031, port: 9443 }] });
    const first = await provision(a);
    expect(first.err, first.err?.message).toBeUndefined();
    const pa = nodePaths(ProvisionInput.parse(a));
    const agentPid = (await readPidFile(t, pa.agentPid))!;
    const [workload] = await ledger.listWorkloads(a.nodeId);
    expect(processAlive(agentPid)).toBe(true);
    expect(processAlive(workload!.pid)).toBe(true);
    const keyBefore = readFileSync(nodePaths(ProvisionInput.parse(a)).wgKey, 'utf8');

    // Same netns, same nodeDir, another node id (and so another interface name) and its own port;
    // a workload of the same name, whose pid file would be the first node's.
    const b = withOverlay(
      input('n3', { workloads: [{ name: 'api', spiffePath: '/ns/trust/sa/api-b', uid: 62032, port: 9444 }] }),
      { listenPort: 51821 },
    );
    const second = await provision(b);
    expect(second.err, 'the second node must fail').toBeDefined();
    const { original } = expectStepFailureChain(second.err!, 'OwnershipConflict', 'installOverlay');
    expect(original.message).toContain(`nodeDir ${n.dir}`);
    expect(original.message).toContain(`belongs to node ${a.nodeId}`);

    const stillRunning = async () => {
      expect(await readPidFile(t, pa.agentPid)).toBe(agentPid);
      expect(processAlive(agentPid)).toBe(true);
      expect(await agentHealthcheck({ transport: t, socketPath: pa.agentSocket })).toBe(true);
      expect(processAlive(workload!.pid)).toBe(true);
      expect(readFileSync(pa.wgKey, 'utf8')).toBe(keyBefore);
      expect(statSync(pa.agentDataDir).isDirectory()).toBe(true);
    };
    await stillRunning();
    expect(await ledger.getAllocation(b.nodeId, lab.hub.overlayCidr)).toBeNull();

    // Decommissioning the second node (every undo, reason decommission) leaves the first alone too.
    await withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: activities() }, async (taskQueue) => {
      await (await startDecommission(env.client, b, { taskQueue })).result();
    });
    await stillRunning();
  });

  it('an agent already running from the nodeDir but attested as another node is not adopted, nor stopped by the undo', async () => {
    const n = lab.node('n4');
    const t = lab.nodeTransport(n);
    const b = input('n4');
    const pb = nodePaths(ProvisionInput.parse(b));
    // Someone else's agent, in this nodeDir, attested (over the underlay) as spiffe://<td>/node/other-node.
    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    const token = await server.tokenGenerate(srv, {
      spiffeId: `spiffe://${TD}/node/${uniqueId('other')}`,
      ttlSeconds: 600,
    });
    const foreign = await startAgent({
      transport: t,
      joinToken: token,
      trustBundlePem: await server.bundleShow(srv),
      trustDomain: TD,
      serverAddress: HUB_UNDERLAY_IP,
      serverPort: lab.spire!.port,
      dataDir: pb.agentDataDir,
      socketPath: pb.agentSocket,
      pidFile: pb.agentPid,
      logFile: pb.agentLog,
      healthTimeoutMs: 60_000,
    });
    try {
      const { err } = await provision(b);
      expect(err, 'the run must fail').toBeDefined();
      const { original } = expectStepFailureChain(err!, 'OwnershipConflict', 'startSpireAgent');
      expect(original.message).toMatch(/is not attested as spiffe:\/\/trust\.nodeboot\.test\/node\//);
      expect(original.message).not.toContain(token.value);
      expect(await readPidFile(t, pb.agentPid)).toBe(foreign.pid);
      expect(processAlive(foreign.pid)).toBe(true);
      expect(await agentHealthcheck({ transport: t, socketPath: pb.agentSocket })).toBe(true);
    } finally {
      await stopAgent(t, pb.agentPid);
    }
  });

  it('a pre-planted key file (another uid, or mode 0644) is refused naming its path, and not used', async () => {
    const n = lab.node('n5');
    const t = lab.nodeTransport(n);
    for (const plant of [
      { owner: '12345:12345', mode: '600' },
      { owner: '0:0', mode: '644' },
    ]) {
      const i = input('n5');
      const keyPath = nodePaths(ProvisionInput.parse(i)).wgKey;
      await t.run('sh', [
        '-c',
        'mkdir -p "$(dirname "$1")" && wg genkey > "$1" && chown "$2" "$1" && chmod "$3" "$1"',
        'plant',
        keyPath,
        plant.owner,
        plant.mode,
      ]);
      const planted = readFileSync(keyPath, 'utf8');
      const plantedPub = (await t.run('wg', ['pubkey'], { input: planted })).stdout.trim();

      const { err } = await provision(i);
      expect(err, `the run must fail (${JSON.stringify(plant)})`).toBeDefined();
      const { original } = expectStepFailureChain(err!, 'OwnershipConflict', 'issueOverlayKey');
      expect(original.message).toContain(keyPath);
      expect(original.message).not.toContain(planted.trim());
      // Not used: no hub knows its public key, no address was handed out; the file is as planted.
      expect((await wg.show(lab.hubTransport(), lab.hub.interface)).peers.map((p) => p.publicKey)).not.toContain(
        plantedPub,
      );
      expect(await ledger.getAllocation(i.nodeId, lab.hub.overlayCidr)).toBeNull();
      expect(readFileSync(keyPath, 'utf8')).toBe(planted);
      const st = statSync(keyPath);
      expect(`${st.uid}:${st.gid} ${(st.mode & 0o777).toString(8)}`).toBe(`${plant.owner} ${plant.mode}`);
    }
  });

  it('no command the worker ran read `wg show <if> dump`', () => {
    expect(argv.length).toBeGreaterThan(50);
    expect(argv.filter((a) => a.includes('wg') && a.includes('dump'))).toEqual([]);
    expect(argv.some((a) => a.includes('wg') && a.includes('public-key'))).toBe(true);
  });
});
