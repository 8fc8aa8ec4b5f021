/**
 * Worker configuration: read from the environment once, at the edge, and
 * validated (empty strings count as unset). Nothing else reads process.env.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { BowtieTrust } from '../activities/overlay/bowtie/trust.js';
import { describeZodError } from '../common/names.js';
import { TASK_QUEUE } from '../common/ids.js';
import { FaultPauseSpecs } from './fault-injection.js';
import { LOG_LEVELS } from './logging.js';

const emptyAsUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const port = z.coerce.number().int().min(0).max(65535);
const opt = <T extends z.ZodTypeAny>(schema: T) => z.preprocess(emptyAsUndefined, schema);

/** "https://host[:port]": an origin only (no path, query or credentials), normalized as URL.origin. */
const HttpsOrigin = z.string().transform((s, ctx) => {
  let u: URL | null = null;
  try {
    u = new URL(s);
  } catch {
    // reported below
  }
  if (
    !u ||
    u.protocol !== 'https:' ||
    u.username ||
    u.password ||
    (u.pathname !== '/' && u.pathname !== '') ||
    u.search ||
    u.hash ||
    s.endsWith('/')
  ) {
    ctx.addIssue({
      code: 'custom',
      message: `"${s}" must be an https origin such as "https://ctl1.example.net" or "https://10.0.0.5:8443"`,
    });
    return z.NEVER;
  }
  return u.origin;
});

/** Comma-separated origins, blanks ignored. */
const OriginList = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  )
  .pipe(z.array(HttpsOrigin).max(64));

export const WorkerConfig = z
  .object({
    TEMPORAL_ADDRESS: opt(
      z
        .string()
        .regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be host:port')
        .default('127.0.0.1:7233'),
    ),
    TEMPORAL_NAMESPACE: opt(z.string().min(1).max(255).default('default')),
    TEMPORAL_TASK_QUEUE: opt(z.string().min(1).max(200).default(TASK_QUEUE)),
    DATABASE_URL: opt(
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
        .default('postgres://postgres@127.0.0.1:5432/nodeboot'),
    ),
    NODEBOOT_MAX_CONCURRENT_ACTIVITIES: opt(z.coerce.number().int().min(1).max(1000).default(20)),
    /** Tests only: "<activity>:<ms>" pauses that activity after its work (workers/fault-injection.ts). Unset: off. */
    NODEBOOT_FAULT_PAUSE: opt(FaultPauseSpecs.optional()),
    // Observability (docs/observability.md). Ports: 0 or unset = off.
    /** Our step/compensation metrics, Prometheus text format at /metrics. */
    NODEBOOT_METRICS_PORT: opt(port.default(0)),
    /** Temporal Core's runtime metrics (Prometheus exporter) at /metrics. */
    NODEBOOT_TEMPORAL_METRICS_PORT: opt(port.default(0)),
    /** Address both metrics endpoints bind to (0.0.0.0 in a container). */
    NODEBOOT_METRICS_HOST: opt(
      z
        .string()
        .regex(/^[A-Za-z0-9.:-]+$/, 'must be an IP address or host name')
        .default('127.0.0.1'),
    ),
    /** JSON-line log level. */
    NODEBOOT_LOG_LEVEL: opt(z.enum(LOG_LEVELS).default('INFO')),
    /** OpenTelemetry tracing is on when this is set (workers/tracing.ts); the OTLP exporter reads it. */
    OTEL_EXPORTER_OTLP_ENDPOINT: opt(z.string().url('must be a URL, e.g. http://otel-collector:4318').optional()),
    OTEL_SERVICE_NAME: opt(z.string().min(1).max(100).optional()),
    /**
     * The Bowtie controllers this worker talks to (comma-separated https
     * origins). An input naming any other controller or entrypoint is refused
     * before any change and before a credential is read. Unset: none.
     */
    NODEBOOT_BOWTIE_CONTROLLERS: opt(OriginList.default([])),
    /** A PEM CA the worker trusts, beside the system roots, for Bowtie controller and package fetches. */
    /** The SPIRE server's config file on the server host: the preflight checks it runs the input's NodeAttestor. */
    NODEBOOT_SPIRE_SERVER_CONFIG: opt(
      z
        .string()
        .regex(/^(\/[A-Za-z0-9._@+-]+)+$/, 'must be an absolute path such as "/etc/spire/server.conf"')
        .optional(),
    ),
    NODEBOOT_CA_FILE: opt(
      z
        .string()
        .regex(/^\/[^\0]*$/, 'must be an absolute path to a PEM file')
        .optional(),
    ),
  })
  .refine((c) => c.NODEBOOT_METRICS_PORT === 0 || c.NODEBOOT_METRICS_PORT !== c.NODEBOOT_TEMPORAL_METRICS_PORT, {
    path: ['NODEBOOT_TEMPORAL_METRICS_PORT'],
    message: 'must differ from NODEBOOT_METRICS_PORT (two endpoints, two ports)',
  });
export type WorkerConfig = z.infer<typeof WorkerConfig>;

/**
 * The Bowtie trust the activities get: the allow-list, and the CA file's PEM
 * (read once here; a file that is not a PEM certificate fails the start,
 * naming the variable).
 */
export function bowtieTrust(
  config: Pick<WorkerConfig, 'NODEBOOT_BOWTIE_CONTROLLERS' | 'NODEBOOT_CA_FILE'>,
): BowtieTrust {
  const file = config.NODEBOOT_CA_FILE;
  if (!file) return { controllers: config.NODEBOOT_BOWTIE_CONTROLLERS };
  const invalid = (why: string) => new Error(`invalid worker configuration:\n  NODEBOOT_CA_FILE: ${file}: ${why}`);
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw invalid(`cannot be read (${(err as { code?: string }).code ?? 'error'})`);
  }
  try {
    new X509Certificate(pem); // parses, or throws (the content is never echoed)
  } catch {
    throw invalid('is not a PEM certificate');
  }
  return { controllers: config.NODEBOOT_BOWTIE_CONTROLLERS, ca: pem };
}

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const r = WorkerConfig.safeParse(env);
  if (!r.success) throw new Error(`invalid worker configuration:\n  ${describeZodError(r.error).join('\n  ')}`);
  return r.data;
}
