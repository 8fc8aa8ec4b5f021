/**
 * Processes on a node, through its `HostTransport`: pid files, aliveness and
 * stopping a daemon. A process is identified by pid *and* start time (recorded
 * in the pid file as "<pid> <starttime>"), so a stale pidfile whose pid was
 * reused by something else is never killed, and a `#!/bin/sh` program (whose
 * argv[0] is the interpreter) is still recognised. Pid files holding only a pid
 * (written before start times were recorded) fall back to matching the command name.
 */
import path from 'node:path';
import { ToolError } from './exec.js';
import { readNodeFile, writeNodeFile } from './files.js';
import type { HostTransport } from './transport.js';

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
  await writeNodeFile(
    transport,
    pidFile,
    `${ref.pid}${ref.startTime !== undefined ? ` ${ref.startTime}` : ''}\n`,
    0o644,
  );
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
  const f = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const state = f[0];
  const pgrp = Number(f[2]);
  const startTime = f[19];
  if (!state || !Number.isSafeInteger(pgrp) || !startTime || !/^\d+$/.test(startTime)) return undefined;
  return { state, pgrp, startTime };
}

/** /proc/<pid>/stat of a process on the node, or `undefined` when there is none. */
export async function processStat(transport: HostTransport, pid: number): Promise<ProcessStat | undefined> {
  const text = await procFile(transport, pid, 'stat');
  return text !== undefined ? parseProcStat(text) : undefined;
}

/**
 * /proc/<pid>/<name> on the node. Read in this process when the transport shares our
 * pid namespace (local, netns: a network namespace does not change /proc); else `cat`.
 */
async function procFile(transport: HostTransport, pid: number, name: 'stat' | 'cmdline'): Promise<string | undefined> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  if (transport.fs) return transport.fs.readFile(`/proc/${pid}/${name}`);
  const r = await transport.run('cat', [`/proc/${pid}/${name}`], { allowNonZeroExit: true });
  return r.exitCode === 0 ? r.stdout : undefined;
}

/**
 * argv of a live process, or `undefined` when there is none (or it is a zombie,
 * whose cmdline reads empty).
 */
export async function processArgv(transport: HostTransport, pid: number): Promise<string[] | undefined> {
  const text = await procFile(transport, pid, 'cmdline');
  if (text === undefined || text.length === 0) return undefined;
  return text.split('\0').filter((s) => s.length > 0);
}

const refOf = (p: number | ProcessRef): ProcessRef => (typeof p === 'number' ? { pid: p } : p);

/**
 * True while the process is alive (not a zombie). With a start time that is the
 * whole identity check; a bare pid (an old pid file) must also run the program
 * named `program` (basename of argv[0]), the check used before start times.
 */
export async function daemonAlive(
  transport: HostTransport,
  proc: number | ProcessRef,
  program: string,
): Promise<boolean> {
  return (await recorded(transport, refOf(proc), program)) !== undefined;
}

/** Defined while the process is alive and is the recorded one (with its stat when that was read). */
async function recorded(
  transport: HostTransport,
  ref: ProcessRef,
  program: string,
): Promise<{ stat?: ProcessStat } | undefined> {
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
export async function stopDaemon(
  transport: HostTransport,
  proc: number | ProcessRef,
  opts: StopDaemonOptions,
): Promise<boolean> {
  const ref = refOf(proc);
  if (!(await signalIfAlive(transport, ref, 'TERM', opts))) return false;
  if (await waitGone(transport, ref, opts.program, opts.graceMs ?? 10_000, opts.signal)) return true;
  await signalIfAlive(transport, ref, 'KILL', opts);
  if (await waitGone(transport, ref, opts.program, 5_000, opts.signal)) return true;
  throw new ToolError('ToolFailed', `${opts.program} (pid ${ref.pid}) did not exit after SIGKILL`, opts.program);
}

async function signalIfAlive(
  transport: HostTransport,
  ref: ProcessRef,
  sig: 'TERM' | 'KILL',
  opts: StopDaemonOptions,
): Promise<boolean> {
  const live = await recorded(transport, ref, opts.program);
  if (!live) return false;
  const stat = live.stat ?? (await processStat(transport, ref.pid));
  if (stat?.pgrp === ref.pid) {
    // The group is ours while its leader is: a pid is not reused while its group exists.
    // Through `sh`: util-linux kill needs "--" before a negative pid, shells' builtin kill refuses it.
    await transport.run('sh', ['-c', `kill -${sig} "-$1"`, 'kill-group', String(ref.pid)], {
      allowNonZeroExit: true,
      signal: opts.signal,
    });
  } else {
    await transport.run('kill', [`-${sig}`, String(ref.pid)], { allowNonZeroExit: true, signal: opts.signal });
  }
  return true;
}

async function waitGone(
  transport: HostTransport,
  ref: ProcessRef,
  program: string,
  ms: number,
  signal?: AbortSignal,
): Promise<boolean> {
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
