/**
 * Our own proof that the overlay carries traffic: a TCP connect from the node,
 * through the tunnel, to the SPIRE server port. Every overlay driver's health
 * gate ends with it, whatever the driver's own signals say.
 */
import { heartbeat } from '../host/heartbeat.js';
import { ToolError } from '../host/exec.js';
import type { HostTransport } from '../host/transport.js';
import type { ProvisionInput } from '../../common/input.js';
import type { Ledger } from '../../inventory/index.js';
import type { HealthEvidence } from '../types.js';
import * as ip from './ip.js';

/**
 * When a polling step that started at `started` gives up: 3 s before its
 * start-to-close deadline, so it fails with its own error type rather than a
 * timeout (at least 2 s of polling).
 */
export function stepDeadline(timeoutSeconds: number, started: number): number {
  return started + Math.max(2_000, timeoutSeconds * 1000 - 3_000);
}

/** Where probe traffic must leave the node: the overlay interface, from the node's overlay address. */
export interface TunnelRoute {
  interface: string;
  sourceIp?: string;
}

/**
 * Connect until it works or `deadline` (epoch ms) passes; ProbeFailed then.
 * With `via`, each attempt first asks the node's kernel which route it takes
 * to the target (`ip route get`): a route that leaves by another interface (or
 * from another address) is no proof of the tunnel, however well it connects.
 */
export async function probeThroughTunnel(
  t: HostTransport,
  target: { address: string; port: number },
  deadline: number,
  signal?: AbortSignal,
  via?: TunnelRoute,
): Promise<HealthEvidence['probe']> {
  const name = `${target.address}:${target.port}`;
  for (;;) {
    const started = Date.now();
    const offRoute = via ? await routeProblem(t, target.address, via, signal) : undefined;
    if (offRoute === undefined) {
      const r = await t.run(
        'timeout',
        ['3', 'bash', '-c', 'exec 3<>"/dev/tcp/$1/$2"', 'tcp-probe', target.address, String(target.port)],
        {
          signal,
          allowNonZeroExit: true,
          timeoutMs: 5_000,
        },
      );
      if (r.exitCode === 0) return { target: name, connectMs: Date.now() - started };
    }
    if (Date.now() > deadline) {
      throw new ToolError(
        'ProbeFailed',
        offRoute
          ? `no probe through the tunnel to ${name}: ${offRoute}`
          : `TCP probe through the tunnel to ${name} failed`,
        'bash',
      );
    }
    heartbeat(`probing ${name}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

/** Why traffic to `address` would not go through the tunnel, or undefined when it would. */
async function routeProblem(
  t: HostTransport,
  address: string,
  via: TunnelRoute,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const route = await ip.routeGet(t, address, { signal });
  if (route.dev !== via.interface)
    return `the node routes ${address} via ${route.dev}, not the overlay interface ${via.interface}`;
  if (via.sourceIp && route.prefsrc && route.prefsrc !== via.sourceIp) {
    return `the node routes ${address} from ${route.prefsrc}, not its overlay address ${via.sourceIp}`;
  }
  return undefined;
}

/**
 * Traffic towards every hub: WireGuard then initiates a handshake now instead
 * of at the next keepalive (used while waiting for one).
 */
export async function nudgeHubs(t: HostTransport, input: ProvisionInput, signal?: AbortSignal): Promise<void> {
  for (const hub of input.overlay.hubs) {
    await t.run('ping', ['-c', '1', '-W', '1', hub.overlayIp], { signal, allowNonZeroExit: true, timeoutMs: 3_000 });
  }
}

/**
 * The probe to the SPIRE server, which must leave through `iface` from the
 * node's overlay address (the ledger's allocation), by `deadline` (epoch ms).
 */
export async function probeFromOverlay(
  t: HostTransport,
  ledger: Ledger,
  input: ProvisionInput,
  iface: string,
  deadline: number,
  signal?: AbortSignal,
): Promise<HealthEvidence['probe']> {
  const sourceIp = (await ledger.getAllocation(input.nodeId, input.overlay.cidr)) ?? undefined;
  const target = { address: input.spire.serverAddress, port: input.spire.serverPort };
  return probeThroughTunnel(t, target, deadline, signal, { interface: iface, sourceIp });
}
