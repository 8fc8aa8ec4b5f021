/**
 * The SPIRE wrappers against the real spire-server / spire-agent 1.15.3.
 *
 * A server runs in one network namespace, an agent in another (veth,
 * 192.0.2.0/24). The agent attests with a join token minted by tokenGenerate
 * (alias spiffe://<td>/node/<nodeId>), an entry parented to that alias is
 * registered for uid 61001, a process running as 61001 fetches its X.509-SVID,
 * and the SVID is checked with @peculiar/x509: URI SAN = the registered ID,
 * chain ends in `bundle show`. Once with the sqlite3 datastore, once with
 * postgres. Needs root and `npm run tools`; fails (never skips) without them.
 */
// @peculiar/x509 (tsyringe) needs the Reflect metadata polyfill loaded first.
import 'reflect-metadata';
import { existsSync, mkdtempSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { webcrypto } from 'node:crypto';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand, TOOLS_BIN, ToolError } from '../../activities/host/exec.js';
import { netnsTransport, type HostTransport } from '../../activities/host/transport.js';
import {
  agentHealthcheck,
  fetchX509Svid,
  startAgent,
  stopAgent,
  type AgentHandle,
} from '../../activities/spire/agent-cli.js';
import {
  agentBan,
  agentList,
  agentEvict,
  bundleShow,
  bundleTrustDomain,
  entryCreate,
  entryDelete,
  entryGet,
  entryShow,
  joinTokenAgentId,
  tokenGenerate,
  type SpireServerTarget,
} from '../../activities/spire/server-cli.js';
import {
  startSpireServer,
  stopSpireServerByDir,
  type SpireDatastore,
  type SpireServerHandle,
} from '../../lab/spire-server.js';
import { createNetnsPair, listNetns, type NetnsPair } from '../helpers/spire-netns.js';

/** A process's state letter from /proc (R, S, Z, ...), or 'gone'. */
function processState(pid: number): string {
  try {
    return /\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? 'gone';
  } catch {
    return 'gone';
  }
}

x509.cryptoProvider.set(webcrypto as never);

const TD = 'spire-it.nodeboot.test';
const WORKLOAD_UID = 61001;
const PG_HOST = '/var/run/postgresql';

let fixture: NetnsPair | undefined;
let base: string;
const serverDirs: string[] = [];
const agentPidFiles: string[] = [];
const databases: string[] = [];

beforeAll(async () => {
  // Fail loudly: a green run without these would prove nothing.
  if (process.getuid?.() !== 0) throw new Error('the SPIRE integration test needs root (network namespaces, setpriv)');
  for (const bin of ['spire-server', 'spire-agent']) {
    if (!existsSync(path.join(TOOLS_BIN, bin)))
      throw new Error(`${bin} is missing from ${TOOLS_BIN}: run "npm run tools" first`);
  }
  fixture = await createNetnsPair();
  // Short (unix socket paths) and traversable by the workload uid (its SVID dir lives here).
  base = mkdtempSync(`/tmp/${fixture.prefix}-`);
  chmodSync(base, 0o755);
});

afterAll(async () => {
  const errors: unknown[] = [];
  const attempt = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  };
  if (fixture) {
    const agt = netnsTransport(fixture.agentNs);
    for (const f of agentPidFiles) await attempt(() => stopAgent(agt, f));
  }
  for (const d of serverDirs) await attempt(() => stopSpireServerByDir(d));
  if (fixture) await attempt(() => fixture!.destroy());
  if (base) rmSync(base, { recursive: true, force: true });

  // Nothing left behind: processes, namespaces, databases.
  if (fixture) {
    expect(await listNetns(fixture.prefix)).toEqual([]);
    const ps = await runCommand('ps', ['-eo', 'args']);
    expect(ps.stdout.split('\n').filter((l) => l.includes(base) && /spire-(server|agent)/.test(l))).toEqual([]);
  }
  if (databases.length) {
    const c = new pg.Client({ host: PG_HOST, user: 'postgres', database: 'postgres' });
    await c.connect();
    const r = await c.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname = ANY($1)', [
      databases,
    ]);
    await c.end();
    expect(r.rows).toEqual([]);
  }
  if (errors.length) throw errors[0];
});

interface Certs {
  leaf: x509.X509Certificate;
  chain: x509.X509Certificate[];
}

/** Check a fetched SVID: URI SAN is exactly `spiffeId`, and the chain ends in a root of `bundlePem`. */
async function verifySvid(svidPem: string, bundlePem: string, spiffeId: string): Promise<Certs> {
  const certs = x509.PemConverter.decode(svidPem).map((der) => new x509.X509Certificate(der));
  const roots = x509.PemConverter.decode(bundlePem).map((der) => new x509.X509Certificate(der));
  expect(certs.length).toBeGreaterThan(0);
  expect(roots.length).toBeGreaterThan(0);
  const leaf = certs[0]!;
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  expect(san).not.toBeNull();
  const uris = san!.names.items.filter((n) => n.type === 'url').map((n) => n.value);
  expect(uris).toEqual([spiffeId]);

  const chain = [...(await new x509.X509ChainBuilder({ certificates: [...certs.slice(1), ...roots] }).build(leaf))];
  const top = chain.at(-1)!;
  const rootThumbs = await Promise.all(roots.map(async (r) => Buffer.from(await r.getThumbprint()).toString('hex')));
  expect(rootThumbs).toContain(Buffer.from(await top.getThumbprint()).toString('hex'));
  for (let i = 0; i < chain.length - 1; i++) {
    expect(await chain[i]!.verify({ publicKey: chain[i + 1]!.publicKey, date: new Date() })).toBe(true);
  }
  expect(await top.verify({ date: new Date() })).toBe(true); // self-signed root
  return { leaf, chain };
}

function bootstrapScenario(datastore: SpireDatastore) {
  describe(`SPIRE on ${datastore}`, { sequential: true }, () => {
    let server: SpireServerHandle;
    let srv: SpireServerTarget;
    let agt: HostTransport;
    let agent: AgentHandle;
    let agentId: string;
    let bundlePem: string;
    const nodeId = `edge-${datastore}`;
    const alias = `spiffe://${TD}/node/${nodeId}`;
    const workloadId = `spiffe://${TD}/ns/it/sa/${datastore}`;
    let entryId: string;

    it('starts the server in its namespace and serves the bundle', async () => {
      const dir = path.join(base, `srv-${datastore}`);
      serverDirs.push(dir);
      server = await startSpireServer({
        transport: netnsTransport(fixture!.serverNs),
        dir,
        trustDomain: TD,
        bindAddress: fixture!.serverIp,
        port: 8081,
        datastore,
        name: fixture!.prefix,
      });
      if (server.database) databases.push(server.database);
      expect(server.datastore).toBe(datastore);
      expect(datastore === 'postgres' ? server.database : undefined).toEqual(
        datastore === 'postgres' ? expect.stringMatching(/^nbt_spire_/) : undefined,
      );
      srv = server.target;
      bundlePem = await bundleShow(srv);
      expect(bundlePem).toMatch(/^-----BEGIN CERTIFICATE-----/);
      // What the preflight compares with spire.trustDomain.
      expect(await bundleTrustDomain(srv)).toBe(TD);
    });

    it('refuses a join token for an alias outside its trust domain: InvalidInput naming spire.trustDomain, not a retry', async () => {
      const err = await tokenGenerate(srv, {
        spiffeId: `spiffe://other.nodeboot.test/node/${nodeId}`,
        ttlSeconds: 600,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ToolError);
      expect((err as ToolError).type).toBe('InvalidInput');
      expect((err as ToolError).message).toContain('spire.trustDomain');
    });

    it('never puts an unused join token on argv: evict/ban of an agent that has not attested runs only agent list', async () => {
      const unused = await tokenGenerate(srv, { spiffeId: `${alias}-unused`, ttlSeconds: 600 });
      const argv: string[][] = [];
      const inner = srv.transport;
      // The CLI way (what an ssh target takes); the admin API way runs no program at all.
      const recording: SpireServerTarget = {
        ...srv,
        transport: { ...inner, kind: 'ssh', run: (c, a, o) => (argv.push([c, ...a]), inner.run(c, a, o)) },
      };
      const viaApi: SpireServerTarget = { ...recording, transport: { ...recording.transport, kind: inner.kind } };
      expect(await agentEvict(viaApi, joinTokenAgentId(TD, unused))).toBe(false);
      expect(await agentBan(viaApi, joinTokenAgentId(TD, unused))).toBe(false);
      expect(argv).toEqual([]);
      expect(await agentEvict(recording, joinTokenAgentId(TD, unused))).toBe(false);
      expect(await agentBan(recording, joinTokenAgentId(TD, unused))).toBe(false);
      expect(argv.map((a) => a.slice(1, 3))).toEqual([
        ['agent', 'list'],
        ['agent', 'list'],
      ]);
      expect(argv.flat().join(' ')).not.toContain(unused.value);
    });

    it('attests an agent in the other namespace with a join token passed on stdin', async () => {
      agt = netnsTransport(fixture!.agentNs);
      const token = await tokenGenerate(srv, { spiffeId: alias, ttlSeconds: 600 });
      agentId = joinTokenAgentId(TD, token);
      const adir = path.join(base, `agt-${datastore}`);
      const pidFile = path.join(adir, 'agent.pid');
      agentPidFiles.push(pidFile);
      agent = await startAgent({
        transport: agt,
        trustDomain: TD,
        serverAddress: fixture!.serverIp,
        serverPort: 8081,
        dataDir: path.join(adir, 'data'),
        socketPath: path.join(adir, 'public', 'api.sock'),
        joinToken: token,
        trustBundlePem: bundlePem,
        pidFile,
        logFile: path.join(adir, 'agent.log'),
      });
      expect(agent.alreadyRunning).toBe(false);
      expect(await agentHealthcheck({ transport: agt, socketPath: agent.socketPath })).toBe(true);

      // The token never reached a command line.
      const ps = await runCommand('ps', ['-eo', 'args']);
      expect(ps.stdout).not.toContain(token.value);

      const agents = await agentList(srv);
      expect(agents.map((a) => a.spiffeId)).toContain(agentId);
      expect(agents.find((a) => a.spiffeId === agentId)).toMatchObject({
        attestationType: 'join_token',
        banned: false,
      });
      // The alias entry SPIRE made for the token (parent = the agent's join-token ID).
      expect((await entryShow(srv, { spiffeId: alias })).map((e) => e.parentId)).toEqual([agentId]);

      // Starting again is idempotent: the running agent is kept.
      const again = await startAgent({
        transport: agt,
        trustDomain: TD,
        serverAddress: fixture!.serverIp,
        serverPort: 8081,
        dataDir: path.join(adir, 'data'),
        socketPath: agent.socketPath,
        joinToken: token,
        trustBundlePem: bundlePem,
        pidFile,
        logFile: agent.logFile,
      });
      expect(again).toMatchObject({ pid: agent.pid, alreadyRunning: true });
    });

    if (datastore === 'sqlite3') {
      it('refuses a second agent that replays the consumed token (AttestationRejected)', async () => {
        const token = await tokenGenerate(srv, { spiffeId: `${alias}-replay`, ttlSeconds: 600 });
        const first = path.join(base, 'agt-replay-1');
        const second = path.join(base, 'agt-replay-2');
        const opts = (d: string) => ({
          transport: agt,
          trustDomain: TD,
          serverAddress: fixture!.serverIp,
          serverPort: 8081,
          dataDir: path.join(d, 'data'),
          socketPath: path.join(d, 'public', 'api.sock'),
          joinToken: token,
          trustBundlePem: bundlePem,
          pidFile: path.join(d, 'agent.pid'),
          logFile: path.join(d, 'agent.log'),
          healthTimeoutMs: 30_000,
        });
        agentPidFiles.push(opts(first).pidFile, opts(second).pidFile);
        await startAgent(opts(first));
        const err = await startAgent(opts(second)).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ToolError);
        expect((err as ToolError).type).toBe('AttestationRejected');
        expect((err as ToolError).message).not.toContain(token.value);
        expect(await stopAgent(agt, opts(first).pidFile)).toBe(true);
        await stopAgent(agt, opts(second).pidFile);
        expect(await agentEvict(srv, joinTokenAgentId(TD, token))).toBe(true);
      });
    }

    it('registers a workload entry idempotently', async () => {
      const spec = {
        parentId: alias,
        spiffeId: workloadId,
        selectors: [`unix:uid:${WORKLOAD_UID}`],
        x509SvidTtl: 3600,
        jwtSvidTtl: 300,
      };
      const first = await entryCreate(srv, spec);
      expect(first.created).toBe(true);
      expect(first.entry).toMatchObject({
        parentId: alias,
        spiffeId: workloadId,
        selectors: [`unix:uid:${WORKLOAD_UID}`],
        x509SvidTtl: 3600,
        jwtSvidTtl: 300,
      });
      entryId = first.entry.id;
      const second = await entryCreate(srv, spec);
      expect(second).toMatchObject({ created: false, entry: { id: entryId } });
      expect(await entryShow(srv, { spiffeId: workloadId })).toHaveLength(1);
    });

    it('a refused entry throws EntryRejected although the CLI exits 0', async () => {
      // A parent outside the trust domain is refused by the server (InvalidArgument).
      const err = await entryCreate(srv, {
        parentId: 'spiffe://other.test/node/x',
        spiffeId: `${workloadId}-bad`,
        selectors: ['unix:uid:1'],
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ToolError);
      expect((err as ToolError).type).toBe('EntryRejected');
    });

    it(`a process running as uid ${WORKLOAD_UID} gets an X.509-SVID that matches its entry and chains to the bundle`, async () => {
      const svid = await fetchX509Svid(
        { transport: agt, socketPath: agent.socketPath },
        { writeDir: path.join(base, `wl-${datastore}`), uid: WORKLOAD_UID, gid: WORKLOAD_UID, waitMs: 60_000 },
      );
      expect(svid.spiffeId).toBe(workloadId);
      const { leaf } = await verifySvid(svid.svidPem, bundlePem, workloadId);
      // The entry's TTL (1 h) is honoured, give or take clock slack.
      const ttl = (leaf.notAfter.getTime() - leaf.notBefore.getTime()) / 1000;
      expect(ttl).toBeGreaterThan(3500);
      expect(ttl).toBeLessThanOrEqual(3600 + 60);
      // The bundle the workload received is the server's bundle.
      await verifySvid(svid.svidPem, svid.bundlePem, workloadId);
      const key = await runCommand('stat', ['-c', '%u %a', svid.keyPath]);
      expect(key.stdout).toBe(`${WORKLOAD_UID} 600`);
    });

    it('deletes the entry (and again is a no-op)', async () => {
      expect(await entryDelete(srv, entryId)).toBe(true);
      expect(await entryGet(srv, entryId)).toBeUndefined();
      expect(await entryDelete(srv, entryId)).toBe(false);
    });

    it('evicts the agent, which also removes its alias entry', async () => {
      expect(await agentEvict(srv, agentId)).toBe(true);
      expect((await agentList(srv)).map((a) => a.spiffeId)).not.toContain(agentId);
      expect(await entryShow(srv, { spiffeId: alias })).toEqual([]);
      expect(await agentEvict(srv, agentId)).toBe(false);
    });

    it('stops the agent and the server and leaves nothing behind', async () => {
      // An evicted agent may already have exited on its own (it notices at its
      // next sync, sooner on a loaded machine): either way it must be gone after.
      await stopAgent(agt, agent.pidFile);
      expect(await stopAgent(agt, agent.pidFile)).toBe(false);
      expect((await runCommand('kill', ['-0', String(agent.pid)], { allowNonZeroExit: true })).exitCode).not.toBe(0);
      await server.stop();
      expect(existsSync(server.dir)).toBe(false);
      // Gone, or a zombie its parent (this test process) has not reaped yet on a loaded machine.
      expect(processState(server.pid), `spire-server pid ${server.pid} still runs`).toMatch(/^(gone|Z)$/);
      if (server.database) {
        const c = new pg.Client({ host: PG_HOST, user: 'postgres', database: 'postgres' });
        await c.connect();
        const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [server.database]);
        await c.end();
        expect(r.rowCount).toBe(0);
      }
    });
  });
}

bootstrapScenario('sqlite3');
bootstrapScenario('postgres');
