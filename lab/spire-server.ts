/**
 * A SPIRE server for the lab and the integration tests.
 *
 * One instance owns one directory: its config, data (sqlite3 file or disk
 * keys), admin socket, log, pidfile and an `instance.json` that records what
 * `stopSpireServerByDir` needs to clean up after a crash (pid, postgres
 * database). The process runs through a `HostTransport`, so the lab can put it
 * inside the hub's network namespace; files are written directly because the
 * lab's namespaces share this machine's filesystem.
 *
 * The postgres datastore connects through the unix socket directory, which
 * works from inside any network namespace (no TCP to 127.0.0.1 there), and
 * gets a database of its own, dropped by `stop()`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { z } from 'zod';
import { Ipv4, SafePath, TrustDomain, parseName } from '../common/names.js';
import { summarizeStderr, ToolError } from '../activities/host/exec.js';
import { localTransport, type HostTransport } from '../activities/host/transport.js';
import { renderNodeAttestorBlock, type NodeAttestorBlock } from '../activities/spire/agent-cli.js';
import { sshpopServerPluginData } from '../activities/spire/attestors/sshpop.js';
import { x509popServerPluginData } from '../activities/spire/attestors/x509pop.js';
import { daemonAlive, processStat, sleep, stopDaemon } from '../activities/host/process.js';
import { healthcheck, type SpireServerTarget } from '../activities/spire/server-cli.js';
import { ensureNodeCa, labNodeCaDir } from './pki.js';
import { createSshCa, labSshCaDir } from './ssh-ca.js';
import { labServerTpmDevid } from './tpm.js';

const TOOL = 'spire-server';
const INSTANCE_FILE = 'instance.json';

export type SpireDatastore = 'sqlite3' | 'postgres';

/**
 * How the lab's server gets the NodeAttestor block of one attestor: `setup`
 * makes what the server trusts (a CA) under the server's directory and returns
 * the plugin_data. sshpop and tpm_devid add theirs here (one entry each).
 */
export interface LabServerAttestor {
  setup(serverDir: string): Promise<NodeAttestorBlock['pluginData']>;
}

export const LAB_SERVER_ATTESTORS: Record<string, LabServerAttestor> = {
  join_token: { setup: async () => ({}) },
  // The lab node CA (lab/pki.ts issues node certificates from it).
  x509pop: {
    setup: async (dir) => x509popServerPluginData({ caBundlePath: (await ensureNodeCa(labNodeCaDir(dir))).certPath }),
  },
  // The lab SSH CA (lab/ssh-ca.ts signs node host keys with it).
  sshpop: {
    setup: async (dir) =>
      sshpopServerPluginData({ certAuthoritiesPath: (await createSshCa(labSshCaDir(dir))).pubFile }),
  },
  // The lab's EK CA and DevID CA (lab/tpm.ts gives each node a software TPM with a DevID from them).
  tpm_devid: labServerTpmDevid,
};

/** The attestors a lab server enables unless told otherwise. */
export const DEFAULT_LAB_ATTESTORS: readonly string[] = ['join_token', 'x509pop', 'sshpop', 'tpm_devid'];

export interface PostgresAccess {
  /** Unix socket directory (default /var/run/postgresql). */
  host?: string;
  /** Role with CREATEDB, trust or peer auth (default postgres). */
  user?: string;
}

export interface SpireServerOptions {
  /** Where the server process runs (`netnsTransport(hubNs)` in the lab). */
  transport: HostTransport;
  /** A directory dedicated to this instance; `stop()` removes it. Keep it short: the admin socket lives in it (108-byte limit). */
  dir: string;
  trustDomain: string;
  /** Address agents dial (inside the transport's network namespace). */
  bindAddress: string;
  port: number;
  /** Default sqlite3 ("sqlite" is accepted as an alias). */
  datastore?: SpireDatastore | 'sqlite';
  /** A label for what this instance belongs to (e.g. the lab prefix); part of the postgres database name. */
  name?: string;
  keyManager?: 'disk' | 'memory';
  postgres?: PostgresAccess;
  /** Program to run (default `spire-server` on the tools PATH). */
  binary?: string;
  /** Deadline for the server to report healthy (default 60 s). */
  healthTimeoutMs?: number;
  logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** X.509-SVID / JWT-SVID default TTLs in seconds (defaults 3600 / 300). */
  defaultX509SvidTtlSeconds?: number;
  defaultJwtSvidTtlSeconds?: number;
  /** NodeAttestors to enable, by name in LAB_SERVER_ATTESTORS (default DEFAULT_LAB_ATTESTORS). */
  nodeAttestors?: readonly string[];
  /** Entry cache refresh in ms (ServerConfigOptions.entryCacheReloadMs; default LAB_ENTRY_CACHE_RELOAD_MS, null: SPIRE's own). */
  entryCacheReloadMs?: number | null;
}

export interface SpireServerHandle {
  /** Admin API socket (what `spire-server <cmd> -socketPath` takes). */
  socketPath: string;
  pid: number;
  trustDomain: string;
  bindAddress: string;
  port: number;
  dir: string;
  datastore: SpireDatastore;
  /** The postgres database this instance owns, when datastore = postgres. */
  database?: string;
  logFile: string;
  /** Ready-made target for the server-cli wrappers. */
  target: SpireServerTarget;
  /** Kill the server, drop its database, remove its directory. Idempotent. */
  stop(): Promise<void>;
}

const InstanceRecord = z.object({
  pid: z.number().int().positive().optional(),
  program: z.string().default(TOOL),
  database: z.string().optional(),
  pgHost: z.string().optional(),
  pgUser: z.string().optional(),
});
type InstanceRecord = z.infer<typeof InstanceRecord>;

const DbName = z.string().regex(/^nbt_spire_(?:[a-z0-9_]{1,32}_)?[a-f0-9]{12}$/);

export interface ServerConfigOptions {
  trustDomain: string;
  bindAddress: string;
  port: number;
  socketPath: string;
  dataDir: string;
  datastore: { type: 'sqlite3'; file: string } | { type: 'postgres'; connectionString: string };
  keyManager: { type: 'disk'; keysPath: string } | { type: 'memory' };
  logLevel?: string;
  defaultX509SvidTtlSeconds?: number;
  defaultJwtSvidTtlSeconds?: number;
  /** One block per attestor the fleet uses (default: join_token only). */
  nodeAttestors?: readonly NodeAttestorBlock[];
  /**
   * How often the server refreshes its in-memory entry cache from the datastore, in ms
   * (`experimental { cache_reload_interval }`, SPIRE's default 5 s), with the events-based
   * cache (`events_based_cache`: each refresh reads only the changes since the last).
   * A new entry reaches an agent's sync only after this refresh: the lab's default is
   * LAB_ENTRY_CACHE_RELOAD_MS; undefined keeps SPIRE's full reload every 5 s.
   */
  entryCacheReloadMs?: number;
}

/** The lab server's entry cache refresh (see ServerConfigOptions.entryCacheReloadMs). */
export const LAB_ENTRY_CACHE_RELOAD_MS = 500;

/** server.conf (HCL). Values are validated by the caller's schemas; none needs escaping. */
export function renderServerConfig(o: ServerConfigOptions): string {
  const ds =
    o.datastore.type === 'sqlite3'
      ? ['database_type = "sqlite3"', `connection_string = "${o.datastore.file}"`]
      : ['database_type = "postgres"', `connection_string = "${o.datastore.connectionString}"`];
  const km =
    o.keyManager.type === 'disk'
      ? ['  KeyManager "disk" {', '    plugin_data {', `      keys_path = "${o.keyManager.keysPath}"`, '    }', '  }']
      : ['  KeyManager "memory" {', '    plugin_data {}', '  }'];
  return [
    'server {',
    `  bind_address = "${o.bindAddress}"`,
    `  bind_port = "${o.port}"`,
    `  socket_path = "${o.socketPath}"`,
    `  trust_domain = "${o.trustDomain}"`,
    `  data_dir = "${o.dataDir}"`,
    `  log_level = "${o.logLevel ?? 'INFO'}"`,
    `  default_x509_svid_ttl = "${o.defaultX509SvidTtlSeconds ?? 3600}s"`,
    `  default_jwt_svid_ttl = "${o.defaultJwtSvidTtlSeconds ?? 300}s"`,
    ...(o.entryCacheReloadMs === undefined
      ? []
      : [
          '  experimental {',
          '    events_based_cache = true',
          `    cache_reload_interval = "${z.number().int().min(100).max(3_600_000).parse(o.entryCacheReloadMs)}ms"`,
          '  }',
        ]),
    '}',
    '',
    'plugins {',
    '  DataStore "sql" {',
    '    plugin_data {',
    ...ds.map((l) => `      ${l}`),
    '    }',
    '  }',
    ...(o.nodeAttestors ?? [{ type: 'join_token', pluginData: {} }]).flatMap((b) => renderNodeAttestorBlock(b)),
    ...km,
    '}',
    '',
  ].join('\n');
}

/**
 * Start a SPIRE server and wait until it answers healthy on its admin socket.
 * A stale instance left in `dir` by a crash is cleaned up first. On any failure
 * everything started so far is undone before the error is thrown.
 */
export async function startSpireServer(opts: SpireServerOptions): Promise<SpireServerHandle> {
  const dir = checkedDir(opts.dir);
  const trustDomain = parseName(TrustDomain, 'trustDomain', opts.trustDomain);
  const bindAddress = parseName(Ipv4, 'bindAddress', opts.bindAddress);
  const port = parseName(z.number().int().min(1).max(65535), 'port', opts.port);
  const datastore: SpireDatastore = opts.datastore === 'postgres' ? 'postgres' : 'sqlite3';
  const binary = opts.binary ?? TOOL;
  const socketPath = path.join(dir, 'admin', 'api.sock');
  if (Buffer.byteLength(socketPath) > 107)
    throw new ToolError('InvalidInput', `dir is too long for a unix socket path (${socketPath})`, TOOL);
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'spire-server.log');

  if (existsSync(path.join(dir, INSTANCE_FILE))) await stopSpireServerByDir(dir);
  mkdirSync(path.join(dir, 'admin'), { recursive: true, mode: 0o700 });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });

  const record: InstanceRecord = { program: path.basename(binary) };
  const save = () => writeFileSync(path.join(dir, INSTANCE_FILE), JSON.stringify(record, null, 2), { mode: 0o600 });
  save();

  try {
    let ds: ServerConfigOptions['datastore'];
    if (datastore === 'postgres') {
      const pgHost = parseName(SafePath, 'postgres.host', opts.postgres?.host ?? '/var/run/postgresql');
      const pgUser = parseName(
        z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/),
        'postgres.user',
        opts.postgres?.user ?? 'postgres',
      );
      const label = (opts.name ?? '')
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, '_')
        .replace(/^_+|_+$/g, '')
        .slice(0, 32);
      const database = parseName(
        DbName,
        'database',
        `nbt_spire_${label ? `${label}_` : ''}${randomBytes(6).toString('hex')}`,
      );
      // Record before creating, so a crash between the two still gets the database dropped.
      Object.assign(record, { database, pgHost, pgUser });
      save();
      await withPg({ host: pgHost, user: pgUser }, (c) => c.query(`CREATE DATABASE "${database}"`));
      ds = { type: 'postgres', connectionString: `dbname=${database} host=${pgHost} user=${pgUser} sslmode=disable` };
    } else {
      ds = { type: 'sqlite3', file: path.join(dataDir, 'datastore.sqlite3') };
    }
    const nodeAttestors: NodeAttestorBlock[] = [];
    for (const type of opts.nodeAttestors ?? DEFAULT_LAB_ATTESTORS) {
      const a = LAB_SERVER_ATTESTORS[type];
      if (!a)
        throw new ToolError(
          'InvalidInput',
          `nodeAttestors: the lab cannot set up "${type}" (it can: ${Object.keys(LAB_SERVER_ATTESTORS).join(', ')})`,
          TOOL,
        );
      nodeAttestors.push({ type, pluginData: await a.setup(dir) });
    }
    const config = renderServerConfig({
      trustDomain,
      bindAddress,
      port,
      socketPath,
      dataDir,
      datastore: ds,
      keyManager:
        (opts.keyManager ?? 'disk') === 'disk'
          ? { type: 'disk', keysPath: path.join(dataDir, 'keys.json') }
          : { type: 'memory' },
      logLevel: opts.logLevel,
      defaultX509SvidTtlSeconds: opts.defaultX509SvidTtlSeconds,
      defaultJwtSvidTtlSeconds: opts.defaultJwtSvidTtlSeconds,
      nodeAttestors,
      entryCacheReloadMs:
        opts.entryCacheReloadMs === null ? undefined : (opts.entryCacheReloadMs ?? LAB_ENTRY_CACHE_RELOAD_MS),
    });
    const configPath = path.join(dir, 'server.conf');
    writeFileSync(configPath, config, { mode: 0o600 });

    const pid = await opts.transport.spawnDaemon(binary, ['run', '-config', configPath], { logFile });
    record.pid = pid;
    save();
    writeFileSync(path.join(dir, 'spire-server.pid'), `${pid}\n`, { mode: 0o644 });

    const target: SpireServerTarget = { transport: opts.transport, socketPath, binary };
    await waitHealthy(target, pid, record.program, logFile, opts.healthTimeoutMs ?? 60_000);

    return {
      socketPath,
      pid,
      trustDomain,
      bindAddress,
      port,
      dir,
      datastore,
      ...(record.database ? { database: record.database } : {}),
      logFile,
      target,
      stop: async () => {
        await stopSpireServerByDir(dir);
      },
    };
  } catch (err) {
    await stopSpireServerByDir(dir).catch(() => undefined);
    throw err;
  }
}

async function waitHealthy(
  target: SpireServerTarget,
  pid: number,
  program: string,
  logFile: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const host = localTransport();
  // By pid and start time, not by name: for its first milliseconds the daemon still runs
  // `ip netns exec`, and a healthcheck over the admin API fails fast enough to look then.
  const ref = { pid, startTime: (await processStat(host, pid))?.startTime };
  for (;;) {
    if (await healthcheck(target)) return;
    if (!(await daemonAlive(host, ref, program))) {
      throw new ToolError(
        'SpireServerUnavailable',
        `spire-server exited during startup: ${summarizeStderr(lastErrorLines(logFile), 400)}`,
        TOOL,
      );
    }
    if (Date.now() >= deadline)
      throw new ToolError(
        'SpireServerUnavailable',
        `spire-server not healthy after ${timeoutMs} ms (log ${logFile})`,
        TOOL,
      );
    await sleep(250);
  }
}

function lastErrorLines(logFile: string): string {
  try {
    const lines = readFileSync(logFile, 'utf8').split('\n');
    const errs = lines.filter((l) => /level=(error|fatal)|^Error|error=/i.test(l));
    return (errs.length ? errs : lines).slice(-3).join(' | ');
  } catch {
    return `(no log at ${logFile})`;
  }
}

/**
 * Crash cleanup: stop the server recorded in `dir` (only if that pid still runs
 * spire-server), drop its postgres database, remove `dir`. Safe to call for a
 * directory that holds nothing or does not exist.
 */
export async function stopSpireServerByDir(dir: string): Promise<{ stopped: boolean; droppedDatabase?: string }> {
  const d = checkedDir(dir);
  const file = path.join(d, INSTANCE_FILE);
  if (!existsSync(d)) return { stopped: false };
  let record: InstanceRecord | undefined;
  try {
    record = InstanceRecord.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    record = undefined;
  }
  if (!record) {
    // Not (or no longer) ours: only remove it when it is empty, never a stranger's directory.
    try {
      rmdirSync(d);
    } catch {
      // not empty: leave it
    }
    return { stopped: false };
  }
  let pid = record.pid;
  if (pid === undefined) {
    const fromFile = Number(readFileIfAny(path.join(d, 'spire-server.pid')).trim());
    if (Number.isSafeInteger(fromFile) && fromFile > 1) pid = fromFile;
  }
  const stopped = pid !== undefined && (await stopDaemon(localTransport(), pid, { program: record.program }));
  let droppedDatabase: string | undefined;
  if (record.database) {
    const database = parseName(DbName, 'database', record.database);
    await withPg({ host: record.pgHost ?? '/var/run/postgresql', user: record.pgUser ?? 'postgres' }, (c) =>
      c.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`),
    );
    droppedDatabase = database;
  }
  rmSync(d, { recursive: true, force: true });
  return { stopped, ...(droppedDatabase ? { droppedDatabase } : {}) };
}

function readFileIfAny(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function checkedDir(dir: string): string {
  const d = parseName(SafePath, 'dir', dir).replace(/\/+$/, '');
  // A dedicated instance directory is at least two levels deep: never "/" or "/tmp".
  if (d.split('/').filter(Boolean).length < 2)
    throw new ToolError('InvalidInput', `dir ${d} is too shallow for a dedicated instance directory`, TOOL);
  return d;
}

async function withPg<T>(access: { host: string; user: string }, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: access.host, user: access.user, database: 'postgres' });
  try {
    await client.connect();
    return await fn(client);
  } catch (err) {
    throw new ToolError(
      'SpireServerUnavailable',
      `postgres for the SPIRE datastore at ${access.host}: ${(err as Error).message}`,
      'postgres',
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}
