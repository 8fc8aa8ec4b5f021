import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { localTransport } from '../../activities/host/transport.js';
import { probeArgs, probeThroughTunnel } from '../../activities/overlay/probe.js';
import { ensureInterface } from '../../activities/overlay/wireguard/interface.js';
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

  it('reads every field of an interface in one command, field by field, never asking for `dump` (which prints the private key)', async () => {
    const fields: Record<string, string> = {
      'public-key': `${PUB}`,
      'listen-port': '51820',
      'allowed-ips': `${PUB2}\t10.200.1.1/32\n${PUB3}\t(none)`,
      'latest-handshakes': `${PUB2}\t1763900000\n${PUB3}\t0`,
      endpoints: `${PUB2}\t192.0.2.10:40000\n${PUB3}\t(none)`,
      transfer: `${PUB2}\t1234\t5678\n${PUB3}\t0\t0`,
      dump: `${PRIV}\t${PUB}\t51820\toff`,
    };
    // The real script, with a `wg` that answers from the table and logs how it was asked.
    const bin = mkdtempSync(path.join(tmpdir(), 'nb-wg-'));
    const log = path.join(bin, 'calls');
    writeFileSync(
      path.join(bin, 'wg'),
      `#!/bin/sh\necho "$*" >> ${log}\ncase "$3" in\n${Object.entries(fields)
        .map(([f, out]) => `${f}) printf '%b\\n' '${out.replace(/\t/g, '\\t').replace(/\n/g, '\\n')}';;`)
        .join('\n')}\n*) exit 1;;\nesac\n`,
      { mode: 0o755 },
    );
    const inner = localTransport();
    const t = recordingTransport();
    t.run = (command, args, opts) => {
      t.calls.push({ command, args: [...args], opts });
      return inner.run(command, args, { ...opts, env: { PATH: `${bin}:/usr/bin:/bin` } });
    };
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
    expect(t.calls).toHaveLength(1);
    expect(t.calls[0]!.command).toBe('sh');
    expect(t.calls[0]!.args.slice(2)).toEqual(['wg-show', 'nbhub', ...wg.PUBLIC_FIELDS]);
    expect(await wg.keyAndAllowedIps(t, 'nbhub')).toEqual({
      publicKey: PUB,
      allowedIps: new Map([
        [PUB2, ['10.200.1.1/32']],
        [PUB3, []],
      ]),
    });
    const asked = readFileSync(log, 'utf8').trim().split('\n');
    expect(asked).toEqual([...wg.PUBLIC_FIELDS, 'public-key', 'allowed-ips'].map((f) => `show nbhub ${f}`));
    expect(JSON.stringify(state)).not.toContain(PRIV);
    // Only public fields can be asked for.
    expect(() => wg.showFieldsArgs('nbhub', ['dump' as wg.WgShowField])).toThrow(/not a public field/);
    // An interface wg cannot show fails the read (the table has no such interface field).
    await expect(wg.showFields(t, 'nbhub', ['nope' as wg.WgShowField])).rejects.toThrow();
    rmSync(bin, { recursive: true, force: true });
  });

  it('sets key, port and several peers (and removals) in one wg set, and batches ip commands on stdin', async () => {
    expect(
      wg.configureArgs('nb1', {
        privateKeyPath: '/n/k.key',
        listenPort: 51820,
        peers: [
          { publicKey: PUB2, remove: true },
          {
            publicKey: PUB,
            endpoint: '192.0.2.1:51820',
            allowedIps: ['10.200.0.0/16'],
            persistentKeepaliveSeconds: 25,
          },
          { publicKey: PUB3, allowedIps: ['10.200.0.1/32'] },
        ],
      }),
    ).toEqual([
      'set',
      'nb1',
      'listen-port',
      '51820',
      'private-key',
      '/n/k.key',
      'peer',
      PUB2,
      'remove',
      'peer',
      PUB,
      'endpoint',
      '192.0.2.1:51820',
      'persistent-keepalive',
      '25',
      'allowed-ips',
      '10.200.0.0/16',
      'peer',
      PUB3,
      'allowed-ips',
      '10.200.0.1/32',
    ]);
    const t = recordingTransport();
    await ip.batch(t, [
      ip.addrArgs('del', 'nb1', '10.0.0.9/16'),
      ip.addrArgs('replace', 'nb1', '10.0.0.2/16'),
      ip.linkUpArgs('nb1', 1380),
    ]);
    expect(t.calls).toEqual([
      {
        command: 'ip',
        args: ['-batch', '-'],
        opts: {
          input: 'addr del 10.0.0.9/16 dev nb1\naddr replace 10.0.0.2/16 dev nb1\nlink set dev nb1 mtu 1380 up\n',
        },
      },
    ]);
    await expect(ip.batch(t, [['link', 'set', 'dev', 'a b']])).rejects.toThrow(/one word/);
    expect(() => ip.addrArgs('replace', 'nb1', '10.0.0.2/16\nlink del nb1')).toThrow();
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

describe('tunnel probe', () => {
  it('asks for the route and connects in one command per attempt; a connect by another route is no proof', async () => {
    const server = createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const inner = localTransport();
    const t = recordingTransport();
    t.run = (command, args, opts) => {
      t.calls.push({ command, args: [...args], opts });
      return inner.run(command, args, opts);
    };
    try {
      const target = { address: '127.0.0.1', port };
      const ok = await probeThroughTunnel(t, target, Date.now() + 5_000, undefined, { interface: 'lo' });
      expect(ok.target).toBe(`127.0.0.1:${port}`);
      expect(t.calls).toHaveLength(1);
      expect(t.calls[0]!.command).toBe('sh');
      expect(t.calls[0]!.args.slice(2)).toEqual(['tunnel-probe', '127.0.0.1', String(port), 'route']);
      await expect(
        probeThroughTunnel(t, target, Date.now() + 100, undefined, { interface: 'nbtun0' }),
      ).rejects.toMatchObject({
        type: 'ProbeFailed',
        message: expect.stringMatching(/via lo, not the overlay interface nbtun0/),
      });
      expect(() => probeArgs({ address: '127.0.0.1; reboot', port }, true)).toThrow();
    } finally {
      server.close();
    }
  });
});

describe('ensureInterface', () => {
  it('does not list links it was told are absent, nor ask a kernel without WireGuard again', async () => {
    const t = recordingTransport((c) =>
      c.command === 'ip' && c.args.includes('wireguard') ? { exitCode: 2, stderr: 'Error: Unknown device type.' } : {},
    );
    const opts = { logFile: '/tmp/nb-wg.log', mtu: 1420, exists: false };
    expect((await ensureInterface(t, 'nbwg0', opts)).implementation).toBe('wireguard-go');
    expect((await ensureInterface(t, 'nbwg1', opts)).implementation).toBe('wireguard-go');
    const argv = t.calls.map((c) => [c.command, ...c.args].join(' '));
    expect(argv).toEqual([
      'ip link add dev nbwg0 type wireguard',
      'wireguard-go -f nbwg0',
      'wg show nbwg0 listen-port',
      'ip link set dev nbwg0 mtu 1420 up',
      'wireguard-go -f nbwg1',
      'wg show nbwg1 listen-port',
      'ip link set dev nbwg1 mtu 1420 up',
    ]);
  });
});
