/**
 * `nodeboot health <node>` and `nodeboot fleet health <fleet> [--segment S]`:
 * a read-only check of every link now. The check runs on the worker
 * (workflow checkHealth → activity checkNode), which has the root, the lab's
 * namespaces and the ledger; this command needs only Temporal.
 *
 * Prints per node: key age, agent SVID expiry, workload SVID expiries, the
 * attestor certificate's expiry (when the check reads one), the oldest hub
 * handshake, and each link that is not ok with the step that owns it.
 * Exit 0 only when every link of every checked node is ok; 11 otherwise.
 */
import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { decommissionWorkflowId, fleetWorkflowId } from '../../../common/ids.js';
import type { HealthReport } from '../../../common/health.js';
import { formatSeconds, summarizeHealth, type HealthSummary } from '../../../common/health-summary.js';
import type { ProvisionInputJson } from '../../../common/input.js';
import { validateFleetInput } from '../../fleet.js';
import { checkHealthNow } from '../../health.js';
import { InvalidInputError, rootFailureType } from '../../provision.js';
import { emit, note, timeoutMs, type Context } from '../context.js';
import { CliError, oneLine, splitFieldLines } from '../errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { readJsonInput, validateForStart } from '../input.js';
import { findRun, runInput, type Temporal } from '../runs.js';

export async function health(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const nodeId = ctx.cmd.target!;
  const raw = ctx.flags.input ? await readJsonInput(ctx.flags.input, ctx.stdin) : await provisionedInput(t, nodeId);
  const input = validateForStart(raw, ctx.flags.input ?? `the last provisioning input of ${nodeId}`);
  if (input.nodeId !== nodeId) {
    throw new CliError(EXIT.INVALID, `the input is for node "${input.nodeId}", not "${nodeId}"`, {
      code: 'INVALID_INPUT',
      fields: [{ path: 'nodeId', message: `must be "${nodeId}"` }],
    });
  }
  const reports = await run(ctx, t, nodeId, [raw as ProvisionInputJson]);
  return report(ctx, reports, []);
}

export async function fleetHealth(ctx: Context): Promise<ExitCode> {
  const t = await ctx.temporal();
  const fleetId = ctx.cmd.target!;
  const { nodes } = await fleetFile(ctx, t, fleetId);
  const inSegment = nodes.filter((n) => !ctx.flags.segment || n.segment === ctx.flags.segment);
  if (inSegment.length === 0)
    throw new CliError(
      EXIT.NOT_FOUND,
      `fleet ${fleetId} has no node${ctx.flags.segment ? ` in segment ${ctx.flags.segment}` : ''}`,
    );
  // Only provisioned nodes have links to check; the others are listed, not counted against the fleet.
  const states = await Promise.all(inSegment.map(async (n) => ({ n, done: await isProvisioned(t, n.nodeId) })));
  const skipped = states.filter((s) => !s.done).map((s) => s.n.nodeId);
  const todo = states.filter((s) => s.done).map((s) => s.n as unknown as ProvisionInputJson);
  if (todo.length === 0)
    throw new CliError(EXIT.NOT_FOUND, `no node of fleet ${fleetId} is provisioned: there is nothing to check`);
  note(
    ctx,
    `checking ${todo.length} node(s) of fleet ${fleetId}${skipped.length ? ` (${skipped.length} not provisioned: ${skipped.join(', ')})` : ''}`,
  );
  return report(ctx, await run(ctx, t, fleetId, todo), skipped);
}

/** The fleet file: --input, or the input the fleet's run `fleet/<fleetId>` was started with. */
export async function fleetFile(ctx: Context, t: Temporal, fleetId: string) {
  let raw: unknown;
  let source: string;
  if (ctx.flags.input) {
    raw = await readJsonInput(ctx.flags.input, ctx.stdin);
    source = ctx.flags.input;
  } else {
    const workflowId = fleetWorkflowId(fleetId);
    try {
      const desc = await t.client.workflow.getHandle(workflowId).describe();
      raw = await runInput(t, workflowId, desc.runId);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError)
        throw new CliError(EXIT.NOT_FOUND, `no fleet ${fleetId}`, {
          suggestion: 'name the fleet file with --input fleet.json',
        });
      throw err;
    }
    source = `the input of ${workflowId}`;
  }
  try {
    const valid = validateFleetInput(raw);
    if (valid.input.fleetId !== fleetId)
      throw new InvalidInputError([`fleetId: must be "${fleetId}" (is "${valid.input.fleetId}")`]);
    return { raw, source, ...valid };
  } catch (err) {
    if (!(err instanceof InvalidInputError)) throw err;
    throw new CliError(EXIT.INVALID, `invalid fleet input in ${source}`, {
      code: 'INVALID_INPUT',
      fields: splitFieldLines(err.fields),
    });
  }
}

async function provisionedInput(t: Temporal, nodeId: string): Promise<unknown> {
  const last = await findRun(t, nodeId);
  const execution = last.desc.status.name;
  if (execution !== 'COMPLETED') {
    throw new CliError(
      EXIT.CONFLICT,
      `${nodeId} is not provisioned (its last run is ${execution.toLowerCase()}): there is nothing to check`,
      {
        suggestion: `\`nodeboot status ${nodeId}\``,
      },
    );
  }
  if (!(await isProvisioned(t, nodeId))) {
    throw new CliError(
      EXIT.CONFLICT,
      `${nodeId} was decommissioned after its last provisioning: there is nothing to check`,
      { suggestion: `\`nodeboot status ${nodeId}\`` },
    );
  }
  return runInput(t, last.desc.workflowId, last.desc.runId);
}

/** Its latest provisioning run completed, and no decommission run started after it. */
async function isProvisioned(t: Temporal, nodeId: string): Promise<boolean> {
  let provisioned: Date;
  try {
    const { desc } = await findRun(t, nodeId);
    if (desc.status.name !== 'COMPLETED') return false;
    provisioned = desc.startTime;
  } catch (err) {
    if (err instanceof CliError && err.exitCode === EXIT.NOT_FOUND) return false;
    throw err;
  }
  try {
    const d = await t.client.workflow.getHandle(decommissionWorkflowId(nodeId)).describe();
    return d.startTime < provisioned;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return true;
    throw err;
  }
}

async function run(ctx: Context, t: Temporal, name: string, nodes: ProvisionInputJson[]): Promise<HealthReport[]> {
  try {
    return await checkHealthNow(t.client, nodes, {
      name,
      taskQueue: t.config.TEMPORAL_TASK_QUEUE,
      ...(timeoutMs(ctx.flags) ? { timeoutMs: timeoutMs(ctx.flags)! } : {}),
    });
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    const type = rootFailureType(err) ?? 'Error';
    throw new CliError(
      type === 'InvalidInput' ? EXIT.INVALID : EXIT.ERROR,
      `the health check failed (${type}): ${oneLine(err.cause ?? err)}`,
    );
  }
}

function report(ctx: Context, reports: HealthReport[], skipped: string[]): ExitCode {
  const nodes = reports.map(summarizeHealth);
  const ok = nodes.every((n) => n.status === 'ok');
  const json = {
    healthy: ok,
    nodes: nodes.map((n) => ({
      ...n,
      broken: n.problems.filter((p) => p.status === 'broken').map(({ link, step, detail }) => ({ link, step, detail })),
    })),
    ...(skipped.length ? { notProvisioned: skipped } : {}),
    reports,
  };
  return emit(ctx, ok ? EXIT.OK : EXIT.UNHEALTHY, json, [
    ...nodes.flatMap(render),
    ...(skipped.length ? [`not provisioned (not checked): ${skipped.join(', ')}`] : []),
  ]);
}

function render(n: HealthSummary): string[] {
  const workloads = n.workloadSvids.map((w) => `${w.name} ${formatSeconds(w.secondsLeft)}`).join(', ') || 'none';
  return [
    `${n.nodeId}: ${n.status === 'ok' ? 'healthy' : n.status}`,
    `  key age ${formatSeconds(n.keyAgeSeconds)} · last handshake ${n.lastHandshakeAgeSeconds === null ? 'n/a' : `${formatSeconds(n.lastHandshakeAgeSeconds)} ago`}`,
    `  agent SVID expires in ${formatSeconds(n.agentSvidSecondsLeft)} · workload SVIDs: ${workloads} · attestor certificate: ${formatSeconds(n.attestorCertSecondsLeft)}`,
    ...n.problems.map(
      (p) => `  ${p.status.toUpperCase()} ${p.link} (step ${p.step})${p.security ? ' [security]' : ''}: ${p.detail}`,
    ),
  ];
}
