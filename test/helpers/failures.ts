/**
 * How a failed provisionNode run looks from the client, checked in one place:
 * WorkflowFailedError -> ApplicationFailure(type) -> ActivityFailure(step) ->
 * ApplicationFailure(type), the step's own error.
 */
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { expect } from 'vitest';

/** The WorkflowFailedError a run's result rejects with (anything else is rethrown). */
export async function failureOf(p: Promise<unknown>): Promise<WorkflowFailedError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof WorkflowFailedError) return err;
    throw err;
  }
  throw new Error('expected the workflow to fail');
}

/** Assert the chain for a step that failed for good with `type`; returns its top and the step's own failure. */
export function expectStepFailureChain(
  err: WorkflowFailedError,
  type: string,
  activityType: string,
): { top: ApplicationFailure; original: ApplicationFailure } {
  const top = err.cause;
  expect(top).toBeInstanceOf(ApplicationFailure);
  expect((top as ApplicationFailure).type).toBe(type);
  expect((top as ApplicationFailure).nonRetryable).toBe(true);
  const cause = (top as ApplicationFailure).cause;
  // A step (an activity) is linked by its ActivityFailure; a local activity (the preflight in a
  // lean run, LEAN_RUN_PATCH) reaches the workflow as its own failure, with no such link.
  let original: unknown = cause;
  if (activityType !== 'preflight' || cause instanceof ActivityFailure) {
    expect(cause).toBeInstanceOf(ActivityFailure);
    expect((cause as ActivityFailure).activityType).toBe(activityType);
    original = (cause as ActivityFailure).cause;
  }
  expect(original).toBeInstanceOf(ApplicationFailure);
  expect((original as ApplicationFailure).type).toBe(type);
  return { top: top as ApplicationFailure, original: original as ApplicationFailure };
}
