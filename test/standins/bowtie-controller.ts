/**
 * A stand-in for the Bowtie controller's HTTP API: a TEST DOUBLE, never
 * shipped. Bowtie's controller is proprietary and cannot run here, so this
 * speaks the API exactly as ../shared/bowtie-api.md documents it, with the
 * documented quirks switchable (login field, trailing-slash behaviour, 5xx),
 * and keeps its state in memory so tests can read it back.
 *
 * What it proves is that our client speaks the *documented* API; it says
 * nothing the documentation does not (README: what is verified against what).
 *
 * With `wireguard` set it also plays the controller's other half: it is the
 * WireGuard peer of accepted devices (their hub peer is added on acceptance and
 * removed on rejection or deletion), it gives each device routes only to the
 * resources an enabled Accept policy grants one of its device groups (IP level:
 * ports are not enforced), and it serves the stand-in client
 * (test/standins/bowtie-client/) on a unix socket with a private protocol
 * (`/standin/client/...`): the real client-controller protocol is Bowtie's own
 * and not documented, so nothing of ours depends on it.
 *
 * With `tls` set (a certificate from ./tls.ts) both the API and the client's
 * socket speak TLS, as a real controller does; without it, plain http (only
 * the anonymous health check accepts that).
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { netnsTransport } from '../../activities/host/transport.js';
import { formatIpv4, parseCidr } from '../../common/ipv4.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import type { TestServerCert } from './tls.js';

const BASE = '/-net/api/v0';

export interface StandInDevice {
  id: string;
  name: string;
  ipv6: string;
  public_key: string;
  serial: string;
  state: 'pending' | 'accepted' | 'rejected';
  controller_id: string;
  last_seen: string;
}

export interface StandInOptions {
  apiKeys?: { id: string; secret: string }[];
  users?: { email: string; password: string }[];
  /** The login body's user field (the sources disagree). Default "email". */
  loginField?: 'email' | 'email_or_username';
  /**
   * Collection paths answer 404 in the other form: 'no-slash' serves "/device"
   * only, 'slash' serves "/device/" only, 'both' either (default).
   */
  slash?: 'no-slash' | 'slash' | 'both';
  /** Be the WireGuard side of accepted devices: a hub interface in a lab namespace. */
  wireguard?: StandInWireguard;
  /** Serve TLS with this certificate (from a test CA) on the API and the client socket. */
  tls?: TestServerCert;
}

/** An injected answer (a redirect, an error) instead of the API's. */
export interface InjectedAnswer {
  status: number;
  headers?: Record<string, string>;
}

export interface StandInWireguard {
  hubNetns: string;
  hubInterface: string;
  hubPublicKey: string;
  /** "ip:port" devices dial. */
  endpoint: string;
  /** Devices get their IPv4 from here ("10.200.128.0/17"). */
  devicePool: string;
  /** The overlay the device addresses live in ("10.200.0.0/16"): their prefix length. */
  overlayCidr: string;
  /** The unix socket the stand-in client talks to (filesystems are shared across namespaces; loopbacks are not). */
  clientSocket: string;
}

export interface RequestRecord {
  method: string;
  path: string;
  status: number;
  /** The request carried an Authorization header, a session cookie or a login body. */
  credentialed: boolean;
}

export class BowtieControllerStandIn {
  readonly devices = new Map<string, StandInDevice>();
  readonly authDecisions = new Map<string, { serial: string; enforce_state: string; device_id?: string }>();
  readonly deviceGroups = new Map<string, { id: string; name: string; description: string; members: Set<string> }>();
  readonly resources = new Map<string, unknown>();
  readonly resourceGroups = new Map<string, unknown>();
  readonly policies = new Map<string, unknown>();
  readonly requests: RequestRecord[] = [];
  /** Answer this many of the next requests with 500. */
  failNext = 0;
  /** Answer requests after this many ms (timeouts). */
  delayMs = 0;
  /** When set and it returns an answer, that is the reply to the request (path without the API base). */
  inject: ((method: string, path: string) => InjectedAnswer | undefined) | null = null;
  /** Device id → its IPv4 on the overlay (wireguard mode). */
  readonly addresses = new Map<string, string>();
  private sessions = new Set<string>();
  private server: http.Server | https.Server | null = null;
  private clientServer: http.Server | https.Server | null = null;
  url = '';

  constructor(private readonly opts: StandInOptions = {}) {}

  async start(): Promise<string> {
    const t = this.opts.tls;
    const serve = (h: http.RequestListener) =>
      t ? https.createServer({ cert: t.cert, key: t.key }, h) : http.createServer(h);
    this.server = serve((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `${t ? 'https' : 'http'}://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    const w = this.opts.wireguard;
    if (w) {
      rmSync(w.clientSocket, { force: true });
      this.clientServer = serve((req, res) => void this.handleClient(req, res));
      await new Promise<void>((resolve) => this.clientServer!.listen(w.clientSocket, resolve));
    }
    return this.url;
  }

  async stop(): Promise<void> {
    for (const srv of [this.server, this.clientServer]) {
      srv?.closeAllConnections();
      await new Promise<void>((resolve) => (srv ? srv.close(() => resolve()) : resolve()));
    }
    if (this.opts.wireguard) rmSync(this.opts.wireguard.clientSocket, { force: true });
  }

  /** Every session cookie stops working (the client must log in again). */
  expireSessions(): void {
    this.sessions.clear();
  }

  /** A client on a node connected: a pending device, as the real client's first contact creates. */
  enroll(d: { id: string; name: string; publicKey: string; serial: string; ipv6?: string }): StandInDevice {
    const decision = [...this.authDecisions.values()].find((a) => a.serial === d.serial);
    const device: StandInDevice = {
      id: d.id,
      name: d.name,
      ipv6: d.ipv6 ?? 'fd00::1',
      public_key: d.publicKey,
      serial: d.serial,
      state:
        decision?.enforce_state === 'accepted'
          ? 'accepted'
          : decision?.enforce_state === 'rejected'
            ? 'rejected'
            : 'pending',
      controller_id: 'standin-controller',
      last_seen: new Date().toISOString(),
    };
    this.devices.set(d.id, device);
    return device;
  }

  count(method: string, pathPrefix: string): number {
    return this.requests.filter((r) => r.method === method && r.path.startsWith(pathPrefix)).length;
  }

  // --- the API -------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://standin');
    const method = req.method ?? 'GET';
    const fullPath = url.pathname;
    const credentialed = !!req.headers.authorization || !!req.headers.cookie || /password/.test(raw);
    const reply = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      this.requests.push({ method, path: fullPath.slice(BASE.length) || fullPath, status, credentialed });
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(body === undefined ? '' : JSON.stringify(body));
    };
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (!fullPath.startsWith(BASE)) return reply(404, { error: 'not found' });
    if (this.failNext > 0) {
      this.failNext -= 1;
      return reply(500, { error: 'stand-in: injected failure' });
    }
    const injected = this.inject?.(method, fullPath.slice(BASE.length));
    if (injected) return reply(injected.status, { error: 'stand-in: injected answer' }, injected.headers);
    let path = fullPath.slice(BASE.length);
    const slash = this.opts.slash ?? 'both';
    if (path.length > 1 && path.endsWith('/')) {
      if (slash === 'no-slash') return reply(404, { error: 'not found' });
      path = path.replace(/\/+$/, '');
    } else if (slash === 'slash' && method === 'GET' && (path === '/device' || path === '/policy')) {
      return reply(404, { error: 'not found' });
    }
    let body: Record<string, unknown> = {};
    if (raw) {
      try {
        body = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        return reply(400, { error: 'invalid json' });
      }
    }

    if (method === 'GET' && path === '/ok') return reply(200, {});
    if (method === 'POST' && path === '/user/login') {
      const field = this.opts.loginField ?? 'email';
      const user = (this.opts.users ?? []).find((u) => u.email === body[field] && u.password === body.password);
      if (!user) return reply(401, { error: 'invalid credentials' });
      const sid = randomBytes(16).toString('hex');
      this.sessions.add(sid);
      return reply(200, {}, { 'set-cookie': `session=${sid}; Path=/; HttpOnly` });
    }
    if (!this.authorized(req)) return reply(401, { error: 'unauthorized' });

    if (method === 'GET' && path === '/device') return reply(200, { devices: Object.fromEntries(this.devices) });
    if (method === 'POST' && path === '/device/state') {
      const list = body.devices as { id: string; state: StandInDevice['state'] }[] | undefined;
      if (!Array.isArray(list) || list.some((d) => !['pending', 'accepted', 'rejected'].includes(d.state)))
        return reply(400, { error: 'bad devices' });
      if (list.some((d) => !this.devices.has(d.id))) return reply(404, { error: 'no such device' });
      for (const d of list) {
        const dev = this.devices.get(d.id)!;
        dev.state = d.state;
        await this.syncPeer(dev);
      }
      return reply(200, {});
    }
    if (path === '/device/auth_decisions') {
      if (method === 'GET') return reply(200, { auth_decisions: [...this.authDecisions.values()] });
      for (const a of (body.auth_decisions as { serial: string; enforce_state: string; device_id?: string }[]) ?? [])
        this.authDecisions.set(a.serial, a);
      return reply(200, {});
    }
    const del = /^\/(device|device_group|policy|policy\/resource|policy\/resource_group)\/([0-9a-zA-Z-]+)$/.exec(path);
    if (method === 'DELETE' && del) {
      const store = {
        device: this.devices,
        device_group: this.deviceGroups,
        policy: this.policies,
        'policy/resource': this.resources,
        'policy/resource_group': this.resourceGroups,
      }[del[1]!]!;
      const gone = this.devices.get(del[2]!);
      if (!store.delete(del[2]!)) return reply(404, { error: 'not found' });
      if (del[1] === 'device' && gone) {
        await this.syncPeer({ ...gone, state: 'rejected' });
        this.addresses.delete(gone.id);
      }
      return reply(200, {});
    }
    if (method === 'POST' && path === '/device_group/upsert') {
      if (typeof body.id !== 'string' || typeof body.name !== 'string')
        return reply(400, { error: 'id and name required' });
      const existing = this.deviceGroups.get(body.id);
      this.deviceGroups.set(body.id, {
        id: body.id,
        name: body.name,
        description: String(body.description ?? ''),
        members: existing?.members ?? new Set(),
      });
      return reply(200, {});
    }
    const membership = /^\/device_group\/(adddevices|removedevices)$/.exec(path);
    if (method === 'POST' && membership) {
      const group = this.deviceGroups.get(String(body.group_id));
      if (!group) return reply(404, { error: 'no such group' });
      for (const id of (body.device_id as string[]) ?? []) {
        if (membership[1] === 'adddevices') group.members.add(id);
        else group.members.delete(id);
      }
      return reply(200, {});
    }
    const upsert = /^\/policy\/(upsert_resource|upsert_resource_group|upsert_policy)$/.exec(path);
    if (method === 'POST' && upsert) {
      if (typeof body.id !== 'string') return reply(400, { error: 'id required' });
      const store = {
        upsert_resource: this.resources,
        upsert_resource_group: this.resourceGroups,
        upsert_policy: this.policies,
      }[upsert[1]!]!;
      store.set(body.id, body);
      return reply(200, {});
    }
    if (method === 'GET' && path === '/organization/controller') {
      const w = this.opts.wireguard;
      return reply(200, [
        {
          id: 'standin-controller',
          site_id: 'standin-site',
          public_address: w?.endpoint.split(':')[0] ?? '192.0.2.1',
          public_key: w?.hubPublicKey ?? '',
          wireguard_port: Number(w?.endpoint.split(':')[1] ?? 51820),
          status: 'standin',
        },
      ]);
    }
    if (method === 'GET' && path === '/policy') {
      return reply(200, {
        policies: Object.fromEntries(this.policies),
        resource_groups: Object.fromEntries(this.resourceGroups),
        resources: Object.fromEntries(this.resources),
      });
    }
    return reply(404, { error: `stand-in: no route ${method} ${path}` });
  }

  // --- the stand-in client's private channel (wireguard mode) ----------------------------------

  private async handleClient(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const w = this.opts.wireguard!;
    const path = new URL(req.url ?? '/', 'http://standin').pathname;
    let dev: StandInDevice | undefined;
    if (req.method === 'POST' && path === '/standin/client/enroll') {
      const b = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as {
        id: string;
        name: string;
        publicKey: string;
        serial: string;
        entrypoint: string[];
      };
      // The client must have been seeded with this controller as its entrypoint.
      if (!Array.isArray(b.entrypoint) || !b.entrypoint.some((e) => e.replace(/\/+$/, '') === this.url)) {
        return reply(421, { error: `entrypoint ${JSON.stringify(b.entrypoint)} is not this controller (${this.url})` });
      }
      dev = this.devices.get(b.id) ?? this.enroll({ id: b.id, name: b.name, publicKey: b.publicKey, serial: b.serial });
      await this.syncPeer(dev);
    } else if (req.method === 'GET' && path.startsWith('/standin/client/device/')) {
      dev = this.devices.get(decodeURIComponent(path.slice('/standin/client/device/'.length)));
      if (!dev) return reply(404, { error: 'no such device' });
    } else {
      return reply(404, { error: 'no route' });
    }
    dev.last_seen = new Date().toISOString();
    const net = parseCidr(w.overlayCidr);
    return reply(200, {
      id: dev.id,
      state: dev.state,
      ipv4: this.addressOf(dev.id),
      prefixLength: net.prefixLength,
      routes: this.routesOf(dev),
      controller: { publicKey: w.hubPublicKey, endpoint: w.endpoint },
    });
  }

  /** What the device may reach: the resources of every enabled Accept policy whose source is one of its groups. */
  routesOf(dev: StandInDevice): string[] {
    const groups = new Set([...this.deviceGroups.values()].filter((g) => g.members.has(dev.id)).map((g) => g.id));
    const routes = new Set<string>();
    for (const raw of this.policies.values()) {
      const p = raw as {
        source?: { predicate?: { InDeviceGroup?: string } };
        dest?: string;
        action?: string;
        status?: string;
      };
      if (p.action !== 'Accept' || p.status !== 'Enabled' || !groups.has(p.source?.predicate?.InDeviceGroup ?? ''))
        continue;
      const rg = this.resourceGroups.get(p.dest ?? '') as { resources?: string[] } | undefined;
      for (const rid of rg?.resources ?? []) {
        const loc = (this.resources.get(rid) as { location?: { type?: string; value?: string } } | undefined)?.location;
        if (loc?.type === 'ip' && loc.value) routes.add(`${loc.value}/32`);
        if (loc?.type === 'cidr' && loc.value) routes.add(loc.value);
      }
    }
    return [...routes].sort();
  }

  /** The device's overlay IPv4: the lowest free address of the pool, kept for the device's life. */
  private addressOf(id: string): string {
    const known = this.addresses.get(id);
    if (known) return known;
    const pool = parseCidr(this.opts.wireguard!.devicePool);
    const taken = new Set(this.addresses.values());
    for (let a = pool.firstHost; a <= pool.lastHost; a++) {
      const ip = formatIpv4(a);
      if (!taken.has(ip)) {
        this.addresses.set(id, ip);
        return ip;
      }
    }
    throw new Error('stand-in: device pool exhausted');
  }

  /** Accepted devices are peers of the hub; anything else is not. */
  private async syncPeer(dev: StandInDevice): Promise<void> {
    const w = this.opts.wireguard;
    if (!w || !dev.public_key) return;
    const hub = netnsTransport(w.hubNetns);
    if (dev.state === 'accepted')
      await wg.setPeer(hub, w.hubInterface, {
        publicKey: dev.public_key,
        allowedIps: [`${this.addressOf(dev.id)}/32`],
      });
    else if ((await wg.show(hub, w.hubInterface)).peers.some((p) => p.publicKey === dev.public_key))
      await wg.removePeer(hub, w.hubInterface, dev.public_key);
  }

  private authorized(req: http.IncomingMessage): boolean {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const [id, secret] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
      return (this.opts.apiKeys ?? []).some((k) => k.id === id && k.secret === secret);
    }
    const sid = /(?:^|;\s*)session=([0-9a-f]+)/.exec(req.headers.cookie ?? '')?.[1];
    return sid !== undefined && this.sessions.has(sid);
  }
}
