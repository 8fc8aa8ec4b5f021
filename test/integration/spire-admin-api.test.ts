/**
 * The spire-server calls over the admin API (server-api.ts) against the real
 * spire-server 1.15.3, checked with the server's own CLI: each call is made the
 * API way (a netns target) and read back, or repeated, the CLI way (the same
 * target as an ssh-kind transport: `spire-server <cmd>` run in the namespace).
 * Both ways must give the same answers and the same error types. Needs root and
 * `npm run tools`; fails (never skips) without them.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand, TOOLS_BIN, ToolError } from '../../activities/host/exec.js';
import { netnsTransport, type HostTransport } from '../../activities/host/transport.js';
import { agentHealthcheck, startAgent, stopAgent } from '../../activities/spire/agent-cli.js';
import { closeServerApiChannels } from '../../activities/spire/server-api.js';
import * as server from '../../activities/spire/server-cli.js';
import { startSpireServer, type SpireServerHandle } from '../../lab/spire-server.js';
import { createNetnsPair, listNetns, type NetnsPair } from '../helpers/spire-netns.js';

const TD = 'api-it.nodeboot.test';
const OTHER_TD = 'other.nodeboot.test';

let fixture: NetnsPair | undefined;
let base: string;
let hub: SpireServerHandle | undefined;
const agentPidFiles: string[] = [];

/** The target the API way takes (netns) and the same target the CLI way (ssh kind, run through the namespace). */
let api: server.SpireServerTarget;
let cli: server.SpireServerTarget;
const asCli = (t: server.SpireServerTarget): server.SpireServerTarget => ({
  ...t,
  transport: { ...t.transport, kind: 'ssh' },
});

/** Every program the API way runs on the target (it should run none). */
const ran: string[][] = [];
function watched(t: HostTransport): HostTransport {
  return { ...t, run: (c, a, o) => (ran.push([c, ...a]), t.run(c, a, o)) };
}

async function startHub(): Promise<void> {
  hub = await startSpireServer({
    transport: netnsTransport(fixture!.serverNs),
    dir: path.join(base, 'srv'),
    trustDomain: TD,
    bindAddress: fixture!.serverIp,
    port: 8081,
    datastore: 'sqlite3',
    name: fixture!.prefix,
  });
  api = { ...hub.target, transport: watched(hub.target.transport), timeoutMs: 10_000 };
  cli = asCli(hub.target);
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the SPIRE admin API test needs root (network namespaces)');
  for (const bin of ['spire-server', 'spire-agent']) {
    if (!existsSync(path.join(TOOLS_BIN, bin)))
      throw new Error(`${bin} is missing from ${TOOLS_BIN}: run "npm run tools" first`);
  }
  fixture = await createNetnsPair();
  base = mkdtempSync(`/tmp/${fixture.prefix}-`);
  chmodSync(base, 0o755);
  await startHub();
});

afterAll(async () => {
  closeServerApiChannels();
  if (fixture) for (const f of agentPidFiles) await stopAgent(netnsTransport(fixture.agentNs), f).catch(() => false);
  await hub?.stop();
  await fixture?.destroy();
  if (base) rmSync(base, { recursive: true, force: true });
  if (fixture) {
    expect(await listNetns(fixture.prefix)).toEqual([]);
    const ps = await runCommand('ps', ['-eo', 'args']);
    expect(ps.stdout.split('\n').filter((l) => l.includes(base) && /spire-(server|agent)/.test(l))).toEqual([]);
  }
});

const typeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e instanceof ToolError ? e.type : String(e)),
  );

describe('the SPIRE server admin API', { sequential: true }, () => {
  const alias = `spiffe://${TD}/node/api-01`;
  const workloadId = `spiffe://${TD}/ns/it/sa/api`;
  let agentId: string;
  let entry: server.SpireEntry;

  it('goes the API way for a netns target and the CLI way for ssh', () => {
    expect(server.adminFor(api)).not.toBe(server.cliAdmin);
    expect(server.adminFor(cli)).toBe(server.cliAdmin);
  });

  it('answers healthcheck, bundle and trust domain as the CLI does, without running a program', async () => {
    expect(await server.healthcheck(api)).toBe(true);
    expect(await server.healthcheck(cli)).toBe(true);
    const pem = await server.bundleShow(api);
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(pem).toBe(await server.bundleShow(cli));
    expect(await server.bundleTrustDomain(api)).toBe(TD);
    expect(ran).toEqual([]);
  });

  it('mints a join token the CLI shows the alias entry of, and an agent attests with it', async () => {
    const token = await server.tokenGenerate(api, { spiffeId: alias, ttlSeconds: 600 });
    expect(token.expiresAt).toBeGreaterThan(Date.now() / 1000);
    agentId = server.joinTokenAgentId(TD, token);
    // One call: the server made the alias entry itself (parent = the token's agent ID).
    expect((await server.entryShow(cli, { spiffeId: alias })).map((e) => e.parentId)).toEqual([agentId]);

    const adir = path.join(base, 'agt');
    const pidFile = path.join(adir, 'agent.pid');
    agentPidFiles.push(pidFile);
    const agt = netnsTransport(fixture!.agentNs);
    const agent = await startAgent({
      transport: agt,
      trustDomain: TD,
      serverAddress: fixture!.serverIp,
      serverPort: 8081,
      dataDir: path.join(adir, 'data'),
      socketPath: path.join(adir, 'public', 'api.sock'),
      joinToken: token,
      trustBundlePem: await server.bundleShow(api),
      pidFile,
      logFile: path.join(adir, 'agent.log'),
    });
    expect(await agentHealthcheck({ transport: agt, socketPath: agent.socketPath })).toBe(true);

    const viaApi = await server.agentList(api);
    expect(viaApi.map((a) => a.spiffeId)).toContain(agentId);
    expect(viaApi).toEqual(await server.agentList(cli));
    expect(await server.agentList(api, { attestationType: 'join_token' })).toEqual(
      await server.agentList(cli, { attestationType: 'join_token' }),
    );
    expect(await server.agentList(api, { attestationType: 'x509pop' })).toEqual([]);
  });

  it('creates an entry the CLI shows as created; again, it returns the existing one (ALREADY_EXISTS)', async () => {
    const spec = {
      parentId: alias,
      spiffeId: workloadId,
      selectors: ['unix:uid:61001', 'unix:gid:61001'],
      x509SvidTtl: 3600,
      jwtSvidTtl: 300,
      hint: 'api-it',
    };
    const first = await server.entryCreate(api, spec);
    expect(first.created).toBe(true);
    entry = first.entry;
    expect(entry).toMatchObject({ parentId: alias, spiffeId: workloadId, x509SvidTtl: 3600, hint: 'api-it' });
    // entry show sorts selectors; compare as sets here, exactly below.
    expect([...entry.selectors].sort()).toEqual([...spec.selectors].sort());
    expect(await server.entryGet(api, entry.id)).toEqual(await server.entryGet(cli, entry.id));
    expect((await server.entryGet(cli, entry.id))?.spiffeId).toBe(workloadId);

    const second = await server.entryCreate(api, spec);
    expect(second.created).toBe(false);
    expect(second.entry.id).toBe(entry.id);
    expect(await server.entryShow(cli, { spiffeId: workloadId })).toHaveLength(1);

    // An entry the CLI made is found by the API as the same entry.
    const byCli = await server.entryCreate(cli, { ...spec, spiffeId: `${workloadId}-cli` });
    expect(byCli.created).toBe(true);
    expect(await server.entryCreate(api, { ...spec, spiffeId: `${workloadId}-cli` })).toEqual({
      created: false,
      entry: expect.objectContaining({ id: byCli.entry.id }),
    });
  });

  it('lists entries as entry show does, filter by filter and in its order', async () => {
    const filters: server.EntryFilter[] = [
      {},
      { parentId: alias },
      { spiffeId: workloadId },
      { selectors: ['unix:uid:61001'] },
      { selectors: ['unix:uid:61001', 'unix:gid:61001'], matchSelectorsOn: 'exact' },
      { selectors: ['unix:uid:61001'], matchSelectorsOn: 'exact' },
      { selectors: ['unix:uid:61001', 'unix:uid:1'], matchSelectorsOn: 'any' },
      { parentId: alias, spiffeId: `${workloadId}-cli`, selectors: ['unix:gid:61001'], matchSelectorsOn: 'subset' },
    ];
    for (const f of filters)
      expect(await server.entryShow(api, f), JSON.stringify(f)).toEqual(await server.entryShow(cli, f));
    expect((await server.entryShow(api, { parentId: alias })).length).toBeGreaterThanOrEqual(2);
    expect(await server.findSimilarEntry(api, entry)).toEqual(entry);
  });

  it('maps refusals and absences to the same results and error types as the CLI', async () => {
    const refusals = [
      // The server refuses a parent outside its trust domain (InvalidArgument in the batch result).
      (t: server.SpireServerTarget) =>
        server.entryCreate(t, {
          parentId: `spiffe://${OTHER_TD}/node/x`,
          spiffeId: `${workloadId}-bad`,
          selectors: ['unix:uid:1'],
        }),
      // An alias outside the trust domain: the request is refused as a whole.
      (t: server.SpireServerTarget) =>
        server.tokenGenerate(t, { spiffeId: `spiffe://${OTHER_TD}/node/x`, ttlSeconds: 60 }),
    ];
    for (const refuse of refusals) expect(await typeOf(refuse(api))).toBe(await typeOf(refuse(cli)));
    expect(await typeOf(refusals[0]!(api))).toBe('EntryRejected');
    expect(await typeOf(refusals[1]!(api))).toBe('InvalidInput');
    const err = await refusals[0]!(api).catch((e: unknown) => e);
    expect((err as ToolError).message).toMatch(/InvalidArgument/);

    const missing = '00000000-0000-4000-8000-000000000000';
    expect(await server.entryGet(api, missing)).toBeUndefined();
    expect(await server.entryDelete(api, missing)).toBe(false);
    expect(await server.entryDelete(cli, missing)).toBe(false);
    const nobody = `spiffe://${TD}/spire/agent/x509pop/nobody`;
    expect(await server.agentEvict(api, nobody)).toBe(false);
    expect(await server.agentBan(api, nobody)).toBe(false);
  });

  it('deletes an entry and evicts an agent, as the CLI then shows', async () => {
    expect(await server.entryDelete(api, entry.id)).toBe(true);
    expect(await server.entryGet(cli, entry.id)).toBeUndefined();
    expect(await server.entryDelete(api, entry.id)).toBe(false);

    expect(await server.agentEvict(api, agentId)).toBe(true);
    expect((await server.agentList(cli)).map((a) => a.spiffeId)).not.toContain(agentId);
    expect(await server.agentEvict(api, agentId)).toBe(false);
    expect(ran).toEqual([]);
  });

  it('server down: false and SpireServerUnavailable as with the CLI; back up: the next call answers', async () => {
    await hub!.stop();
    expect(await server.healthcheck(api)).toBe(false);
    expect(await server.healthcheck(cli)).toBe(false);
    for (const call of [
      (t: server.SpireServerTarget) => server.bundleShow(t),
      (t: server.SpireServerTarget) => server.entryShow(t, {}),
      (t: server.SpireServerTarget) => server.tokenGenerate(t, { spiffeId: alias, ttlSeconds: 60 }),
      (t: server.SpireServerTarget) =>
        server.entryCreate(t, { parentId: alias, spiffeId: workloadId, selectors: ['unix:uid:1'] }),
      (t: server.SpireServerTarget) => server.agentList(t),
    ]) {
      expect(await typeOf(call(api))).toBe('SpireServerUnavailable');
      expect(await typeOf(call(cli))).toBe('SpireServerUnavailable');
    }

    // startSpireServer waits for the server with healthcheck over the API: a stale channel would hang it.
    const t0 = performance.now();
    await startHub();
    expect(await server.healthcheck(api)).toBe(true);
    expect(await server.bundleShow(api)).toBe(await server.bundleShow(cli));
    expect(performance.now() - t0).toBeLessThan(30_000);
  });
});
