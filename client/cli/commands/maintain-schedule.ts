/**
 * `nodeboot maintain schedule <fleet> --every 5m [--segment S] [--input fleet.json]
 * [--max-repairs K] [--max-broken-percent X]`: create or update the Temporal
 * Schedule `maintain-fleet-<fleet>[-<segment>]` that runs maintainFleet
 * (client/schedule.ts). `--delete` removes it, `--list` lists them all.
 */
import type { FleetInputJson } from '../../../common/fleet.js';
import { maintainScheduleId } from '../../../common/maintain-fleet.js';
import { InvalidInputError } from '../../provision.js';
import { deleteFleetMaintenance, listFleetMaintenance, scheduleFleetMaintenance } from '../../schedule.js';
import { emit, type Context } from '../context.js';
import { CliError, splitFieldLines } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { fleetFile } from './health.js';

export async function maintainSchedule(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  if (ctx.flags.list) {
    const schedules = await listFleetMaintenance(t.client);
    return emit(
      ctx,
      EXIT.OK,
      { schedules },
      schedules.length
        ? schedules.map(
            (s) =>
              `${s.scheduleId}: every ${s.everyMs === null ? '?' : `${s.everyMs / 60_000}m`}${s.paused ? ' (paused)' : ''}, next ${s.nextRunAt ?? '-'}, last ${s.recent.at(-1)?.workflowId ?? 'never'}`,
          )
        : ['no fleet maintenance schedules'],
    );
  }
  const fleetId = ctx.cmd.target!;
  const segment = ctx.flags.segment;
  if (ctx.flags.delete) {
    const scheduleId = maintainScheduleId(fleetId, segment);
    const deleted = await deleteFleetMaintenance(t.client, scheduleId);
    if (!deleted)
      throw new CliError(EXIT.NOT_FOUND, `no schedule ${scheduleId}`, {
        suggestion: '`nodeboot maintain schedule --list`',
      });
    return emit(ctx, EXIT.OK, { scheduleId, deleted: true }, [`${scheduleId}: deleted (a run in progress finishes)`]);
  }
  const { raw, source } = await fleetFile(ctx, t, fleetId);
  const budget = {
    ...(ctx.flags['max-repairs'] !== undefined ? { maxConcurrentRepairs: ctx.flags['max-repairs'] } : {}),
    ...(ctx.flags['max-broken-percent'] !== undefined ? { maxBrokenPercent: ctx.flags['max-broken-percent'] } : {}),
  };
  try {
    const { scheduleId, created } = await scheduleFleetMaintenance(t.client, raw as FleetInputJson, {
      every: ctx.flags.every!,
      ...(segment ? { segment } : {}),
      budget,
      taskQueue: t.config.TEMPORAL_TASK_QUEUE,
    });
    return emit(
      ctx,
      EXIT.OK,
      { scheduleId, created, every: ctx.flags.every, segment: segment ?? null, budget, fleetFrom: source },
      [
        `${scheduleId}: ${created ? 'created' : 'updated'}, every ${ctx.flags.every} (fleet file: ${source})`,
        `hint: the Web UI lists it under Schedules; \`temporal schedule trigger --schedule-id ${scheduleId}\` runs it now`,
      ],
    );
  } catch (err) {
    if (!(err instanceof InvalidInputError)) throw err;
    throw new CliError(EXIT.INVALID, 'invalid schedule: nothing was created or changed', {
      code: 'INVALID_INPUT',
      fields: splitFieldLines(err.fields),
    });
  }
}
