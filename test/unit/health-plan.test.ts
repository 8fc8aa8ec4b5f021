import { describe, expect, it } from 'vitest';
import { HealthThresholds, repairPlan, worstOf, type HealthReport, type LinkCheck } from '../../common/health.js';
import { MaintainOptions } from '../../common/maintain.js';
import type { StepName } from '../../common/steps.js';

const l = (link: string, step: StepName, status: LinkCheck['status']): LinkCheck => ({
  link,
  kind: 'agent',
  step,
  status,
  detail: '',
  evidence: {},
});
const report = (...links: LinkCheck[]): HealthReport => ({
  nodeId: 'n',
  driver: 'wireguard',
  checkedAt: '',
  status: worstOf(links.map((x) => x.status)),
  links,
  durationMs: 0,
});

describe('repairPlan', () => {
  it('re-runs the owner of each broken link and only the steps that depend on it, in runbook order', () => {
    expect(repairPlan(report(l('interface', 'installOverlay', 'broken'), l('agent', 'startSpireAgent', 'ok')))).toEqual(
      ['installOverlay', 'issueOverlayKey', 'gatePeerHealth'],
    );
    expect(repairPlan(report(l('hubPeer:hub', 'issueOverlayKey', 'broken')))).toEqual([
      'issueOverlayKey',
      'gatePeerHealth',
    ]);
    expect(repairPlan(report(l('agent', 'startSpireAgent', 'broken')))).toEqual(['startSpireAgent', 'launchWorkloads']);
    expect(repairPlan(report(l('entry:api', 'registerEntries', 'broken')))).toEqual([
      'registerEntries',
      'launchWorkloads',
    ]);
    expect(repairPlan(report(l('workload:api', 'launchWorkloads', 'broken')))).toEqual(['launchWorkloads']);
    expect(
      repairPlan(
        report(l('workload:api', 'launchWorkloads', 'broken'), l('handshake:hub', 'gatePeerHealth', 'broken')),
      ),
    ).toEqual(['gatePeerHealth', 'launchWorkloads']);
  });

  it('repairs nothing for degraded or ok links', () => {
    expect(repairPlan(report(l('agent', 'startSpireAgent', 'degraded'), l('probe', 'gatePeerHealth', 'ok')))).toEqual(
      [],
    );
  });
});

describe('maintain options', () => {
  it('defaults the thresholds and rounds, and names a bad field', () => {
    expect(MaintainOptions.parse({})).toEqual({ thresholds: HealthThresholds.parse({}), maxRepairRounds: 2 });
    const bad = MaintainOptions.safeParse({ thresholds: { handshakeMaxAgeSeconds: 1 } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['thresholds', 'handshakeMaxAgeSeconds']);
  });
});
