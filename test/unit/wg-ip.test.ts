import { describe, expect, it } from 'vitest';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wg.js';
import { recordingTransport } from '../helpers/recording-transport.js';

const PUB = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const PUB2 = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=';
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
      'set', 'nb1', 'listen-port', '51820', 'private-key', '/n/k.key',
    ]);
    expect(wg.setPeerArgs('nb1', { publicKey: PUB, endpoint: '192.0.2.1:51820', allowedIps: ['10.200.0.0/16'], persistentKeepaliveSeconds: 5 })).toEqual([
      'set', 'nb1', 'peer', PUB, 'endpoint', '192.0.2.1:51820', 'persistent-keepalive', '5', 'allowed-ips', '10.200.0.0/16',
    ]);
    expect(wg.removePeerArgs('nb1', PUB)).toEqual(['set', 'nb1', 'peer', PUB, 'remove']);
  });

  it('rejects a private-key-looking or malformed peer key before running anything', async () => {
    const t = recordingTransport();
    await expect(wg.setPeer(t, 'nb1', { publicKey: 'not a key; rm -rf /', allowedIps: ['10.0.0.1/32'] })).rejects.toThrow(/peer.publicKey/);
    await expect(wg.setPeer(t, 'nb1', { publicKey: PUB, allowedIps: ['10.0.0.1/32 ; reboot'] })).rejects.toThrow(/allowedIps/);
    expect(t.calls).toEqual([]);
  });

  it('parses `wg show dump` and drops the private key', () => {
    const dump = [
      `${PRIV}\t${PUB}\t51820\toff`,
      `${PUB2}\t(none)\t192.0.2.10:40000\t10.200.1.1/32\t1763900000\t1234\t5678\toff`,
    ].join('\n');
    const state = wg.parseDump(dump);
    expect(state.publicKey).toBe(PUB);
    expect(state.listenPort).toBe(51820);
    expect(state.peers).toEqual([
      { publicKey: PUB2, endpoint: '192.0.2.10:40000', allowedIps: ['10.200.1.1/32'], latestHandshake: 1763900000, rxBytes: 1234, txBytes: 5678 },
    ]);
    expect(JSON.stringify(state)).not.toContain(PRIV);
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
    expect(t.calls[0]!.args).toEqual(['-n', 'nbabc123-ul', 'link', 'add', 'vn1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'nbabc123-n1']);
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
