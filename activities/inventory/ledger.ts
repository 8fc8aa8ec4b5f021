/**
 * The inventory ledger: what node-bootstrap knows about every node, in PostgreSQL.
 *
 * Nodes and their state, overlay IPAM, hub peerings, SPIRE registration entries,
 * running workloads, and an append-only event log. Every write is idempotent so
 * an activity retry, a worker crash or a rerun can repeat it safely:
 *   - upserts key on the natural key (node, hub, entry id, workload name);
 *   - allocateAddress returns the node's existing address before allocating;
 *   - removals report what they removed and are no-ops the second time;
 *   - appendEvent dedupes on an idempotency key (derived from the event when the
 *     caller gives none), so a retried append adds nothing.
 *
 * Failures are LedgerErrors typed LedgerUnavailable (transient), PoolExhausted
 * (permanent) or InvalidInput (permanent); messages name the host, never the password.
 * Returned records are plain JSON (timestamps as ISO strings) so activities can
 * hand them to workflows as they are.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { z } from 'zod';
import { redactSecrets } from '../../common/errors.js';
import { IfName, Ipv4Endpoint, NodeId, SafePath, SpiffeId, WgPublicKey } from '../../common/names.js';
import { STEPS } from '../../common/steps.js';
import type { LedgerEvent, LedgerEventKind } from '../types.js';
import { LedgerError, isUnavailable, pgCode, unavailable } from './errors.js';
import { Ipv4Error, lowestFreeHost, parseCidr, parseIpv4, type Ipv4Network } from './ipv4.js';
import { applyMigrations, type MigrationResult } from './migrations.js';

export const NODE_STATES = [
  'provisioning',
  'ready',
  'failed',
  'held',
  'compensating',
  'compensated',
  'cancelled',
  'decommissioning',
  'decommissioned',
] as const;
export type NodeState = (typeof NODE_STATES)[number];

export interface NodeRecord {
  nodeId: string;
  segment: string;
  state: NodeState;
  inputHash: string | null;
  inputSummary: Record<string, unknown> | null;
  createdAt: string;
  updatedAt: string;
}

export interface Allocation {
  nodeId: string;
  /** Canonical CIDR ("10.200.0.0/16"). */
  cidr: string;
  ip: string;
  prefixLength: number;
  /** False when the node already held this address (a retry or rerun). */
  created: boolean;
}

export interface PeerInput {
  nodeId: string;
  hubName: string;
  nodePublicKey: string;
  hubPublicKey: string;
  /** The hub's underlay endpoint the node dials, "ip:port". */
  endpoint: string;
}
export interface PeerRecord extends PeerInput {
  createdAt: string;
  updatedAt: string;
}

export interface EntryInput {
  entryId: string;
  nodeId: string;
  workload: string;
  spiffeId: string;
  parentId: string;
  /** The run that created the entry in SPIRE (undo deletes only its own). First writer wins. */
  createdByRun: string;
}
export interface EntryRecord extends EntryInput {
  createdAt: string;
}

export interface WorkloadInput {
  nodeId: string;
  name: string;
  spiffeId: string;
  pid: number;
  svidSerial: string;
  svidNotAfter: string | Date;
}
export interface WorkloadRecord extends Omit<WorkloadInput, 'svidNotAfter'> {
  svidNotAfter: string;
  createdAt: string;
  updatedAt: string;
}

export type AppendEventInput = LedgerEvent & {
  /** Dedupe key. Default: a digest of the whole event, so an identical retried append is a no-op. */
  idempotencyKey?: string;
};

export interface EventRecord {
  id: number;
  nodeId: string;
  workflowId: string;
  runId: string;
  step: LedgerEvent['step'];
  kind: LedgerEventKind;
  attempt: number | null;
  errorType: string | null;
  detail: Record<string, unknown>;
  at: string;
  idempotencyKey: string;
}

export interface OverlayDevice {
  nodeId: string;
  driver: 'bowtie';
  deviceId: string;
  publicKey: string;
  controllerUrl: string;
}

export interface PurgeResult {
  nodes: number;
  overlayAllocations: number;
  overlayDevices: number;
  peers: number;
  registrationEntries: number;
  workloads: number;
  nodeDirs: number;
  interfaces: number;
}

export interface LedgerOptions {
  /** How errors name the database ("db.internal:5432/nodeboot"). Default: derived from the pool's config. */
  target?: string;
  /** Strings to scrub from any error text (the password). */
  secrets?: string[];
}

export interface ConnectOptions {
  /** Pool size (default 10). */
  max?: number;
  /** Give up connecting after this long (default 5 s). */
  connectTimeoutMs?: number;
  /** Run migrate() once connected (what the worker does at start). */
  migrate?: boolean;
}

// ---------------------------------------------------------------------------
// Validation (the ledger is a boundary: activities, CLI and lab all write to it)

const Label = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, 'must be lowercase letters, digits and inner hyphens only');
const Opaque = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z0-9._:/@=+-]+$/, 'must be letters, digits and "._:/@=+-" only');
const Json = z.record(z.string(), z.unknown());
const MAX_DETAIL_BYTES = 64 * 1024;

const PeerSchema = z.object({
  nodeId: NodeId,
  hubName: Label,
  nodePublicKey: WgPublicKey,
  hubPublicKey: WgPublicKey,
  endpoint: Ipv4Endpoint,
});
const OverlayDeviceSchema = z.object({
  nodeId: NodeId,
  driver: z.literal('bowtie'),
  deviceId: Opaque,
  publicKey: WgPublicKey,
  controllerUrl: z.string().min(1).max(2048),
});
const EntrySchema = z.object({
  entryId: Opaque,
  nodeId: NodeId,
  workload: Label,
  spiffeId: SpiffeId,
  parentId: SpiffeId,
  createdByRun: Opaque,
});
const WorkloadSchema = z.object({
  nodeId: NodeId,
  name: Label,
  spiffeId: SpiffeId,
  pid: z.number().int().min(1).max(2 ** 31 - 1),
  svidSerial: z.string().min(1).max(128).regex(/^[A-Za-z0-9:]+$/, 'must be a hex or decimal serial'),
  svidNotAfter: z.union([z.date(), z.iso.datetime({ offset: true })]),
});
const EventSchema = z.object({
  nodeId: NodeId,
  run: z.object({ workflowId: z.string().min(1).max(1000), runId: z.string().min(1).max(256) }),
  step: z.enum([...STEPS, 'workflow']),
  kind: z.enum(['started', 'succeeded', 'failed', 'compensated', 'compensation_failed', 'held', 'decision', 'checked'] satisfies LedgerEventKind[]),
  attempt: z.number().int().min(0).max(1_000_000).optional(),
  errorType: z.string().min(1).max(128).optional(),
  detail: Json.optional(),
  idempotencyKey: z.string().min(1).max(512).optional(),
});

function check<T>(schema: z.ZodType<T>, field: string, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue?.path.length ? `${field}.${issue.path.join('.')}` : field;
  throw new LedgerError('InvalidInput', `${where} ${issue?.message ?? 'is invalid'}`);
}

function cidrOf(text: string): Ipv4Network {
  try {
    return parseCidr(text);
  } catch (err) {
    throw new LedgerError('InvalidInput', `cidr: ${err instanceof Error ? err.message : String(err)}`);
  }
}

const DatabaseUrl = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    // Never echo the value: it may hold a password.
    ctx.addIssue({ code: 'custom', message: 'must be a URL such as postgres://user@host:5432/db' });
    return;
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    ctx.addIssue({ code: 'custom', message: `must use the postgres:// or postgresql:// scheme (got "${url.protocol}")` });
  }
  if (!url.hostname && !url.searchParams.get('host')) {
    ctx.addIssue({ code: 'custom', message: 'must name a host' });
  }
});

/** "host:port/db" for a URL, without credentials. */
export function describeDatabaseUrl(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    const host = url.hostname || url.searchParams.get('host') || 'localhost';
    const db = decodeURIComponent(url.pathname.replace(/^\//, '')) || url.username || 'postgres';
    return `${host}:${url.port || '5432'}/${db}`;
  } catch {
    return '(invalid database URL)';
  }
}

function describePool(pool: Pool): string {
  const o = pool.options as { connectionString?: string; host?: string; port?: number; database?: string } | undefined;
  if (o?.connectionString) return describeDatabaseUrl(o.connectionString);
  return `${o?.host ?? process.env.PGHOST ?? 'localhost'}:${o?.port ?? process.env.PGPORT ?? 5432}/${o?.database ?? process.env.PGDATABASE ?? 'postgres'}`;
}

// ---------------------------------------------------------------------------

/** Namespace for per-CIDR allocation locks (pg_advisory_xact_lock(ns, hashtext(cidr))): "nbal". */
const ALLOC_LOCK_NS = 0x6e62616c;
/** Contention SQLSTATEs worth retrying a whole transaction for. */
const RETRYABLE = new Set(['40001', '40P01']);
const UNIQUE_VIOLATION = '23505';
const TX_ATTEMPTS = 5;

const iso = (d: Date | string): string => (d instanceof Date ? d.toISOString() : new Date(d).toISOString());

export class Ledger {
  readonly target: string;
  private readonly secrets: string[];
  private closed = false;

  constructor(
    private readonly pool: Pool,
    opts: LedgerOptions = {},
  ) {
    this.target = opts.target ?? describePool(pool);
    const o = pool.options as { password?: unknown } | undefined;
    this.secrets = [...(opts.secrets ?? []), ...(typeof o?.password === 'string' ? [o.password] : [])].filter((s) => s.length > 0);
    // An idle client losing its connection emits 'error' on the pool; unhandled, that
    // kills the worker. The next query reports LedgerUnavailable instead.
    if (pool.listenerCount('error') === 0) pool.on('error', () => undefined);
  }

  /**
   * Validate `databaseUrl`, open a pool and check the database answers.
   * Throws LedgerError InvalidInput for a malformed URL and LedgerUnavailable
   * (naming host:port/db, never the password) when it cannot connect.
   */
  static async connect(databaseUrl: string, opts: ConnectOptions = {}): Promise<Ledger> {
    const r = DatabaseUrl.safeParse(databaseUrl);
    if (!r.success) {
      throw new LedgerError('InvalidInput', `databaseUrl ${r.error.issues[0]?.message ?? 'is invalid'}`);
    }
    const url = new URL(databaseUrl);
    const secrets = [url.password, safeDecode(url.password)].filter((s) => s.length > 0);
    const pool = new pg.Pool({
      connectionString: databaseUrl,
      max: opts.max ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
      application_name: 'node-bootstrap',
    });
    const ledger = new Ledger(pool, { target: describeDatabaseUrl(databaseUrl), secrets });
    try {
      await ledger.ping();
      if (opts.migrate) await ledger.migrate();
    } catch (err) {
      await ledger.close().catch(() => undefined);
      throw err;
    }
    return ledger;
  }

  /** Round trip to the database; LedgerUnavailable when it does not answer. */
  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  /** Apply pending schema migrations (serialized across workers by an advisory lock). */
  async migrate(): Promise<MigrationResult> {
    const client = await this.connectClient();
    let broken: Error | undefined;
    try {
      return await applyMigrations(client);
    } catch (err) {
      if (isUnavailable(err)) broken = err as Error;
      throw this.wrap(err);
    } finally {
      client.release(broken);
    }
  }

  /** End the pool. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  // --- nodes ---------------------------------------------------------------

  /**
   * Create the node or update its segment and state. The input hash/summary are
   * kept when not given (a state change does not erase what the run was asked).
   */
  async upsertNode(
    nodeId: string,
    segment: string,
    state: NodeState,
    input: { hash?: string; summary?: Record<string, unknown> } = {},
  ): Promise<NodeRecord> {
    const id = check(NodeId, 'nodeId', nodeId);
    const seg = check(Label, 'segment', segment);
    const st = check(z.enum(NODE_STATES), 'state', state);
    const hash = input.hash === undefined ? null : check(z.string().min(1).max(128), 'input.hash', input.hash);
    const summary = input.summary === undefined ? null : check(Json, 'input.summary', input.summary);
    const { rows } = await this.query<NodeRow>(
      `INSERT INTO nodes (node_id, segment, state, input_hash, input_summary)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (node_id) DO UPDATE SET
         segment = EXCLUDED.segment,
         state = EXCLUDED.state,
         input_hash = COALESCE(EXCLUDED.input_hash, nodes.input_hash),
         input_summary = COALESCE(EXCLUDED.input_summary, nodes.input_summary),
         updated_at = CASE
           WHEN (nodes.segment, nodes.state, nodes.input_hash, nodes.input_summary)
                IS NOT DISTINCT FROM
                (EXCLUDED.segment, EXCLUDED.state, COALESCE(EXCLUDED.input_hash, nodes.input_hash),
                 COALESCE(EXCLUDED.input_summary, nodes.input_summary))
           THEN nodes.updated_at ELSE now() END
       RETURNING *`,
      [id, seg, st, hash, summary === null ? null : JSON.stringify(summary)],
    );
    return toNode(rows[0]!);
  }

  /** Set a known node's state; null when the ledger has no such node. */
  async setNodeState(nodeId: string, state: NodeState): Promise<NodeRecord | null> {
    const id = check(NodeId, 'nodeId', nodeId);
    const st = check(z.enum(NODE_STATES), 'state', state);
    const { rows } = await this.query<NodeRow>(
      `UPDATE nodes SET state = $2, updated_at = CASE WHEN state = $2 THEN updated_at ELSE now() END
       WHERE node_id = $1 RETURNING *`,
      [id, st],
    );
    return rows[0] ? toNode(rows[0]) : null;
  }

  async getNode(nodeId: string): Promise<NodeRecord | null> {
    const id = check(NodeId, 'nodeId', nodeId);
    const { rows } = await this.query<NodeRow>('SELECT * FROM nodes WHERE node_id = $1', [id]);
    return rows[0] ? toNode(rows[0]) : null;
  }

  async listNodes(filter: { segment?: string; state?: NodeState } = {}): Promise<NodeRecord[]> {
    const seg = filter.segment === undefined ? null : check(Label, 'segment', filter.segment);
    const st = filter.state === undefined ? null : check(z.enum(NODE_STATES), 'state', filter.state);
    const { rows } = await this.query<NodeRow>(
      `SELECT * FROM nodes WHERE ($1::text IS NULL OR segment = $1) AND ($2::text IS NULL OR state = $2) ORDER BY node_id`,
      [seg, st],
    );
    return rows.map(toNode);
  }

  // --- overlay IPAM --------------------------------------------------------

  /**
   * The node's address in `cidr`: its existing one if it has one, otherwise the
   * lowest free usable host (network, broadcast and `reserved`, e.g. hub IPs,
   * skipped). Allocations in one CIDR are serialized by a transaction-scoped
   * advisory lock on the CIDR, and UNIQUE(cidr, ip) / UNIQUE(cidr, node_id)
   * back it up (a unique violation retries the transaction).
   * Throws PoolExhausted when no address is free.
   */
  async allocateAddress(nodeId: string, cidr: string, opts: { reserved?: readonly string[] } = {}): Promise<Allocation> {
    const id = check(NodeId, 'nodeId', nodeId);
    const net = cidrOf(cidr);
    const reserved = (opts.reserved ?? []).map((ip, i) => {
      try {
        return parseIpv4(ip);
      } catch (err) {
        throw new LedgerError('InvalidInput', `reserved.${i}: ${err instanceof Ipv4Error ? err.message : 'is not an IPv4 address'}`);
      }
    });
    const result = (ip: string, created: boolean): Allocation => ({ nodeId: id, cidr: net.cidr, ip, prefixLength: net.prefixLength, created });

    // Fast path, no lock: a retry or rerun finds its address.
    const existing = await this.getAllocation(id, net.cidr);
    if (existing) return result(existing, false);

    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [ALLOC_LOCK_NS, net.cidr]);
      const mine = await c.query<{ ip: string }>('SELECT host(ip) AS ip FROM overlay_allocations WHERE cidr = $1 AND node_id = $2', [
        net.cidr,
        id,
      ]);
      if (mine.rows[0]) return result(mine.rows[0].ip, false);
      const taken = await c.query<{ ip: string }>('SELECT host(ip) AS ip FROM overlay_allocations WHERE cidr = $1', [net.cidr]);
      const ip = lowestFreeHost(net, [...taken.rows.map((r) => r.ip), ...reserved]);
      if (ip === null) {
        const reservedInside = new Set(reserved.filter((a) => a >= net.firstHost && a <= net.lastHost)).size;
        throw new LedgerError(
          'PoolExhausted',
          `overlay pool ${net.cidr} has no free address for node ${id}: ${net.hostCount} usable, ${taken.rowCount ?? 0} allocated, ${reservedInside} reserved`,
        );
      }
      await c.query('INSERT INTO overlay_allocations (cidr, ip, node_id) VALUES ($1, $2, $3)', [net.cidr, ip, id]);
      return result(ip, true);
    }, [UNIQUE_VIOLATION]);
  }

  /**
   * Record an address the overlay itself assigned (a Bowtie controller): the
   * node's entry in `cidr` becomes exactly `ip`. Another node holding `ip`
   * is an AddressConflict, and nothing changes.
   */
  async claimAddress(nodeId: string, cidr: string, ip: string): Promise<Allocation> {
    const id = check(NodeId, 'nodeId', nodeId);
    const net = cidrOf(cidr);
    let addr: number;
    try {
      addr = parseIpv4(ip);
    } catch (err) {
      throw new LedgerError('InvalidInput', `ip: ${err instanceof Ipv4Error ? err.message : 'is not an IPv4 address'}`);
    }
    if (addr < net.firstHost || addr > net.lastHost) throw new LedgerError('InvalidInput', `ip: ${ip} is not a host address in ${net.cidr}`);
    const result = (created: boolean): Allocation => ({ nodeId: id, cidr: net.cidr, ip, prefixLength: net.prefixLength, created });
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [ALLOC_LOCK_NS, net.cidr]);
      const holder = await c.query<{ node_id: string }>('SELECT node_id FROM overlay_allocations WHERE cidr = $1 AND ip = $2', [net.cidr, ip]);
      if (holder.rows[0]?.node_id === id) return result(false);
      if (holder.rows[0]) throw new LedgerError('AddressConflict', `overlay address ${ip} in ${net.cidr} is already held by node ${holder.rows[0].node_id}`);
      await c.query('DELETE FROM overlay_allocations WHERE cidr = $1 AND node_id = $2', [net.cidr, id]);
      await c.query('INSERT INTO overlay_allocations (cidr, ip, node_id) VALUES ($1, $2, $3)', [net.cidr, ip, id]);
      return result(true);
    }, [UNIQUE_VIOLATION]);
  }

  /** The node's address in `cidr`, or null. */
  async getAllocation(nodeId: string, cidr: string): Promise<string | null> {
    const id = check(NodeId, 'nodeId', nodeId);
    const net = cidrOf(cidr);
    const { rows } = await this.query<{ ip: string }>('SELECT host(ip) AS ip FROM overlay_allocations WHERE cidr = $1 AND node_id = $2', [
      net.cidr,
      id,
    ]);
    return rows[0]?.ip ?? null;
  }

  /** Every address the node holds, in any CIDR. */
  async listAllocations(nodeId: string): Promise<Omit<Allocation, 'created'>[]> {
    const id = check(NodeId, 'nodeId', nodeId);
    const { rows } = await this.query<{ cidr: string; ip: string; prefix_length: number }>(
      `SELECT cidr::text AS cidr, host(ip) AS ip, masklen(cidr) AS prefix_length
       FROM overlay_allocations WHERE node_id = $1 ORDER BY cidr, ip`,
      [id],
    );
    return rows.map((r) => ({ nodeId: id, cidr: r.cidr, ip: r.ip, prefixLength: r.prefix_length }));
  }

  /** Free the node's address in `cidr`. Returns the released address, or null if it held none. */
  async releaseAddress(nodeId: string, cidr: string): Promise<string | null> {
    const id = check(NodeId, 'nodeId', nodeId);
    const net = cidrOf(cidr);
    const { rows } = await this.query<{ ip: string }>(
      'DELETE FROM overlay_allocations WHERE cidr = $1 AND node_id = $2 RETURNING host(ip) AS ip',
      [net.cidr, id],
    );
    return rows[0]?.ip ?? null;
  }

  // --- peers ---------------------------------------------------------------

  /** Record (or refresh) the node <-> hub peering. */
  async recordPeer(peer: PeerInput): Promise<PeerRecord> {
    const p = check(PeerSchema, 'peer', peer);
    const { rows } = await this.query<PeerRow>(
      `INSERT INTO peers (node_id, hub_name, node_public_key, hub_public_key, endpoint)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (node_id, hub_name) DO UPDATE SET
         node_public_key = EXCLUDED.node_public_key,
         hub_public_key = EXCLUDED.hub_public_key,
         endpoint = EXCLUDED.endpoint,
         updated_at = CASE
           WHEN (peers.node_public_key, peers.hub_public_key, peers.endpoint)
                = (EXCLUDED.node_public_key, EXCLUDED.hub_public_key, EXCLUDED.endpoint)
           THEN peers.updated_at ELSE now() END
       RETURNING *`,
      [p.nodeId, p.hubName, p.nodePublicKey, p.hubPublicKey, p.endpoint],
    );
    return toPeer(rows[0]!);
  }

  async listPeers(nodeId: string): Promise<PeerRecord[]> {
    const id = check(NodeId, 'nodeId', nodeId);
    const { rows } = await this.query<PeerRow>('SELECT * FROM peers WHERE node_id = $1 ORDER BY hub_name', [id]);
    return rows.map(toPeer);
  }

  /** Remove the node's peerings (all, or one hub's). Returns how many rows went. */
  async removePeers(nodeId: string, hubName?: string): Promise<number> {
    const id = check(NodeId, 'nodeId', nodeId);
    const hub = hubName === undefined ? null : check(Label, 'hubName', hubName);
    const r = await this.query('DELETE FROM peers WHERE node_id = $1 AND ($2::text IS NULL OR hub_name = $2)', [id, hub]);
    return r.rowCount ?? 0;
  }

  // --- overlay devices (managed overlays) ------------------------------------

  /** Record (or replace) the node's device on a managed overlay. */
  async recordOverlayDevice(device: OverlayDevice): Promise<OverlayDevice> {
    const d = check(OverlayDeviceSchema, 'device', device);
    await this.query(
      `INSERT INTO overlay_devices (node_id, driver, device_id, public_key, controller_url) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (node_id) DO UPDATE SET driver = EXCLUDED.driver, device_id = EXCLUDED.device_id,
         public_key = EXCLUDED.public_key, controller_url = EXCLUDED.controller_url, recorded_at = now()`,
      [d.nodeId, d.driver, d.deviceId, d.publicKey, d.controllerUrl],
    );
    return d;
  }

  async getOverlayDevice(nodeId: string): Promise<OverlayDevice | null> {
    const id = check(NodeId, 'nodeId', nodeId);
    const { rows } = await this.query<{ driver: 'bowtie'; device_id: string; public_key: string; controller_url: string }>(
      'SELECT driver, device_id, public_key, controller_url FROM overlay_devices WHERE node_id = $1',
      [id],
    );
    const r = rows[0];
    return r ? { nodeId: id, driver: r.driver, deviceId: r.device_id, publicKey: r.public_key, controllerUrl: r.controller_url } : null;
  }

  async removeOverlayDevice(nodeId: string): Promise<boolean> {
    const id = check(NodeId, 'nodeId', nodeId);
    return ((await this.query('DELETE FROM overlay_devices WHERE node_id = $1', [id])).rowCount ?? 0) > 0;
  }

  // --- ownership: node directories and interfaces ----------------------------

  /**
   * Claim `nodeDir` on the filesystem `fsKey` for the node. Idempotent; a node
   * that names another directory moves its claim there. A directory another node
   * holds is an OwnershipConflict, and nothing changes.
   */
  async claimNodeDir(nodeId: string, fsKey: string, nodeDir: string): Promise<{ created: boolean }> {
    const id = check(NodeId, 'nodeId', nodeId);
    const fs = check(Opaque, 'fsKey', fsKey);
    const dir = check(SafePath, 'nodeDir', nodeDir);
    return this.tx(async (c) => {
      const held = await c.query<{ node_id: string }>('SELECT node_id FROM node_dirs WHERE fs_key = $1 AND node_dir = $2', [fs, dir]);
      if (held.rows[0]?.node_id === id) return { created: false };
      if (held.rows[0]) throw new LedgerError('OwnershipConflict', `nodeDir ${dir} on ${fs} belongs to node ${held.rows[0].node_id}`);
      await c.query(
        `INSERT INTO node_dirs (node_id, fs_key, node_dir) VALUES ($1, $2, $3)
         ON CONFLICT (node_id) DO UPDATE SET fs_key = EXCLUDED.fs_key, node_dir = EXCLUDED.node_dir, claimed_at = now()`,
        [id, fs, dir],
      );
      return { created: true };
    }, [UNIQUE_VIOLATION]);
  }

  /** The node holding `nodeDir` on `fsKey`, or null. */
  async nodeDirHolder(fsKey: string, nodeDir: string): Promise<string | null> {
    const fs = check(Opaque, 'fsKey', fsKey);
    const dir = check(SafePath, 'nodeDir', nodeDir);
    const { rows } = await this.query<{ node_id: string }>('SELECT node_id FROM node_dirs WHERE fs_key = $1 AND node_dir = $2', [fs, dir]);
    return rows[0]?.node_id ?? null;
  }

  /** Give up the node's directory claim. True when it held one. */
  async releaseNodeDir(nodeId: string): Promise<boolean> {
    const id = check(NodeId, 'nodeId', nodeId);
    return ((await this.query('DELETE FROM node_dirs WHERE node_id = $1', [id])).rowCount ?? 0) > 0;
  }

  /**
   * Record that the node's run creates (or created) interface `ifname` on the
   * network stack `hostKey`. Idempotent. One held by another node is an
   * OwnershipConflict, and nothing changes.
   */
  async claimInterface(nodeId: string, hostKey: string, ifname: string): Promise<{ created: boolean }> {
    const id = check(NodeId, 'nodeId', nodeId);
    const host = check(Opaque, 'hostKey', hostKey);
    const name = check(IfName, 'ifname', ifname);
    const ins = await this.query(
      'INSERT INTO node_interfaces (host_key, ifname, node_id) VALUES ($1, $2, $3) ON CONFLICT (host_key, ifname) DO NOTHING',
      [host, name, id],
    );
    if ((ins.rowCount ?? 0) > 0) return { created: true };
    const holder = await this.interfaceHolder(host, name);
    if (holder !== id) throw new LedgerError('OwnershipConflict', `interface ${name} on ${host} belongs to node ${holder ?? '(released meanwhile)'}`);
    return { created: false };
  }

  /** The node that created `ifname` on `hostKey`, or null. */
  async interfaceHolder(hostKey: string, ifname: string): Promise<string | null> {
    const host = check(Opaque, 'hostKey', hostKey);
    const name = check(IfName, 'ifname', ifname);
    const { rows } = await this.query<{ node_id: string }>('SELECT node_id FROM node_interfaces WHERE host_key = $1 AND ifname = $2', [host, name]);
    return rows[0]?.node_id ?? null;
  }

  /** Forget the node's record of `ifname` on `hostKey`. True when it was there. */
  async releaseInterface(nodeId: string, hostKey: string, ifname: string): Promise<boolean> {
    const id = check(NodeId, 'nodeId', nodeId);
    const host = check(Opaque, 'hostKey', hostKey);
    const name = check(IfName, 'ifname', ifname);
    const r = await this.query('DELETE FROM node_interfaces WHERE node_id = $1 AND host_key = $2 AND ifname = $3', [id, host, name]);
    return (r.rowCount ?? 0) > 0;
  }

  // --- registration entries ------------------------------------------------

  /** Record a SPIRE entry. Re-recording keeps the original created_by_run. */
  async recordEntry(entry: EntryInput): Promise<EntryRecord> {
    const e = check(EntrySchema, 'entry', entry);
    const { rows } = await this.query<EntryRow>(
      `INSERT INTO registration_entries (entry_id, node_id, workload, spiffe_id, parent_id, created_by_run)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (entry_id) DO UPDATE SET
         node_id = EXCLUDED.node_id,
         workload = EXCLUDED.workload,
         spiffe_id = EXCLUDED.spiffe_id,
         parent_id = EXCLUDED.parent_id
       RETURNING *`,
      [e.entryId, e.nodeId, e.workload, e.spiffeId, e.parentId, e.createdByRun],
    );
    return toEntry(rows[0]!);
  }

  /** The node's entries, optionally only those a given run created. */
  async listEntries(nodeId: string, filter: { createdByRun?: string } = {}): Promise<EntryRecord[]> {
    const id = check(NodeId, 'nodeId', nodeId);
    const run = filter.createdByRun === undefined ? null : check(Opaque, 'createdByRun', filter.createdByRun);
    const { rows } = await this.query<EntryRow>(
      `SELECT * FROM registration_entries WHERE node_id = $1 AND ($2::text IS NULL OR created_by_run = $2)
       ORDER BY workload, entry_id`,
      [id, run],
    );
    return rows.map(toEntry);
  }

  /** Forget an entry. True when it was there. */
  async removeEntry(entryId: string): Promise<boolean> {
    const eid = check(Opaque, 'entryId', entryId);
    const r = await this.query('DELETE FROM registration_entries WHERE entry_id = $1', [eid]);
    return (r.rowCount ?? 0) > 0;
  }

  // --- workloads -----------------------------------------------------------

  /** Record (or refresh) a running workload and its current SVID. */
  async recordWorkload(workload: WorkloadInput): Promise<WorkloadRecord> {
    const w = check(WorkloadSchema, 'workload', workload);
    const { rows } = await this.query<WorkloadRow>(
      `INSERT INTO workloads (node_id, name, spiffe_id, pid, svid_serial, svid_not_after)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (node_id, name) DO UPDATE SET
         spiffe_id = EXCLUDED.spiffe_id,
         pid = EXCLUDED.pid,
         svid_serial = EXCLUDED.svid_serial,
         svid_not_after = EXCLUDED.svid_not_after,
         updated_at = CASE
           WHEN (workloads.spiffe_id, workloads.pid, workloads.svid_serial, workloads.svid_not_after)
                = (EXCLUDED.spiffe_id, EXCLUDED.pid, EXCLUDED.svid_serial, EXCLUDED.svid_not_after)
           THEN workloads.updated_at ELSE now() END
       RETURNING *`,
      [w.nodeId, w.name, w.spiffeId, w.pid, w.svidSerial, iso(w.svidNotAfter)],
    );
    return toWorkload(rows[0]!);
  }

  async listWorkloads(nodeId: string): Promise<WorkloadRecord[]> {
    const id = check(NodeId, 'nodeId', nodeId);
    const { rows } = await this.query<WorkloadRow>('SELECT * FROM workloads WHERE node_id = $1 ORDER BY name', [id]);
    return rows.map(toWorkload);
  }

  /** Forget the node's workloads (all, or the named ones). Returns how many rows went. */
  async removeWorkloads(nodeId: string, names?: readonly string[]): Promise<number> {
    const id = check(NodeId, 'nodeId', nodeId);
    const only = names === undefined ? null : check(z.array(Label), 'names', names);
    const r = await this.query('DELETE FROM workloads WHERE node_id = $1 AND ($2::text[] IS NULL OR name = ANY($2))', [id, only]);
    return r.rowCount ?? 0;
  }

  // --- events --------------------------------------------------------------

  /**
   * Append to the event log. A second append with the same idempotency key
   * (by default: the same event) changes nothing and returns the first row's id.
   * String values in `detail` pass through redactSecrets.
   */
  async appendEvent(event: AppendEventInput): Promise<{ id: number; appended: boolean }> {
    const e = check(EventSchema, 'event', event);
    const detail = redactDeep(e.detail ?? {}) as Record<string, unknown>;
    const detailJson = JSON.stringify(detail);
    if (Buffer.byteLength(detailJson) > MAX_DETAIL_BYTES) {
      throw new LedgerError('InvalidInput', `event.detail is larger than ${MAX_DETAIL_BYTES} bytes`);
    }
    const key =
      e.idempotencyKey ??
      'sha256:' +
        createHash('sha256')
          .update(canonicalJson([e.nodeId, e.run.workflowId, e.run.runId, e.step, e.kind, e.attempt ?? null, e.errorType ?? null, detail]))
          .digest('hex');
    const ins = await this.query<{ id: string }>(
      `INSERT INTO events (node_id, workflow_id, run_id, step, kind, attempt, error_type, detail, idempotency_key)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (idempotency_key) DO NOTHING
       RETURNING id`,
      [e.nodeId, e.run.workflowId, e.run.runId, e.step, e.kind, e.attempt ?? null, e.errorType ?? null, detailJson, key],
    );
    if (ins.rows[0]) return { id: Number(ins.rows[0].id), appended: true };
    const prior = await this.query<{ id: string }>('SELECT id FROM events WHERE idempotency_key = $1', [key]);
    return { id: Number(prior.rows[0]!.id), appended: false };
  }

  /** The node's events, oldest first. */
  async listEvents(nodeId: string, filter: { runId?: string; afterId?: number; limit?: number } = {}): Promise<EventRecord[]> {
    const id = check(NodeId, 'nodeId', nodeId);
    const limit = check(z.number().int().min(1).max(10_000), 'limit', filter.limit ?? 1000);
    const after = check(z.number().int().min(0), 'afterId', filter.afterId ?? 0);
    const { rows } = await this.query<EventRow>(
      `SELECT * FROM events WHERE node_id = $1 AND id > $2 AND ($3::text IS NULL OR run_id = $3)
       ORDER BY id LIMIT $4`,
      [id, after, filter.runId ?? null, limit],
    );
    return rows.map(toEvent);
  }

  // --- lifecycle -----------------------------------------------------------

  /** Remove every row about the node except its events (the audit trail stays), in one transaction. */
  async purgeNode(nodeId: string): Promise<PurgeResult> {
    const id = check(NodeId, 'nodeId', nodeId);
    return this.tx(async (c) => {
      const del = async (table: string) => (await c.query(`DELETE FROM ${table} WHERE node_id = $1`, [id])).rowCount ?? 0;
      return {
        overlayAllocations: await del('overlay_allocations'),
        overlayDevices: await del('overlay_devices'),
        peers: await del('peers'),
        registrationEntries: await del('registration_entries'),
        workloads: await del('workloads'),
        nodeDirs: await del('node_dirs'),
        interfaces: await del('node_interfaces'),
        nodes: await del('nodes'),
      };
    });
  }

  // --- plumbing ------------------------------------------------------------

  private async query<R extends QueryResultRow = QueryResultRow>(sql: string, params: unknown[] = []) {
    try {
      return await this.pool.query<R>(sql, params);
    } catch (err) {
      throw this.wrap(err);
    }
  }

  private async connectClient(): Promise<PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw this.wrap(err);
    }
  }

  /** Run `fn` in a transaction, retrying on contention (and on the extra SQLSTATEs given). */
  private async tx<T>(fn: (c: PoolClient) => Promise<T>, alsoRetryOn: readonly string[] = []): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.connectClient();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        if (isUnavailable(err)) broken = err as Error;
        else await client.query('ROLLBACK').catch((e: unknown) => (broken = e instanceof Error ? e : new Error(String(e))));
        const code = pgCode(err);
        if (!broken && code && attempt < TX_ATTEMPTS && (RETRYABLE.has(code) || alsoRetryOn.includes(code))) {
          await new Promise((r) => setTimeout(r, 5 * attempt * Math.random()));
          continue;
        }
        throw this.wrap(err);
      } finally {
        client.release(broken);
      }
    }
  }

  private wrap(err: unknown): unknown {
    if (err instanceof LedgerError) return err;
    if (this.closed || isUnavailable(err)) return unavailable(this.target, err, this.secrets);
    return err;
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** JSON with object keys sorted, so equal values digest equally. */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`)
    .join(',')}}`;
}

function redactDeep(value: unknown): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  if (Array.isArray(value)) return value.map(redactDeep);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v)]));
  }
  return value;
}

// --- row mapping -------------------------------------------------------------

interface NodeRow {
  node_id: string;
  segment: string;
  state: NodeState;
  input_hash: string | null;
  input_summary: Record<string, unknown> | null;
  created_at: Date;
  updated_at: Date;
}
const toNode = (r: NodeRow): NodeRecord => ({
  nodeId: r.node_id,
  segment: r.segment,
  state: r.state,
  inputHash: r.input_hash,
  inputSummary: r.input_summary,
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
});

interface PeerRow {
  node_id: string;
  hub_name: string;
  node_public_key: string;
  hub_public_key: string;
  endpoint: string;
  created_at: Date;
  updated_at: Date;
}
const toPeer = (r: PeerRow): PeerRecord => ({
  nodeId: r.node_id,
  hubName: r.hub_name,
  nodePublicKey: r.node_public_key,
  hubPublicKey: r.hub_public_key,
  endpoint: r.endpoint,
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
});

interface EntryRow {
  entry_id: string;
  node_id: string;
  workload: string;
  spiffe_id: string;
  parent_id: string;
  created_by_run: string;
  created_at: Date;
}
const toEntry = (r: EntryRow): EntryRecord => ({
  entryId: r.entry_id,
  nodeId: r.node_id,
  workload: r.workload,
  spiffeId: r.spiffe_id,
  parentId: r.parent_id,
  createdByRun: r.created_by_run,
  createdAt: iso(r.created_at),
});

interface WorkloadRow {
  node_id: string;
  name: string;
  spiffe_id: string;
  pid: number;
  svid_serial: string;
  svid_not_after: Date;
  created_at: Date;
  updated_at: Date;
}
const toWorkload = (r: WorkloadRow): WorkloadRecord => ({
  nodeId: r.node_id,
  name: r.name,
  spiffeId: r.spiffe_id,
  pid: r.pid,
  svidSerial: r.svid_serial,
  svidNotAfter: iso(r.svid_not_after),
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
});

interface EventRow {
  id: string;
  node_id: string;
  workflow_id: string;
  run_id: string;
  step: LedgerEvent['step'];
  kind: LedgerEventKind;
  attempt: number | null;
  error_type: string | null;
  detail: Record<string, unknown>;
  at: Date;
  idempotency_key: string;
}
const toEvent = (r: EventRow): EventRecord => ({
  id: Number(r.id),
  nodeId: r.node_id,
  workflowId: r.workflow_id,
  runId: r.run_id,
  step: r.step,
  kind: r.kind,
  attempt: r.attempt,
  errorType: r.error_type,
  detail: r.detail,
  at: iso(r.at),
  idempotencyKey: r.idempotency_key,
});
