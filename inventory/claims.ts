/**
 * What a node owns on a machine, the `node_dirs` and `node_interfaces` tables
 * (migration 3): its state directory on a filesystem, and the overlay
 * interfaces its runs created on a network stack. A step claims before it
 * creates, so it adopts, and an undo deletes, only what is its own node's; a
 * claim another node holds is an OwnershipConflict, and nothing changes.
 */
import { IfName, NodeId, SafePath } from '../common/names.js';
import { UNIQUE_VIOLATION, type Db } from './db.js';
import { LedgerError } from './errors.js';
import { Opaque, check } from './fields.js';

/**
 * Claim `nodeDir` on the filesystem `fsKey` for the node. Idempotent; a node
 * that names another directory moves its claim there.
 */
export async function claimNodeDir(
  db: Db,
  nodeId: string,
  fsKey: string,
  nodeDir: string,
): Promise<{ created: boolean }> {
  const id = check(NodeId, 'nodeId', nodeId);
  const fs = check(Opaque, 'fsKey', fsKey);
  const dir = check(SafePath, 'nodeDir', nodeDir);
  return db.tx(
    async (c) => {
      const held = await c.query<{ node_id: string }>(
        'SELECT node_id FROM node_dirs WHERE fs_key = $1 AND node_dir = $2',
        [fs, dir],
      );
      if (held.rows[0]?.node_id === id) return { created: false };
      if (held.rows[0])
        throw new LedgerError('OwnershipConflict', `nodeDir ${dir} on ${fs} belongs to node ${held.rows[0].node_id}`);
      await c.query(
        `INSERT INTO node_dirs (node_id, fs_key, node_dir) VALUES ($1, $2, $3)
       ON CONFLICT (node_id) DO UPDATE SET fs_key = EXCLUDED.fs_key, node_dir = EXCLUDED.node_dir, claimed_at = now()`,
        [id, fs, dir],
      );
      return { created: true };
    },
    [UNIQUE_VIOLATION],
  );
}

/** The node holding `nodeDir` on `fsKey`, or null. */
export async function nodeDirHolder(db: Db, fsKey: string, nodeDir: string): Promise<string | null> {
  const fs = check(Opaque, 'fsKey', fsKey);
  const dir = check(SafePath, 'nodeDir', nodeDir);
  const { rows } = await db.query<{ node_id: string }>(
    'SELECT node_id FROM node_dirs WHERE fs_key = $1 AND node_dir = $2',
    [fs, dir],
  );
  return rows[0]?.node_id ?? null;
}

/** Give up the node's directory claim. True when it held one. */
export async function releaseNodeDir(db: Db, nodeId: string): Promise<boolean> {
  const id = check(NodeId, 'nodeId', nodeId);
  return ((await db.query('DELETE FROM node_dirs WHERE node_id = $1', [id])).rowCount ?? 0) > 0;
}

/** Record that the node's run creates (or created) interface `ifname` on the network stack `hostKey`. Idempotent. */
export async function claimInterface(
  db: Db,
  nodeId: string,
  hostKey: string,
  ifname: string,
): Promise<{ created: boolean }> {
  const id = check(NodeId, 'nodeId', nodeId);
  const host = check(Opaque, 'hostKey', hostKey);
  const name = check(IfName, 'ifname', ifname);
  const ins = await db.query(
    'INSERT INTO node_interfaces (host_key, ifname, node_id) VALUES ($1, $2, $3) ON CONFLICT (host_key, ifname) DO NOTHING',
    [host, name, id],
  );
  if ((ins.rowCount ?? 0) > 0) return { created: true };
  const holder = await interfaceHolder(db, host, name);
  if (holder !== id)
    throw new LedgerError(
      'OwnershipConflict',
      `interface ${name} on ${host} belongs to node ${holder ?? '(released meanwhile)'}`,
    );
  return { created: false };
}

/** The node that created `ifname` on `hostKey`, or null. */
export async function interfaceHolder(db: Db, hostKey: string, ifname: string): Promise<string | null> {
  const host = check(Opaque, 'hostKey', hostKey);
  const name = check(IfName, 'ifname', ifname);
  const { rows } = await db.query<{ node_id: string }>(
    'SELECT node_id FROM node_interfaces WHERE host_key = $1 AND ifname = $2',
    [host, name],
  );
  return rows[0]?.node_id ?? null;
}

/** Forget the node's record of `ifname` on `hostKey`. True when it was there. */
export async function releaseInterface(db: Db, nodeId: string, hostKey: string, ifname: string): Promise<boolean> {
  const id = check(NodeId, 'nodeId', nodeId);
  const host = check(Opaque, 'hostKey', hostKey);
  const name = check(IfName, 'ifname', ifname);
  const r = await db.query('DELETE FROM node_interfaces WHERE node_id = $1 AND host_key = $2 AND ifname = $3', [
    id,
    host,
    name,
  ]);
  return (r.rowCount ?? 0) > 0;
}
