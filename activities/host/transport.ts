/**
 * Host transports: how a command reaches a node.
 *
 * A step never calls execa directly for node-side work; it asks the node's
 * transport to run a program with arguments. `local` runs on the worker's host,
 * `netns` runs inside a network namespace (the lab's nodes) through
 * `ip netns exec`, `ssh` runs on a remote host (activities/host/ssh.ts): `run`
 * maps to one remote command, `spawnDaemon` to a detached remote process.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { SshHostSpec } from '../../common/input.js';
import { NetnsName, parseName } from '../../common/names.js';
import {
  countCommand,
  exitFailure,
  findsProgram,
  isProgramMissing,
  programMissingError,
  runCommand,
  scrubbedEnv,
  ToolError,
  type RunOptions,
  type RunResult,
} from './exec.js';
import { hostFs, type HostFs } from './host-fs.js';
import { sshTransport } from './ssh.js';

export interface DaemonOptions {
  /** File that receives the daemon's stdout and stderr. */
  logFile: string;
  /** Written to the daemon's stdin, then closed (how a secret reaches it). */
  input?: string;
  env?: Record<string, string>;
  uid?: number;
  gid?: number;
}

export interface HostTransport {
  readonly kind: 'local' | 'netns' | 'ssh';
  /** Human-readable target for messages ("netns nb-x-n1"). Never holds secrets. */
  readonly label: string;
  run(command: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Start a long-running process that outlives this call (and the worker). Returns its pid. */
  spawnDaemon(command: string, args: readonly string[], opts: DaemonOptions): Promise<number>;
  /**
   * Root's file operations done in this process, on transports whose node shares its
   * filesystem and pid namespace (local, netns). Absent (ssh, test fakes): the callers
   * in host/files.ts and host/process.ts run the equivalent commands instead.
   */
  readonly fs?: HostFs;
}

/** JSON-safe description of a transport, as it appears in workflow input. */
export const TransportSpec = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('local') }),
  z.object({ kind: z.literal('netns'), netns: NetnsName }),
  SshHostSpec,
]);
export type TransportSpec = z.infer<typeof TransportSpec>;

export function transportFor(spec: TransportSpec): HostTransport {
  switch (spec.kind) {
    case 'local':
      return localTransport();
    case 'netns':
      return netnsTransport(spec.netns);
    case 'ssh':
      return sshTransport(spec);
  }
}

export function localTransport(): HostTransport {
  return {
    kind: 'local',
    label: 'local host',
    run: (command, args, opts) => runCommand(command, args, opts),
    spawnDaemon: (command, args, opts) => spawnDetached(command, [...args], opts),
    fs: hostFs('local host'),
  };
}

/**
 * Programs whose work does not depend on the network namespace they run in:
 * files and /proc (a netns shares the host's filesystem and pid namespace).
 * The netns transport runs them directly rather than through `ip netns exec`,
 * which costs a process of its own, a mount namespace and a sysfs remount per
 * call. Anything that touches the network (ip, wg, ping, sysctl, a shell that
 * may run them, the SPIRE CLIs) still enters the namespace.
 */
const NETNS_AGNOSTIC = new Set(['cat', 'stat', 'mkdir', 'install', 'rm', 'chown', 'chmod', 'tail', 'kill', 'test']);

export function netnsTransport(netns: string): HostTransport {
  const ns = parseName(NetnsName, 'netns', netns);
  const prefix = ['netns', 'exec', ns];
  // Still "the node": a namespace that is gone is unreachable, whatever the program or file.
  const reachable = () => {
    if (!existsSync(`/run/netns/${ns}`))
      throw new ToolError('HostUnreachable', `network namespace ${ns} does not exist`, 'ip');
  };
  return {
    kind: 'netns',
    label: `netns ${ns}`,
    fs: hostFs(`netns ${ns}`, reachable),
    async run(command, args, opts = {}) {
      const label = `netns ${ns}`;
      if (NETNS_AGNOSTIC.has(command)) {
        reachable();
        try {
          const direct = await runCommand(command, args, { ...opts, allowNonZeroExit: true });
          if (direct.exitCode === 0 || opts.allowNonZeroExit) return direct;
          throw exitFailure(command, args, direct, label);
        } catch (err) {
          if (err instanceof ToolError && err.type === 'ToolMissing') throw programMissingError(command, label);
          throw err;
        }
      }
      // `ip -n` enters the namespace itself: one exec less than `ip netns exec <ns> ip`.
      const argv = command === 'ip' ? ['-n', ns, ...args] : [...prefix, command, ...args];
      const r = await runCommand('ip', argv, { ...opts, allowNonZeroExit: true });
      if (r.exitCode === 0) return r;
      // A program the node does not have is never the program's own verdict,
      // not even for callers that read non-zero exits: retrying cannot install it.
      if (isProgramMissing(command, r.exitCode, r.stderr)) throw programMissingError(command, label, r.exitCode);
      if (opts.allowNonZeroExit) return r;
      if (/Cannot open network namespace/.test(r.stderr))
        throw new ToolError('HostUnreachable', `network namespace ${ns} does not exist`, 'ip', r.exitCode);
      throw exitFailure(command, args, r, label);
    },
    async spawnDaemon(command, args, opts) {
      // `ip netns exec` would start, fail to exec and leave only a line in the
      // daemon's log; the namespace shares our filesystem, so look the program up
      // first, on the PATH the daemon gets.
      if (!findsProgram(command, scrubbedEnv(opts.env).PATH ?? '')) throw programMissingError(command, `netns ${ns}`);
      return spawnDetached('ip', [...prefix, command, ...args], opts);
    },
  };
}

async function spawnDetached(file: string, args: string[], opts: DaemonOptions): Promise<number> {
  mkdirSync(path.dirname(opts.logFile), { recursive: true });
  // The daemon writes to its own log file and holds no pipe to the worker,
  // so it outlives a worker crash (which is the point of a daemon).
  countCommand(file, args);
  const log = openSync(opts.logFile, 'a', 0o600);
  const stdin = opts.input !== undefined ? stdinFile(opts.input) : 'ignore';
  try {
    const child = spawn(file, args, {
      detached: true,
      env: scrubbedEnv(opts.env),
      stdio: [stdin, log, log],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'ENOENT'
            ? new ToolError(
                'ToolMissing',
                `${path.basename(file)} is not installed (run "npm run tools")`,
                path.basename(file),
              )
            : new ToolError(
                'ToolFailed',
                `${path.basename(file)} could not be started: ${err.code ?? 'error'}`,
                path.basename(file),
              ),
        ),
      );
    });
    child.unref();
    return pid;
  } finally {
    closeSync(log);
    if (typeof stdin === 'number') closeSync(stdin);
  }
}

/**
 * A daemon's stdin that programs can also *open* as /dev/stdin (spire-agent
 * reads `-config /dev/stdin`): Node's stdio pipes are socketpairs, which cannot
 * be opened that way. The input goes to a 0600 file in memory (tmpfs) that is
 * unlinked before the daemon starts; only the daemon's open descriptor remains.
 */
function stdinFile(input: string): number {
  const dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const file = path.join(dir, `nodeboot-stdin-${randomBytes(12).toString('hex')}`);
  writeFileSync(file, input, { mode: 0o600, flag: 'wx' });
  try {
    return openSync(file, 'r');
  } finally {
    unlinkSync(file);
  }
}

/** True while a process with this pid exists. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
