/**
 * Worker configuration: read from the environment once, at the edge, and
 * validated (empty strings count as unset). Nothing else reads process.env.
 */
import { z } from 'zod';
import { describeZodError } from '../common/names.js';
import { TASK_QUEUE } from '../common/ids.js';
import { FaultPauseSpec } from './fault-injection.js';
import { LOG_LEVELS } from './logging.js';

const emptyAsUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const port = z.coerce.number().int().min(0).max(65535);
const opt = <T extends z.ZodTypeAny>(schema: T) => z.preprocess(emptyAsUndefined, schema);

export const WorkerConfig = z.object({
  TEMPORAL_ADDRESS: opt(z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be host:port').default('127.0.0.1:7233')),
  TEMPORAL_NAMESPACE: opt(z.string().min(1).max(255).default('default')),
  TEMPORAL_TASK_QUEUE: opt(z.string().min(1).max(200).default(TASK_QUEUE)),
  DATABASE_URL: opt(z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').default('postgres://postgres@127.0.0.1:5432/nodeboot')),
  NODEBOOT_MAX_CONCURRENT_ACTIVITIES: opt(z.coerce.number().int().min(1).max(1000).default(20)),
  /** Tests only: "<activity>:<ms>" pauses that activity after its work (workers/fault-injection.ts). Unset: off. */
  NODEBOOT_FAULT_PAUSE: opt(FaultPauseSpec.optional()),
  // Observability (docs/observability.md). Ports: 0 or unset = off.
  /** Our step/compensation metrics, Prometheus text format at /metrics. */
  NODEBOOT_METRICS_PORT: opt(port.default(0)),
  /** Temporal Core's runtime metrics (Prometheus exporter) at /metrics. */
  NODEBOOT_TEMPORAL_METRICS_PORT: opt(port.default(0)),
  /** Address both metrics endpoints bind to (0.0.0.0 in a container). */
  NODEBOOT_METRICS_HOST: opt(z.string().regex(/^[A-Za-z0-9.:-]+$/, 'must be an IP address or host name').default('127.0.0.1')),
  /** JSON-line log level. */
  NODEBOOT_LOG_LEVEL: opt(z.enum(LOG_LEVELS).default('INFO')),
  /** OpenTelemetry tracing is on when this is set (workers/tracing.ts); the OTLP exporter reads it. */
  OTEL_EXPORTER_OTLP_ENDPOINT: opt(z.string().url('must be a URL, e.g. http://otel-collector:4318').optional()),
  OTEL_SERVICE_NAME: opt(z.string().min(1).max(100).optional()),
}).refine((c) => c.NODEBOOT_METRICS_PORT === 0 || c.NODEBOOT_METRICS_PORT !== c.NODEBOOT_TEMPORAL_METRICS_PORT, {
  path: ['NODEBOOT_TEMPORAL_METRICS_PORT'],
  message: 'must differ from NODEBOOT_METRICS_PORT (two endpoints, two ports)',
});
export type WorkerConfig = z.infer<typeof WorkerConfig>;

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const r = WorkerConfig.safeParse(env);
  if (!r.success) throw new Error(`invalid worker configuration:\n  ${describeZodError(r.error).join('\n  ')}`);
  return r.data;
}
