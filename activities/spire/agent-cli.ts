/**
 * Typed wrapper of the `spire-agent` CLI (v1.15): render the agent config, run
 * the agent as a daemon, check its health, fetch X.509-SVIDs through its
 * Workload API, stop it.
 *
 * The join token reaches the agent only on stdin: the agent runs as
 * `spire-agent run -config /dev/stdin` and the whole config, token included,
 * is piped in once. No file, argv or environment variable ever holds the
 * token. The config written next to the data dir for operators is rendered
 * without it (an attested agent restarts from its stored SVID, not the token).
 * Other attestors (attestors/) name credential files in their plugin_data:
 * paths only, the keys stay in their files.
 */
import { setprivArgv } from '../host/run-as.js';
import path from 'node:path';
import { z } from 'zod';
import { SafePath, TrustDomain, parseName } from '../../common/names.js';
import { isProgramMissing, summarizeStderr, ToolError } from '../host/exec.js';
import type { HostTransport } from '../host/transport.js';
import { assertReachedHost, runSpire, socketIsHere, type SpireCliTarget } from './cli-common.js';
import { socketServing } from './server-api.js';
import { ensureDir, ensureDirAs, ensureParent, removeNodeFile, writeNodeFile } from '../host/files.js';
import { daemonAlive, readProcessRef, sleep, stopDaemon, writePidFile, type ProcessRef } from '../host/process.js';
import type { JoinToken } from './server-cli.js';

const TOOL = 'spire-agent';

/** Where the agent dials the server: an IPv4 address or a DNS name. */
const ServerAddress = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/, 'must be an IPv4 address or a DNS name');

const JoinTokenValue = z.string().regex(/^[A-Za-z0-9._-]{1,255}$/, 'must be a SPIRE join token');

/** A plugin type name as SPIRE spells it ("join_token", "x509pop"). */
const PluginName = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'must be a SPIRE plugin name');
const PluginKey = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'must be a plugin_data key');
/** No quote, backslash, newline or "${": a value never needs escaping, nor can it close its string. */
const PluginString = z
  .string()
  .max(4096)
  .regex(/^[^"\\\n\r$]*$/, 'must not hold quotes, backslashes, newlines or "$"');

export type PluginDataValue = string | number | boolean | readonly string[];

/** The NodeAttestor block of a config (agent or server): a type and its plugin_data. */
export interface NodeAttestorBlock {
  type: string;
  pluginData: Record<string, PluginDataValue>;
}

/** `NodeAttestor "<type>" { plugin_data { ... } }`, indented for a `plugins {` block. Every value is validated. */
export function renderNodeAttestorBlock(b: NodeAttestorBlock, indent = '  '): string[] {
  const type = parseName(PluginName, 'nodeAttestor.type', b.type);
  const value = (k: string, v: PluginDataValue): string => {
    if (typeof v === 'number') return String(parseName(z.number().finite(), `pluginData.${k}`, v));
    if (typeof v === 'boolean') return String(v);
    if (typeof v === 'string') return `"${parseName(PluginString, `pluginData.${k}`, v)}"`;
    return `[${v.map((x, i) => `"${parseName(PluginString, `pluginData.${k}.${i}`, x)}"`).join(', ')}]`;
  };
  const entries = Object.entries(b.pluginData);
  const body = entries.map(([k, v]) => `${indent}    ${parseName(PluginKey, 'pluginData key', k)} = ${value(k, v)}`);
  return entries.length === 0
    ? [`${indent}NodeAttestor "${type}" {`, `${indent}  plugin_data {}`, `${indent}}`]
    : [`${indent}NodeAttestor "${type}" {`, `${indent}  plugin_data {`, ...body, `${indent}  }`, `${indent}}`];
}

const JOIN_TOKEN_BLOCK: NodeAttestorBlock = { type: 'join_token', pluginData: {} };

export interface AgentConfigOptions {
  trustDomain: string;
  serverAddress: string;
  serverPort: number;
  /** Agent state (its SVID, keys, bundle): keep across restarts. */
  dataDir: string;
  /** The Workload API socket workloads dial. */
  socketPath: string;
  /** PEM bundle the agent trusts when it first dials the server (preferred). */
  trustBundlePath?: string;
  /** Trust the first server certificate blindly. Only when no bundle can be supplied. */
  insecureBootstrap?: boolean;
  logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** Included only in the config piped on stdin. */
  joinToken?: JoinToken | string;
  /** How the agent attests (default join_token). */
  nodeAttestor?: NodeAttestorBlock;
  /**
   * `experimental { sync_interval }`, in ms: how often the agent asks the server for its
   * entries (SPIRE's default 5 s). An entry created after the agent started reaches it
   * at its next sync, so this bounds how long step 6 waits for a new workload's SVID.
   */
  syncIntervalMs?: number;
}

/** The agent's HCL config. Every value is validated, so nothing needs escaping. */
export function renderAgentConfig(o: AgentConfigOptions): string {
  const td = parseName(TrustDomain, 'trustDomain', o.trustDomain);
  const addr = parseName(ServerAddress, 'serverAddress', o.serverAddress);
  const port = parseName(z.number().int().min(1).max(65535), 'serverPort', o.serverPort);
  const dataDir = parseName(SafePath, 'dataDir', o.dataDir);
  const socketPath = parseName(SafePath, 'socketPath', o.socketPath);
  if (o.trustBundlePath !== undefined && o.insecureBootstrap) {
    throw new ToolError('InvalidInput', 'trustBundlePath and insecureBootstrap are mutually exclusive', TOOL);
  }
  if (o.trustBundlePath === undefined && !o.insecureBootstrap) {
    throw new ToolError(
      'InvalidInput',
      'trustBundlePath is required (or insecureBootstrap when no bundle can be supplied)',
      TOOL,
    );
  }
  const bootstrap =
    o.trustBundlePath !== undefined
      ? [
          `trust_bundle_path = "${parseName(SafePath, 'trustBundlePath', o.trustBundlePath)}"`,
          `trust_bundle_format = "pem"`,
        ]
      : ['insecure_bootstrap = true'];
  const attestor = o.nodeAttestor ?? JOIN_TOKEN_BLOCK;
  if (o.joinToken !== undefined && attestor.type !== 'join_token') {
    throw new ToolError('InvalidInput', `a join token is only for the join_token attestor, not ${attestor.type}`, TOOL);
  }
  const token =
    o.joinToken === undefined
      ? []
      : [
          `join_token = "${parseName(JoinTokenValue, 'joinToken', typeof o.joinToken === 'string' ? o.joinToken : o.joinToken.value)}"`,
        ];
  const sync =
    o.syncIntervalMs === undefined
      ? []
      : [
          'experimental {',
          `  sync_interval = "${parseName(z.number().int().min(100).max(3_600_000), 'syncIntervalMs', o.syncIntervalMs)}ms"`,
          '}',
        ];
  const agent = [
    `data_dir = "${dataDir}"`,
    `log_level = "${o.logLevel ?? 'INFO'}"`,
    `server_address = "${addr}"`,
    `server_port = "${port}"`,
    `socket_path = "${socketPath}"`,
    `trust_domain = "${td}"`,
    ...bootstrap,
    ...token,
    ...sync,
  ];
  return [
    'agent {',
    ...agent.map((l) => `  ${l}`),
    '}',
    '',
    'plugins {',
    ...renderNodeAttestorBlock(attestor),
    '  KeyManager "disk" {',
    '    plugin_data {',
    `      directory = "${dataDir}"`,
    '    }',
    '  }',
    '  WorkloadAttestor "unix" {',
    '    plugin_data {}',
    '  }',
    '}',
    '',
  ].join('\n');
}

export interface StartAgentOptions extends Omit<AgentConfigOptions, 'joinToken' | 'trustBundlePath'> {
  transport: HostTransport;
  binary?: string;
  /** join_token only: consumed by the first attestation; ignored when the agent is already running. */
  joinToken?: JoinToken;
  /** PEM trust bundle (from `bundleShow`); written to `<dataDir>/bootstrap-bundle.pem`. */
  trustBundlePem?: string;
  pidFile: string;
  logFile: string;
  /** How long the agent gets to attest and report healthy (default 60 s). */
  healthTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface AgentHandle {
  pid: number;
  socketPath: string;
  pidFile: string;
  logFile: string;
  /** True when a healthy agent from an earlier attempt was found and kept (idempotent start). */
  alreadyRunning: boolean;
}

/**
 * Start the agent as a daemon and wait until it has attested and serves the
 * Workload API. Idempotent: an agent already running from `pidFile` is reused.
 * Throws AttestationRejected when the server refuses the node (reused or unknown
 * token, a certificate it does not trust, expired, wrong trust domain, banned),
 * AgentUnhealthy when it does not come up in time.
 */
export async function startAgent(o: StartAgentOptions): Promise<AgentHandle> {
  const t = o.transport;
  const binary = o.binary ?? TOOL;
  const program = path.basename(binary);
  const pidFile = parseName(SafePath, 'pidFile', o.pidFile);
  const logFile = parseName(SafePath, 'logFile', o.logFile);
  const target: SpireCliTarget = { transport: t, socketPath: o.socketPath, binary, signal: o.signal };

  const existing = await readProcessRef(t, pidFile);
  if (existing !== undefined && (await daemonAlive(t, existing, program))) {
    await waitAgentHealthy(target, existing, logFile, await logSize(t, logFile), o.healthTimeoutMs ?? 60_000);
    return { pid: existing.pid, socketPath: o.socketPath, pidFile, logFile, alreadyRunning: true };
  }

  await ensureDir(t, o.dataDir, 0o700);
  await ensureParent(t, pidFile);
  // Workloads of any uid must reach the socket, so its directory is world-searchable.
  await ensureDir(t, path.dirname(parseName(SafePath, 'socketPath', o.socketPath)), 0o755);
  let trustBundlePath: string | undefined;
  if (o.trustBundlePem !== undefined) {
    if (!/-----BEGIN CERTIFICATE-----/.test(o.trustBundlePem))
      throw new ToolError('InvalidInput', 'trustBundlePem must hold PEM certificates', TOOL);
    trustBundlePath = path.join(o.dataDir, 'bootstrap-bundle.pem');
    await writeNodeFile(t, trustBundlePath, o.trustBundlePem, 0o644);
  }
  if ((o.nodeAttestor ?? JOIN_TOKEN_BLOCK).type === 'join_token' && o.joinToken === undefined) {
    throw new ToolError('InvalidInput', 'the join_token attestor needs a join token to start an agent', TOOL);
  }
  const base = {
    ...o,
    trustBundlePath,
    insecureBootstrap: trustBundlePath === undefined ? o.insecureBootstrap : false,
  };
  // For operators: the config as it runs, minus the token.
  await writeNodeFile(
    t,
    path.join(o.dataDir, 'agent.conf'),
    renderAgentConfig({ ...base, joinToken: undefined }),
    0o600,
  );

  const logFrom = await logSize(t, logFile);
  const pid = await t.spawnDaemon(binary, ['run', '-config', '/dev/stdin'], {
    logFile,
    input: renderAgentConfig({ ...base, joinToken: o.joinToken }),
  });
  // Pid and start time: a recycled pid is never taken for this agent (host/process.ts).
  const proc = await writePidFile(t, pidFile, pid);
  await waitAgentHealthy(target, proc, logFile, logFrom, o.healthTimeoutMs ?? 60_000);
  return { pid, socketPath: o.socketPath, pidFile, logFile, alreadyRunning: false };
}

/**
 * True when the agent answers healthy on its Workload API socket. The socket is on
 * the worker's filesystem for local and netns nodes (a unix path socket is not
 * network-namespaced): asked there directly, the Check `spire-agent healthcheck`
 * sends, without a Go process; over ssh the CLI on the node asks it.
 */
export async function agentHealthcheck(t: SpireCliTarget): Promise<boolean> {
  if (socketIsHere(t.transport)) {
    const socketPath = parseName(SafePath, 'socketPath', t.socketPath);
    return socketServing(socketPath, { timeoutMs: t.timeoutMs, signal: t.signal });
  }
  const r = await runSpire(t, TOOL, agentArgv.healthcheck(t));
  return r.exitCode === 0;
}

/**
 * Why an attestation attempt failed, as the agent logs it, when retrying cannot
 * help: the token is unknown, expired or already used, the node is banned, the
 * node's credential is refused (another CA, expired, not for signing, key and
 * certificate apart), or the server's certificate does not chain to the bundle
 * we gave the agent. The agent itself keeps retrying most of these for a
 * minute (only PermissionDenied makes it exit: sshpop's refusals are Internal),
 * so we read its log instead of waiting it out.
 */
const ATTESTATION_REFUSED = new RegExp(
  [
    'join token does not exist or has already been used',
    'attestation data has already been used',
    'code = PermissionDenied',
    'code = InvalidArgument',
    'agent is banned',
    'certificate signed by unknown authority',
    // x509pop (agent and server)
    'certificate has expired or is not yet valid',
    'certificate not intended for digital signature use',
    'unable to load keypair',
    // sshpop (server, all codes.Internal)
    'no authorities for hostname',
    'ssh: cert has expired',
    'ssh: cert is not yet valid',
    'cert principal is not in domain',
    'certificate presented as a host key',
    'cert has no valid principals',
    String.raw`nodeattestor\(sshpop\): failed to verify signature`,
  ].join('|'),
  'i',
);

/** The agent's log lines about a failed attestation (warnings while it retries, the error when it gives up). */
const ATTESTATION_FAILURE_LINE = /Failed to retrieve attestation result|Agent crashed|level=(error|fatal)/i;

async function logSize(t: HostTransport, logFile: string): Promise<number> {
  if (t.fs) return (await t.fs.lstat(logFile))?.size ?? 0;
  const r = await t.run('stat', ['-c', '%s', '--', logFile], { allowNonZeroExit: true });
  const n = Number(r.stdout.trim());
  return r.exitCode === 0 && Number.isSafeInteger(n) ? n : 0;
}

/** Log lines written since byte `from` (this start's lines only: the log is appended across restarts). */
async function logSince(t: HostTransport, logFile: string, from: number): Promise<string[]> {
  if (t.fs) return (await t.fs.readFile(logFile, { from, maxBytes: 16 * 1024 * 1024 }))?.split('\n') ?? [];
  const r = await t.run('tail', ['-c', `+${from + 1}`, '--', logFile], {
    allowNonZeroExit: true,
    maxBuffer: 16 * 1024 * 1024,
  });
  return r.exitCode === 0 ? r.stdout.split('\n') : [];
}

async function waitAgentHealthy(
  t: SpireCliTarget,
  pid: ProcessRef,
  logFile: string,
  logFrom: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const program = path.basename(t.binary ?? TOOL);
  // An agent attests in ~60 ms on a lab node (bench/results/report.md, P1's floors): ask again
  // soon at first, then every HEALTH_POLL_MAX_MS; read its log about once a second.
  let delay = HEALTH_POLL_FIRST_MS;
  let logReadAt = Date.now();
  for (;;) {
    if (await agentHealthcheck(t)) return;
    const alive = await daemonAlive(t.transport, pid, program);
    if (!alive || Date.now() - logReadAt >= LOG_READ_EVERY_MS) {
      logReadAt = Date.now();
      const failures = (await logSince(t.transport, logFile, logFrom)).filter((l) => ATTESTATION_FAILURE_LINE.test(l));
      const refused = failures.find((l) => ATTESTATION_REFUSED.test(l));
      if (refused) {
        // Retrying cannot fix this; stop the agent rather than let it spin for a minute.
        if (alive) await stopDaemon(t.transport, pid, { program, signal: t.signal });
        throw new ToolError(
          'AttestationRejected',
          `spire-agent on ${t.transport.label} was refused by the server: ${summarizeStderr(errorOf(refused), 240)}`,
          TOOL,
        );
      }
      if (!alive) {
        const why = failures.at(-1);
        throw new ToolError(
          'AgentUnhealthy',
          `spire-agent on ${t.transport.label} exited before becoming healthy${why ? `: ${summarizeStderr(errorOf(why), 240)}` : ''} (log ${logFile})`,
          TOOL,
        );
      }
    }
    if (Date.now() >= deadline) {
      throw new ToolError(
        'AgentUnhealthy',
        `spire-agent on ${t.transport.label} not healthy after ${timeoutMs} ms (log ${logFile})`,
        TOOL,
      );
    }
    await sleep(delay, t.signal);
    delay = Math.min(delay * 2, HEALTH_POLL_MAX_MS);
  }
}

/** waitAgentHealthy's first wait between checks, doubled each round up to the second. */
const HEALTH_POLL_FIRST_MS = 20;
const HEALTH_POLL_MAX_MS = 250;
/** How often waitAgentHealthy reads the agent's log for a refused attestation. */
const LOG_READ_EVERY_MS = 1_000;

/** The `error="..."` part of a logrus text line, or the line. */
function errorOf(line: string): string {
  return /error="((?:[^"\\]|\\.)*)"/.exec(line)?.[1]?.replace(/\\"/g, '"') ?? line;
}

/**
 * Stop the agent recorded in `pidFile` (SIGTERM, then SIGKILL) and remove the
 * pidfile. Keeps the data dir. Returns false when no agent was running. Idempotent.
 */
export async function stopAgent(
  transport: HostTransport,
  pidFile: string,
  opts: { binary?: string; signal?: AbortSignal } = {},
): Promise<boolean> {
  const pid = await readProcessRef(transport, pidFile);
  const stopped =
    pid !== undefined &&
    (await stopDaemon(transport, pid, { program: path.basename(opts.binary ?? TOOL), signal: opts.signal }));
  await removeNodeFile(transport, parseName(SafePath, 'pidFile', pidFile));
  return stopped;
}

export interface FetchX509Options {
  /**
   * Directory the SVID files are written to, by `uid`/`gid`. Made (0700) as that
   * uid when missing; root never creates, changes or reads anything inside a
   * directory that uid can write (host/files.ts ensureDirAs / readNodeFileAs).
   */
  writeDir: string;
  /** The workload's identity as the unix attestor sees it. */
  uid: number;
  gid: number;
  /** Keep retrying "no identity issued" (entry not synced to the agent yet) this long (default 30 s). */
  waitMs?: number;
  /** Remove `writeDir` (as `uid`) before fetching into it: nothing a previous fetch, or the uid, left there is read. */
  fresh?: boolean;
}

export interface FetchedX509Svid {
  /** The SPIFFE ID the agent issued, as printed by the CLI. */
  spiffeId: string;
  svidPath: string;
  keyPath: string;
  bundlePath: string;
  /** Leaf first, then intermediates. */
  svidPem: string;
  bundlePem: string;
}

export const agentArgv = {
  healthcheck: (t: SpireCliTarget) => ['healthcheck', '-socketPath', parseName(SafePath, 'socketPath', t.socketPath)],
};

/** Exit statuses of the fetch script (FETCH_SCRIPT) for its own steps, apart from the CLI's. */
export const FETCH_EXIT = { noDir: 120, unreadable: 121, notRemoved: 122 } as const;
/** Printed by the fetch script between the CLI's output and the files it wrote (PEM never holds it). */
const FILES_MARK = '--nodeboot-svid-files--';
/** Bytes read of each PEM file at most: a /dev/zero planted in its place must not flood the worker. */
const PEM_MAX = 1024 * 1024;

// One process per attempt, all of it as the workload's uid (it may have planted links in the
// write dir, to /etc/shadow say): remove the dir when asked, make it, fetch into it, print the
// two public PEM files. Constant script, inputs only as positional parameters:
// $1 fresh|keep, $2 write dir, $3 spire-agent, $4 socket, $5 byte cap, $6 the files mark.
const FETCH_SCRIPT =
  'if [ "$1" = fresh ]; then rm -rf -- "$2" || exit 122; fi; mkdir -p -m 700 -- "$2" || exit 120; ' +
  '"$3" api fetch x509 -socketPath "$4" -write "$2" || exit; ' +
  'printf "\\n%s\\n" "$6"; head -c "$5" -- "$2/svid.0.pem" || exit 121; printf "\\0"; ' +
  'head -c "$5" -- "$2/bundle.0.pem" || exit 121';

/**
 * `setpriv` argv of one fetch attempt (FETCH_SCRIPT) as the workload's uid: RunOptions.uid
 * cannot be used because `ip netns exec` itself must run as root.
 */
export function fetchScriptArgv(t: SpireCliTarget, o: FetchX509Options): string[] {
  return setprivArgv(o, [
    'sh',
    '-c',
    FETCH_SCRIPT,
    'svid-fetch',
    o.fresh ? 'fresh' : 'keep',
    parseName(SafePath, 'writeDir', o.writeDir),
    t.binary ?? TOOL,
    parseName(SafePath, 'socketPath', t.socketPath),
    String(PEM_MAX),
    FILES_MARK,
  ]);
}

/**
 * Fetch the X.509-SVID of the workload running as `uid`:`gid`, written to
 * `writeDir` (svid.0.pem, svid.0.key, bundle.0.pem). Returns the paths and the
 * public PEMs; the private key stays in its file. Throws WorkloadFailed when
 * the agent issues no identity to that uid within `waitMs`.
 *
 * Each attempt is one command as the uid: make the dir, fetch, read the files.
 * Only when the uid cannot make `writeDir` (a parent it may not write) does root
 * make it, the way ensureDirAs does (host/files.ts), before the next attempt.
 */
export async function fetchX509Svid(t: SpireCliTarget, o: FetchX509Options): Promise<FetchedX509Svid> {
  const args = fetchScriptArgv(t, o);
  const owner = { uid: o.uid, gid: o.gid };
  const binary = t.binary ?? TOOL;
  const deadline = Date.now() + (o.waitMs ?? 30_000);
  let rootMadeDir = false;
  for (;;) {
    const r = await t.transport.run('setpriv', args, {
      timeoutMs: t.timeoutMs ?? 30_000,
      signal: t.signal,
      allowNonZeroExit: true,
      maxBuffer: 2 * PEM_MAX + 64 * 1024,
    });
    if (r.exitCode === 0) {
      const at = r.stdout.indexOf(`\n${FILES_MARK}\n`);
      const cli = at < 0 ? r.stdout : r.stdout.slice(0, at);
      const [svidPem, bundlePem] = at < 0 ? [] : r.stdout.slice(at + FILES_MARK.length + 2).split('\0');
      const spiffeId = /SPIFFE ID:\s*(spiffe:\/\/\S+)/.exec(cli)?.[1];
      const svidPath = path.join(o.writeDir, 'svid.0.pem');
      const bundlePath = path.join(o.writeDir, 'bundle.0.pem');
      if (!spiffeId || !svidPem || !bundlePem)
        throw new ToolError('WorkloadFailed', `spire-agent api fetch x509 on ${t.transport.label} wrote no SVID`, TOOL);
      return { spiffeId, svidPath, keyPath: path.join(o.writeDir, 'svid.0.key'), bundlePath, svidPem, bundlePem };
    }
    assertReachedHost(t.transport, r, 'setpriv');
    if (/setpriv: failed to execute/i.test(r.stderr) || isProgramMissing(binary, r.exitCode, r.stderr)) {
      throw new ToolError('ToolMissing', `spire-agent is not installed on ${t.transport.label}`, TOOL, r.exitCode);
    }
    if (r.exitCode === FETCH_EXIT.noDir && !rootMadeDir) {
      // Throws when root cannot make it either (a name that exists but is not the uid's to use).
      await ensureDirAs(t.transport, o.writeDir, owner, 0o700);
      rootMadeDir = true;
      continue;
    }
    if (r.exitCode === FETCH_EXIT.noDir || r.exitCode === FETCH_EXIT.notRemoved)
      throw new ToolError(
        'ToolFailed',
        `uid ${o.uid} cannot ${r.exitCode === FETCH_EXIT.noDir ? 'make' : 'empty'} ${o.writeDir} on ${t.transport.label}: ${summarizeStderr(r.stderr, 160)}`,
        TOOL,
        r.exitCode,
      );
    if (r.exitCode === FETCH_EXIT.unreadable)
      throw new ToolError('WorkloadFailed', `spire-agent api fetch x509 on ${t.transport.label} wrote no SVID`, TOOL);
    const retriable =
      /no identity issued|connection refused|no such file or directory|Unavailable|PermissionDenied/i.test(r.stderr);
    if (!retriable || Date.now() >= deadline) {
      throw new ToolError(
        'WorkloadFailed',
        `no X.509-SVID for uid ${o.uid} on ${t.transport.label}: ${summarizeStderr(r.stderr, 240)}`,
        TOOL,
        r.exitCode,
      );
    }
    // The entry reaches the agent at its next sync (spire.agentSyncIntervalMs): ask again soon after.
    await sleep(250, t.signal);
  }
}
