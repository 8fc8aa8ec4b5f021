/**
 * Provisioning inputs for lab nodes: the same JSON a person would hand to
 * `temporal workflow start`, filled in from a lab's layout.
 */
import type { ProvisionInputJson } from '../common/input.js';
import type { Lab } from './lab.js';

export interface LabWorkload {
  name: string;
  spiffePath: string;
  uid: number;
  port?: number;
  allow?: string[];
  command?: string[];
}

export function labProvisionInput(
  lab: Lab,
  nodeName: string,
  opts: {
    nodeId: string;
    segment?: string;
    workloads?: LabWorkload[];
    /** How the node attests (default join_token); for x509pop see lab/pki.ts issueNodeCredential. */
    nodeAttestor?: NonNullable<ProvisionInputJson['spire']['nodeAttestor']>;
    overrides?: Partial<ProvisionInputJson>;
  },
): ProvisionInputJson {
  const node = lab.node(nodeName);
  const spire = lab.spire;
  if (!spire) throw new Error(`lab ${lab.prefix} runs no SPIRE server`);
  return {
    nodeId: opts.nodeId,
    segment: opts.segment ?? 'onprem',
    host: { kind: 'netns', netns: node.netns },
    nodeDir: node.dir,
    overlay: {
      driver: 'wireguard',
      cidr: lab.hub.overlayCidr,
      hubs: [{ name: 'hub', host: { kind: 'netns', netns: lab.hub.netns }, interface: lab.hub.interface, endpoint: lab.hub.endpoint, overlayIp: lab.hub.overlayIp }],
    },
    spire: {
      trustDomain: spire.trustDomain,
      serverAddress: lab.hub.overlayIp,
      serverPort: spire.port,
      serverHost: { kind: 'netns', netns: lab.hub.netns },
      serverSocketPath: spire.socketPath,
      nodeAttestor: opts.nodeAttestor ?? { type: 'join_token', tokenTtlSeconds: 600 },
    },
    workloads: opts.workloads ?? [],
    ...opts.overrides,
  };
}
