/**
 * Where each piece of a node's bootstrap state lives on the node, derived from
 * `input.nodeDir`. One place, so steps, undos and tests agree. Unix socket
 * paths must stay under 108 bytes: keep `nodeDir` short.
 */
import { hostname } from 'node:os';
import { defaultInterfaceName, type HostSpec, type ProvisionInput } from '../common/input.js';

export function nodePaths(input: Pick<ProvisionInput, 'nodeDir' | 'nodeId' | 'overlay'>) {
  const d = input.nodeDir;
  const iface = input.overlay.interface ?? defaultInterfaceName(input.nodeId);
  return {
    interface: iface,
    wgKey: `${d}/wireguard/${iface}.key`,
    wgLog: `${d}/log/wireguard-go.log`,
    agentDir: `${d}/agent`,
    agentDataDir: `${d}/agent/data`,
    /** Workload API socket; its directory is world-traversable so workload uids can dial it. */
    agentSocket: `${d}/agent/public/api.sock`,
    agentPid: `${d}/agent/agent.pid`,
    agentLog: `${d}/log/spire-agent.log`,
    workloadDir: (name: string) => `${d}/workloads/${name}`,
    workloadSvidDir: (name: string) => `${d}/workloads/${name}/svid`,
    workloadPid: (name: string) => `${d}/workloads/${name}.pid`,
    workloadLog: (name: string) => `${d}/log/workload-${name}.log`,
  };
}

/**
 * Which network stack a host spec names, for the ledger's record of the
 * interfaces we created: the worker's own ("local:<worker>"), one of its
 * network namespaces ("netns:<worker>:<name>"), or a remote login
 * ("ssh:<user>@<host>:<port>").
 */
export function hostKeyOf(spec: HostSpec, worker = hostname()): string {
  switch (spec.kind) {
    case 'local':
      return `local:${worker}`;
    case 'netns':
      return `netns:${worker}:${spec.netns}`;
    case 'ssh':
      return `ssh:${spec.user}@${spec.host}:${spec.port}`;
  }
}

/**
 * Which filesystem a host spec's paths live on, for the ledger's claim on a
 * nodeDir: local and netns nodes share the worker's ("local:<worker>"), whatever
 * their namespace; a remote host has its own, whoever logs in ("ssh:<host>:<port>").
 */
export function fsKeyOf(spec: HostSpec, worker = hostname()): string {
  return spec.kind === 'ssh' ? `ssh:${spec.host}:${spec.port}` : `local:${worker}`;
}
