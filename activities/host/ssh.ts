/**
 * The `ssh` host transport: every node-side command goes through the OpenSSH
 * client, run by execa with an argument array.
 *
 * - The remote command is one string that the remote user's POSIX shell parses,
 *   so each argument is single-quoted (`'` becomes `'\''`): whatever the argument
 *   holds (spaces, quotes, `$()`, `;`, newlines) arrives as exactly one argv entry.
 * - The host key is pinned: `StrictHostKeyChecking=yes` against the spec's
 *   known_hosts file only (no global file, never updated). An unknown or changed
 *   key is `HostKeyMismatch` (security: not retried, the run compensates).
 * - `BatchMode=yes`: no password or passphrase prompt can ever block a worker.
 * - One master connection per target (ControlMaster/ControlPersist), its socket
 *   in a private 0700 directory, so a bootstrap pays one handshake, not one per command.
 * - Secrets travel on stdin only; a daemon's secret stdin becomes an unlinked
 *   0600 file on the remote host, so the daemon can open `/dev/stdin` as a file.
 * - ssh's own failures (exit 255 with ssh's messages) are `HostUnreachable`
 *   (transient), except a refused key, `HostAuthRejected` (permanent: a retry
 *   offers the same key); the remote command's exit status is the command's,
 *   except a program the host does not have (exit 127, the shell's "not found"):
 *   `ToolMissing` (permanent).
 * - A known_hosts or identity file missing on the worker is a configuration
 *   error (`InvalidInput` naming `host.knownHostsFile` / `host.identityFile`),
 *   found before ssh runs: it is not a host key mismatch.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ErrorType } from '../../common/errors.js';
import { SshHostSpec } from '../../common/input.js';
import { NetnsName, parseName } from '../../common/names.js';
import {
  isProgramMissing,
  programMissingError,
  runCommand,
  scrubbedEnv,
  summarizeStderr,
  ToolError,
  type RunOptions,
  type RunResult,
} from './exec.js';
import type { DaemonOptions, HostTransport } from './transport.js';

export interface SshTransportOptions {
  /** Directory for ControlMaster sockets (created 0700; must be ours and private). */
  controlDir?: string;
  /** How long an idle master connection stays up (default 120 s). */
  controlPersistSeconds?: number;
  /** Set false to open a fresh connection per command (no ControlMaster). */
  reuseConnection?: boolean;
  /**
   * Run the ssh client inside this network namespace (`ip netns exec`). Only the
   * lab needs it: its nodes' addresses are reachable from the hub namespace, not
   * from the worker's. Not part of the workflow input.
   */
  clientNetns?: string;
}

/** Quote one word for a POSIX shell: single quotes, with `'` written as `'\''`. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The remote command line for argv (each word quoted), run from `cwd` (default
 * `/`): a session starts in the login user's home, which a command that drops
 * to a workload uid (setpriv) cannot enter, and a daemon should not pin.
 */
export function remoteCommandLine(argv: readonly string[], cwd = '/'): string {
  if (argv.length === 0) throw new ToolError('InvalidInput', 'empty remote command', 'ssh');
  return `cd ${shellQuote(cwd)} && ${argv.map(shellQuote).join(' ')}`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The remote argv for `command args` with the RunOptions that a remote host
 * must apply itself: extra environment (`env`), uid/gid (`setpriv`).
 */
export function remoteArgv(
  command: string,
  args: readonly string[],
  opts: Pick<RunOptions, 'env' | 'uid' | 'gid'> = {},
): string[] {
  let argv = [command, ...args];
  if (opts.uid !== undefined || opts.gid !== undefined) {
    const ids = [
      ...(opts.uid !== undefined ? [`--reuid=${opts.uid}`] : []),
      ...(opts.gid !== undefined ? [`--regid=${opts.gid}`, '--clear-groups'] : []),
    ];
    argv = ['setpriv', ...ids, '--', ...argv];
  }
  const env = Object.entries(opts.env ?? {});
  if (env.length > 0) {
    for (const [k] of env)
      if (!ENV_NAME.test(k)) throw new ToolError('InvalidInput', `environment variable name "${k}" is invalid`, 'ssh');
    argv = ['env', ...env.map(([k, v]) => `${k}=${v}`), ...argv];
  }
  return argv;
}

/**
 * Start `"$@"` detached on the remote host (own session, stdio to the log file),
 * print its pid. $1 is the log file, $2 the program (checked first: a program
 * the host lacks is the shell's exit 127 here, not a daemon that dies in its
 * log after we reported it started). With $NB_STDIN=1 the script's stdin (the
 * secret) is copied into a 0600 file that is unlinked before the daemon starts:
 * only the daemon's descriptor remains, and it can be opened as /dev/stdin.
 * `setsid` does not fork (a background job is not a group leader), so `$!` is the daemon.
 */
export const DAEMON_SCRIPT = [
  'umask 077',
  'log=$1; prog=$2; shift 2',
  'command -v "$prog" >/dev/null 2>&1 || { echo "nodeboot-daemon: $prog: command not found" >&2; exit 127; }',
  'mkdir -p -- "$(dirname -- "$log")" || exit 1',
  'if [ "$NB_STDIN" = 1 ]; then',
  '  d=/dev/shm; [ -d "$d" ] && [ -w "$d" ] || d=${TMPDIR:-/tmp}',
  '  f=$(mktemp "$d/nodeboot-stdin-XXXXXXXXXXXX") || exit 1',
  '  cat > "$f" || { rm -f -- "$f"; exit 1; }',
  '  exec 3< "$f"; rm -f -- "$f"',
  'else',
  '  exec 3< /dev/null',
  'fi',
  'setsid "$@" <&3 3<&- >> "$log" 2>&1 &',
  'echo "$!"',
].join('\n');

export function daemonArgv(command: string, args: readonly string[], opts: DaemonOptions): string[] {
  return [
    'env',
    `NB_STDIN=${opts.input !== undefined ? 1 : 0}`,
    'sh',
    '-c',
    DAEMON_SCRIPT,
    'nodeboot-daemon',
    opts.logFile,
    command,
    ...remoteArgv(command, args, { env: opts.env, uid: opts.uid, gid: opts.gid }),
  ];
}

/*
 * ssh and the remote command share stderr, and a remote command may exit 255
 * too, so ssh's own verdicts are matched as ssh prints them: whole lines, in
 * ssh's words. A tool on the node that prints "open x: Permission denied (13)"
 * is that tool's failure, not a refused key.
 */
/** ssh's own messages that mean the host key is unknown or not the pinned one. */
const HOST_KEY_FAILURE =
  /^Host key verification failed\.|^@\s+WARNING: (?:REMOTE HOST IDENTIFICATION HAS CHANGED|POSSIBLE DNS SPOOFING)|^No [A-Z0-9-]+ host key is known for |^Host key for \S+ has changed/im;
/** ssh's own messages that mean the server refused every key we offered (`root@h: Permission denied (publickey).`). */
const AUTH_FAILURE =
  /^(?:[^\s@]+@\S+: )?Permission denied \([a-z0-9-]+(?:,[a-z0-9-]+)*\)\.\r?$|^Received disconnect from \S+ port \d+:\d+: Too many authentication failures/im;
/** ssh's own messages that mean we never got a session (network, sshd). */
const CONNECT_FAILURE =
  /ssh: connect to host|Connection refused|Connection timed out|No route to host|Network is unreachable|Could not resolve hostname|Connection closed by|Connection reset by|kex_exchange_identification|banner exchange|Broken pipe|Cannot open network namespace|Operation timed out/i;

/**
 * Classify an ssh exit. `undefined` means the remote command ran and this is its
 * own exit status. ssh reports its own failures as 255 (a remote command can also
 * exit 255; then stderr carries none of ssh's messages).
 */
export function classifySshExit(exitCode: number, stderr: string): ErrorType | undefined {
  if (exitCode !== 255) return undefined;
  if (HOST_KEY_FAILURE.test(stderr)) return 'HostKeyMismatch';
  if (AUTH_FAILURE.test(stderr)) return 'HostAuthRejected';
  if (CONNECT_FAILURE.test(stderr)) return 'HostUnreachable';
  return undefined;
}

export interface SshCommandPlan {
  /** The program the worker runs (`ssh`, or `ip` when the client runs in a netns). */
  file: string;
  args: string[];
}

/** The ssh options every connection uses: pinned key, batch mode, no forwarding. */
export function sshOptions(
  spec: SshHostSpec,
  controlPath: string | undefined,
  master: 'auto' | 'yes' | 'no',
  persistSeconds: number,
): string[] {
  const o = (kv: string) => ['-o', kv];
  return [
    '-F',
    '/dev/null', // no user or system client config: the spec is the whole truth
    ...o('BatchMode=yes'),
    ...o('StrictHostKeyChecking=yes'),
    ...o(`UserKnownHostsFile=${spec.knownHostsFile}`),
    ...o('GlobalKnownHostsFile=/dev/null'),
    ...o('UpdateHostKeys=no'),
    ...o('CheckHostIP=no'),
    ...o(`IdentityFile=${spec.identityFile}`),
    ...o('IdentitiesOnly=yes'),
    ...o('IdentityAgent=none'),
    ...o('PasswordAuthentication=no'),
    ...o('KbdInteractiveAuthentication=no'),
    ...o('ForwardAgent=no'),
    ...o('ForwardX11=no'),
    ...o('ClearAllForwardings=yes'),
    ...o(`ConnectTimeout=${spec.connectTimeoutSeconds}`),
    ...o('ServerAliveInterval=5'),
    ...o('ServerAliveCountMax=3'),
    ...(controlPath !== undefined
      ? [
          ...o(`ControlMaster=${master}`),
          ...o(`ControlPath=${controlPath}`),
          ...(master === 'no' ? [] : o(`ControlPersist=${persistSeconds}`)),
        ]
      : o('ControlMaster=no')),
    '-l',
    spec.user,
    '-p',
    String(spec.port),
    '-T',
  ];
}

/** Build the worker-side command for one remote command line. */
export function planSsh(
  spec: SshHostSpec,
  remote: string | undefined,
  o: {
    controlPath?: string;
    master?: 'auto' | 'yes' | 'no';
    persistSeconds?: number;
    clientNetns?: string;
    extra?: string[];
  },
): SshCommandPlan {
  const args = [
    ...sshOptions(spec, o.controlPath, o.master ?? 'no', o.persistSeconds ?? 120),
    ...(o.extra ?? []),
    '--',
    spec.host,
    ...(remote !== undefined ? [remote] : []),
  ];
  return o.clientNetns !== undefined
    ? { file: 'ip', args: ['netns', 'exec', o.clientNetns, 'ssh', ...args] }
    : { file: 'ssh', args };
}

/** The private directory that holds control sockets: created 0700, refused if anyone else could enter it. */
export function ensurePrivateDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new ToolError(
      'ToolFailed',
      `ssh control directory ${dir} must be a directory owned by us with mode 0700`,
      'ssh',
    );
  }
  return dir;
}

function defaultControlDir(): string {
  return path.join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), `nodeboot-ssh-${process.getuid?.() ?? 'u'}`);
}

/** One master per control path per process; concurrent first calls share its creation. */
const masters = new Map<string, Promise<void>>();

export function sshTransport(
  specIn: SshHostSpec | Record<string, unknown>,
  opts: SshTransportOptions = {},
): HostTransport {
  const parsed = SshHostSpec.safeParse(specIn);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ToolError('InvalidInput', `host.${issue?.path.join('.') ?? ''} ${issue?.message ?? 'is invalid'}`, 'ssh');
  }
  const spec = parsed.data;
  const clientNetns =
    opts.clientNetns !== undefined ? parseName(NetnsName, 'clientNetns', opts.clientNetns) : undefined;
  const persistSeconds = opts.controlPersistSeconds ?? 120;
  const label = `ssh ${spec.user}@${spec.host}:${spec.port}`;
  const controlPath = opts.reuseConnection !== false ? controlPathFor(spec, clientNetns, opts.controlDir) : undefined;

  const fail = (type: ErrorType, r: RunResult, what: string) =>
    new ToolError(
      type,
      type === 'HostKeyMismatch'
        ? `${label}: the host key does not match the pinned key in ${spec.knownHostsFile} (refusing to connect)`
        : type === 'HostAuthRejected'
          ? `${label}: the host refused the key ${spec.identityFile} for ${what}: ${summarizeStderr(r.stderr, 200)}`
          : `${label}: cannot reach the host for ${what}: ${summarizeStderr(r.stderr, 200)}`,
      'ssh',
      r.exitCode,
    );

  /**
   * The worker-side files the spec names must exist before ssh runs: without
   * its known_hosts file ssh reports every host key as unknown, which would
   * read as HostKeyMismatch (a security failure that bans the agent) when the
   * worker is only misconfigured.
   */
  function checkClientFiles(): void {
    for (const field of ['knownHostsFile', 'identityFile'] as const) {
      const file = spec[field];
      let ok = false;
      try {
        ok = statSync(file).isFile();
        accessSync(file, constants.R_OK);
      } catch {
        ok = false;
      }
      if (!ok) throw new ToolError('InvalidInput', `host.${field} ${file} is not a readable file on the worker`, 'ssh');
    }
  }

  async function ensureMaster(signal?: AbortSignal): Promise<void> {
    checkClientFiles();
    if (controlPath === undefined) return;
    const cp = controlPath;
    if (existsSync(cp)) return;
    let p = masters.get(cp);
    if (!p) {
      p = startMaster(cp, signal).finally(() => masters.delete(cp));
      masters.set(cp, p);
    }
    await p;
  }

  /**
   * Open the master connection in the background (`-f -N`). Its stderr goes to
   * a file, not a pipe: the backgrounded master would hold a pipe open for as
   * long as it lives. The file is read for classification, then removed.
   */
  async function startMaster(cp: string, signal?: AbortSignal): Promise<void> {
    const dir = ensurePrivateDir(path.dirname(cp));
    const errFile = path.join(dir, `${path.basename(cp, '.sock')}.${process.pid}.err`);
    const err = openSync(errFile, 'w', 0o600);
    const plan = planSsh(spec, undefined, {
      controlPath: cp,
      master: 'yes',
      persistSeconds,
      clientNetns,
      extra: ['-f', '-N'],
    });
    try {
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn(plan.file, plan.args, { stdio: ['ignore', 'ignore', err], env: scrubbedEnv(), signal });
        const timer = setTimeout(() => child.kill('SIGKILL'), (spec.connectTimeoutSeconds + 20) * 1000);
        child.once('error', (e: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          reject(
            e.code === 'ENOENT'
              ? new ToolError(
                  'ToolMissing',
                  `${plan.file} is not installed on the worker (apt-get install openssh-client)`,
                  'ssh',
                )
              : e.name === 'AbortError'
                ? (signal?.reason ?? e)
                : new ToolError('ToolFailed', `ssh could not be started: ${e.code ?? 'error'}`, 'ssh'),
          );
        });
        child.once('exit', (c, sig) => {
          clearTimeout(timer);
          resolve(c ?? (sig ? 255 : 0));
        });
      });
      if (code !== 0) {
        const stderr = readFileSync(errFile, 'utf8');
        const r = { stdout: '', stderr, exitCode: code };
        throw fail(classifySshExit(255, stderr) ?? 'HostUnreachable', r, 'the master connection');
      }
    } finally {
      closeSync(err);
      rmSync(errFile, { force: true });
    }
  }

  /** Run one remote command line. `program` is the command as asked for (to tell "not installed" apart). */
  async function runRemote(remote: string, what: string, opts: RunOptions, program?: string): Promise<RunResult> {
    await ensureMaster(opts.signal);
    const plan = planSsh(spec, remote, { controlPath, master: 'no', persistSeconds, clientNetns });
    let r: RunResult;
    try {
      r = await runCommand(plan.file, plan.args, {
        timeoutMs: opts.timeoutMs,
        input: opts.input,
        signal: opts.signal,
        maxBuffer: opts.maxBuffer,
        allowNonZeroExit: true,
      });
    } catch (e) {
      if (e instanceof ToolError && e.type === 'CommandTimeout')
        throw new ToolError('CommandTimeout', `${what} on ${label} timed out`, what);
      throw e;
    }
    const type = classifySshExit(r.exitCode, r.stderr);
    if (type) throw fail(type, r, what);
    // Not the remote program's verdict (even for callers that read non-zero exits): it is not installed.
    if (program !== undefined && isProgramMissing(program, r.exitCode, r.stderr))
      throw programMissingError(program, label, r.exitCode);
    if (r.exitCode !== 0 && !opts.allowNonZeroExit) {
      throw new ToolError(
        'ToolFailed',
        `${what} on ${label} exited ${r.exitCode}: ${summarizeStderr(r.stderr)}`,
        what,
        r.exitCode,
      );
    }
    return r;
  }

  return {
    kind: 'ssh',
    label,
    run: (command, args, o = {}) =>
      runRemote(remoteCommandLine(remoteArgv(command, args, o), o.cwd), path.basename(command), o, command),
    async spawnDaemon(command, args, o) {
      const r = await runRemote(
        remoteCommandLine(daemonArgv(command, args, o)),
        path.basename(command),
        { input: o.input ?? '', timeoutMs: 30_000 },
        command,
      );
      const pid = Number(r.stdout.trim().split('\n').pop());
      if (!Number.isInteger(pid) || pid <= 1)
        throw new ToolError(
          'ToolFailed',
          `${path.basename(command)} on ${label} did not report a pid`,
          path.basename(command),
        );
      return pid;
    },
  };
}

/**
 * Our own hash of everything that decides whom we talk to and how we trust it
 * (ssh's %C leaves out the key files), so a master is never shared across pins.
 */
function controlPathFor(spec: SshHostSpec, clientNetns: string | undefined, controlDir: string | undefined): string {
  const id = createHash('sha256')
    .update(JSON.stringify([spec, clientNetns ?? '']))
    .digest('hex')
    .slice(0, 24);
  return path.join(controlDir ?? defaultControlDir(), `${id}.sock`);
}

/** Where the control socket for a target lives (tests assert reuse by it). */
export function sshControlPath(specIn: SshHostSpec | Record<string, unknown>, opts: SshTransportOptions = {}): string {
  return controlPathFor(SshHostSpec.parse(specIn), opts.clientNetns, opts.controlDir);
}

/** Close the master connection for a target (tests and shutdown); idempotent. */
export async function closeSshMaster(
  specIn: SshHostSpec | Record<string, unknown>,
  opts: SshTransportOptions = {},
): Promise<void> {
  const spec = SshHostSpec.parse(specIn);
  const clientNetns =
    opts.clientNetns !== undefined ? parseName(NetnsName, 'clientNetns', opts.clientNetns) : undefined;
  const cp = controlPathFor(spec, clientNetns, opts.controlDir);
  if (!existsSync(cp)) return;
  const plan = planSsh(spec, undefined, { controlPath: cp, master: 'no', clientNetns, extra: ['-O', 'exit'] });
  await runCommand(plan.file, plan.args, { allowNonZeroExit: true, timeoutMs: 10_000 });
  rmSync(cp, { force: true });
}
