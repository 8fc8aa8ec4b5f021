/**
 * The closed set of failure types node-bootstrap raises.
 *
 * Every failure that leaves an activity is an `ApplicationFailure` whose `type`
 * is one of these, so retry policies, the saga and the CLI can match on it.
 * The class decides what happens next:
 *   - transient: retried with backoff by the activity retry policy;
 *   - permanent: not retried; the workflow compensates;
 *   - security:  not retried; the workflow compensates and bans the agent.
 *
 * This module is imported by workflows, so it stays free of Node built-ins.
 */
import { ApplicationFailure } from '@temporalio/common';

export const ERROR_CLASSES = {
  // bad input or config: fix the input, nothing was changed
  InvalidInput: 'permanent',
  // a command could not reach the node, or the node is not there yet
  HostUnreachable: 'transient',
  // a required binary is missing on the node or the worker
  ToolMissing: 'permanent',
  // a tool ran and failed in a way a retry may fix
  ToolFailed: 'transient',
  // a tool did not finish within its timeout
  CommandTimeout: 'transient',
  // no fresh WireGuard handshake with a hub before the gate's deadline
  PeerHandshakeTimeout: 'transient',
  // handshake is fine but the SPIRE server port is not reachable through the tunnel
  ProbeFailed: 'transient',
  // the SPIRE server is not healthy or not answering
  SpireServerUnavailable: 'transient',
  // the SPIRE agent did not come up healthy
  AgentUnhealthy: 'transient',
  // the SPIRE server refused the agent's attestation (wrong trust domain, reused token...)
  AttestationRejected: 'security',
  // the SPIRE server refused a registration entry
  EntryRejected: 'permanent',
  // a workload's SVID does not match its registration or does not chain to the bundle
  SvidInvalid: 'security',
  // a workload process did not start or did not obtain an SVID in time
  WorkloadFailed: 'transient',
  // the segment's overlay address pool has no free address
  PoolExhausted: 'permanent',
  // the overlay assigned the node an address another node holds in the ledger
  AddressConflict: 'permanent',
  // the inventory ledger (PostgreSQL) cannot be reached
  LedgerUnavailable: 'transient',
  // the overlay controller refused our credentials
  OverlayAuth: 'permanent',
  // the overlay controller did not answer, or answered 5xx
  OverlayControllerUnavailable: 'transient',
  // the overlay controller refused a request as invalid (4xx other than auth)
  OverlayRejected: 'permanent',
  // the overlay client on the node did not enroll or did not come up in time
  OverlayDeviceTimeout: 'transient',
  // the node's sshd refused the worker's key (a wrong identityFile or user): retrying cannot help
  HostAuthRejected: 'permanent',
  // a node's SSH host key is unknown or changed
  HostKeyMismatch: 'security',
  // a path root works in on the node (nodeDir, a key file) could be written or replaced by another user
  UnsafePath: 'permanent',
  // the node holds something this node's runs did not make (an interface, a nodeDir another
  // node claimed, another node's agent, a key file we did not write): nothing was changed
  OwnershipConflict: 'permanent',
  // a day-2 operation (key rotation) found the node without what provisioning gives it (its
  // overlay interface, key file or address): provision or repair it first; nothing was changed
  NotProvisioned: 'permanent',
  // the node's decommission run is still open: it cannot be provisioned until that ends
  NodeDecommissioning: 'permanent',
} as const;

export type ErrorType = keyof typeof ERROR_CLASSES;
export type ErrorClass = (typeof ERROR_CLASSES)[ErrorType];
export const ERROR_TYPES = Object.keys(ERROR_CLASSES) as ErrorType[];

/** Error types the activity retry policy must never retry. */
export const NON_RETRYABLE_ERROR_TYPES: ErrorType[] = ERROR_TYPES.filter((t) => ERROR_CLASSES[t] !== 'transient');

export function isErrorType(value: unknown): value is ErrorType {
  return typeof value === 'string' && Object.hasOwn(ERROR_CLASSES, value);
}

export function errorClassOf(type: string | undefined | null): ErrorClass | 'unknown' {
  return isErrorType(type) ? ERROR_CLASSES[type] : 'unknown';
}

export interface FailureOptions {
  /** Structured, secret-free details (field names, step names, exit codes). */
  details?: unknown[];
  /** Override the server-side retry delay for a transient failure. */
  nextRetryDelay?: string | number;
  cause?: Error;
}

/**
 * Build the ApplicationFailure for `type`. Retryability follows the type's class,
 * so no call site can make a security failure retryable by accident.
 */
export function failure(type: ErrorType, message: string, opts: FailureOptions = {}): ApplicationFailure {
  return ApplicationFailure.create({
    type,
    message: redactSecrets(message),
    nonRetryable: ERROR_CLASSES[type] !== 'transient',
    details: opts.details,
    nextRetryDelay: opts.nextRetryDelay as never,
    cause: opts.cause,
  });
}

/**
 * Strip anything that looks like key material or a join token from text that
 * may end up in workflow history. WireGuard keys are 32 bytes of base64
 * (44 chars ending in '='); SPIRE join tokens are UUIDs; PEM blocks are removed whole.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----/g, '[redacted pem]')
    .replace(/[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=/g, '[redacted key]')
    .replace(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, '[redacted token]')
    .replace(/(password|passwd|secret|token)=\S+/gi, '$1=[redacted]');
}
