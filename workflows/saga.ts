/**
 * The compensation stack of one run.
 *
 * A step's undo is pushed *before* the step runs: steps are idempotent and
 * their undos are safe on a half-done step, so an attempt that dies halfway is
 * still cleaned up. Unwinding pops each entry before running it, so nothing is
 * undone twice, even if unwind is called again.
 */
import { CancellationScope, log } from '@temporalio/workflow';
import type { UndoResult } from '../activities/types.js';
import type { StepName } from '../common/steps.js';
import type { UndoReason } from '../common/definitions.js';
import { describeFailure, type UnwindReport } from './failures.js';

export type Undo = (reason: UndoReason) => Promise<UndoResult>;

export interface UnwindHooks {
  /** Called before an undo runs. */
  undoing?(step: StepName): void;
  undone?(step: StepName, result: UndoResult): Promise<void> | void;
  undoFailed?(step: StepName, error: ReturnType<typeof describeFailure>): Promise<void> | void;
}

export class Compensations {
  private readonly stack: { step: StepName; undo: Undo }[] = [];

  /** Register `step`'s undo. A step pushed again (an operator retry) keeps its one entry. */
  push(step: StepName, undo: Undo): void {
    if (!this.stack.some((c) => c.step === step)) this.stack.push({ step, undo });
  }

  /** Steps that would be undone, in the order they would be (reverse). */
  get pending(): StepName[] {
    return this.stack.map((c) => c.step).reverse();
  }

  /**
   * Undo every pushed step in reverse order, even if the run is being
   * cancelled. A failing undo is logged and reported, and the rest still run.
   */
  unwind(reason: UndoReason, hooks: UnwindHooks = {}): Promise<UnwindReport> {
    return CancellationScope.nonCancellable(async () => {
      const report: UnwindReport = { undone: [], failed: [] };
      for (let c = this.stack.pop(); c; c = this.stack.pop()) {
        hooks.undoing?.(c.step);
        let result: UndoResult;
        try {
          result = await c.undo(reason);
        } catch (err) {
          const info = describeFailure(c.step, err);
          log.error('compensation failed; continuing with the rest', {
            step: c.step,
            reason,
            errorType: info.type,
            error: info.message,
          });
          report.failed.push(info);
          await hooks.undoFailed?.(c.step, info);
          continue;
        }
        log.info('compensated', { step: c.step, reason, removed: result.removed });
        report.undone.push(c.step);
        await hooks.undone?.(c.step, result);
      }
      return report;
    });
  }
}
