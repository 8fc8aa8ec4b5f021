/**
 * Start and stop the Temporal dev server (`temporal server start-dev`) from the
 * pinned binary that `npm run tools` builds into .tools/bin/temporal.
 *
 * Used by the integration tests (one server per run, headless, random ports, a
 * throwaway SQLite file) and by the demo (a persistent SQLite file, Web UI on
 * :8233). Our custom search attributes are registered at start, and
 * `startDevServer` only resolves once the frontend answers for the namespace and
 * lists those attributes, so callers can start workflows right away.
 */
import { closeSync, createWriteStream, existsSync, mkdirSync, openSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { Connection } from '@temporalio/client';
import { DEV_SERVER_SEARCH_ATTRIBUTES, SEARCH_ATTRIBUTE_KEYS } from '../common/search-attributes.js';

/** Where `npm run tools` puts the Temporal CLI. */
export const TEMPORAL_BIN = fileURLToPath(new URL('../.tools/bin/temporal', import.meta.url));

export interface DevServerOptions {
  /** The temporal binary (default: .tools/bin/temporal). */
  binary?: string;
  /** SQLite file for durable state (its directory is created). Omit for an in-memory server. */
  dbFilename?: string;
  /**
   * SQLite pragmas for the file (default: WAL journal, synchronous=NORMAL:
   * committed state survives a crash of the server process, and each write is
   * not an fsync; measured 2.8x the throughput of the rollback-journal default in `npm run bench` P3).
   */
  sqlitePragmas?: Record<string, string>;
  /** Address the frontend and UI bind to (default 127.0.0.1). */
  ip?: string;
  /** Frontend gRPC port (default: a free port). */
  port?: number;
  /** Web UI port (default: 8233 when free, else a free port). Ignored when headless. */
  uiPort?: number;
  /** No Web UI (tests). */
  headless?: boolean;
  /** Namespace to use and wait for (default "default", which always exists). */
  namespace?: string;
  /** Extra `--dynamic-config-value KEY=JSON` settings. */
  dynamicConfig?: Record<string, unknown>;
  /** Server log level (default "warn"). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error' | 'never';
  /** Append the server's stdout/stderr to this file as well. */
  logFile?: string;
  /** How long to wait for the server to answer (default 60 s). */
  readyTimeoutMs?: number;
  /**
   * Keep running after this process exits (the demo). Output goes only to
   * `logFile`; stop it later by pid.
   */
  detached?: boolean;
}

export interface DevServerHandle {
  /** "ip:port" of the gRPC frontend, for Connection / NativeConnection. */
  address: string;
  /** Web UI URL, or null when headless. */
  uiUrl: string | null;
  namespace: string;
  pid: number;
  /** Stop the server (SIGTERM, then SIGKILL after 10 s) and wait for it to exit. Idempotent. */
  stop(): Promise<void>;
}

/**
 * How often a second the lab server's transfer queue may load new tasks (see
 * DEV_SERVER_DYNAMIC_CONFIG; measured in bench/results/report.md, P1's floor).
 */
export const TRANSFER_POLL_RPS = 1000;

/**
 * Server settings the lab's dev server runs with (docs/operating.md, "Server
 * settings"); `dynamicConfig` overrides them (the benchmark:
 * NB_BENCH_DYNAMIC_CONFIG).
 * - Eager activity dispatch: an activity a workflow task schedules goes
 *   straight back to the worker that completed the task, with the task's
 *   answer, instead of a round through the matching service: one dispatch less
 *   per step. The server's default is off.
 * - The transfer queue's poll rate: every workflow task reaches the matching
 *   service through the history shard's transfer queue, whose reader loads new
 *   tasks at most `history.transferProcessorMaxPollRPS` times a second per
 *   shard. The server's default, 20, is made for many shards; the dev server
 *   has one, so a run that goes one step at a time waited up to 50 ms (25 ms
 *   on average) before each of its workflow tasks. The reader still loads only
 *   when told of new tasks, so an idle server polls no more often.
 */
export const DEV_SERVER_DYNAMIC_CONFIG: Readonly<Record<string, unknown>> = {
  'system.enableActivityEagerExecution': true,
  'history.transferProcessorMaxPollRPS': TRANSFER_POLL_RPS,
};

/** Throw a clear error when the Temporal CLI has not been built yet. */
export function assertTemporalBinary(binary: string = TEMPORAL_BIN): void {
  if (!existsSync(binary)) {
    throw new Error(
      `Temporal CLI not found at ${binary}: run \`npm run tools\` first (it builds the pinned dev server).`,
    );
  }
}

/**
 * Start `temporal server start-dev` and resolve once it serves `namespace` with
 * our search attributes registered. Rejects (and kills the process) if the
 * server exits early or is not ready before `readyTimeoutMs`.
 */
export async function startDevServer(opts: DevServerOptions = {}): Promise<DevServerHandle> {
  const binary = opts.binary ?? TEMPORAL_BIN;
  assertTemporalBinary(binary);
  const ip = opts.ip ?? '127.0.0.1';
  const namespace = opts.namespace ?? 'default';
  const port = opts.port ?? (await freePort(ip));
  const uiPort = opts.headless ? null : (opts.uiPort ?? ((await isPortFree(ip, 8233)) ? 8233 : await freePort(ip)));

  const args = ['server', 'start-dev', '--ip', ip, '--port', String(port), '--log-level', opts.logLevel ?? 'warn'];
  if (uiPort === null) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  if (opts.dbFilename) {
    mkdirSync(dirname(opts.dbFilename), { recursive: true });
    args.push('--db-filename', opts.dbFilename);
    const pragmas = opts.sqlitePragmas ?? { journal_mode: 'wal', synchronous: 'normal' };
    for (const [key, value] of Object.entries(pragmas)) args.push('--sqlite-pragma', `${key}=${value}`);
  }
  if (namespace !== 'default') args.push('--namespace', namespace);
  for (const sa of DEV_SERVER_SEARCH_ATTRIBUTES) args.push('--search-attribute', sa);
  for (const [key, value] of Object.entries({ ...DEV_SERVER_DYNAMIC_CONFIG, ...opts.dynamicConfig })) {
    args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);
  }

  let log: WriteStream | undefined;
  if (opts.logFile) {
    mkdirSync(dirname(opts.logFile), { recursive: true });
    log = createWriteStream(opts.logFile, { flags: 'a' });
  }
  const tail: string[] = [];
  const keep = (chunk: Buffer) => {
    log?.write(chunk);
    tail.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - 40));
  };

  // cleanup: true (execa's default) kills the server if this process exits first;
  // a detached server holds no pipe to us and outlives us.
  const logFd = opts.detached ? openSync(opts.logFile ?? '/dev/null', 'a') : undefined;
  const child = opts.detached
    ? execa(binary, args, {
        stdin: 'ignore',
        stdout: logFd,
        stderr: logFd,
        buffer: false,
        reject: false,
        cleanup: false,
        detached: true,
      } as never)
    : execa(binary, args, { stdin: 'ignore', buffer: false, reject: false, cleanup: true });
  if (logFd !== undefined) closeSync(logFd);
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited: { code: number | undefined; signal: string | undefined } | undefined;
  const exitPromise = child.then((r) => {
    exited = { code: r.exitCode, signal: r.signal };
    log?.end();
  });

  const address = `${ip}:${port}`;
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= killAndWait(child, exitPromise));

  try {
    await waitUntilReady(address, namespace, opts.readyTimeoutMs ?? 60_000, () => exited);
  } catch (err) {
    await stop();
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(
      `Temporal dev server (${binary} ${args.join(' ')}) did not become ready: ${why}\n--- server output (last lines) ---\n${tail.join('\n')}`,
    );
  }

  if (opts.detached) {
    child.unref();
    child.catch(() => undefined);
  }
  return {
    address,
    uiUrl: uiPort === null ? null : `http://${ip}:${uiPort}`,
    namespace,
    pid: child.pid!,
    stop,
  };
}

async function waitUntilReady(
  address: string,
  namespace: string,
  timeoutMs: number,
  hasExited: () => { code: number | undefined; signal: string | undefined } | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const wanted = SEARCH_ATTRIBUTE_KEYS.map((k) => k.name);
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    const exit = hasExited();
    if (exit) throw new Error(`server exited early (code ${exit.code ?? '-'}, signal ${exit.signal ?? '-'})`);
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address, connectTimeout: 2_000 });
      await connection.workflowService.describeNamespace({ namespace });
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
      const missing = wanted.filter((name) => !customAttributes?.[name]);
      if (missing.length === 0) return;
      lastError = `search attributes not registered yet: ${missing.join(', ')}`;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    } finally {
      await connection?.close().catch(() => undefined);
    }
    await sleep(250);
  }
  throw new Error(`not ready within ${timeoutMs} ms at ${address} (last error: ${lastError})`);
}

async function killAndWait(child: ResultPromise, exited: Promise<void>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  } else {
    await exited;
  }
}

/** A port the OS says is free right now (the usual small race applies). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port assigned'))));
    });
  });
}

export async function isPortFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}
