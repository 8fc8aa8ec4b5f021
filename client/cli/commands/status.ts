/** `nodeboot status <node>` and `nodeboot watch <node>`. */
import { emit, timeoutMs, type Context } from '../context.js';
import type { ExitCode } from '../exit-codes.js';
import { ProgressPrinter, renderStatus } from '../render.js';
import { findRun, follow, viewRun } from '../runs.js';

/** The run's state, steps with evidence, last failure and hint. Exit code = the outcome so far (running: 8). */
export async function status(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const view = await viewRun(t, ctx.cmd.target!, ctx.flags.run);
  return emit(ctx, view.exitCode, { run: view }, renderStatus(view));
}

/**
 * Live progress through the `status` query: a redrawn block on a terminal,
 * one plain line per change otherwise, one JSON object per change with --json
 * (then a last `{"result": ...}` line). Ends when the run ends or is held.
 */
export async function watch(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  const { desc } = await findRun(t, nodeId);
  const printer = new ProgressPrinter(ctx.io, 'out', { json: ctx.flags.json });
  const view = await follow(t, nodeId, {
    runId: desc.runId,
    intervalMs: ctx.flags.interval,
    timeoutMs: timeoutMs(ctx.flags),
    onView: (v, prev) => printer.update(v, prev),
  });
  if (ctx.flags.json) {
    ctx.io.out(JSON.stringify({ result: { ok: view.exitCode === 0, exitCode: view.exitCode, run: view } }));
    return view.exitCode;
  }
  const tail: string[] = [];
  if (!ctx.io.isTTY('out') && view.lastFailure && view.outcome !== 'provisioned')
    tail.push(`hint: ${view.lastFailure.suggestion}`);
  if (view.next.length) tail.push(`next: ${view.next.join('  |  ')}`);
  for (const l of tail) ctx.io.out(l);
  return view.exitCode;
}
