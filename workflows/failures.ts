/**
 * Input validation and failure shaping for the workflows.
 *
 * Everything that leaves a workflow as a failure is an ApplicationFailure whose
 * `type` is the type of the failure that caused it, so `nodeboot`, the UI and
 * the tests can read the type at the top of the chain and find the original
 * (ActivityFailure -> ApplicationFailure) underneath.
 */
import { ApplicationFailure, TimeoutFailure } from '@temporalio/workflow';
import { failure, redactSecrets } from '../common/errors.js';
import { ProvisionInput } from '../common/input.js';
import { describeZodError } from '../common/names.js';
import type { FailureInfo, UndoReason } from './definitions.js';

/**
 * Parse the workflow input, or throw a non-retryable `InvalidInput` failure
 * whose message names every bad field ("overlay.hubs.0.endpoint: must be ...").
 */
export function validateInput(raw: unknown): ProvisionInput {
  const parsed = ProvisionInput.safeParse(raw);
  const problems = parsed.success ? crossFieldProblems(parsed.data) : describeZodError(parsed.error);
  if (!parsed.success || problems.length > 0) {
    throw failure('InvalidInput', `invalid input: ${problems.join('; ')}`, { details: [{ issues: problems.map(redactSecrets) }] });
  }
  return parsed.data;
}

// Rules the schema does not express yet but the server would reject later, mid-run.
function crossFieldProblems(input: ProvisionInput): string[] {
  const problems: string[] = [];
  if (input.retry.maximumIntervalMs < input.retry.initialIntervalMs) {
    problems.push('retry.maximumIntervalMs: must be at least retry.initialIntervalMs');
  }
  return problems;
}

/**
 * What failed, as people read it: the first ApplicationFailure (or timeout) in
 * the cause chain. A timeout counts as `CommandTimeout`: the step did not
 * finish within its deadline.
 */
export function describeFailure(step: FailureInfo['step'], err: unknown): FailureInfo {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof ApplicationFailure) {
      return { step, type: e.type ?? 'Error', message: redactSecrets(e.message) };
    }
    if (e instanceof TimeoutFailure) {
      return { step, type: 'CommandTimeout', message: `${step} exceeded its ${(e.timeoutType ?? 'start-to-close').toLowerCase().replace(/_/g, '-')} timeout` };
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return { step, type: err instanceof Error ? err.name : 'Error', message: redactSecrets(message) };
}

export interface UnwindReport {
  undone: FailureInfo['step'][];
  failed: FailureInfo[];
}

/**
 * The failure a workflow ends with after compensating: same `type` as the
 * original, a message that says what failed and what was undone, and the
 * original failure as its cause.
 */
export function compensatedFailure(info: FailureInfo, reason: UndoReason, report: UnwindReport, cause: unknown): ApplicationFailure {
  const parts = [`${info.step} failed (${info.type}): ${info.message}`];
  parts.push(report.undone.length ? `undone: ${report.undone.join(', ')}` : 'nothing to undo');
  if (report.failed.length) parts.push(`undo failed: ${report.failed.map((f) => `${f.step} (${f.type})`).join(', ')}`);
  return ApplicationFailure.create({
    type: info.type,
    message: redactSecrets(parts.join('; ')),
    nonRetryable: true,
    details: [{ step: info.step, reason, undone: report.undone, undoFailed: report.failed }],
    cause: cause instanceof Error ? cause : undefined,
  });
}
