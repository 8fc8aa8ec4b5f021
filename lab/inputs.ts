/**
 * Provisioning inputs for lab nodes: the same JSON a person would hand to
 * `temporal workflow start`, filled in from a lab's layout.
 */
import type { ProvisionInputJson } from '../common/input.js';
import { nodePaths } from '../common/paths.js';
import type { Lab } from './lab.js';

/**
 * A lab workload: either its own `command`, or the lab's demo workload
 * (lab/demo-workload/) serving mTLS on `port` to the callers in `allow`.
 */
export interface LabWorkload {
  name: string;
  spiffePath: string;
  uid: number;
  port?: number;
  allow?: string[];
  command?: string[];
}

/** The lab agents' sync interval (see SpireSpec.agentSyncIntervalMs; measured cost in bench/results/report.md). */
export const LAB_AGENT_SYNC_MS = 1_000;

type WorkloadJson = NonNullable<ProvisionInputJson['workloads']>[number];

/** Where a workload runs: the parts of the input its paths are derived from (common/paths.ts). */
export interface WorkloadHome {
  nodeId: string;
  nodeDir: string;
}

/**
 * The command that runs the lab's demo workload (installed by `Lab.up`) as an
 * ordinary workload program: the program, and what it cannot know by itself. It finds the agent through SPIFFE_ENDPOINT_SOCKET,
 * which the launch step sets for every workload, and serves on the node's overlay
 * address: its own address inside the lab's overlay range (allocated by step 2, on
 * an interface named by whichever driver made it).
 */
export function demoWorkloadCommand(
  lab: Lab,
  home: WorkloadHome,
  w: { name: string; port: number; allow?: string[] },
): string[] {
  const p = nodePaths({ nodeId: home.nodeId, nodeDir: home.nodeDir, overlay: {} });
  return [
    lab.demoWorkload,
    'serve',
    '--dir',
    p.workloadSvidDir(w.name),
    '--in-cidr',
    lab.hub.overlayCidr,
    '--port',
    String(w.port),
    ...(w.allow ?? []).flatMap((id) => ['--allow', id]),
  ];
}

/** A lab workload as a provisioning input names it: always with its `command`. */
export function labWorkloadSpec(lab: Lab, home: WorkloadHome, w: LabWorkload): WorkloadJson {
  const { name, spiffePath, uid } = w;
  if (w.command) return { name, spiffePath, uid, command: w.command };
  if (w.port === undefined) throw new Error(`lab workload ${name}: needs "command" or "port" (the demo workload's)`);
  return {
    name,
    spiffePath,
    uid,
    command: demoWorkloadCommand(lab, home, { name, port: w.port, allow: w.allow ?? [] }),
  };
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
  const input: ProvisionInputJson = {
    nodeId: opts.nodeId,
    segment: opts.segment ?? 'onprem',
    host: { kind: 'netns', netns: node.netns },
    nodeDir: node.dir,
    overlay: {
      driver: 'wireguard',
      cidr: lab.hub.overlayCidr,
      hubs: [
        {
          name: 'hub',
          host: { kind: 'netns', netns: lab.hub.netns },
          interface: lab.hub.interface,
          endpoint: lab.hub.endpoint,
          overlayIp: lab.hub.overlayIp,
        },
      ],
    },
    spire: {
      trustDomain: spire.trustDomain,
      serverAddress: lab.hub.overlayIp,
      serverPort: spire.port,
      serverHost: { kind: 'netns', netns: lab.hub.netns },
      serverSocketPath: spire.socketPath,
      nodeAttestor: opts.nodeAttestor ?? { type: 'join_token', tokenTtlSeconds: 600 },
      // A lab node's workloads start right after their entries are made: the agent's next sync
      // delivers them, so a 1 s sync (not SPIRE's 5 s) is what step 6 waits at most.
      agentSyncIntervalMs: LAB_AGENT_SYNC_MS,
    },
    workloads: [],
    ...opts.overrides,
  };
  // Built from the final input, so an override of nodeId or nodeDir moves the workload's paths with it.
  return {
    ...input,
    workloads: opts.overrides?.workloads ?? (opts.workloads ?? []).map((w) => labWorkloadSpec(lab, input, w)),
  };
}
