/**
 * Software TPMs for the lab's tpm_devid attestor: one swtpm per lab node, with
 * an EK certificate and a DevID key and certificate, as a TPM vendor and a
 * device owner would have provisioned a real machine.
 *
 *   authority (one per lab)   an EK CA that swtpm_localca signs every EK
 *                             certificate with (the TPM vendor's role), and a
 *                             DevID CA (the owner's role). The SPIRE server
 *                             trusts both (endorsement_ca_path, devid_ca_path).
 *   node TPM (one per node)   <dir>/state: swtpm's NVRAM, EK cert in NV 0x01c00002;
 *                             <dir>/swtpm.sock: the TPM command channel the agent
 *                             opens as tpm_device_path (go-tpm dials a unix socket,
 *                             one connection per command);
 *                             <dir>/devid.{pub,priv}: the DevID key blobs, wrapped
 *                             by the TPM under SPIRE's SRK (useless off this TPM);
 *                             <dir>/devid.pem: its certificate, CN = the node id.
 *
 * swtpm runs inside the node's network namespace (through its transport), so
 * the lab's teardown, which kills every process in its namespaces, takes it
 * too; `stopSwtpm` stops it on purpose. Files are written directly: the lab's
 * namespaces share this machine's filesystem.
 *
 * No resource manager sits in front of swtpm: every object a tpm2-tools call
 * loads stays loaded (three fill the TPM: "out of memory for object
 * contexts"), so each call is followed by a flush, and `flushTpm` empties the
 * TPM before an agent uses it.
 */
// @peculiar/x509's dependency injection needs the Reflect metadata polyfill first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ToolError } from '../activities/host/exec.js';
import type { HostTransport } from '../activities/host/transport.js';
import { daemonAlive, readProcessRef, sleep, stopDaemon, writePidFile } from '../activities/host/process.js';
import { tpmDevidServerPluginData } from '../activities/spire/attestors/tpm-devid.js';
import type { Lab } from './lab.js';

x509.cryptoProvider.set(webcrypto as never);

const DAY = 24 * 3600 * 1000;
const RSA = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
} as const;
const AUTHORITY_FILE = 'authority.json';

/** The trust anchors of the lab's TPMs. Paths are on this machine (the hub's and the nodes' filesystem). */
export interface TpmAuthority {
  dir: string;
  /** The EK CA certificate: it signs every EK certificate directly (SPIRE trusts EK issuers as roots, without intermediates). */
  endorsementCaPath: string;
  /** The DevID CA certificate (devid_ca_path). */
  devidCaPath: string;
  /** sha1 of the DevID CA certificate (DER), hex: the server's `tpm_devid:ca:fingerprint:` selector value. */
  devidCaFingerprint: string;
  /** Private keys of both CAs (0600): lab only. */
  devidCaKeyPath: string;
  endorsementCaKeyPath: string;
  /** swtpm_setup's config, pointing it at swtpm_localca and the EK CA. */
  setupConfigPath: string;
}

export interface DevidCa {
  certPath: string;
  keyPath: string;
}

const writePrivate = (file: string, text: string) => writeFileSync(file, text, { mode: 0o600 });
const pemKey = async (k: webcrypto.CryptoKey) =>
  x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY');
const serial = () => {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
};

async function selfSignedCa(
  cn: string,
  validityDays: number,
): Promise<{ cert: x509.X509Certificate; keys: webcrypto.CryptoKeyPair }> {
  const keys = (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${cn}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + validityDays * DAY),
    signingAlgorithm: RSA,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}

/** A DevID CA (certificate + key, 0600) in `dir`: the lab's own, or another one for refusal tests. */
export async function createDevidCa(dir: string, cn: string, validityDays = 30): Promise<DevidCa> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { cert, keys } = await selfSignedCa(cn, validityDays);
  const ca = { certPath: path.join(dir, 'devid-ca.pem'), keyPath: path.join(dir, 'devid-ca.key') };
  writePrivate(ca.keyPath, await pemKey(keys.privateKey));
  writeFileSync(ca.certPath, cert.toString('pem'), { mode: 0o644 });
  return ca;
}

export const certFingerprint = (pem: string) =>
  createHash('sha1')
    .update(Buffer.from(new x509.X509Certificate(pem).rawData))
    .digest('hex');

/**
 * Make the lab's EK CA and DevID CA in `dir` (mode 0700; keys 0600) and
 * swtpm_setup's config. Made before the SPIRE server starts: its tpm_devid
 * plugin reads both CA files when it is configured.
 */
export async function createTpmAuthority(
  dir: string,
  opts: { name?: string; validityDays?: number } = {},
): Promise<TpmAuthority> {
  const name = opts.name ?? 'nodeboot lab';
  const days = opts.validityDays ?? 30;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ek = await selfSignedCa(`${name} EK CA`, days);
  const a: TpmAuthority = {
    dir,
    endorsementCaPath: path.join(dir, 'ek-ca.pem'),
    endorsementCaKeyPath: path.join(dir, 'ek-ca.key'),
    ...(await createDevidCa(dir, `${name} DevID CA`, days).then((d) => ({
      devidCaPath: d.certPath,
      devidCaKeyPath: d.keyPath,
    }))),
    devidCaFingerprint: '',
    setupConfigPath: path.join(dir, 'swtpm_setup.conf'),
  };
  a.devidCaFingerprint = certFingerprint(readFileSync(a.devidCaPath, 'utf8'));
  writePrivate(a.endorsementCaKeyPath, await pemKey(ek.keys.privateKey));
  writeFileSync(a.endorsementCaPath, ek.cert.toString('pem'), { mode: 0o644 });
  // swtpm_localca signs with an existing signingkey/issuercert and makes a CA of its own only when they are missing.
  const localca = path.join(dir, 'swtpm-localca.conf');
  const options = path.join(dir, 'swtpm-localca.options');
  writeFileSync(
    localca,
    [
      `statedir = ${dir}`,
      `signingkey = ${a.endorsementCaKeyPath}`,
      `issuercert = ${a.endorsementCaPath}`,
      `certserial = ${path.join(dir, 'ek-certserial')}`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    options,
    ['--platform-manufacturer nodeboot', '--platform-version 1.0', '--platform-model swtpm', ''].join('\n'),
  );
  writeFileSync(
    a.setupConfigPath,
    [
      'create_certs_tool = /usr/bin/swtpm_localca',
      `create_certs_tool_config = ${localca}`,
      `create_certs_tool_options = ${options}`,
      'active_pcr_banks = sha256',
      '',
    ].join('\n'),
  );
  writeFileSync(path.join(dir, AUTHORITY_FILE), JSON.stringify(a, null, 2) + '\n');
  return a;
}

/** The authority kept in `dir`, made on first use. Idempotent: later calls load the same CAs. */
export async function ensureTpmAuthority(
  dir: string,
  opts: { name?: string; validityDays?: number } = {},
): Promise<TpmAuthority> {
  const file = path.join(dir, AUTHORITY_FILE);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as TpmAuthority;
  return createTpmAuthority(dir, opts);
}

/** Where the lab's server keeps its TPM authority (inside the server's directory: gone with it). */
export const labTpmAuthorityDir = (serverDir: string) => path.join(serverDir, 'pki', 'tpm');

/** The TPM authority the lab's SPIRE server trusts. */
export function labTpmAuthority(lab: Lab): Promise<TpmAuthority> {
  if (!lab.spire) throw new Error(`lab ${lab.prefix} runs no SPIRE server`);
  return ensureTpmAuthority(labTpmAuthorityDir(lab.spire.dataDir));
}

/** The lab server's NodeAttestor "tpm_devid" set-up (lab/spire-server.ts LAB_SERVER_ATTESTORS). */
export const labServerTpmDevid = {
  setup: async (serverDir: string) => tpmDevidServerPluginData(await ensureTpmAuthority(labTpmAuthorityDir(serverDir))),
};

/** One node's software TPM and DevID. */
export interface NodeTpm {
  dir: string;
  /** The TPM command channel: the agent's tpm_device_path. */
  socketPath: string;
  /** TPMT_PUBLIC / TPM2B_PRIVATE body of the DevID key (no TPM2B size prefix: what SPIRE's tpm2.Load takes). */
  devidPubPath: string;
  devidPrivPath: string;
  devidCertPath: string;
  /** The DevID public key, SPKI PEM (to issue more certificates for the same key). */
  devidPubPemPath: string;
  /** sha1 of the DevID certificate (DER), hex: the agent ID's last segment. */
  devidCertSha1: string;
  pidFile: string;
  logFile: string;
}

export function nodeTpmPaths(dir: string): Omit<NodeTpm, 'devidCertSha1'> & { stateDir: string; ctrlPath: string } {
  return {
    dir,
    stateDir: path.join(dir, 'state'),
    socketPath: path.join(dir, 'swtpm.sock'),
    ctrlPath: path.join(dir, 'swtpm.sock.ctrl'),
    devidPubPath: path.join(dir, 'devid.pub'),
    devidPrivPath: path.join(dir, 'devid.priv'),
    devidCertPath: path.join(dir, 'devid.pem'),
    devidPubPemPath: path.join(dir, 'devid-pub.pem'),
    pidFile: path.join(dir, 'swtpm.pid'),
    logFile: path.join(dir, 'swtpm.log'),
  };
}

export interface IssueDevidOptions {
  ca: DevidCa;
  /** SPKI PEM of the DevID key. */
  publicKeyPem: string;
  /** The subject CN: the node id the certificate binds the key to. */
  cn: string;
  notBefore?: Date;
  notAfter?: Date;
}

/** A DevID certificate (PEM) for a TPM-resident key. No CSR: the key cannot leave the TPM, so its public half is certified directly. */
export async function issueDevidCert(o: IssueDevidOptions): Promise<string> {
  const caCert = new x509.X509Certificate(readFileSync(o.ca.certPath, 'utf8'));
  const caKey = await webcrypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(readFileSync(o.ca.keyPath, 'utf8')),
    RSA,
    false,
    ['sign'],
  );
  const publicKey = await webcrypto.subtle.importKey('spki', x509.PemConverter.decodeFirst(o.publicKeyPem), RSA, true, [
    'verify',
  ]);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${o.cn}`,
    issuer: caCert.subject,
    notBefore: o.notBefore ?? new Date(now - 5 * 60_000),
    notAfter: o.notAfter ?? new Date(now + 90 * DAY),
    signingAlgorithm: RSA,
    publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return cert.toString('pem');
}

/** Replace the node's DevID certificate (same TPM key): how tests present another CA's or another node's certificate. */
export async function reissueDevidCert(tpm: NodeTpm, o: Omit<IssueDevidOptions, 'publicKeyPem'>): Promise<NodeTpm> {
  const pem = await issueDevidCert({ ...o, publicKeyPem: readFileSync(tpm.devidPubPemPath, 'utf8') });
  writeFileSync(tpm.devidCertPath, pem, { mode: 0o644 });
  return { ...tpm, devidCertSha1: certFingerprint(pem) };
}

const tcti = (dir: string) => ({ TPM2TOOLS_TCTI: `swtpm:path=${nodeTpmPaths(dir).socketPath}` });

/** A tpm2-tools call against the node's swtpm. */
async function tpm2(t: HostTransport, dir: string, tool: string, args: string[], timeoutMs: number): Promise<string> {
  const r = await t.run(tool, args, { env: tcti(dir), timeoutMs, allowNonZeroExit: true });
  if (r.exitCode !== 0)
    throw new ToolError(
      'ToolFailed',
      `${tool} on ${t.label} failed: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`,
      tool,
      r.exitCode,
    );
  return r.stdout;
}

/** Flush every transient object and session from the node's TPM (nothing else uses it meanwhile). */
export async function flushTpm(t: HostTransport, dir: string, timeoutMs = 30_000): Promise<void> {
  await tpm2(t, dir, 'tpm2_flushcontext', ['-t'], timeoutMs);
  await tpm2(t, dir, 'tpm2_flushcontext', ['-l'], timeoutMs);
  await tpm2(t, dir, 'tpm2_flushcontext', ['-s'], timeoutMs);
}

/** True while the node's swtpm (from its pid file) runs. */
export async function swtpmRunning(t: HostTransport, dir: string): Promise<boolean> {
  const ref = await readProcessRef(t, nodeTpmPaths(dir).pidFile);
  return ref !== undefined && (await daemonAlive(t, ref, 'swtpm'));
}

/**
 * Start the node's swtpm on its state (kept when it runs already) and wait
 * until it answers a TPM command. `startup-clear`: a fresh start is a TPM
 * reset, so nothing an earlier client left loaded survives it.
 */
export async function startSwtpm(t: HostTransport, dir: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  const p = nodeTpmPaths(dir);
  if (await swtpmRunning(t, dir)) return;
  rmSync(p.socketPath, { force: true });
  rmSync(p.ctrlPath, { force: true });
  const pid = await t.spawnDaemon(
    'swtpm',
    [
      'socket',
      '--tpm2',
      '--tpmstate',
      `dir=${p.stateDir}`,
      '--server',
      `type=unixio,path=${p.socketPath},mode=0600`,
      '--ctrl',
      `type=unixio,path=${p.ctrlPath},mode=0600`,
      '--flags',
      'not-need-init,startup-clear',
    ],
    { logFile: p.logFile },
  );
  const ref = await writePidFile(t, p.pidFile, pid);
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    if (existsSync(p.socketPath) && statSync(p.socketPath).isSocket()) {
      const r = await t.run('tpm2_getrandom', ['--hex', '8'], {
        env: tcti(dir),
        allowNonZeroExit: true,
        timeoutMs: 10_000,
      });
      if (r.exitCode === 0) return;
    }
    if (!(await daemonAlive(t, ref, 'swtpm')))
      throw new ToolError('ToolFailed', `swtpm on ${t.label} exited at start (log ${p.logFile})`, 'swtpm');
    if (Date.now() >= deadline) {
      await stopDaemon(t, ref, { program: 'swtpm' });
      throw new ToolError(
        'ToolFailed',
        `swtpm on ${t.label} did not answer within ${opts.timeoutMs ?? 30_000} ms (log ${p.logFile})`,
        'swtpm',
      );
    }
    await sleep(100);
  }
}

/** Stop the node's swtpm (SIGTERM, then SIGKILL; waits until it is gone). False when none ran. Idempotent. */
export async function stopSwtpm(t: HostTransport, dir: string): Promise<boolean> {
  const p = nodeTpmPaths(dir);
  const ref = await readProcessRef(t, p.pidFile);
  const stopped = ref !== undefined && (await stopDaemon(t, ref, { program: 'swtpm', graceMs: 5_000 }));
  rmSync(p.pidFile, { force: true });
  return stopped;
}

export interface ProvisionTpmOptions {
  /** The node's TPM directory (made fresh: an earlier TPM there is stopped and wiped). Keep it short: the socket lives in it. */
  dir: string;
  authority: TpmAuthority;
  /** The DevID certificate's subject CN: the node id. */
  nodeId: string;
  /** Per tpm2-tools / swtpm_setup call (RSA keygens are slow on a busy machine). Default 120 s. */
  timeoutMs?: number;
  devidNotBefore?: Date;
  devidNotAfter?: Date;
}

/**
 * Manufacture the node's TPM (EK + EK certificate from the lab's EK CA), start
 * it, create its DevID key under SPIRE's SRK and certify it with the lab's
 * DevID CA for `nodeId`. Leaves swtpm running and empty (flushed).
 */
export async function provisionNodeTpm(t: HostTransport, o: ProvisionTpmOptions): Promise<NodeTpm> {
  const p = nodeTpmPaths(o.dir);
  const timeoutMs = o.timeoutMs ?? 120_000;
  if (Buffer.byteLength(p.ctrlPath) > 107)
    throw new ToolError('InvalidInput', `dir is too long for a unix socket path (${p.ctrlPath})`, 'swtpm');
  await stopSwtpm(t, o.dir);
  rmSync(o.dir, { recursive: true, force: true });
  mkdirSync(p.stateDir, { recursive: true, mode: 0o700 });

  // The EK (RSA-2048, TCG default template: what SPIRE regenerates) and its certificate in NV 0x01c00002.
  const setup = await t.run(
    'swtpm_setup',
    [
      '--tpm2',
      '--tpmstate',
      p.stateDir,
      '--create-ek-cert',
      '--config',
      o.authority.setupConfigPath,
      '--overwrite',
      '--runas',
      'root',
    ],
    { timeoutMs, allowNonZeroExit: true },
  );
  if (setup.exitCode !== 0)
    throw new ToolError(
      'ToolFailed',
      `swtpm_setup on ${t.label} failed: ${setup.stderr.trim().split('\n').slice(-3).join(' ')}`,
      'swtpm_setup',
      setup.exitCode,
    );

  await startSwtpm(t, o.dir, { timeoutMs });
  try {
    const srk = path.join(o.dir, 'srk.ctx');
    const pub2b = path.join(o.dir, 'devid.tpm2b_pub');
    const priv2b = path.join(o.dir, 'devid.tpm2b_priv');
    await flushTpm(t, o.dir, timeoutMs);
    // SPIRE's SRK: SRKTemplateHighRSA = RSA-2048, AES-128-CFB, restricted decrypt, empty unique (tpm2-tools' default).
    await tpm2(
      t,
      o.dir,
      'tpm2_createprimary',
      [
        '-Q',
        '-C',
        'o',
        '-g',
        'sha256',
        '-G',
        'rsa2048:null:aes128cfb',
        '-a',
        'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt|noda',
        '-c',
        srk,
      ],
      timeoutMs,
    );
    // The DevID: a signing key with scheme RSASSA-SHA256 (SPIRE checks the challenge signature as SHA256WithRSA).
    await tpm2(
      t,
      o.dir,
      'tpm2_create',
      [
        '-Q',
        '-C',
        srk,
        '-g',
        'sha256',
        '-G',
        'rsa2048:rsassa-sha256:null',
        '-a',
        'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign',
        '-u',
        pub2b,
        '-r',
        priv2b,
      ],
      timeoutMs,
    );
    await flushTpm(t, o.dir, timeoutMs);
    const pubPem = await tpm2(t, o.dir, 'tpm2_print', ['-t', 'TPM2B_PUBLIC', '-f', 'pem', pub2b], timeoutMs);
    writeFileSync(p.devidPubPemPath, pubPem, { mode: 0o644 });
    // tpm2-tools writes TPM2B_* (a u16 size, then the body); SPIRE's agent wants the bodies (tpm2.DecodePublic, tpm2.Load).
    writeFileSync(p.devidPubPath, stripTpm2b(readFileSync(pub2b), 'devid public'), { mode: 0o644 });
    writeFileSync(p.devidPrivPath, stripTpm2b(readFileSync(priv2b), 'devid private'), { mode: 0o600 });
    rmSync(pub2b, { force: true });
    rmSync(priv2b, { force: true });
    rmSync(srk, { force: true });
  } catch (err) {
    await stopSwtpm(t, o.dir);
    throw err;
  }
  const pem = await issueDevidCert({
    ca: { certPath: o.authority.devidCaPath, keyPath: o.authority.devidCaKeyPath },
    publicKeyPem: readFileSync(p.devidPubPemPath, 'utf8'),
    cn: o.nodeId,
    notBefore: o.devidNotBefore,
    notAfter: o.devidNotAfter,
  });
  writeFileSync(p.devidCertPath, pem, { mode: 0o644 });
  return { ...p, devidCertSha1: certFingerprint(pem) };
}

function stripTpm2b(buf: Buffer, what: string): Buffer {
  if (buf.length < 2 || buf.readUInt16BE(0) !== buf.length - 2)
    throw new ToolError('ToolFailed', `${what}: not a TPM2B blob (size prefix does not match)`, 'tpm2_create');
  return buf.subarray(2);
}

/** What an input's spire.nodeAttestor names for a node TPM. */
export function tpmDevidAttestorSpec(tpm: NodeTpm) {
  return {
    type: 'tpm_devid' as const,
    tpmDevicePath: tpm.socketPath,
    devidCertPath: tpm.devidCertPath,
    devidPrivPath: tpm.devidPrivPath,
    devidPubPath: tpm.devidPubPath,
  };
}

/** The TPM directory of a lab node (its "hardware": kept across runs of the node, gone with the lab). */
export const labNodeTpmDir = (lab: Lab, nodeName: string) => path.join(lab.node(nodeName).dir, 'tpm');

/**
 * Give lab node `nodeName` a fresh software TPM, running in its network
 * namespace, with a DevID for `nodeId` from the lab's DevID CA.
 */
export async function provisionLabNodeTpm(
  lab: Lab,
  nodeName: string,
  nodeId: string,
  o: Omit<ProvisionTpmOptions, 'dir' | 'authority' | 'nodeId'> = {},
): Promise<NodeTpm> {
  return provisionNodeTpm(lab.nodeTransport(nodeName), {
    ...o,
    dir: labNodeTpmDir(lab, nodeName),
    authority: await labTpmAuthority(lab),
    nodeId,
  });
}
