/**
 * What a run that undid its steps says about it, in the `details` of the
 * failure it ends with: written by the workflows (provisionNode's
 * compensatedFailure, decommissionNode) and read back by the fleet workflow
 * and the CLI with the one reader below. Imported by workflows: no Node built-ins.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { StepName } from './steps.js';

/** Why steps were undone (activities/types.ts UndoRequest['reason'] is the same set). */
export type CompensationReason = 'failure' | 'security' | 'cancel' | 'decommission';

/** An undo that failed, as people read it (common/definitions.ts FailureInfo). */
export interface UndoFailure {
  step: StepName | 'workflow';
  type: string;
  message: string;
}

export interface CompensationDetails {
  /** The step whose failure was compensated (provisionNode; absent for a decommission). */
  step?: StepName | 'workflow';
  /** Why (provisionNode; a decommission's reason is always 'decommission'). */
  reason?: CompensationReason;
  /** What was undone, in the order it was. */
  undone: (StepName | 'workflow')[];
  /** The undos that failed: something was left behind. */
  undoFailed: UndoFailure[];
}

/**
 * The compensation details of the first failure in `err`'s cause chain that
 * carries them (a WorkflowFailedError's cause, a child workflow's failure, the
 * failure itself), or undefined when none does.
 */
export function compensationDetailsOf(err: unknown): CompensationDetails | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (!(e instanceof ApplicationFailure)) continue;
    const d: unknown = e.details?.[0];
    if (isCompensationDetails(d)) return d;
  }
  return undefined;
}

function isCompensationDetails(d: unknown): d is CompensationDetails {
  if (typeof d !== 'object' || d === null) return false;
  const { step, undone, undoFailed } = d as Record<string, unknown>;
  return Array.isArray(undone) && Array.isArray(undoFailed) && (step === undefined || typeof step === 'string');
}
