/** The `workloads` table: the workloads running on a node and the SVID each one holds. */
import { z } from 'zod';
import { Label, NodeId, SpiffeId } from '../common/names.js';
import type { Db } from './db.js';
import { check, iso } from './fields.js';

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

const WorkloadSchema = z.object({
  nodeId: NodeId,
  name: Label,
  spiffeId: SpiffeId,
  pid: z
    .number()
    .int()
    .min(1)
    .max(2 ** 31 - 1),
  svidSerial: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9:]+$/, 'must be a hex or decimal serial'),
  svidNotAfter: z.union([z.date(), z.iso.datetime({ offset: true })]),
});

/** Record (or refresh) a running workload and its current SVID. */
export async function recordWorkload(db: Db, workload: WorkloadInput): Promise<WorkloadRecord> {
  const w = check(WorkloadSchema, 'workload', workload);
  const { rows } = await db.query<WorkloadRow>(
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

export async function listWorkloads(db: Db, nodeId: string): Promise<WorkloadRecord[]> {
  const id = check(NodeId, 'nodeId', nodeId);
  const { rows } = await db.query<WorkloadRow>('SELECT * FROM workloads WHERE node_id = $1 ORDER BY name', [id]);
  return rows.map(toWorkload);
}

/** Forget the node's workloads (all, or the named ones). Returns how many rows went. */
export async function removeWorkloads(db: Db, nodeId: string, names?: readonly string[]): Promise<number> {
  const id = check(NodeId, 'nodeId', nodeId);
  const only = names === undefined ? null : check(z.array(Label), 'names', names);
  const r = await db.query('DELETE FROM workloads WHERE node_id = $1 AND ($2::text[] IS NULL OR name = ANY($2))', [
    id,
    only,
  ]);
  return r.rowCount ?? 0;
}

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
