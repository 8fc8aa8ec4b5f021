/**
 * The inventory ledger against the real PostgreSQL. Each run creates its own
 * database (nbtest_<hex>) and drops it afterwards, so runs never see each other.
 * Admin URL: NODEBOOT_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ledger, LedgerError, MIGRATIONS, keyFingerprint } from '../../inventory/index.js';
import type { RunRef } from '../../activities/types.js';
import { ProvisionInput } from '../../common/input.js';

const ADMIN_URL = process.env.NODEBOOT_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB_NAME = `nbtest_${randomBytes(6).toString('hex')}`;
const dbUrl = (() => {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${DB_NAME}`;
  return u.toString();
})();

const KEY_A = 'x'.repeat(42) + 'A=';
const KEY_B = 'y'.repeat(42) + 'E=';
const run: RunRef = { workflowId: 'provision/n1', runId: 'run-1' };

let ledger: Ledger;
const extra: Ledger[] = [];

/** A plain pg connection, for what the Ledger API deliberately cannot do. */
async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function caught(p: Promise<unknown>): Promise<LedgerError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(LedgerError);
    return err as LedgerError;
  }
  throw new Error('expected a LedgerError, got success');
}

beforeAll(async () => {
  await withClient(ADMIN_URL, (c) => c.query(`CREATE DATABASE ${DB_NAME}`));
  ledger = await Ledger.connect(dbUrl);
});

afterAll(async () => {
  await Promise.all([ledger, ...extra].map((l) => l?.close()));
  await withClient(ADMIN_URL, (c) => c.query(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`));
});

describe('migrations', () => {
  it('two concurrent migrate() calls on a fresh database apply the schema exactly once', async () => {
    const other = await Ledger.connect(dbUrl, { max: 2 });
    extra.push(other);
    const [a, b] = await Promise.all([ledger.migrate(), other.migrate()]);
    const latest = Math.max(...MIGRATIONS.map((m) => m.version));
    expect([...a.applied, ...b.applied].sort()).toEqual(MIGRATIONS.map((m) => m.version).sort());
    expect(a.version).toBe(latest);
    expect(b.version).toBe(latest);
    const { rows } = await withClient(dbUrl, (c) => c.query('SELECT version FROM schema_migrations ORDER BY version'));
    expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
  });

  it('running again applies nothing', async () => {
    const again = await ledger.migrate();
    expect(again.applied).toEqual([]);
    expect((await ledger.migrate()).applied).toEqual([]);
  });

  it('connect({ migrate: true }) on a migrated database is a no-op', async () => {
    const l = await Ledger.connect(dbUrl, { migrate: true, max: 1 });
    extra.push(l);
    expect((await l.migrate()).applied).toEqual([]);
  });
});

describe('nodes', () => {
  it('upsert is idempotent and keeps the input hash across state changes', async () => {
    const a = await ledger.upsertNode('node-a', 'lab', 'provisioning', { hash: 'abc123', summary: { workloads: 2 } });
    const b = await ledger.upsertNode('node-a', 'lab', 'provisioning');
    expect(b).toEqual(a);
    const c = await ledger.setNodeState('node-a', 'ready');
    expect(c).toMatchObject({
      nodeId: 'node-a',
      segment: 'lab',
      state: 'ready',
      inputHash: 'abc123',
      inputSummary: { workloads: 2 },
    });
    expect(await ledger.getNode('node-a')).toEqual(c);
    expect(await ledger.setNodeState('no-such-node', 'ready')).toBeNull();
    expect(await ledger.getNode('no-such-node')).toBeNull();
  });

  it('refuses bad names before touching the database', async () => {
    const e = await caught(ledger.upsertNode('Bad Node', 'lab', 'ready'));
    expect(e.type).toBe('InvalidInput');
    expect(e.message).toMatch(/^nodeId /);
    expect((await caught(ledger.upsertNode('ok', 'lab', 'bogus' as never))).message).toMatch(/^state /);
  });

  it('takes the names the provisioning input takes, and no longer ones (one Label schema)', async () => {
    const longest = 'a'.repeat(40);
    const tooLong = 'a'.repeat(41);
    expect(ProvisionInput.shape.segment.safeParse(tooLong).success).toBe(false);
    expect((await ledger.upsertNode('label-1', longest, 'ready')).segment).toBe(longest);
    expect((await caught(ledger.upsertNode('label-1', tooLong, 'ready'))).message).toMatch(/^segment /);
    const peer = {
      nodeId: 'label-1',
      hubName: tooLong,
      nodePublicKey: KEY_A,
      hubPublicKey: KEY_B,
      endpoint: '192.0.2.1:51820',
    };
    expect((await caught(ledger.recordPeer(peer))).message).toMatch(/^peer\.hubName /);
    expect((await caught(ledger.removeWorkloads('label-1', [tooLong]))).message).toMatch(/^names\.0 /);
    expect(await ledger.getNode('label-1')).toMatchObject({ segment: longest });
  });
});

describe('overlay IPAM', () => {
  it('allocation is idempotent per node', async () => {
    const first = await ledger.allocateAddress('idem-1', '10.10.0.0/24');
    expect(first).toEqual({ nodeId: 'idem-1', cidr: '10.10.0.0/24', ip: '10.10.0.1', prefixLength: 24, created: true });
    const again = await ledger.allocateAddress('idem-1', '10.10.0.0/24');
    expect(again).toEqual({ ...first, created: false });
    // the same pool written with host bits set is the same pool
    expect((await ledger.allocateAddress('idem-1', '10.10.0.77/24')).ip).toBe('10.10.0.1');
    expect(await ledger.getAllocation('idem-1', '10.10.0.0/24')).toBe('10.10.0.1');
    // concurrent retries of the same node still get one address
    const same = await Promise.all(Array.from({ length: 10 }, () => ledger.allocateAddress('idem-2', '10.10.0.0/24')));
    expect(new Set(same.map((a) => a.ip))).toEqual(new Set(['10.10.0.2']));
    expect(same.filter((a) => a.created)).toHaveLength(1);
  });

  it('50 concurrent allocations for different nodes in a /26 get 50 distinct addresses, from several workers', async () => {
    const workers = [ledger, ...(await Promise.all([1, 2, 3].map(() => Ledger.connect(dbUrl, { max: 5 }))))];
    extra.push(...workers.slice(1));
    const reserved = ['10.20.0.1'];
    const out = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        workers[i % workers.length]!.allocateAddress(`conc-${i}`, '10.20.0.0/26', { reserved }),
      ),
    );
    const ips = out.map((a) => a.ip);
    expect(new Set(ips).size).toBe(50);
    expect(out.every((a) => a.created)).toBe(true);
    // the lowest 50 usable hosts after the reserved .1: .2 .. .51
    const expected = Array.from({ length: 50 }, (_, i) => `10.20.0.${i + 2}`);
    expect([...ips].sort()).toEqual([...expected].sort());
  });

  it('skips network, broadcast and reserved addresses', async () => {
    const cidr = '10.30.0.0/29'; // hosts .1 .. .6
    const reserved = ['10.30.0.1', '10.30.0.3', '192.168.9.9'];
    const got = [];
    for (const n of ['r-1', 'r-2', 'r-3', 'r-4']) got.push((await ledger.allocateAddress(n, cidr, { reserved })).ip);
    expect(got).toEqual(['10.30.0.2', '10.30.0.4', '10.30.0.5', '10.30.0.6']);
  });

  it('throws PoolExhausted when full, and the message names the pool', async () => {
    const cidr = '10.40.0.0/30'; // hosts .1 .2
    await ledger.allocateAddress('ex-1', cidr, { reserved: ['10.40.0.1'] });
    const e = await caught(ledger.allocateAddress('ex-2', cidr, { reserved: ['10.40.0.1'] }));
    expect(e.type).toBe('PoolExhausted');
    expect(e.message).toContain('10.40.0.0/30');
    // an existing holder still gets its address from a full pool
    expect((await ledger.allocateAddress('ex-1', cidr, { reserved: ['10.40.0.1'] })).ip).toBe('10.40.0.2');
  });

  it('/32 and /31 pools', async () => {
    expect((await ledger.allocateAddress('p32-a', '10.41.0.9/32')).ip).toBe('10.41.0.9');
    expect((await caught(ledger.allocateAddress('p32-b', '10.41.0.9/32'))).type).toBe('PoolExhausted');
    expect((await ledger.allocateAddress('p31-a', '10.41.1.0/31')).ip).toBe('10.41.1.0');
    expect((await ledger.allocateAddress('p31-b', '10.41.1.0/31')).ip).toBe('10.41.1.1');
  });

  it('release then reallocate reuses the lowest free address', async () => {
    const cidr = '10.50.0.0/24';
    await ledger.allocateAddress('rel-1', cidr);
    await ledger.allocateAddress('rel-2', cidr);
    await ledger.allocateAddress('rel-3', cidr);
    expect(await ledger.releaseAddress('rel-2', cidr)).toBe('10.50.0.2');
    expect(await ledger.releaseAddress('rel-2', cidr)).toBeNull(); // idempotent
    expect(await ledger.getAllocation('rel-2', cidr)).toBeNull();
    expect((await ledger.allocateAddress('rel-4', cidr)).ip).toBe('10.50.0.2');
    expect((await ledger.allocateAddress('rel-2', cidr)).ip).toBe('10.50.0.4');
  });

  it('refuses a bad CIDR or reserved address as InvalidInput', async () => {
    expect((await caught(ledger.allocateAddress('bad-1', '10.0.0.0/33'))).type).toBe('InvalidInput');
    const e = await caught(ledger.allocateAddress('bad-1', '10.0.0.0/24', { reserved: ['10.0.0.300'] }));
    expect(e.type).toBe('InvalidInput');
    expect(e.message).toMatch(/^reserved\.0/);
  });

  it("claimAddress records an address the overlay assigned: idempotent, replaces the node's old one, refuses one held by another node", async () => {
    const cidr = '10.70.0.0/16';
    expect(await ledger.claimAddress('claim-1', cidr, '10.70.128.5')).toMatchObject({
      ip: '10.70.128.5',
      created: true,
    });
    expect(await ledger.claimAddress('claim-1', cidr, '10.70.128.5')).toMatchObject({ created: false });
    // The controller gave the node a new address (a re-enrolled device): the old one is released.
    await ledger.claimAddress('claim-1', cidr, '10.70.128.6');
    expect(await ledger.getAllocation('claim-1', cidr)).toBe('10.70.128.6');
    // Allocation skips a claimed address.
    await ledger.claimAddress('claim-2', cidr, '10.70.0.1');
    expect((await ledger.allocateAddress('alloc-3', cidr)).ip).toBe('10.70.0.2');
    const conflict = await caught(ledger.claimAddress('claim-2', cidr, '10.70.128.6'));
    expect(conflict.type).toBe('AddressConflict');
    expect(conflict.message).toContain('held by node claim-1');
    expect(await ledger.getAllocation('claim-2', cidr)).toBe('10.70.0.1');
    expect((await caught(ledger.claimAddress('claim-2', cidr, '10.71.0.1'))).message).toBe(
      'ip: 10.71.0.1 is not a host address in 10.70.0.0/16',
    );
  });
});

describe('peers, entries, workloads', () => {
  it('records and removes idempotently', async () => {
    const peer = {
      nodeId: 'pw-1',
      hubName: 'hub-a',
      nodePublicKey: KEY_A,
      hubPublicKey: KEY_B,
      endpoint: '192.0.2.1:51820',
    };
    const p1 = await ledger.recordPeer(peer);
    expect(await ledger.recordPeer(peer)).toEqual(p1);
    await ledger.recordPeer({ ...peer, hubName: 'hub-b' });
    expect((await ledger.listPeers('pw-1')).map((p) => p.hubName)).toEqual(['hub-a', 'hub-b']);
    expect(await ledger.removePeers('pw-1', 'hub-b')).toBe(1);
    expect(await ledger.removePeers('pw-1')).toBe(1);
    expect(await ledger.removePeers('pw-1')).toBe(0);

    const entry = {
      entryId: 'entry-1',
      nodeId: 'pw-1',
      workload: 'api',
      spiffeId: 'spiffe://example.org/ns/prod/api',
      parentId: 'spiffe://example.org/node/pw-1',
      createdByRun: 'run-1',
    };
    await ledger.recordEntry(entry);
    await ledger.recordEntry({ ...entry, createdByRun: 'run-2' }); // first writer keeps ownership
    await ledger.recordEntry({ ...entry, entryId: 'entry-2', workload: 'db', createdByRun: 'run-2' });
    expect((await ledger.listEntries('pw-1')).map((e) => [e.entryId, e.createdByRun])).toEqual([
      ['entry-1', 'run-1'],
      ['entry-2', 'run-2'],
    ]);
    expect((await ledger.listEntries('pw-1', { createdByRun: 'run-2' })).map((e) => e.entryId)).toEqual(['entry-2']);
    expect(await ledger.removeEntry('entry-2')).toBe(true);
    expect(await ledger.removeEntry('entry-2')).toBe(false);

    const notAfter = new Date('2030-01-01T00:00:00Z');
    const w = await ledger.recordWorkload({
      nodeId: 'pw-1',
      name: 'api',
      spiffeId: entry.spiffeId,
      pid: 4242,
      svidSerial: 'abcdef01',
      svidNotAfter: notAfter,
    });
    expect(w.svidNotAfter).toBe('2030-01-01T00:00:00.000Z');
    await ledger.recordWorkload({
      nodeId: 'pw-1',
      name: 'api',
      spiffeId: entry.spiffeId,
      pid: 4243,
      svidSerial: 'abcdef02',
      svidNotAfter: '2030-01-01T01:00:00Z',
    });
    expect(await ledger.listWorkloads('pw-1')).toMatchObject([
      { name: 'api', pid: 4243, svidSerial: 'abcdef02', svidNotAfter: '2030-01-01T01:00:00.000Z' },
    ]);
    expect(await ledger.removeWorkloads('pw-1')).toBe(1);
    expect(await ledger.removeWorkloads('pw-1')).toBe(0);
  });

  it('validates keys and SPIFFE IDs', async () => {
    const e = await caught(
      ledger.recordPeer({
        nodeId: 'pw-2',
        hubName: 'hub-a',
        nodePublicKey: 'nope',
        hubPublicKey: KEY_B,
        endpoint: '192.0.2.1:51820',
      }),
    );
    expect(e.type).toBe('InvalidInput');
    expect(e.message).toMatch(/^peer\.nodePublicKey /);
    const f = await caught(
      ledger.recordEntry({
        entryId: 'e',
        nodeId: 'pw-2',
        workload: 'api',
        spiffeId: 'spiffe://example.org/../x',
        parentId: 'spiffe://example.org/a',
        createdByRun: 'r',
      }),
    );
    expect(f.message).toMatch(/^entry\.spiffeId /);
  });
});

describe('events', () => {
  it('are append-only and a duplicate idempotency key is ignored', async () => {
    const a = await ledger.appendEvent({
      nodeId: 'ev-1',
      run,
      step: 'installOverlay',
      kind: 'started',
      attempt: 1,
      idempotencyKey: 'k-1',
    });
    expect(a.appended).toBe(true);
    const dup = await ledger.appendEvent({
      nodeId: 'ev-1',
      run,
      step: 'installOverlay',
      kind: 'started',
      attempt: 1,
      idempotencyKey: 'k-1',
    });
    expect(dup).toEqual({ id: a.id, appended: false });

    // without a key, an identical retried append is still a no-op (key derived from content)...
    const ev = {
      nodeId: 'ev-1',
      run,
      step: 'installOverlay' as const,
      kind: 'succeeded' as const,
      attempt: 1,
      detail: { b: 1, a: { y: 2, x: 1 } },
    };
    const s1 = await ledger.appendEvent(ev);
    const s2 = await ledger.appendEvent({ ...ev, detail: { a: { x: 1, y: 2 }, b: 1 } }); // same content, other key order
    expect(s2).toEqual({ id: s1.id, appended: false });
    // ...while a different attempt is a new event
    expect((await ledger.appendEvent({ ...ev, attempt: 2 })).appended).toBe(true);

    await ledger.appendEvent({
      nodeId: 'ev-1',
      run,
      step: 'issueOverlayKey',
      kind: 'failed',
      attempt: 3,
      errorType: 'PoolExhausted',
      detail: { note: 'password=hunter2' },
    });
    const events = await ledger.listEvents('ev-1');
    expect(events.map((e) => [e.step, e.kind, e.attempt])).toEqual([
      ['installOverlay', 'started', 1],
      ['installOverlay', 'succeeded', 1],
      ['installOverlay', 'succeeded', 2],
      ['issueOverlayKey', 'failed', 3],
    ]);
    expect(events[3]).toMatchObject({
      workflowId: 'provision/n1',
      runId: 'run-1',
      errorType: 'PoolExhausted',
      detail: { note: 'password=[redacted]' },
    });
    expect(events.map((e) => e.id)).toEqual([...events.map((e) => e.id)].sort((x, y) => x - y));
    expect(await ledger.listEvents('ev-1', { afterId: events[1]!.id, limit: 1 })).toEqual([events[2]]);

    // the table refuses UPDATE and DELETE
    await withClient(dbUrl, async (c) => {
      await expect(c.query("UPDATE events SET kind = 'held' WHERE node_id = 'ev-1'")).rejects.toThrow(/append-only/);
      await expect(c.query("DELETE FROM events WHERE node_id = 'ev-1'")).rejects.toThrow(/append-only/);
    });
    expect(await ledger.listEvents('ev-1')).toHaveLength(4);
  });

  it('refuses an unknown step or kind', async () => {
    expect(
      (await caught(ledger.appendEvent({ nodeId: 'ev-2', run, step: 'nope' as never, kind: 'started' }))).message,
    ).toMatch(/^event\.step /);
    expect(
      (await caught(ledger.appendEvent({ nodeId: 'ev-2', run, step: 'workflow', kind: 'nope' as never }))).message,
    ).toMatch(/^event\.kind /);
  });
});

describe('ownership: node directories and interfaces', () => {
  it("a nodeDir is one node's: the claim is idempotent, a second node is refused (OwnershipConflict) and changes nothing", async () => {
    expect(await ledger.claimNodeDir('dir-a', 'local:vm', '/var/lib/nb/shared')).toEqual({ created: true });
    expect(await ledger.claimNodeDir('dir-a', 'local:vm', '/var/lib/nb/shared')).toEqual({ created: false });
    const e = await caught(ledger.claimNodeDir('dir-b', 'local:vm', '/var/lib/nb/shared'));
    expect(e.type).toBe('OwnershipConflict');
    expect(e.message).toBe('nodeDir /var/lib/nb/shared on local:vm belongs to node dir-a');
    expect(await ledger.nodeDirHolder('local:vm', '/var/lib/nb/shared')).toBe('dir-a');
    // Another filesystem's directory of the same name is another directory.
    expect(await ledger.claimNodeDir('dir-b', 'ssh:192.0.2.20:22', '/var/lib/nb/shared')).toEqual({ created: true });
    // A node naming another directory moves its claim; the old one is free.
    await ledger.claimNodeDir('dir-a', 'local:vm', '/var/lib/nb/a');
    expect(await ledger.nodeDirHolder('local:vm', '/var/lib/nb/shared')).toBeNull();
    expect(await ledger.releaseNodeDir('dir-a')).toBe(true);
    expect(await ledger.releaseNodeDir('dir-a')).toBe(false);
    expect((await caught(ledger.claimNodeDir('dir-c', 'local:vm', 'relative/dir'))).type).toBe('InvalidInput');
  });

  it('12 nodes claiming one directory at once: exactly one holds it', async () => {
    const nodes = Array.from({ length: 12 }, (_, i) => `race-${i}`);
    const results = await Promise.allSettled(nodes.map((n) => ledger.claimNodeDir(n, 'local:vm', '/var/lib/nb/race')));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results)
      if (r.status === 'rejected') expect((r.reason as LedgerError).type).toBe('OwnershipConflict');
    expect(nodes).toContain(await ledger.nodeDirHolder('local:vm', '/var/lib/nb/race'));
  });

  it("an interface record is one node's per network stack; release only removes the node's own", async () => {
    expect(await ledger.claimInterface('if-a', 'netns:vm:lab-n1', 'wg0')).toEqual({ created: true });
    expect(await ledger.claimInterface('if-a', 'netns:vm:lab-n1', 'wg0')).toEqual({ created: false });
    const e = await caught(ledger.claimInterface('if-b', 'netns:vm:lab-n1', 'wg0'));
    expect(e.type).toBe('OwnershipConflict');
    expect(e.message).toBe('interface wg0 on netns:vm:lab-n1 belongs to node if-a');
    expect(await ledger.claimInterface('if-b', 'netns:vm:lab-n2', 'wg0')).toEqual({ created: true });
    expect(await ledger.releaseInterface('if-b', 'netns:vm:lab-n1', 'wg0')).toBe(false);
    expect(await ledger.interfaceHolder('netns:vm:lab-n1', 'wg0')).toBe('if-a');
    expect(await ledger.releaseInterface('if-a', 'netns:vm:lab-n1', 'wg0')).toBe(true);
    expect(await ledger.interfaceHolder('netns:vm:lab-n1', 'wg0')).toBeNull();
    expect((await caught(ledger.claimInterface('if-a', 'netns:vm:lab-n1', 'a-very-long-interface'))).type).toBe(
      'InvalidInput',
    );
  });
});

describe('overlay keys (rotation)', () => {
  it('a node never rotated holds the key of its peerings since the first one; a rotation records key and time once', async () => {
    expect(await ledger.getOverlayKey('rot-1')).toBeNull();
    await ledger.recordPeer({
      nodeId: 'rot-1',
      hubName: 'hub-a',
      nodePublicKey: KEY_A,
      hubPublicKey: KEY_B,
      endpoint: '192.0.2.1:51820',
    });
    const first = (await ledger.listPeers('rot-1'))[0]!;
    expect(await ledger.getOverlayKey('rot-1')).toEqual({
      nodeId: 'rot-1',
      publicKey: KEY_A,
      fingerprint: keyFingerprint(KEY_A),
      rotatedAt: null,
      since: first.createdAt,
    });

    const rotated = await ledger.recordKeyRotation({
      nodeId: 'rot-1',
      publicKey: KEY_B,
      fingerprint: keyFingerprint(KEY_B),
      previousFingerprint: keyFingerprint(KEY_A),
    });
    expect(rotated).toMatchObject({ publicKey: KEY_B, fingerprint: keyFingerprint(KEY_B) });
    expect(rotated.rotatedAt).not.toBeNull();
    expect(rotated.since).toBe(rotated.rotatedAt);
    // A retried record of the same key keeps the first rotation time.
    await new Promise((r) => setTimeout(r, 20));
    expect(
      await ledger.recordKeyRotation({ nodeId: 'rot-1', publicKey: KEY_B, fingerprint: keyFingerprint(KEY_B) }),
    ).toEqual(rotated);
    const e = await caught(ledger.recordKeyRotation({ nodeId: 'rot-1', publicKey: KEY_B, fingerprint: 'not-hex' }));
    expect(e.type).toBe('InvalidInput');
    expect(e.message).toMatch(/^rotation\.fingerprint /);
  });
});

describe('purgeNode', () => {
  it('removes every row for the node except its events, and leaves other nodes alone', async () => {
    for (const n of ['gone-1', 'kept-1']) {
      await ledger.upsertNode(n, 'lab', 'ready');
      await ledger.claimNodeDir(n, 'local:vm', `/var/lib/nb/${n}`);
      await ledger.claimInterface(n, 'netns:vm:lab-n1', `nb${n.replace('-', '')}`);
      await ledger.allocateAddress(n, '10.60.0.0/24');
      await ledger.recordPeer({
        nodeId: n,
        hubName: 'hub-a',
        nodePublicKey: KEY_A,
        hubPublicKey: KEY_B,
        endpoint: '192.0.2.1:51820',
      });
      await ledger.recordEntry({
        entryId: `entry-${n}`,
        nodeId: n,
        workload: 'api',
        spiffeId: 'spiffe://example.org/api',
        parentId: `spiffe://example.org/node/${n}`,
        createdByRun: 'run-1',
      });
      await ledger.recordWorkload({
        nodeId: n,
        name: 'api',
        spiffeId: 'spiffe://example.org/api',
        pid: 100,
        svidSerial: '01',
        svidNotAfter: new Date(),
      });
      await ledger.appendEvent({ nodeId: n, run, step: 'workflow', kind: 'succeeded' });
      await ledger.recordOverlayDevice({
        nodeId: n,
        driver: 'bowtie',
        deviceId: `dev-${n}`,
        publicKey: KEY_A,
        controllerUrl: 'https://ctl.example.org',
      });
      await ledger.recordKeyRotation({ nodeId: n, publicKey: KEY_B, fingerprint: keyFingerprint(KEY_B) });
    }
    const purged = await ledger.purgeNode('gone-1');
    expect(purged).toEqual({
      nodes: 1,
      overlayAllocations: 1,
      overlayDevices: 1,
      overlayKeys: 1,
      peers: 1,
      registrationEntries: 1,
      workloads: 1,
      nodeDirs: 1,
      interfaces: 1,
    });
    expect(await ledger.purgeNode('gone-1')).toEqual({
      nodes: 0,
      overlayAllocations: 0,
      overlayDevices: 0,
      overlayKeys: 0,
      peers: 0,
      registrationEntries: 0,
      workloads: 0,
      nodeDirs: 0,
      interfaces: 0,
    });
    // A purged node's directory and interface names are free again; the kept node keeps its own.
    expect(await ledger.nodeDirHolder('local:vm', '/var/lib/nb/gone-1')).toBeNull();
    expect(await ledger.interfaceHolder('netns:vm:lab-n1', 'nbgone1')).toBeNull();
    expect(await ledger.nodeDirHolder('local:vm', '/var/lib/nb/kept-1')).toBe('kept-1');

    expect(await ledger.getNode('gone-1')).toBeNull();
    expect(await ledger.listAllocations('gone-1')).toEqual([]);
    expect(await ledger.listPeers('gone-1')).toEqual([]);
    expect(await ledger.listEntries('gone-1')).toEqual([]);
    expect(await ledger.listWorkloads('gone-1')).toEqual([]);
    expect(await ledger.getOverlayDevice('gone-1')).toBeNull();
    expect(await ledger.getOverlayDevice('kept-1')).toMatchObject({ deviceId: 'dev-kept-1' });
    expect(await ledger.listEvents('gone-1')).toHaveLength(1);

    expect(await ledger.getNode('kept-1')).not.toBeNull();
    expect(await ledger.listAllocations('kept-1')).toHaveLength(1);
    expect(await ledger.listPeers('kept-1')).toHaveLength(1);
  });
});

describe('connection failures', () => {
  it('an unreachable database is LedgerUnavailable naming the host, without the password', async () => {
    const e = await caught(
      Ledger.connect('postgres://nodeboot:s3cr3t-Pa55@127.0.0.1:1/inventory', { connectTimeoutMs: 2000 }),
    );
    expect(e.type).toBe('LedgerUnavailable');
    expect(e.message).toContain('127.0.0.1:1/inventory');
    expect(e.message).not.toContain('s3cr3t');
    expect(e.message).not.toContain('Pa55');
    expect(JSON.stringify(e)).not.toContain('s3cr3t');
  });

  it('an unknown host name is LedgerUnavailable too', async () => {
    const e = await caught(
      Ledger.connect('postgresql://u:topsecret@nb-no-such-host.invalid:5432/x', { connectTimeoutMs: 2000 }),
    );
    expect(e.type).toBe('LedgerUnavailable');
    expect(e.message).toContain('nb-no-such-host.invalid');
    expect(e.message).not.toContain('topsecret');
  });

  it('a malformed URL is InvalidInput and is not echoed', async () => {
    for (const bad of ['not a url hunter2', 'mysql://u:hunter2@h/db', '']) {
      const e = await caught(Ledger.connect(bad));
      expect(e.type).toBe('InvalidInput');
      expect(e.message).toMatch(/^databaseUrl /);
      expect(e.message).not.toContain('hunter2');
    }
  });

  it('a closed ledger reports LedgerUnavailable', async () => {
    const l = await Ledger.connect(dbUrl, { max: 1 });
    await l.close();
    await l.close(); // idempotent
    expect((await caught(l.getNode('node-a'))).type).toBe('LedgerUnavailable');
  });
});
