// Which nodes the fleet schedule rotates (common/maintain-fleet.ts keyRotationDue): a key older
// than the node's overlay.maxKeyAgeDays, on a node with nothing broken and no security finding.
import { describe, expect, it } from 'vitest';
import type { HealthReport, LinkCheck } from '../../common/health.js';
import { ProvisionInput } from '../../common/input.js';
import { keyRotationDue } from '../../common/maintain-fleet.js';
import { sampleInput } from '../fixtures/inputs.js';

const CHECKED_AT = '2030-01-10T00:00:00.000Z';
const daysBefore = (d: number) => new Date(Date.parse(CHECKED_AT) - d * 86_400_000).toISOString();

const node = (maxKeyAgeDays?: number) =>
  ProvisionInput.parse({
    ...sampleInput('rot-1'),
    overlay: { ...sampleInput('rot-1').overlay, ...(maxKeyAgeDays ? { maxKeyAgeDays } : {}) },
  });

const keyLink = (keyRecordedAt: string | null, extra: Partial<LinkCheck> = {}): LinkCheck => ({
  link: 'overlayKey',
  kind: 'overlayKey',
  status: 'ok',
  step: 'issueOverlayKey',
  detail: 'the recorded key',
  evidence: { keyRecordedAt },
  ...extra,
});

const report = (links: LinkCheck[], nodeId = 'rot-1'): HealthReport => ({
  nodeId,
  driver: 'wireguard',
  checkedAt: CHECKED_AT,
  durationMs: 1,
  status: links.some((l) => l.status === 'broken') ? 'broken' : 'ok',
  links,
});

describe('keyRotationDue', () => {
  it('a healthy node whose key is older than overlay.maxKeyAgeDays is due; one younger, or at the limit, is not', () => {
    expect(keyRotationDue(node(30), report([keyLink(daysBefore(31))]))).toBe(true);
    expect(keyRotationDue(node(30), report([keyLink(daysBefore(29))]))).toBe(false);
    expect(keyRotationDue(node(30), report([keyLink(daysBefore(30))]))).toBe(false);
  });

  it('no maxKeyAgeDays, or no known key age: never due', () => {
    expect(keyRotationDue(node(), report([keyLink(daysBefore(3000))]))).toBe(false);
    expect(keyRotationDue(node(1), report([keyLink(null)]))).toBe(false);
    expect(keyRotationDue(node(1), report([]))).toBe(false);
  });

  it('a broken node, or one with a security finding, is never re-keyed', () => {
    const old = daysBefore(100);
    const brokenWorkload: LinkCheck = {
      link: 'workload:api',
      kind: 'workload',
      status: 'broken',
      step: 'launchWorkloads',
      detail: 'not running',
      evidence: {},
    };
    expect(keyRotationDue(node(30), report([keyLink(old), brokenWorkload]))).toBe(false);
    const foreignKey = keyLink(old, { status: 'broken', security: true, detail: 'a key that is not the node’s' });
    expect(keyRotationDue(node(30), report([foreignKey]))).toBe(false);
  });

  it("another node's report does not count", () => {
    expect(keyRotationDue(node(30), report([keyLink(daysBefore(31))], 'rot-2'))).toBe(false);
  });
});
