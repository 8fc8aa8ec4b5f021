/**
 * The overlay links of a health check (steps 1-3).
 *
 * WireGuard: the interface is there (step 1); it holds the node's own key, the
 * one the ledger recorded, and the node's address and a peer for each hub
 * (step 2); every hub has the node's key as a peer for the node's address
 * (step 2); a handshake with every hub younger than the threshold and the probe
 * through the tunnel (step 3). A key on the interface, or in the key file, that
 * is not the recorded one is a security finding: someone may hold the node.
 *
 * Bowtie: the client owns the tunnel, so only what the worker can see without
 * the controller: the ledger's device record (step 2) and the probe (step 3).
 */
import type { LinkCheck } from '../../common/health.js';
import type { HealthThresholds } from '../../common/health.js';
import type { ProvisionInput } from '../../common/input.js';
import type { HostTransport } from '../host/transport.js';
import type { Ledger } from '../../inventory/index.js';
import * as ip from '../overlay/ip.js';
import { probeThroughTunnel } from '../overlay/probe.js';
import { fingerprint } from '../overlay/shared.js';
import * as wg from '../overlay/wireguard/wg-cli.js';
import { nodePaths } from '../paths.js';
import { guarded, link } from './links.js';

export interface CheckDeps {
  ledger: Ledger;
  transport(spec: ProvisionInput['host']): HostTransport;
  signal(): AbortSignal | undefined;
}

const prefixLen = (cidr: string) => Number(cidr.split('/')[1]);

export async function wireguardLinks(
  deps: CheckDeps,
  input: ProvisionInput,
  th: HealthThresholds,
): Promise<LinkCheck[]> {
  const t = deps.transport(input.host);
  const signal = deps.signal();
  const iface = nodePaths(input).interface;
  const links: LinkCheck[] = [];
  const peers = await deps.ledger.listPeers(input.nodeId);
  const recordedKey = peers[0]?.nodePublicKey;
  const overlayIp = await deps.ledger.getAllocation(input.nodeId, input.overlay.cidr);

  // Step 1: the interface.
  const ifaceKey = await wg.probePublicKey(t, iface, { signal }).catch(() => undefined);
  const present = ifaceKey !== undefined || (await ip.linkExists(t, iface, { signal }));
  if (!present)
    links.push(
      link('interface', undefined, 'installOverlay', 'broken', `interface ${iface} is missing on ${t.label}`, {
        interface: iface,
      }),
    );
  else if (ifaceKey === undefined) {
    links.push(
      link(
        'interface',
        undefined,
        'installOverlay',
        'broken',
        `${iface} on ${t.label} is not a WireGuard interface`,
        { interface: iface },
        true,
      ),
    );
  } else links.push(link('interface', undefined, 'installOverlay', 'ok', `${iface} is up`, { interface: iface }));
  const wgUp = ifaceKey !== undefined;

  // Step 2: the node's key (interface and key file), its address, its peers on both sides.
  links.push(
    await guarded('overlayKey', undefined, 'issueOverlayKey', async () => {
      // keyRecordedAt: since when the node holds its key (its age, for expiry metrics and the schedule's
      // rotation): the ledger's last rotation, else its first peering. A rotated key's age starts again.
      const keyRecordedAt = (await deps.ledger.getOverlayKey(input.nodeId))?.since ?? null;
      const ev: Record<string, unknown> = {
        interface: iface,
        recordedFingerprint: recordedKey ? fingerprint(recordedKey) : null,
        overlayIp,
        keyRecordedAt,
      };
      if (!recordedKey || !overlayIp)
        return link(
          'overlayKey',
          undefined,
          'issueOverlayKey',
          'broken',
          'the ledger has no key or address for this node',
          ev,
        );
      let fileKey: string | null;
      try {
        fileKey = await wg.keyFilePublicKey(t, nodePaths(input).wgKey, { signal });
      } catch (err) {
        if ((err as { type?: string }).type === 'OwnershipConflict') {
          return link(
            'overlayKey',
            undefined,
            'issueOverlayKey',
            'broken',
            'the key file was not written by node-bootstrap (replaced?)',
            ev,
            true,
          );
        }
        throw err;
      }
      ev.keyFileFingerprint = fileKey ? fingerprint(fileKey) : null;
      if (fileKey && fileKey !== recordedKey) {
        return link(
          'overlayKey',
          undefined,
          'issueOverlayKey',
          'broken',
          "the key file holds a key that is not the node's recorded key",
          ev,
          true,
        );
      }
      if (!wgUp)
        return link('overlayKey', undefined, 'issueOverlayKey', 'broken', 'not checked: no WireGuard interface', ev);
      ev.interfaceFingerprint = ifaceKey ? fingerprint(ifaceKey) : null;
      if (ifaceKey && ifaceKey !== recordedKey) {
        return link(
          'overlayKey',
          undefined,
          'issueOverlayKey',
          'broken',
          `${iface} holds a key that is not the node's recorded key`,
          ev,
          true,
        );
      }
      if (!ifaceKey) return link('overlayKey', undefined, 'issueOverlayKey', 'broken', `${iface} has no key`, ev);
      if (!fileKey)
        return link('overlayKey', undefined, 'issueOverlayKey', 'broken', 'the node key file is missing', ev);
      const want = `${overlayIp}/${prefixLen(input.overlay.cidr)}`;
      const addrs = await ip.addresses(t, iface, { signal });
      ev.addresses = addrs;
      if (!addrs.includes(want))
        return link(
          'overlayKey',
          undefined,
          'issueOverlayKey',
          'broken',
          `${iface} does not carry the node's address ${want}`,
          ev,
        );
      const nodePeers = await wg.peerAllowedIps(t, iface, { signal });
      const missing = peers.filter((p) => !nodePeers.has(p.hubPublicKey)).map((p) => p.hubName);
      if (missing.length)
        return link(
          'overlayKey',
          undefined,
          'issueOverlayKey',
          'broken',
          `the node has no peer for hub(s) ${missing.join(', ')}`,
          ev,
        );
      return link('overlayKey', undefined, 'issueOverlayKey', 'ok', `${iface} holds the recorded key and ${want}`, ev);
    }),
  );

  for (const hub of input.overlay.hubs) {
    const rec = peers.find((p) => p.hubName === hub.name);
    links.push(
      await guarded('hubPeer', hub.name, 'issueOverlayKey', async () => {
        if (!rec || !overlayIp)
          return link('hubPeer', hub.name, 'issueOverlayKey', 'broken', `the ledger has no peering with ${hub.name}`);
        const onHub = await wg.peerAllowedIps(deps.transport(hub.host), hub.interface, { signal });
        const allowed = onHub.get(rec.nodePublicKey);
        const holders = [...onHub]
          .filter(([k, ips]) => k !== rec.nodePublicKey && ips.includes(`${overlayIp}/32`))
          .map(([k]) => fingerprint(k));
        const ev = {
          hub: hub.name,
          nodeFingerprint: fingerprint(rec.nodePublicKey),
          allowedIps: allowed ?? null,
          otherKeysWithTheAddress: holders,
        };
        if (!allowed)
          return link(
            'hubPeer',
            hub.name,
            'issueOverlayKey',
            'broken',
            `${hub.name} has no peer for the node's key`,
            ev,
          );
        if (!allowed.includes(`${overlayIp}/32`))
          return link(
            'hubPeer',
            hub.name,
            'issueOverlayKey',
            'broken',
            `${hub.name} does not route ${overlayIp} to the node`,
            ev,
          );
        if (holders.length)
          return link(
            'hubPeer',
            hub.name,
            'issueOverlayKey',
            'broken',
            `another key on ${hub.name} also claims ${overlayIp}`,
            ev,
          );
        return link('hubPeer', hub.name, 'issueOverlayKey', 'ok', `${hub.name} routes ${overlayIp} to the node`, ev);
      }),
    );
  }

  // Step 3: handshakes and the probe.
  const seen = wgUp
    ? await wg.latestHandshakes(t, iface, { signal }).catch(() => new Map<string, number>())
    : new Map<string, number>();
  const now = Math.floor(Date.now() / 1000);
  for (const hub of input.overlay.hubs) {
    const rec = peers.find((p) => p.hubName === hub.name);
    const ts = rec ? (seen.get(rec.hubPublicKey) ?? 0) : 0;
    const age = ts ? now - ts : null;
    const ev = {
      hub: hub.name,
      latestHandshakeUnix: ts,
      handshakeAgeSeconds: age,
      maxAgeSeconds: th.handshakeMaxAgeSeconds,
    };
    if (!wgUp)
      links.push(link('handshake', hub.name, 'gatePeerHealth', 'broken', 'not checked: no WireGuard interface', ev));
    else if (age === null)
      links.push(link('handshake', hub.name, 'gatePeerHealth', 'broken', `no handshake with ${hub.name}`, ev));
    else if (age > th.handshakeMaxAgeSeconds)
      links.push(
        link('handshake', hub.name, 'gatePeerHealth', 'broken', `last handshake with ${hub.name} ${age} s ago`, ev),
      );
    else links.push(link('handshake', hub.name, 'gatePeerHealth', 'ok', `handshake with ${hub.name} ${age} s ago`, ev));
  }
  links.push(
    await probeLink(deps, input, th, wgUp ? { interface: iface, sourceIp: overlayIp ?? undefined } : undefined, !wgUp),
  );
  return links;
}

export async function bowtieLinks(deps: CheckDeps, input: ProvisionInput, th: HealthThresholds): Promise<LinkCheck[]> {
  const device = await deps.ledger.getOverlayDevice(input.nodeId);
  const deviceLink = device
    ? link(
        'device',
        undefined,
        'issueOverlayKey',
        'ok',
        `device ${device.deviceId} recorded (the controller's view is not checked)`,
        {
          deviceId: device.deviceId,
          keyFingerprint: fingerprint(device.publicKey),
        },
      )
    : link('device', undefined, 'issueOverlayKey', 'broken', 'the ledger has no Bowtie device for this node');
  return [deviceLink, await probeLink(deps, input, th, undefined, false)];
}

/** One probe through the tunnel to the SPIRE server port, within the threshold's time. */
async function probeLink(
  deps: CheckDeps,
  input: ProvisionInput,
  th: HealthThresholds,
  via: { interface: string; sourceIp?: string } | undefined,
  skip: boolean,
): Promise<LinkCheck> {
  const target = `${input.spire.serverAddress}:${input.spire.serverPort}`;
  if (skip)
    return link('probe', undefined, 'gatePeerHealth', 'broken', 'not checked: no WireGuard interface', { target });
  return guarded('probe', undefined, 'gatePeerHealth', async () => {
    const t = deps.transport(input.host);
    const p = await probeThroughTunnel(
      t,
      { address: input.spire.serverAddress, port: input.spire.serverPort },
      Date.now() + th.probeTimeoutMs,
      deps.signal(),
      via,
    );
    return link(
      'probe',
      undefined,
      'gatePeerHealth',
      'ok',
      `connected to ${p.target} through the tunnel in ${p.connectMs} ms`,
      p,
    );
  });
}
