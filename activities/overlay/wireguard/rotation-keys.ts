/**
 * The node's key files during a rotation, on the node, by path only: the
 * current key (`<iface>.key`, what the interface is set from and every step
 * reads) and the next one (`<iface>.key.next`, made beside it, mode 0600).
 * Scripts are constants; paths arrive as positional parameters; a file we did
 * not write is refused (wg.ts KEY_CHECK), never moved or deleted.
 */
import { SafePath, parseName } from '../../../common/names.js';
import { ToolError, summarizeStderr, type RunOptions } from '../../host/exec.js';
import type { HostTransport } from '../../host/transport.js';
import { FOREIGN_KEY_EXIT, KEY_CHECK } from './wg-cli.js';

/** Where the new key waits until the rotation is finalized. */
export function nextKeyPathOf(keyPath: string): string {
  return `${keyPath}.next`;
}

// Both files must be ours; then the next key atomically replaces the current one (same directory: a rename).
const PROMOTE_SCRIPT =
  'set -e; n="$1"; c="$2"; set -- "$n"; ' + KEY_CHECK + 'set -- "$c"; ' + KEY_CHECK + 'mv -f -- "$n" "$c"';
// Delete the next key when it is ours; says "removed" when there was one.
const DISCARD_SCRIPT = 'set -e; ' + KEY_CHECK + 'if [ -e "$1" ]; then rm -f -- "$1"; echo removed; fi';

export function promoteArgs(nextPath: string, keyPath: string): string[] {
  return [
    '-c',
    PROMOTE_SCRIPT,
    'wg-promote',
    parseName(SafePath, 'nextKeyPath', nextPath),
    parseName(SafePath, 'privateKeyPath', keyPath),
  ];
}

export function discardArgs(nextPath: string): string[] {
  return ['-c', DISCARD_SCRIPT, 'wg-discard', parseName(SafePath, 'nextKeyPath', nextPath)];
}

async function runScript(t: HostTransport, args: string[], what: string, opts?: RunOptions): Promise<string> {
  const r = await t.run('sh', args, { ...opts, allowNonZeroExit: true });
  if (r.exitCode === FOREIGN_KEY_EXIT) {
    throw new ToolError(
      'OwnershipConflict',
      `${what} on ${t.label}: a key file there was not written by node-bootstrap (${summarizeStderr(r.stderr, 80)}): refusing to touch it`,
      'wg',
      r.exitCode,
    );
  }
  if (r.exitCode !== 0)
    throw new ToolError(
      'ToolFailed',
      `${what} on ${t.label} exited ${r.exitCode}: ${summarizeStderr(r.stderr)}`,
      'wg',
      r.exitCode,
    );
  return r.stdout;
}

/** The next key becomes the node's key file (the old private key is gone for good). */
export async function promoteNextKey(
  t: HostTransport,
  nextPath: string,
  keyPath: string,
  opts?: RunOptions,
): Promise<void> {
  await runScript(t, promoteArgs(nextPath, keyPath), `promoting ${nextPath}`, opts);
}

/** Delete the next key (idempotent); true when there was one. */
export async function discardNextKey(t: HostTransport, nextPath: string, opts?: RunOptions): Promise<boolean> {
  return (await runScript(t, discardArgs(nextPath), `deleting ${nextPath}`, opts)).includes('removed');
}
