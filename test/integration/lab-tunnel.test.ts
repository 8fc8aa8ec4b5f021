import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import { waitFor } from '../../activities/overlay/wireguard/interface.js';
import { Lab } from '../../lab/lab.js';
import { requireRealComponents } from '../helpers/prereqs.js';

describe('lab: two nodes get a WireGuard tunnel through the hub', () => {
  let lab: Lab;
  const before: string[] = [];

  beforeAll(async () => {
    requireRealComponents();
    before.push(...(await ip.netnsList(localTransport())));
    lab = await Lab.up({ nodes: 2, spire: false, ephemeral: true });
  });

  afterAll(async () => {
    await lab?.down();
  });

  it('handshakes with the hub and pings node to node through the overlay', async () => {
    const n1 = await lab.wireNode('n1', '10.200.1.1');
    const n2 = await lab.wireNode('n2', '10.200.1.2');
    const t1 = lab.nodeTransport('n1');
    const t2 = lab.nodeTransport('n2');
    // Each node's keepalive starts its handshake with the hub.
    for (const [t, n] of [
      [t1, n1],
      [t2, n2],
    ] as const) {
      await waitFor(
        async () => ((await wg.latestHandshakes(t, n.interface)).get(lab.hub.publicKey) ?? 0) > 0,
        15_000,
        'handshake with hub',
      );
    }

    // node1 -> hub -> node2, through both tunnels
    const ping = await t1.run('ping', ['-c', '3', '-i', '0.2', '-W', '2', '10.200.1.2'], {
      allowNonZeroExit: true,
      timeoutMs: 20_000,
    });
    expect(ping.stdout).toMatch(/3 received|[123] received/);
    expect(ping.exitCode).toBe(0);
    const hubView = await wg.show(lab.hubTransport(), lab.hub.interface);
    const peers = new Map(hubView.peers.map((p) => [p.publicKey, p]));
    expect(peers.get(n1.publicKey)?.latestHandshake).toBeGreaterThan(0);
    expect(peers.get(n2.publicKey)?.latestHandshake).toBeGreaterThan(0);
    expect(peers.get(n1.publicKey)?.rxBytes).toBeGreaterThan(0);
    // the dump parser drops the private key line: nothing in the result looks like one but public keys
    expect(JSON.stringify(hubView)).not.toMatch(/private/i);
  });

  it('keeps the node private key on the node with mode 0600', async () => {
    const t = lab.nodeTransport('n1');
    const r = await t.run('stat', ['-c', '%a', `${lab.node('n1').dir}/wg/${lab.prefix}n1.key`]);
    expect(r.stdout.trim()).toBe('600');
  });

  it('down leaves no namespace or process behind', async () => {
    const throwaway = await Lab.up({ nodes: 1, spire: false, ephemeral: true });
    await throwaway.wireNode('n1', '10.200.9.9');
    const mine = (await ip.netnsList(localTransport())).filter((n) => n.startsWith(throwaway.prefix));
    expect(mine.length).toBe(3);
    await throwaway.down();
    const after = await ip.netnsList(localTransport());
    expect(after.filter((n) => n.startsWith(throwaway.prefix))).toEqual([]);
    const ps = await localTransport().run('pgrep', ['-f', `wireguard-go -f ${throwaway.prefix}`], {
      allowNonZeroExit: true,
    });
    expect(ps.stdout.trim()).toBe('');
  });
});
