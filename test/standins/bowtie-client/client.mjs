// A stand-in for the Bowtie client daemon on a node: a TEST DOUBLE, never
// shipped. The stand-in .deb (../bowtie-package.ts) installs it and its
// postinst starts it inside the node's network namespace.
//
// What it does, as ../../../../shared/bowtie-api.md describes the real client:
//   - reads /etc/bowtie/configuration/config.toml (under the install root):
//     `entrypoint` and `auth_prompt_strategy = "never"` (unattended);
//   - makes the device key on the node (`wg genkey`, 0600); only the public
//     key leaves, in the enrollment;
//   - serves the local API on 127.0.0.1:17133:
//       GET /organizations/states        → { pending_device: { id } | null }
//       GET /organizations/active/device → { id, state, public_key }
//   - once the controller accepts the device, brings up a real wireguard-go
//     tunnel to the controller with the address the controller assigned, and
//     routes through it only what the controller's policy lets the device
//     reach (kept in step as that changes); when the device is rejected or
//     deleted, takes the tunnel down.
// It talks to the stand-in controller over a unix socket with a private
// protocol (config keys standin_*): the real client-controller protocol is
// Bowtie's own. That channel is TLS, verified against the CA in
// `standin_ca_file` (the tests' CA) for the host of the first `entrypoint`,
// which must be https: the client trusts the controller it was seeded with,
// and nothing else. Plain Node, no dependencies, so it starts fast.
import { Buffer } from 'node:buffer';
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { clearTimeout, setTimeout } from 'node:timers';

const root = process.argv[process.argv.indexOf('--root') + 1] ?? '';
const stateDir = `${root}/var/lib/bowtie`;
const log = (msg) => process.stdout.write(`${new Date().toISOString()} ${msg}\n`);

/** The TOML subset config.toml uses: key = "string" | number | true/false | ["a", "b"]. */
function parseToml(text) {
  const out = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z0-9_-]+)\s*=\s*(.+)$/.exec(line);
    if (!m) throw new Error(`config.toml: cannot read line "${line}"`);
    out[m[1]] = JSON.parse(m[2]);
  }
  return out;
}

const configPath = `${root}/etc/bowtie/configuration/config.toml`;
if (!existsSync(configPath)) {
  log(`no ${configPath}: nothing to enroll with`);
  process.exit(1);
}
const config = parseToml(readFileSync(configPath, 'utf8'));
for (const k of ['entrypoint', 'standin_controller_socket', 'standin_interface', 'standin_serial', 'standin_ca_file']) {
  if (config[k] === undefined) {
    log(`config.toml has no ${k}`);
    process.exit(1);
  }
}
const entrypoint = new URL(config.entrypoint[0]);
if (entrypoint.protocol !== 'https:') {
  log(`entrypoint ${entrypoint.href} is not https: refusing to enroll`);
  process.exit(1);
}
const controllerCa = readFileSync(config.standin_ca_file, 'utf8');
const unattended = config.auth_prompt_strategy === 'never';
const iface = config.standin_interface;

mkdirSync(stateDir, { recursive: true, mode: 0o700 });
writeFileSync(`${stateDir}/client.pid`, `${process.pid}\n`);
const keyFile = `${stateDir}/device.key`;
if (!existsSync(keyFile)) writeFileSync(keyFile, execFileSync('wg', ['genkey']), { mode: 0o600 });
const publicKey = execFileSync('wg', ['pubkey'], { input: readFileSync(keyFile) })
  .toString()
  .trim();
const idFile = `${stateDir}/device-id`;
if (!existsSync(idFile)) writeFileSync(idFile, randomUUID());
const deviceId = readFileSync(idFile, 'utf8').trim();

/** The last answer from the controller: { state, ipv4, prefixLength, routes, controller } or null. */
let device = null;
let tunnelUp = false;
/** The routes (peer allowed-ips) in force, comma-joined. */
let routesInForce = null;

function controller(method, path, body) {
  return new Promise((resolve, reject) => {
    // Verified TLS: the tests' CA, and the certificate must name the entrypoint's host.
    const tls = {
      ca: controllerCa,
      host: entrypoint.hostname,
      servername: /^[\d.]+$/.test(entrypoint.hostname) ? undefined : entrypoint.hostname,
    };
    const req = https.request(
      {
        socketPath: config.standin_controller_socket,
        method,
        path,
        headers: { 'content-type': 'application/json' },
        ...tls,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') }),
        );
      },
    );
    req.on('error', reject);
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
const linkExists = () => {
  try {
    run('ip', ['link', 'show', 'dev', iface]);
    return true;
  } catch {
    return false;
  }
};

async function bringUp(d) {
  if (!linkExists()) {
    const child = spawn('wireguard-go', ['-f', iface], {
      stdio: ['ignore', 'ignore', 'ignore'],
      env: {
        ...process.env,
        WG_PROCESS_FOREGROUND: '1',
        LOG_LEVEL: 'error',
        WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1',
      },
    });
    child.unref();
    for (let i = 0; i < 100; i++) {
      if (linkExists() && existsSync(`/var/run/wireguard/${iface}.sock`)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  run('wg', ['set', iface, 'private-key', keyFile]);
  run('ip', ['addr', 'replace', `${d.ipv4}/${d.prefixLength}`, 'dev', iface]);
  run('ip', ['link', 'set', iface, 'mtu', '1420', 'up']);
  run('wg', [
    'set',
    iface,
    'peer',
    d.controller.publicKey,
    'endpoint',
    d.controller.endpoint,
    'persistent-keepalive',
    '5',
  ]);
  tunnelUp = true;
  log(`accepted: tunnel ${iface} up with ${d.ipv4}/${d.prefixLength}`);
  applyRoutes(d);
}

/** Route through the tunnel exactly what the policy grants (WireGuard drops anything else). */
function applyRoutes(d) {
  const routes = d.routes.join(',');
  if (routes === routesInForce) return;
  run('wg', ['set', iface, 'peer', d.controller.publicKey, 'allowed-ips', routes]);
  routesInForce = routes;
  log(`routes: ${routes || 'none'}`);
}

function takeDown(why) {
  if (linkExists()) run('ip', ['link', 'del', 'dev', iface]);
  if (tunnelUp) log(`tunnel down: ${why}`);
  tunnelUp = false;
  routesInForce = null;
}

async function tick() {
  if (!unattended) return; // a real client would prompt a user to log in
  try {
    const r = device
      ? await controller('GET', `/standin/client/device/${deviceId}`)
      : await controller('POST', '/standin/client/enroll', {
          id: deviceId,
          name: `node-${config.standin_serial}`,
          publicKey,
          serial: config.standin_serial,
          entrypoint: config.entrypoint,
        });
    if (r.status === 404) {
      device = null; // deleted on the controller: enroll again as a new pending device
      takeDown('device deleted');
      return;
    }
    if (r.status !== 200) return log(`controller answered ${r.status}: ${JSON.stringify(r.body)}`);
    device = r.body;
    if (device.state === 'accepted' && !tunnelUp) await bringUp(device);
    else if (device.state === 'accepted') applyRoutes(device);
    if (device.state !== 'accepted' && tunnelUp) takeDown(`device ${device.state}`);
  } catch (err) {
    log(`controller unreachable: ${err.message}`);
  }
}

const api = http.createServer((req, res) => {
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && req.url === '/organizations/states') {
    return reply(200, { pending_device: device?.state === 'pending' ? { id: deviceId } : null });
  }
  if (req.method === 'GET' && req.url === '/organizations/active/device') {
    return device
      ? reply(200, { id: deviceId, state: device.state, public_key: publicKey })
      : reply(404, { error: 'not enrolled' });
  }
  reply(404, { error: 'no route' });
});
api.listen(17133, '127.0.0.1', () =>
  log(
    `local API on 127.0.0.1:17133, device ${deviceId}${unattended ? '' : ' (would prompt: auth_prompt_strategy is not "never")'}`,
  ),
);

let timer = null;
const loop = async () => {
  await tick();
  timer = setTimeout(loop, 1000);
};
void loop();

process.on('SIGTERM', () => {
  clearTimeout(timer);
  takeDown('client stopped');
  api.close();
  rmSync(`${stateDir}/client.pid`, { force: true });
  process.exit(0);
});
