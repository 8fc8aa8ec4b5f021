// Clients start workflows by type name with the signatures declared in
// common/definitions.ts, so they never import workflow code. This keeps those
// declarations honest: if a workflow's arguments or result change, `tsc` (and
// so `npm run lint`) fails here until common/definitions.ts says the same.
import { describe, expectTypeOf, it } from 'vitest';
import type { Workflows } from '../../common/definitions.js';
import type * as workflows from '../../workflows/index.js';

describe('the workflow signatures clients use', () => {
  it('are the workflows the worker registers', () => {
    expectTypeOf<typeof workflows>().toExtend<Workflows>();
    expectTypeOf<keyof typeof workflows>().toEqualTypeOf<keyof Workflows>();
  });

  it('take and return what the workflows take and return', () => {
    expectTypeOf<Parameters<typeof workflows.provisionNode>>().toEqualTypeOf<Parameters<Workflows['provisionNode']>>();
    expectTypeOf<ReturnType<typeof workflows.provisionNode>>().toEqualTypeOf<ReturnType<Workflows['provisionNode']>>();
    expectTypeOf<Parameters<typeof workflows.decommissionNode>>().toEqualTypeOf<
      Parameters<Workflows['decommissionNode']>
    >();
    expectTypeOf<ReturnType<typeof workflows.decommissionNode>>().toEqualTypeOf<
      ReturnType<Workflows['decommissionNode']>
    >();
    // provisionFleet also takes what it carries across continue-as-new; a client passes only the input.
    expectTypeOf<Parameters<typeof workflows.provisionFleet>[0]>().toEqualTypeOf<
      Parameters<Workflows['provisionFleet']>[0]
    >();
    expectTypeOf<ReturnType<typeof workflows.provisionFleet>>().toEqualTypeOf<
      ReturnType<Workflows['provisionFleet']>
    >();
    expectTypeOf<Parameters<typeof workflows.rotateOverlayKey>>().toEqualTypeOf<
      Parameters<Workflows['rotateOverlayKey']>
    >();
    expectTypeOf<ReturnType<typeof workflows.rotateOverlayKey>>().toEqualTypeOf<
      ReturnType<Workflows['rotateOverlayKey']>
    >();
    expectTypeOf<Parameters<typeof workflows.maintainNode>>().toEqualTypeOf<Parameters<Workflows['maintainNode']>>();
    expectTypeOf<ReturnType<typeof workflows.maintainNode>>().toEqualTypeOf<ReturnType<Workflows['maintainNode']>>();
    expectTypeOf<Parameters<typeof workflows.maintainFleet>>().toEqualTypeOf<Parameters<Workflows['maintainFleet']>>();
    expectTypeOf<ReturnType<typeof workflows.maintainFleet>>().toEqualTypeOf<ReturnType<Workflows['maintainFleet']>>();
    expectTypeOf<Parameters<typeof workflows.checkHealth>>().toEqualTypeOf<Parameters<Workflows['checkHealth']>>();
    expectTypeOf<ReturnType<typeof workflows.checkHealth>>().toEqualTypeOf<ReturnType<Workflows['checkHealth']>>();
  });
});
