/**
 * The spire-server / spire-agent wrappers: the exact argv they build and how
 * they read the CLI's JSON (shapes captured from spire-server 1.15.3), with a
 * fake transport that records every call. The real binaries are exercised by
 * test/integration/spire.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { RunOptions, RunResult } from '../../activities/host/exec.js';
import { runCommand, ToolError } from '../../activities/host/exec.js';
import { localTransport, type DaemonOptions, type HostTransport } from '../../activities/host/transport.js';
import {
  agentHealthcheck,
  FETCH_EXIT,
  fetchScriptArgv,
  fetchX509Svid,
  renderAgentConfig,
  startAgent,
  stopAgent,
} from '../../activities/spire/agent-cli.js';
import {
  agentBan,
  agentEvict,
  agentList,
  bundleShow,
  bundleTrustDomain,
  entryCreate,
  entryDelete,
  entryShow,
  adminFor,
  cliAdmin,
  healthcheck,
  JoinToken,
  joinTokenAgentId,
  tokenGenerate,
} from '../../activities/spire/server-cli.js';
import { apiAdmin, closeServerApiChannels } from '../../activities/spire/server-api.js';
import { renderServerConfig } from '../../lab/spire-server.js';

interface Call {
  command: string;
  args: string[];
  opts?: RunOptions;
}

type Responder = (call: Call) => Partial<RunResult> | undefined;

/** A HostTransport that records calls and answers from a list of responders (first match wins). */
function fakeTransport(responders: Responder[] = []) {
  const calls: Call[] = [];
  const daemons: { command: string; args: string[]; opts: DaemonOptions }[] = [];
  const transport: HostTransport = {
    // ssh: the way the server calls go as CLI runs (a local or netns target uses the admin API).
    kind: 'ssh',
    label: 'fake host',
    async run(command, args, opts) {
      const call = { command, args: [...args], opts };
      calls.push(call);
      for (const r of responders) {
        const res = r(call);
        if (res) return { stdout: '', stderr: '', exitCode: 0, ...res };
      }
      return { stdout: '', stderr: '', exitCode: 0 };
    },
    async spawnDaemon(command, args, opts) {
      daemons.push({ command, args: [...args], opts });
      return 4242;
    },
  };
  return { transport, calls, daemons };
}

const when =
  (pred: (c: Call) => boolean, res: Partial<RunResult> | ((c: Call) => Partial<RunResult>)): Responder =>
  (c) =>
    pred(c) ? (typeof res === 'function' ? res(c) : res) : undefined;
const sub =
  (...words: string[]) =>
  (c: Call) =>
    c.command === 'spire-server' && words.every((w, i) => c.args[i] === w);

const SOCK = '/run/spire/server/api.sock';
const TD = 'lab.test';
const TOKEN = '5b1a4f3e-9c1d-4b7e-8f00-0123456789ab';
const ENTRY_ID = 'c0ffee00-1111-2222-3333-444455556666';

// What `spire-server agent list -output json` prints for a join-token agent (1.15.3).
const joinTokenAgent = {
  id: { trust_domain: TD, path: `/spire/agent/join_token/${TOKEN}` },
  attestation_type: 'join_token',
  x509svid_serial_number: '123',
  x509svid_expires_at: '1763903600',
  selectors: [{ type: 'join_token', value: TOKEN }],
  banned: false,
  can_reattest: false,
};

// What `spire-server entry create -output json` prints (1.15.3).
const entryJson = (over: Record<string, unknown> = {}) => ({
  id: ENTRY_ID,
  spiffe_id: { trust_domain: TD, path: '/ns/prod/sa/api' },
  parent_id: { trust_domain: TD, path: '/node/edge-01' },
  selectors: [{ type: 'unix', value: 'uid:61001' }],
  x509_svid_ttl: 3600,
  federates_with: [],
  hint: '',
  admin: false,
  created_at: '1763900000',
  downstream: false,
  expires_at: '0',
  dns_names: [],
  revision_number: '0',
  store_svid: false,
  jwt_svid_ttl: 300,
  ...over,
});
const spec = {
  parentId: `spiffe://${TD}/node/edge-01`,
  spiffeId: `spiffe://${TD}/ns/prod/sa/api`,
  selectors: ['unix:uid:61001'],
  x509SvidTtl: 3600,
  jwtSvidTtl: 300,
};

describe('spire-server argv', () => {
  const cases: [string, (t: HostTransport) => Promise<unknown>, string[], string][] = [
    ['healthcheck', (t) => healthcheck({ transport: t, socketPath: SOCK }), ['healthcheck', '-socketPath', SOCK], ''],
    [
      'bundle show',
      (t) => bundleShow({ transport: t, socketPath: SOCK }),
      ['bundle', 'show', '-socketPath', SOCK, '-output', 'json'],
      JSON.stringify({ trust_domain: TD, x509_authorities: [{ asn1: 'AAEC', tainted: false }] }),
    ],
    [
      'token generate',
      (t) =>
        tokenGenerate({ transport: t, socketPath: SOCK }, { spiffeId: `spiffe://${TD}/node/edge-01`, ttlSeconds: 600 }),
      [
        'token',
        'generate',
        '-socketPath',
        SOCK,
        '-output',
        'json',
        '-spiffeID',
        `spiffe://${TD}/node/edge-01`,
        '-ttl',
        '600',
      ],
      JSON.stringify({ value: TOKEN, expires_at: '1763900600' }),
    ],
    [
      'entry create',
      (t) =>
        entryCreate({ transport: t, socketPath: SOCK }, { ...spec, selectors: ['unix:uid:61001', 'unix:gid:61001'] }),
      [
        'entry',
        'create',
        '-socketPath',
        SOCK,
        '-output',
        'json',
        '-parentID',
        spec.parentId,
        '-spiffeID',
        spec.spiffeId,
        '-selector',
        'unix:uid:61001',
        '-selector',
        'unix:gid:61001',
        '-x509SVIDTTL',
        '3600',
        '-jwtSVIDTTL',
        '300',
      ],
      JSON.stringify({ results: [{ status: { code: 0, message: 'OK' }, entry: entryJson() }] }),
    ],
    [
      'entry show',
      (t) =>
        entryShow(
          { transport: t, socketPath: SOCK },
          {
            spiffeId: spec.spiffeId,
            parentId: spec.parentId,
            selectors: ['unix:uid:61001'],
            matchSelectorsOn: 'exact',
          },
        ),
      [
        'entry',
        'show',
        '-socketPath',
        SOCK,
        '-output',
        'json',
        '-spiffeID',
        spec.spiffeId,
        '-parentID',
        spec.parentId,
        '-selector',
        'unix:uid:61001',
        '-matchSelectorsOn',
        'exact',
      ],
      JSON.stringify({ entries: [], next_page_token: '' }),
    ],
    [
      'entry delete',
      (t) => entryDelete({ transport: t, socketPath: SOCK }, ENTRY_ID),
      ['entry', 'delete', '-socketPath', SOCK, '-output', 'json', '-entryID', ENTRY_ID],
      JSON.stringify({ results: [{ status: { code: 0, message: 'OK' }, id: ENTRY_ID }] }),
    ],
    [
      'agent list',
      (t) => agentList({ transport: t, socketPath: SOCK }),
      ['agent', 'list', '-socketPath', SOCK, '-output', 'json'],
      JSON.stringify({ agents: [], next_page_token: '' }),
    ],
    [
      'agent evict (an agent not attested by join token)',
      (t) => agentEvict({ transport: t, socketPath: SOCK }, `spiffe://${TD}/spire/agent/x509pop/0a1b2c`),
      [
        'agent',
        'evict',
        '-socketPath',
        SOCK,
        '-output',
        'json',
        '-spiffeID',
        `spiffe://${TD}/spire/agent/x509pop/0a1b2c`,
      ],
      '{}',
    ],
    [
      'agent ban (an agent not attested by join token)',
      (t) => agentBan({ transport: t, socketPath: SOCK }, `spiffe://${TD}/spire/agent/x509pop/0a1b2c`),
      [
        'agent',
        'ban',
        '-socketPath',
        SOCK,
        '-output',
        'json',
        '-spiffeID',
        `spiffe://${TD}/spire/agent/x509pop/0a1b2c`,
      ],
      '{}',
    ],
  ];

  it.each(cases)('%s', async (_name, invoke, argv, stdout) => {
    const { transport, calls } = fakeTransport([() => ({ stdout })]);
    await invoke(transport);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.command).toBe('spire-server');
    expect(calls[0]!.args).toEqual(argv);
    // never a secret in argv: the token only ever comes back on stdout
    expect(calls[0]!.opts?.allowNonZeroExit).toBe(true);
  });

  // A join-token agent's ID embeds its token: it may reach argv (and an SSH remote
  // shell line) only once the server lists the agent as attested, i.e. the token is spent.
  const listArgv = ['agent', 'list', '-socketPath', SOCK, '-output', 'json', '-attestationType', 'join_token'];
  it.each([
    ['evict', agentEvict],
    ['ban', agentBan],
  ] as const)(
    "agent %s of a join-token agent: only an attested (token consumed) agent's ID reaches argv",
    async (verb, action) => {
      const id = joinTokenAgentId(TD, TOKEN);
      // Not attested (a minted, unused token is still a secret): nothing but the listing runs.
      const unused = fakeTransport([
        when(sub('agent', 'list'), { stdout: JSON.stringify({ agents: [], next_page_token: '' }) }),
      ]);
      expect(await action({ transport: unused.transport, socketPath: SOCK }, id)).toBe(false);
      expect(unused.calls.map((c) => c.args)).toEqual([listArgv]);
      expect(unused.calls.flatMap((c) => [c.command, ...c.args]).join(' ')).not.toContain(TOKEN);

      // Attested: its token was deleted by the server when the agent used it; the ID is a name now.
      const spent = fakeTransport([
        when(sub('agent', 'list'), { stdout: JSON.stringify({ agents: [joinTokenAgent], next_page_token: '' }) }),
        () => ({ stdout: '{}' }),
      ]);
      expect(await action({ transport: spent.transport, socketPath: SOCK }, id)).toBe(true);
      expect(spent.calls.map((c) => c.args)).toEqual([
        listArgv,
        ['agent', verb, '-socketPath', SOCK, '-output', 'json', '-spiffeID', id],
      ]);
    },
  );

  it('honours a custom binary path and timeout', async () => {
    const { transport, calls } = fakeTransport();
    await healthcheck({ transport, socketPath: SOCK, binary: '/opt/spire/bin/spire-server', timeoutMs: 5000 });
    expect(calls[0]!.command).toBe('/opt/spire/bin/spire-server');
    expect(calls[0]!.opts?.timeoutMs).toBe(5000);
  });

  it('rejects names that could be read as options or paths before running anything', async () => {
    const { transport, calls } = fakeTransport();
    const t = { transport, socketPath: SOCK };
    await expect(entryCreate(t, { ...spec, spiffeId: '-admin' })).rejects.toThrow(/spiffeId/);
    await expect(entryCreate(t, { ...spec, selectors: ['unix:uid:1 -admin'] })).rejects.toThrow(/selectors\[0\]/);
    await expect(entryCreate(t, { ...spec, selectors: [] })).rejects.toThrow(/at least one selector/);
    await expect(entryDelete(t, '--entryID')).rejects.toThrow(/entryId/);
    await expect(healthcheck({ transport, socketPath: 'relative/api.sock' })).rejects.toThrow(/socketPath/);
    await expect(tokenGenerate(t, { spiffeId: `spiffe://${TD}/node/../x`, ttlSeconds: 60 })).rejects.toThrow(
      /spiffeId/,
    );
    expect(calls).toHaveLength(0);
  });
});

describe('spire-server output parsing', () => {
  const t = (transport: HostTransport) => ({ transport, socketPath: SOCK });

  it('flattens a created entry', async () => {
    const { transport } = fakeTransport([
      () => ({ stdout: JSON.stringify({ results: [{ status: { code: 0, message: 'OK' }, entry: entryJson() }] }) }),
    ]);
    const r = await entryCreate(t(transport), spec);
    expect(r).toEqual({
      created: true,
      entry: {
        id: ENTRY_ID,
        spiffeId: spec.spiffeId,
        parentId: spec.parentId,
        selectors: ['unix:uid:61001'],
        x509SvidTtl: 3600,
        jwtSvidTtl: 300,
        admin: false,
        downstream: false,
        hint: '',
        dnsNames: [],
        federatesWith: [],
        createdAt: 1763900000,
        revisionNumber: 0,
      },
    });
  });

  it('throws EntryRejected for a refused create even though the CLI exits 0', async () => {
    // Real output: the failed result echoes the request entry (id ""), exit code 0.
    const stdout = JSON.stringify({
      results: [
        {
          status: {
            code: 3,
            message: 'failed to convert entry: invalid DNS name "bad name": label contains invalid character',
          },
          entry: entryJson({ id: '' }),
        },
      ],
    });
    const { transport } = fakeTransport([() => ({ stdout, exitCode: 0 })]);
    const err = await entryCreate(t(transport), spec).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).type).toBe('EntryRejected');
    expect((err as ToolError).message).toMatch(/InvalidArgument: failed to convert entry/);
  });

  it('returns the existing entry for a duplicate create (AlreadyExists) instead of failing', async () => {
    const { transport, calls } = fakeTransport([
      when(sub('entry', 'create'), {
        stdout: JSON.stringify({
          results: [{ status: { code: 6, message: 'similar entry already exists' }, entry: entryJson({ id: '' }) }],
        }),
      }),
      when(sub('entry', 'show'), { stdout: JSON.stringify({ entries: [entryJson()], next_page_token: '' }) }),
    ]);
    const r = await entryCreate(t(transport), spec);
    expect(r.created).toBe(false);
    expect(r.entry.id).toBe(ENTRY_ID);
    expect(calls[1]!.args).toEqual([
      'entry',
      'show',
      '-socketPath',
      SOCK,
      '-output',
      'json',
      '-spiffeID',
      spec.spiffeId,
      '-parentID',
      spec.parentId,
      '-selector',
      'unix:uid:61001',
      '-matchSelectorsOn',
      'exact',
    ]);
  });

  it('maps an unreachable admin socket to SpireServerUnavailable', async () => {
    const stderr =
      'Error: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial unix /run/spire/server/api.sock: connect: no such file or directory"';
    const { transport } = fakeTransport([() => ({ stderr, exitCode: 1 })]);
    const err = await entryShow(t(transport)).catch((e: unknown) => e);
    expect((err as ToolError).type).toBe('SpireServerUnavailable');
    expect(await healthcheck(t(transport))).toBe(false);
  });

  it('tells a missing namespace or binary apart from the tool saying no', async () => {
    const noNs = fakeTransport([
      () => ({ exitCode: 255, stderr: 'Cannot open network namespace "nbt-x-srv": No such file or directory' }),
    ]);
    await expect(healthcheck(t(noNs.transport))).rejects.toMatchObject({ type: 'HostUnreachable' });
    const noBin = fakeTransport([
      () => ({ exitCode: 255, stderr: 'exec of "spire-server" failed: No such file or directory' }),
    ]);
    await expect(entryShow(t(noBin.transport))).rejects.toMatchObject({ type: 'ToolMissing' });
  });

  it('maps a join token request the server refuses as InvalidArgument (a foreign trust domain) to InvalidInput, not a retry', async () => {
    // What spire-server 1.15 prints when the alias is outside its trust domain.
    const stderr =
      'Error: rpc error: code = InvalidArgument desc = invalid agent ID: "spiffe://other.test/node/n1" is not a member of trust domain "lab.test"';
    const { transport } = fakeTransport([() => ({ stderr, exitCode: 1 })]);
    const err = (await tokenGenerate(t(transport), { spiffeId: 'spiffe://other.test/node/n1', ttlSeconds: 60 }).catch(
      (e: unknown) => e,
    )) as ToolError;
    expect(err).toBeInstanceOf(ToolError);
    expect(err.type).toBe('InvalidInput');
    expect(err.message).toMatch(/spire\.trustDomain/);
  });

  it("reads the server's trust domain from bundle show -output json", async () => {
    const { transport, calls } = fakeTransport([
      () => ({ stdout: JSON.stringify({ trust_domain: TD, x509_authorities: [{ asn1: 'AAEC', tainted: false }] }) }),
    ]);
    expect(await bundleTrustDomain(t(transport))).toBe(TD);
    expect(calls[0]!.args).toEqual(['bundle', 'show', '-socketPath', SOCK, '-output', 'json']);
  });

  it('maps other CLI failures to ToolFailed and never quotes the token', async () => {
    const { transport } = fakeTransport([
      () => ({ stderr: `Error: something odd happened with ${TOKEN}`, exitCode: 1 }),
    ]);
    const err = (await tokenGenerate(t(transport), { spiffeId: `spiffe://${TD}/node/n1`, ttlSeconds: 60 }).catch(
      (e: unknown) => e,
    )) as ToolError;
    expect(err.type).toBe('ToolFailed');
    expect(err.message).not.toContain(TOKEN);
  });

  it('does not echo unexpected output (it may hold a token)', async () => {
    const { transport } = fakeTransport([() => ({ stdout: JSON.stringify({ token: TOKEN }) })]);
    const err = (await tokenGenerate(t(transport), { spiffeId: `spiffe://${TD}/node/n1`, ttlSeconds: 60 }).catch(
      (e: unknown) => e,
    )) as ToolError;
    expect(err.type).toBe('ToolFailed');
    expect(err.message).toMatch(/unexpected shape/);
    expect(err.message).not.toContain(TOKEN);
    const notJson = fakeTransport([() => ({ stdout: `Token: ${TOKEN}` })]);
    const err2 = (await tokenGenerate(t(notJson.transport), {
      spiffeId: `spiffe://${TD}/node/n1`,
      ttlSeconds: 60,
    }).catch((e: unknown) => e)) as ToolError;
    expect(err2.message).not.toContain(TOKEN);
  });

  it('keeps the join token out of JSON, inspect and string conversion', async () => {
    const { transport } = fakeTransport([
      () => ({ stdout: JSON.stringify({ value: TOKEN, expires_at: '1763900600' }) }),
    ]);
    const tok = await tokenGenerate(t(transport), { spiffeId: `spiffe://${TD}/node/n1`, ttlSeconds: 600 });
    expect(tok.value).toBe(TOKEN);
    expect(tok.expiresAt).toBe(1763900600);
    expect(JSON.stringify({ tok })).not.toContain(TOKEN);
    expect(inspect(tok)).not.toContain(TOKEN);
    expect(`${tok}`).not.toContain(TOKEN);
    expect(JSON.stringify(structuredClone({ ...tok }))).not.toContain(TOKEN);
  });

  it('converts the bundle to PEM', async () => {
    const der = Buffer.alloc(100, 7).toString('base64');
    const { transport } = fakeTransport([
      () => ({
        stdout: JSON.stringify({
          trust_domain: TD,
          x509_authorities: [
            { asn1: der, tainted: false },
            { asn1: der, tainted: false },
          ],
          jwt_authorities: [],
          refresh_hint: '0',
          sequence_number: '1',
        }),
      }),
    ]);
    const pem = await bundleShow(t(transport));
    expect(pem.match(/-----BEGIN CERTIFICATE-----/g)).toHaveLength(2);
    const first = pem.split('-----END CERTIFICATE-----')[0]!.replace('-----BEGIN CERTIFICATE-----', '');
    expect(first.split('\n').every((l) => l.length <= 64)).toBe(true);
    expect(first.replace(/\s/g, '')).toBe(der);
  });

  it('entry delete is idempotent (NotFound -> false) and other refusals throw', async () => {
    const notFound = fakeTransport([
      () => ({
        stdout: JSON.stringify({ results: [{ status: { code: 5, message: 'entry not found' }, id: ENTRY_ID }] }),
      }),
    ]);
    expect(await entryDelete(t(notFound.transport), ENTRY_ID)).toBe(false);
    const ok = fakeTransport([
      () => ({ stdout: JSON.stringify({ results: [{ status: { code: 0, message: 'OK' }, id: ENTRY_ID }] }) }),
    ]);
    expect(await entryDelete(t(ok.transport), ENTRY_ID)).toBe(true);
    const denied = fakeTransport([
      () => ({ stdout: JSON.stringify({ results: [{ status: { code: 7, message: 'nope' }, id: ENTRY_ID }] }) }),
    ]);
    await expect(entryDelete(t(denied.transport), ENTRY_ID)).rejects.toMatchObject({ type: 'EntryRejected' });
  });

  it('parses agent list and treats evict/ban of an unknown agent as a no-op', async () => {
    const list = fakeTransport([
      () => ({
        stdout: JSON.stringify({
          agents: [
            {
              id: { trust_domain: TD, path: `/spire/agent/join_token/${TOKEN}` },
              attestation_type: 'join_token',
              x509svid_serial_number: '123',
              x509svid_expires_at: '1763903600',
              selectors: [{ type: 'join_token', value: TOKEN }],
              banned: false,
              can_reattest: false,
              agent_version: '1.15.3',
            },
          ],
          next_page_token: '',
        }),
      }),
    ]);
    const agents = await agentList(t(list.transport));
    expect(agents).toEqual([
      {
        spiffeId: `spiffe://${TD}/spire/agent/join_token/${TOKEN}`,
        attestationType: 'join_token',
        banned: false,
        canReattest: false,
        selectors: [`join_token:${TOKEN}`],
        x509SvidSerialNumber: '123',
        x509SvidExpiresAt: 1763903600,
      },
    ]);
    // Listed a moment ago, gone by the time evict/ban runs: a no-op, not a failure.
    const gone = fakeTransport([
      when(sub('agent', 'list'), { stdout: JSON.stringify({ agents: [joinTokenAgent] }) }),
      () => ({ exitCode: 1, stderr: 'Error: rpc error: code = NotFound desc = agent not found' }),
    ]);
    expect(await agentEvict(t(gone.transport), joinTokenAgentId(TD, TOKEN))).toBe(false);
    expect(await agentBan(t(gone.transport), joinTokenAgentId(TD, TOKEN))).toBe(false);
  });
});

describe('spire-agent', () => {
  const SOCK_A = '/run/spire/agent/public/api.sock';

  it('healthcheck argv', async () => {
    const { transport, calls } = fakeTransport();
    expect(await agentHealthcheck({ transport, socketPath: SOCK_A })).toBe(true);
    expect(calls[0]).toMatchObject({ command: 'spire-agent', args: ['healthcheck', '-socketPath', SOCK_A] });
  });

  const FETCHED = `Received 1 svid after 3ms\n\nSPIFFE ID:\t\tspiffe://${TD}/ns/prod/sa/api\nSVID Valid After:\t...\n`;
  const filesOut = (svid: string, bundle: string) => `${FETCHED}\n--nodeboot-svid-files--\n${svid}\0${bundle}`;

  it('fetch x509: one command per attempt, all as the workload uid: make the dir, fetch, read the files', async () => {
    const { transport, calls } = fakeTransport([
      when((c) => c.command === 'setpriv', { stdout: filesOut('PEM of svid', 'PEM of bundle') }),
    ]);
    const r = await fetchX509Svid(
      { transport, socketPath: SOCK_A },
      { writeDir: '/tmp/wl/svid', uid: 61001, gid: 61001 },
    );
    expect(calls).toHaveLength(1);
    const args = calls[0]!.args;
    expect(calls[0]!.command).toBe('setpriv');
    expect(args.slice(0, 7)).toEqual(['--reuid=61001', '--regid=61001', '--clear-groups', '--', 'sh', '-c', args[6]]);
    // A constant script: every input is a positional parameter, none is spliced into it.
    expect(args.slice(7)).toEqual([
      'svid-fetch',
      'keep',
      '/tmp/wl/svid',
      'spire-agent',
      SOCK_A,
      String(1024 * 1024),
      '--nodeboot-svid-files--',
    ]);
    expect(args[6]).not.toContain('/tmp/wl');
    expect(r).toEqual({
      spiffeId: `spiffe://${TD}/ns/prod/sa/api`,
      svidPath: '/tmp/wl/svid/svid.0.pem',
      keyPath: '/tmp/wl/svid/svid.0.key',
      bundlePath: '/tmp/wl/svid/bundle.0.pem',
      svidPem: 'PEM of svid',
      bundlePem: 'PEM of bundle',
    });
    await fetchX509Svid(
      { transport, socketPath: SOCK_A },
      { writeDir: '/tmp/wl/svid', uid: 61001, gid: 61001, fresh: true },
    );
    expect(calls[1]!.args[8]).toBe('fresh');
    expect(() => fetchScriptArgv({ transport, socketPath: SOCK_A }, { writeDir: '/tmp/x', uid: 0, gid: 0 })).toThrow(
      /uid/,
    );
  });

  it('fetch x509: the script removes (fresh), makes, fetches into and prints the dir, and says which step failed', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'nb-fetch-'));
    const agent = path.join(base, 'fake-agent');
    // Writes the two PEM files where -write says, prints what the CLI prints.
    writeFileSync(
      agent,
      `#!/bin/sh\n[ "$FAIL" = 1 ] && { echo "no identity issued" >&2; exit 1; }\nd="$7"\necho svid > "$d/svid.0.pem"; echo bundle > "$d/bundle.0.pem"; echo "SPIFFE ID:		spiffe://${TD}/w"\n`,
      { mode: 0o755 },
    );
    const script = (o: { writeDir: string; fresh?: boolean }) =>
      fetchScriptArgv(
        { transport: localTransport(), socketPath: SOCK_A, binary: agent },
        { ...o, uid: 61001, gid: 61001 },
      ).slice(4);
    const run = (argv: string[], env: Record<string, string> = {}) =>
      runCommand(argv[0]!, argv.slice(1), { allowNonZeroExit: true, env });
    const dir = path.join(base, 'w', 'verify');
    writeFileSync(path.join(base, 'stale'), 'x');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'planted'), 'x');
    const r = await run(script({ writeDir: dir, fresh: true }));
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`SPIFFE ID:\t\tspiffe://${TD}/w\n\n--nodeboot-svid-files--\nsvid\n\0bundle`);
    expect(existsSync(path.join(dir, 'planted'))).toBe(false);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect((await run(script({ writeDir: dir }), { FAIL: '1' })).exitCode).toBe(1);
    // A parent that is a file: the dir cannot be made.
    expect((await run(script({ writeDir: path.join(base, 'stale', 'd') }))).exitCode).toBe(FETCH_EXIT.noDir);
    rmSync(base, { recursive: true, force: true });
  });

  it('fetch x509: root makes the write dir only where the uid cannot (mkdir refuses a link, chown -h never follows one)', async () => {
    let attempts = 0;
    const { transport, calls } = fakeTransport([
      when((c) => c.command === 'setpriv' && c.args.includes('mkdir'), {
        exitCode: 1,
        stderr: 'mkdir: cannot create directory: Permission denied',
      }),
      when(
        (c) => c.command === 'setpriv',
        () =>
          ++attempts === 1
            ? { exitCode: FETCH_EXIT.noDir, stderr: 'mkdir: Permission denied' }
            : { stdout: filesOut('PEM', 'PEM') },
      ),
    ]);
    await fetchX509Svid({ transport, socketPath: SOCK_A }, { writeDir: '/srv/base/wl', uid: 61001, gid: 61002 });
    const root = calls.filter((c) => c.command !== 'setpriv').map((c) => [c.command, ...c.args].join(' '));
    expect(root).toEqual([
      'mkdir -p -- /srv/base',
      'mkdir -m 700 -- /srv/base/wl',
      'chown -h 61001:61002 -- /srv/base/wl',
    ]);
    expect(attempts).toBe(2);

    const taken = fakeTransport([
      when((c) => c.command === 'mkdir' || c.args.includes('mkdir'), { exitCode: 1, stderr: 'File exists' }),
      when((c) => c.command === 'setpriv', { exitCode: FETCH_EXIT.noDir, stderr: 'mkdir: File exists' }),
    ]);
    await expect(
      fetchX509Svid(
        { transport: taken.transport, socketPath: SOCK_A },
        { writeDir: '/srv/base/wl', uid: 61001, gid: 61001 },
      ),
    ).rejects.toMatchObject({
      type: 'ToolFailed',
    });
    expect(taken.calls.some((c) => c.command === 'chown' || c.command === 'install')).toBe(false);
  });

  it('fetch x509: a program the node lacks is ToolMissing, files the uid cannot read are WorkloadFailed', async () => {
    const missing = fakeTransport([
      when((c) => c.command === 'setpriv', { exitCode: 127, stderr: 'svid-fetch: 1: spire-agent: not found' }),
    ]);
    await expect(
      fetchX509Svid(
        { transport: missing.transport, socketPath: SOCK_A },
        { writeDir: '/tmp/w', uid: 61001, gid: 61001 },
      ),
    ).rejects.toMatchObject({ type: 'ToolMissing' });
    const unreadable = fakeTransport([
      when((c) => c.command === 'setpriv', { exitCode: FETCH_EXIT.unreadable, stdout: FETCHED }),
    ]);
    await expect(
      fetchX509Svid(
        { transport: unreadable.transport, socketPath: SOCK_A },
        { writeDir: '/tmp/w', uid: 61001, gid: 61001 },
      ),
    ).rejects.toMatchObject({ type: 'WorkloadFailed' });
  });

  it('fetch x509 gives up with WorkloadFailed when no identity is issued', async () => {
    const { transport } = fakeTransport([
      when((c) => c.command === 'setpriv', {
        exitCode: 1,
        stderr: 'rpc error: code = PermissionDenied desc = no identity issued',
      }),
    ]);
    await expect(
      fetchX509Svid({ transport, socketPath: SOCK_A }, { writeDir: '/tmp/wl/svid', uid: 61001, gid: 61001, waitMs: 0 }),
    ).rejects.toMatchObject({ type: 'WorkloadFailed' });
  });

  it('renders the config with the bundle path, and the token only when asked', () => {
    const base = {
      trustDomain: TD,
      serverAddress: '192.0.2.1',
      serverPort: 8081,
      dataDir: '/var/lib/nb/agent',
      socketPath: SOCK_A,
      trustBundlePath: '/var/lib/nb/agent/bootstrap-bundle.pem',
    };
    const conf = renderAgentConfig(base);
    expect(conf).toContain('trust_bundle_path = "/var/lib/nb/agent/bootstrap-bundle.pem"');
    expect(conf).toContain('server_address = "192.0.2.1"');
    expect(conf).toContain('server_port = "8081"');
    expect(conf).toContain(`trust_domain = "${TD}"`);
    expect(conf).toContain(`socket_path = "${SOCK_A}"`);
    expect(conf).toContain('NodeAttestor "join_token"');
    expect(conf).toContain('WorkloadAttestor "unix"');
    expect(conf).not.toContain('insecure_bootstrap');
    expect(conf).not.toContain('join_token =');
    expect(renderAgentConfig({ ...base, joinToken: new JoinToken(TOKEN, 0) })).toContain(`join_token = "${TOKEN}"`);
    expect(() => renderAgentConfig({ ...base, trustBundlePath: undefined })).toThrow(/trustBundlePath is required/);
    expect(renderAgentConfig({ ...base, trustBundlePath: undefined, insecureBootstrap: true })).toContain(
      'insecure_bootstrap = true',
    );
    expect(() => renderAgentConfig({ ...base, joinToken: 'x" \n plugins {' })).toThrow(/joinToken/);
    expect(() => renderAgentConfig({ ...base, serverAddress: '1.2.3.4"' })).toThrow(/serverAddress/);
  });

  it('starts the agent with the join token on stdin only, never argv or env', async () => {
    const { transport, calls, daemons } = fakeTransport([
      when((c) => c.command === 'cat' && c.args[1]?.endsWith('.pid') === true, { exitCode: 1 }),
      when((c) => c.command === 'spire-agent', { exitCode: 0 }),
    ]);
    const h = await startAgent({
      transport,
      trustDomain: TD,
      serverAddress: '192.0.2.1',
      serverPort: 8081,
      dataDir: '/var/lib/nb/agent',
      socketPath: SOCK_A,
      joinToken: new JoinToken(TOKEN, 0),
      trustBundlePem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
      pidFile: '/var/lib/nb/agent.pid',
      logFile: '/var/log/nb/agent.log',
    });
    expect(h).toMatchObject({ pid: 4242, alreadyRunning: false, socketPath: SOCK_A });
    expect(daemons).toHaveLength(1);
    expect(daemons[0]!.command).toBe('spire-agent');
    expect(daemons[0]!.args).toEqual(['run', '-config', '/dev/stdin']);
    expect(daemons[0]!.opts.input).toContain(`join_token = "${TOKEN}"`);
    expect(daemons[0]!.opts.input).toContain('trust_bundle_path = "/var/lib/nb/agent/bootstrap-bundle.pem"');
    expect(JSON.stringify(daemons[0]!.opts.env ?? {})).not.toContain(TOKEN);
    for (const c of calls) {
      expect(c.args.join(' ')).not.toContain(TOKEN);
      expect(c.opts?.input ?? '').not.toContain(TOKEN);
    }
    // the config kept on disk for operators has no token
    const written = (file: string) => calls.find((c) => c.command === 'sh' && c.args[3] === file);
    const onDisk = written('/var/lib/nb/agent/agent.conf');
    expect(onDisk?.opts?.input).toContain('trust_bundle_path');
    expect(written('/var/lib/nb/agent.pid')?.opts?.input).toBe('4242\n');
  });

  it('reuses a running agent from its pidfile (idempotent start) and stop is a no-op without one', async () => {
    const { transport, daemons } = fakeTransport([
      when((c) => c.command === 'cat' && c.args[1] === '/var/lib/nb/agent.pid', { stdout: '777\n' }),
      when((c) => c.command === 'cat' && c.args[0] === '/proc/777/cmdline', {
        stdout: 'spire-agent\0run\0-config\0/dev/stdin\0',
      }),
    ]);
    const h = await startAgent({
      transport,
      trustDomain: TD,
      serverAddress: '192.0.2.1',
      serverPort: 8081,
      dataDir: '/var/lib/nb/agent',
      socketPath: SOCK_A,
      joinToken: new JoinToken(TOKEN, 0),
      pidFile: '/var/lib/nb/agent.pid',
      logFile: '/var/log/nb/agent.log',
      insecureBootstrap: true,
    });
    expect(h).toMatchObject({ pid: 777, alreadyRunning: true });
    expect(daemons).toHaveLength(0);

    const none = fakeTransport([when((c) => c.command === 'cat', { exitCode: 1 })]);
    expect(await stopAgent(none.transport, '/var/lib/nb/agent.pid')).toBe(false);
    expect(none.calls.some((c) => c.command === 'kill')).toBe(false);
  });

  it('does not kill a pid that was reused by another program', async () => {
    const { transport, calls } = fakeTransport([
      when((c) => c.command === 'cat' && c.args[1] === '/var/lib/nb/agent.pid', { stdout: '778\n' }),
      when((c) => c.command === 'cat' && c.args[0] === '/proc/778/cmdline', { stdout: 'postgres\0-D\0/data\0' }),
    ]);
    expect(await stopAgent(transport, '/var/lib/nb/agent.pid')).toBe(false);
    expect(calls.some((c) => c.command === 'kill')).toBe(false);
  });
});

describe('spire-server config (lab)', () => {
  it('renders sqlite3 and postgres datastores', () => {
    const base = {
      trustDomain: TD,
      bindAddress: '192.0.2.1',
      port: 8081,
      socketPath: '/tmp/x/admin/api.sock',
      dataDir: '/tmp/x/data',
      keyManager: { type: 'memory' as const },
    };
    const sqlite = renderServerConfig({
      ...base,
      datastore: { type: 'sqlite3', file: '/tmp/x/data/datastore.sqlite3' },
    });
    expect(sqlite).toContain('database_type = "sqlite3"');
    expect(sqlite).toContain('connection_string = "/tmp/x/data/datastore.sqlite3"');
    expect(sqlite).toContain('bind_port = "8081"');
    expect(sqlite).toContain('KeyManager "memory"');
    const pgConf = renderServerConfig({
      ...base,
      datastore: {
        type: 'postgres',
        connectionString: 'dbname=nbt_spire_0123456789ab host=/var/run/postgresql user=postgres sslmode=disable',
      },
      keyManager: { type: 'disk', keysPath: '/tmp/x/data/keys.json' },
    });
    expect(pgConf).toContain('database_type = "postgres"');
    expect(pgConf).toContain('host=/var/run/postgresql');
    expect(pgConf).toContain('keys_path = "/tmp/x/data/keys.json"');
  });
});

describe('which way a spire-server call goes', () => {
  const onKind = (kind: HostTransport['kind']) => ({ ...fakeTransport().transport, kind });
  // A socket path nothing listens on: the admin API fails at connect, with no server or binary needed.
  const NO_SERVER = '/nonexistent/nodeboot-unit/api.sock';

  it('takes the admin API for local and netns targets, the CLI for ssh', () => {
    expect(adminFor({ transport: onKind('local'), socketPath: SOCK })).toBe(apiAdmin);
    expect(adminFor({ transport: onKind('netns'), socketPath: SOCK })).toBe(apiAdmin);
    expect(adminFor({ transport: onKind('ssh'), socketPath: SOCK })).toBe(cliAdmin);
  });

  it('runs no program on the API way, and maps a socket nobody answers to SpireServerUnavailable', async () => {
    const { transport, calls } = fakeTransport();
    const t = { transport: { ...transport, kind: 'local' as const }, socketPath: NO_SERVER, timeoutMs: 5000 };
    try {
      expect(await healthcheck(t)).toBe(false);
      await expect(bundleShow(t)).rejects.toMatchObject({ type: 'SpireServerUnavailable' });
      await expect(tokenGenerate(t, { spiffeId: `spiffe://${TD}/node/edge-01`, ttlSeconds: 60 })).rejects.toMatchObject(
        { type: 'SpireServerUnavailable' },
      );
      await expect(entryCreate(t, spec)).rejects.toMatchObject({ type: 'SpireServerUnavailable' });
      expect(calls).toEqual([]);
    } finally {
      closeServerApiChannels();
    }
  });

  it('checks input the same way before anything is sent', async () => {
    const t = { transport: onKind('local'), socketPath: NO_SERVER };
    await expect(entryCreate(t, { ...spec, selectors: [] })).rejects.toMatchObject({ type: 'InvalidInput' });
    await expect(entryCreate(t, { ...spec, selectors: ['unix uid 1'] })).rejects.toThrow(/selectors\[0\]/);
    await expect(tokenGenerate(t, { spiffeId: 'spiffe://td/x', ttlSeconds: 0 })).rejects.toMatchObject({
      type: 'InvalidInput',
    });
    await expect(healthcheck({ ...t, socketPath: 'relative.sock' })).rejects.toThrow(/socketPath/);
  });

  it('surfaces the activity cancellation, not a tool failure', async () => {
    const ac = new AbortController();
    ac.abort(new Error('activity cancelled'));
    const t = { transport: onKind('netns'), socketPath: NO_SERVER, signal: ac.signal };
    await expect(bundleShow(t)).rejects.toThrow('activity cancelled');
    await expect(healthcheck(t)).rejects.toThrow('activity cancelled');
  });
});
