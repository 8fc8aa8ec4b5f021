/**
 * The `registration_entries` table: the SPIRE entries made for a node's
 * workloads, and which run created each one (an undo deletes exactly those).
 */
import { z } from 'zod';
import { Label, NodeId, SpiffeId } from '../common/names.js';
import type { Db } from './db.js';
import { Opaque, check, iso } from './fields.js';

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

const EntrySchema = z.object({
  entryId: Opaque,
  nodeId: NodeId,
  workload: Label,
  spiffeId: SpiffeId,
  parentId: SpiffeId,
  createdByRun: Opaque,
});

/** Record a SPIRE entry. Re-recording keeps the original created_by_run. */
export async function recordEntry(db: Db, entry: EntryInput): Promise<EntryRecord> {
  const e = check(EntrySchema, 'entry', entry);
  const { rows } = await db.query<EntryRow>(
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
export async function listEntries(
  db: Db,
  nodeId: string,
  filter: { createdByRun?: string } = {},
): Promise<EntryRecord[]> {
  const id = check(NodeId, 'nodeId', nodeId);
  const run = filter.createdByRun === undefined ? null : check(Opaque, 'createdByRun', filter.createdByRun);
  const { rows } = await db.query<EntryRow>(
    `SELECT * FROM registration_entries WHERE node_id = $1 AND ($2::text IS NULL OR created_by_run = $2)
     ORDER BY workload, entry_id`,
    [id, run],
  );
  return rows.map(toEntry);
}

/** Forget an entry. True when it was there. */
export async function removeEntry(db: Db, entryId: string): Promise<boolean> {
  const eid = check(Opaque, 'entryId', entryId);
  const r = await db.query('DELETE FROM registration_entries WHERE entry_id = $1', [eid]);
  return (r.rowCount ?? 0) > 0;
}

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
