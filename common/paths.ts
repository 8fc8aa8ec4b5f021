/**
 * Where each piece of a node's bootstrap state lives on the node, derived from
 * `input.nodeDir`. One place, so steps, undos and tests agree. Unix socket
 * paths must stay under 108 bytes: keep `nodeDir` short.
 */
import { defaultInterfaceName, type ProvisionInput } from './input.js';

export function nodePaths(
  input: Pick<ProvisionInput, 'nodeDir' | 'nodeId'> & { overlay: { interface?: string | undefined } },
) {
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
