/**
 * Deterministic workflow ids from business keys, and the default task queue.
 *
 * One node has at most one provisioning run open at a time because its run is
 * `provision/<nodeId>`: starting it twice is a no-op (or an "already started"
 * error), never a second bootstrap. Imported by workflows: no Node built-ins.
 */
import type { HostSpec, ProvisionInput, WorkloadSpec } from './input.js';
import { NodeId, parseName } from './names.js';

/** The task queue the node-bootstrap worker polls. */
export const TASK_QUEUE = 'node-bootstrap';

/** `provision/<nodeId>`; throws InvalidNameError for an invalid node id. */
export function provisionWorkflowId(nodeId: string): string {
  return `provision/${parseName(NodeId, 'nodeId', nodeId)}`;
}

/** `decommission/<nodeId>`; throws InvalidNameError for an invalid node id. */
export function decommissionWorkflowId(nodeId: string): string {
  return `decommission/${parseName(NodeId, 'nodeId', nodeId)}`;
}

/** `rotate/<nodeId>`: one key rotation of a node open at a time; throws InvalidNameError for an invalid node id. */
export function rotateWorkflowId(nodeId: string): string {
  return `rotate/${parseName(NodeId, 'nodeId', nodeId)}`;
}

/** `maintain/<nodeId>`: one check-and-repair run of a node at a time; throws InvalidNameError for an invalid node id. */
export function maintainWorkflowId(nodeId: string): string {
  return `maintain/${parseName(NodeId, 'nodeId', nodeId)}`;
}

/** `fleet/<fleetId>`; throws InvalidNameError for an invalid fleet id. */
export function fleetWorkflowId(fleetId: string): string {
  return `fleet/${parseName(NodeId, 'fleetId', fleetId)}`;
}

/**
 * Which filesystem a host's paths live on: every `local` and `netns` host is
 * this machine (network namespaces share its filesystem); an SSH host is its own.
 * Two live nodes must not claim one nodeDir on the same filesystem.
 */
export function filesystemOf(host: HostSpec): string {
  return host.kind === 'ssh' ? `ssh:${host.host}:${host.port}` : 'worker';
}

/**
 * The node's alias SPIFFE ID, `spiffe://<td>/node/<nodeId>`: the stable handle
 * for the node (its agent ID changes with every attestation) and the parent of
 * every workload entry of the node.
 */
export const nodeAliasId = (input: Pick<ProvisionInput, 'nodeId' | 'spire'>) =>
  `spiffe://${input.spire.trustDomain}/node/${input.nodeId}`;

/** The SPIFFE ID a workload's registration entry gives it: `spiffe://<td><spiffePath>`. */
export const spiffeIdOf = (input: Pick<ProvisionInput, 'spire'>, w: Pick<WorkloadSpec, 'spiffePath'>) =>
  `spiffe://${input.spire.trustDomain}${w.spiffePath}`;
