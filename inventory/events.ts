/**
 * The `events` table: the append-only audit trail of every run (a trigger
 * refuses UPDATE and DELETE). Appends dedupe on an idempotency key, derived
 * from the event when the caller gives none, so a retried append adds nothing;
 * string values in `detail` pass through redactSecrets first.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { LedgerEvent, LedgerEventKind } from '../activities/types.js';
import { NodeId } from '../common/names.js';
import { STEPS } from '../common/steps.js';
import type { Db } from './db.js';
import { LedgerError } from './errors.js';
import { Json, check, iso } from './fields.js';
import { canonicalJson, redactDeep } from './json.js';

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

const MAX_DETAIL_BYTES = 64 * 1024;

const EventSchema = z.object({
  nodeId: NodeId,
  run: z.object({ workflowId: z.string().min(1).max(1000), runId: z.string().min(1).max(256) }),
  step: z.enum([...STEPS, 'workflow']),
  kind: z.enum([
    'started',
    'succeeded',
    'failed',
    'compensated',
    'compensation_failed',
    'held',
    'decision',
    'checked',
  ] satisfies LedgerEventKind[]),
  attempt: z.number().int().min(0).max(1_000_000).optional(),
  errorType: z.string().min(1).max(128).optional(),
  detail: Json.optional(),
  idempotencyKey: z.string().min(1).max(512).optional(),
});

/**
 * Append to the event log. A second append with the same idempotency key
 * (by default: the same event) changes nothing and returns the first row's id.
 */
export async function appendEvent(db: Db, event: AppendEventInput): Promise<{ id: number; appended: boolean }> {
  const e = check(EventSchema, 'event', event);
  const detail = redactDeep(e.detail ?? {}) as Record<string, unknown>;
  const detailJson = JSON.stringify(detail);
  if (Buffer.byteLength(detailJson) > MAX_DETAIL_BYTES) {
    throw new LedgerError('InvalidInput', `event.detail is larger than ${MAX_DETAIL_BYTES} bytes`);
  }
  const digest = canonicalJson([
    e.nodeId,
    e.run.workflowId,
    e.run.runId,
    e.step,
    e.kind,
    e.attempt ?? null,
    e.errorType ?? null,
    detail,
  ]);
  const key = e.idempotencyKey ?? 'sha256:' + createHash('sha256').update(digest).digest('hex');
  const ins = await db.query<{ id: string }>(
    `INSERT INTO events (node_id, workflow_id, run_id, step, kind, attempt, error_type, detail, idempotency_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING id`,
    [e.nodeId, e.run.workflowId, e.run.runId, e.step, e.kind, e.attempt ?? null, e.errorType ?? null, detailJson, key],
  );
  if (ins.rows[0]) return { id: Number(ins.rows[0].id), appended: true };
  const prior = await db.query<{ id: string }>('SELECT id FROM events WHERE idempotency_key = $1', [key]);
  return { id: Number(prior.rows[0]!.id), appended: false };
}

/** The node's events, oldest first. */
export async function listEvents(
  db: Db,
  nodeId: string,
  filter: { runId?: string; afterId?: number; limit?: number } = {},
): Promise<EventRecord[]> {
  const id = check(NodeId, 'nodeId', nodeId);
  const limit = check(z.number().int().min(1).max(10_000), 'limit', filter.limit ?? 1000);
  const after = check(z.number().int().min(0), 'afterId', filter.afterId ?? 0);
  const { rows } = await db.query<EventRow>(
    `SELECT * FROM events WHERE node_id = $1 AND id > $2 AND ($3::text IS NULL OR run_id = $3)
     ORDER BY id LIMIT $4`,
    [id, after, filter.runId ?? null, limit],
  );
  return rows.map(toEvent);
}

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
