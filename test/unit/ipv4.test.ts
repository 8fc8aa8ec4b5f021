import { describe, expect, it } from 'vitest';
import {
  Ipv4Error,
  cidrContains,
  formatIpv4,
  hostCount,
  hostIndex,
  hosts,
  isIpv4,
  isUsableHost,
  lowestFreeHost,
  normalizeCidr,
  nthHost,
  parseCidr,
  parseIpv4,
  prefixMask,
} from '../../common/ipv4.js';

describe('parseIpv4 / formatIpv4', () => {
  it('round-trips the extremes and ordinary addresses', () => {
    for (const ip of ['0.0.0.0', '255.255.255.255', '10.200.0.1', '192.168.1.254', '128.0.0.0']) {
      expect(formatIpv4(parseIpv4(ip))).toBe(ip);
    }
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4('128.0.0.1')).toBe(2 ** 31 + 1); // unsigned, not negative
    expect(parseIpv4('0.0.1.0')).toBe(256);
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '01.2.3.4',
    '1.2.3.-4',
    '1.2.3.4 ',
    ' 1.2.3.4',
    '1..3.4',
    'a.b.c.d',
    '1.2.3.4/32',
    '0x1.2.3.4',
  ])('refuses %j', (bad) => {
    expect(() => parseIpv4(bad)).toThrow(Ipv4Error);
    expect(isIpv4(bad)).toBe(false);
  });

  it('refuses integers outside 32 bits', () => {
    expect(() => formatIpv4(-1)).toThrow(Ipv4Error);
    expect(() => formatIpv4(2 ** 32)).toThrow(Ipv4Error);
    expect(() => formatIpv4(1.5)).toThrow(Ipv4Error);
  });

  it('the error is typed InvalidInput', () => {
    try {
      parseIpv4('300.1.1.1');
      expect.unreachable();
    } catch (err) {
      expect((err as Ipv4Error).type).toBe('InvalidInput');
    }
  });
});

describe('prefixMask', () => {
  it('handles /0 (where x << 32 would be a no-op) and /32', () => {
    expect(prefixMask(0)).toBe(0);
    expect(prefixMask(1)).toBe(0x80000000);
    expect(prefixMask(24)).toBe(0xffffff00);
    expect(prefixMask(32)).toBe(0xffffffff);
    expect(() => prefixMask(33)).toThrow(Ipv4Error);
  });
});

describe('parseCidr', () => {
  it('describes an ordinary /24', () => {
    const n = parseCidr('10.0.0.0/24');
    expect(n).toMatchObject({ cidr: '10.0.0.0/24', prefixLength: 24, size: 256, hostCount: 254 });
    expect(formatIpv4(n.network)).toBe('10.0.0.0');
    expect(formatIpv4(n.broadcast)).toBe('10.0.0.255');
    expect(formatIpv4(n.firstHost)).toBe('10.0.0.1');
    expect(formatIpv4(n.lastHost)).toBe('10.0.0.254');
  });

  it('/30: two usable hosts between network and broadcast', () => {
    const n = parseCidr('10.0.0.4/30');
    expect(n.hostCount).toBe(2);
    expect([...hosts(n)]).toEqual(['10.0.0.5', '10.0.0.6']);
    expect(formatIpv4(n.broadcast)).toBe('10.0.0.7');
  });

  it('/31: both addresses are usable (point-to-point, RFC 3021)', () => {
    const n = parseCidr('10.0.0.6/31');
    expect(n.hostCount).toBe(2);
    expect([...hosts(n)]).toEqual(['10.0.0.6', '10.0.0.7']);
  });

  it('/32: the single address is the host', () => {
    const n = parseCidr('10.0.0.9/32');
    expect(n).toMatchObject({ cidr: '10.0.0.9/32', size: 1, hostCount: 1 });
    expect(nthHost(n, 0)).toBe('10.0.0.9');
    expect(() => nthHost(n, 1)).toThrow(Ipv4Error);
  });

  it('/0 and /1 at the top of the address space', () => {
    const all = parseCidr('0.0.0.0/0');
    expect(all.size).toBe(2 ** 32);
    expect(all.hostCount).toBe(2 ** 32 - 2);
    expect(formatIpv4(all.lastHost)).toBe('255.255.255.254');
    const top = parseCidr('128.0.0.0/1');
    expect(formatIpv4(top.broadcast)).toBe('255.255.255.255');
    expect(cidrContains(top, '200.1.1.1')).toBe(true);
    expect(cidrContains(top, '127.255.255.255')).toBe(false);
  });

  it('clears host bits unless strict', () => {
    expect(parseCidr('10.200.3.7/16').cidr).toBe('10.200.0.0/16');
    expect(normalizeCidr('192.168.1.130/25')).toBe('192.168.1.128/25');
    expect(() => parseCidr('10.200.3.7/16', { strict: true })).toThrow(/host bits set.*10\.200\.0\.0\/16/);
    expect(parseCidr('10.200.0.0/16', { strict: true }).cidr).toBe('10.200.0.0/16');
  });

  it.each([
    '10.0.0.0',
    '10.0.0.0/33',
    '10.0.0.0/',
    '10.0.0.0/08',
    '/24',
    '10.0.0/24',
    '10.0.0.0/24/1',
    '999.0.0.0/8',
    '10.0.0.0/-1',
  ])('refuses %j', (bad) => {
    expect(() => parseCidr(bad)).toThrow(Ipv4Error);
  });
});

describe('host arithmetic', () => {
  it('nthHost and hostIndex are inverses', () => {
    expect(nthHost('10.200.0.0/16', 0)).toBe('10.200.0.1');
    expect(nthHost('10.200.0.0/16', 255)).toBe('10.200.1.0');
    expect(nthHost('10.200.0.0/16', 65533)).toBe('10.200.255.254');
    expect(() => nthHost('10.200.0.0/16', 65534)).toThrow(Ipv4Error);
    expect(() => nthHost('10.200.0.0/16', -1)).toThrow(Ipv4Error);
    for (const i of [0, 1, 254, 255, 256, 65533])
      expect(hostIndex('10.200.0.0/16', nthHost('10.200.0.0/16', i))).toBe(i);
    expect(hostIndex('10.200.0.0/16', '10.200.0.0')).toBeNull(); // network
    expect(hostIndex('10.200.0.0/16', '10.200.255.255')).toBeNull(); // broadcast
    expect(hostIndex('10.200.0.0/16', '10.201.0.1')).toBeNull(); // outside
    expect(hostIndex('10.0.0.6/31', '10.0.0.6')).toBe(0);
  });

  it('hostCount by prefix', () => {
    expect([24, 26, 29, 30, 31, 32].map((p) => hostCount(`10.0.0.0/${p}`))).toEqual([254, 62, 6, 2, 2, 1]);
  });

  it('contains vs usable', () => {
    expect(cidrContains('10.0.0.0/30', '10.0.0.0')).toBe(true);
    expect(isUsableHost('10.0.0.0/30', '10.0.0.0')).toBe(false);
    expect(isUsableHost('10.0.0.0/30', '10.0.0.3')).toBe(false);
    expect(isUsableHost('10.0.0.0/31', '10.0.0.1')).toBe(true);
    expect(cidrContains('10.0.0.0/30', '10.0.0.4')).toBe(false);
  });
});

describe('lowestFreeHost', () => {
  it('skips taken and reserved addresses and fills gaps first', () => {
    expect(lowestFreeHost('10.0.0.0/24', [])).toBe('10.0.0.1');
    expect(lowestFreeHost('10.0.0.0/24', ['10.0.0.1', '10.0.0.2'])).toBe('10.0.0.3');
    expect(lowestFreeHost('10.0.0.0/24', ['10.0.0.1', '10.0.0.3'])).toBe('10.0.0.2');
    // numbers are accepted too; addresses outside the block are ignored
    expect(lowestFreeHost('10.0.0.0/24', [parseIpv4('10.0.0.1'), '192.168.0.1'])).toBe('10.0.0.2');
  });

  it('returns null when the block is full, at every small size', () => {
    expect(lowestFreeHost('10.0.0.4/30', ['10.0.0.5'])).toBe('10.0.0.6');
    expect(lowestFreeHost('10.0.0.4/30', ['10.0.0.5', '10.0.0.6'])).toBeNull();
    expect(lowestFreeHost('10.0.0.6/31', ['10.0.0.6'])).toBe('10.0.0.7');
    expect(lowestFreeHost('10.0.0.6/31', ['10.0.0.6', '10.0.0.7'])).toBeNull();
    expect(lowestFreeHost('10.0.0.9/32', [])).toBe('10.0.0.9');
    expect(lowestFreeHost('10.0.0.9/32', ['10.0.0.9'])).toBeNull();
  });

  it('stays linear in what is taken for a large block', () => {
    const taken = Array.from({ length: 5000 }, (_, i) => nthHost('10.0.0.0/8', i));
    expect(lowestFreeHost('10.0.0.0/8', taken)).toBe(nthHost('10.0.0.0/8', 5000));
  });
});
