/**
 * The one validation of a provisionNode input: the schema (common/input.ts)
 * plus every rule that can be decided from the input alone. The workflow (before
 * its first activity), `nodeboot start`, `nodeboot fleet start` and the library
 * client all call `checkProvisionInput`, so none of them can accept an input
 * that another would refuse, and nothing is accepted that a step would only
 * refuse mid-run, after earlier steps changed the node.
 * Imported by workflows: no Node built-ins here.
 */
import { cidrContains, hostCount, parseCidr } from './ipv4.js';
import { ProvisionInput, type WorkloadSpec } from './input.js';
import { describeZodError } from './names.js';
import { nodePaths } from './paths.js';

export type Checked<T> = { ok: true; value: T; problems: [] } | { ok: false; value: null; problems: string[] };

/** Attestors this worker can drive end to end (step 4). Any other type is refused up front. */
export const DRIVABLE_ATTESTORS: readonly string[] = ['join_token', 'x509pop', 'sshpop', 'tpm_devid'];

/** sun_path is 108 bytes with its terminating NUL: the longest unix socket path the agent can bind. */
export const UNIX_SOCKET_PATH_MAX = 107;

/**
 * Directories no node may use as its nodeDir, nor keep it under: system
 * directories (a nodeDir is created, chowned and finally removed by root) and
 * world-writable trees where another user can plant files or links first.
 */
const SYSTEM_DIRS = [
  '/bin',
  '/boot',
  '/etc',
  '/home',
  '/lib',
  '/lib32',
  '/lib64',
  '/media',
  '/mnt',
  '/opt',
  '/root',
  '/run',
  '/sbin',
  '/srv',
  '/usr',
  '/var',
  '/var/lib',
  '/var/run',
  '/var/log',
  '/usr/local',
];
const FORBIDDEN_TREES = ['/dev', '/proc', '/sys', '/tmp', '/var/tmp', '/run/user', '/run/lock'];

export interface CheckOptions {
  /**
   * Only the rules runs started before this validation layer were held to.
   * For the workflow alone, to replay those runs unchanged (`patched`): every
   * caller that starts something uses the full rules.
   */
  recordedBefore?: 'one-validation';
  /**
   * Accept a workload with a `port` and no `command`: the form that named the
   * worker's built-in demo workload, which is gone. For the workflow alone: to
   * replay runs recorded before (`patched`), and for decommission, which
   * launches nothing and must still remove such a node.
   */
  acceptPortOnlyWorkloads?: boolean;
}

/**
 * The rules for the input of a node that was already provisioned (decommission,
 * key rotation, maintenance): the node exists under whatever rules it was
 * started with, so a workload named by `port` alone (the retired built-in demo
 * workload) is still accepted: such a node can still be kept and removed.
 */
export const PROVISIONED_NODE_RULES: Readonly<CheckOptions> = { acceptPortOnlyWorkloads: true };

/** Every problem with a provisionNode input as "field.path: message" lines; the parsed input when there are none. */
export function checkProvisionInput(raw: unknown, opts: CheckOptions = {}): Checked<ProvisionInput> {
  const parsed = ProvisionInput.safeParse(raw);
  if (!parsed.success) return { ok: false, value: null, problems: describeZodError(parsed.error) };
  const problems = opts.recordedBefore ? retryProblems(parsed.data) : inputProblems(parsed.data, opts);
  return problems.length ? { ok: false, value: null, problems } : { ok: true, value: parsed.data, problems: [] };
}

/** The rules across fields, on an input that passed the schema. */
export function inputProblems(input: ProvisionInput, opts: CheckOptions = {}): string[] {
  return [
    ...retryProblems(input),
    ...attestorProblems(input),
    ...nodeDirProblems(input.nodeDir, input),
    ...addressProblems(input),
    ...workloadProblems(input, opts),
  ];
}

function retryProblems({ retry }: ProvisionInput): string[] {
  return retry.maximumIntervalMs < retry.initialIntervalMs
    ? ['retry.maximumIntervalMs: must be at least retry.initialIntervalMs']
    : [];
}

function attestorProblems(input: ProvisionInput): string[] {
  const a = input.spire.nodeAttestor;
  if (!DRIVABLE_ATTESTORS.includes(a.type)) {
    return [
      `spire.nodeAttestor.type: "${a.type}" is not supported by this worker (supported: ${DRIVABLE_ATTESTORS.join(', ')})`,
    ];
  }
  // Credential files the attestor names: distinct, and outside the agent's directory, which every undo removes.
  const files = Object.entries(a).filter(
    (e): e is [string, string] => e[0].endsWith('Path') && typeof e[1] === 'string',
  );
  const agentDir = nodePaths(input).agentDir;
  const problems: string[] = [];
  files.forEach(([k, v], i) => {
    if (v === agentDir || v.startsWith(`${agentDir}/`))
      problems.push(
        `spire.nodeAttestor.${k}: must not be under ${agentDir} (the agent's directory, removed by every undo)`,
      );
    if (files.slice(0, i).some(([, w]) => w === v))
      problems.push(`spire.nodeAttestor.${k}: names the same file as another credential path`);
  });
  return problems;
}

function nodeDirProblems(nodeDir: string, input: ProvisionInput): string[] {
  const problems: string[] = [];
  if (nodeDir.endsWith('/')) problems.push(`nodeDir: must not end with "/" (use "${nodeDir.replace(/\/+$/, '')}")`);
  const socket = nodePaths(input).agentSocket;
  if (socket.length > UNIX_SOCKET_PATH_MAX) {
    problems.push(
      `nodeDir: is too long: the agent's socket ${socket} would be ${socket.length} bytes, over the ${UNIX_SOCKET_PATH_MAX}-byte unix socket limit (keep nodeDir to ${UNIX_SOCKET_PATH_MAX - socket.length + nodeDir.length} characters)`,
    );
  }
  const dir = nodeDir.replace(/\/+$/, '') || '/';
  if (dir === '/' || SYSTEM_DIRS.includes(dir))
    problems.push(
      `nodeDir: must be a directory of its own, not the system directory ${dir} (e.g. "/var/lib/node-bootstrap/${input.nodeId}")`,
    );
  const tree = FORBIDDEN_TREES.find((t) => dir === t || dir.startsWith(`${t}/`));
  if (tree)
    problems.push(
      `nodeDir: must not be under ${tree} (world-writable or virtual: another user could plant files there first)`,
    );
  return problems;
}

function addressProblems({ overlay, spire }: ProvisionInput): string[] {
  const problems: string[] = [];
  const net = parseCidr(overlay.cidr);
  if (!cidrContains(net, spire.serverAddress)) {
    problems.push(
      `spire.serverAddress: ${spire.serverAddress} is outside overlay.cidr ${overlay.cidr} (the agent must reach the server through the tunnel)`,
    );
  }
  const reserved = new Set<string>();
  if (cidrContains(net, spire.serverAddress)) reserved.add(spire.serverAddress);
  overlay.hubs.forEach((hub, i) => {
    if (!cidrContains(net, hub.overlayIp))
      problems.push(`overlay.hubs.${i}.overlayIp: ${hub.overlayIp} is outside overlay.cidr ${overlay.cidr}`);
    else reserved.add(hub.overlayIp);
  });
  // Every hub address, the server's and one for this node.
  if (hostCount(net) < reserved.size + 1) {
    problems.push(
      `overlay.cidr: ${overlay.cidr} has ${hostCount(net)} usable address(es), too few for ${reserved.size} reserved (hubs, SPIRE server) and one node`,
    );
  }
  return problems;
}

function workloadProblems({ workloads }: ProvisionInput, opts: CheckOptions): string[] {
  const problems: string[] = [];
  workloads.forEach((w, i) => {
    if (w.command === undefined && !(opts.acceptPortOnlyWorkloads && w.port !== undefined)) {
      problems.push(
        w.port === undefined
          ? `workloads.${i}.command: needs the program to run (an argument array)`
          : `workloads.${i}.command: needs the program to run: there is no built-in workload any more, so "port" alone names nothing (pass the port to your program in "command")`,
      );
    }
    // /node/... names agents (a node's alias is spiffe://<td>/node/<nodeId>) and /spire/... the server
    // and agents themselves: an entry there could name another node's alias and borrow its authority.
    const reserved = ['/node', '/spire'].find((p) => w.spiffePath === p || w.spiffePath.startsWith(`${p}/`));
    if (reserved)
      problems.push(
        `workloads.${i}.spiffePath: must not be under ${reserved}/ (reserved for SPIRE agents and node aliases)`,
      );
    for (let j = 0; j < i; j++) {
      const other = workloads[j]!;
      if (other.uid === w.uid && !tellsApart(other, w)) {
        problems.push(
          `workloads.${i}.selectors: "${w.name}" runs as uid ${w.uid} like "${other.name}" and no selector tells them apart (each needs a selector the other lacks, e.g. "unix:gid:...")`,
        );
      }
    }
  });
  return problems;
}

/**
 * A workload's process matches every entry whose selectors are a subset of its
 * own. Two workloads of one uid get only their own identity when each entry has
 * a selector the other's lacks.
 */
function tellsApart(a: WorkloadSpec, b: WorkloadSpec): boolean {
  const sa = new Set(a.selectors);
  const sb = new Set(b.selectors);
  return [...sa].some((s) => !sb.has(s)) && [...sb].some((s) => !sa.has(s));
}
