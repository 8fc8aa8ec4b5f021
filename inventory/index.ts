/**
 * The inventory ledger: what node-bootstrap knows about every node, in PostgreSQL.
 * Shared data access: the activities, the nodeboot CLI and the lab all use it.
 *
 * This facade is the one import callers need. Each table lives in its own module:
 *   db.ts         the pool, the database URL, queries and retried transactions
 *   nodes.ts      nodes and their state; purging a node
 *   ipam.ts       overlay addresses (and the advisory lock that serializes them)
 *   peers.ts      node <-> hub WireGuard peerings
 *   devices.ts    devices on a managed overlay (Bowtie)
 *   claims.ts     the directories and interfaces a node owns
 *   entries.ts    SPIRE registration entries
 *   workloads.ts  running workloads and their SVIDs
 *   events.ts     the append-only event log
 *   migrations.ts the schema
 *
 * Every write is idempotent so an activity retry, a worker crash or a rerun can
 * repeat it safely: upserts key on the natural key; allocateAddress returns the
 * node's existing address before allocating; removals report what they removed
 * and are no-ops the second time; appendEvent dedupes on an idempotency key.
 *
 * Failures are LedgerErrors typed LedgerUnavailable (transient), PoolExhausted,
 * AddressConflict, OwnershipConflict or InvalidInput (permanent); messages name
 * the host, never the password. Returned records are plain JSON (timestamps as
 * ISO strings) so activities can hand them to workflows as they are.
 */
import type { Pool } from 'pg';
import * as claims from './claims.js';
import { Db, openPool, type ConnectOptions, type LedgerOptions } from './db.js';
import * as devices from './devices.js';
import * as entries from './entries.js';
import * as events from './events.js';
import * as ipam from './ipam.js';
import * as keys from './keys.js';
import type { MigrationResult } from './migrations.js';
import * as nodes from './nodes.js';
import * as peers from './peers.js';
import * as workloads from './workloads.js';

export type { ConnectOptions, LedgerOptions } from './db.js';
export type { OverlayDevice } from './devices.js';
export type { EntryInput, EntryRecord } from './entries.js';
export { LedgerError, type LedgerErrorType } from './errors.js';
export type { AppendEventInput, EventRecord } from './events.js';
export type { Allocation } from './ipam.js';
export { keyFingerprint, type KeyRotationInput, type OverlayKeyRecord } from './keys.js';
export { MIGRATIONS, type Migration, type MigrationResult } from './migrations.js';
export type { NodeInputFacts, NodeRecord, NodeState, PurgeResult } from './nodes.js';
export type { PeerInput, PeerRecord } from './peers.js';
export type { WorkloadInput, WorkloadRecord } from './workloads.js';

export class Ledger {
  private readonly db: Db;

  constructor(pool: Pool, opts: LedgerOptions = {}) {
    this.db = new Db(pool, opts);
  }

  /**
   * Validate `databaseUrl`, open a pool and check the database answers.
   * Throws LedgerError InvalidInput for a malformed URL and LedgerUnavailable
   * (naming host:port/db, never the password) when it cannot connect.
   */
  static async connect(databaseUrl: string, opts: ConnectOptions = {}): Promise<Ledger> {
    const { pool, options } = openPool(databaseUrl, opts);
    const ledger = new Ledger(pool, options);
    try {
      await ledger.ping();
      if (opts.migrate) await ledger.migrate();
    } catch (err) {
      await ledger.close().catch(() => undefined);
      throw err;
    }
    return ledger;
  }

  /** How errors name the database: "host:port/db". */
  get target(): string {
    return this.db.target;
  }

  /** Round trip to the database; LedgerUnavailable when it does not answer. */
  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  /** Apply pending schema migrations (serialized across workers by an advisory lock). */
  migrate(): Promise<MigrationResult> {
    return this.db.migrate();
  }

  /** End the pool. Idempotent. */
  close(): Promise<void> {
    return this.db.close();
  }

  // --- nodes (nodes.ts) ------------------------------------------------------

  /** Create the node or update its segment and state; the input facts are kept when not given. */
  upsertNode(nodeId: string, segment: string, state: nodes.NodeState, input?: nodes.NodeInputFacts) {
    return nodes.upsertNode(this.db, nodeId, segment, state, input);
  }
  /** Set a known node's state; null when the ledger has no such node. */
  setNodeState(nodeId: string, state: nodes.NodeState) {
    return nodes.setNodeState(this.db, nodeId, state);
  }
  getNode(nodeId: string) {
    return nodes.getNode(this.db, nodeId);
  }
  listNodes(filter: { segment?: string; state?: nodes.NodeState } = {}) {
    return nodes.listNodes(this.db, filter);
  }
  /** Remove every row about the node except its events, in one transaction. */
  purgeNode(nodeId: string) {
    return nodes.purgeNode(this.db, nodeId);
  }

  // --- overlay IPAM (ipam.ts) ------------------------------------------------

  /** The node's address in `cidr`: its existing one, else the lowest free host. PoolExhausted when none is free. */
  allocateAddress(nodeId: string, cidr: string, opts?: { reserved?: readonly string[] }) {
    return ipam.allocateAddress(this.db, nodeId, cidr, opts);
  }
  /** Record the address the overlay assigned; AddressConflict when another node holds it. */
  claimAddress(nodeId: string, cidr: string, ip: string) {
    return ipam.claimAddress(this.db, nodeId, cidr, ip);
  }
  getAllocation(nodeId: string, cidr: string) {
    return ipam.getAllocation(this.db, nodeId, cidr);
  }
  listAllocations(nodeId: string) {
    return ipam.listAllocations(this.db, nodeId);
  }
  /** Free the node's address in `cidr`; the released address, or null. */
  releaseAddress(nodeId: string, cidr: string) {
    return ipam.releaseAddress(this.db, nodeId, cidr);
  }

  // --- peers (peers.ts) ------------------------------------------------------

  recordPeer(peer: peers.PeerInput) {
    return peers.recordPeer(this.db, peer);
  }
  listPeers(nodeId: string) {
    return peers.listPeers(this.db, nodeId);
  }
  /** Remove the node's peerings (all, or one hub's); how many went. */
  removePeers(nodeId: string, hubName?: string) {
    return peers.removePeers(this.db, nodeId, hubName);
  }

  // --- overlay keys: rotation and key age (keys.ts) ---------------------------

  recordKeyRotation(rotation: keys.KeyRotationInput) {
    return keys.recordKeyRotation(this.db, rotation);
  }
  getOverlayKey(nodeId: string) {
    return keys.getOverlayKey(this.db, nodeId);
  }

  // --- managed-overlay devices (devices.ts) ----------------------------------

  recordOverlayDevice(device: devices.OverlayDevice) {
    return devices.recordOverlayDevice(this.db, device);
  }
  getOverlayDevice(nodeId: string) {
    return devices.getOverlayDevice(this.db, nodeId);
  }
  removeOverlayDevice(nodeId: string) {
    return devices.removeOverlayDevice(this.db, nodeId);
  }

  // --- what a node owns: directories and interfaces (claims.ts) -------------

  /** Claim `nodeDir` on `fsKey`; OwnershipConflict when another node holds it. */
  claimNodeDir(nodeId: string, fsKey: string, nodeDir: string) {
    return claims.claimNodeDir(this.db, nodeId, fsKey, nodeDir);
  }
  nodeDirHolder(fsKey: string, nodeDir: string) {
    return claims.nodeDirHolder(this.db, fsKey, nodeDir);
  }
  releaseNodeDir(nodeId: string) {
    return claims.releaseNodeDir(this.db, nodeId);
  }
  /** Record the node's interface `ifname` on `hostKey`; OwnershipConflict when another node's. */
  claimInterface(nodeId: string, hostKey: string, ifname: string) {
    return claims.claimInterface(this.db, nodeId, hostKey, ifname);
  }
  interfaceHolder(hostKey: string, ifname: string) {
    return claims.interfaceHolder(this.db, hostKey, ifname);
  }
  releaseInterface(nodeId: string, hostKey: string, ifname: string) {
    return claims.releaseInterface(this.db, nodeId, hostKey, ifname);
  }

  // --- SPIRE registration entries (entries.ts) -------------------------------

  /** Record a SPIRE entry; re-recording keeps the original createdByRun. */
  recordEntry(entry: entries.EntryInput) {
    return entries.recordEntry(this.db, entry);
  }
  listEntries(nodeId: string, filter?: { createdByRun?: string }) {
    return entries.listEntries(this.db, nodeId, filter);
  }
  removeEntry(entryId: string) {
    return entries.removeEntry(this.db, entryId);
  }

  // --- workloads (workloads.ts) ----------------------------------------------

  recordWorkload(workload: workloads.WorkloadInput) {
    return workloads.recordWorkload(this.db, workload);
  }
  listWorkloads(nodeId: string) {
    return workloads.listWorkloads(this.db, nodeId);
  }
  /** Forget the node's workloads (all, or the named ones); how many went. */
  removeWorkloads(nodeId: string, names?: readonly string[]) {
    return workloads.removeWorkloads(this.db, nodeId, names);
  }

  // --- the event log (events.ts) ---------------------------------------------

  /** Append an event; the same event (or idempotency key) again changes nothing. */
  appendEvent(event: events.AppendEventInput) {
    return events.appendEvent(this.db, event);
  }
  /** The node's events, oldest first. */
  listEvents(nodeId: string, filter?: { runId?: string; afterId?: number; limit?: number }) {
    return events.listEvents(this.db, nodeId, filter);
  }
}
