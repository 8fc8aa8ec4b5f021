/**
 * A typed client of the Bowtie controller's HTTP API (`/-net/api/v0`), as
 * summarized in ../shared/bowtie-api.md. Bowtie publishes no API reference:
 * every shape here is from Bowtie's own public clients, and the points they
 * disagree on are options (`loginField`, the trailing-slash fallback).
 *
 * - Auth: an API key (HTTP Basic, key id + secret), or a session login
 *   (email + password, cookie), logged in again once on a 401.
 * - A 404 on a path is tried once more with the other trailing-slash form.
 * - Errors are typed: 401/403 → OverlayAuth (permanent); 5xx, timeouts and
 *   refused connections → OverlayControllerUnavailable (transient); 3xx and
 *   other 4xx → OverlayRejected (permanent). Messages carry method, path and
 *   status, never a credential or a response body.
 * - Credentials go only to an https origin on the worker's allow-list
 *   (trust.ts), checked when the client is made; redirects are never followed.
 */
import { createHash } from 'node:crypto';
import type { ErrorType } from '../../../common/errors.js';
import { ToolError } from '../../host/exec.js';
import { assertAllowedController, httpsRequest, tlsTrustError, type HttpsResponse } from './trust.js';

export type DeviceState = 'pending' | 'accepted' | 'rejected';

export interface BowtieDevice {
  id: string;
  name: string;
  ipv6: string;
  public_key: string;
  serial: string;
  state: DeviceState | string;
  controller_id: string;
  last_seen: string;
  [field: string]: string;
}

/** A controller as `GET /organization/controller` lists it (the WireGuard peer of its devices). */
export interface BowtieControllerInfo {
  id: string;
  site_id?: string;
  public_address?: string;
  public_key?: string;
  wireguard_port?: number | string;
  [field: string]: unknown;
}

export type ControllerAuth =
  | { kind: 'apiKey'; keyId: string; secret: string }
  | {
      kind: 'session';
      email: string;
      password: string;
      /** *unconfirmed* in the sources: "email" or "email_or_username". */ loginField?: 'email' | 'email_or_username';
    };

export interface ControllerOptions {
  /** e.g. "https://ctl1.example.net" (the API base path is appended). */
  url: string;
  auth: ControllerAuth;
  /** Per request (default 10 s). */
  timeoutMs?: number;
  /** Try the other trailing-slash form of a path once after a 404 (default true). */
  trailingSlashFallback?: boolean;
  signal?: AbortSignal;
  /**
   * The worker's allow-list of controller origins: `url` must be on it, else
   * the constructor throws InvalidInput. Without it the client is anonymous:
   * it refuses every authenticated call (only `ok()` works) and may speak
   * plain http (the fleet's health check of `/ok`).
   */
  allowedOrigins?: readonly string[];
  /** An extra CA (PEM) to trust beside the system roots. */
  ca?: string;
}

export const API_BASE = '/-net/api/v0';

/** A failed controller call, typed for the activity boundary (common/errors.ts). */
export class ControllerError extends Error {
  constructor(
    readonly type: Extract<ErrorType, 'OverlayAuth' | 'OverlayControllerUnavailable' | 'OverlayRejected'>,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ControllerError';
  }
}

export function errorTypeForStatus(status: number): ControllerError['type'] {
  if (status === 401 || status === 403) return 'OverlayAuth';
  if (status >= 500 || status === 408 || status === 429) return 'OverlayControllerUnavailable';
  return 'OverlayRejected'; // other 4xx, and 3xx: a redirect is not an answer (and is not followed)
}

/** A decision by serial, as `GET /device/auth_decisions` lists it. */
export interface AuthDecision {
  serial: string;
  enforce_state: DeviceState | 'retain' | string;
  device_id?: string;
}

/**
 * A deterministic UUID (RFC 4122 version 5, SHA-1) for a name: the same node
 * and segment always give the same device group, resource and policy ids, so
 * upserts are idempotent.
 */
export function uuidV5(name: string, namespace = '6ba7b811-9dad-11d1-80b4-00c04fd430c8' /* URL namespace */): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1')
    .update(Buffer.concat([ns, Buffer.from(name, 'utf8')]))
    .digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export class BowtieController {
  private cookie: string | null = null;
  private readonly base: string;

  constructor(private readonly opts: ControllerOptions) {
    // The second wall (the driver checks first): no allow-list match, no client.
    if (opts.allowedOrigins)
      assertAllowedController({ controllers: opts.allowedOrigins }, opts.url, 'overlay.bowtie.controllerUrl');
    this.base = opts.url.replace(/\/+$/, '') + API_BASE;
  }

  // --- health and devices ----------------------------------------------------------------

  /** `GET /ok`: true when the controller answers 200. */
  async ok(): Promise<boolean> {
    try {
      await this.request('GET', '/ok', undefined, { auth: false });
      return true;
    } catch (err) {
      if (err instanceof ControllerError && err.type !== 'OverlayAuth') return false;
      throw err;
    }
  }

  async listDevices(): Promise<BowtieDevice[]> {
    const body = (await this.request('GET', '/device')) as { devices?: Record<string, BowtieDevice> } | null;
    return Object.values(body?.devices ?? {});
  }

  async getDevice(id: string): Promise<BowtieDevice | undefined> {
    return (await this.listDevices()).find((d) => d.id === id);
  }

  /** Approve, reject or return a device to pending. */
  async setDeviceState(id: string, state: DeviceState): Promise<void> {
    await this.request('POST', '/device/state', { devices: [{ id, state }] });
  }

  /** Decide a device's fate by its serial before it enrolls. */
  async preApprove(
    serial: string,
    enforceState: DeviceState | 'retain' = 'accepted',
    deviceId?: string,
  ): Promise<void> {
    await this.request('POST', '/device/auth_decisions', {
      auth_decisions: [{ serial, enforce_state: enforceState, ...(deviceId ? { device_id: deviceId } : {}) }],
    });
  }

  async listAuthDecisions(): Promise<AuthDecision[]> {
    const body = (await this.request('GET', '/device/auth_decisions')) as { auth_decisions?: AuthDecision[] } | null;
    return Array.isArray(body?.auth_decisions) ? body.auth_decisions : [];
  }

  /**
   * Withdraw a pre-approval: a serial decided "accepted" becomes "retain" (the
   * documented no-decision value; the API documents no delete). Any other
   * decision (an operator's "rejected") is left alone. True when one was withdrawn.
   */
  async revokePreApproval(serial: string): Promise<boolean> {
    const mine = (await this.listAuthDecisions()).filter((a) => a.serial === serial && a.enforce_state === 'accepted');
    if (mine.length === 0) return false;
    await this.preApprove(serial, 'retain');
    return true;
  }

  /** Remove a device: reject it first (so it cannot come straight back), then delete. Missing: no-op. */
  async removeDevice(id: string): Promise<boolean> {
    if (!(await this.getDevice(id))) return false;
    await this.setDeviceState(id, 'rejected');
    await this.request('DELETE', `/device/${encodeURIComponent(id)}`);
    return true;
  }

  /** The organization's controllers (they register themselves; read only). */
  async listControllers(): Promise<BowtieControllerInfo[]> {
    const body = (await this.request('GET', '/organization/controller')) as BowtieControllerInfo[] | null;
    return Array.isArray(body) ? body : [];
  }

  // --- policy (idempotent upserts with caller-chosen ids) ---------------------------------

  async upsertDeviceGroup(g: { id: string; name: string; description?: string }): Promise<void> {
    await this.request('POST', '/device_group/upsert', { id: g.id, name: g.name, description: g.description ?? '' });
  }

  async addDevicesToGroup(groupId: string, deviceIds: string[]): Promise<void> {
    await this.request('POST', '/device_group/adddevices', { group_id: groupId, device_id: deviceIds });
  }

  async removeDevicesFromGroup(groupId: string, deviceIds: string[]): Promise<void> {
    await this.request('POST', '/device_group/removedevices', { group_id: groupId, device_id: deviceIds });
  }

  async upsertTcpResource(r: { id: string; name: string; ip: string; ports: number[] }): Promise<void> {
    await this.request('POST', '/policy/upsert_resource', {
      id: r.id,
      name: r.name,
      protocol: 'tcp',
      location: { type: 'ip', value: r.ip },
      ports: { collection: { ports: r.ports } },
    });
  }

  async upsertResourceGroup(g: { id: string; name: string; resources: string[] }): Promise<void> {
    await this.request('POST', '/policy/upsert_resource_group', {
      id: g.id,
      name: g.name,
      resources: g.resources,
      inherited: [],
    });
  }

  /** Devices in `deviceGroupId` may reach `resourceGroupId` (action Accept, enabled). */
  async upsertAcceptPolicy(p: { id: string; deviceGroupId: string; resourceGroupId: string }): Promise<void> {
    await this.request('POST', '/policy/upsert_policy', {
      id: p.id,
      source: { id: uuidV5(`${p.id}/source`), predicate: { InDeviceGroup: p.deviceGroupId } },
      dest: p.resourceGroupId,
      action: 'Accept',
      status: 'Enabled',
    });
  }

  async getPolicy(): Promise<{
    policies: Record<string, unknown>;
    resource_groups: Record<string, unknown>;
    resources: Record<string, unknown>;
  }> {
    const body = (await this.request('GET', '/policy')) as Partial<
      Awaited<ReturnType<BowtieController['getPolicy']>>
    > | null;
    return {
      policies: body?.policies ?? {},
      resource_groups: body?.resource_groups ?? {},
      resources: body?.resources ?? {},
    };
  }

  // --- transport ---------------------------------------------------------------------------

  /**
   * One API call: auth header or session cookie, one re-login on a 401 (session
   * auth), one retry with the other trailing-slash form on a 404.
   */
  async request(method: string, path: string, body?: unknown, o: { auth?: boolean } = {}): Promise<unknown> {
    const auth = o.auth ?? true;
    if (auth && this.opts.auth.kind === 'session' && !this.cookie) await this.login();
    let res = await this.send(method, path, body, auth);
    if (res.status === 401 && auth && this.opts.auth.kind === 'session') {
      await this.login();
      res = await this.send(method, path, body, auth);
    }
    if (res.status === 404 && (this.opts.trailingSlashFallback ?? true)) {
      const other = path.endsWith('/') ? path.replace(/\/+$/, '') : `${path}/`;
      const retry = await this.send(method, other, body, auth);
      if (retry.status !== 404) res = retry;
    }
    // Only a 2xx is an answer: a 3xx would make a call "succeed" that did nothing.
    if (res.status < 200 || res.status >= 300) {
      const why = res.status >= 300 && res.status < 400 ? ' (a redirect: not followed)' : '';
      throw new ControllerError(
        errorTypeForStatus(res.status),
        `bowtie controller: ${method} ${path} answered ${res.status}${why}`,
        res.status,
      );
    }
    const text = res.body.toString('utf8');
    if (!text) return null;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return null; // e.g. an HTML page
    }
  }

  private async login(): Promise<void> {
    const a = this.opts.auth;
    if (a.kind !== 'session') return;
    this.assertMaySendCredentials(); // the login body carries the password
    this.cookie = null;
    const res = await this.send(
      'POST',
      '/user/login',
      { [a.loginField ?? 'email']: a.email, password: a.password },
      false,
    );
    // 200, or 303 to the app, both mean logged in (the 303 is not followed).
    if (res.status !== 200 && res.status !== 303) {
      throw new ControllerError(
        errorTypeForStatus(res.status === 400 ? 401 : res.status),
        `bowtie controller: login answered ${res.status}`,
        res.status,
      );
    }
    const setCookie = res.headers['set-cookie'] ?? [];
    const session = setCookie
      .map((c) => c.split(';')[0])
      .filter(Boolean)
      .join('; ');
    if (!session) throw new ControllerError('OverlayAuth', 'bowtie controller: login set no session cookie');
    this.cookie = session;
  }

  private assertMaySendCredentials(): void {
    if (!this.opts.allowedOrigins) {
      throw new ToolError(
        'InvalidInput',
        "bowtie controller: a client made without the worker's allow-list sends no credentials",
        'bowtie',
      );
    }
  }

  private async send(method: string, path: string, body: unknown, auth: boolean): Promise<HttpsResponse> {
    if (auth) this.assertMaySendCredentials();
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (auth && this.opts.auth.kind === 'apiKey') {
      headers.authorization = `Basic ${Buffer.from(`${this.opts.auth.keyId}:${this.opts.auth.secret}`).toString('base64')}`;
    }
    if (auth && this.cookie) headers.cookie = this.cookie;
    const timeout = AbortSignal.timeout(this.opts.timeoutMs ?? 10_000);
    const signal = this.opts.signal ? AbortSignal.any([this.opts.signal, timeout]) : timeout;
    try {
      return await httpsRequest(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        ca: this.opts.ca,
        signal,
        // Plain http only for the anonymous client (no credential can go over it).
        allowPlain: !this.opts.allowedOrigins,
      });
    } catch (err) {
      if (err instanceof ToolError) throw err;
      if (this.opts.signal?.aborted) throw err; // cancellation is not an outage
      const code = (err as { code?: string }).code;
      if (tlsTrustError(err)) {
        // Not an outage: the server is not the controller the worker trusts (system roots + NODEBOOT_CA_FILE).
        throw new ControllerError(
          'OverlayAuth',
          `bowtie controller: ${method} ${path}: TLS certificate not trusted (${code})`,
        );
      }
      const why = timeout.aborted
        ? `no answer within ${this.opts.timeoutMs ?? 10_000} ms`
        : (code ?? 'connection failed');
      throw new ControllerError('OverlayControllerUnavailable', `bowtie controller: ${method} ${path}: ${why}`);
    }
  }
}
