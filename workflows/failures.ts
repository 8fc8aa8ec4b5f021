/**
 * Input validation and failure shaping for the workflows.
 *
 * Everything that leaves a workflow as a failure is an ApplicationFailure whose
 * `type` is the type of the failure that caused it, so `nodeboot`, the UI and
 * the tests can read the type at the top of the chain and find the original
 * (ActivityFailure -> ApplicationFailure) underneath.
 */
import { ApplicationFailure, TimeoutFailure, patched } from '@temporalio/workflow';
import type { CompensationDetails } from '../common/compensation.js';
import { failure, redactSecrets } from '../common/errors.js';
import type { ProvisionInput } from '../common/input.js';
import { checkProvisionInput, type CheckOptions } from '../common/validate.js';
import type { FailureInfo, UndoReason } from '../common/definitions.js';

/**
 * Parse the workflow input with the one validation (common/validate.ts), or
 * throw a non-retryable `InvalidInput` failure whose message names every bad
 * field ("overlay.hubs.0.endpoint: must be ...").
 */
export function validateInput(raw: unknown, opts: CheckOptions = {}): ProvisionInput {
  const checked = checkProvisionInput(raw, opts);
  if (!checked.ok) throw invalidInput(checked.problems);
  return checked.value;
}

/**
 * The rules this run is held to: all of them for runs started now; for older
 * runs (replayed from history) only the rules they were started under, so their
 * histories replay unchanged (common/validate.ts `recordedBefore`).
 */
export function validationRules(lean = false): CheckOptions {
  if (lean) return {}; // LEAN_RUN_PATCH (workflows/proxies.ts): a new run, held to every rule
  if (!patched('one-validation')) return { recordedBefore: 'one-validation' };
  return patched('workload-command') ? {} : { acceptPortOnlyWorkloads: true };
}

function invalidInput(problems: string[]): ApplicationFailure {
  return failure('InvalidInput', `invalid input: ${problems.join('; ')}`, {
    details: [{ issues: problems.map(redactSecrets) }],
  });
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
      return {
        step,
        type: 'CommandTimeout',
        message: `${step} exceeded its ${(e.timeoutType ?? 'start-to-close').toLowerCase().replace(/_/g, '-')} timeout`,
      };
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
 * original failure as its cause. Its details are CompensationDetails
 * (common/compensation.ts: read back with compensationDetailsOf).
 */
export function compensatedFailure(
  info: FailureInfo,
  reason: UndoReason,
  report: UnwindReport,
  cause: unknown,
): ApplicationFailure {
  const parts = [`${info.step} failed (${info.type}): ${info.message}`];
  parts.push(report.undone.length ? `undone: ${report.undone.join(', ')}` : 'nothing to undo');
  if (report.failed.length) parts.push(`undo failed: ${report.failed.map((f) => `${f.step} (${f.type})`).join(', ')}`);
  return ApplicationFailure.create({
    type: info.type,
    message: redactSecrets(parts.join('; ')),
    nonRetryable: true,
    details: [
      { step: info.step, reason, undone: report.undone, undoFailed: report.failed } satisfies CompensationDetails,
    ],
    cause: cause instanceof Error ? cause : undefined,
  });
}
