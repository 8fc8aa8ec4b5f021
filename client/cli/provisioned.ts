/**
 * What the day-2 commands (repair, maintain, rotate) start from: a node whose
 * latest provisioning run completed, and that run's input (or --input).
 */
import { CliError } from './errors.js';
import { EXIT } from './exit-codes.js';
import type { Context } from './context.js';
import { readJsonInput } from './input.js';
import { findRun, runInput, type FoundRun, type Temporal } from './runs.js';

export interface ProvisionedNode {
  /** The node's latest provisioning run (completed). */
  last: FoundRun;
  /** The input to use: --input, else the one that run was started with. */
  raw: unknown;
  /** Where `raw` came from, for messages. */
  source: string;
}

/**
 * The node's completed provisioning run and the input to use; CONFLICT when the
 * latest run did not complete (`nothing` says what the command would lack, e.g.
 * "there is nothing to repair").
 */
export async function provisionedNode(
  ctx: Context,
  t: Temporal,
  nodeId: string,
  nothing: string,
): Promise<ProvisionedNode> {
  const last = await findRun(t, nodeId);
  const execution = last.desc.status.name;
  if (execution !== 'COMPLETED') {
    throw new CliError(
      EXIT.CONFLICT,
      `${nodeId} is not provisioned (its last run is ${execution.toLowerCase()}): ${nothing}`,
      {
        suggestion:
          execution === 'RUNNING'
            ? `\`nodeboot watch ${nodeId}\` to follow it`
            : `\`nodeboot rerun ${nodeId}\` to finish its provisioning`,
      },
    );
  }
  return { last, ...(await inputOf(ctx, t, last)) };
}

/** --input, else the input `run` was started with; and where it came from. */
export async function inputOf(
  ctx: Context,
  t: Temporal,
  run: FoundRun | null,
): Promise<{ raw: unknown; source: string }> {
  if (ctx.flags.input) return { raw: await readJsonInput(ctx.flags.input, ctx.stdin), source: ctx.flags.input };
  if (run === null) throw new Error('inputOf: no run to read the input of and no --input');
  return { raw: await runInput(t, run.desc.workflowId, run.desc.runId), source: `the input of run ${run.desc.runId}` };
}

/** INVALID when an input for one node is given to a command about another. */
export function assertSameNode(source: string, inputNodeId: string, nodeId: string): void {
  if (inputNodeId === nodeId) return;
  throw new CliError(EXIT.INVALID, `${source} is for node "${inputNodeId}", not "${nodeId}"`, {
    code: 'INVALID_INPUT',
    fields: [{ path: 'nodeId', message: `must be "${nodeId}"` }],
  });
}
