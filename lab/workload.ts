/**
 * The built-in demo workload: a process that gets its identity from the local
 * SPIRE agent and proves it with mTLS across the overlay.
 *
 *   workload serve --socket S --dir D --listen IP:PORT [--allow spiffe://...]...
 *       fetch an X.509-SVID (and again at half its lifetime), serve mTLS;
 *       answer callers whose SPIFFE ID is allowed, refuse the rest.
 *   workload call --socket S --dir D --connect IP:PORT --expect spiffe://...
 *       fetch an SVID, call a server over mTLS, require the server's SPIFFE ID,
 *       print the exchange as JSON (exit 0 ok, 1 refused, 2 usage).
 *
 * It runs as the workload's unix uid, so the agent's unix attestor decides
 * which SVID it gets: nothing on the command line names its identity.
 */
// @peculiar/x509's dependency injection needs the Reflect metadata polyfill first.
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { parseArgs, promisify } from 'node:util';
import { X509Certificate } from '@peculiar/x509';

const run = promisify(execFile);
const SPIRE_AGENT = path.join(process.env.NODEBOOT_TOOLS_BIN ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '../.tools/bin'), 'spire-agent');

interface Svid {
  id: string;
  cert: string;
  key: string;
  ca: string;
  notAfter: Date;
  notBefore: Date;
}

/** Aborted on SIGTERM: a fetch in flight (a `spire-agent` child) goes with the workload. */
const stopping = new AbortController();

async function fetchSvid(socket: string, dir: string, deadlineMs = 60_000): Promise<Svid> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      await run(SPIRE_AGENT, ['api', 'fetch', 'x509', '-socketPath', socket, '-write', dir, '-timeout', '5s'], { timeout: 15_000, signal: stopping.signal });
      const cert = readFileSync(path.join(dir, 'svid.0.pem'), 'utf8');
      const leaf = new X509Certificate(cert.slice(0, cert.indexOf('-----END CERTIFICATE-----') + 25));
      return {
        id: uriSan(leaf) ?? '',
        cert,
        key: readFileSync(path.join(dir, 'svid.0.key'), 'utf8'),
        ca: readFileSync(path.join(dir, 'bundle.0.pem'), 'utf8'),
        notAfter: leaf.notAfter,
        notBefore: leaf.notBefore,
      };
    } catch (err) {
      // "no identity issued" until the entry reaches the agent: keep asking.
      if (Date.now() > until || stopping.signal.aborted) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function uriSan(cert: X509Certificate): string | undefined {
  const ext = cert.getExtension('2.5.29.17') as unknown as { names?: { items: { type: string; value: string }[] } } | null;
  return ext?.names?.items.find((n) => n.type === 'url')?.value;
}

/** The SPIFFE ID in a peer certificate as Node's TLS layer shows it. */
function peerSpiffeId(cert: tls.PeerCertificate | undefined): string | undefined {
  const san = cert?.subjectaltname ?? '';
  return san
    .split(', ')
    .find((s) => s.startsWith('URI:spiffe://'))
    ?.slice(4);
}

const log = (obj: Record<string, unknown>) => console.log(JSON.stringify({ at: new Date().toISOString(), ...obj }));

async function serve(socket: string, dir: string, listen: string, allow: string[]) {
  // Until it serves, stopping is just exiting (and ending a fetch in flight).
  const stop: { close: () => void } = { close: () => process.exit(0) };
  process.on('SIGTERM', () => {
    stopping.abort();
    stop.close();
  });
  let svid = await fetchSvid(socket, dir);
  log({ event: 'svid', id: svid.id, notAfter: svid.notAfter.toISOString() });
  const context = () => ({ cert: svid.cert, key: svid.key, ca: svid.ca });
  const server = tls.createServer({ ...context(), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (sock) => {
    const caller = peerSpiffeId(sock.getPeerCertificate());
    if (!caller || !allow.includes(caller)) {
      log({ event: 'refused', caller: caller ?? null });
      sock.end(JSON.stringify({ ok: false, refused: caller ?? null, reason: 'SPIFFE ID not allowed' }) + '\n');
      return;
    }
    log({ event: 'accepted', caller });
    sock.end(JSON.stringify({ ok: true, server: svid.id, client: caller }) + '\n');
  });
  // Rotate at half-life, as SPIRE's own SDKs do.
  const rotate = () => {
    const half = Math.max(5_000, (svid.notAfter.getTime() - svid.notBefore.getTime()) / 2 - (Date.now() - svid.notBefore.getTime()));
    const renew = async () => {
      try {
        svid = await fetchSvid(socket, dir);
        server.setSecureContext(context());
        log({ event: 'rotated', notAfter: svid.notAfter.toISOString() });
      } catch (err) {
        log({ event: 'rotate_failed', error: String(err) });
      }
      rotate();
    };
    setTimeout(() => void renew(), half).unref();
  };
  rotate();
  const [host, port] = splitHostPort(listen);
  server.listen(port, host, () => log({ event: 'listening', listen }));
  stop.close = () => server.close(() => process.exit(0));
}

async function call(socket: string, dir: string, connect: string, expect: string): Promise<number> {
  const svid = await fetchSvid(socket, dir);
  const [host, port] = splitHostPort(connect);
  return new Promise((resolve) => {
    const sock = tls.connect({
      host,
      port,
      cert: svid.cert,
      key: svid.key,
      ca: svid.ca,
      minVersion: 'TLSv1.3',
      // SVIDs carry no DNS names: the identity to check is the URI SAN.
      checkServerIdentity: (_h, cert) => {
        const id = peerSpiffeId(cert);
        return id === expect ? undefined : new Error(`server presented ${id ?? 'no SPIFFE ID'}, expected ${expect}`);
      },
    });
    let body = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => (body += d));
    sock.on('end', () => {
      const reply = body.trim() ? (JSON.parse(body.trim()) as { ok: boolean }) : { ok: false };
      console.log(JSON.stringify({ client: svid.id, server: peerSpiffeId(sock.getPeerCertificate()) ?? null, reply }));
      resolve(reply.ok ? 0 : 1);
    });
    sock.on('error', (err) => {
      console.log(JSON.stringify({ client: svid.id, error: err.message }));
      resolve(1);
    });
    sock.setTimeout(10_000, () => sock.destroy(new Error('timed out')));
  });
}

function splitHostPort(hp: string): [string, number] {
  const i = hp.lastIndexOf(':');
  return [hp.slice(0, i), Number(hp.slice(i + 1))];
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      socket: { type: 'string' },
      dir: { type: 'string' },
      listen: { type: 'string' },
      connect: { type: 'string' },
      expect: { type: 'string' },
      allow: { type: 'string', multiple: true, default: [] },
    },
  });
  const socket = values.socket ?? process.env.SPIFFE_ENDPOINT_SOCKET?.replace(/^unix:\/\//, '');
  if (!socket || !values.dir) return usage('--socket (or SPIFFE_ENDPOINT_SOCKET) and --dir are required');
  switch (positionals[0]) {
    case 'serve':
      if (!values.listen) return usage('serve needs --listen IP:PORT');
      await serve(socket, values.dir, values.listen, values.allow);
      return -1;
    case 'call':
      if (!values.connect || !values.expect) return usage('call needs --connect IP:PORT and --expect SPIFFE_ID');
      return call(socket, values.dir, values.connect, values.expect);
    default:
      return usage('first argument must be "serve" or "call"');
  }
}

function usage(msg: string): number {
  console.error(`workload: ${msg}`);
  return 2;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    console.error(`workload: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
