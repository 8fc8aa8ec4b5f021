// Contract tests for the Bowtie controller client against the stand-in
// controller (test/standins/bowtie-controller.ts), which speaks the API as
// ../shared/bowtie-api.md documents it. Real HTTPS on loopback, with a CA the
// tests make; the client trusts it explicitly and only talks to allowed origins.
import { beforeAll, afterEach, describe, expect, it } from 'vitest';
import {
  BowtieController,
  ControllerError,
  uuidV5,
  type ControllerAuth,
  type ControllerOptions,
} from '../../activities/overlay/bowtie/controller.js';
import { ToolError } from '../../activities/host/exec.js';
import { BowtieControllerStandIn, type StandInOptions } from '../standins/bowtie-controller.js';
import { loopbackTls, makeTestCa } from '../standins/tls.js';

const KEY = { id: 'key-1', secret: 's3cret-value' };
const USER = { email: 'ops@example.org', password: 'pw-1' };
const running: BowtieControllerStandIn[] = [];
let TLS: Awaited<ReturnType<typeof loopbackTls>>;
beforeAll(async () => {
  TLS = await loopbackTls();
});

async function standIn(opts: StandInOptions = {}): Promise<BowtieControllerStandIn> {
  const s = new BowtieControllerStandIn({ apiKeys: [KEY], users: [USER], tls: TLS.server, ...opts });
  await s.start();
  running.push(s);
  return s;
}
/** A client of `s` as the driver makes one: `s` on the allow-list, the tests' CA trusted. */
const ctl = (s: BowtieControllerStandIn, o: Omit<ControllerOptions, 'url'>) =>
  new BowtieController({ url: s.url, allowedOrigins: [s.url], ca: TLS.ca, ...o });
const apiKey: ControllerAuth = { kind: 'apiKey', keyId: KEY.id, secret: KEY.secret };
const session: ControllerAuth = { kind: 'session', email: USER.email, password: USER.password };

async function failureOf(p: Promise<unknown>): Promise<ControllerError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ControllerError);
  return err as ControllerError;
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

describe('Bowtie controller client', () => {
  it('authenticates with an API key (Basic) and with a session login, either login field', async () => {
    const s = await standIn();
    s.enroll({ id: 'd1', name: 'edge-01', publicKey: 'pk', serial: 'SER1' });
    expect((await ctl(s, { auth: apiKey }).listDevices()).map((d) => d.id)).toEqual(['d1']);
    expect((await ctl(s, { auth: session }).listDevices()).map((d) => d.id)).toEqual(['d1']);
    expect(s.count('POST', '/user/login')).toBe(1);

    const other = await standIn({ loginField: 'email_or_username' });
    expect(await failureOf(ctl(other, { auth: session }).listDevices())).toMatchObject({
      type: 'OverlayAuth',
      status: 401,
    });
    expect(
      await ctl(other, { auth: { ...session, loginField: 'email_or_username' } as ControllerAuth }).listDevices(),
    ).toEqual([]);
  });

  it('wrong credentials are a non-retryable OverlayAuth that never shows the secret', async () => {
    const s = await standIn();
    const err = await failureOf(ctl(s, { auth: { ...apiKey, secret: 'wrong' } as ControllerAuth }).listDevices());
    expect(err.type).toBe('OverlayAuth');
    expect(err.message).toBe('bowtie controller: GET /device answered 401');
    const login = await failureOf(ctl(s, { auth: { ...session, password: 'nope' } as ControllerAuth }).listDevices());
    expect(login.type).toBe('OverlayAuth');
    expect(login.message).not.toContain('nope');
  });

  it('logs in again once when the session expires (401), and only once', async () => {
    const s = await standIn();
    const c = ctl(s, { auth: session });
    await c.listDevices();
    s.expireSessions();
    await c.listDevices();
    expect(s.count('POST', '/user/login')).toBe(2);
    expect(s.requests.filter((r) => r.path === '/device').map((r) => r.status)).toEqual([200, 401, 200]);
  });

  it('tries the other trailing-slash form once after a 404, both ways', async () => {
    const slashOnly = await standIn({ slash: 'slash' });
    await ctl(slashOnly, { auth: apiKey }).listDevices();
    expect(slashOnly.requests.map((r) => [r.path, r.status])).toEqual([
      ['/device', 404],
      ['/device/', 200],
    ]);
    const noSlash = await standIn({ slash: 'no-slash' });
    await ctl(noSlash, { auth: apiKey }).request('GET', '/device/');
    expect(noSlash.requests.map((r) => r.status)).toEqual([404, 200]);
    // Without the fallback, the 404 is an OverlayRejected.
    const strict = ctl(slashOnly, { auth: apiKey, trailingSlashFallback: false });
    expect(await failureOf(strict.listDevices())).toMatchObject({ type: 'OverlayRejected', status: 404 });
  });

  it('upserts with deterministic ids are idempotent: running twice creates nothing new', async () => {
    const s = await standIn();
    const c = ctl(s, { auth: apiKey });
    s.enroll({ id: 'd1', name: 'edge-01', publicKey: 'pk', serial: 'SER1' });
    const ids = {
      group: uuidV5('nodeboot/group/onprem'),
      resource: uuidV5('nodeboot/resource/onprem'),
      rg: uuidV5('nodeboot/rg/onprem'),
      policy: uuidV5('nodeboot/policy/onprem'),
    };
    for (let i = 0; i < 2; i++) {
      await c.upsertDeviceGroup({ id: ids.group, name: 'nodeboot-onprem' });
      await c.addDevicesToGroup(ids.group, ['d1']);
      await c.upsertTcpResource({ id: ids.resource, name: 'spire-server', ip: '10.200.0.1', ports: [8081] });
      await c.upsertResourceGroup({ id: ids.rg, name: 'spire', resources: [ids.resource] });
      await c.upsertAcceptPolicy({ id: ids.policy, deviceGroupId: ids.group, resourceGroupId: ids.rg });
    }
    expect([s.deviceGroups.size, s.resources.size, s.resourceGroups.size, s.policies.size]).toEqual([1, 1, 1, 1]);
    expect([...s.deviceGroups.get(ids.group)!.members]).toEqual(['d1']);
    const policy = await c.getPolicy();
    expect(policy.policies[ids.policy]).toMatchObject({
      action: 'Accept',
      status: 'Enabled',
      dest: ids.rg,
      source: { predicate: { InDeviceGroup: ids.group } },
    });
    expect(policy.resources[ids.resource]).toMatchObject({
      protocol: 'tcp',
      location: { type: 'ip', value: '10.200.0.1' },
      ports: { collection: { ports: [8081] } },
    });
    expect(uuidV5('nodeboot/group/onprem')).toBe(ids.group);
    expect(uuidV5('nodeboot/group/onprem')).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it('approves, rejects and removes devices; pre-approval by serial accepts at enrollment', async () => {
    const s = await standIn();
    const c = ctl(s, { auth: apiKey });
    s.enroll({ id: 'd1', name: 'edge-01', publicKey: 'pk1', serial: 'SER1' });
    await c.setDeviceState('d1', 'accepted');
    expect((await c.getDevice('d1'))?.state).toBe('accepted');

    await c.preApprove('SER2');
    expect(s.enroll({ id: 'd2', name: 'edge-02', publicKey: 'pk2', serial: 'SER2' }).state).toBe('accepted');

    expect(await c.removeDevice('d1')).toBe(true);
    expect(s.requests.slice(-2).map((r) => `${r.path} ${r.status}`)).toEqual(['/device/state 200', '/device/d1 200']); // rejected, then deleted
    expect(await c.getDevice('d1')).toBeUndefined();
    expect(await c.removeDevice('d1')).toBe(false); // already gone: a no-op
  });

  it('classifies errors: 5xx and no answer are transient, other 4xx permanent', async () => {
    const s = await standIn();
    const c = ctl(s, { auth: apiKey, timeoutMs: 300 });
    s.failNext = 1;
    expect(await failureOf(c.listDevices())).toMatchObject({ type: 'OverlayControllerUnavailable', status: 500 });
    expect(await failureOf(c.setDeviceState('no-such-device', 'accepted'))).toMatchObject({
      type: 'OverlayRejected',
      status: 404,
    });
    expect(
      await failureOf(c.request('POST', '/device/state', { devices: [{ id: 'x', state: 'bogus' }] })),
    ).toMatchObject({ type: 'OverlayRejected', status: 400 });
    s.delayMs = 1_000;
    expect(await failureOf(c.listDevices())).toMatchObject({
      type: 'OverlayControllerUnavailable',
      message: 'bowtie controller: GET /device: no answer within 300 ms',
    });
    s.delayMs = 0;
    await s.stop();
    expect(await failureOf(c.listDevices())).toMatchObject({ type: 'OverlayControllerUnavailable' });
    expect(await c.ok()).toBe(false);
  });
  it('talks only to an allowed https origin: anything else is refused before a request is sent', async () => {
    const s = await standIn();
    const other = await standIn();
    const refused = (o: Partial<ControllerOptions>) => {
      try {
        new BowtieController({ url: other.url, auth: apiKey, ca: TLS.ca, ...o });
      } catch (err) {
        return err as ToolError;
      }
      throw new Error('not refused');
    };
    const offList = refused({ allowedOrigins: [s.url] });
    expect(offList).toBeInstanceOf(ToolError);
    expect(offList).toMatchObject({
      type: 'InvalidInput',
      message: `overlay.bowtie.controllerUrl: ${other.url} is not a controller this worker talks to (NODEBOOT_BOWTIE_CONTROLLERS)`,
    });
    // The same host and port over plain http is another origin, and never allowed.
    const plain = refused({
      url: other.url.replace('https:', 'http:'),
      allowedOrigins: [other.url, other.url.replace('https:', 'http:')],
    });
    expect(plain).toMatchObject({
      type: 'InvalidInput',
      message:
        'overlay.bowtie.controllerUrl: must be an https:// URL (the worker sends its controller credentials there)',
    });
    // A client made without the allow-list (the fleet's health check) sends no credential at all.
    const anonymous = new BowtieController({ url: other.url, auth: apiKey, ca: TLS.ca });
    expect(await anonymous.ok()).toBe(true);
    const err = await anonymous.listDevices().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ type: 'InvalidInput' });
    const session2 = new BowtieController({ url: other.url, auth: session, ca: TLS.ca });
    expect(
      await session2.listDevices().then(
        () => undefined,
        (e: unknown) => e,
      ),
    ).toMatchObject({ type: 'InvalidInput' });
    expect(other.requests.map((r) => [r.path, r.credentialed])).toEqual([['/ok', false]]);
    expect(s.requests).toEqual([]);
  });

  it('verifies TLS: a controller whose certificate the worker does not trust gets no credential (OverlayAuth)', async () => {
    const s = await standIn();
    const stranger = await makeTestCa('another CA');
    for (const ca of [undefined, stranger.cert]) {
      const err = await failureOf(
        new BowtieController({ url: s.url, auth: apiKey, allowedOrigins: [s.url], ca }).listDevices(),
      );
      expect(err.type).toBe('OverlayAuth');
      expect(err.message).toMatch(/^bowtie controller: GET \/device: TLS certificate not trusted \(/);
    }
    expect(s.requests).toEqual([]); // the handshake failed: no request, no Authorization header
  });

  it('a 3xx is not success and is not followed: the call fails, nothing reaches the redirect target', async () => {
    const s = await standIn();
    const target = await standIn();
    s.enroll({ id: 'd1', name: 'edge-01', publicKey: 'pk1', serial: 'SER1' });
    const c = ctl(s, { auth: apiKey });
    for (const status of [301, 302, 307, 308]) {
      s.inject = () => ({ status, headers: { location: `${target.url}/-net/api/v0/device/state` } });
      const err = await failureOf(c.setDeviceState('d1', 'accepted'));
      expect(err).toMatchObject({
        type: 'OverlayRejected',
        status,
        message: `bowtie controller: POST /device/state answered ${status} (a redirect: not followed)`,
      });
      // removeDevice does not read a redirect as "no such device, nothing to remove".
      expect(await failureOf(c.removeDevice('d1'))).toMatchObject({ type: 'OverlayRejected', status });
    }
    s.inject = null;
    expect(s.devices.get('d1')!.state).toBe('pending');
    expect(target.requests).toEqual([]);
  });

  it('withdraws its pre-approval (enforce_state "retain") and leaves an operator\'s rejection alone', async () => {
    const s = await standIn();
    const c = ctl(s, { auth: apiKey });
    await c.preApprove('SER1');
    expect(await c.revokePreApproval('SER1')).toBe(true);
    expect(s.authDecisions.get('SER1')).toMatchObject({ enforce_state: 'retain' });
    expect(s.enroll({ id: 'd1', name: 'edge-01', publicKey: 'pk1', serial: 'SER1' }).state).toBe('pending');
    expect(await c.revokePreApproval('SER1')).toBe(false); // nothing left to withdraw
    await c.preApprove('SER2', 'rejected');
    expect(await c.revokePreApproval('SER2')).toBe(false);
    expect(s.authDecisions.get('SER2')).toMatchObject({ enforce_state: 'rejected' });
  });
});
