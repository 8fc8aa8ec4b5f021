/**
 * `nodeboot history <node>`: the node's event log from the inventory ledger
 * (PostgreSQL, DATABASE_URL), oldest first, across all its runs. It outlives
 * Temporal's retention, and stays after a decommission.
 */
import { emit, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';

export async function history(ctx: Context): Promise<ExitCode> {
  const nodeId = ctx.cmd.target!;
  // Loaded here: only this command needs the PostgreSQL driver.
  const { Ledger } = await import('../../../inventory/index.js');
  const ledger = await Ledger.connect(ctx.config.DATABASE_URL, {
    max: 1,
    connectTimeoutMs: ctx.config.NODEBOOT_CONNECT_TIMEOUT * 1000,
  });
  try {
    const events = await ledger.listEvents(nodeId, {
      ...(ctx.flags.run ? { runId: ctx.flags.run } : {}),
      limit: ctx.flags.limit ?? 1000,
    });
    if (events.length === 0) {
      throw new CliError(
        EXIT.NOT_FOUND,
        `the ledger at ${ledger.target} has no events for node ${nodeId}${ctx.flags.run ? ` in run ${ctx.flags.run}` : ''}`,
        {
          suggestion: 'check the node id and DATABASE_URL (the worker writes events to its ledger)',
        },
      );
    }
    const human = events.map((e) => {
      const detail = Object.keys(e.detail).length ? `  ${JSON.stringify(e.detail)}` : '';
      const attempt = e.attempt ? ` #${e.attempt}` : '';
      return `${e.at}  ${e.runId.slice(0, 8)}  ${e.step.padEnd(16)} ${(e.kind + attempt).padEnd(20)} ${e.errorType ?? ''}${detail}`.trimEnd();
    });
    return emit(ctx, EXIT.OK, { nodeId, ledger: ledger.target, count: events.length, events }, human);
  } finally {
    await ledger.close();
  }
}
