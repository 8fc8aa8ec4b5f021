/**
 * Typed wrapper of iproute2's `ip`, run through a host transport.
 * JSON output (`ip -j`) is parsed and validated with zod.
 */
import { z } from 'zod';
import { IfName, Ipv4, NetnsName, parseName } from '../../common/names.js';
import type { HostTransport } from '../host/transport.js';
import type { RunOptions } from '../host/exec.js';

const LinkJson = z.array(
  z.looseObject({
    ifname: z.string(),
    operstate: z.string().optional(),
    mtu: z.number().optional(),
    flags: z.array(z.string()).optional(),
  }),
);
export type Link = z.infer<typeof LinkJson>[number];

const AddrJson = z.array(
  z.looseObject({
    ifname: z.string(),
    addr_info: z.array(z.looseObject({ family: z.string(), local: z.string(), prefixlen: z.number() })).default([]),
  }),
);

const NetnsJson = z.array(z.looseObject({ name: z.string() }));

const Cidr = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'must be an IPv4 CIDR');

/** All links, or one; `null` when the named link does not exist. */
export async function listLinks(t: HostTransport, opts?: RunOptions): Promise<Link[]> {
  const r = await t.run('ip', ['-j', 'link', 'show'], opts);
  return LinkJson.parse(JSON.parse(r.stdout || '[]'));
}

export async function linkExists(t: HostTransport, ifname: string, opts?: RunOptions): Promise<boolean> {
  const name = parseName(IfName, 'interface', ifname);
  return (await listLinks(t, opts)).some((l) => l.ifname === name);
}

export function linkUpArgs(ifname: string, mtu?: number): string[] {
  const args = ['link', 'set', 'dev', parseName(IfName, 'interface', ifname)];
  if (mtu !== undefined) args.push('mtu', String(mtu));
  args.push('up');
  return args;
}

export async function linkUp(t: HostTransport, ifname: string, mtu?: number, opts?: RunOptions) {
  await t.run('ip', linkUpArgs(ifname, mtu), opts);
}

/**
 * Several `ip` commands in one process (`ip -batch -`, the commands on stdin),
 * in order; stops at the first that fails. Every word is a validated name or a
 * keyword (a batch line is split on whitespace, so none may hold any).
 */
export async function batch(t: HostTransport, commands: readonly (readonly string[])[], opts?: RunOptions) {
  for (const c of commands)
    for (const w of c)
      if (w === '' || /\s/.test(w)) throw new Error(`ip -batch: word ${JSON.stringify(w)} is not one word`);
  await t.run('ip', ['-batch', '-'], { ...opts, input: commands.map((c) => `${c.join(' ')}\n`).join('') });
}

export async function linkDelete(t: HostTransport, ifname: string, opts?: RunOptions) {
  await t.run('ip', ['link', 'del', 'dev', parseName(IfName, 'interface', ifname)], opts);
}

/** Addresses (CIDR strings) on an interface. */
export async function addresses(t: HostTransport, ifname: string, opts?: RunOptions): Promise<string[]> {
  const r = await t.run('ip', ['-j', '-4', 'addr', 'show', 'dev', parseName(IfName, 'interface', ifname)], opts);
  const parsed = AddrJson.parse(JSON.parse(r.stdout || '[]'));
  return parsed.flatMap((l) => l.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`));
}

/** Every IPv4 address on the host, with the interface holding it. */
export async function allAddresses(
  t: HostTransport,
  opts?: RunOptions,
): Promise<{ ifname: string; ip: string; prefixLength: number }[]> {
  const r = await t.run('ip', ['-j', '-4', 'addr', 'show'], opts);
  const parsed = AddrJson.parse(JSON.parse(r.stdout || '[]'));
  return parsed.flatMap((l) =>
    l.addr_info
      .filter((a) => a.family === 'inet')
      .map((a) => ({ ifname: l.ifname, ip: a.local, prefixLength: a.prefixlen })),
  );
}

export const addrArgs = (op: 'replace' | 'del', ifname: string, cidr: string): string[] => [
  'addr',
  op,
  parseName(Cidr, 'address', cidr),
  'dev',
  parseName(IfName, 'interface', ifname),
];

/** `ip addr replace`: idempotent. */
export async function addrReplace(t: HostTransport, ifname: string, cidr: string, opts?: RunOptions) {
  await t.run('ip', addrArgs('replace', ifname, cidr), opts);
}

export async function routeReplace(t: HostTransport, cidr: string, dev: string, opts?: RunOptions) {
  await t.run(
    'ip',
    ['route', 'replace', parseName(Cidr, 'route', cidr), 'dev', parseName(IfName, 'interface', dev)],
    opts,
  );
}

export async function routeViaReplace(t: HostTransport, cidr: string, via: string, opts?: RunOptions) {
  await t.run('ip', ['route', 'replace', parseName(Cidr, 'route', cidr), 'via', parseName(Ipv4, 'via', via)], opts);
}

const RouteJson = z.array(
  z.looseObject({ dst: z.string(), dev: z.string(), prefsrc: z.string().optional(), gateway: z.string().optional() }),
);
export type Route = z.infer<typeof RouteJson>[number];

/** `ip -j route get <address>`: the route the kernel picks for traffic to `address` (device, source address). */
export async function routeGet(t: HostTransport, address: string, opts?: RunOptions): Promise<Route> {
  const r = await t.run('ip', ['-j', 'route', 'get', parseName(Ipv4, 'address', address)], opts);
  return parseRoute(r.stdout, address);
}

/** The route in `ip -j route get <address>` output. */
export function parseRoute(json: string, address: string): Route {
  const route = RouteJson.parse(JSON.parse(json || '[]'))[0];
  if (!route) throw new Error(`ip route get ${address} printed no route`);
  return route;
}

// --- namespaces (run on the host that holds them) -----------------------------

export async function netnsList(t: HostTransport, opts?: RunOptions): Promise<string[]> {
  const r = await t.run('ip', ['-j', 'netns', 'list'], opts);
  return NetnsJson.parse(JSON.parse(r.stdout || '[]')).map((n) => n.name);
}

export async function netnsAdd(t: HostTransport, ns: string, opts?: RunOptions) {
  await t.run('ip', ['netns', 'add', parseName(NetnsName, 'netns', ns)], opts);
}

export async function netnsDelete(t: HostTransport, ns: string, opts?: RunOptions) {
  await t.run('ip', ['netns', 'delete', parseName(NetnsName, 'netns', ns)], opts);
}

/** PIDs of processes inside a namespace. */
export async function netnsPids(t: HostTransport, ns: string, opts?: RunOptions): Promise<number[]> {
  const r = await t.run('ip', ['netns', 'pids', parseName(NetnsName, 'netns', ns)], {
    ...opts,
    allowNonZeroExit: true,
  });
  return r.stdout
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/**
 * Create a veth pair whose ends are born inside two namespaces, so no name is
 * ever taken in the host's namespace (parallel labs cannot collide).
 */
export async function vethBetween(
  t: HostTransport,
  a: { netns: string; ifname: string },
  b: { netns: string; ifname: string },
  opts?: RunOptions,
) {
  await t.run(
    'ip',
    [
      '-n',
      parseName(NetnsName, 'netns', a.netns),
      'link',
      'add',
      parseName(IfName, 'interface', a.ifname),
      'type',
      'veth',
      'peer',
      'name',
      parseName(IfName, 'interface', b.ifname),
      'netns',
      parseName(NetnsName, 'netns', b.netns),
    ],
    opts,
  );
}
