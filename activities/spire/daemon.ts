/**
 * Node-side file and process helpers shared by the SPIRE wrappers.
 *
 * Everything goes through a `HostTransport`, so the same code manages a daemon
 * on the worker's host, in a lab network namespace or (later) over SSH. Files
 * are written from stdin (mode set before the rename into place, content never
 * in argv); processes are identified by pid *and* start time (recorded in the
 * pid file as "<pid> <starttime>"), so a stale pidfile whose pid was reused by
 * something else is never killed, and a `#!/bin/sh` program (whose argv[0] is
 * the interpreter) is still recognised. Pid files holding only a pid (written
 * before start times were recorded) fall back to matching the command name.
 */
import path from 'node:path';
import { SafePath, UnixUid, parseName } from '../../common/names.js';
import { ToolError } from '../host/exec.js';
import type { RunOptions, RunResult } from '../host/exec.js';
import type { HostTransport } from '../host/transport.js';

export interface FileOwner {
  uid: number;
  gid: number;
}

/**
 * Create `dir` with `mode`, optionally owned by `owner`. Idempotent. Missing
 * parents are created with default modes and existing ones are left alone; the
 * leaf itself is assumed to be ours and gets `mode`/`owner` even when it exists.
 */
export async function ensureDir(transport: HostTransport, dir: string, mode = 0o700, owner?: FileOwner): Promise<void> {
  const d = parseName(SafePath, 'dir', dir);
  await ensureParent(transport, d);
  const ownerArgs = owner ? ['-o', String(owner.uid), '-g', String(owner.gid)] : [];
  await transport.run('install', ['-d', '-m', mode.toString(8), ...ownerArgs, '--', d]);
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
export function runAs(transport: HostTransport, owner: FileOwner, command: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return transport.run('setpriv', setprivArgv(owner, [command, ...args]), opts);
}

/** Read a file as `owner` (see runAs), or `undefined` when it cannot. At most `maxBytes` (default 1 MiB). */
export async function readNodeFileAs(transport: HostTransport, owner: FileOwner, file: string, maxBytes = 1024 * 1024): Promise<string | undefined> {
  const f = parseName(SafePath, 'file', file);
  // A FIFO or /dev/zero planted in its place must not hang or flood the worker.
  const r = await runAs(transport, owner, 'head', ['-c', String(maxBytes), '--', f], { allowNonZeroExit: true, timeoutMs: 10_000, maxBuffer: maxBytes + 1024 });
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
export async function ensureDirAs(transport: HostTransport, dir: string, owner: FileOwner, mode = 0o700): Promise<void> {
  const d = parseName(SafePath, 'dir', dir);
  const m = mode.toString(8);
  if ((await runAs(transport, owner, 'mkdir', ['-p', '-m', m, '--', d], { allowNonZeroExit: true })).exitCode === 0) return;
  await ensureParent(transport, d);
  const made = await transport.run('mkdir', ['-m', m, '--', d], { allowNonZeroExit: true });
  if (made.exitCode !== 0) {
    throw new ToolError('ToolFailed', `${d} on ${transport.label} exists but uid ${owner.uid} cannot use it`, 'mkdir', made.exitCode);
  }
  await transport.run('chown', ['-h', `${parseName(UnixUid, 'uid', owner.uid)}:${parseName(UnixUid, 'gid', owner.gid)}`, '--', d]);
}

/**
 * Throw InvalidInput unless `dir` is a real directory (not a link) owned by
 * root that no other uid may write: root creates and reads files in it, so no
 * other uid may be able to plant a link there.
 */
export async function assertRootOnlyDir(transport: HostTransport, dir: string, field: string): Promise<void> {
  const d = parseName(SafePath, 'dir', dir);
  const r = await transport.run('stat', ['-c', '%u %g %a %F', '--', d], { allowNonZeroExit: true });
  const [uid, gid, modeText, ...kind] = r.stdout.trim().split(' ');
  const mode = parseInt(modeText ?? '', 8);
  // Group-writable is fine for root's own group (a umask of 002).
  const writableByOthers = (mode & 0o002) !== 0 || ((mode & 0o020) !== 0 && gid !== '0');
  const ok = r.exitCode === 0 && uid === '0' && kind.join(' ') === 'directory' && !Number.isNaN(mode) && !writableByOthers;
  if (!ok) throw new ToolError('InvalidInput', `${field}: ${d} on ${transport.label} must be a directory owned by root and writable by root only`, 'stat');
}

/** `mkdir -p` the directory holding `file` (never changes an existing directory). */
export async function ensureParent(transport: HostTransport, file: string): Promise<void> {
  const parent = path.dirname(parseName(SafePath, 'file', file));
  if (parent !== '/') await transport.run('mkdir', ['-p', '--', parent]);
}

/** Write `content` to `file` with `mode` (content travels on stdin, never argv). */
export async function writeNodeFile(transport: HostTransport, file: string, content: string, mode = 0o600): Promise<void> {
  const f = parseName(SafePath, 'file', file);
  // `cat` reads fd 0 (a socket under Node, which `install /dev/stdin` cannot open);
  // written under umask 077 to a temp name, then given its mode and renamed into place.
  await transport.run(
    'sh',
    ['-c', 'umask 077; cat > "$1.tmp" && chmod "$2" -- "$1.tmp" && mv -f -- "$1.tmp" "$1"', 'write-file', f, mode.toString(8)],
    { input: content },
  );
}

/** Read a text file on the node, or `undefined` when it does not exist. */
export async function readNodeFile(transport: HostTransport, file: string): Promise<string | undefined> {
  const f = parseName(SafePath, 'file', file);
  const r = await transport.run('cat', ['--', f], { allowNonZeroExit: true });
  return r.exitCode === 0 ? r.stdout : undefined;
}

export async function removeNodeFile(transport: HostTransport, file: string): Promise<void> {
  const f = parseName(SafePath, 'file', file);
  await transport.run('rm', ['-f', '--', f]);
}

/** The pid in `pidFile`, or `undefined` when the file is missing or garbage (reads both pid file formats). */
export async function readPidFile(transport: HostTransport, pidFile: string): Promise<number | undefined> {
  return (await readProcessRef(transport, pidFile))?.pid;
}

/**
 * A process as a pid file records it. `startTime` is field 22 of /proc/<pid>/stat
 * (clock ticks after boot): with the pid it names one process for the life of
 * the boot, whatever it execs. Absent in pid files written before it was recorded.
 */
export interface ProcessRef {
  pid: number;
  startTime?: string;
}

/** The process recorded in `pidFile` ("<pid>" or "<pid> <starttime>"), or `undefined` when missing or garbage. */
export async function readProcessRef(transport: HostTransport, pidFile: string): Promise<ProcessRef | undefined> {
  return parsePidFile(await readNodeFile(transport, pidFile));
}

export function parsePidFile(text: string | undefined): ProcessRef | undefined {
  const m = /^\s*(\d{1,10})(?:\s+(\d{1,20}))?\s*$/.exec(text ?? '');
  const pid = Number(m?.[1]);
  if (!m || !Number.isSafeInteger(pid) || pid <= 1) return undefined;
  return m[2] !== undefined ? { pid, startTime: m[2] } : { pid };
}

/**
 * Record the process just spawned as `pid` in `pidFile` ("<pid> <starttime>").
 * When it is already gone its start time cannot be read: the pid alone is
 * recorded, and the next aliveness check says it is not running.
 */
export async function writePidFile(transport: HostTransport, pidFile: string, pid: number): Promise<ProcessRef> {
  const stat = await processStat(transport, pid);
  const ref: ProcessRef = stat ? { pid, startTime: stat.startTime } : { pid };
  await writeNodeFile(transport, pidFile, `${ref.pid}${ref.startTime !== undefined ? ` ${ref.startTime}` : ''}\n`, 0o644);
  return ref;
}

export interface ProcessStat {
  /** One letter: R, S, D, Z (zombie), X (dead), ... */
  state: string;
  /** Process group id: the pid itself for a daemon we started (it runs in its own session). */
  pgrp: number;
  startTime: string;
}

/**
 * Parse /proc/<pid>/stat. The command name (field 2) is in parentheses and may
 * itself hold spaces and ")", so fields are counted from the last ")".
 */
export function parseProcStat(text: string): ProcessStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // Fields 3.. (state, ppid, pgrp, ...); starttime is field 22.
  const f = text.slice(close + 1).trim().split(/\s+/);
  const state = f[0];
  const pgrp = Number(f[2]);
  const startTime = f[19];
  if (!state || !Number.isSafeInteger(pgrp) || !startTime || !/^\d+$/.test(startTime)) return undefined;
  return { state, pgrp, startTime };
}

/** /proc/<pid>/stat of a process on the node, or `undefined` when there is none. */
export async function processStat(transport: HostTransport, pid: number): Promise<ProcessStat | undefined> {
  const r = await transport.run('cat', [`/proc/${pid}/stat`], { allowNonZeroExit: true });
  return r.exitCode === 0 ? parseProcStat(r.stdout) : undefined;
}

/**
 * argv of a live process, or `undefined` when there is none (or it is a zombie,
 * whose cmdline reads empty).
 */
export async function processArgv(transport: HostTransport, pid: number): Promise<string[] | undefined> {
  const r = await transport.run('cat', [`/proc/${pid}/cmdline`], { allowNonZeroExit: true });
  if (r.exitCode !== 0 || r.stdout.length === 0) return undefined;
  return r.stdout.split('\0').filter((s) => s.length > 0);
}

const refOf = (p: number | ProcessRef): ProcessRef => (typeof p === 'number' ? { pid: p } : p);

/**
 * True while the process is alive (not a zombie). With a start time that is the
 * whole identity check; a bare pid (an old pid file) must also run the program
 * named `program` (basename of argv[0]), the check used before start times.
 */
export async function daemonAlive(transport: HostTransport, proc: number | ProcessRef, program: string): Promise<boolean> {
  return (await recorded(transport, refOf(proc), program)) !== undefined;
}

/** Defined while the process is alive and is the recorded one (with its stat when that was read). */
async function recorded(transport: HostTransport, ref: ProcessRef, program: string): Promise<{ stat?: ProcessStat } | undefined> {
  if (ref.startTime !== undefined) {
    const stat = await processStat(transport, ref.pid);
    return stat && stat.state !== 'Z' && stat.state !== 'X' && stat.startTime === ref.startTime ? { stat } : undefined;
  }
  const argv = await processArgv(transport, ref.pid);
  return argv?.[0] !== undefined && path.basename(argv[0]) === program ? {} : undefined;
}

export interface StopDaemonOptions {
  /** For a bare pid (old pid file): only signal it when it still runs this program (guards against pid reuse). */
  program: string;
  /** How long SIGTERM gets before SIGKILL (default 10 s). */
  graceMs?: number;
  signal?: AbortSignal;
}

/**
 * Stop a daemon: SIGTERM, wait, SIGKILL after the grace period, wait again.
 * A daemon that leads its own process group (every one we spawn does) is
 * signalled as a group, so a shell script's children go with it. Signals are
 * sent only after the process was checked to be the recorded one. Returns
 * false when there was nothing to stop. Idempotent.
 */
export async function stopDaemon(transport: HostTransport, proc: number | ProcessRef, opts: StopDaemonOptions): Promise<boolean> {
  const ref = refOf(proc);
  if (!(await signalIfAlive(transport, ref, 'TERM', opts))) return false;
  if (await waitGone(transport, ref, opts.program, opts.graceMs ?? 10_000, opts.signal)) return true;
  await signalIfAlive(transport, ref, 'KILL', opts);
  if (await waitGone(transport, ref, opts.program, 5_000, opts.signal)) return true;
  throw new ToolError('ToolFailed', `${opts.program} (pid ${ref.pid}) did not exit after SIGKILL`, opts.program);
}

async function signalIfAlive(transport: HostTransport, ref: ProcessRef, sig: 'TERM' | 'KILL', opts: StopDaemonOptions): Promise<boolean> {
  const live = await recorded(transport, ref, opts.program);
  if (!live) return false;
  const stat = live.stat ?? (await processStat(transport, ref.pid));
  if (stat?.pgrp === ref.pid) {
    // The group is ours while its leader is: a pid is not reused while its group exists.
    // Through `sh`: util-linux kill needs "--" before a negative pid, shells' builtin kill refuses it.
    await transport.run('sh', ['-c', `kill -${sig} "-$1"`, 'kill-group', String(ref.pid)], { allowNonZeroExit: true, signal: opts.signal });
  } else {
    await transport.run('kill', [`-${sig}`, String(ref.pid)], { allowNonZeroExit: true, signal: opts.signal });
  }
  return true;
}

async function waitGone(transport: HostTransport, ref: ProcessRef, program: string, ms: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!(await daemonAlive(transport, ref, program))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(150, signal);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
