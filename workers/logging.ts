/**
 * Structured logs: one JSON line per event, with the fields an on-call
 * engineer filters on at the top level: workflowId, runId, nodeId, step,
 * attempt.
 *
 * - `jsonLineLogger` is the worker's Temporal Runtime logger (a DefaultLogger
 *   whose sink writes `formatLogLine`), so SDK lines (activity started/failed,
 *   workflow logs, Core's forwarded native logs) come out as JSON too.
 * - `activityLoggingInterceptor` adds nodeId/step/attempt to every log line
 *   emitted while an activity runs (the SDK adds workflowId/workflowRunId from
 *   the activity info) and writes one line per step/compensation outcome.
 *
 * Messages pass through redactSecrets: a log line is as public as history.
 */
import { Context } from '@temporalio/activity';
import type { LogLevel, LogMetadata } from '@temporalio/common';
import { DefaultLogger, type ActivityInterceptorsFactory, type LogEntry } from '@temporalio/worker';
import { redactSecrets } from '../common/errors.js';
import { classifyActivity, errorTypeOf } from './metrics.js';

export const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'] as const satisfies readonly LogLevel[];

/** Meta keys dropped from lines: noise, or an opaque credential-like token. */
const DROPPED_META = new Set(['taskToken']);

/** Canonical names for the correlation fields, whatever the SDK component calls them. */
const RENAMED_META: Record<string, string> = { workflowRunId: 'runId' };

/** The correlation fields, first on every line when present. */
const CORRELATION = ['workflowId', 'runId', 'nodeId', 'step', 'attempt'] as const;

function toJsonSafe(value: unknown, depth = 0): unknown {
  if (value === null || value === undefined) return value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'string') return redactSecrets(value);
  if (typeof value !== 'object') return value;
  if (depth > 4) return '[nested]';
  if (value instanceof Error) {
    const e = value as Error & { type?: unknown; nonRetryable?: unknown; cause?: unknown };
    return {
      name: e.name,
      message: redactSecrets(e.message),
      ...(typeof e.type === 'string' ? { type: e.type } : {}),
      ...(typeof e.nonRetryable === 'boolean' ? { nonRetryable: e.nonRetryable } : {}),
      ...(e.cause !== undefined ? { cause: toJsonSafe(e.cause, depth + 1) } : {}),
    };
  }
  if (Array.isArray(value)) return value.map((v) => toJsonSafe(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonSafe(v, depth + 1)]));
}

/**
 * One log entry as one JSON line (no trailing newline):
 * `{"time","level","msg", workflowId, runId, nodeId, step, attempt, ...other meta}`.
 */
export function formatLogLine(entry: LogEntry): string {
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(entry.meta ?? {})) {
    if (DROPPED_META.has(k) || v === undefined) continue;
    meta[RENAMED_META[k] ?? k] = v;
  }
  const line: Record<string, unknown> = {
    time: new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString(),
    level: entry.level,
    msg: redactSecrets(entry.message),
  };
  for (const k of CORRELATION) {
    if (k in meta) {
      line[k] = toJsonSafe(meta[k]);
      delete meta[k];
    }
  }
  for (const [k, v] of Object.entries(meta)) line[k] = toJsonSafe(v);
  return JSON.stringify(line);
}

/** The Runtime logger: JSON lines at `level` and above, to `write` (default: stdout). */
export function jsonLineLogger(
  level: LogLevel,
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): DefaultLogger {
  return new DefaultLogger(level, (entry) => write(formatLogLine(entry)));
}

/** The node id a step/undo request (`{ input: { nodeId } }`) or a ledger event (`{ nodeId }`) carries. */
export function nodeIdOf(args: unknown[]): string | undefined {
  const first = args[0] as { input?: { nodeId?: unknown }; nodeId?: unknown } | undefined;
  const id = first?.input?.nodeId ?? first?.nodeId;
  return typeof id === 'string' ? id : undefined;
}

/**
 * Adds nodeId, step and attempt to every log line of an activity (compensations
 * carry `step` = the step undone and `compensation: true`), and writes one
 * line per step/compensation attempt outcome with its duration and error type.
 */
export function activityLoggingInterceptor(): ActivityInterceptorsFactory {
  return (ctx) => {
    const what = classifyActivity(ctx.info.activityType);
    let nodeId: string | undefined;
    const attrs = (): LogMetadata => ({
      ...(nodeId ? { nodeId } : {}),
      step: what.kind === 'other' ? ctx.info.activityType : what.step,
      attempt: ctx.info.attempt,
      ...(what.kind === 'compensation' ? { compensation: true } : {}),
    });
    return {
      outbound: {
        getLogAttributes: (input, next) => next({ ...input, ...attrs() }),
      },
      inbound: {
        async execute(input, next) {
          nodeId = nodeIdOf(input.args);
          if (what.kind === 'other') return next(input);
          const label = what.kind === 'step' ? 'step' : 'compensation';
          const log = Context.current().log;
          const t0 = Date.now();
          log.info(`${label} started`);
          try {
            const result = await next(input);
            log.info(`${label} succeeded`, { durationMs: Date.now() - t0 });
            return result;
          } catch (err) {
            log.warn(`${label} failed`, {
              durationMs: Date.now() - t0,
              errorType: errorTypeOf(err),
              error: err as Error,
            });
            throw err;
          }
        },
      },
    };
  };
}
