/**
 * Running a command on a node as another user: how root touches a path that
 * user can write (files.ts) and how workloads are started (workloads/steps.ts).
 */
import { UnixUid, parseName } from '../../common/names.js';
import type { RunOptions, RunResult } from './exec.js';
import type { HostTransport } from './transport.js';

export interface FileOwner {
  uid: number;
  gid: number;
}

/**
 * `setpriv` arguments that run `argv` as `owner` on the node (RunOptions.uid
 * cannot be used because `ip netns exec` itself must run as root).
 */
export function setprivArgv(owner: FileOwner, argv: readonly string[]): string[] {
  const uid = parseName(UnixUid, 'uid', owner.uid);
  const gid = parseName(UnixUid, 'gid', owner.gid);
  return [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', ...argv];
}

/**
 * Run a command as `owner`. How root touches a path that `owner` can write:
 * whatever links the owner planted, the command has only the owner's rights.
 */
export function runAs(
  transport: HostTransport,
  owner: FileOwner,
  command: string,
  args: readonly string[],
  opts?: RunOptions,
): Promise<RunResult> {
  return transport.run('setpriv', setprivArgv(owner, [command, ...args]), opts);
}
