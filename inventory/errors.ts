/**
 * Ledger failures, classified with the closed error types of common/errors.ts.
 *
 * Like the host layer's ToolError, a LedgerError carries a `type` the activity
 * layer maps to `failure(type, message)`, and a message that is safe for workflow
 * history: it names the host and database, never the password or raw pg output
 * that could echo the connection string.
 */
import { redactSecrets, type ErrorType } from '../common/errors.js';

export type LedgerErrorType = Extract<
  ErrorType,
  'LedgerUnavailable' | 'PoolExhausted' | 'InvalidInput' | 'AddressConflict' | 'OwnershipConflict'
>;

export class LedgerError extends Error {
  constructor(
    readonly type: LedgerErrorType,
    message: string,
    /** The PostgreSQL SQLSTATE or Node error code behind it, when there is one. */
    readonly code?: string,
  ) {
    super(redactSecrets(message));
    this.name = 'LedgerError';
  }
}

/** SQLSTATEs and socket errors that mean "the database is not there right now". */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[123]|55P03|3D000|28)/;
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);
const UNAVAILABLE_TEXT =
  /Connection terminated|timeout exceeded when trying to connect|Cannot use a pool after calling end|Client has encountered a connection error/i;

/** The SQLSTATE (or errno code) of a pg / socket error. */
export function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True when `err` means the ledger cannot be reached (as opposed to a bad query). */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof LedgerError) return err.type === 'LedgerUnavailable';
  const code = pgCode(err);
  if (code && (UNAVAILABLE_ERRNO.has(code) || (/^[0-9A-Z]{5}$/.test(code) && UNAVAILABLE_SQLSTATE.test(code))))
    return true;
  // AggregateError (one failure per resolved address) carries the errno on its parts.
  const inner = (err as { errors?: unknown[] } | null)?.errors;
  if (Array.isArray(inner) && inner.some(isUnavailable)) return true;
  return err instanceof Error && UNAVAILABLE_TEXT.test(err.message);
}

/**
 * Turn a connection-level failure into LedgerUnavailable naming `target`
 * ("127.0.0.1:5432/nodeboot"). `secrets` are scrubbed from the text even if a
 * driver ever echoed them.
 */
export function unavailable(target: string, err: unknown, secrets: string[] = []): LedgerError {
  let reason = describeCause(err);
  for (const s of secrets) if (s) reason = reason.split(s).join('[redacted]');
  return new LedgerError('LedgerUnavailable', `inventory ledger at ${target} is unavailable: ${reason}`, pgCode(err));
}

function describeCause(err: unknown): string {
  const code = pgCode(err);
  const inner = (err as { errors?: unknown[] } | null)?.errors;
  let msg = err instanceof Error ? err.message : String(err);
  if (!msg && Array.isArray(inner) && inner[0] instanceof Error) msg = inner[0].message;
  if (!msg) msg = code ?? 'unknown error';
  // One line, bounded: this ends up in workflow history and CLI output.
  msg = msg.split('\n')[0]!.slice(0, 300);
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}
