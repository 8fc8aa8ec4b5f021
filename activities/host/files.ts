/**
 * Files on a node, through its `HostTransport` (the worker's host, a lab
 * network namespace or an SSH host alike). Files are written from stdin (mode
 * set before the rename into place, content never in argv); a file another uid
 * can write is only touched as that uid (run-as.ts).
 */
import path from 'node:path';
import { SafePath, UnixUid, parseName } from '../../common/names.js';
import { ToolError } from './exec.js';
import type { HostTransport } from './transport.js';
import { runAs, type FileOwner } from './run-as.js';

/**
 * Create `dir` with `mode`, optionally owned by `owner`. Idempotent. Missing
 * parents are created with default modes and existing ones are left alone; the
 * leaf itself is assumed to be ours and gets `mode`/`owner` even when it exists.
 */
export async function ensureDir(transport: HostTransport, dir: string, mode = 0o700, owner?: FileOwner): Promise<void> {
  const d = parseName(SafePath, 'dir', dir);
  await ensureParent(transport, d);
  if (transport.fs) return transport.fs.installDir(d, mode, owner);
  const ownerArgs = owner ? ['-o', String(owner.uid), '-g', String(owner.gid)] : [];
  await transport.run('install', ['-d', '-m', mode.toString(8), ...ownerArgs, '--', d]);
}

/** Read a file as `owner` (see runAs), or `undefined` when it cannot. At most `maxBytes` (default 1 MiB). */
export async function readNodeFileAs(
  transport: HostTransport,
  owner: FileOwner,
  file: string,
  maxBytes = 1024 * 1024,
): Promise<string | undefined> {
  const f = parseName(SafePath, 'file', file);
  // A FIFO or /dev/zero planted in its place must not hang or flood the worker.
  const r = await runAs(transport, owner, 'head', ['-c', String(maxBytes), '--', f], {
    allowNonZeroExit: true,
    timeoutMs: 10_000,
    maxBuffer: maxBytes + 1024,
  });
  return r.exitCode === 0 ? r.stdout : undefined;
}

/**
 * Make `dir` (mode `mode`) for `owner` without a root file operation on a path
 * the owner can write. First as the owner (`mkdir -p`): any link it follows the
 * owner could follow anyway, and an existing directory is left as it is. Only
 * when the owner cannot make it (a parent it may not write, where it cannot
 * plant a link either) does root make it: `mkdir` refuses an existing name and
 * `chown -h` never follows a link.
 */
export async function ensureDirAs(
  transport: HostTransport,
  dir: string,
  owner: FileOwner,
  mode = 0o700,
): Promise<void> {
  const d = parseName(SafePath, 'dir', dir);
  const m = mode.toString(8);
  if ((await runAs(transport, owner, 'mkdir', ['-p', '-m', m, '--', d], { allowNonZeroExit: true })).exitCode === 0)
    return;
  await ensureParent(transport, d);
  const made = await transport.run('mkdir', ['-m', m, '--', d], { allowNonZeroExit: true });
  if (made.exitCode !== 0) {
    throw new ToolError(
      'ToolFailed',
      `${d} on ${transport.label} exists but uid ${owner.uid} cannot use it`,
      'mkdir',
      made.exitCode,
    );
  }
  await transport.run('chown', [
    '-h',
    `${parseName(UnixUid, 'uid', owner.uid)}:${parseName(UnixUid, 'gid', owner.gid)}`,
    '--',
    d,
  ]);
}

/**
 * Throw InvalidInput unless `dir` is a real directory (not a link) owned by
 * root that no other uid may write: root creates and reads files in it, so no
 * other uid may be able to plant a link there.
 */
export async function assertRootOnlyDir(transport: HostTransport, dir: string, field: string): Promise<void> {
  const d = parseName(SafePath, 'dir', dir);
  const st = await dirStat(transport, d);
  const mode = st?.mode ?? NaN;
  // Group-writable is fine for root's own group (a umask of 002).
  const writableByOthers = (mode & 0o002) !== 0 || ((mode & 0o020) !== 0 && st?.gid !== 0);
  const ok = st !== undefined && st.uid === 0 && st.directory && !Number.isNaN(mode) && !writableByOthers;
  if (!ok)
    throw new ToolError(
      'InvalidInput',
      `${field}: ${d} on ${transport.label} must be a directory owned by root and writable by root only`,
      'stat',
    );
}

/** Owner, group, permission bits and kind of `p` itself (a link is not followed), or `undefined`. */
async function dirStat(
  transport: HostTransport,
  p: string,
): Promise<{ uid: number; gid: number; mode: number; directory: boolean } | undefined> {
  if (transport.fs) {
    const st = await transport.fs.lstat(p);
    return st && { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, directory: st.isDirectory() };
  }
  const r = await transport.run('stat', ['-c', '%u %g %a %F', '--', p], { allowNonZeroExit: true });
  const [uid, gid, modeText, ...kind] = r.stdout.trim().split(' ');
  if (r.exitCode !== 0) return undefined;
  return {
    uid: Number(uid),
    gid: Number(gid),
    mode: parseInt(modeText ?? '', 8),
    directory: kind.join(' ') === 'directory',
  };
}

/** `mkdir -p` the directory holding `file` (never changes an existing directory). */
export async function ensureParent(transport: HostTransport, file: string): Promise<void> {
  const parent = path.dirname(parseName(SafePath, 'file', file));
  if (parent !== '/') await makeDirs(transport, parent);
}

/** `mkdir -p` (missing directories get default modes; existing ones are left as they are). */
export async function makeDirs(transport: HostTransport, dir: string): Promise<void> {
  const d = parseName(SafePath, 'dir', dir);
  if (transport.fs) await transport.fs.mkdirs(d);
  else await transport.run('mkdir', ['-p', '--', d]);
}

/** Write `content` to `file` with `mode` (content travels on stdin, never argv). */
export async function writeNodeFile(
  transport: HostTransport,
  file: string,
  content: string,
  mode = 0o600,
): Promise<void> {
  const f = parseName(SafePath, 'file', file);
  if (transport.fs) return transport.fs.writeFile(f, content, mode);
  // `cat` reads fd 0 (a socket under Node, which `install /dev/stdin` cannot open);
  // written under umask 077 to a temp name, then given its mode and renamed into place.
  await transport.run(
    'sh',
    [
      '-c',
      'umask 077; cat > "$1.tmp" && chmod "$2" -- "$1.tmp" && mv -f -- "$1.tmp" "$1"',
      'write-file',
      f,
      mode.toString(8),
    ],
    { input: content },
  );
}

/** Read a text file on the node, or `undefined` when it does not exist. */
export async function readNodeFile(transport: HostTransport, file: string): Promise<string | undefined> {
  const f = parseName(SafePath, 'file', file);
  if (transport.fs) return transport.fs.readFile(f);
  const r = await transport.run('cat', ['--', f], { allowNonZeroExit: true });
  return r.exitCode === 0 ? r.stdout : undefined;
}

export async function removeNodeFile(transport: HostTransport, file: string): Promise<void> {
  const f = parseName(SafePath, 'file', file);
  if (transport.fs) return transport.fs.removeFile(f);
  await transport.run('rm', ['-f', '--', f]);
}
