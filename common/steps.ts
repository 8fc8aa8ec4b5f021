/** The six bootstrap steps, in runbook order. Imported by workflows and clients. */
export const STEPS = [
  'installOverlay',
  'issueOverlayKey',
  'gatePeerHealth',
  'startSpireAgent',
  'registerEntries',
  'launchWorkloads',
] as const;
export type StepName = (typeof STEPS)[number];

export const STEP_TITLES: Record<StepName, string> = {
  installOverlay: '1 install overlay agent',
  issueOverlayKey: '2 issue overlay key',
  gatePeerHealth: '3 gate on peer health',
  startSpireAgent: '4 start SPIRE agent',
  registerEntries: '5 register entries',
  launchWorkloads: '6 launch workloads',
};
