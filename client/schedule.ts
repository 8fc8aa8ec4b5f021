/**
 * Fleet maintenance on a Temporal Schedule: `maintain-fleet-<fleetId>[-<segment>]`
 * starts maintainFleet every N minutes (the Web UI lists it under Schedules).
 * Creating it again updates it (interval, budget, fleet file) in place.
 *
 * Overlap policy SKIP: while one run is open (checking, repairing, or held
 * for an operator) the schedule starts no other, so a held run also pauses
 * the schedule instead of piling up runs behind it.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
} from '@temporalio/client';
import type { FleetInputJson } from '../common/fleet.js';
import { TASK_QUEUE } from '../common/ids.js';
import { MaintainFleetOptions, maintainScheduleId, type MaintainFleetInput } from '../common/maintain-fleet.js';
import type { MaintainFleetWorkflow } from '../common/definitions.js';
import { validateFleetInput } from './fleet.js';
import { InvalidInputError } from './provision.js';

export const SCHEDULE_PREFIX = 'maintain-fleet-';

export interface ScheduleOptions extends Omit<MaintainFleetInput, 'fleet'> {
  /** How often, e.g. "5m", "1h" (a Temporal duration string), or milliseconds. */
  every: string | number;
  taskQueue?: string;
}

/** Milliseconds of "30s" / "5m" / "2h" / "1d"; null when it is not one. */
export function parseEvery(every: string | number): number | null {
  if (typeof every === 'number') return Number.isInteger(every) && every > 0 ? every : null;
  const m = /^(\d+)(s|m|h|d)$/.exec(every.trim());
  if (!m) return null;
  return Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** Create or update the fleet's maintenance schedule. Invalid options or fleet: InvalidInputError, nothing changed. */
export async function scheduleFleetMaintenance(
  client: Client,
  fleet: FleetInputJson,
  opts: ScheduleOptions,
): Promise<{ scheduleId: string; created: boolean; handle: ScheduleHandle }> {
  const valid = validateFleetInput(fleet);
  const { every, taskQueue, ...rest } = opts;
  const ms = parseEvery(every);
  const problems: string[] = [];
  if (ms === null || ms < 60_000) problems.push('every: must be a duration of at least 1m, such as "5m" or "1h"');
  const checked = MaintainFleetOptions.safeParse(rest);
  if (!checked.success) problems.push(...checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  if (rest.segment && !valid.nodes.some((n) => n.segment === rest.segment))
    problems.push(`segment: no node of fleet ${valid.input.fleetId} is in segment "${rest.segment}"`);
  if (problems.length) throw new InvalidInputError(problems);

  const scheduleId = maintainScheduleId(valid.input.fleetId, rest.segment);
  const args: [MaintainFleetInput] = [{ fleet, ...rest }];
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'maintainFleet',
    args,
    taskQueue: taskQueue ?? TASK_QUEUE,
    // The schedule appends the start time: one id per run, all under this prefix.
    workflowId: scheduleId,
    staticSummary: `fleet maintenance of ${valid.input.fleetId}${rest.segment ? ` (${rest.segment})` : ''}`,
  };
  const spec = { intervals: [{ every: ms! }] };
  try {
    const handle = await client.schedule.create<MaintainFleetWorkflow>({
      scheduleId,
      spec,
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' },
      state: { note: `nodeboot maintain schedule ${valid.input.fleetId}` },
    });
    return { scheduleId, created: true, handle };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    const handle = client.schedule.getHandle(scheduleId);
    await handle.update((prev) => ({ ...prev, spec, action }));
    return { scheduleId, created: false, handle };
  }
}

/** Delete it; false when there was none. */
export async function deleteFleetMaintenance(client: Client, scheduleId: string): Promise<boolean> {
  try {
    await client.schedule.getHandle(scheduleId).delete();
    return true;
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return false;
    throw err;
  }
}

export interface ScheduleView {
  scheduleId: string;
  everyMs: number | null;
  paused: boolean;
  /** Start times of the recent runs, newest last, and their workflow ids. */
  recent: { workflowId: string; at: string }[];
  nextRunAt: string | null;
}

/** Every fleet maintenance schedule (`maintain-fleet-*`). */
export async function listFleetMaintenance(client: Client): Promise<ScheduleView[]> {
  const out: ScheduleView[] = [];
  for await (const s of client.schedule.list()) {
    if (!s.scheduleId.startsWith(SCHEDULE_PREFIX)) continue;
    out.push(viewOf(await client.schedule.getHandle(s.scheduleId).describe()));
  }
  return out;
}

function viewOf(d: ScheduleDescription): ScheduleView {
  const every = d.spec.intervals?.[0]?.every;
  return {
    scheduleId: d.scheduleId,
    everyMs: typeof every === 'number' ? every : every === undefined ? null : (parseEvery(String(every)) ?? null),
    paused: d.state.paused,
    recent: d.info.recentActions.map((a) => ({
      workflowId: a.action.workflow.workflowId,
      at: a.takenAt.toISOString(),
    })),
    nextRunAt: d.info.nextActionTimes[0]?.toISOString() ?? null,
  };
}
