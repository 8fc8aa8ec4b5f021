/**
 * The fleet's circuit breaker asks this: are the things every node needs up?
 * The SPIRE server (its admin healthcheck), each hub's WireGuard interface
 * (wireguard driver) or the Bowtie controller's `GET /ok` (bowtie driver), and
 * the inventory ledger. A dependency that is down is an answer, not an
 * error: the activity reports it and the fleet pauses its rollout.
 */
import { redactSecrets } from '../../common/errors.js';
import type { StepDeps } from '../deps.js';
import { BowtieController } from '../overlay/bowtie/controller.js';
import type { BowtieTrust } from '../overlay/bowtie/trust.js';
import * as wg from '../overlay/wireguard/wg-cli.js';
import * as server from '../spire/server-cli.js';
import type { DependencyState, FleetActivities } from '../types.js';

/** Each check gets this long before it counts as down. */
const CHECK_TIMEOUT_MS = 5_000;

export interface FleetDeps extends StepDeps {
  /** The controllers this worker talks to and the CA it trusts for them (workers/config.ts). */
  bowtie?: BowtieTrust;
}

export function createFleetActivities(deps: FleetDeps): Pick<FleetActivities, 'checkFleetDependencies'> {
  async function check(name: string, probe: () => Promise<boolean | void>): Promise<DependencyState> {
    try {
      const ok = await probe();
      return ok === false ? { name, healthy: false, detail: 'not serving' } : { name, healthy: true };
    } catch (err) {
      return {
        name,
        healthy: false,
        detail: redactSecrets(err instanceof Error ? err.message : String(err)).slice(0, 300),
      };
    }
  }

  return {
    async checkFleetDependencies({ spire, hubs, bowtieControllerUrl }) {
      const signal = deps.signal();
      const opts = { timeoutMs: CHECK_TIMEOUT_MS, signal };
      const dependencies = await Promise.all([
        check('spire-server', () =>
          server.healthcheck({
            transport: deps.transport(spire.serverHost),
            socketPath: spire.serverSocketPath,
            signal,
            timeoutMs: CHECK_TIMEOUT_MS,
          }),
        ),
        // The hub's public key: answers whether its interface is up, and reads no private key (unlike `wg show dump`).
        ...hubs.map((hub) =>
          check(
            `hub:${hub.name}`,
            async () => (await wg.publicKey(deps.transport(hub.host), hub.interface, opts)) !== null,
          ),
        ),
        // `/ok` needs no credentials: the check says whether the controller serves, not whether ours are good.
        ...(bowtieControllerUrl
          ? [
              // Only a controller on the worker's allow-list is asked (off it, the check reports why it is down).
              check('bowtie-controller', () =>
                new BowtieController({
                  url: bowtieControllerUrl,
                  auth: { kind: 'apiKey', keyId: '', secret: '' },
                  timeoutMs: CHECK_TIMEOUT_MS,
                  signal,
                  allowedOrigins: deps.bowtie?.controllers ?? [],
                  ca: deps.bowtie?.ca,
                }).ok(),
              ),
            ]
          : []),
        check('ledger', () => deps.ledger.ping()),
      ]);
      return { healthy: dependencies.every((d) => d.healthy), dependencies };
    },
  };
}
