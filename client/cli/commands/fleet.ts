/**
 * `nodeboot fleet start|status|watch`: roll provisioning out to many nodes
 * (workflow fleet/<fleetId>) and follow it through its `progress` query.
 *
 * Exit codes: 0 every node provisioned (or already was); 3 the rollout ended
 * with failed or cancelled nodes, or halted on its failure budget; 8 still
 * running; 2 invalid fleet input; 5 no such fleet.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { FleetInputJson } from '../../../common/fleet.js';
import type { FleetProgress } from '../../../common/definitions.js';
import { startFleet, validateFleetInput, viewFleet, type FleetView } from '../../fleet.js';
import { InvalidInputError } from '../../provision.js';
import { emit, note, timeoutMs, type Context } from '../context.js';
import { CliError, splitFieldLines } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { readJsonInput } from '../input.js';
import type { Temporal } from '../runs.js';
import { fleetHealth } from './health.js';

export async function fleet(ctx: Context): Promise<ExitCode> {
  switch (ctx.cmd.sub) {
    case 'start':
      return fleetStart(ctx);
    case 'status':
      return fleetStatus(ctx);
    case 'health':
      return fleetHealth(ctx);
    default:
      return fleetWatch(ctx);
  }
}

async function fleetStart(ctx: Context): Promise<ExitCode> {
  const path = ctx.cmd.target!;
  const raw = await readJsonInput(path, ctx.stdin);
  try {
    validateFleetInput(raw); // before connecting: a bad file exits 2 with no server at all
  } catch (err) {
    if (!(err instanceof InvalidInputError)) throw err;
    throw new CliError(EXIT.INVALID, `invalid fleet input in ${path === '-' ? 'stdin' : path}: nothing was started`, {
      code: 'INVALID_INPUT',
      fields: splitFieldLines(err.fields),
    });
  }
  const t = await ctx.temporal();
  const {
    handle,
    started,
    fleet: valid,
  } = await startFleet(t.client, raw as FleetInputJson, { taskQueue: t.config.TEMPORAL_TASK_QUEUE });
  note(
    ctx,
    `${started ? 'started' : 'attached to the running'} ${handle.workflowId}: ${valid.nodes.length} nodes, window ${valid.input.window}`,
  );
  const fleetId = valid.input.fleetId;
  const view = ctx.flags.wait ? await followFleet(ctx, t, fleetId, (line) => note(ctx, line)) : await view0(t, fleetId);
  const code = ctx.flags.wait || view.execution !== 'RUNNING' ? exitCodeOf(view) : EXIT.OK;
  return emit(ctx, code, { started, attached: !started, fleet: view }, renderFleet(view));
}

async function fleetStatus(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const view = await view0(t, ctx.cmd.target!);
  return emit(ctx, exitCodeOf(view), { fleet: view }, renderFleet(view));
}

async function fleetWatch(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const onLine = ctx.flags.json ? undefined : (line: string) => ctx.io.out(line);
  const view = await followFleet(
    ctx,
    t,
    ctx.cmd.target!,
    onLine,
    (v) => ctx.flags.json && ctx.io.out(JSON.stringify({ fleet: v })),
  );
  const code = exitCodeOf(view);
  if (ctx.flags.json) ctx.io.out(JSON.stringify({ result: { ok: code === EXIT.OK, exitCode: code, fleet: view } }));
  else for (const l of renderFleet(view)) ctx.io.out(l);
  return code;
}

async function view0(t: Temporal, fleetId: string): Promise<FleetView> {
  try {
    return await viewFleet(t.client, fleetId);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      throw new CliError(EXIT.NOT_FOUND, `no fleet ${fleetId}`, {
        suggestion: 'start one with `nodeboot fleet start fleet.json`',
      });
    }
    throw err;
  }
}

/** Poll until the fleet's run closes (or --timeout), reporting each change once. */
async function followFleet(
  ctx: Context,
  t: Temporal,
  fleetId: string,
  onLine?: (line: string) => void,
  onChange?: (view: FleetView) => void,
): Promise<FleetView> {
  const limit = timeoutMs(ctx.flags);
  const deadline = limit === undefined ? Number.POSITIVE_INFINITY : Date.now() + limit;
  let last = '';
  for (;;) {
    const view = await view0(t, fleetId);
    const line = progressLine(view);
    if (line !== last) {
      onLine?.(line);
      onChange?.(view);
      last = line;
    }
    if (view.execution !== 'RUNNING' || Date.now() >= deadline) return view;
    await sleep(Math.min(ctx.flags.interval, Math.max(0, deadline - Date.now())));
  }
}

export function exitCodeOf(view: FleetView): ExitCode {
  if (view.execution === 'RUNNING') return EXIT.RUNNING;
  if (view.failure?.type === 'InvalidInput') return EXIT.INVALID;
  const p = view.progress;
  if (view.execution === 'COMPLETED' && p)
    return p.counts.failed === 0 && p.counts.cancelled === 0 && p.state === 'completed' ? EXIT.OK : EXIT.FAILED;
  if (view.execution === 'CANCELLED') return EXIT.FAILED;
  return EXIT.ERROR;
}

function countsText(p: FleetProgress): string {
  const c = p.counts;
  return `${p.total} nodes: ${c.succeeded} provisioned, ${c.failed} failed, ${c.running} running, ${c.pending} pending, ${c.skipped} skipped${c.cancelled ? `, ${c.cancelled} cancelled` : ''}`;
}

/** One line per state of the rollout (what watch prints when it changes). */
export function progressLine(view: FleetView): string {
  const p = view.progress;
  if (!p)
    return `${view.workflowId}: ${view.execution.toLowerCase()}${view.failure ? ` (${view.failure.type ?? 'error'}: ${view.failure.message})` : ''}`;
  const breaker = p.breaker.open ? ` | PAUSED: ${p.breaker.down.map((d) => d.name).join(', ')} down` : '';
  return `${view.workflowId}: ${p.state} | ${countsText(p)}${breaker}`;
}

export function renderFleet(view: FleetView): string[] {
  const p = view.progress;
  const lines = [
    `${view.workflowId} run ${view.runId}: ${view.execution.toLowerCase()}${p ? ` (${p.state}, run ${p.generation} of the rollout)` : ''}`,
  ];
  if (view.failure) lines.push(`  failure: ${view.failure.type ?? 'error'}: ${view.failure.message}`);
  if (!p) return lines;
  lines.push(
    `  ${countsText(p)}${p.counts.requeued ? ` (${p.counts.requeued} retried after a dependency failure)` : ''}`,
  );
  lines.push(
    `  window ${p.window} · budget: ${p.budget.failed} failed of ${p.budget.allowed ?? 'unlimited'} allowed${p.budget.exhausted ? ' — SPENT, rollout stopped' : ''}`,
  );
  const b = p.breaker;
  lines.push(
    b.open
      ? `  breaker: OPEN since ${b.openSince}: ${b.down.map((d) => `${d.name}${d.detail ? ` (${d.detail})` : ''}`).join('; ')}`
      : `  breaker: closed${b.opened ? ` (opened ${b.opened}×)` : ''}`,
  );
  const byType = Object.entries(p.failuresByType);
  if (byType.length) lines.push(`  failures by type: ${byType.map(([t, n]) => `${t} ${n}`).join(', ')}`);
  if (p.recentFailures.length) {
    lines.push('  latest failures:');
    for (const f of p.recentFailures) lines.push(`    ${f.nodeId}  ${f.step ?? '-'}  ${f.type}: ${f.message}`);
    lines.push(
      `  a node: \`nodeboot status <node>\`; after fixing the cause, \`nodeboot fleet start\` the same file again`,
    );
  }
  return lines;
}
