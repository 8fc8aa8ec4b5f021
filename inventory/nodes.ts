/**
 * The `nodes` table: one row per node this service has seen, its segment,
 * its state (which follows its runs) and what its last run was asked to do.
 * Also `purgeNode`, which forgets everything about a node but its event log.
 */
import { z } from 'zod';
import { Label, NodeId } from '../common/names.js';
import type { Db } from './db.js';
import { Json, check, iso } from './fields.js';

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

/** What a run was asked: a digest of its input and a secret-free summary. */
export interface NodeInputFacts {
  hash?: string;
  summary?: Record<string, unknown>;
}

export interface PurgeResult {
  nodes: number;
  overlayAllocations: number;
  overlayDevices: number;
  overlayKeys: number;
  peers: number;
  registrationEntries: number;
  workloads: number;
  nodeDirs: number;
  interfaces: number;
}

const State = z.enum(NODE_STATES);

export async function upsertNode(
  db: Db,
  nodeId: string,
  segment: string,
  state: NodeState,
  input: NodeInputFacts = {},
): Promise<NodeRecord> {
  const id = check(NodeId, 'nodeId', nodeId);
  const seg = check(Label, 'segment', segment);
  const st = check(State, 'state', state);
  const hash = input.hash === undefined ? null : check(z.string().min(1).max(128), 'input.hash', input.hash);
  const summary = input.summary === undefined ? null : check(Json, 'input.summary', input.summary);
  const { rows } = await db.query<NodeRow>(
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

export async function setNodeState(db: Db, nodeId: string, state: NodeState): Promise<NodeRecord | null> {
  const id = check(NodeId, 'nodeId', nodeId);
  const st = check(State, 'state', state);
  const { rows } = await db.query<NodeRow>(
    `UPDATE nodes SET state = $2, updated_at = CASE WHEN state = $2 THEN updated_at ELSE now() END
     WHERE node_id = $1 RETURNING *`,
    [id, st],
  );
  return rows[0] ? toNode(rows[0]) : null;
}

/** The nodes in one segment and/or state (fleet maintenance lists the `ready` ones), by node id. */
export async function listNodes(db: Db, filter: { segment?: string; state?: NodeState } = {}): Promise<NodeRecord[]> {
  const seg = filter.segment === undefined ? null : check(Label, 'segment', filter.segment);
  const st = filter.state === undefined ? null : check(State, 'state', filter.state);
  const { rows } = await db.query<NodeRow>(
    `SELECT * FROM nodes WHERE ($1::text IS NULL OR segment = $1) AND ($2::text IS NULL OR state = $2) ORDER BY node_id`,
    [seg, st],
  );
  return rows.map(toNode);
}

export async function getNode(db: Db, nodeId: string): Promise<NodeRecord | null> {
  const id = check(NodeId, 'nodeId', nodeId);
  const { rows } = await db.query<NodeRow>('SELECT * FROM nodes WHERE node_id = $1', [id]);
  return rows[0] ? toNode(rows[0]) : null;
}

/** Remove every row about the node except its events (the audit trail stays), in one transaction. */
export async function purgeNode(db: Db, nodeId: string): Promise<PurgeResult> {
  const id = check(NodeId, 'nodeId', nodeId);
  return db.tx(async (c) => {
    const del = async (table: string) => (await c.query(`DELETE FROM ${table} WHERE node_id = $1`, [id])).rowCount ?? 0;
    return {
      overlayAllocations: await del('overlay_allocations'),
      overlayDevices: await del('overlay_devices'),
      overlayKeys: await del('overlay_keys'),
      peers: await del('peers'),
      registrationEntries: await del('registration_entries'),
      workloads: await del('workloads'),
      nodeDirs: await del('node_dirs'),
      interfaces: await del('node_interfaces'),
      nodes: await del('nodes'),
    };
  });
}

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
