import { describe, expect, it } from 'vitest';
import { createFleetActivities } from '../../activities/fleet/dependencies.js';
import { ToolError } from '../../activities/host/exec.js';
import type { Ledger } from '../../inventory/index.js';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import { recordingTransport } from '../helpers/recording-transport.js';

const PUB = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const PUB2 = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=';
const PUB3 = 'cHVibGljLWtleS10aHJlZS10aGlyZC1wZWVyLXgxMjM=';
const PRIV = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';

describe('wg wrapper argv', () => {
  it('generates the key on the node with a constant script and the path as a parameter', async () => {
    const t = recordingTransport(() => ({ stdout: `${PUB}\n` }));
    const pub = await wg.ensureKeyPair(t, '/var/lib/nodeboot/wg/nb1.key');
    expect(pub).toBe(PUB);
    expect(t.calls).toHaveLength(1);
    const [call] = t.calls;
    expect(call!.command).toBe('sh');
    expect(call!.args[0]).toBe('-c');
    expect(call!.args.slice(2)).toEqual(['wg-keygen', '/var/lib/nodeboot/wg/nb1.key']);
    expect(call!.args[1]).toContain('umask 077');
    expect(call!.args[1]).not.toContain('/var/lib');
  });

  it('builds set / peer / remove argv exactly', () => {
    expect(wg.setInterfaceArgs('nb1', { privateKeyPath: '/n/k.key', listenPort: 51820 })).toEqual([
      'set',
      'nb1',
      'listen-port',
      '51820',
      'private-key',
      '/n/k.key',
    ]);
    expect(
      wg.setPeerArgs('nb1', {
        publicKey: PUB,
        endpoint: '192.0.2.1:51820',
        allowedIps: ['10.200.0.0/16'],
        persistentKeepaliveSeconds: 5,
      }),
    ).toEqual([
      'set',
      'nb1',
      'peer',
      PUB,
      'endpoint',
      '192.0.2.1:51820',
      'persistent-keepalive',
      '5',
      'allowed-ips',
      '10.200.0.0/16',
    ]);
    expect(wg.removePeerArgs('nb1', PUB)).toEqual(['set', 'nb1', 'peer', PUB, 'remove']);
  });

  it('rejects a private-key-looking or malformed peer key before running anything', async () => {
    const t = recordingTransport();
    await expect(
      wg.setPeer(t, 'nb1', { publicKey: 'not a key; rm -rf /', allowedIps: ['10.0.0.1/32'] }),
    ).rejects.toThrow(/peer.publicKey/);
    await expect(wg.setPeer(t, 'nb1', { publicKey: PUB, allowedIps: ['10.0.0.1/32 ; reboot'] })).rejects.toThrow(
      /allowedIps/,
    );
    expect(t.calls).toEqual([]);
  });

  it('reads an interface field by field and never asks for `dump` (which prints the private key)', async () => {
    const fields: Record<string, string> = {
      'public-key': `${PUB}\n`,
      'listen-port': '51820\n',
      'allowed-ips': `${PUB2}\t10.200.1.1/32\n${PUB3}\t(none)\n`,
      'latest-handshakes': `${PUB2}\t1763900000\n${PUB3}\t0\n`,
      endpoints: `${PUB2}\t192.0.2.10:40000\n${PUB3}\t(none)\n`,
      transfer: `${PUB2}\t1234\t5678\n${PUB3}\t0\t0\n`,
      dump: `${PRIV}\t${PUB}\t51820\toff\n`,
    };
    const t = recordingTransport((c) => ({ stdout: fields[c.args[2]!] ?? '' }));
    const state = await wg.show(t, 'nbhub');
    expect(state).toEqual({
      publicKey: PUB,
      listenPort: 51820,
      peers: [
        {
          publicKey: PUB2,
          endpoint: '192.0.2.10:40000',
          allowedIps: ['10.200.1.1/32'],
          latestHandshake: 1763900000,
          rxBytes: 1234,
          txBytes: 5678,
        },
        { publicKey: PUB3, endpoint: null, allowedIps: [], latestHandshake: 0, rxBytes: 0, txBytes: 0 },
      ],
    });
    expect(await wg.publicKey(t, 'nbhub')).toBe(PUB);
    expect(await wg.peerAllowedIps(t, 'nbhub')).toEqual(
      new Map([
        [PUB2, ['10.200.1.1/32']],
        [PUB3, []],
      ]),
    );
    expect(t.calls.every((c) => c.command === 'wg' && c.args[0] === 'show' && c.args[1] === 'nbhub')).toBe(true);
    expect(t.calls.flatMap((c) => c.args)).not.toContain('dump');
    expect(JSON.stringify(state)).not.toContain(PRIV);
  });

  it('the fleet breaker checks a hub by its public key, never with `dump`', async () => {
    const t = recordingTransport((c) => ({
      stdout: c.args.includes('public-key') ? `${PUB}\n` : `${PRIV}\t${PUB}\t51820\toff\n`,
    }));
    const acts = createFleetActivities({
      ledger: { ping: async () => undefined } as unknown as Ledger,
      transport: () => t,
      signal: () => undefined,
    });
    const hub = {
      name: 'hub',
      host: { kind: 'netns' as const, netns: 'nbabc123-hub' },
      interface: 'nbhub',
      endpoint: '192.0.2.1:51820',
      overlayIp: '10.200.0.1',
    };
    const health = await acts.checkFleetDependencies({
      spire: { serverHost: { kind: 'netns', netns: 'nbabc123-hub' }, serverSocketPath: '/x/api.sock' },
      hubs: [hub],
    });
    expect(health.dependencies.find((d) => d.name === 'hub:hub')).toEqual({ name: 'hub:hub', healthy: true });
    const wgCalls = t.calls.filter((c) => c.command === 'wg');
    expect(wgCalls.map((c) => c.args)).toEqual([['show', 'nbhub', 'public-key']]);
  });

  it('refuses a key file it did not write: the key script exits 3 and that is OwnershipConflict naming the path', async () => {
    const t = recordingTransport(() => ({ exitCode: 3, stderr: 'owner/mode 1000 644' }));
    const err = await wg.ensureKeyPair(t, '/var/lib/nodeboot/wireguard/nb1.key').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).type).toBe('OwnershipConflict');
    expect((err as ToolError).message).toContain('/var/lib/nodeboot/wireguard/nb1.key');
    expect(t.calls[0]!.args[1]).toContain('"$(id -u) 600"');
    expect(t.calls[0]!.args[1]).toContain('[ -L "$1" ]');
  });

  it('parses latest-handshakes', () => {
    const m = wg.parseLatestHandshakes(`${PUB}\t1763900000\n${PUB2}\t0\n`);
    expect(m.get(PUB)).toBe(1763900000);
    expect(m.get(PUB2)).toBe(0);
  });
});

describe('ip wrapper argv', () => {
  it('creates veth ends directly inside two namespaces', async () => {
    const t = recordingTransport();
    await ip.vethBetween(t, { netns: 'nbabc123-ul', ifname: 'vn1' }, { netns: 'nbabc123-n1', ifname: 'eth0' });
    expect(t.calls[0]!.args).toEqual([
      '-n',
      'nbabc123-ul',
      'link',
      'add',
      'vn1',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      'nbabc123-n1',
    ]);
  });

  it('reads addresses from ip -j', async () => {
    const t = recordingTransport(() => ({
      stdout: JSON.stringify([{ ifname: 'nb1', addr_info: [{ family: 'inet', local: '10.200.0.5', prefixlen: 16 }] }]),
    }));
    expect(await ip.addresses(t, 'nb1')).toEqual(['10.200.0.5/16']);
    expect(t.calls[0]!.args).toEqual(['-j', '-4', 'addr', 'show', 'dev', 'nb1']);
  });

  it('refuses over-long interface names (IFNAMSIZ)', async () => {
    const t = recordingTransport();
    await expect(ip.linkUp(t, 'a-very-long-interface')).rejects.toThrow(/interface must be at most 15/);
    expect(t.calls).toEqual([]);
  });
});
