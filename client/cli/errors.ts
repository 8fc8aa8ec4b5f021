/**
 * The CLI's one error handler: every failure a command throws ends here, is
 * printed once (per-field lines for bad input, a one-line suggestion for typed
 * failures) and picks the exit code.
 */
import {
  ServiceError,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import { ZodError } from 'zod';
import { errorClassOf } from '../../common/errors.js';
import { InvalidNameError } from '../../common/names.js';
import { InvalidInputError, NodeStateError, rootFailureType } from '../provision.js';
import { EXIT, exitName, type ExitCode } from './exit-codes.js';
import { suggestionFor } from './suggestions.js';

export interface FieldIssue {
  path: string;
  message: string;
}

export interface CliErrorOptions {
  /** Machine-readable code (default: the exit code's name). */
  code?: string;
  fields?: FieldIssue[];
  /** A failure type from common/errors.ts, when one is behind this. */
  type?: string;
  suggestion?: string;
  /** Extra JSON for --json output. */
  data?: Record<string, unknown>;
}

export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly opts: CliErrorOptions = {},
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Temporal did not answer (connect timeout, connection refused, deadline on the frontend). */
export class UnreachableError extends CliError {
  constructor(address: string, cause: unknown) {
    super(EXIT.UNREACHABLE, `cannot reach Temporal at ${address}: ${oneLine(cause)}`, {
      code: 'UNREACHABLE',
      suggestion: 'check TEMPORAL_ADDRESS / --address and that the server (or `temporal server start-dev`) is running',
    });
  }
}

/** "path: message" lines (describeZodError's shape) back into fields. */
export function splitFieldLines(lines: string[]): FieldIssue[] {
  return lines.map((l) => {
    const at = l.indexOf(': ');
    return at > 0 ? { path: l.slice(0, at), message: l.slice(at + 2) } : { path: '(input)', message: l };
  });
}

/** What handleError prints (and --json emits). */
export interface ErrorReport {
  code: string;
  exitCode: ExitCode;
  message: string;
  fields?: FieldIssue[];
  type?: string;
  errorClass?: string;
  suggestion?: string;
  [key: string]: unknown;
}

/** Classify any thrown value. */
export function describeError(err: unknown, ctx: { address?: string; nodeId?: string } = {}): ErrorReport {
  const base = (exitCode: ExitCode, message: string, extra: Partial<ErrorReport> = {}): ErrorReport => ({
    code: extra.code ?? exitName(exitCode),
    exitCode,
    message,
    ...extra,
  });
  if (err instanceof CliError) {
    const { code, fields, type, suggestion, data } = err.opts;
    return base(err.exitCode, err.message, {
      ...(code ? { code } : {}),
      ...(fields ? { fields } : {}),
      ...(type ? { type, errorClass: errorClassOf(type) } : {}),
      ...(suggestion ? { suggestion } : {}),
      ...data,
    });
  }
  if (err instanceof InvalidInputError) {
    return base(EXIT.INVALID, 'invalid provisioning input: nothing was started', {
      code: 'INVALID_INPUT',
      fields: splitFieldLines(err.fields),
    });
  }
  if (err instanceof NodeStateError) {
    return base(EXIT.CONFLICT, err.message, {
      code: `NODE_${err.state.toUpperCase().replace('-', '_')}`,
      suggestion: nodeStateSuggestion(err),
    });
  }
  if (err instanceof ZodError) {
    return base(EXIT.INVALID, 'invalid input: nothing was started', {
      code: 'INVALID_INPUT',
      fields: err.issues.map((i) => ({ path: i.path.length ? i.path.join('.') : '(input)', message: i.message })),
    });
  }
  if (err instanceof InvalidNameError) {
    return base(EXIT.INVALID, `invalid ${err.field}`, {
      code: 'INVALID_INPUT',
      fields: [{ path: err.field, message: err.reason }],
    });
  }
  if (err instanceof WorkflowNotFoundError) {
    return base(EXIT.NOT_FOUND, ctx.nodeId ? `no run for node ${ctx.nodeId}` : err.message, {
      suggestion: 'check the node id (`nodeboot list`), the namespace and the address',
    });
  }
  if (err instanceof WorkflowUpdateFailedError) {
    return base(EXIT.CONFLICT, `the run refused the decision: ${oneLine(err.cause ?? err)}`, {
      suggestion: ctx.nodeId ? `\`nodeboot status ${ctx.nodeId}\` shows what the run is doing` : undefined,
    });
  }
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) {
    return base(EXIT.ERROR, 'no worker answered the decision in time', {
      code: 'NO_WORKER',
      suggestion: 'is a node-bootstrap worker polling this task queue?',
    });
  }
  if (err instanceof WorkflowExecutionAlreadyStartedError) {
    return base(EXIT.CONFLICT, err.message);
  }
  if (err instanceof WorkflowFailedError) {
    const type = rootFailureType(err) ?? 'Error';
    return base(EXIT.FAILED, oneLine(err.cause ?? err), {
      type,
      errorClass: errorClassOf(type),
      suggestion: suggestionFor(type, ctx.nodeId),
    });
  }
  if (isUnreachable(err)) {
    return describeError(new UnreachableError(ctx.address ?? 'the configured address', err));
  }
  const ledgerType =
    (err as { name?: unknown; type?: unknown } | null)?.name === 'LedgerError'
      ? String((err as { type: unknown }).type)
      : undefined;
  if (ledgerType === 'LedgerUnavailable') {
    return base(EXIT.UNREACHABLE, oneLine(err), {
      code: 'UNREACHABLE',
      type: ledgerType,
      suggestion: 'check DATABASE_URL and that PostgreSQL is up',
    });
  }
  if (ledgerType === 'InvalidInput') return base(EXIT.INVALID, oneLine(err), { code: 'INVALID_CONFIG' });
  return base(EXIT.ERROR, oneLine(err));
}

/** What to do about a start or repair the node's lifecycle state refused. */
function nodeStateSuggestion(err: NodeStateError): string {
  const id = err.nodeId;
  switch (err.state) {
    case 'decommissioning':
      return `wait for it (\`nodeboot history ${id}\` shows its progress), then \`nodeboot start node.json\` provisions the node again`;
    case 'decommission-failed':
      return `\`nodeboot decommission ${id}\` again to finish it, or \`nodeboot start node.json\` to provision the node again (a new run)`;
    default:
      return `\`nodeboot start node.json\` provisions it again (a new run)`;
  }
}

/** gRPC UNAVAILABLE / DEADLINE_EXCEEDED, or the SDK's connect timeout. */
export function isUnreachable(err: unknown): boolean {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    if (!(e instanceof Error)) return false;
    if (e instanceof ServiceError || e.constructor.name === 'ServiceError') {
      const code = (e.cause as { code?: unknown } | undefined)?.code;
      if (code === 14) return true;
    }
    const code = (e as { code?: unknown }).code;
    if (code === 14 || code === 'ECONNREFUSED') return true;
    if (/Failed to connect before the deadline|ECONNREFUSED|No connection established/i.test(e.message)) return true;
  }
  return false;
}

/** Print the error once (stderr for people, one JSON document on stdout for machines); return its exit code. */
export function handleError(
  err: unknown,
  opts: { json: boolean; address?: string; nodeId?: string; debug?: boolean },
  io: { out: (s: string) => void; err: (s: string) => void },
): ExitCode {
  const r = describeError(err, opts);
  if (opts.json) {
    io.out(JSON.stringify({ ok: false, exitCode: r.exitCode, error: r }, null, 2));
    return r.exitCode;
  }
  io.err(`error: ${r.message}`);
  // One screen: a bad input file lists each field, but not hundreds.
  const fields = r.fields ?? [];
  for (const f of fields.slice(0, 20)) io.err(`  ${f.path}: ${f.message}`);
  if (fields.length > 20) io.err(`  ... and ${fields.length - 20} more`);
  if (r.type) io.err(`type: ${r.type} (${r.errorClass ?? errorClassOf(r.type)})`);
  if (r.suggestion) io.err(`hint: ${r.suggestion}`);
  if (opts.debug && err instanceof Error && err.stack) io.err(err.stack);
  return r.exitCode;
}

export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return (msg.split('\n')[0] ?? '').slice(0, 500);
}
