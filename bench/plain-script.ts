/**
 * P1's baseline: the bootstrap as a plain sequential script. The same input
 * validation, read-only preflight and six step functions the worker runs (so
 * the same checks, commands, tools, waits and ledger writes), called one after
 * another in this process: no Temporal, no event log, no retries, no
 * compensation, nothing survives a crash.
 */
import type { Activities, StepRequest, UndoRequest } from '../activities/types.js';
import type { ProvisionInput } from '../common/input.js';
import { STEPS, type StepName } from '../common/steps.js';
import { checkProvisionInput } from '../common/validate.js';

export interface PlainRun {
  input: ProvisionInput;
  wallMs: number;
  stepsMs: Record<StepName, number>;
}

export async function plainProvision(acts: Activities, raw: unknown, runId: string): Promise<PlainRun> {
  const t0 = performance.now();
  const checked = checkProvisionInput(raw);
  if (!checked.ok) throw new Error(`invalid input: ${checked.problems.join('; ')}`);
  const input = checked.value;
  const req: StepRequest = { input, run: { workflowId: `plain/${input.nodeId}`, runId } };
  await acts.preflight(req);
  const stepsMs = {} as Record<StepName, number>;
  for (const step of STEPS) {
    const s0 = performance.now();
    await (acts[step] as (r: StepRequest) => Promise<unknown>)(req);
    stepsMs[step] = performance.now() - s0;
  }
  return { input, wallMs: performance.now() - t0, stepsMs };
}

/** Undo a provisioned node, last step first (between measured runs; not timed). */
export async function plainTeardown(
  acts: Activities,
  input: ProvisionInput,
  workflowId: string,
  runId: string,
): Promise<void> {
  const req: UndoRequest = { input, run: { workflowId, runId }, reason: 'decommission' };
  await acts.undoLaunchWorkloads(req);
  await acts.undoRegisterEntries(req);
  await acts.undoStartSpireAgent(req);
  await acts.undoIssueOverlayKey(req);
  await acts.undoInstallOverlay(req);
}
