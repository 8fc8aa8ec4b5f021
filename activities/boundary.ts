/**
 * The activity boundary: every error leaving an activity becomes an
 * ApplicationFailure of one of our closed types, with a sanitized message.
 * Tool wrappers, the ledger and name checks throw their own classified errors;
 * this is the one place they are mapped, so no step can leak raw output.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { ZodError } from 'zod';
import { failure, isErrorType } from '../common/errors.js';
import { InvalidNameError, describeZodError } from '../common/names.js';
import { ToolError } from './host/exec.js';
import { LedgerError } from '../inventory/index.js';
import { heartbeat } from './host/heartbeat.js';

const HEARTBEAT_EVERY_MS = 2_000;

export function toFailure(err: unknown, step: string): unknown {
  if (err instanceof ApplicationFailure || err instanceof CancelledFailure) return err;
  if (err instanceof ToolError || err instanceof LedgerError) {
    return failure(err.type, `${step}: ${err.message}`, {
      details: [{ step, tool: (err as ToolError).tool ?? 'ledger' }],
    });
  }
  if (err instanceof InvalidNameError)
    return failure('InvalidInput', `${step}: ${err.message}`, { details: [{ step, field: err.field }] });
  if (err instanceof ZodError)
    return failure('InvalidInput', `${step}: ${describeZodError(err).join('; ')}`, { details: [{ step }] });
  const typed = (err as { type?: unknown } | null)?.type;
  if (isErrorType(typed)) return failure(typed, `${step}: ${(err as Error).message}`);
  // Unknown errors are retried (transient) but their message is still scrubbed.
  const msg = err instanceof Error ? err.message : String(err);
  return failure('ToolFailed', `${step}: unexpected error: ${msg}`);
}

/** Wrap every function of an activity object with the boundary. */
export function withBoundary<T extends object>(activities: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    if (typeof fn !== 'function') continue;
    out[name] = async (...args: unknown[]) => {
      // A steady pulse while the activity runs: the server notices a dead
      // worker within the heartbeat timeout, however long one tool call takes.
      const pulse = setInterval(() => heartbeat(), HEARTBEAT_EVERY_MS);
      try {
        return await (fn as (...a: unknown[]) => Promise<unknown>)(...args);
      } catch (err) {
        throw toFailure(err, name);
      } finally {
        clearInterval(pulse);
      }
    };
  }
  return out as T;
}
