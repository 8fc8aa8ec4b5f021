/**
 * P3's simulated nodes: every activity the workflows call, answering at once
 * with evidence of the real shape. The workflows, the worker, the server and
 * the fleet logic are the production ones; only what the activities do (run
 * tools on a node) is gone, so P3 measures orchestration alone.
 */
import { createLifecycleActivities } from '../activities/fleet/lifecycle.js';
import { withRunEvents } from '../activities/record-event.js';
import type { Activities, FleetActivities } from '../activities/types.js';
import { defaultInterfaceName } from '../common/input.js';

const FAKE_KEY = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';

export function instantActivities(): Activities & FleetActivities {
  let next = 10;
  const removed = async () => ({ removed: [] });
  const discard = async () => {};
  const activities: Activities & FleetActivities = {
    async preflight() {
      return { checks: [] };
    },
    async checkNode({ input }) {
      return {
        nodeId: input.nodeId,
        driver: input.overlay.driver,
        checkedAt: new Date().toISOString(),
        status: 'ok',
        links: [],
        durationMs: 0,
      };
    },
    async installOverlay({ input }) {
      return {
        interface: input.overlay.interface ?? defaultInterfaceName(input.nodeId),
        toolVersion: 'simulated',
        alreadyPresent: false,
      };
    },
    async issueOverlayKey({ input }) {
      const n = next++;
      return {
        overlayIp: `10.${200 + ((n >> 16) & 0x1f)}.${(n >> 8) & 0xff}.${n & 0xff}`,
        publicKey: FAKE_KEY,
        keyFingerprint: 'simulated',
        privateKeyPath: `${input.nodeDir}/wg/private.key`,
        hubs: input.overlay.hubs.map((h) => ({ name: h.name, publicKey: FAKE_KEY, endpoint: h.endpoint })),
      };
    },
    async gatePeerHealth({ input }) {
      return {
        hubs: input.overlay.hubs.map((h) => ({
          name: h.name,
          latestHandshakeUnix: Math.floor(Date.now() / 1000),
          handshakeAgeSeconds: 0,
        })),
        probe: { target: `${input.spire.serverAddress}:${input.spire.serverPort}`, connectMs: 0 },
      };
    },
    async startSpireAgent({ input }) {
      return {
        nodeAliasId: `spiffe://${input.spire.trustDomain}/node/${input.nodeId}`,
        agentIdDigest: 'simulated',
        agentPid: 1,
        attestationType: 'join_token',
      };
    },
    async registerEntries({ input }) {
      return {
        entries: input.workloads.map((w) => ({
          workload: w.name,
          spiffeId: `spiffe://${input.spire.trustDomain}${w.spiffePath}`,
          entryId: `sim-${w.name}`,
          created: true,
        })),
      };
    },
    async launchWorkloads({ input }) {
      return {
        workloads: input.workloads.map((w) => ({
          name: w.name,
          spiffeId: `spiffe://${input.spire.trustDomain}${w.spiffePath}`,
          pid: 1,
          svidSerial: '01',
          svidNotAfter: new Date(Date.now() + w.x509TtlSeconds * 1000).toISOString(),
          svidTtlSeconds: w.x509TtlSeconds,
        })),
      };
    },
    undoInstallOverlay: removed,
    undoIssueOverlayKey: removed,
    undoStartSpireAgent: removed,
    undoRegisterEntries: removed,
    undoLaunchWorkloads: removed,
    recordEvent: discard,
    async recordEvents() {},
    async checkFleetDependencies() {
      return { healthy: true, dependencies: [] };
    },
    ...createLifecycleActivities(),
  };
  // The steps write the events their requests carry, as the worker's do (activities/index.ts), here to a sink that discards them.
  return withRunEvents(activities, discard);
}
