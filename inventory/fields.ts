/**
 * What every table checks its arguments with. The ledger is a boundary
 * (activities, CLI and lab all write to it), so each write validates what it
 * is given; `check` turns a refusal into LedgerError InvalidInput naming the field.
 * Names shared with the provisioning input (NodeId, Label, ...) come from common/names.ts.
 */
import { z } from 'zod';
import { LedgerError } from './errors.js';

/** An id another system chose (a SPIRE entry id, a run id, a host key): no spaces, no quotes. */
export const Opaque = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z0-9._:/@=+-]+$/, 'must be letters, digits and "._:/@=+-" only');

/** A JSON object (stored as jsonb). */
export const Json = z.record(z.string(), z.unknown());

/** Parse `value` with `schema`, or throw InvalidInput naming `field` (and the path inside it). */
export function check<T>(schema: z.ZodType<T>, field: string, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue?.path.length ? `${field}.${issue.path.join('.')}` : field;
  throw new LedgerError('InvalidInput', `${where} ${issue?.message ?? 'is invalid'}`);
}

/** Timestamps leave the ledger as ISO strings, so records are plain JSON a workflow can hold. */
export const iso = (d: Date | string): string => (d instanceof Date ? d.toISOString() : new Date(d).toISOString());
