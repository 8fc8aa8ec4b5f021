/**
 * Builds the stand-in "bowtie-service" .deb: a TEST DOUBLE, never shipped.
 * It carries the stand-in client (bowtie-client/client.mjs) and maintainer
 * scripts that start it on install (a real package enables a service) and stop
 * it on removal, so the driver's install and uninstall run real dpkg.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestServerCert } from './tls.js';

const CLIENT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bowtie-client', 'client.mjs');

export interface StandInPackage {
  path: string;
  sha256: string;
  name: string;
  version: string;
}

export function buildStandInPackage(outDir: string, version = '0.0.0-standin'): StandInPackage {
  const name = 'bowtie-service';
  const tree = path.join(outDir, 'pkg');
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(path.join(tree, 'DEBIAN'), { recursive: true });
  mkdirSync(path.join(tree, 'usr/lib/bowtie-standin'), { recursive: true });
  copyFileSync(CLIENT, path.join(tree, 'usr/lib/bowtie-standin/client.mjs'));
  writeFileSync(
    path.join(tree, 'DEBIAN/control'),
    [
      `Package: ${name}`,
      `Version: ${version}`,
      'Architecture: all',
      'Maintainer: node-bootstrap tests <tests@example.org>',
      'Description: stand-in for the Bowtie client (test double)',
      '',
    ].join('\n'),
  );
  const script = (file: string, body: string) => {
    writeFileSync(path.join(tree, 'DEBIAN', file), `#!/bin/sh\nset -e\nROOT="\${DPKG_ROOT:-}"\n${body}\nexit 0\n`);
    chmodSync(path.join(tree, 'DEBIAN', file), 0o755);
  };
  // Start the daemon detached from dpkg's stdio (dpkg's caller waits for those to close).
  script(
    'postinst',
    `if [ "$1" = configure ]; then
  mkdir -p "$ROOT/var/log/bowtie"
  setsid ${process.execPath} "$ROOT/usr/lib/bowtie-standin/client.mjs" --root "$ROOT" </dev/null >>"$ROOT/var/log/bowtie/client.log" 2>&1 &
fi`,
  );
  script(
    'prerm',
    `PIDF="$ROOT/var/lib/bowtie/client.pid"
if [ -f "$PIDF" ]; then
  pid=$(cat "$PIDF"); kill -TERM "$pid" 2>/dev/null || true
  i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null || true; rm -f "$PIDF"
fi`,
  );
  script('postrm', `if [ "$1" = purge ]; then rm -rf "$ROOT/var/lib/bowtie" "$ROOT/var/log/bowtie"; fi`);
  const deb = path.join(outDir, `${name}_${version}_all.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', tree, deb], { stdio: 'ignore' });
  rmSync(tree, { recursive: true, force: true });
  return { path: deb, sha256: createHash('sha256').update(readFileSync(deb)).digest('hex'), name, version };
}

/** A stand-in of Bowtie's package API: HTTPS on loopback (a test CA's certificate), serving fixed files by path. */
export interface PackageServer {
  /** "https://127.0.0.1:<port>" */
  url: string;
  /** Every request's path, in order. */
  requests: string[];
  close(): Promise<void>;
}

export async function servePackages(
  files: Record<string, Buffer | (() => Buffer)>,
  tls: TestServerCert,
): Promise<PackageServer> {
  const requests: string[] = [];
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    requests.push(req.url ?? '');
    const f = files[req.url ?? ''];
    if (!f) return void res.writeHead(404).end();
    res
      .writeHead(200, { 'content-type': 'application/vnd.debian.binary-package' })
      .end(typeof f === 'function' ? f() : f);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
