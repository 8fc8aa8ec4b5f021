// The node side of the bowtie driver, run for real on this machine through the
// local transport in a temporary install root: seeding config.toml, staging the
// package from a node path or an https URL (sha256 checked), and cleaning up.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ToolError } from '../../activities/host/exec.js';
import { localTransport } from '../../activities/host/transport.js';
import {
  configPathOf,
  fetchPackage,
  removeConfig,
  removeStaged,
  seedConfig,
  stagePackage,
} from '../../activities/overlay/bowtie/node.js';
import { BowtieSpec } from '../../common/input.js';
import { servePackages, type PackageServer } from '../standins/bowtie-package.js';
import { loopbackTls, makeTestCa } from '../standins/tls.js';

const t = localTransport();
const dir = mkdtempSync(path.join(tmpdir(), 'nodeboot-bowtie-'));
const root = path.join(dir, 'root');
const stage = path.join(dir, 'stage');
const deb = path.join(dir, 'bowtie-service.deb');
const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256)); // binary, not text
const sha = createHash('sha256').update(bytes).digest('hex');
let server: PackageServer;
let plain: http.Server;
let base = '';
let plainBase = '';
let ca = '';

const spec = (over: Record<string, unknown> = {}) =>
  BowtieSpec.parse({
    controllerUrl: 'https://ctl1.example.net',
    auth: { kind: 'apiKey', keyIdEnv: 'NODEBOOT_CRED_K', secretEnv: 'NODEBOOT_CRED_S' },
    package: { source: deb, sha256: sha },
    installRoot: root,
    ...over,
  });

/** A spec past the schema (which refuses these too): the driver's own checks are what is tested. */
const unchecked = (pkg: { source: string; sha256?: string }): BowtieSpec => ({
  ...spec(),
  package: { name: 'bowtie-service', ...pkg } as BowtieSpec['package'],
});

async function failure(p: Promise<unknown>): Promise<ToolError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ToolError);
  return err as ToolError;
}

beforeAll(async () => {
  writeFileSync(deb, bytes);
  const tls = await loopbackTls();
  ca = tls.ca;
  server = await servePackages({ '/bowtie.deb': bytes }, tls.server);
  base = server.url;
  // The same package over plain http: never downloaded.
  plain = http.createServer((_req, res) => res.writeHead(200).end(bytes));
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  plainBase = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await server.close();
  await new Promise<void>((resolve) => plain.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('bowtie client on the node', () => {
  it('seeds config.toml under the install root only when it differs, and removes exactly what it made', async () => {
    const b = spec();
    const file = configPathOf(b);
    expect(file).toBe(`${root}/etc/bowtie/configuration/config.toml`);
    expect(await seedConfig(t, b)).toBe(true);
    expect(await seedConfig(t, b)).toBe(false);
    expect(readFileSync(file, 'utf8')).toContain('auth_prompt_strategy = "never"\n');
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(await seedConfig(t, spec({ clientConfig: { log_level: 'debug' } }))).toBe(true);
    expect(readFileSync(file, 'utf8')).toContain('log_level = "debug"\n');

    expect(await removeConfig(t, b)).toBe(true);
    expect(await removeConfig(t, b)).toBe(false);
    // The two directories the seed made are gone; /etc of the root (not ours) stays.
    expect(existsSync(`${root}/etc/bowtie`)).toBe(false);
    expect(existsSync(`${root}/etc`)).toBe(true);
  });

  it('stages a package from a URL byte for byte and checks its sha256; removes only what it staged', async () => {
    const b = spec({ package: { source: `${base}/bowtie.deb`, sha256: sha } });
    const staged = await stagePackage(t, b, stage, { ca });
    expect(staged).toBe(`${stage}/bowtie-service.deb`);
    expect(readFileSync(staged).equals(bytes)).toBe(true);
    expect(await removeStaged(t, b, stage)).toBe(true);
    expect(existsSync(stage)).toBe(false);
    // A node path is used where it is, and never deleted by us.
    expect(await stagePackage(t, spec({ package: { source: deb, sha256: sha } }), stage)).toBe(deb);
    expect(await removeStaged(t, spec(), stage)).toBe(false);
    expect(existsSync(deb)).toBe(true);
  });

  it('refuses a wrong sha256, a missing node path and a URL that is not there, naming the field', async () => {
    const wrong = await failure(stagePackage(t, spec({ package: { source: deb, sha256: '0'.repeat(64) } }), stage));
    expect(wrong.type).toBe('InvalidInput');
    expect(wrong.message).toBe(`overlay.bowtie.package.sha256: ${deb} has sha256 ${sha}, expected ${'0'.repeat(64)}`);
    const missing = await failure(
      stagePackage(t, spec({ package: { source: `${dir}/nope.deb`, sha256: sha } }), stage),
    );
    expect(missing).toMatchObject({
      type: 'InvalidInput',
      message: `overlay.bowtie.package.source: ${dir}/nope.deb is not a file on the node`,
    });
    const notFound = await failure(
      stagePackage(t, spec({ package: { source: `${base}/other.deb`, sha256: sha } }), stage, { ca }),
    );
    expect(notFound).toMatchObject({
      type: 'InvalidInput',
      message: `overlay.bowtie.package.source: ${base}/other.deb answered 404`,
    });
    // Nothing answering is an outage (retried), not bad input.
    const down = await failure(
      stagePackage(t, spec({ package: { source: 'https://127.0.0.1:9/bowtie.deb', sha256: sha } }), stage, { ca }),
    );
    expect(down.type).toBe('ToolFailed');
    expect(existsSync(stage)).toBe(false);
  });

  it('downloads only over verified https, only with a sha256, and checks it in the worker before the node gets a byte', async () => {
    const url = `${base}/bowtie.deb`;
    const before = server.requests.length;
    // Plain http, or no sha256: refused without a request.
    expect(
      await failure(fetchPackage(unchecked({ source: `${plainBase}/bowtie.deb`, sha256: sha }), { ca })),
    ).toMatchObject({
      type: 'InvalidInput',
      message: `overlay.bowtie.package.source: ${plainBase}/bowtie.deb is not https:// (the worker downloads only over verified TLS)`,
    });
    expect(await failure(fetchPackage(unchecked({ source: url }), { ca }))).toMatchObject({
      type: 'InvalidInput',
      message: 'overlay.bowtie.package.sha256: is required for a package URL',
    });
    expect(server.requests.length).toBe(before);
    // A wrong sha256 is found in the worker: nothing is staged on the node.
    const wrong = await failure(
      stagePackage(t, spec({ package: { source: url, sha256: '0'.repeat(64) } }), stage, { ca }),
    );
    expect(wrong).toMatchObject({
      type: 'InvalidInput',
      message: `overlay.bowtie.package.sha256: ${url} has sha256 ${sha}, expected ${'0'.repeat(64)}`,
    });
    expect(existsSync(stage)).toBe(false);
    // A server whose certificate the worker does not trust is not downloaded from.
    const stranger = (await makeTestCa('another CA')).cert;
    for (const c of [undefined, stranger]) {
      expect(await failure(fetchPackage(spec({ package: { source: url, sha256: sha } }), { ca: c }))).toMatchObject({
        type: 'InvalidInput',
        message: expect.stringMatching(/TLS certificate not trusted/),
      });
    }
    expect((await fetchPackage(spec({ package: { source: url, sha256: sha } }), { ca })).equals(bytes)).toBe(true);
  });
});
