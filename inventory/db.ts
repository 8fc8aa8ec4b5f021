/**
 * The connection to the ledger's PostgreSQL: the pool, the database URL it is
 * opened from, queries, and transactions retried on contention.
 *
 * Every failure leaves here classified: a database that is not there becomes
 * LedgerUnavailable naming host:port/db (never the password), and the table
 * modules' own LedgerErrors pass through as they are.
 */
import pg from 'pg';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { z } from 'zod';
import { LedgerError, isUnavailable, pgCode, unavailable } from './errors.js';
import { applyMigrations, type MigrationResult } from './migrations.js';

export interface LedgerOptions {
  /** How errors name the database ("db.internal:5432/nodeboot"). Default: derived from the pool's config. */
  target?: string;
  /** Strings to scrub from any error text (the password). */
  secrets?: string[];
}

export interface ConnectOptions {
  /** Pool size (default 10). */
  max?: number;
  /** Give up connecting after this long (default 5 s). */
  connectTimeoutMs?: number;
  /** Run migrate() once connected (what the worker does at start). */
  migrate?: boolean;
}

/** Contention SQLSTATEs worth retrying a whole transaction for. */
const RETRYABLE = new Set(['40001', '40P01']);
/** A unique violation: tables whose writes race on a unique key retry on it too. */
export const UNIQUE_VIOLATION = '23505';
const TX_ATTEMPTS = 5;

const DatabaseUrl = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    // Never echo the value: it may hold a password.
    ctx.addIssue({ code: 'custom', message: 'must be a URL such as postgres://user@host:5432/db' });
    return;
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    ctx.addIssue({
      code: 'custom',
      message: `must use the postgres:// or postgresql:// scheme (got "${url.protocol}")`,
    });
  }
  if (!url.hostname && !url.searchParams.get('host')) {
    ctx.addIssue({ code: 'custom', message: 'must name a host' });
  }
});

/**
 * Validate `databaseUrl` and open a pool on it (no connection yet). Throws
 * LedgerError InvalidInput for a malformed URL, without echoing it.
 */
export function openPool(databaseUrl: string, opts: ConnectOptions = {}): { pool: Pool; options: LedgerOptions } {
  const r = DatabaseUrl.safeParse(databaseUrl);
  if (!r.success) {
    throw new LedgerError('InvalidInput', `databaseUrl ${r.error.issues[0]?.message ?? 'is invalid'}`);
  }
  const url = new URL(databaseUrl);
  const secrets = [url.password, safeDecode(url.password)].filter((s) => s.length > 0);
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    application_name: 'node-bootstrap',
  });
  return { pool, options: { target: describeDatabaseUrl(databaseUrl), secrets } };
}

/** "host:port/db" for a URL, without credentials. */
function describeDatabaseUrl(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    const host = url.hostname || url.searchParams.get('host') || 'localhost';
    const db = decodeURIComponent(url.pathname.replace(/^\//, '')) || url.username || 'postgres';
    return `${host}:${url.port || '5432'}/${db}`;
  } catch {
    return '(invalid database URL)';
  }
}

function describePool(pool: Pool): string {
  const o = pool.options as { connectionString?: string; host?: string; port?: number; database?: string } | undefined;
  if (o?.connectionString) return describeDatabaseUrl(o.connectionString);
  return `${o?.host ?? process.env.PGHOST ?? 'localhost'}:${o?.port ?? process.env.PGPORT ?? 5432}/${o?.database ?? process.env.PGDATABASE ?? 'postgres'}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The pool and how to use it; the table modules take one of these. */
export class Db {
  readonly target: string;
  private readonly secrets: string[];
  private closed = false;

  constructor(
    private readonly pool: Pool,
    opts: LedgerOptions = {},
  ) {
    this.target = opts.target ?? describePool(pool);
    const o = pool.options as { password?: unknown } | undefined;
    this.secrets = [...(opts.secrets ?? []), ...(typeof o?.password === 'string' ? [o.password] : [])].filter(
      (s) => s.length > 0,
    );
    // An idle client losing its connection emits 'error' on the pool; unhandled, that
    // kills the worker. The next query reports LedgerUnavailable instead.
    if (pool.listenerCount('error') === 0) pool.on('error', () => undefined);
  }

  /** One statement, outside any transaction. */
  async query<R extends QueryResultRow = QueryResultRow>(sql: string, params: unknown[] = []) {
    try {
      return await this.pool.query<R>(sql, params);
    } catch (err) {
      throw this.wrap(err);
    }
  }

  /** Run `fn` in a transaction, retrying on contention (and on the extra SQLSTATEs given). */
  async tx<T>(fn: (c: PoolClient) => Promise<T>, alsoRetryOn: readonly string[] = []): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.connectClient();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        if (isUnavailable(err)) broken = err as Error;
        else
          await client
            .query('ROLLBACK')
            .catch((e: unknown) => (broken = e instanceof Error ? e : new Error(String(e))));
        const code = pgCode(err);
        if (!broken && code && attempt < TX_ATTEMPTS && (RETRYABLE.has(code) || alsoRetryOn.includes(code))) {
          await new Promise((r) => setTimeout(r, 5 * attempt * Math.random()));
          continue;
        }
        throw this.wrap(err);
      } finally {
        client.release(broken);
      }
    }
  }

  /** Apply pending schema migrations (serialized across workers by an advisory lock). */
  async migrate(): Promise<MigrationResult> {
    const client = await this.connectClient();
    let broken: Error | undefined;
    try {
      return await applyMigrations(client);
    } catch (err) {
      if (isUnavailable(err)) broken = err as Error;
      throw this.wrap(err);
    } finally {
      client.release(broken);
    }
  }

  /** End the pool. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  private async connectClient(): Promise<PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw this.wrap(err);
    }
  }

  private wrap(err: unknown): unknown {
    if (err instanceof LedgerError) return err;
    if (this.closed || isUnavailable(err)) return unavailable(this.target, err, this.secrets);
    return err;
  }
}
