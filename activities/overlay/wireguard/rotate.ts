/**
 * Rotating a node's WireGuard key without an outage (workflows/rotate-overlay-key.ts),
 * in stages, each one idempotent: it reads the node and the hubs again and
 * finishes its part from there, so a retry after a dead worker repeats nothing.
 *
 *   1 prepare   the node makes the new key beside the current one (0600; it never leaves the node)
 *   2 add peers every hub knows the new key as a peer WITHOUT a route: the old tunnel carries everything
 *   3 switch    every hub routes the node's address to the new peer (WireGuard allowed IPs are unique
 *               per interface, so this takes the route from the old peer), then at once the node
 *               switches to the new key: the gap is two `wg set` calls, not a stage
 *   4 verify    the interface holds the new key, every hub has a handshake with it, the probe passes
 *   5 finalize  only then: the old peer leaves every hub, the ledger learns the key, the new key
 *               file replaces the old one
 *
 * Until the end of 5, the key file names the key to roll back to: rollback
 * routes the address back to that key's peer (re-adding it if needed), sets the
 * interface from the key file, removes the other peer, deletes the next key,
 * makes the ledger name the key file's key and proves the tunnel again. (After a
 * finalize that promoted the new key, "rolling back" settles on the new key.)
 */
import { IfName, WgPublicKey, parseName } from '../../../common/names.js';
import type { HubSpec, ProvisionInput } from '../../../common/input.js';
import { heartbeat } from '../../host/heartbeat.js';
import { ToolError } from '../../host/exec.js';
import type { HostTransport } from '../../host/transport.js';
import { hostKeyOf, nodePaths } from '../../paths.js';
import * as ip from '../ip.js';
import { nudgeHubs, probeFromOverlay } from '../probe.js';
import { discardNextKey, nextKeyPathOf, promoteNextKey } from './rotation-keys.js';
import type {
  FinalizeEvidence,
  HubPeersEvidence,
  RollbackEvidence,
  RollbackRequest,
  RotationActivities,
  RotationKeys,
  RotationRequest,
  RotationStageRequest,
  SwitchEvidence,
  VerifyEvidence,
  VerifyRequest,
} from '../../types-rotation.js';
import type { StepDeps } from '../../deps.js';
import { fingerprint } from '../shared.js';
import * as wg from './wg-cli.js';

/** "Recent" handshake: within WireGuard's rekey window (REJECT_AFTER_TIME is 180 s), as the health gate counts it. */
const RECENT_HANDSHAKE_SECONDS = 180;

const conflict = (message: string) => new ToolError('OwnershipConflict', message, 'wg');
const notProvisioned = (message: string) => new ToolError('NotProvisioned', message, 'wg');

/** `wg set <if> peer <key>`: a peer with no allowed IPs (it routes nothing until stage 3). */
export function routelessPeerArgs(ifname: string, publicKey: string): string[] {
  return ['set', parseName(IfName, 'interface', ifname), 'peer', parseName(WgPublicKey, 'peer.publicKey', publicKey)];
}

export function createRotationActivities(deps: StepDeps): RotationActivities {
  const node = (input: ProvisionInput) => deps.transport(input.host);
  const hubT = (hub: HubSpec) => deps.transport(hub.host);
  const paths = (input: ProvisionInput) => {
    const p = nodePaths(input);
    return { iface: p.interface, keyPath: p.wgKey, nextPath: nextKeyPathOf(p.wgKey) };
  };
  const nodeRoute = (keys: RotationKeys) => [`${keys.overlayIp}/32`];

  function refuseDriver(input: ProvisionInput): void {
    if (input.overlay.driver !== 'wireguard') {
      throw new ToolError(
        'InvalidInput',
        `overlay.driver: key rotation supports "wireguard" only (got "${input.overlay.driver}")`,
        'wg',
      );
    }
  }

  /** The interface is this node's (step 1 recorded it) and holds one of `keys`; returns the key it holds. */
  async function interfaceKey(input: ProvisionInput, t: HostTransport, allowed: (string | null)[]): Promise<string> {
    const { iface } = paths(input);
    const signal = deps.signal();
    if (
      (await deps.ledger.interfaceHolder(hostKeyOf(input.host), iface)) !== input.nodeId ||
      !(await ip.linkExists(t, iface, { signal }))
    ) {
      throw notProvisioned(
        `node ${input.nodeId} has no overlay interface ${iface} of its own on ${t.label}: provision (or repair) it before rotating its key`,
      );
    }
    const key = await wg.publicKey(t, iface, { signal });
    if (key === null || !allowed.includes(key)) {
      throw conflict(
        `interface ${iface} on ${t.label} holds ${key === null ? 'no key' : "a key that is neither the node's current nor its new one"}: refusing to rotate (investigate the node)`,
      );
    }
    return key;
  }

  async function prepare({ input }: RotationRequest): Promise<RotationKeys> {
    refuseDriver(input);
    const t = node(input);
    const signal = deps.signal();
    const { keyPath, nextPath } = paths(input);
    const oldKey = await wg.keyFilePublicKey(t, keyPath, { signal });
    if (oldKey === null)
      throw notProvisioned(
        `node ${input.nodeId} has no key file ${keyPath}: provision (or repair) it before rotating its key`,
      );
    const overlayIp = await deps.ledger.getAllocation(input.nodeId, input.overlay.cidr);
    if (overlayIp === null)
      throw notProvisioned(
        `node ${input.nodeId} holds no overlay address in ${input.overlay.cidr}: provision (or repair) it before rotating its key`,
      );
    // A next key a lost attempt made (the interface may run on it already) is reused;
    // the interface is checked before anything is made, so a refusal changes nothing.
    const existing = await wg.keyFilePublicKey(t, nextPath, { signal });
    const current = await interfaceKey(input, t, [oldKey, existing]);
    // Made on the node, 0600, beside the current key.
    const newKey = existing ?? (await wg.ensureKeyPair(t, nextPath, { signal }));
    heartbeat('new key made on the node');
    const hubs: RotationKeys['hubs'] = [];
    for (const hub of input.overlay.hubs) {
      const key = await wg.publicKey(hubT(hub), hub.interface, { signal });
      if (key === null)
        throw new ToolError('ToolFailed', `hub ${hub.name}: interface ${hub.interface} has no key`, 'wg');
      hubs.push({ name: hub.name, publicKey: key });
    }
    return {
      oldPublicKey: oldKey,
      oldFingerprint: fingerprint(oldKey),
      newPublicKey: newKey,
      newFingerprint: fingerprint(newKey),
      overlayIp,
      nextKeyPath: nextPath,
      hubs,
      resumed: current === newKey,
    };
  }

  async function addHubPeers({ input, keys }: RotationStageRequest): Promise<HubPeersEvidence> {
    refuseDriver(input);
    const signal = deps.signal();
    const out: HubPeersEvidence['hubs'] = [];
    for (const hub of input.overlay.hubs) {
      const peers = await wg.peerAllowedIps(hubT(hub), hub.interface, { signal });
      // An existing new peer may already carry the route (stage 3 of a lost attempt): leave it as it is.
      const added = !peers.has(keys.newPublicKey);
      if (added) await hubT(hub).run('wg', routelessPeerArgs(hub.interface, keys.newPublicKey), { signal });
      out.push({ name: hub.name, added });
      heartbeat(`new peer on ${hub.name}`);
    }
    return { hubs: out };
  }

  async function switchKey({ input, keys }: RotationStageRequest): Promise<SwitchEvidence> {
    refuseDriver(input);
    const t = node(input);
    const signal = deps.signal();
    const { iface, nextPath } = paths(input);
    const current = await interfaceKey(input, t, [keys.oldPublicKey, keys.newPublicKey]);
    // Routes first, then the node: between the two calls the hub sends to a peer
    // that has no session yet (it queues), rather than the node sending from a key
    // whose packets the hub would drop.
    for (const hub of input.overlay.hubs) {
      await wg.setPeer(
        hubT(hub),
        hub.interface,
        { publicKey: keys.newPublicKey, allowedIps: nodeRoute(keys) },
        { signal },
      );
    }
    const nodeSwitched = current !== keys.newPublicKey;
    // The path comes from the input (as every stage derives it), never from an earlier result.
    if (nodeSwitched) await wg.setInterface(t, iface, { privateKeyPath: nextPath }, { signal });
    return { hubs: input.overlay.hubs.map((h) => h.name), nodeSwitched };
  }

  /**
   * The interface holds `publicKey`; every hub has a recent handshake WITH that
   * key (the hub's own record: only that key could have made it) and the node
   * one with every hub; then the probe through the tunnel. PeerHandshakeTimeout
   * or ProbeFailed when the budget runs out.
   */
  async function verify({ input, publicKey, handshakeTimeoutSeconds }: VerifyRequest): Promise<VerifyEvidence> {
    const t = node(input);
    const signal = deps.signal();
    const { iface } = paths(input);
    const started = Date.now();
    const deadline = started + handshakeTimeoutSeconds * 1000;
    const onIface = await wg.publicKey(t, iface, { signal });
    if (onIface !== publicKey) {
      throw new ToolError(
        'PeerHandshakeTimeout',
        `interface ${iface} on ${t.label} does not hold the key ${fingerprint(publicKey)} (it holds ${onIface ? fingerprint(onIface) : 'none'})`,
        'wg',
      );
    }
    const hubKeys = new Map<string, string>();
    for (const hub of input.overlay.hubs) {
      const key = await wg.publicKey(hubT(hub), hub.interface, { signal });
      if (key) hubKeys.set(hub.name, key);
    }
    let hubs: VerifyEvidence['hubs'] = [];
    for (;;) {
      const now = Math.floor(Date.now() / 1000);
      const seenByNode = await wg.latestHandshakes(t, iface, { signal });
      hubs = [];
      const missing: string[] = [];
      for (const hub of input.overlay.hubs) {
        const byHub = (await wg.latestHandshakes(hubT(hub), hub.interface, { signal })).get(publicKey) ?? 0;
        const byNode = seenByNode.get(hubKeys.get(hub.name) ?? '') ?? 0;
        const ts = Math.min(byHub, byNode);
        if (ts === 0 || now - ts > RECENT_HANDSHAKE_SECONDS) missing.push(hub.name);
        hubs.push({ name: hub.name, latestHandshakeUnix: ts, handshakeAgeSeconds: ts ? now - ts : -1 });
      }
      if (missing.length === 0) break;
      if (Date.now() > deadline) {
        throw new ToolError(
          'PeerHandshakeTimeout',
          `no handshake of key ${fingerprint(publicKey)} with hub(s) ${missing.join(', ')} within ${handshakeTimeoutSeconds} s`,
          'wg',
        );
      }
      heartbeat(`waiting for a handshake of key ${fingerprint(publicKey)}`);
      await nudgeHubs(t, input, signal);
    }
    const probe = await probeFromOverlay(t, deps.ledger, input, iface, deadline, signal);
    return { hubs, probe, fingerprint: fingerprint(publicKey) };
  }

  async function finalize({ input, keys }: RotationStageRequest): Promise<FinalizeEvidence> {
    refuseDriver(input);
    const t = node(input);
    const signal = deps.signal();
    const { keyPath, nextPath } = paths(input);
    // Verified on the new key: finalizing must never strand a node that rolled back.
    await interfaceKey(input, t, [keys.newPublicKey]);
    const removedOldPeer: string[] = [];
    for (const hub of input.overlay.hubs) {
      const peers = await wg.peerAllowedIps(hubT(hub), hub.interface, { signal });
      if (peers.has(keys.oldPublicKey)) {
        await wg.removePeer(hubT(hub), hub.interface, keys.oldPublicKey, { signal });
        removedOldPeer.push(hub.name);
      }
    }
    for (const [i, hub] of input.overlay.hubs.entries()) {
      await deps.ledger.recordPeer({
        nodeId: input.nodeId,
        hubName: hub.name,
        nodePublicKey: keys.newPublicKey,
        hubPublicKey: keys.hubs[i]!.publicKey,
        endpoint: hub.endpoint,
      });
    }
    const record = await deps.ledger.recordKeyRotation({
      nodeId: input.nodeId,
      publicKey: keys.newPublicKey,
      fingerprint: keys.newFingerprint,
      previousFingerprint: keys.oldFingerprint,
    });
    // Last: the key file every step reads becomes the new key. A retry finds it done.
    if ((await wg.keyFilePublicKey(t, nextPath, { signal })) === keys.newPublicKey)
      await promoteNextKey(t, nextPath, keyPath, { signal });
    const onFile = await wg.keyFilePublicKey(t, keyPath, { signal });
    if (onFile !== keys.newPublicKey)
      throw conflict(
        `key file ${keyPath} on ${t.label} does not hold the new key after the rotation: refusing to go on (investigate the node)`,
      );
    return {
      fingerprint: keys.newFingerprint,
      previousFingerprint: keys.oldFingerprint,
      removedOldPeer,
      rotatedAt: record.rotatedAt ?? record.since,
    };
  }

  async function rollback({ input, keys, handshakeTimeoutSeconds, run }: RollbackRequest): Promise<RollbackEvidence> {
    refuseDriver(input);
    const t = node(input);
    const signal = deps.signal();
    const { iface, keyPath, nextPath } = paths(input);
    // The key file is untouched until finalize: it names the key to go back to.
    const oldKey = await wg.keyFilePublicKey(t, keyPath, { signal });
    if (oldKey === null)
      throw notProvisioned(`node ${input.nodeId} has no key file ${keyPath}: nothing to roll back to`);
    let newKey = keys?.newPublicKey ?? null;
    if (newKey === null) {
      try {
        newKey = await wg.keyFilePublicKey(t, nextPath, { signal });
      } catch (err) {
        if (!(err instanceof ToolError && err.type === 'OwnershipConflict')) throw err;
      }
    }
    const overlayIp = keys?.overlayIp ?? (await deps.ledger.getAllocation(input.nodeId, input.overlay.cidr));
    const restored: string[] = [];
    const removed: string[] = [];
    // Routes back to the old peer first (re-creating it if it is gone), then the node.
    if (overlayIp) {
      for (const hub of input.overlay.hubs) {
        const peers = await wg.peerAllowedIps(hubT(hub), hub.interface, { signal });
        if (!(peers.get(oldKey) ?? []).includes(`${overlayIp}/32`)) {
          await wg.setPeer(
            hubT(hub),
            hub.interface,
            { publicKey: oldKey, allowedIps: [`${overlayIp}/32`] },
            { signal },
          );
          restored.push(`route on ${hub.name}`);
        }
      }
    }
    if ((await wg.publicKey(t, iface, { signal })) !== oldKey) {
      await wg.setInterface(t, iface, { privateKeyPath: keyPath }, { signal });
      restored.push('interface key');
    }
    if (newKey !== null && newKey !== oldKey) {
      for (const hub of input.overlay.hubs) {
        if ((await wg.peerAllowedIps(hubT(hub), hub.interface, { signal })).has(newKey)) {
          await wg.removePeer(hubT(hub), hub.interface, newKey, { signal });
          removed.push(`new peer on ${hub.name}`);
        }
      }
    }
    if (await discardNextKey(t, nextPath, { signal })) removed.push('new key file');
    // The ledger names the key the node is back on (a failed finalize may have recorded the new one).
    if ((await deps.ledger.listPeers(input.nodeId)).some((p) => p.nodePublicKey !== oldKey)) {
      for (const [i, hub] of input.overlay.hubs.entries()) {
        const hubKey = keys?.hubs[i]?.publicKey ?? (await wg.publicKey(hubT(hub), hub.interface, { signal }));
        if (hubKey)
          await deps.ledger.recordPeer({
            nodeId: input.nodeId,
            hubName: hub.name,
            nodePublicKey: oldKey,
            hubPublicKey: hubKey,
            endpoint: hub.endpoint,
          });
      }
      restored.push('ledger peers');
    }
    const known = await deps.ledger.getOverlayKey(input.nodeId);
    if (known?.rotatedAt && known.publicKey !== oldKey) {
      await deps.ledger.recordKeyRotation({
        nodeId: input.nodeId,
        publicKey: oldKey,
        fingerprint: fingerprint(oldKey),
        previousFingerprint: known.fingerprint,
      });
      restored.push('ledger key');
    }
    heartbeat('rolled back; proving the old tunnel');
    const verified = await verify({ input, run, publicKey: oldKey, handshakeTimeoutSeconds });
    return { fingerprint: fingerprint(oldKey), restored, removed, verified };
  }

  return {
    rotatePrepareKey: prepare,
    rotateAddHubPeers: addHubPeers,
    rotateSwitchKey: switchKey,
    rotateVerify: verify,
    rotateFinalize: finalize,
    rotateRollback: rollback,
  };
}
