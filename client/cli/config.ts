/**
 * nodeboot's configuration: flags over environment, validated once with zod
 * (empty strings count as unset). Nothing else in the CLI reads process.env.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { TASK_QUEUE } from '../../common/ids.js';
import { CliError } from './errors.js';
import { EXIT } from './exit-codes.js';

const emptyAsUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const opt = <T extends z.ZodTypeAny>(schema: T) => z.preprocess(emptyAsUndefined, schema);
const FilePath = z.string().min(1).max(4096);

export const CliConfig = z
  .object({
    TEMPORAL_ADDRESS: opt(
      z
        .string()
        .regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be host:port')
        .default('127.0.0.1:7233'),
    ),
    TEMPORAL_NAMESPACE: opt(
      z
        .string()
        .min(1)
        .max(255)
        .regex(/^[A-Za-z0-9._-]+$/, 'must be a namespace name')
        .default('default'),
    ),
    TEMPORAL_TASK_QUEUE: opt(z.string().min(1).max(200).default(TASK_QUEUE)),
    /** mTLS client certificate and key (PEM files), for a cluster that requires them. */
    TEMPORAL_TLS_CERT: opt(FilePath.optional()),
    TEMPORAL_TLS_KEY: opt(FilePath.optional()),
    /** CA bundle to verify the server with (default: the system roots). */
    TEMPORAL_TLS_CA: opt(FilePath.optional()),
    TEMPORAL_TLS_SERVER_NAME: opt(z.string().max(255).optional()),
    /** Force TLS on (implied by a cert, a CA or an API key) or off. */
    TEMPORAL_TLS: opt(z.enum(['true', 'false', '1', '0']).optional()),
    /** API key (Temporal Cloud). Environment only: a flag would show in `ps`. */
    TEMPORAL_API_KEY: opt(z.string().min(1).max(8192).optional()),
    /** Seconds to wait for Temporal to answer before exiting 6. */
    NODEBOOT_CONNECT_TIMEOUT: opt(z.coerce.number().positive().max(600).default(10)),
    /** The inventory ledger, for `history`. Environment only: its password would show in `ps` as a flag. */
    DATABASE_URL: opt(
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
        .default('postgres://postgres@127.0.0.1:5432/nodeboot'),
    ),
  })
  .superRefine((c, ctx) => {
    if (Boolean(c.TEMPORAL_TLS_CERT) !== Boolean(c.TEMPORAL_TLS_KEY)) {
      const missing = c.TEMPORAL_TLS_CERT ? 'TEMPORAL_TLS_KEY' : 'TEMPORAL_TLS_CERT';
      ctx.addIssue({ code: 'custom', path: [missing], message: 'TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together' });
    }
  });
export type CliConfig = z.output<typeof CliConfig>;

/** Flag names for the config keys (so errors can name what the user typed). */
export const CONFIG_FLAGS = {
  address: 'TEMPORAL_ADDRESS',
  namespace: 'TEMPORAL_NAMESPACE',
  'task-queue': 'TEMPORAL_TASK_QUEUE',
  'tls-cert': 'TEMPORAL_TLS_CERT',
  'tls-key': 'TEMPORAL_TLS_KEY',
  'tls-ca': 'TEMPORAL_TLS_CA',
  'tls-server-name': 'TEMPORAL_TLS_SERVER_NAME',
  'connect-timeout': 'NODEBOOT_CONNECT_TIMEOUT',
} as const satisfies Record<string, keyof CliConfig>;
export type ConfigFlag = keyof typeof CONFIG_FLAGS;

/** Merge flags over the environment and validate; a bad value exits 2 naming the variable (and its flag). */
export function loadCliConfig(
  env: NodeJS.ProcessEnv,
  flags: Partial<Record<ConfigFlag, string | undefined>>,
): CliConfig {
  const merged: Record<string, unknown> = {};
  for (const key of Object.keys(CliConfig.shape)) merged[key] = env[key];
  for (const [flag, key] of Object.entries(CONFIG_FLAGS)) {
    const v = flags[flag as ConfigFlag];
    if (v !== undefined) merged[key] = v;
  }
  const r = CliConfig.safeParse(merged);
  if (!r.success) {
    const flagOf = (key: string) => Object.entries(CONFIG_FLAGS).find(([, k]) => k === key)?.[0];
    throw new CliError(EXIT.INVALID, 'invalid configuration', {
      code: 'INVALID_CONFIG',
      fields: r.error.issues.map((i) => {
        const key = String(i.path[0] ?? '(config)');
        const flag = flagOf(key);
        return { path: flag ? `${key} (--${flag})` : key, message: i.message };
      }),
    });
  }
  return r.data;
}

export interface TlsFiles {
  clientCertPair?: { crt: Buffer; key: Buffer };
  serverRootCACertificate?: Buffer;
  serverNameOverride?: string;
}

/** TLS settings for the connection: undefined (plaintext, the dev server) or what to present. */
export function tlsOf(c: CliConfig): TlsFiles | boolean | undefined {
  const explicit = c.TEMPORAL_TLS === undefined ? undefined : c.TEMPORAL_TLS === 'true' || c.TEMPORAL_TLS === '1';
  const wanted = explicit ?? Boolean(c.TEMPORAL_TLS_CERT || c.TEMPORAL_TLS_CA || c.TEMPORAL_API_KEY);
  if (!wanted) return undefined;
  const read = (key: 'TEMPORAL_TLS_CERT' | 'TEMPORAL_TLS_KEY' | 'TEMPORAL_TLS_CA', path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
      throw new CliError(EXIT.INVALID, 'invalid configuration', {
        code: 'INVALID_CONFIG',
        fields: [{ path: key, message: `cannot read ${path} (${why})` }],
      });
    }
  };
  const tls: TlsFiles = {};
  if (c.TEMPORAL_TLS_CERT && c.TEMPORAL_TLS_KEY) {
    tls.clientCertPair = {
      crt: read('TEMPORAL_TLS_CERT', c.TEMPORAL_TLS_CERT),
      key: read('TEMPORAL_TLS_KEY', c.TEMPORAL_TLS_KEY),
    };
  }
  if (c.TEMPORAL_TLS_CA) tls.serverRootCACertificate = read('TEMPORAL_TLS_CA', c.TEMPORAL_TLS_CA);
  if (c.TEMPORAL_TLS_SERVER_NAME) tls.serverNameOverride = c.TEMPORAL_TLS_SERVER_NAME;
  return Object.keys(tls).length ? tls : true;
}
