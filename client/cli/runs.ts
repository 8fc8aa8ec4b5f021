/**
 * How nodeboot sees a provisioning run: the `status` query when a worker
 * answers, Temporal's own record (describe, search attributes, the close
 * event) when none does, folded into one RunView with an outcome and the exit
 * code that outcome means.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Connection,
  Client,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type WorkflowExecutionDescription,
  type WorkflowExecutionStatusName,
  type WorkflowHandle,
} from '@temporalio/client';
import { CancelledFailure, TerminatedFailure } from '@temporalio/common';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { compensationDetailsOf } from '../../common/compensation.js';
import { errorClassOf } from '../../common/errors.js';
import { decommissionWorkflowId, provisionWorkflowId } from '../../common/ids.js';
import { lifecycleState, type RunFacts } from '../../common/lifecycle.js';
import { BootstrapStepKey, ErrorTypeKey, FailedStepKey, SegmentKey } from '../../common/search-attributes.js';
import { STEPS, type StepName } from '../../common/steps.js';
import {
  statusQuery,
  type FailureInfo,
  type ProvisionNodeWorkflow,
  type ProvisionReceipt,
  type ProvisionStatus,
  type RunState,
  type StepStatus,
} from '../../common/definitions.js';
import { latestRun, runFacts } from '../lifecycle.js';
import { rootFailureType } from '../provision.js';
import { tlsOf, type CliConfig } from './config.js';
import { CliError, UnreachableError, isUnreachable, oneLine } from './errors.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { suggestionFor } from './suggestions.js';

export interface Temporal {
  client: Client;
  connection: Connection;
  config: CliConfig;
  close(): Promise<void>;
}

/** Connect (eagerly: an unreachable server exits 6 here, not halfway through a command). */
export async function connectTemporal(config: CliConfig): Promise<Temporal> {
  const tls = tlsOf(config);
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: config.TEMPORAL_ADDRESS,
      connectTimeout: config.NODEBOOT_CONNECT_TIMEOUT * 1000,
      ...(tls !== undefined ? { tls } : {}),
      ...(config.TEMPORAL_API_KEY ? { apiKey: config.TEMPORAL_API_KEY } : {}),
    });
    // Connecting proves the socket; this proves the frontend and the namespace.
    await connection.withDeadline(Date.now() + config.NODEBOOT_CONNECT_TIMEOUT * 1000, () =>
      connection.workflowService.describeNamespace({ namespace: config.TEMPORAL_NAMESPACE }),
    );
  } catch (err) {
    if (err instanceof CliError) throw err;
    if (isUnreachable(err) || /deadline/i.test(oneLine(err))) throw new UnreachableError(config.TEMPORAL_ADDRESS, err);
    if (/namespace .*not found/i.test(oneLine(err))) {
      throw new CliError(
        EXIT.INVALID,
        `namespace "${config.TEMPORAL_NAMESPACE}" does not exist on ${config.TEMPORAL_ADDRESS}`,
        {
          code: 'INVALID_CONFIG',
          fields: [{ path: 'TEMPORAL_NAMESPACE (--namespace)', message: 'no such namespace' }],
        },
      );
    }
    throw err;
  }
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  return { client, connection, config, close: () => connection.close() };
}

/**
 * What happened to a run, as CI and on-call read it. Each outcome has one
 * exit code (OUTCOME_EXIT).
 */
export type Outcome =
  | 'provisioned'
  | 'running'
  | 'compensating'
  | 'held'
  | 'compensated'
  | 'cancelled'
  | 'failed'
  | 'invalid-input'
  | 'terminated'
  | 'timed-out'
  // The run itself completed or failed, but a decommission ran after it (common/lifecycle.ts).
  | 'decommissioning'
  | 'decommissioned'
  | 'decommission-failed';

export const OUTCOME_EXIT: Record<Outcome, ExitCode> = {
  provisioned: EXIT.OK,
  running: EXIT.RUNNING,
  compensating: EXIT.RUNNING,
  held: EXIT.HELD,
  compensated: EXIT.FAILED,
  cancelled: EXIT.FAILED,
  failed: EXIT.INCOMPLETE,
  'invalid-input': EXIT.INVALID,
  terminated: EXIT.INCOMPLETE,
  'timed-out': EXIT.INCOMPLETE,
  decommissioning: EXIT.RUNNING,
  decommissioned: EXIT.DECOMMISSIONED,
  'decommission-failed': EXIT.INCOMPLETE,
};

export interface FailureView extends FailureInfo {
  errorClass: string;
  suggestion: string;
}

export interface RunView {
  nodeId: string;
  workflowId: string;
  runId: string;
  /** Temporal's execution status (RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, ...). */
  execution: WorkflowExecutionStatusName;
  outcome: Outcome;
  exitCode: ExitCode;
  /** The workflow's own state from the `status` query; null when no worker answered it. */
  state: RunState | null;
  currentStep: StepName | null;
  heldStep: StepName | null;
  /** The six steps with state, runs, duration, evidence (empty when no worker answered the query). */
  steps: StepStatus[];
  lastFailure: FailureView | null;
  searchAttributes: {
    segment: string | null;
    bootstrapStep: string | null;
    failedStep: string | null;
    errorType: string | null;
  };
  taskQueue: string;
  startTime: string;
  closeTime: string | null;
  /** Where the step detail came from: the run's `status` query, or Temporal's record only. */
  source: 'query' | 'describe';
  /** The provisioning receipt, once the node is provisioned. */
  receipt?: ProvisionReceipt;
  /** The decommission run that ran after this run (then the outcome is decommissioning / decommissioned / decommission-failed). */
  decommission: RunFacts | null;
  /** The command to run next, when there is an obvious one. */
  next: string[];
}

/** How long a `status` query may take before we fall back to Temporal's record (no worker polling). */
export const QUERY_TIMEOUT_MS = 5_000;

export interface FoundRun {
  handle: WorkflowHandle<ProvisionNodeWorkflow>;
  desc: WorkflowExecutionDescription;
}

/** The node's latest provisioning run (or `runId`), or CliError NOT_FOUND. */
export async function findRun(t: Temporal, nodeId: string, runId?: string): Promise<FoundRun> {
  const workflowId = provisionWorkflowId(nodeId);
  try {
    const desc = await t.client.workflow.getHandle(workflowId, runId).describe();
    return { handle: t.client.workflow.getHandle<ProvisionNodeWorkflow>(workflowId, desc.runId), desc };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      throw new CliError(
        EXIT.NOT_FOUND,
        `no provisioning run for node ${nodeId}${runId ? ` with run id ${runId}` : ''}`,
        {
          suggestion: `start one with \`nodeboot start node.json\`; \`nodeboot list\` shows the nodes there are`,
        },
      );
    }
    throw err;
  }
}

/** True when some worker polled `taskQueue` recently (Temporal keeps pollers for a few minutes). */
export async function hasPollers(t: Temporal, taskQueue: string): Promise<boolean> {
  const r = await t.client.workflowService.describeTaskQueue({
    namespace: t.config.TEMPORAL_NAMESPACE,
    // No type: the server describes the workflow task queue, the one a `decide` update needs.
    taskQueue: { name: taskQueue },
  });
  return (r.pollers?.length ?? 0) > 0;
}

/** The input a run was started with (the first event of its history), as plain JSON. */
export async function runInput(t: Temporal, workflowId: string, runId: string): Promise<unknown> {
  const resp = await t.client.workflowService.getWorkflowExecutionHistory({
    namespace: t.config.TEMPORAL_NAMESPACE,
    execution: { workflowId, runId },
    maximumPageSize: 1,
  });
  const payloads = resp.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads;
  return decodeFromPayloadsAtIndex(t.client.options.loadedDataConverter, 0, payloads);
}

/** The run's `status` query, or null when no worker answers within QUERY_TIMEOUT_MS. */
export async function queryStatus(
  t: Temporal,
  handle: WorkflowHandle,
  timeoutMs = QUERY_TIMEOUT_MS,
): Promise<ProvisionStatus | null> {
  try {
    return await t.client.withDeadline(Date.now() + timeoutMs, () => handle.query(statusQuery));
  } catch (err) {
    if (isUnreachable(err)) throw new UnreachableError(t.config.TEMPORAL_ADDRESS, err);
    return null;
  }
}

/** Build the view of a run (the latest when `runId` is not given). */
export async function viewRun(t: Temporal, nodeId: string, runId?: string, ref?: FoundRun): Promise<RunView> {
  const { handle, desc } = ref ?? (await findRun(t, nodeId, runId));
  const execution = desc.status.name;
  const status = await queryStatus(t, handle);
  const sa = desc.typedSearchAttributes;
  const searchAttributes = {
    segment: sa.get(SegmentKey) ?? null,
    bootstrapStep: sa.get(BootstrapStepKey) ?? null,
    failedStep: sa.get(FailedStepKey) ?? null,
    errorType: sa.get(ErrorTypeKey) ?? null,
  };

  let receipt: ProvisionReceipt | undefined;
  let closeError: unknown;
  if (execution === 'COMPLETED') receipt = await handle.result();
  else if (execution !== 'RUNNING' && execution !== 'PAUSED')
    closeError = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );

  const runOutcome = outcomeOf(execution, status, searchAttributes.failedStep, closeError);
  // A closed run is not the last word when a decommission ran after it: the node's state is.
  const decommission =
    execution === 'RUNNING' || execution === 'PAUSED'
      ? null
      : await latestRun(t.client, decommissionWorkflowId(nodeId));
  const nodeState = decommission ? lifecycleState(runFacts(desc), decommission) : null;
  const decommissioned =
    nodeState === 'decommissioning' || nodeState === 'decommissioned' || nodeState === 'decommission-failed';
  const outcome: Outcome = decommissioned ? nodeState : runOutcome;
  let failure: FailureInfo | null = status?.lastFailure ?? null;
  if (outcome === 'terminated') {
    failure = {
      step: (searchAttributes.bootstrapStep as StepName | null) ?? 'workflow',
      type: 'Terminated',
      message: terminationReason(closeError),
    };
  } else if (!failure) {
    failure = failureFromClose(closeError, searchAttributes);
  }
  if (!failure && searchAttributes.failedStep && searchAttributes.errorType) {
    // Open and no worker answered: the search attributes still name the failure.
    failure = {
      step: searchAttributes.failedStep as StepName,
      type: searchAttributes.errorType,
      message: '(message unavailable: no worker answered the status query)',
    };
  }

  return {
    nodeId,
    workflowId: desc.workflowId,
    runId: desc.runId,
    execution,
    outcome,
    exitCode: OUTCOME_EXIT[outcome],
    state: status?.state ?? null,
    currentStep:
      status?.currentStep ??
      (execution === 'RUNNING' ? ((searchAttributes.bootstrapStep as StepName | null) ?? null) : null),
    heldStep: status?.heldStep ?? (outcome === 'held' ? (searchAttributes.failedStep as StepName | null) : null),
    steps: status?.steps ?? [],
    lastFailure: failure
      ? { ...failure, errorClass: errorClassOf(failure.type), suggestion: suggestionFor(failure.type, nodeId) }
      : null,
    searchAttributes,
    taskQueue: desc.taskQueue,
    startTime: desc.startTime.toISOString(),
    closeTime: desc.closeTime?.toISOString() ?? null,
    source: status ? 'query' : 'describe',
    ...(receipt ? { receipt } : {}),
    decommission: decommissioned ? decommission : null,
    next: nextCommands(outcome, nodeId),
  };
}

function outcomeOf(
  execution: WorkflowExecutionStatusName,
  status: ProvisionStatus | null,
  failedStep: string | null,
  closeError: unknown,
): Outcome {
  switch (execution) {
    case 'COMPLETED':
      return 'provisioned';
    case 'TERMINATED':
      return 'terminated';
    case 'TIMED_OUT':
      return 'timed-out';
    case 'CANCELLED':
      return status?.state === 'failed' ? 'failed' : 'cancelled';
    case 'FAILED': {
      const failure = status?.lastFailure ?? failureFromClose(closeError, { failedStep: null, errorType: null });
      if (failure?.type === 'InvalidInput' && failure.step === 'workflow') return 'invalid-input';
      if (status) return status.state === 'compensated' ? 'compensated' : 'failed';
      return undoFailedIn(closeError) ? 'failed' : 'compensated';
    }
    default:
      if (status)
        return status.state === 'held' ? 'held' : status.state === 'compensating' ? 'compensating' : 'running';
      // No worker answered: the search attributes tell a held run (FailedStep stays set while it waits).
      return failedStep ? 'held' : 'running';
  }
}

/** The failure a closed run ended with, from its close event (when no worker answered the query). */
function failureFromClose(
  closeError: unknown,
  sa: { failedStep: string | null; errorType: string | null },
): FailureInfo | null {
  if (!(closeError instanceof WorkflowFailedError)) return null;
  const cause = closeError.cause;
  if (cause instanceof CancelledFailure)
    return {
      step: (sa.failedStep as StepName | null) ?? 'workflow',
      type: 'Cancelled',
      message: 'the run was cancelled',
    };
  const type = rootFailureType(closeError) ?? sa.errorType ?? 'Error';
  const step = compensationDetailsOf(cause)?.step ?? (sa.failedStep as StepName | null) ?? 'workflow';
  return { step, type, message: oneLine(cause ?? closeError) };
}

function undoFailedIn(closeError: unknown): boolean {
  const cause = closeError instanceof WorkflowFailedError ? closeError.cause : undefined;
  return (compensationDetailsOf(cause)?.undoFailed.length ?? 0) > 0;
}

function terminationReason(closeError: unknown): string {
  const cause = closeError instanceof WorkflowFailedError ? closeError.cause : undefined;
  const reason = cause instanceof TerminatedFailure ? cause.message : '';
  return reason ? `terminated: ${reason}` : 'the run was terminated (nothing was compensated)';
}

function nextCommands(outcome: Outcome, nodeId: string): string[] {
  switch (outcome) {
    case 'held':
      return [
        `nodeboot approve ${nodeId}`,
        `nodeboot compensate ${nodeId}`,
        `nodeboot rerun ${nodeId} --input fixed.json`,
      ];
    case 'running':
    case 'compensating':
      return [`nodeboot watch ${nodeId}`];
    case 'compensated':
    case 'cancelled':
      return [`nodeboot rerun ${nodeId}`];
    case 'invalid-input':
      return [`nodeboot rerun ${nodeId} --input fixed.json`];
    case 'failed':
    case 'terminated':
    case 'timed-out':
      return [`nodeboot rerun ${nodeId}`, `nodeboot decommission ${nodeId}`];
    case 'decommissioned':
      return ['nodeboot start node.json'];
    case 'decommission-failed':
      return [`nodeboot decommission ${nodeId}`, 'nodeboot start node.json'];
    default:
      return [];
  }
}

export interface FollowOptions {
  runId: string;
  intervalMs?: number;
  /** Give up (outcome still running, exit 8) after this long. */
  timeoutMs?: number;
  /** Stop at 'held' (start --wait, watch) instead of waiting for an operator. */
  stopWhenHeld?: boolean;
  onView?(view: RunView, previous: RunView | undefined): void;
}

/**
 * Poll the run until it closes (or is held, or `timeoutMs` passes), calling
 * `onView` on each poll. A run terminated and superseded by a newer one (a
 * `nodeboot rerun`) is followed into the new run.
 */
export async function follow(t: Temporal, nodeId: string, opts: FollowOptions): Promise<RunView> {
  const deadline = opts.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + opts.timeoutMs;
  let runId = opts.runId;
  let previous: RunView | undefined;
  for (;;) {
    const view = await viewRun(t, nodeId, runId);
    opts.onView?.(view, previous);
    previous = view;
    if (view.execution === 'TERMINATED' || view.execution === 'CONTINUED_AS_NEW') {
      const latest = await findRun(t, nodeId);
      if (latest.desc.runId !== runId && latest.desc.status.name === 'RUNNING') {
        runId = latest.desc.runId;
        continue;
      }
    }
    if (view.execution !== 'RUNNING' && view.execution !== 'PAUSED') return view;
    if (opts.stopWhenHeld !== false && view.outcome === 'held') return view;
    if (Date.now() >= deadline) return view;
    await sleep(Math.min(opts.intervalMs ?? 500, Math.max(0, deadline - Date.now())));
  }
}

/** Steps in runbook order with placeholders when the query did not answer. */
export function stepsOf(view: RunView): StepStatus[] {
  return view.steps.length ? view.steps : STEPS.map((step) => ({ step, state: 'pending', runs: 0 }));
}
