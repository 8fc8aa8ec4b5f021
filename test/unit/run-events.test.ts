import { describe, expect, it } from 'vitest';
import { EVENT_WRITING_ACTIVITIES, withRunEvents } from '../../activities/record-event.js';
import type { Activities, LedgerEvent, StepRequest } from '../../activities/types.js';
import { ProvisionInput } from '../../common/input.js';
import { sampleInput } from '../fixtures/inputs.js';

const input = ProvisionInput.parse(sampleInput('edge-01'));
const run = { workflowId: 'provision/edge-01', runId: 'r1' };
const event = (step: LedgerEvent['step'], kind: LedgerEvent['kind']): LedgerEvent => ({
  nodeId: 'edge-01',
  run,
  step,
  kind,
});

/** The seven event-writing activities, each logging into `log` and answering with its own name. */
function steps(log: string[], fail?: string) {
  const acts = Object.fromEntries(
    EVENT_WRITING_ACTIVITIES.map((name) => [
      name,
      async () => {
        log.push(`${name} runs`);
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (name === fail) throw new Error(`${name} broke`);
        log.push(`${name} done`);
        return name;
      },
    ]),
  );
  return acts as unknown as Pick<Activities, (typeof EVENT_WRITING_ACTIVITIES)[number]>;
}

describe('withRunEvents (StepRequest.events)', () => {
  it('writes the events in order beside the step, and returns once both are done', async () => {
    const log: string[] = [];
    const acts = withRunEvents(steps(log), async (events) => {
      await new Promise((resolve) => setTimeout(resolve, 40)); // slower than the step
      log.push(...events.map((e) => `wrote ${e.step} ${e.kind}`));
    });
    const req: StepRequest = {
      input,
      run,
      events: [event('installOverlay', 'succeeded'), event('issueOverlayKey', 'started')],
    };
    await expect(acts.issueOverlayKey(req)).resolves.toBe('issueOverlayKey');
    expect(log).toEqual([
      'issueOverlayKey runs',
      'issueOverlayKey done',
      'wrote installOverlay succeeded',
      'wrote issueOverlayKey started',
    ]);
  });

  it('writes nothing for a request without events (runs before LEAN_RUN_2_PATCH, the plain script)', async () => {
    const writes: LedgerEvent[][] = [];
    const acts = withRunEvents(steps([]), async (events) => {
      writes.push(events);
    });
    await acts.preflight({ input, run });
    await acts.launchWorkloads({ input, run, events: [] });
    expect(writes).toEqual([]);
  });

  it('tries a refused write again, then gives up without failing the step', async () => {
    let tries = 0;
    const acts = withRunEvents(steps([]), async () => {
      tries += 1;
      throw new Error('ledger down');
    });
    await expect(acts.gatePeerHealth({ input, run, events: [event('gatePeerHealth', 'started')] })).resolves.toBe(
      'gatePeerHealth',
    );
    expect(tries).toBe(3);
  });

  it("still writes the events of a step that fails, and the step's own error is what it throws", async () => {
    const written: string[] = [];
    const acts = withRunEvents(steps([], 'startSpireAgent'), async (events) => {
      written.push(...events.map((e) => `${e.step} ${e.kind}`));
    });
    await expect(acts.startSpireAgent({ input, run, events: [event('startSpireAgent', 'started')] })).rejects.toThrow(
      'startSpireAgent broke',
    );
    expect(written).toEqual(['startSpireAgent started']);
  });

  it('leaves every other activity as it is', () => {
    const other = async () => 'undone';
    const acts = withRunEvents({ ...steps([]), undoInstallOverlay: other }, async () => {});
    expect(acts.undoInstallOverlay).toBe(other);
  });
});
