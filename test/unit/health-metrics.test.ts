/**
 * The per-node health gauges: built from a checkNode report, counting down
 * between checks, and the summary `nodeboot health` prints.
 */
import { describe, expect, it } from 'vitest';
import type { HealthReport, LinkCheck } from '../../common/health.js';
import { summarizeHealth } from '../../common/health-summary.js';
import { overBudget, RemediationBudget } from '../../common/maintain-fleet.js';
import { StepMetrics } from '../../workers/metrics.js';

const checkedAt = '2026-12-01T12:00:00.000Z';
const T = Date.parse(checkedAt);
const l = (
  link: string,
  kind: LinkCheck['kind'],
  step: LinkCheck['step'],
  status: LinkCheck['status'],
  evidence: Record<string, unknown>,
): LinkCheck => ({ link, kind, step, status, detail: link, evidence });

function report(nodeId: string, over: Partial<HealthReport> = {}): HealthReport {
  return {
    nodeId,
    driver: 'wireguard',
    checkedAt,
    status: 'broken',
    durationMs: 10,
    links: [
      l('overlayKey', 'overlayKey', 'issueOverlayKey', 'ok', { keyRecordedAt: '2026-11-21T12:00:00.000Z' }),
      l('handshake:hub', 'handshake', 'gatePeerHealth', 'ok', { handshakeAgeSeconds: 40 }),
      l('handshake:hub2', 'handshake', 'gatePeerHealth', 'ok', { handshakeAgeSeconds: 70 }),
      l('agent', 'agent', 'startSpireAgent', 'ok', { svidSecondsLeft: 3000 }),
      l('workload:api', 'workload', 'launchWorkloads', 'broken', { svidSecondsLeft: 1200 }),
      l('entry:api', 'entry', 'registerEntries', 'broken', {}),
    ],
    ...over,
  };
}

const value = (text: string, series: string) => {
  const line = text.split('\n').find((x) => x.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
};

describe('health summary', () => {
  it('reads key age, expiries and the oldest handshake out of the evidence', () => {
    const s = summarizeHealth(report('n1'));
    expect(s.keyAgeSeconds).toBe(10 * 86_400);
    expect(s.agentSvidSecondsLeft).toBe(3000);
    expect(s.workloadSvids).toEqual([{ name: 'api', secondsLeft: 1200 }]);
    expect(s.lastHandshakeAgeSeconds).toBe(70);
    expect(s.soonestExpirySeconds).toBe(1200);
    expect(s.problems.map((p) => `${p.link}:${p.step}`)).toEqual([
      'workload:api:launchWorkloads',
      'entry:api:registerEntries',
    ]);
  });

  it('a hub that never handshook leaves the handshake age unknown, not 0', () => {
    const r = report('n1');
    r.links[2]!.evidence.handshakeAgeSeconds = null;
    expect(summarizeHealth(r).lastHandshakeAgeSeconds).toBeNull();
  });
});

describe('health gauges', () => {
  it('exports each node and counts expiry down between checks', () => {
    const m = new StepMetrics();
    m.health.observe(report('n1'));
    m.health.observe(
      report('n2', {
        status: 'ok',
        links: [l('agent', 'agent', 'startSpireAgent', 'ok', { svidSecondsLeft: 90_000 })],
      }),
    );
    const at = m.health.render(T + 200_000).join('\n');
    expect(value(at, 'nodeboot_node_soonest_expiry_seconds{node="n1"}')).toBe(1000);
    expect(value(at, 'nodeboot_node_soonest_expiry_seconds{node="n2"}')).toBe(89_800);
    expect(value(at, 'nodeboot_node_credential_expiry_seconds{node="n1",credential="agent-svid"}')).toBe(2800);
    expect(value(at, 'nodeboot_node_credential_expiry_seconds{node="n1",credential="workload:api"}')).toBe(1000);
    expect(value(at, 'nodeboot_node_credential_expiry_seconds{node="n1",credential="attestor-cert"}')).toBeUndefined();
    expect(value(at, 'nodeboot_node_key_age_seconds{node="n1"}')).toBe(10 * 86_400 + 200);
    expect(value(at, 'nodeboot_node_key_age_seconds{node="n2"}')).toBeUndefined();
    expect(value(at, 'nodeboot_node_last_handshake_age_seconds{node="n1"}')).toBe(70);
    expect(value(at, 'nodeboot_node_health{node="n1",status="broken"}')).toBe(1);
    expect(value(at, 'nodeboot_node_health{node="n1",status="ok"}')).toBe(0);
    expect(value(at, 'nodeboot_node_health{node="n2",status="ok"}')).toBe(1);
    expect(value(at, 'nodeboot_node_broken_links{node="n1"}')).toBe(2);
    expect(m.render()).toContain('# TYPE nodeboot_node_soonest_expiry_seconds gauge');
  });

  it('an older report does not overwrite a newer one', () => {
    const m = new StepMetrics();
    m.health.observe(report('n1', { status: 'ok', links: [] }));
    m.health.observe(report('n1', { checkedAt: '2026-12-01T11:00:00.000Z' }));
    expect(value(m.health.render(T).join('\n'), 'nodeboot_node_health{node="n1",status="ok"}')).toBe(1);
  });
});

describe('remediation budget', () => {
  const budget = RemediationBudget.parse({ maxBrokenPercent: 30 });
  it('holds only when more than X % of the checked nodes are broken', () => {
    expect(overBudget(0, 0, budget)).toBe(false);
    expect(overBudget(3, 10, budget)).toBe(false);
    expect(overBudget(4, 10, budget)).toBe(true);
    expect(overBudget(1, 2, budget)).toBe(true);
  });
});
