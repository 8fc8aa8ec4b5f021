// The step table (common/steps.ts) is what the undo proxies, the decommission
// stack, metrics and fault injection are built from: pin what it says.
import { describe, expect, it } from 'vitest';
import { DECOMMISSION_ORDER, STEPS, STEP_TITLES, UNDO_ACTIVITIES, UNDO_OF } from '../../common/steps.js';

describe('step table', () => {
  it('lists the six steps in runbook order, each titled with its number', () => {
    expect(STEPS).toEqual([
      'installOverlay',
      'issueOverlayKey',
      'gatePeerHealth',
      'startSpireAgent',
      'registerEntries',
      'launchWorkloads',
    ]);
    expect(STEPS.map((s) => STEP_TITLES[s].split(' ')[0])).toEqual(['1', '2', '3', '4', '5', '6']);
  });

  it('gives every step but the read-only health gate an undo named after it', () => {
    for (const step of STEPS) {
      expect(UNDO_OF[step], step).toBe(
        step === 'gatePeerHealth' ? null : `undo${step[0]!.toUpperCase()}${step.slice(1)}`,
      );
    }
    expect(UNDO_ACTIVITIES).toEqual(STEPS.flatMap((s) => UNDO_OF[s] ?? []));
  });

  it('decommissions in reverse runbook order, skipping the gate', () => {
    expect(DECOMMISSION_ORDER.map((d) => d.step)).toEqual([
      'launchWorkloads',
      'registerEntries',
      'startSpireAgent',
      'issueOverlayKey',
      'installOverlay',
    ]);
    expect(DECOMMISSION_ORDER.every((d) => UNDO_OF[d.step] === d.undo)).toBe(true);
  });
});
