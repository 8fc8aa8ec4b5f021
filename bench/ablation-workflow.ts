/**
 * P3's cost profile (benchmark only, not part of the product): the bare
 * baseline (bench/bare-workflow.ts) with provisionNode's parts added back one
 * at a time, so the report can say what each part of a real run costs the
 * worker and the server over Temporal's floor. bench/run.ts bundles this file
 * on its own (it imports the one validation, so loading it loads zod and our
 * schemas like the real bundle does) and runs each variant beside the bare one.
 *
 * The parts, each on top of the ones before it (`AblationStage`):
 * - `load`: the bundle alone (our modules evaluated per run, as the workflow
 *   sandbox does for every module it has not preloaded: all but zod and the
 *   schema cache, common/sandbox-preload.ts);
 * - `payload`: the real validated input sent to each activity, real-shaped evidence back;
 * - `patch`: one patch (a marker, and the TemporalChangeVersion upsert the SDK adds);
 * - `timer`: the timer after which a run names its step (timeouts.reportStepAfter), ending with the run;
 * - `ledger`: the two local activities of a run (the preflight and the ledger write at its end);
 * - `validate`: the input parsed with the one validation (common/validate.ts).
 *
 * And beside them, `stepUpserts`: every stage plus a BootstrapStep upsert per
 * step, what a run did before LEAN_RUN_2_PATCH (workflows/proxies.ts), for the
 * report to show what that costs.
 */
import {
  CancellationScope,
  patched,
  proxyActivities,
  proxyLocalActivities,
  sleep,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { BootstrapStepKey } from '../common/search-attributes.js';
import { STEPS } from '../common/steps.js';
import { checkProvisionInput } from '../common/validate.js';

export const ABLATION_STAGES = ['load', 'payload', 'patch', 'timer', 'ledger', 'validate'] as const;
export type AblationStage = (typeof ABLATION_STAGES)[number] | 'stepUpserts';

export interface AblationActivities {
  ablationStep(input: unknown): Promise<unknown>;
  ablationLedger(events: unknown[]): Promise<void>;
}

const a = proxyActivities<AblationActivities>({ startToCloseTimeout: 30_000 });
const local = proxyLocalActivities<AblationActivities>({ startToCloseTimeout: 30_000 });

export async function ablationNode(stage: AblationStage, input: unknown): Promise<number> {
  const upTo = stage === 'stepUpserts' ? ABLATION_STAGES.length : ABLATION_STAGES.indexOf(stage);
  const has = (s: (typeof ABLATION_STAGES)[number]) => upTo >= ABLATION_STAGES.indexOf(s);
  let arg: unknown = 0;
  if (has('validate')) {
    const checked = checkProvisionInput(input);
    if (!checked.ok) throw new Error(checked.problems.join('; '));
    arg = checked.value;
  } else if (has('payload')) {
    arg = input;
  }
  if (has('patch')) patched('ablation');
  if (has('timer')) void CancellationScope.nonCancellable(() => sleep(10_000)).catch(() => undefined);
  if (has('ledger')) await local.ablationLedger([{ step: 'preflight' }]);
  let n = 0;
  for (const step of STEPS) {
    if (stage === 'stepUpserts') upsertSearchAttributes([{ key: BootstrapStepKey, value: step }]);
    const evidence = await a.ablationStep(has('payload') ? { input: arg, run: { step } } : n);
    n += evidence === undefined ? 0 : 1;
  }
  if (has('ledger')) await local.ablationLedger([{ step: 'workflow', event: 'succeeded' }]);
  return n;
}

/** The activities: a step answers with evidence about the size of a real step's. */
export function ablationActivities(): AblationActivities {
  const evidence = {
    interface: 'wg-sim',
    overlayIp: '10.200.0.10',
    publicKey: 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=',
    keyFingerprint: 'simulated',
    hubs: [{ name: 'hub', publicKey: 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=', endpoint: '192.0.2.1:51820' }],
  };
  return {
    async ablationStep(input) {
      return typeof input === 'number' ? input + 1 : evidence;
    },
    async ablationLedger() {},
  };
}
