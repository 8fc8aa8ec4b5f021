/**
 * Overlay IPAM, the `overlay_allocations` table: one address per node per
 * segment CIDR. Allocations in one CIDR are serialized by a transaction-scoped
 * advisory lock on the CIDR, and UNIQUE(cidr, ip) / UNIQUE(cidr, node_id) back
 * it up (a unique violation retries the transaction).
 */
import { Ipv4Error, lowestFreeHost, parseCidr, parseIpv4, type Ipv4Network } from '../common/ipv4.js';
import { NodeId } from '../common/names.js';
import { UNIQUE_VIOLATION, type Db } from './db.js';
import { LedgerError } from './errors.js';
import { check } from './fields.js';

export interface Allocation {
  nodeId: string;
  /** Canonical CIDR ("10.200.0.0/16"). */
  cidr: string;
  ip: string;
  prefixLength: number;
  /** False when the node already held this address (a retry or rerun). */
  created: boolean;
}

/** Namespace for per-CIDR allocation locks (pg_advisory_xact_lock(ns, hashtext(cidr))): "nbal". */
const ALLOC_LOCK_NS = 0x6e62616c;
const LOCK_CIDR = 'SELECT pg_advisory_xact_lock($1::int, hashtext($2))';

/**
 * The node's address in `cidr`: its existing one if it has one, otherwise the
 * lowest free usable host (network, broadcast and `reserved`, e.g. hub IPs,
 * skipped). Throws PoolExhausted when no address is free.
 */
export async function allocateAddress(
  db: Db,
  nodeId: string,
  cidr: string,
  opts: { reserved?: readonly string[] } = {},
): Promise<Allocation> {
  const id = check(NodeId, 'nodeId', nodeId);
  const net = cidrOf(cidr);
  const reserved = (opts.reserved ?? []).map((ip, i) => {
    try {
      return parseIpv4(ip);
    } catch (err) {
      throw new LedgerError(
        'InvalidInput',
        `reserved.${i}: ${err instanceof Ipv4Error ? err.message : 'is not an IPv4 address'}`,
      );
    }
  });
  const result = (ip: string, created: boolean): Allocation => ({
    nodeId: id,
    cidr: net.cidr,
    ip,
    prefixLength: net.prefixLength,
    created,
  });

  // Fast path, no lock: a retry or rerun finds its address.
  const existing = await getAllocation(db, id, net.cidr);
  if (existing) return result(existing, false);

  return db.tx(
    async (c) => {
      await c.query(LOCK_CIDR, [ALLOC_LOCK_NS, net.cidr]);
      const mine = await c.query<{ ip: string }>(
        'SELECT host(ip) AS ip FROM overlay_allocations WHERE cidr = $1 AND node_id = $2',
        [net.cidr, id],
      );
      if (mine.rows[0]) return result(mine.rows[0].ip, false);
      const taken = await c.query<{ ip: string }>('SELECT host(ip) AS ip FROM overlay_allocations WHERE cidr = $1', [
        net.cidr,
      ]);
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
    },
    [UNIQUE_VIOLATION],
  );
}

/**
 * Record an address the overlay itself assigned (a Bowtie controller): the
 * node's entry in `cidr` becomes exactly `ip`. Another node holding `ip`
 * is an AddressConflict, and nothing changes.
 */
export async function claimAddress(db: Db, nodeId: string, cidr: string, ip: string): Promise<Allocation> {
  const id = check(NodeId, 'nodeId', nodeId);
  const net = cidrOf(cidr);
  let addr: number;
  try {
    addr = parseIpv4(ip);
  } catch (err) {
    throw new LedgerError('InvalidInput', `ip: ${err instanceof Ipv4Error ? err.message : 'is not an IPv4 address'}`);
  }
  if (addr < net.firstHost || addr > net.lastHost)
    throw new LedgerError('InvalidInput', `ip: ${ip} is not a host address in ${net.cidr}`);
  const result = (created: boolean): Allocation => ({
    nodeId: id,
    cidr: net.cidr,
    ip,
    prefixLength: net.prefixLength,
    created,
  });
  return db.tx(
    async (c) => {
      await c.query(LOCK_CIDR, [ALLOC_LOCK_NS, net.cidr]);
      const holder = await c.query<{ node_id: string }>(
        'SELECT node_id FROM overlay_allocations WHERE cidr = $1 AND ip = $2',
        [net.cidr, ip],
      );
      if (holder.rows[0]?.node_id === id) return result(false);
      if (holder.rows[0])
        throw new LedgerError(
          'AddressConflict',
          `overlay address ${ip} in ${net.cidr} is already held by node ${holder.rows[0].node_id}`,
        );
      await c.query('DELETE FROM overlay_allocations WHERE cidr = $1 AND node_id = $2', [net.cidr, id]);
      await c.query('INSERT INTO overlay_allocations (cidr, ip, node_id) VALUES ($1, $2, $3)', [net.cidr, ip, id]);
      return result(true);
    },
    [UNIQUE_VIOLATION],
  );
}

/** The node's address in `cidr`, or null. */
export async function getAllocation(db: Db, nodeId: string, cidr: string): Promise<string | null> {
  const id = check(NodeId, 'nodeId', nodeId);
  const net = cidrOf(cidr);
  const { rows } = await db.query<{ ip: string }>(
    'SELECT host(ip) AS ip FROM overlay_allocations WHERE cidr = $1 AND node_id = $2',
    [net.cidr, id],
  );
  return rows[0]?.ip ?? null;
}

/** Every address the node holds, in any CIDR. */
export async function listAllocations(db: Db, nodeId: string): Promise<Omit<Allocation, 'created'>[]> {
  const id = check(NodeId, 'nodeId', nodeId);
  const { rows } = await db.query<{ cidr: string; ip: string; prefix_length: number }>(
    `SELECT cidr::text AS cidr, host(ip) AS ip, masklen(cidr) AS prefix_length
     FROM overlay_allocations WHERE node_id = $1 ORDER BY cidr, ip`,
    [id],
  );
  return rows.map((r) => ({ nodeId: id, cidr: r.cidr, ip: r.ip, prefixLength: r.prefix_length }));
}

/** Free the node's address in `cidr`. Returns the released address, or null if it held none. */
export async function releaseAddress(db: Db, nodeId: string, cidr: string): Promise<string | null> {
  const id = check(NodeId, 'nodeId', nodeId);
  const net = cidrOf(cidr);
  const { rows } = await db.query<{ ip: string }>(
    'DELETE FROM overlay_allocations WHERE cidr = $1 AND node_id = $2 RETURNING host(ip) AS ip',
    [net.cidr, id],
  );
  return rows[0]?.ip ?? null;
}

function cidrOf(text: string): Ipv4Network {
  try {
    return parseCidr(text);
  } catch (err) {
    throw new LedgerError('InvalidInput', `cidr: ${err instanceof Error ? err.message : String(err)}`);
  }
}
