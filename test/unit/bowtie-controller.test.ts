// Contract tests for the Bowtie controller client against the stand-in
// controller (test/standins/bowtie-controller.ts), which speaks the API as
// ../shared/bowtie-api.md documents it. Real HTTP on loopback.
import { afterEach, describe, expect, it } from 'vitest';
import { BowtieController, ControllerError, uuidV5, type ControllerAuth } from '../../activities/overlay/bowtie/controller.js';
import { BowtieControllerStandIn, type StandInOptions } from '../standins/bowtie-controller.js';

const KEY = { id: 'key-1', secret: 's3cret-value' };
const USER = { email: 'ops@example.org', password: 'pw-1' };
const running: BowtieControllerStandIn[] = [];

async function standIn(opts: StandInOptions = {}): Promise<BowtieControllerStandIn> {
  const s = new BowtieControllerStandIn({ apiKeys: [KEY], users: [USER], ...opts });
  await s.start();
  running.push(s);
  return s;
}
const apiKey: ControllerAuth = { kind: 'apiKey', keyId: KEY.id, secret: KEY.secret };
const session: ControllerAuth = { kind: 'session', email: USER.email, password: USER.password };

async function failureOf(p: Promise<unknown>): Promise<ControllerError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
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
    expect((await new BowtieController({ url: s.url, auth: apiKey }).listDevices()).map((d) => d.id)).toEqual(['d1']);
    expect((await new BowtieController({ url: s.url, auth: session }).listDevices()).map((d) => d.id)).toEqual(['d1']);
    expect(s.count('POST', '/user/login')).toBe(1);

    const other = await standIn({ loginField: 'email_or_username' });
    expect(await failureOf(new BowtieController({ url: other.url, auth: session }).listDevices())).toMatchObject({ type: 'OverlayAuth', status: 401 });
    expect(await new BowtieController({ url: other.url, auth: { ...session, loginField: 'email_or_username' } as ControllerAuth }).listDevices()).toEqual([]);
  });

  it('wrong credentials are a non-retryable OverlayAuth that never shows the secret', async () => {
    const s = await standIn();
    const err = await failureOf(new BowtieController({ url: s.url, auth: { ...apiKey, secret: 'wrong' } as ControllerAuth }).listDevices());
    expect(err.type).toBe('OverlayAuth');
    expect(err.message).toBe('bowtie controller: GET /device answered 401');
    const login = await failureOf(new BowtieController({ url: s.url, auth: { ...session, password: 'nope' } as ControllerAuth }).listDevices());
    expect(login.type).toBe('OverlayAuth');
    expect(login.message).not.toContain('nope');
  });

  it('logs in again once when the session expires (401), and only once', async () => {
    const s = await standIn();
    const c = new BowtieController({ url: s.url, auth: session });
    await c.listDevices();
    s.expireSessions();
    await c.listDevices();
    expect(s.count('POST', '/user/login')).toBe(2);
    expect(s.requests.filter((r) => r.path === '/device').map((r) => r.status)).toEqual([200, 401, 200]);
  });

  it('tries the other trailing-slash form once after a 404, both ways', async () => {
    const slashOnly = await standIn({ slash: 'slash' });
    await new BowtieController({ url: slashOnly.url, auth: apiKey }).listDevices();
    expect(slashOnly.requests.map((r) => [r.path, r.status])).toEqual([
      ['/device', 404],
      ['/device/', 200],
    ]);
    const noSlash = await standIn({ slash: 'no-slash' });
    await new BowtieController({ url: noSlash.url, auth: apiKey }).request('GET', '/device/');
    expect(noSlash.requests.map((r) => r.status)).toEqual([404, 200]);
    // Without the fallback, the 404 is an OverlayRejected.
    const strict = new BowtieController({ url: slashOnly.url, auth: apiKey, trailingSlashFallback: false });
    expect(await failureOf(strict.listDevices())).toMatchObject({ type: 'OverlayRejected', status: 404 });
  });

  it('upserts with deterministic ids are idempotent: running twice creates nothing new', async () => {
    const s = await standIn();
    const c = new BowtieController({ url: s.url, auth: apiKey });
    s.enroll({ id: 'd1', name: 'edge-01', publicKey: 'pk', serial: 'SER1' });
    const ids = { group: uuidV5('nodeboot/group/onprem'), resource: uuidV5('nodeboot/resource/onprem'), rg: uuidV5('nodeboot/rg/onprem'), policy: uuidV5('nodeboot/policy/onprem') };
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
    expect(policy.policies[ids.policy]).toMatchObject({ action: 'Accept', status: 'Enabled', dest: ids.rg, source: { predicate: { InDeviceGroup: ids.group } } });
    expect(policy.resources[ids.resource]).toMatchObject({ protocol: 'tcp', location: { type: 'ip', value: '10.200.0.1' }, ports: { collection: { ports: [8081] } } });
    expect(uuidV5('nodeboot/group/onprem')).toBe(ids.group);
    expect(uuidV5('nodeboot/group/onprem')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('approves, rejects and removes devices; pre-approval by serial accepts at enrollment', async () => {
    const s = await standIn();
    const c = new BowtieController({ url: s.url, auth: apiKey });
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
    const c = new BowtieController({ url: s.url, auth: apiKey, timeoutMs: 300 });
    s.failNext = 1;
    expect(await failureOf(c.listDevices())).toMatchObject({ type: 'OverlayControllerUnavailable', status: 500 });
    expect(await failureOf(c.setDeviceState('no-such-device', 'accepted'))).toMatchObject({ type: 'OverlayRejected', status: 404 });
    expect(await failureOf(c.request('POST', '/device/state', { devices: [{ id: 'x', state: 'bogus' }] }))).toMatchObject({ type: 'OverlayRejected', status: 400 });
    s.delayMs = 1_000;
    expect(await failureOf(c.listDevices())).toMatchObject({ type: 'OverlayControllerUnavailable', message: 'bowtie controller: GET /device: no answer within 300 ms' });
    s.delayMs = 0;
    await s.stop();
    expect(await failureOf(c.listDevices())).toMatchObject({ type: 'OverlayControllerUnavailable' });
    expect(await c.ok()).toBe(false);
  });
});
