/**
 * Node-side file and process helpers shared by the SPIRE wrappers.
 *
 * Everything goes through a `HostTransport`, so the same code manages a daemon
 * on the worker's host, in a lab network namespace or (later) over SSH. Files
 * are written from stdin (mode set before the rename into place, content never
 * in argv); processes are identified by pid *and* command name, so a stale
 * pidfile whose pid was reused by something else is never killed.
 */
import path from 'node:path';
import { SafePath, parseName } from '../../common/names.js';
import { ToolError } from '../host/exec.js';
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

/** The pid in `pidFile`, or `undefined` when the file is missing or garbage. */
export async function readPidFile(transport: HostTransport, pidFile: string): Promise<number | undefined> {
  const text = await readNodeFile(transport, pidFile);
  const pid = Number(text?.trim());
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
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

/** True while `pid` is alive and runs the program named `program` (basename of argv[0]). */
export async function daemonAlive(transport: HostTransport, pid: number, program: string): Promise<boolean> {
  const argv = await processArgv(transport, pid);
  return argv !== undefined && argv[0] !== undefined && path.basename(argv[0]) === program;
}

export interface StopDaemonOptions {
  /** Only signal the pid when it still runs this program (guards against pid reuse). */
  program: string;
  /** How long SIGTERM gets before SIGKILL (default 10 s). */
  graceMs?: number;
  signal?: AbortSignal;
}

/**
 * Stop a daemon: SIGTERM, wait, SIGKILL after the grace period, wait again.
 * Returns false when there was nothing to stop. Idempotent.
 */
export async function stopDaemon(transport: HostTransport, pid: number, opts: StopDaemonOptions): Promise<boolean> {
  if (!(await daemonAlive(transport, pid, opts.program))) return false;
  await transport.run('kill', ['-TERM', String(pid)], { allowNonZeroExit: true, signal: opts.signal });
  if (await waitGone(transport, pid, opts.program, opts.graceMs ?? 10_000, opts.signal)) return true;
  await transport.run('kill', ['-KILL', String(pid)], { allowNonZeroExit: true, signal: opts.signal });
  if (await waitGone(transport, pid, opts.program, 5_000, opts.signal)) return true;
  throw new ToolError('ToolFailed', `${opts.program} (pid ${pid}) did not exit after SIGKILL`, opts.program);
}

async function waitGone(transport: HostTransport, pid: number, program: string, ms: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!(await daemonAlive(transport, pid, program))) return true;
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
