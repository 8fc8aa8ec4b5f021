/**
 * The P3 baseline (benchmark only, not part of the product): the least a
 * six-step workflow can cost on Temporal. Six no-op activities in sequence,
 * no validation, no search attributes, no ledger, no saga. bench/run.ts bundles
 * this file on its own and runs it on its own task queue beside the real P3, on
 * the same server and worker settings, so the ratio real / bare is what our
 * orchestration adds over Temporal's floor.
 */
import { proxyActivities } from '@temporalio/workflow';

/** Six activities that return at once (bench/run.ts registers them). */
export interface BareActivities {
  bare1(n: number): Promise<number>;
  bare2(n: number): Promise<number>;
  bare3(n: number): Promise<number>;
  bare4(n: number): Promise<number>;
  bare5(n: number): Promise<number>;
  bare6(n: number): Promise<number>;
}

const a = proxyActivities<BareActivities>({ startToCloseTimeout: 30_000 });

export async function bareNode(n: number): Promise<number> {
  n = await a.bare1(n);
  n = await a.bare2(n);
  n = await a.bare3(n);
  n = await a.bare4(n);
  n = await a.bare5(n);
  return await a.bare6(n);
}

/** The activities: each hands its argument on. */
export function bareActivities(): BareActivities {
  const noop = async (n: number) => n + 1;
  return { bare1: noop, bare2: noop, bare3: noop, bare4: noop, bare5: noop, bare6: noop };
}
