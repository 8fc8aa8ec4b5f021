/**
 * The numbers a person (and Prometheus) watches on a node, read out of a
 * checkNode report: how old its overlay key is, when its credentials expire,
 * how long since the last handshake. `nodeboot health` prints them, the worker's
 * gauges export them (workers/health-metrics.ts). Imported by workflows too:
 * no Node built-ins.
 */
import type { HealthReport, LinkCheck } from './health.js';

export interface HealthSummary {
  nodeId: string;
  status: HealthReport['status'];
  checkedAt: string;
  /** Seconds since the ledger first recorded the node's key (its peering); null when unknown. */
  keyAgeSeconds: number | null;
  /** Seconds until the agent's own SVID expires; null when it could not be read. */
  agentSvidSecondsLeft: number | null;
  workloadSvids: { name: string; secondsLeft: number | null }[];
  /**
   * Seconds until the node attestor's certificate (x509pop / sshpop) expires.
   * null: the attestor has no certificate (join_token, tpm) or the check does not read it yet.
   */
  attestorCertSecondsLeft: number | null;
  /** The oldest of the latest handshakes with each hub, seconds; null when a hub never handshook (or bowtie). */
  lastHandshakeAgeSeconds: number | null;
  /** The soonest of the expiries above, seconds; null when none was read. */
  soonestExpirySeconds: number | null;
  /** Every link that is not ok, with the step that owns it. */
  problems: { link: string; step: LinkCheck['step']; status: LinkCheck['status']; detail: string; security: boolean }[];
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function summarizeHealth(report: HealthReport): HealthSummary {
  const at = Date.parse(report.checkedAt);
  const of = (kind: LinkCheck['kind']) => report.links.filter((l) => l.kind === kind);
  const keyRecordedAt = of('overlayKey')[0]?.evidence.keyRecordedAt;
  const keyAgeSeconds =
    typeof keyRecordedAt === 'string' && !Number.isNaN(Date.parse(keyRecordedAt))
      ? Math.max(0, Math.round((at - Date.parse(keyRecordedAt)) / 1000))
      : null;
  const agentSvidSecondsLeft = num(of('agent')[0]?.evidence.svidSecondsLeft);
  const workloadSvids = of('workload').map((l) => ({
    name: l.link.slice('workload:'.length),
    secondsLeft: num(l.evidence.svidSecondsLeft),
  }));
  const attestorCertSecondsLeft = num(of('agent')[0]?.evidence.attestorCertSecondsLeft);
  const handshakes = of('handshake').map((l) => num(l.evidence.handshakeAgeSeconds));
  const lastHandshakeAgeSeconds =
    handshakes.length === 0 || handshakes.includes(null) ? null : Math.max(...(handshakes as number[]));
  const expiries = [agentSvidSecondsLeft, attestorCertSecondsLeft, ...workloadSvids.map((w) => w.secondsLeft)].filter(
    (n): n is number => n !== null,
  );
  return {
    nodeId: report.nodeId,
    status: report.status,
    checkedAt: report.checkedAt,
    keyAgeSeconds,
    agentSvidSecondsLeft,
    workloadSvids,
    attestorCertSecondsLeft,
    lastHandshakeAgeSeconds,
    soonestExpirySeconds: expiries.length ? Math.min(...expiries) : null,
    problems: report.links
      .filter((l) => l.status !== 'ok')
      .map((l) => ({ link: l.link, step: l.step, status: l.status, detail: l.detail, security: !!l.security })),
  };
}

/** "3d 4h", "12m", "45s"; negative: "expired 2m ago". */
export function formatSeconds(s: number | null): string {
  if (s === null) return 'n/a';
  if (s < 0) return `expired ${formatSeconds(-s)} ago`;
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m`;
  return `${s}s`;
}
