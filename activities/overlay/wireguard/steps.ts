/**
 * Bootstrap steps 1-3 with the WireGuard driver: we run wireguard-tools on the
 * node and on the hubs. Each step inspects what exists on the node,
 * the hubs and the ledger, and finishes the job from there.
 */
import { heartbeat } from '../../host/heartbeat.js';
import type { HubSpec, ProvisionInput } from '../../../common/input.js';
import { hostKeyOf, nodePaths } from '../../paths.js';
import { ToolError } from '../../host/exec.js';
import type { StepDeps } from '../../deps.js';
import type { HostTransport } from '../../host/transport.js';
import type {
  HealthEvidence,
  InstallEvidence,
  KeyEvidence,
  OverlayDriver,
  StepRequest,
  UndoRequest,
  UndoResult,
} from '../../types.js';
import * as ip from '../ip.js';
import { nudgeHubs, probeFromOverlay, stepDeadline } from '../probe.js';
import { claimNodeDir, fingerprint } from '../shared.js';
import { ensureInterface, removeInterface } from './interface.js';
import * as wg from './wg-cli.js';

const ifaceOf = (input: ProvisionInput) => nodePaths(input).interface;
const keyPathOf = (input: ProvisionInput) => nodePaths(input).wgKey;
const prefixLen = (cidr: string) => Number(cidr.split('/')[1]);

const conflict = (message: string) => new ToolError('OwnershipConflict', message, 'wg');

export function createWireguardSteps(deps: StepDeps): OverlayDriver {
  const node = (input: ProvisionInput) => deps.transport(input.host);

  // Public data only (`wg show <if> public-key`): `dump` would print the hub's private key.
  async function hubPublicKey(hub: HubSpec): Promise<string> {
    const key = await wg.publicKey(deps.transport(hub.host), hub.interface, { signal: deps.signal() });
    if (key === null) throw new ToolError('ToolFailed', `hub ${hub.name}: interface ${hub.interface} has no key`, 'wg');
    return key;
  }

  /**
   * An interface named `iface` already exists on the node: adopt it only when
   * this node's runs made it (the ledger recorded it) or it is a WireGuard
   * interface already holding this node's own key. Anything else (the underlay
   * NIC, `lo`, another WireGuard interface) is an OwnershipConflict, raised
   * before anything on the node changes.
   */
  async function checkAdoptable(
    input: ProvisionInput,
    t: HostTransport,
    iface: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const holder = await deps.ledger.interfaceHolder(hostKeyOf(input.host), iface);
    if (holder !== null && holder !== input.nodeId) {
      throw conflict(
        `interface ${iface} on ${t.label} belongs to node ${holder}: refusing to adopt it (set overlay.interface to a free name)`,
      );
    }
    const key = await wg.probePublicKey(t, iface, { signal });
    if (key === undefined) {
      throw conflict(
        `interface ${iface} on ${t.label} exists and is not a WireGuard interface: refusing to adopt it (set overlay.interface to a free name)`,
      );
    }
    if (holder === input.nodeId) return;
    const own = await wg.keyFilePublicKey(t, keyPathOf(input), { signal });
    if (key === null || own === null || key !== own) {
      throw conflict(
        `WireGuard interface ${iface} on ${t.label} exists and was not made for node ${input.nodeId} (it holds ${key === null ? 'no key' : 'another key'}): refusing to adopt it`,
      );
    }
  }

  /**
   * Step 1: the nodeDir is this node's, WireGuard tooling is present, and the
   * node's interface exists and is up: one this node's runs made (recorded in
   * the ledger before it is made), never an interface that was already there.
   */
  async function installOverlay({ input }: StepRequest): Promise<InstallEvidence> {
    const t = node(input);
    const signal = deps.signal();
    const iface = ifaceOf(input);
    await claimNodeDir(deps.ledger, input);
    const toolVersion = await wg.version(t, { signal });
    heartbeat('wireguard tools present');
    const existed = await ip.linkExists(t, iface, { signal });
    if (existed) await checkAdoptable(input, t, iface, signal);
    await deps.ledger.upsertNode(input.nodeId, input.segment, 'provisioning');
    // Recorded before it is made: a crash in between leaves an interface the retry knows is ours.
    await deps.ledger.claimInterface(input.nodeId, hostKeyOf(input.host), iface);
    const r = await ensureInterface(t, iface, {
      logFile: nodePaths(input).wgLog,
      mtu: input.overlay.mtu,
      signal,
      // Listed just now: absent, it need not be listed again (present, it is, in case it went).
      exists: existed ? undefined : false,
    });
    return { interface: iface, toolVersion, alreadyPresent: existed || r.alreadyPresent };
  }

  /** Remove the interface only if this node's runs made it; give up the nodeDir claim. */
  async function undoInstallOverlay({ input }: UndoRequest): Promise<UndoResult> {
    const t = node(input);
    const iface = ifaceOf(input);
    const hostKey = hostKeyOf(input.host);
    const removed: string[] = [];
    if ((await deps.ledger.interfaceHolder(hostKey, iface)) === input.nodeId) {
      if (await removeInterface(t, iface, { signal: deps.signal() })) removed.push(`interface ${iface}`);
      await deps.ledger.releaseInterface(input.nodeId, hostKey, iface);
    }
    if (await deps.ledger.releaseNodeDir(input.nodeId)) removed.push(`claim on ${input.nodeDir}`);
    return { removed };
  }

  /**
   * Step 2: the node makes (or reuses) its key; the ledger allocates (or
   * returns) its overlay address; the node and every hub know each other.
   */
  async function issueOverlayKey({ input }: StepRequest): Promise<KeyEvidence> {
    const t = node(input);
    const signal = deps.signal();
    const iface = ifaceOf(input);
    const keyPath = keyPathOf(input);
    // Only our own interface gets a key and loses its addresses (step 1 recorded it).
    const holder = await deps.ledger.interfaceHolder(hostKeyOf(input.host), iface);
    if (holder !== input.nodeId)
      throw conflict(
        `interface ${iface} on ${t.label} was not made by node ${input.nodeId}'s runs: refusing to configure it`,
      );
    const publicKey = await wg.ensureKeyPair(t, keyPath, { signal });
    // No node may be handed a hub's address or the SPIRE server's.
    const reserved = [...input.overlay.hubs.map((h) => h.overlayIp), input.spire.serverAddress];
    const alloc = await deps.ledger.allocateAddress(input.nodeId, input.overlay.cidr, { reserved });
    heartbeat(`overlay address ${alloc.ip}`);

    // Every hub first, one read and one `wg set` each: its key and peers, then the stale
    // peers out and the node in.
    const hubKeys: string[] = [];
    for (const hub of input.overlay.hubs) {
      const hubT = deps.transport(hub.host);
      const view = await wg.keyAndAllowedIps(hubT, hub.interface, { signal });
      if (view.publicKey === null)
        throw new ToolError('ToolFailed', `hub ${hub.name}: interface ${hub.interface} has no key`, 'wg');
      hubKeys.push(view.publicKey);
      // A previous key of this node (a key file lost and remade) must not keep the address.
      const stale = [...view.allowedIps]
        .filter(([peerKey, allowedIps]) => peerKey !== publicKey && allowedIps.includes(`${alloc.ip}/32`))
        .map(([peerKey]) => ({ publicKey: peerKey, remove: true as const }));
      await wg.configure(
        hubT,
        hub.interface,
        { peers: [...stale, { publicKey, allowedIps: [`${alloc.ip}/32`] }] },
        { signal },
      );
    }
    // The node's side last, key, port and every hub in one `wg set`: its keepalive starts a
    // handshake at once, which a hub can only answer once it knows the node (else WireGuard
    // waits 5 s to retry).
    await wg.configure(
      t,
      iface,
      {
        privateKeyPath: keyPath,
        listenPort: input.overlay.listenPort,
        peers: input.overlay.hubs.map((hub, i) => ({
          publicKey: hubKeys[i]!,
          endpoint: hub.endpoint,
          // The first hub routes the whole segment; further hubs only their own address.
          allowedIps: i === 0 ? [input.overlay.cidr] : [`${hub.overlayIp}/32`],
          persistentKeepaliveSeconds: input.overlay.persistentKeepaliveSeconds,
        })),
      },
      { signal },
    );
    // Replace whatever address a previous attempt left with exactly the allocated one: one batch.
    const want = `${alloc.ip}/${prefixLen(input.overlay.cidr)}`;
    const stale = (await ip.addresses(t, iface, { signal })).filter((a) => a !== want);
    await ip.batch(
      t,
      [
        ...stale.map((a) => ip.addrArgs('del', iface, a)),
        ip.addrArgs('replace', iface, want),
        ip.linkUpArgs(iface, input.overlay.mtu),
      ],
      { signal },
    );

    const hubs: KeyEvidence['hubs'] = [];
    for (const [i, hub] of input.overlay.hubs.entries()) {
      const hubKey = hubKeys[i]!;
      await deps.ledger.recordPeer({
        nodeId: input.nodeId,
        hubName: hub.name,
        nodePublicKey: publicKey,
        hubPublicKey: hubKey,
        endpoint: hub.endpoint,
      });
      hubs.push({ name: hub.name, publicKey: hubKey, endpoint: hub.endpoint });
      heartbeat(`peered with ${hub.name}`);
    }
    return { overlayIp: alloc.ip, publicKey, keyFingerprint: fingerprint(publicKey), privateKeyPath: keyPath, hubs };
  }

  async function undoIssueOverlayKey({ input }: UndoRequest): Promise<UndoResult> {
    const t = node(input);
    const signal = deps.signal();
    const removed: string[] = [];
    const peers = await deps.ledger.listPeers(input.nodeId);
    const keys = new Set(peers.map((p) => p.nodePublicKey));
    // The key on the node is authoritative even if the ledger never heard of it.
    // An unreachable node must not stop the hub and ledger cleanup: the hub is
    // what lets a node onto the overlay. Its error is raised at the end.
    let nodeError: unknown;
    // A key file we did not write (planted) is neither used nor deleted.
    let foreignKey = false;
    try {
      const onNode = await wg.keyFilePublicKey(t, keyPathOf(input), { signal });
      if (onNode) keys.add(onNode);
    } catch (err) {
      if (err instanceof ToolError && err.type === 'OwnershipConflict') foreignKey = true;
      else nodeError = err;
    }
    const alloc = await deps.ledger.getAllocation(input.nodeId, input.overlay.cidr);
    for (const hub of input.overlay.hubs) {
      const hubT = deps.transport(hub.host);
      for (const [peerKey, allowedIps] of await wg.peerAllowedIps(hubT, hub.interface, { signal })) {
        if (keys.has(peerKey) || (alloc && allowedIps.includes(`${alloc}/32`))) {
          await wg.removePeer(hubT, hub.interface, peerKey, { signal });
          removed.push(`peer on ${hub.name}`);
        }
      }
    }
    if ((await deps.ledger.removePeers(input.nodeId)) > 0) removed.push('ledger peers');
    const released = await deps.ledger.releaseAddress(input.nodeId, input.overlay.cidr);
    if (released) removed.push(`address ${released}`);
    if (nodeError !== undefined) throw nodeError;
    if (foreignKey) return { removed };
    const rm = await t.run(
      'sh',
      ['-c', 'if [ -e "$1" ]; then rm -f -- "$1"; echo removed; fi', 'wg-rmkey', keyPathOf(input)],
      { signal },
    );
    if (rm.stdout.includes('removed')) removed.push('node key');
    return { removed };
  }

  /**
   * Step 3: a fresh handshake with every hub and a TCP connect through the
   * tunnel to the SPIRE server port. Polls (heartbeating) until both hold or
   * the budget runs out; the failure type says which part did not.
   */
  async function gatePeerHealth({ input }: StepRequest): Promise<HealthEvidence> {
    const t = node(input);
    const signal = deps.signal();
    const iface = ifaceOf(input);
    const started = Date.now();
    const deadline = stepDeadline(input.timeouts.gatePeerHealth, started);
    const hubKeys = new Map<string, string>();
    for (const hub of input.overlay.hubs) hubKeys.set(hub.name, await hubPublicKey(hub));

    let handshakes: HealthEvidence['hubs'] = [];
    for (;;) {
      const now = Math.floor(Date.now() / 1000);
      const seen = await wg.latestHandshakes(t, iface, { signal });
      handshakes = input.overlay.hubs.map((hub) => {
        const ts = seen.get(hubKeys.get(hub.name)!) ?? 0;
        return { name: hub.name, latestHandshakeUnix: ts, handshakeAgeSeconds: ts ? now - ts : -1 };
      });
      // "Recent" = within WireGuard's rekey window (REJECT_AFTER_TIME is 180 s).
      if (handshakes.every((h) => h.latestHandshakeUnix > 0 && h.handshakeAgeSeconds <= 180)) break;
      if (Date.now() > deadline) {
        const missing = handshakes.filter((h) => h.latestHandshakeUnix === 0).map((h) => h.name);
        throw new ToolError(
          'PeerHandshakeTimeout',
          `no recent handshake with hub(s) ${missing.join(', ') || 'all'} within ${deadline - started} ms`,
          'wg',
        );
      }
      heartbeat('waiting for handshake');
      await nudgeHubs(t, input, signal);
    }

    // The probe must leave through the tunnel, from the node's overlay address.
    const probe = await probeFromOverlay(t, deps.ledger, input, iface, deadline, signal);
    return { hubs: handshakes, probe };
  }

  return { installOverlay, undoInstallOverlay, issueOverlayKey, undoIssueOverlayKey, gatePeerHealth };
}
