/**
 * What the spire-server and spire-agent wrappers share: running the CLI through
 * a transport, classifying its failures into our closed error types, and
 * parsing its JSON with zod without ever echoing raw output into a message.
 */
import { z } from 'zod';
import type { ErrorType } from '../../common/errors.js';
import { isProgramMissing, summarizeStderr, ToolError, type RunOptions, type RunResult } from '../host/exec.js';
import type { HostTransport } from '../host/transport.js';

/** Which SPIRE binary to run on the target and how. */
export interface SpireCliTarget {
  transport: HostTransport;
  /** Admin socket (server) or Workload API socket (agent) on the target. */
  socketPath: string;
  /** Program to run (default `spire-server` / `spire-agent`, resolved on the tools PATH). */
  binary?: string;
  /** Per-call timeout (default 30 s). */
  timeoutMs?: number;
  /** The activity's cancellation signal. */
  signal?: AbortSignal;
}

/** Messages that mean "nothing is answering on the socket" (gRPC Unavailable and friends). */
const UNAVAILABLE =
  /connection error|connect: no such file or directory|connect: connection refused|code = Unavailable|error while dialing|unable to determine health|context deadline exceeded|code = DeadlineExceeded/i;

export async function runSpire(
  target: SpireCliTarget,
  defaultBinary: string,
  args: readonly string[],
  opts: Pick<RunOptions, 'input' | 'uid' | 'gid'> = {},
): Promise<RunResult & { tool: string }> {
  const tool = target.binary ?? defaultBinary;
  const r = await target.transport.run(tool, args, {
    timeoutMs: target.timeoutMs ?? 30_000,
    signal: target.signal,
    allowNonZeroExit: true,
    ...opts,
  });
  assertReachedHost(target.transport, r, defaultBinary, tool);
  return { ...r, tool: defaultBinary };
}

/**
 * With `allowNonZeroExit` the transport cannot tell "the tool said no" from "the
 * tool never ran"; sort the latter out before reading the tool's verdict.
 */
export function assertReachedHost(transport: HostTransport, r: RunResult, program: string, command = program): void {
  if (r.exitCode === 0) return;
  if (/Cannot open network namespace/.test(r.stderr)) {
    throw new ToolError('HostUnreachable', `${transport.label} does not exist`, program, r.exitCode);
  }
  // The netns and ssh transports already raise this; kept for transports that return the raw exit.
  if (isProgramMissing(command, r.exitCode, r.stderr)) {
    throw new ToolError(
      'ToolMissing',
      `${program} is not installed on ${transport.label} (run "npm run tools")`,
      program,
      r.exitCode,
    );
  }
}

/** The error type a failed (non-zero) SPIRE CLI call maps to. */
export function classifyCliFailure(stderr: string, unavailableType: ErrorType): ErrorType {
  return UNAVAILABLE.test(stderr) ? unavailableType : 'ToolFailed';
}

/** A ToolError for a non-zero exit; the stderr excerpt is redacted and bounded. */
export function cliFailure(r: RunResult & { tool: string }, what: string, unavailableType: ErrorType): ToolError {
  const type = classifyCliFailure(r.stderr, unavailableType);
  const why = type === unavailableType ? 'is not answering on its socket' : 'failed';
  return new ToolError(
    type,
    `${r.tool} ${what} ${why} (exit ${r.exitCode}): ${summarizeStderr(r.stderr, 240)}`,
    r.tool,
    r.exitCode,
  );
}

/**
 * Parse `stdout` as JSON and validate it. On failure the message names the
 * command only: the output is never quoted (it may hold a token or a key).
 */
export function parseJsonOutput<T>(stdout: string, schema: z.ZodType<T>, tool: string, what: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch {
    throw new ToolError('ToolFailed', `${tool} ${what} printed output that is not JSON`, tool);
  }
  return parseShape(raw, schema, tool, `${what} printed JSON`);
}

/**
 * Validate a decoded message (CLI JSON or an API reply). On failure the error names
 * the call and the first issue's path, never a value (it may hold a token):
 * "<tool> <what> of an unexpected shape (<path>: <issue>)".
 */
export function parseShape<T>(raw: unknown, schema: z.ZodType<T>, tool: string, what: string): T {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const at = issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid';
  throw new ToolError('ToolFailed', `${tool} ${what} of an unexpected shape (${at})`, tool);
}

/**
 * Whether a SPIRE socket on `transport`'s host is on this machine's filesystem, so
 * that this process can dial it itself: local and netns (a unix path socket is not
 * network-namespaced), not ssh (another machine, reached through its CLI).
 */
export function socketIsHere(transport: HostTransport): boolean {
  return transport.kind !== 'ssh';
}

/** protojson prints int64 as a string and int32 as a number; accept both. */
export const Int = z.union([z.number(), z.string().regex(/^-?\d+$/)]).transform((v) => Number(v));

/** A SPIFFE ID as SPIRE's JSON prints it. */
export const SpiffeIdJson = z.object({ trust_domain: z.string(), path: z.string() });
export function spiffeIdString(id: z.infer<typeof SpiffeIdJson>): string {
  return `spiffe://${id.trust_domain}${id.path}`;
}

export const SelectorJson = z.object({ type: z.string(), value: z.string() });
export function selectorString(s: z.infer<typeof SelectorJson>): string {
  return `${s.type}:${s.value}`;
}

/** A gRPC status inside a batch result. */
export const StatusJson = z.object({ code: z.number().int(), message: z.string().default('') });

/** gRPC status codes we act on. */
export const GrpcCode = {
  OK: 0,
  InvalidArgument: 3,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  FailedPrecondition: 9,
  Internal: 13,
  Unavailable: 14,
} as const;

export function grpcCodeName(code: number): string {
  return Object.entries(GrpcCode).find(([, c]) => c === code)?.[0] ?? `code ${code}`;
}
