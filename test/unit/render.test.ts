// What `nodeboot status` prints for each overlay step's evidence, for both drivers.
import { describe, expect, it } from 'vitest';
import { evidenceLine } from '../../client/cli/render.js';

describe('evidence lines', () => {
  it('wireguard: interface, hubs and handshakes', () => {
    expect(
      evidenceLine('installOverlay', {
        interface: 'nb1',
        toolVersion: 'wireguard-tools v1.0.20210914',
        alreadyPresent: true,
      }),
    ).toBe('interface nb1 (already there), wireguard-tools v1.0.20210914');
    expect(
      evidenceLine('issueOverlayKey', {
        overlayIp: '10.200.0.2',
        publicKey: 'pk',
        keyFingerprint: 'abcd',
        privateKeyPath: '/k',
        hubs: [{ name: 'hub', publicKey: 'h', endpoint: '192.0.2.1:51820' }],
      }),
    ).toBe('overlay 10.200.0.2, key abcd, peered with hub');
    expect(
      evidenceLine('gatePeerHealth', {
        hubs: [{ name: 'hub', latestHandshakeUnix: 1, handshakeAgeSeconds: 3 }],
        probe: { target: '10.200.0.1:8081', connectMs: 2 },
      }),
    ).toBe('hub handshake 3s ago; probe 10.200.0.1:8081 2 ms');
  });

  it("bowtie: package, device and the controller's view", () => {
    expect(evidenceLine('installOverlay', { toolVersion: 'bowtie-service 24.1.0', alreadyPresent: false })).toBe(
      'bowtie-service 24.1.0 installed',
    );
    expect(
      evidenceLine('issueOverlayKey', {
        overlayIp: '10.200.128.1',
        publicKey: 'pk',
        keyFingerprint: 'abcd',
        deviceId: 'dev-1',
        interface: 'bowtie0',
        hubs: [{ name: 'ctl-1', publicKey: 'h', endpoint: '' }],
      }),
    ).toBe('overlay 10.200.128.1, device dev-1, key abcd, peered with ctl-1');
    expect(
      evidenceLine('gatePeerHealth', {
        hubs: [],
        device: { id: 'dev-1', state: 'accepted', lastSeen: 'x', lastSeenAgeSeconds: 4 },
        probe: { target: '10.200.0.1:8081', connectMs: 2 },
      }),
    ).toBe('device accepted, seen 4s ago; probe 10.200.0.1:8081 2 ms');
  });
});
