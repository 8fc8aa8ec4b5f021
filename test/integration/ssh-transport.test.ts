/**
 * The ssh host transport against Debian's real OpenSSH server running inside a
 * lab node's namespace (lab/ssh.ts), with the client in the hub namespace.
 * Then the main requirement: one full provisionNode run whose node
 * commands all go over ssh instead of `ip netns exec`, decommissioned with no
 * residue; and a host key that changes mid-run fails the run as a security
 * failure and compensates.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { Ledger } from '../../inventory/index.js';
import { ToolError } from '../../activities/host/exec.js';
import { planSsh, remoteArgv, remoteCommandLine, sshControlPath, sshTransport } from '../../activities/host/ssh.js';
import { localTransport, type HostTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import * as server from '../../activities/spire/server-cli.js';
import { startDecommission, startProvisioning } from '../../client/provision.js';
import type { HostSpec, ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { Lab } from '../../lab/lab.js';
import {
  labSshOptions,
  labSshTransport,
  labTransportFactory,
  pinHostKey,
  rotateHostKey,
  startSshd,
  stopSshd,
  type LabSshd,
} from '../../lab/ssh.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { expectStepFailureChain, failureOf } from '../helpers/failures.js';
import { requireRealComponents } from '../helpers/prereqs.js';
import { connectTestEnv, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';

const HOSTILE = [
  "it's",
  'a b  c',
  '$(touch /tmp/nodeboot-pwned)',
  '`id`',
  'x; echo injected',
  '"dq" \'sq\'',
  '\\',
  '',
  '*',
  '--help',
  '&& false',
  '|',
  '>/tmp/nodeboot-pwned2',
];

async function typeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return err instanceof ToolError ? err.type : `not a ToolError: ${String(err)}`;
  }
  return 'resolved';
}

function acceptedLogins(sshd: LabSshd): number {
  return (readFileSync(sshd.logFile, 'utf8').match(/Accepted publickey for root/g) ?? []).length;
}

describe('ssh host transport on a real sshd', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  let e2e: LabSshd; // n1: the full provisioning run
  let side: LabSshd; // n2: transport behaviour, host key rotation
  let t: HostTransport;
  const td = 'ssh.nodeboot.test';

  beforeAll(async () => {
    requireRealComponents(['temporal', 'spire-server', 'spire-agent']);
    if (!existsSync('/usr/sbin/sshd')) throw new Error('/usr/sbin/sshd is missing: apt-get install openssh-server');
    [lab, db, env] = await Promise.all([
      Lab.up({ nodes: 2, ephemeral: true, trustDomain: td }),
      createTestDatabase(),
      connectTestEnv(),
    ]);
    ledger = await Ledger.connect(db.url, { migrate: true });
    [e2e, side] = await Promise.all([startSshd(lab, 'n1'), startSshd(lab, 'n2')]);
    t = labSshTransport(side);
  });

  afterAll(async () => {
    await ledger?.close();
    await Promise.allSettled([lab?.down(), db?.drop(), env?.close()]);
  });

  it('delivers hostile-looking arguments intact, one argv entry each', async () => {
    const r = await t.run('printf', ['%s\n', ...HOSTILE]);
    expect(r.stdout.split('\n')).toEqual(HOSTILE);
    const argc = await t.run('sh', ['-c', 'echo $#', 'argc', ...HOSTILE]);
    expect(argc.stdout).toBe(String(HOSTILE.length));
    expect(existsSync('/tmp/nodeboot-pwned') || existsSync('/tmp/nodeboot-pwned2')).toBe(false);
  });

  it('passes a secret on stdin only: it reaches the remote command and no argv on either side', async () => {
    const secret = `s3cr3t-${uniqueId('x')}`;
    const out = path.join(side.dir, 'home', 'stdin-proof');
    // The argv we build holds no secret (only input carries it).
    const plan = planSsh(side.spec, remoteCommandLine(remoteArgv('sh', ['-c', 'cat > "$1"; sleep 2', 'x', out])), {
      clientNetns: side.clientNetns,
    });
    expect(plan.args.join(' ')).not.toContain(secret);

    const running = t.run('sh', ['-c', 'cat > "$1"; sleep 2', 'x', out], { input: secret });
    await new Promise((r) => setTimeout(r, 800));
    // While it runs: no process on the node or on the client side carries it.
    const psNode = await lab.nodeTransport('n2').run('ps', ['-eo', 'args']);
    const psClient = await lab.hubTransport().run('ps', ['-eo', 'args']);
    expect(psNode.stdout).toContain('sleep 2');
    expect(psNode.stdout + psClient.stdout).not.toContain(secret);
    await running;
    expect(readFileSync(out, 'utf8')).toBe(secret);

    // A daemon reads its secret stdin as a file (/dev/stdin); nothing of it stays on disk.
    const log = path.join(side.dir, 'home', 'daemon.log');
    const pid = await t.spawnDaemon('sh', ['-c', 'cat /dev/stdin; exec sleep 30'], { logFile: log, input: secret });
    await expect.poll(() => (existsSync(log) ? readFileSync(log, 'utf8') : ''), { timeout: 5000 }).toBe(secret);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).toContain('sleep');
    expect(cmdline).not.toContain(secret);
    expect(readdirSync('/dev/shm').filter((f) => f.startsWith('nodeboot-stdin-'))).toEqual([]);
    await t.run('kill', [String(pid)]);
  });

  it('reuses one master connection: later commands log no new login and are faster than fresh connections', async () => {
    await t.run('true', []);
    expect(existsSync(sshControlPath(side.spec, labSshOptions(side)))).toBe(true);
    const logins = acceptedLogins(side);
    const time = async (tr: HostTransport) => {
      const t0 = performance.now();
      for (let i = 0; i < 4; i++) await tr.run('true', []);
      return performance.now() - t0;
    };
    const reused = await time(t);
    expect(acceptedLogins(side)).toBe(logins);
    const fresh = await time(labSshTransport(side, { reuseConnection: false }));
    expect(acceptedLogins(side)).toBe(logins + 4);
    console.log(
      `ssh: 4 commands over the master ${reused.toFixed(0)} ms, over fresh connections ${fresh.toFixed(0)} ms`,
    );
    expect(reused).toBeLessThan(fresh);
  });

  it("maps ssh failures: a refused port and an absent host are HostUnreachable, a refused key HostAuthRejected, the remote exit is the command's", async () => {
    const o = labSshOptions(side);
    expect(await typeOf(sshTransport({ ...side.spec, port: 2 }, o).run('true', []))).toBe('HostUnreachable');
    expect(
      await typeOf(sshTransport({ ...side.spec, host: '192.0.2.250', connectTimeoutSeconds: 2 }, o).run('true', [])),
    ).toBe('HostUnreachable');
    // A key the node does not authorize: refused for good, not retried as an outage.
    const strangerKey = path.join(side.dir, 'stranger_ed25519');
    await localTransport().run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', strangerKey]);
    const refused = await sshTransport({ ...side.spec, identityFile: strangerKey }, { ...o, reuseConnection: false })
      .run('true', [])
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ToolError);
    expect((refused as ToolError).type).toBe('HostAuthRejected');
    expect((refused as ToolError).message).toContain(`refused the key ${strangerKey}`);
    expect((await t.run('sh', ['-c', 'exit 3'], { allowNonZeroExit: true })).exitCode).toBe(3);
    expect(await typeOf(t.run('sh', ['-c', 'exit 255']))).toBe('ToolFailed');
    expect(await typeOf(t.run('false', []))).toBe('ToolFailed');
  });

  it('a program the node does not have is ToolMissing (not retried), over ssh and through ip netns exec', async () => {
    const missing = 'nodeboot-no-such-tool';
    const over = async (tr: HostTransport, o: Parameters<HostTransport['run']>[2] = {}) => {
      const err = await tr.run(missing, ['--version'], o).catch((e: unknown) => e);
      expect(err, `${tr.label} ${JSON.stringify(o)}`).toBeInstanceOf(ToolError);
      expect((err as ToolError).type, (err as ToolError).message).toBe('ToolMissing');
      expect((err as ToolError).message).toContain(`${missing} is not installed on ${tr.label}`);
    };
    // ssh: the remote shell's exit 127; as another uid (setpriv) too; and for callers that read exits themselves.
    await over(t);
    await over(t, { uid: 65534, gid: 65534 });
    await over(t, { allowNonZeroExit: true });
    // ip netns exec: exit 255, `exec of "..." failed`.
    await over(lab.nodeTransport('n2'));
    await over(lab.nodeTransport('n2'), { allowNonZeroExit: true });
    // A daemon too: refused before it is reported started (its log would be the only trace).
    for (const tr of [t, lab.nodeTransport('n2')]) {
      const logFile = path.join(side.dir, 'home', `missing-daemon-${tr.kind}.log`);
      const err = await tr.spawnDaemon(missing, ['run'], { logFile }).catch((e: unknown) => e);
      expect(err, tr.label).toBeInstanceOf(ToolError);
      expect((err as ToolError).type, (err as ToolError).message).toBe('ToolMissing');
    }
    // A program that runs and itself cannot find something is that program's failure.
    expect(await typeOf(t.run('sh', ['-c', missing]))).toBe('ToolFailed');
    expect(await typeOf(lab.nodeTransport('n2').run('sh', ['-c', missing]))).toBe('ToolFailed');
  });

  it('a remote tool whose stderr says "Permission denied (" is that tool\'s failure, not HostAuthRejected', async () => {
    const err = await t
      .run('sh', ['-c', 'echo "open /etc/x: Permission denied (os error 13)" >&2; exit 255'])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).type).toBe('ToolFailed');
    expect((err as ToolError).message).toContain('Permission denied (os error 13)');
  });

  it('a known_hosts file missing on the worker is InvalidInput naming host.knownHostsFile, not HostKeyMismatch', async () => {
    const o = labSshOptions(side);
    const knownHostsFile = path.join(side.dir, 'no-such-known_hosts');
    const err = await sshTransport({ ...side.spec, knownHostsFile }, { ...o, reuseConnection: false })
      .run('true', [])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).type).toBe('InvalidInput');
    expect((err as ToolError).message).toContain(`host.knownHostsFile ${knownHostsFile}`);
    expect(existsSync(knownHostsFile)).toBe(false); // and ssh did not create it
  });

  it('refuses a changed host key (HostKeyMismatch, security) and never re-pins it', async () => {
    const pinned = readFileSync(side.spec.knownHostsFile, 'utf8');
    await rotateHostKey(side);
    const err = await t.run('true', []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).type).toBe('HostKeyMismatch');
    expect((err as ToolError).message).toMatch(/does not match the pinned key/);
    expect(readFileSync(side.spec.knownHostsFile, 'utf8')).toBe(pinned);
    // The operator verifies the new key and pins it: commands work again.
    await pinHostKey(side);
    expect((await t.run('echo', ['ok'])).stdout).toBe('ok');
  });

  it('provisions a node over ssh end to end and decommissions it without residue', async () => {
    const input: ProvisionInputJson = labProvisionInput(lab, 'n1', {
      nodeId: `${uniqueId('ssh').slice(-10)}-n1`,
      workloads: [{ name: 'api', spiffePath: '/ns/ssh/sa/api', uid: 62011, port: 9443, allow: [] }],
      overrides: { host: e2e.spec },
    });
    // Nothing reaches the node through `ip netns exec`: record every node-side transport.
    const kinds = new Set<string>();
    const base = labTransportFactory(lab, e2e.controlDir);
    const transport = (spec: HostSpec) => {
      const tr = base(spec);
      if (spec.kind !== 'netns' || spec.netns !== lab.hub.netns) kinds.add(tr.kind);
      return tr;
    };
    const logins = acceptedLogins(e2e);
    await withWorker(
      env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger, transport }) },
      async (taskQueue) => {
        const run = await startProvisioning(env.client, input, { taskQueue });
        const r = await run.handle.result();
        expect(r.nodeId).toBe(input.nodeId);
        expect(r.overlayIp).toMatch(/^10\.200\.\d+\.\d+$/);
        expect(r.keyFingerprint).toMatch(/^[0-9a-f]{16}$/);
        expect(r.hubHandshakes[0]!.latestHandshakeUnix).toBeGreaterThan(0);
        expect(r.nodeAliasId).toBe(`spiffe://${td}/node/${input.nodeId}`);
        expect(r.entries).toHaveLength(1);
        expect(r.workloads[0]!.svidTtlSeconds).toBeGreaterThan(3000);

        // The key was made on the node (0600) and the agent runs there, started over ssh.
        const node = lab.nodeTransport('n1');
        expect(
          (await node.run('stat', ['-c', '%a', `${lab.node('n1').dir}/wireguard/${r.interface}.key`])).stdout.trim(),
        ).toBe('600');
        expect((await ip.netnsPids(localTransport(), lab.node('n1').netns)).length).toBeGreaterThan(1);

        const dec = await startDecommission(env.client, input, { taskQueue });
        await dec.result();
      },
    );
    expect([...kinds]).toEqual(['ssh']);
    // A whole bootstrap and its undo over a handful of connections, not one per command.
    expect(acceptedLogins(e2e) - logins).toBeLessThanOrEqual(3);

    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    expect(await server.entryShow(srv)).toEqual([]);
    expect((await server.agentList(srv)).length).toBe(0);
    expect(await ledger.getNode(input.nodeId)).toBeNull();
    expect(await ledger.listAllocations(input.nodeId)).toEqual([]);
    expect(await ledger.listPeers(input.nodeId)).toEqual([]);
    expect(await ledger.listEntries(input.nodeId)).toEqual([]);
    expect(await ledger.listWorkloads(input.nodeId)).toEqual([]);
    expect((await wg.show(lab.hubTransport(), lab.hub.interface)).peers).toEqual([]);
    // With sshd gone, the node's namespace holds nothing the bootstrap started.
    await stopSshd(e2e);
    expect((await ip.listLinks(lab.nodeTransport('n1'))).map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
    expect(await ip.netnsPids(localTransport(), lab.node('n1').netns)).toEqual([]);
  });

  it('fails a run whose node host key changes mid-run as a security failure, and compensates', async () => {
    const input: ProvisionInputJson = labProvisionInput(lab, 'n2', {
      nodeId: `${uniqueId('sshk').slice(-10)}-n2`,
      overrides: { host: side.spec },
    });
    // The host key changes just before step 4 starts the agent (a reinstalled or impersonated host).
    let armed = true;
    const base = labTransportFactory(lab, side.controlDir);
    const transport = (spec: HostSpec): HostTransport => {
      const tr = base(spec);
      if (spec.kind !== 'ssh') return tr;
      return {
        ...tr,
        run: tr.run.bind(tr),
        async spawnDaemon(command, args, o) {
          if (armed && path.basename(command) === 'spire-agent') {
            armed = false;
            await rotateHostKey(side);
          }
          return tr.spawnDaemon(command, args, o);
        },
      };
    };
    await withWorker(
      env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger, transport }) },
      async (taskQueue) => {
        const run = await startProvisioning(env.client, input, { taskQueue });
        const err = await failureOf(run.handle.result());
        expect(armed).toBe(false);
        // Not retried (nonRetryable): the activity failed on its first attempt.
        expectStepFailureChain(err, 'HostKeyMismatch', 'startSpireAgent');

        // Compensation ran, but every undo that touches the node refuses to talk to
        // the impostor. The operator verifies and re-pins the key, then decommissions.
        await pinHostKey(side);
        const dec = await startDecommission(env.client, input, { taskQueue });
        await dec.result();
      },
    );
    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    expect(await server.entryShow(srv)).toEqual([]);
    expect(await ledger.listAllocations(input.nodeId)).toEqual([]);
    expect(await ledger.listPeers(input.nodeId)).toEqual([]);
    expect((await wg.show(lab.hubTransport(), lab.hub.interface)).peers).toEqual([]);
    await stopSshd(side);
    expect((await ip.listLinks(lab.nodeTransport('n2'))).map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
    expect(await ip.netnsPids(localTransport(), lab.node('n2').netns)).toEqual([]);
  });
});
