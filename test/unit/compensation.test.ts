// The one reader of what a compensated run's failure says (common/compensation.ts):
// the fleet workflow and the CLI both read the step and the failed undos through it.
import { ApplicationFailure, ChildWorkflowFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { compensationDetailsOf, type CompensationDetails } from '../../common/compensation.js';

const details: CompensationDetails = {
  step: 'startSpireAgent',
  reason: 'failure',
  undone: ['startSpireAgent', 'issueOverlayKey', 'installOverlay'],
  undoFailed: [],
};
// What an activity's failure carries (activities/boundary.ts): a step, but no compensation.
const activityFailure = ApplicationFailure.create({
  type: 'AttestationRejected',
  message: 'no',
  details: [{ step: 'startSpireAgent', tool: 'spire-agent' }],
});

describe('compensationDetailsOf', () => {
  it('finds the details under a child workflow failure, above the activity failure that caused it', () => {
    const compensated = ApplicationFailure.create({
      type: 'AttestationRejected',
      message: 'startSpireAgent failed',
      details: [details],
      cause: activityFailure,
    });
    const child = new ChildWorkflowFailure(
      'default',
      { workflowId: 'provision/n1', runId: 'r' },
      'provisionNode',
      undefined,
      compensated,
    );
    expect(compensationDetailsOf(child)).toEqual(details);
    expect(compensationDetailsOf(compensated)?.step).toBe('startSpireAgent');
  });

  it('reads a decommission failure (no step) and its failed undos', () => {
    const undoFailed = [{ step: 'startSpireAgent' as const, type: 'ToolMissing', message: 'spire-agent: not found' }];
    const failure = ApplicationFailure.create({
      type: 'ToolMissing',
      message: 'decommission incomplete',
      details: [{ undone: ['launchWorkloads'], undoFailed }],
    });
    expect(compensationDetailsOf(failure)).toEqual({ undone: ['launchWorkloads'], undoFailed });
  });

  it('says nothing for failures that carry no compensation details', () => {
    expect(compensationDetailsOf(activityFailure)).toBeUndefined();
    expect(
      compensationDetailsOf(
        ApplicationFailure.create({
          type: 'InvalidInput',
          message: 'bad',
          details: [{ issues: ['nodeId: required'] }],
        }),
      ),
    ).toBeUndefined();
    expect(compensationDetailsOf(new Error('plain'))).toBeUndefined();
    expect(compensationDetailsOf(undefined)).toBeUndefined();
  });
});
