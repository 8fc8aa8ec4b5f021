/**
 * Worker configuration: read from the environment once, at the edge, and
 * validated (empty strings count as unset). Nothing else reads process.env.
 */
import { z } from 'zod';
import { describeZodError } from '../common/names.js';
import { TASK_QUEUE } from '../common/ids.js';
import { FaultPauseSpec } from './fault-injection.js';

const emptyAsUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const opt = <T extends z.ZodTypeAny>(schema: T) => z.preprocess(emptyAsUndefined, schema);

export const WorkerConfig = z.object({
  TEMPORAL_ADDRESS: opt(z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be host:port').default('127.0.0.1:7233')),
  TEMPORAL_NAMESPACE: opt(z.string().min(1).max(255).default('default')),
  TEMPORAL_TASK_QUEUE: opt(z.string().min(1).max(200).default(TASK_QUEUE)),
  DATABASE_URL: opt(z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').default('postgres://postgres@127.0.0.1:5432/nodeboot')),
  NODEBOOT_MAX_CONCURRENT_ACTIVITIES: opt(z.coerce.number().int().min(1).max(1000).default(20)),
  /** Tests only: "<activity>:<ms>" pauses that activity after its work (workers/fault-injection.ts). Unset: off. */
  NODEBOOT_FAULT_PAUSE: opt(FaultPauseSpec.optional()),
});
export type WorkerConfig = z.infer<typeof WorkerConfig>;

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const r = WorkerConfig.safeParse(env);
  if (!r.success) throw new Error(`invalid worker configuration:\n  ${describeZodError(r.error).join('\n  ')}`);
  return r.data;
}
