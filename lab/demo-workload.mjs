// @ts-check
/**
 * The lab's demo workload: a process that gets its identity from the local
 * SPIRE agent and proves it with mTLS across the overlay. Plain JavaScript with
 * nothing but Node built-ins, so the lab installs it on a node as one file
 * (lab/lab.ts) and a provisioning input names it like any other workload
 * program (lab/inputs.ts): the worker knows nothing of it.
 *
 *   demo-workload serve --dir D (--listen IP:PORT | --in-cidr CIDR --port PORT) [--allow spiffe://...]...
 *       fetch an X.509-SVID (and again at half its lifetime), serve mTLS on the
 *       address, or on this host's IPv4 address inside CIDR (the node's overlay
 *       address, whichever driver made the interface); answer callers whose
 *       SPIFFE ID is allowed, refuse the rest.
 *   demo-workload call --dir D --connect IP:PORT --expect spiffe://...
 *       fetch an SVID, call a server over mTLS, require the server's SPIFFE ID,
 *       print the exchange as JSON (exit 0 ok, 1 refused, 2 usage).
 *
 *   Both: --socket S (default: SPIFFE_ENDPOINT_SOCKET), the agent's Workload API socket, which the
 *   workload speaks itself (gRPC over node:http2). --spire-agent PATH is accepted and ignored: commands
 *   recorded when the workload ran `spire-agent api fetch` still start.
 *
 * It runs as the workload's unix uid, so the agent's unix attestor decides
 * which SVID it gets: nothing on the command line names its identity.
 */
import { Buffer } from 'node:buffer';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { clearTimeout, setTimeout } from 'node:timers';
import { parseArgs } from 'node:util';

/**
 * @typedef {object} Svid
 * @property {string} id the SPIFFE ID (URI SAN) of the leaf
 * @property {string} cert the SVID chain (PEM)
 * @property {string} key its private key (PEM)
 * @property {string} ca the trust bundle (PEM)
 * @property {Date} notAfter
 * @property {Date} notBefore
 */

/** Aborted on SIGTERM: a fetch in flight goes with the workload. */
const stopping = new AbortController();

/**
 * One FetchX509SVID call on the agent's Workload API (gRPC over its unix socket,
 * spoken with node:http2: the workload needs no gRPC library and no `spire-agent`
 * child per attempt). The first message of the stream is the answer; the agent
 * tells a caller it has no entry for with PermissionDenied ("no identity issued").
 * @param {string} socket
 * @returns {Promise<{ id: string, chainDer: Buffer, keyDer: Buffer, bundleDer: Buffer }>}
 */
function fetchX509Once(socket) {
  return new Promise((resolve, reject) => {
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(socket) });
    /** @param {Error} [err] @param {any} [value] */
    const done = (err, value) => {
      clearTimeout(timer);
      stopping.signal.removeEventListener('abort', onAbort);
      session.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const onAbort = () => done(new Error('stopping'));
    const timer = setTimeout(() => done(new Error('Workload API: no answer within 5 s')), 5_000);
    stopping.signal.addEventListener('abort', onAbort);
    session.on('error', (err) => done(err));
    const req = session.request({
      ':method': 'POST',
      ':path': '/SpiffeWorkloadAPI/FetchX509SVID',
      'content-type': 'application/grpc',
      te: 'trailers',
      // The header the agent requires of every Workload API call (it keeps browsers out).
      'workload.spiffe.io': 'true',
    });
    /** @param {import('node:http2').IncomingHttpHeaders} h */
    const status = (h) => {
      if (h['grpc-status'] !== undefined && h['grpc-status'] !== '0')
        done(
          new Error(`Workload API: ${decodeURIComponent(String(h['grpc-message'] ?? `status ${h['grpc-status']}`))}`),
        );
    };
    req.on('response', status); // a trailers-only answer (an error) comes in the headers
    req.on('trailers', status);
    req.on('error', (err) => done(err));
    let buf = Buffer.alloc(0);
    req.on('data', (/** @type {Buffer} */ chunk) => {
      buf = Buffer.concat([buf, chunk]);
      // gRPC framing: 1 byte compressed flag, 4 bytes length, the message.
      if (buf.length < 5 || buf.length < 5 + buf.readUInt32BE(1)) return;
      try {
        const svid = fieldsOf(buf.subarray(5, 5 + buf.readUInt32BE(1))).get(1)?.[0]; // svids[0]
        if (!svid) return done(new Error('Workload API: an answer without an SVID'));
        const f = fieldsOf(svid);
        const one = (/** @type {number} */ n) => f.get(n)?.[0] ?? Buffer.alloc(0);
        done(undefined, { id: one(1).toString('utf8'), chainDer: one(2), keyDer: one(3), bundleDer: one(4) });
      } catch (err) {
        done(/** @type {Error} */ (err));
      }
    });
    req.on('end', () => done(new Error('Workload API: the stream ended without an answer')));
    req.end(Buffer.alloc(5)); // an empty X509SVIDRequest: flag 0, length 0
  });
}

/**
 * The length-delimited fields of a protobuf message, by field number (all this
 * workload reads are strings, bytes and messages; varints and fixed fields are skipped).
 * @param {Buffer} msg
 * @returns {Map<number, Buffer[]>}
 */
function fieldsOf(msg) {
  /** @type {Map<number, Buffer[]>} */
  const out = new Map();
  let i = 0;
  const varint = () => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      if (i >= msg.length || shift > 49) throw new Error('Workload API: a malformed message');
      const b = msg[i++] ?? 0;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
  };
  while (i < msg.length) {
    const key = varint();
    const wire = key % 8;
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      if (i + len > msg.length) throw new Error('Workload API: a malformed message');
      const field = Math.floor(key / 8);
      out.set(field, [...(out.get(field) ?? []), msg.subarray(i, i + len)]);
      i += len;
    } else throw new Error('Workload API: a malformed message');
  }
  return out;
}

/**
 * PEM of DER certificates laid end to end (the Workload API's chain and bundle).
 * @param {Buffer} der
 */
function certsPem(der) {
  const pems = [];
  for (let i = 0; i < der.length;) {
    // Each is a SEQUENCE: 0x30, then its length (short form, or 0x8N and N bytes of it).
    if (der[i] !== 0x30) throw new Error('Workload API: a certificate that is not DER');
    const first = der[i + 1] ?? 0;
    const lenBytes = first & 0x80 ? first & 0x7f : 0;
    let len = lenBytes ? 0 : first;
    for (let k = 0; k < lenBytes; k++) len = len * 256 + (der[i + 2 + k] ?? 0);
    const end = i + 2 + lenBytes + len;
    pems.push(pem('CERTIFICATE', der.subarray(i, end)));
    i = end;
  }
  return pems.join('');
}

/** @param {string} label @param {Buffer} der */
const pem = (label, der) =>
  `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END ${label}-----\n`;

/**
 * Ask the agent for this process's X.509-SVID until it has one (the entry may not
 * have reached the agent yet), and keep it in `dir` (svid.0.pem, svid.0.key, bundle.0.pem,
 * as `spire-agent api fetch -write` lays them out).
 * @param {{ socket: string, dir: string }} o
 * @returns {Promise<Svid>}
 */
async function fetchSvid({ socket, dir }, deadlineMs = 60_000) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const got = await fetchX509Once(socket);
      const cert = certsPem(got.chainDer);
      const key = pem('PRIVATE KEY', got.keyDer);
      const ca = certsPem(got.bundleDer);
      writeFileSync(path.join(dir, 'svid.0.key'), key, { mode: 0o600 });
      writeFileSync(path.join(dir, 'svid.0.pem'), cert, { mode: 0o644 });
      writeFileSync(path.join(dir, 'bundle.0.pem'), ca, { mode: 0o644 });
      // X509Certificate reads the first certificate of the chain: the leaf.
      const leaf = new X509Certificate(cert);
      return {
        id: spiffeIdIn(leaf.subjectAltName) ?? got.id,
        cert,
        key,
        ca,
        notAfter: new Date(leaf.validTo),
        notBefore: new Date(leaf.validFrom),
      };
    } catch (err) {
      // "no identity issued" until the entry reaches the agent: keep asking.
      if (Date.now() > until || stopping.signal.aborted) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/**
 * The SPIFFE ID in a subjectAltName as Node shows it ("URI:spiffe://td/path, DNS:...").
 * @param {string | undefined} san
 */
function spiffeIdIn(san) {
  return (san ?? '')
    .split(', ')
    .find((s) => s.startsWith('URI:spiffe://'))
    ?.slice(4);
}

/** @param {Record<string, unknown>} obj */
const log = (obj) => console.log(JSON.stringify({ at: new Date().toISOString(), ...obj }));

/** @param {string} ip dotted IPv4 */
const ipv4ToInt = (ip) => ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);

/**
 * This host's IPv4 address inside `cidr`: the node's overlay address (the lab knows the
 * overlay's range, not the address the ledger will allocate, nor who names the interface).
 * @param {string} cidr "a.b.c.d/n"
 */
function addressIn(cidr) {
  const [net = '', bits = ''] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  const base = Math.floor(ipv4ToInt(net) / size);
  const addr = Object.values(networkInterfaces())
    .flat()
    .find((a) => a?.family === 'IPv4' && Math.floor(ipv4ToInt(a.address) / size) === base);
  if (!addr) throw new Error(`no IPv4 address of this host is inside ${cidr}`);
  return addr.address;
}

/**
 * @param {{ socket: string, dir: string }} o
 * @param {[string, number]} listen
 * @param {string[]} allow
 */
async function serve(o, [host, port], allow) {
  // Until it serves, stopping is just exiting (and ending a fetch in flight).
  /** @type {{ close: () => void }} */
  const stop = { close: () => process.exit(0) };
  process.on('SIGTERM', () => {
    stopping.abort();
    stop.close();
  });
  let svid = await fetchSvid(o);
  log({ event: 'svid', id: svid.id, notAfter: svid.notAfter.toISOString() });
  const context = () => ({ cert: svid.cert, key: svid.key, ca: svid.ca });
  const server = tls.createServer(
    { ...context(), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
    (sock) => {
      const caller = spiffeIdIn(sock.getPeerCertificate()?.subjectaltname);
      if (!caller || !allow.includes(caller)) {
        log({ event: 'refused', caller: caller ?? null });
        sock.end(JSON.stringify({ ok: false, refused: caller ?? null, reason: 'SPIFFE ID not allowed' }) + '\n');
        return;
      }
      log({ event: 'accepted', caller });
      sock.end(JSON.stringify({ ok: true, server: svid.id, client: caller }) + '\n');
    },
  );
  // Rotate at half-life, as SPIRE's own SDKs do.
  const rotate = () => {
    const half = Math.max(
      5_000,
      (svid.notAfter.getTime() - svid.notBefore.getTime()) / 2 - (Date.now() - svid.notBefore.getTime()),
    );
    const renew = async () => {
      try {
        svid = await fetchSvid(o);
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
  server.listen(port, host, () => log({ event: 'listening', listen: `${host}:${port}` }));
  stop.close = () => void server.close(() => process.exit(0));
}

/**
 * @param {{ socket: string, dir: string }} o
 * @param {string} connect
 * @param {string} expect
 * @returns {Promise<number>}
 */
async function call(o, connect, expect) {
  const svid = await fetchSvid(o);
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
        const id = spiffeIdIn(cert.subjectaltname);
        return id === expect ? undefined : new Error(`server presented ${id ?? 'no SPIFFE ID'}, expected ${expect}`);
      },
    });
    let body = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => (body += d));
    sock.on('end', () => {
      /** @type {{ ok: boolean }} */
      const reply = body.trim() ? JSON.parse(body.trim()) : { ok: false };
      console.log(
        JSON.stringify({
          client: svid.id,
          server: spiffeIdIn(sock.getPeerCertificate()?.subjectaltname) ?? null,
          reply,
        }),
      );
      resolve(reply.ok ? 0 : 1);
    });
    sock.on('error', (err) => {
      console.log(JSON.stringify({ client: svid.id, error: err.message }));
      resolve(1);
    });
    sock.setTimeout(10_000, () => sock.destroy(new Error('timed out')));
  });
}

/**
 * @param {string} hp "IP:PORT"
 * @returns {[string, number]}
 */
function splitHostPort(hp) {
  const i = hp.lastIndexOf(':');
  return [hp.slice(0, i), Number(hp.slice(i + 1))];
}

/** @returns {Promise<number>} the exit code, or -1 while it serves */
async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      socket: { type: 'string' },
      dir: { type: 'string' },
      'spire-agent': { type: 'string' }, // ignored (see the usage above)
      listen: { type: 'string' },
      'in-cidr': { type: 'string' },
      port: { type: 'string' },
      connect: { type: 'string' },
      expect: { type: 'string' },
      allow: { type: 'string', multiple: true, default: [] },
    },
  });
  const socket = values.socket ?? process.env.SPIFFE_ENDPOINT_SOCKET?.replace(/^unix:\/\//, '');
  if (!socket || !values.dir) return usage('--socket (or SPIFFE_ENDPOINT_SOCKET) and --dir are required');
  const o = { socket, dir: values.dir };
  switch (positionals[0]) {
    case 'serve':
      if (values.listen) await serve(o, splitHostPort(values.listen), values.allow);
      else if (values['in-cidr'] && values.port)
        await serve(o, [addressIn(values['in-cidr']), Number(values.port)], values.allow);
      else return usage('serve needs --listen IP:PORT, or --in-cidr CIDR and --port PORT');
      return -1;
    case 'call':
      if (!values.connect || !values.expect) return usage('call needs --connect IP:PORT and --expect SPIFFE_ID');
      return call(o, values.connect, values.expect);
    default:
      return usage('first argument must be "serve" or "call"');
  }
}

/** @param {string} msg */
function usage(msg) {
  console.error(`demo-workload: ${msg}`);
  return 2;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (/** @type {unknown} */ err) => {
    console.error(`demo-workload: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
