/**
 * The operator's decision for a run that holds on a failure (provisionNode,
 * maintainNode, maintainFleet): the `decide` update is accepted only while the
 * run is held and no decision is pending, and only for "retry" or
 * "compensate"; the validator rejects anything else, so nothing enters
 * history. The run waits for the decision with `next()`.
 */
import type { UpdateDefinition } from '@temporalio/common';
import { condition, setHandler } from '@temporalio/workflow';
import type { Decision } from '../common/definitions.js';

export interface Decisions {
  /** Waits for the operator's decision and takes it (the next hold waits for a new one). */
  next(): Promise<Decision>;
}

/**
 * Registers `update`'s handler. `run` names the run in the refusal ("run",
 * "maintain run"); `state()` is the run's state now; `ack` is what the caller of
 * the update gets back.
 */
export function acceptDecisions<Ack>(
  update: UpdateDefinition<Ack, [Decision]>,
  opts: { run: string; state: () => string; ack: (d: Decision) => Ack },
): Decisions {
  let pending: Decision | undefined;
  setHandler(
    update,
    (d) => {
      pending = d;
      return opts.ack(d);
    },
    {
      validator: (d) => {
        const state = opts.state();
        if (state !== 'held' || pending)
          throw new Error(`${opts.run} is ${state}, not held: there is nothing to decide`);
        if (d?.action !== 'retry' && d?.action !== 'compensate')
          throw new Error('action must be "retry" or "compensate"');
      },
    },
  );
  return {
    async next() {
      await condition(() => pending !== undefined);
      const d = pending!;
      pending = undefined;
      return d;
    },
  };
}
