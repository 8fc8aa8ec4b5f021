/** The `peers` table: the WireGuard peering between a node and each hub (public keys only). */
import { z } from 'zod';
import { Ipv4Endpoint, Label, NodeId, WgPublicKey } from '../common/names.js';
import type { Db } from './db.js';
import { check, iso } from './fields.js';

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

const PeerSchema = z.object({
  nodeId: NodeId,
  hubName: Label,
  nodePublicKey: WgPublicKey,
  hubPublicKey: WgPublicKey,
  endpoint: Ipv4Endpoint,
});

/** Record (or refresh) the node <-> hub peering. */
export async function recordPeer(db: Db, peer: PeerInput): Promise<PeerRecord> {
  const p = check(PeerSchema, 'peer', peer);
  const { rows } = await db.query<PeerRow>(
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

export async function listPeers(db: Db, nodeId: string): Promise<PeerRecord[]> {
  const id = check(NodeId, 'nodeId', nodeId);
  const { rows } = await db.query<PeerRow>('SELECT * FROM peers WHERE node_id = $1 ORDER BY hub_name', [id]);
  return rows.map(toPeer);
}

/** Remove the node's peerings (all, or one hub's). Returns how many rows went. */
export async function removePeers(db: Db, nodeId: string, hubName?: string): Promise<number> {
  const id = check(NodeId, 'nodeId', nodeId);
  const hub = hubName === undefined ? null : check(Label, 'hubName', hubName);
  const r = await db.query('DELETE FROM peers WHERE node_id = $1 AND ($2::text IS NULL OR hub_name = $2)', [id, hub]);
  return r.rowCount ?? 0;
}

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
