/**
 * The one place node-bootstrap starts a process.
 *
 * Every tool call goes through `runCommand`: an argument array (never a shell
 * string), a timeout, a bounded output buffer, a scrubbed environment, the
 * caller's cancellation signal, and secrets only on stdin. Failures become a
 * `ToolError` whose `type` is one of our closed error types and whose message
 * is sanitized: raw subprocess output is never attached, because it may hold a key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { redactSecrets, type ErrorType } from '../../common/errors.js';

export interface RunOptions {
  /** Kill the command after this long (default 30 s). */
  timeoutMs?: number;
  /** Bytes written to stdin. The only way a secret may enter a command. */
  input?: string;
  /** Cancellation (an activity's `cancellationSignal`). */
  signal?: AbortSignal;
  /** Cap on captured stdout/stderr (default 4 MiB). */
  maxBuffer?: number;
  /** Extra environment on top of the scrubbed base. */
  env?: Record<string, string>;
  uid?: number;
  gid?: number;
  cwd?: string;
  /** Return non-zero exits instead of throwing (the caller inspects exitCode). */
  allowNonZeroExit?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** A failed command, classified. `message` is safe to put in workflow history. */
export class ToolError extends Error {
  constructor(
    readonly type: ErrorType,
    message: string,
    readonly tool: string,
    readonly exitCode?: number,
  ) {
    super(redactSecrets(message));
    this.name = 'ToolError';
  }
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Where `npm run tools` installs pinned binaries (overridable for packaged installs). */
export const TOOLS_BIN = process.env.NODEBOOT_TOOLS_BIN ?? path.join(repoRoot, '.tools', 'bin');

const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The environment every command gets: our tools first, C locale, nothing inherited. */
export function scrubbedEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: `${TOOLS_BIN}:${SYSTEM_PATH}`, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', ...extra };
}

/** Keep the tail of stderr that explains a failure, without secrets, on one line. */
export function summarizeStderr(stderr: string, max = 300): string {
  const text = redactSecrets(stderr).replace(/\s+/g, ' ').trim();
  return text.length > max ? `…${text.slice(-max)}` : text;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * True when a wrapper reports that `command` itself could not be executed
 * because it is not there, as opposed to `command` running and failing:
 *   - `ip netns exec` prints `exec of "wg" failed: No such file or directory` (and
 *     exits 1 in iproute2 6.1, 255 in others: the line decides, not the code);
 *   - a remote shell (ssh), `env` or `setpriv` exits 127 with `wg: command not found`
 *     (bash), `wg: not found` (dash), `command not found: wg` (zsh), or
 *     `/usr/bin/wg: No such file or directory` / `failed to execute wg: No such file or directory`.
 * The name in the message must be the one we asked for, so a tool that exits 127
 * because *it* could not run something else stays that tool's own failure.
 */
export function isProgramMissing(command: string, exitCode: number, stderr: string): boolean {
  const name = escapeRe(command);
  if (exitCode === 0) return false;
  if (new RegExp(`^exec of "${name}" failed: No such file or directory\\r?$`, 'm').test(stderr)) return true;
  if (exitCode !== 127) return false;
  return new RegExp(
    `(?:^|[\\s:'"\u2018\`])${name}['"\u2019]?: (?:command not found|not found|No such file or directory)\\r?$|command not found: ${name}\\r?$`,
    'm',
  ).test(stderr);
}

/**
 * True when `command` resolves to an executable file the way execvp would
 * resolve it with `PATH` (a name with a slash is taken as a path).
 */
export function findsProgram(command: string, PATH: string): boolean {
  const executable = (file: string) => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (command.includes('/')) return executable(command);
  return PATH.split(':').some((dir) => dir !== '' && executable(path.join(dir, command)));
}

/** The ToolMissing error for a program that `where` ("netns nb-x-n1", "ssh root@h:22") does not have. */
export function programMissingError(command: string, where: string, exitCode?: number): ToolError {
  const tool = path.basename(command);
  return new ToolError(
    'ToolMissing',
    `${tool} is not installed on ${where} (${command} was not found)`,
    tool,
    exitCode,
  );
}

/** The ToolFailed error for a command that ran and exited non-zero: the tail of its stderr, redacted. */
export function exitFailure(command: string, args: readonly string[], r: RunResult, where?: string): ToolError {
  const tool = path.basename(command);
  const on = where ? ` on ${where}` : '';
  return new ToolError(
    'ToolFailed',
    `${tool} ${args[0] ?? ''}${on} exited ${r.exitCode}: ${summarizeStderr(r.stderr)}`,
    tool,
    r.exitCode,
  );
}

/**
 * Programs this process has started, by name (for `ip netns exec <ns> <program>`, the
 * program): a counter the benchmark reads to see what each node costs in processes.
 */
export const commandsStarted: Record<string, number> = {};

export function countCommand(file: string, args: readonly string[]): void {
  const inner = path.basename(file) === 'ip' && args[0] === 'netns' && args[1] === 'exec' ? args[3] : undefined;
  const name = path.basename(inner ?? file);
  commandsStarted[name] = (commandsStarted[name] ?? 0) + 1;
}

export async function runCommand(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const tool = path.basename(file);
  countCommand(file, args);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const r = await spawnAndWait(file, args, { ...opts, timeoutMs, maxBuffer: opts.maxBuffer ?? 4 * 1024 * 1024 });

  if (r.outcome === 'canceled') {
    // Surface the activity's own cancellation, not a tool failure.
    throw opts.signal?.reason ?? new ToolError('ToolFailed', `${tool} was cancelled`, tool);
  }
  if (r.outcome === 'timedOut') {
    throw new ToolError('CommandTimeout', `${tool} ${args[0] ?? ''} timed out after ${timeoutMs} ms`, tool);
  }
  if (r.outcome === 'spawnError') {
    if (r.code === 'ENOENT') throw new ToolError('ToolMissing', `${tool} is not installed (run "npm run tools")`, tool);
    throw new ToolError('ToolFailed', `${tool} could not be started: ${r.code ?? 'unknown error'}`, tool);
  }
  if (r.outcome === 'maxBuffer') {
    throw new ToolError(
      'ToolFailed',
      `${tool} ${args[0] ?? ''} printed more than ${opts.maxBuffer ?? 4 * 1024 * 1024} bytes`,
      tool,
    );
  }
  if (r.exitCode === null) {
    throw new ToolError('ToolFailed', `${tool} ${args[0] ?? ''} was killed by ${r.signal ?? 'a signal'}`, tool);
  }
  const { stdout, stderr, exitCode } = { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
  if (exitCode !== 0 && !opts.allowNonZeroExit) {
    throw exitFailure(file, args, { stdout, stderr, exitCode });
  }
  return { stdout, stderr, exitCode };
}

interface SpawnOutcome {
  outcome: 'exited' | 'canceled' | 'timedOut' | 'spawnError' | 'maxBuffer';
  stdout: string;
  stderr: string;
  exitCode: number | null;
  signal?: string | null;
  code?: string;
}

/**
 * node:child_process directly (not execa): a node runs dozens of short
 * commands per step, and execa's per-call machinery cost the worker ~2.5 ms of
 * CPU and ~6 ms of wall time on top of the spawn itself (bench/results, P2).
 * A timeout or a cancellation sends SIGTERM, then SIGKILL 5 s later.
 */
function spawnAndWait(
  file: string,
  args: readonly string[],
  opts: RunOptions & { timeoutMs: number; maxBuffer: number },
): Promise<SpawnOutcome> {
  return new Promise((resolve) => {
    if (opts.signal?.aborted) {
      resolve({ outcome: 'canceled', stdout: '', stderr: '', exitCode: null });
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(file, [...args], {
        env: scrubbedEnv(opts.env),
        cwd: opts.cwd,
        stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
        ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
      });
    } catch (err) {
      resolve({
        outcome: 'spawnError',
        stdout: '',
        stderr: '',
        exitCode: null,
        code: (err as NodeJS.ErrnoException).code,
      });
      return;
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let ending: SpawnOutcome['outcome'] | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (why: SpawnOutcome['outcome']) => {
      if (ending) return;
      ending = why;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      killTimer.unref();
    };
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > opts.maxBuffer) return stop('maxBuffer');
      into.push(chunk);
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    const timer = setTimeout(() => stop('timedOut'), opts.timeoutMs);
    const onAbort = () => stop('canceled');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.input !== undefined) {
      // A program that exits without reading its stdin must not fail the call with EPIPE.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(opts.input);
    }
    let done = false;
    const finish = (o: Omit<SpawnOutcome, 'stdout' | 'stderr'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ ...o, stdout: text(out), stderr: text(err) });
    };
    child.once('error', (e: NodeJS.ErrnoException) => {
      // Only a failed spawn: a running child's errors arrive as its exit.
      if (child.pid === undefined) finish({ outcome: 'spawnError', exitCode: null, code: e.code });
    });
    child.once('close', (code, signal) => finish({ outcome: ending ?? 'exited', exitCode: code, signal }));
    // A grandchild that inherited stdout (a program that backgrounds something) must not
    // hold the call open once the program itself has exited: take what was printed.
    child.once('exit', (code, signal) => {
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish({ outcome: ending ?? 'exited', exitCode: code, signal });
      }, 500).unref();
    });
  });
}

/** UTF-8, without the one final newline (as a shell's $(...) would strip it). */
function text(chunks: Buffer[]): string {
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}
