/**
 * Per-node health gauges, updated from every checkNode result the worker
 * returns (maintainNode, maintainFleet, checkHealth all call it), so expiry
 * is something an alert hears about days before it bites.
 *
 * Expiries and the key age are kept as absolute times and turned into
 * "seconds until" / "age" when scraped: between two checks the value keeps
 * counting down instead of freezing at the last check. The handshake age is
 * as of the last check (`nodeboot_node_last_check_timestamp_seconds`): the
 * worker does not watch handshakes between checks.
 */
import type { HealthReport, LinkStatus } from '../common/health.js';
import { summarizeHealth } from '../common/health-summary.js';

const STATUSES: readonly LinkStatus[] = ['ok', 'degraded', 'broken'];

interface NodeSample {
  checkedAtMs: number;
  status: LinkStatus;
  /** Absolute ms of the soonest credential expiry; null when none was read. */
  soonestExpiryAtMs: number | null;
  /** Absolute ms of each credential's expiry: `agent-svid`, `workload:<name>`, `attestor-cert`. */
  expiriesAtMs: [string, number][];
  keyRecordedAtMs: number | null;
  handshakeAgeSeconds: number | null;
  brokenLinks: number;
}

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export class HealthGauges {
  private readonly nodes = new Map<string, NodeSample>();

  /** Record one check's result (the newest check of a node wins). */
  observe(report: HealthReport): void {
    const s = summarizeHealth(report);
    const at = Date.parse(report.checkedAt);
    const prev = this.nodes.get(report.nodeId);
    if (prev && prev.checkedAtMs > at) return;
    this.nodes.set(report.nodeId, {
      checkedAtMs: at,
      status: s.status,
      soonestExpiryAtMs: s.soonestExpirySeconds === null ? null : at + s.soonestExpirySeconds * 1000,
      expiriesAtMs: (
        [
          ['agent-svid', s.agentSvidSecondsLeft],
          ['attestor-cert', s.attestorCertSecondsLeft],
          ...s.workloadSvids.map((w): [string, number | null] => [`workload:${w.name}`, w.secondsLeft]),
        ] as [string, number | null][]
      )
        .filter((e): e is [string, number] => e[1] !== null)
        .map(([c, left]) => [c, at + left * 1000]),
      keyRecordedAtMs: s.keyAgeSeconds === null ? null : at - s.keyAgeSeconds * 1000,
      handshakeAgeSeconds: s.lastHandshakeAgeSeconds,
      brokenLinks: s.problems.filter((p) => p.status === 'broken').length,
    });
  }

  /** Forget a node (decommissioned): its series stop. */
  forget(nodeId: string): void {
    this.nodes.delete(nodeId);
  }

  render(now = Date.now()): string[] {
    const out: string[] = [];
    const gauge = (name: string, help: string, values: [Record<string, string>, number | null][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
      for (const [labels, v] of values) {
        if (v === null) continue;
        const l = Object.entries(labels)
          .map(([k, x]) => `${k}="${esc(x)}"`)
          .join(',');
        out.push(`${name}{${l}} ${Number.isInteger(v) ? v : Number(v.toFixed(3))}`);
      }
    };
    const each = <T>(f: (id: string, s: NodeSample) => T) => [...this.nodes].map(([id, s]) => f(id, s));
    gauge(
      'nodeboot_node_soonest_expiry_seconds',
      'Seconds until the soonest credential of the node expires (agent SVID, workload SVIDs, attestor certificate), as of now.',
      each((node, s) => [
        { node },
        s.soonestExpiryAtMs === null ? null : Math.round((s.soonestExpiryAtMs - now) / 1000),
      ]),
    );
    gauge(
      'nodeboot_node_credential_expiry_seconds',
      'Seconds until each credential of the node expires (credential: agent-svid, workload:<name>, attestor-cert), as of now.',
      [...this.nodes].flatMap(([node, s]) =>
        s.expiriesAtMs.map(([credential, ms]): [Record<string, string>, number] => [
          { node, credential },
          Math.round((ms - now) / 1000),
        ]),
      ),
    );
    gauge(
      'nodeboot_node_key_age_seconds',
      "Age of the node's overlay key in seconds (since the ledger first recorded its peering), as of now.",
      each((node, s) => [{ node }, s.keyRecordedAtMs === null ? null : Math.round((now - s.keyRecordedAtMs) / 1000)]),
    );
    gauge(
      'nodeboot_node_last_handshake_age_seconds',
      "Age of the oldest of the node's latest hub handshakes, in seconds, as of its last check.",
      each((node, s) => [{ node }, s.handshakeAgeSeconds]),
    );
    gauge(
      'nodeboot_node_health',
      "The node's health at its last check: 1 for its status (ok|degraded|broken), 0 for the others.",
      [...this.nodes].flatMap(([node, s]) =>
        STATUSES.map((st): [Record<string, string>, number] => [{ node, status: st }, s.status === st ? 1 : 0]),
      ),
    );
    gauge(
      'nodeboot_node_broken_links',
      'Links of the node that were broken at its last check.',
      each((node, s) => [{ node }, s.brokenLinks]),
    );
    gauge(
      'nodeboot_node_last_check_timestamp_seconds',
      "Unix time of the node's last check.",
      each((node, s) => [{ node }, Math.round(s.checkedAtMs / 1000)]),
    );
    return out;
  }
}
