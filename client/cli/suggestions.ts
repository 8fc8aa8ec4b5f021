/**
 * One line of advice per failure type (common/errors.ts), for `status`,
 * `watch`, `start --wait` and handleError. Typed as a full record, so adding
 * an error type without advice fails the build.
 */
import { errorClassOf, isErrorType, type ErrorType } from '../../common/errors.js';

const SUGGESTIONS: Record<ErrorType, string> = {
  InvalidInput: 'fix the named field in the input, then `nodeboot rerun <node> --input fixed.json`',
  HostUnreachable: 'check the node is up and reachable from the worker (netns / SSH), then approve (held) or rerun',
  ToolMissing:
    'install the missing binary on the node or worker (`npm run tools` in the lab), then approve (held) or rerun',
  ToolFailed: 'read the step message and the worker log; a retry may fix it: approve (held) or rerun',
  CommandTimeout:
    'the step outran its deadline: check the node and raise input.timeouts.<step> if it is just slow, then rerun',
  PeerHandshakeTimeout:
    'no WireGuard handshake: check the hub is up, its endpoint is reachable on UDP and the peer keys match, then approve or rerun',
  ProbeFailed:
    'the tunnel is up but the SPIRE server port is not reachable through it: check the server listens on the overlay address and port',
  SpireServerUnavailable:
    'the SPIRE server is down or its admin socket path is wrong (spire.serverSocketPath): fix it, then approve or rerun',
  AgentUnhealthy: "the SPIRE agent did not come up healthy: read its log in the node's dir, then approve or rerun",
  AttestationRejected:
    'security: the server refused attestation and the agent was banned; check the trust domain and investigate the node before any rerun',
  EntryRejected:
    'the SPIRE server refused a registration entry: check the workload spiffePath / selectors / TTLs, then rerun with a fixed input',
  SvidInvalid:
    "security: a workload's SVID did not match its registration or chain to the bundle; investigate before any rerun",
  WorkloadFailed: 'a workload did not start or get its SVID in time: check its command and uid, then approve or rerun',
  PoolExhausted: "the segment's overlay pool is full: decommission unused nodes or widen overlay.cidr, then rerun",
  AddressConflict:
    'the overlay controller gave the node an address the ledger says another node holds: decommission the stale node (or fix the ledger), then rerun',
  LedgerUnavailable:
    'the inventory ledger (PostgreSQL, DATABASE_URL) is unreachable from the worker: bring it back, then approve or rerun',
  OverlayAuth: 'the overlay controller refused our credentials: fix the worker credentials, then rerun',
  OverlayControllerUnavailable:
    'the overlay controller did not answer (or answered 5xx): check it is up and reachable from the worker, then approve or rerun',
  OverlayRejected:
    'the overlay controller refused a request as invalid: read the step message (field, status), fix the input, then rerun',
  OverlayDeviceTimeout:
    "the overlay client on the node did not enroll or come up in time: check the client's service and log on the node and that it reaches its controller, then approve or rerun",
  HostAuthRejected:
    "the node's sshd refused the worker's key: put the worker's public key in host.user's authorized_keys on the node, or fix host.identityFile / host.user, then rerun",
  HostKeyMismatch: "security: the node's SSH host key is unknown or changed; verify the host before trusting it",
  UnsafePath:
    'a path root works in on the node could be changed by another user: fix its owner and mode (or choose another nodeDir), then rerun',
  OwnershipConflict:
    'the node already holds something this node did not create (the named interface, nodeDir, agent or key file): pick another overlay.interface / nodeDir, or remove the named thing if it is stale, then rerun',
  NotProvisioned:
    'the node lacks its overlay interface, key file or address: `nodeboot repair <node>` (or provision it), then rotate again',
  NodeDecommissioning:
    'the node is being decommissioned: wait for it to end (`nodeboot history <node>`), then start it again (`nodeboot start node.json`, or the fleet again)',
};

/** The advice for a failure type; a generic line for types we do not own (Cancelled, timeouts, SDK errors). */
export function suggestionFor(type: string | null | undefined, nodeId?: string | null): string {
  const line = isErrorType(type)
    ? SUGGESTIONS[type]
    : type === 'Cancelled'
      ? 'the run was cancelled and compensated: `nodeboot rerun <node>` to provision it again'
      : type === 'Terminated'
        ? 'the run was terminated without compensating: `nodeboot rerun <node>` to finish it, or `nodeboot decommission <node>` to clean up'
        : 'see `nodeboot history <node>` and the run in the Temporal Web UI';
  return nodeId ? line.replaceAll('<node>', nodeId) : line;
}

export { errorClassOf };
