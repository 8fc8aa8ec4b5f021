/**
 * Pure IPv4 arithmetic: parse addresses and CIDRs, walk a network's usable hosts.
 *
 * No Node built-ins and no I/O, so workflows, activities, the lab and the CLI can
 * all use it. Addresses are handled as unsigned 32-bit integers (0 .. 2^32-1).
 *
 * Usable hosts follow what WireGuard overlays and `ip` expect:
 *   - /0../30: every address except the network and broadcast addresses;
 *   - /31: both addresses (point-to-point link, RFC 3021);
 *   - /32: the single address.
 */

/** Bad address or CIDR text. `type` matches the closed error set (common/errors.ts). */
export class Ipv4Error extends Error {
  readonly type = 'InvalidInput' as const;
  constructor(message: string) {
    super(message);
    this.name = 'Ipv4Error';
  }
}

export interface Ipv4Network {
  /** Canonical text, host bits cleared: "10.200.0.0/16". */
  cidr: string;
  /** Network address as an unsigned integer. */
  network: number;
  prefixLength: number;
  /** Netmask as an unsigned integer (0 for /0). */
  mask: number;
  /** Last address of the block (the broadcast address for /0../30). */
  broadcast: number;
  /** Number of addresses in the block (2^(32-prefix)). */
  size: number;
  /** First and last usable host, inclusive. */
  firstHost: number;
  lastHost: number;
  /** Number of usable host addresses. */
  hostCount: number;
}

const OCTET = /^(0|[1-9]\d{0,2})$/;

/** Parse a dotted quad ("10.0.0.1") into an unsigned integer. Leading zeros are refused (octal ambiguity). */
export function parseIpv4(text: string): number {
  if (typeof text !== 'string') throw new Ipv4Error('IPv4 address must be a string');
  const parts = text.split('.');
  if (parts.length !== 4) throw new Ipv4Error(`"${clip(text)}" is not an IPv4 address`);
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p) || Number(p) > 255) throw new Ipv4Error(`"${clip(text)}" is not an IPv4 address`);
    n = n * 256 + Number(p);
  }
  return n;
}

export function isIpv4(text: string): boolean {
  try {
    parseIpv4(text);
    return true;
  } catch {
    return false;
  }
}

/** Format an unsigned integer as a dotted quad. */
export function formatIpv4(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Ipv4Error(`${n} is not a 32-bit address`);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Netmask for a prefix length, as an unsigned integer. */
export function prefixMask(prefixLength: number): number {
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) {
    throw new Ipv4Error(`prefix length ${prefixLength} is not between 0 and 32`);
  }
  // `x << 32` is `x << 0` in JavaScript, so /0 needs its own case.
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/**
 * Parse "a.b.c.d/p". Host bits are cleared ("10.0.0.5/24" -> 10.0.0.0/24), as `ip`
 * does, unless `strict` is set, which refuses them.
 */
export function parseCidr(text: string, opts: { strict?: boolean } = {}): Ipv4Network {
  if (typeof text !== 'string') throw new Ipv4Error('CIDR must be a string');
  const m = /^([^/]+)\/(0|[1-9]\d?)$/.exec(text);
  if (!m) throw new Ipv4Error(`"${clip(text)}" is not an IPv4 CIDR such as "10.200.0.0/16"`);
  const addr = parseIpv4(m[1]!);
  const prefixLength = Number(m[2]);
  if (prefixLength > 32) throw new Ipv4Error(`"${clip(text)}" has a prefix length above 32`);
  const mask = prefixMask(prefixLength);
  const network = (addr & mask) >>> 0;
  if (opts.strict && network !== addr) {
    throw new Ipv4Error(`"${clip(text)}" has host bits set (did you mean ${formatIpv4(network)}/${prefixLength}?)`);
  }
  const size = 2 ** (32 - prefixLength);
  const broadcast = network + size - 1;
  let firstHost: number;
  let lastHost: number;
  if (prefixLength >= 31) {
    firstHost = network;
    lastHost = broadcast;
  } else {
    firstHost = network + 1;
    lastHost = broadcast - 1;
  }
  return {
    cidr: `${formatIpv4(network)}/${prefixLength}`,
    network,
    prefixLength,
    mask,
    broadcast,
    size,
    firstHost,
    lastHost,
    hostCount: lastHost - firstHost + 1,
  };
}

function net(cidr: string | Ipv4Network): Ipv4Network {
  return typeof cidr === 'string' ? parseCidr(cidr) : cidr;
}

/** Canonical form of a CIDR ("10.0.0.5/24" -> "10.0.0.0/24"). */
export function normalizeCidr(cidr: string): string {
  return parseCidr(cidr).cidr;
}

/** True when `ip` lies inside the block (network and broadcast included). */
export function cidrContains(cidr: string | Ipv4Network, ip: string | number): boolean {
  const n = net(cidr);
  const a = typeof ip === 'number' ? ip : parseIpv4(ip);
  return (a & n.mask) >>> 0 === n.network;
}

/** True when `ip` is a usable host address of the block. */
export function isUsableHost(cidr: string | Ipv4Network, ip: string | number): boolean {
  const n = net(cidr);
  const a = typeof ip === 'number' ? ip : parseIpv4(ip);
  return a >= n.firstHost && a <= n.lastHost;
}

/** Number of usable host addresses in the block. */
export function hostCount(cidr: string | Ipv4Network): number {
  return net(cidr).hostCount;
}

/** The `index`-th usable host (0-based): nthHost("10.0.0.0/24", 0) is "10.0.0.1". */
export function nthHost(cidr: string | Ipv4Network, index: number): string {
  const n = net(cidr);
  if (!Number.isInteger(index) || index < 0 || index >= n.hostCount) {
    throw new Ipv4Error(`host index ${index} is outside ${n.cidr} (${n.hostCount} usable hosts)`);
  }
  return formatIpv4(n.firstHost + index);
}

/** Inverse of nthHost: the 0-based host index of `ip`, or null when it is not a usable host. */
export function hostIndex(cidr: string | Ipv4Network, ip: string): number | null {
  const n = net(cidr);
  const a = parseIpv4(ip);
  return a >= n.firstHost && a <= n.lastHost ? a - n.firstHost : null;
}

/**
 * The lowest usable host that is not in `taken` (addresses or integers), or null
 * when the block is full. Runs in O(|taken|): the answer is among the first
 * |taken| + 1 hosts.
 */
export function lowestFreeHost(cidr: string | Ipv4Network, taken: Iterable<string | number>): string | null {
  const n = net(cidr);
  const used = new Set<number>();
  for (const t of taken) {
    const a = typeof t === 'number' ? t : parseIpv4(t);
    if (a >= n.firstHost && a <= n.lastHost) used.add(a);
  }
  for (let a = n.firstHost; a <= n.lastHost; a++) {
    if (!used.has(a)) return formatIpv4(a);
  }
  return null;
}

/** Usable hosts in order (lazy: a /8 is 16 M addresses). */
export function* hosts(cidr: string | Ipv4Network): Generator<string> {
  const n = net(cidr);
  for (let a = n.firstHost; a <= n.lastHost; a++) yield formatIpv4(a);
}

function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 61)}...` : s;
}
