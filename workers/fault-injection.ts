/**
 * Fault injection for crash tests, off unless the worker is started with
 *
 *   NODEBOOT_FAULT_PAUSE=<activity>:<ms>[:before][,...]     e.g. issueOverlayKey:20000
 *
 * The named activity then pauses for `ms` AFTER it did its real work and
 * BEFORE its result is handed back to the server: the worst moment to lose
 * the worker (the work is done, the history does not know it). A test kills
 * the worker inside that window and proves the retry on another worker
 * finishes the job without doing it twice.
 *
 * It is an activity inbound interceptor, so it wraps the activity from the
 * outside: the boundary's heartbeat pulse (activities/boundary.ts) has
 * already stopped when the pause begins, and the pause heartbeats on its own
 * so the server keeps the attempt alive until the worker dies. The pause is
 * cancellation-aware. Errors of the activity pass through untouched (no pause).
 *
 *   NODEBOOT_FAULT_PAUSE=<activity>:<ms>:before
 *
 * pauses the activity's first attempt BEFORE it does anything instead, so a
 * test can break a dependency the activity is about to use (the fault matrix,
 * test/faults: a ledger stopped under a step that takes 100 ms).
 */
import { Context } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { z } from 'zod';
import { STEPS, UNDO_ACTIVITIES } from '../common/steps.js';
import { ROTATION_ACTIVITIES } from '../activities/types-rotation.js';

/** Activities a pause may target: the six steps, their undos and the key rotation's stages. */
export const FAULT_ACTIVITIES = [...STEPS, ...UNDO_ACTIVITIES, ...ROTATION_ACTIVITIES] as const;

/** The longest pause accepted (10 min): long enough for any test, short enough to be obviously a fault. */
export const MAX_FAULT_PAUSE_MS = 600_000;

/** How often the paused activity heartbeats (the worker throttles what it sends to the server). */
const PAUSE_HEARTBEAT_MS = 1_000;

export interface FaultPause {
  activity: (typeof FAULT_ACTIVITIES)[number];
  ms: number;
  /** 'after' (default): after its work, before its result; 'before': before the first attempt's work. */
  when?: 'before' | 'after';
}

/** `<activity>:<ms>` -> { activity, ms }, with messages that say what is wrong. */
export const FaultPauseSpec = z
  .string()
  .trim()
  .regex(/^[A-Za-z]+:\d+(:before)?$/, 'must be "<activity>:<ms>", e.g. "issueOverlayKey:20000"')
  .transform((s) => {
    const [activity, ms, when] = s.split(':') as [string, string, string | undefined];
    return { activity, ms: Number(ms), when: when === 'before' ? ('before' as const) : ('after' as const) };
  })
  .pipe(
    z.object({
      activity: z.enum(FAULT_ACTIVITIES, { error: `must name one of ${FAULT_ACTIVITIES.join(', ')}` }),
      ms: z.number().int().min(1).max(MAX_FAULT_PAUSE_MS, `must be at most ${MAX_FAULT_PAUSE_MS} ms`),
      when: z.enum(['before', 'after']),
    }),
  );

/**
 * One or more pauses, comma-separated ("launchWorkloads:60000:before,undoRegisterEntries:30000"):
 * a test can hold one activity while it acts and have another pause later in the same run.
 */
export const FaultPauseSpecs = z
  .string()
  .transform((s) => s.split(','))
  .pipe(z.array(FaultPauseSpec).min(1));

export function describeFaultPause(p: FaultPause): string {
  if (p.when === 'before') return `${p.activity} pauses ${p.ms} ms before its first attempt's work`;
  return `${p.activity} pauses ${p.ms} ms after its work, before returning its result`;
}

/**
 * The interceptor factory for `Worker.create({ interceptors: { activity: [...] } })`.
 * `log` gets one line each time a pause begins (tests wait for it).
 */
export function faultPauseInterceptor(
  pause: FaultPause,
  log: (line: string) => void = (l) => console.error(l),
): ActivityInterceptorsFactory {
  return (ctx) => {
    if (ctx.info.activityType !== pause.activity) return {};
    return {
      inbound: {
        async execute(input, next) {
          if (pause.when === 'before') {
            const activity = Context.current();
            if (activity.info.attempt === 1) {
              const workflowId = activity.info.workflowExecution?.workflowId ?? '(no workflow)';
              log(
                `[worker] fault injection: ${activity.info.activityType} attempt 1 of ${workflowId} pausing ${pause.ms} ms before its work`,
              );
              await holdWithHeartbeats(activity, pause.ms);
            }
            return next(input);
          }
          const result = await next(input);
          const activity = Context.current();
          const { activityType, attempt } = activity.info;
          const workflowId = activity.info.workflowExecution?.workflowId ?? '(no workflow)';
          log(
            `[worker] fault injection: ${activityType} attempt ${attempt} of ${workflowId} did its work; pausing ${pause.ms} ms before returning`,
          );
          await holdWithHeartbeats(activity, pause.ms);
          log(`[worker] fault injection: ${activityType} attempt ${attempt} of ${workflowId} returns after the pause`);
          return result;
        },
      },
    };
  };
}

/** Sleep `ms` (cancellation-aware), heartbeating so the server keeps the attempt alive. */
async function holdWithHeartbeats(activity: Context, ms: number): Promise<void> {
  activity.heartbeat('fault injection: paused');
  const pulse = setInterval(() => activity.heartbeat('fault injection: paused'), PAUSE_HEARTBEAT_MS);
  try {
    await activity.sleep(ms);
  } finally {
    clearInterval(pulse);
  }
}
