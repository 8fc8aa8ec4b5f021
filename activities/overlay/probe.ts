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
import { z } from 'zod';
import { Ipv4, parseName } from '../../common/names.js';
import { exitFailure, isProgramMissing, programMissingError } from '../host/exec.js';
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
    const attempt = await probeOnce(t, target, via !== undefined, signal);
    const offRoute = via && attempt.route ? routeProblem(attempt.route, target.address, via) : undefined;
    if (offRoute === undefined && attempt.connected) return { target: name, connectMs: Date.now() - started };
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

const Host = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$/, 'must be an IPv4 address or a DNS name');
const Port = z.number().int().min(1).max(65535);

/** Ends the route in PROBE_SCRIPT's output (JSON never holds it). */
const ROUTE_MARK = '--nodeboot-route--';
// One command per attempt: with $3 = route, the route the kernel picks to $1 (`ip -j route get`,
// exit 90 when it has none), then a TCP connect to $1:$2 (bash's /dev/tcp, 3 s at most).
const PROBE_SCRIPT =
  `if [ "$3" = route ]; then ip -j route get "$1" || exit 90; printf '\\n%s\\n' '${ROUTE_MARK}'; fi; ` +
  `exec timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' tcp-probe "$1" "$2"`;

export function probeArgs(target: { address: string; port: number }, withRoute: boolean): string[] {
  return [
    '-c',
    PROBE_SCRIPT,
    'tunnel-probe',
    withRoute ? parseName(Ipv4, 'address', target.address) : parseName(Host, 'address', target.address),
    String(parseName(Port, 'port', target.port)),
    withRoute ? 'route' : 'no-route',
  ];
}

/**
 * One probe attempt: the route the node takes to the target (when asked) and whether a TCP
 * connect succeeds. Connecting does not wait for the route to be judged: a connect that
 * leaves by another route is no proof, and the caller ignores it.
 */
async function probeOnce(
  t: HostTransport,
  target: { address: string; port: number },
  withRoute: boolean,
  signal?: AbortSignal,
): Promise<{ route?: ip.Route; connected: boolean }> {
  const r = await t.run('sh', probeArgs(target, withRoute), { signal, allowNonZeroExit: true, timeoutMs: 5_000 });
  for (const program of ['ip', 'timeout', 'bash'])
    if (isProgramMissing(program, r.exitCode, r.stderr)) throw programMissingError(program, t.label, r.exitCode);
  if (!withRoute) return { connected: r.exitCode === 0 };
  const at = r.stdout.indexOf(`\n${ROUTE_MARK}`);
  if (r.exitCode === 90 || at < 0) throw exitFailure('ip', ['route', 'get', target.address], r, t.label);
  return { route: ip.parseRoute(r.stdout.slice(0, at), target.address), connected: r.exitCode === 0 };
}

/** Why traffic to `address` would not go through the tunnel, or undefined when it would. */
function routeProblem(route: ip.Route, address: string, via: TunnelRoute): string | undefined {
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
