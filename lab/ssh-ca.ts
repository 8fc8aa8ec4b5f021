/**
 * A lab SSH certificate authority for the `sshpop` node attestor.
 *
 * The CA key stays with the lab (where a production CA keeps its key); its
 * public key, one authorized_keys line, is what the SPIRE server's sshpop
 * plugin trusts (`cert_authorities_path`). Each node's host key is made ON the
 * node (ssh-keygen through the node's transport: 0600, root's) and never leaves
 * it: only its public half is read, signed here as a host certificate
 * (`ssh-keygen -s ca -h`), and the certificate written back next to the key.
 *
 * For refusal tests the same path issues what a server must refuse: an expired
 * certificate, one naming another principal, one from a CA the server does not
 * trust (`createSshCa` a second time).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { NodeId, SafePath, parseName } from '../common/names.js';
import { runCommand } from '../activities/host/exec.js';
import type { HostTransport } from '../activities/host/transport.js';
import { ensureDir, readNodeFile, writeNodeFile } from '../activities/host/files.js';
import type { Lab } from './lab.js';
import { keygen } from './ssh.js';

export interface LabSshCa {
  dir: string;
  /** The CA's private key (lab host only, 0600). */
  keyFile: string;
  /** authorized_keys format: what `cert_authorities_path` names. */
  pubFile: string;
  /** "ssh-ed25519 AAAA... <comment>" */
  publicKey: string;
}

/** Files of a node's host key, as the sshpop agent plugin reads them. */
export interface NodeHostKey {
  /** Where the key lives. */
  transport: HostTransport;
  /** OpenSSH private key, unencrypted, 0600 root (agent `host_key_path`). Never read by the lab. */
  keyFile: string;
  pubFile: string;
  /** The host certificate (agent `host_cert_path`); written by `signHostKey`. */
  certFile: string;
}

export interface HostCertOptions {
  /** `-n`: the first one is what the server's `{{ .Hostname }}` becomes. */
  principals: string[];
  /** `-I` (the key id, logged by sshd; sshpop does not check it). Default: the first principal. */
  identity?: string;
  /** `-V` (ssh-keygen syntax). Default "-5m:+30d"; a window in the past ("20200101:20200102") gives an expired cert. */
  validity?: string;
  /** `-z`. Default: random. */
  serial?: bigint;
}

export interface IssuedHostCert extends NodeHostKey {
  principals: string[];
  identity: string;
  serial: bigint;
  /** The certificate's text (public). */
  cert: string;
}

// A node id, or "<nodeId>.<domain>" when the server sets canonical_domain (or, for tests, anything DNS-shaped).
const Principal = z
  .string()
  .max(253)
  .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$/, 'must be a lowercase DNS name');
// ssh-keygen -V: one or two times joined by ":", each "[-+]N[smhdw]...", "YYYYMMDD[HHMM[SS]]", "always" or "forever".
const TIME = '(?:[-+]?[0-9]+[smhdw]?(?:[0-9]+[smhdw])*|[0-9]{8}(?:[0-9]{4}(?:[0-9]{2})?)?|always|forever)';
const Validity = new RegExp(`^${TIME}(?::${TIME})?$`);

/**
 * Make (or reuse) a CA in `dir`: `ssh-ca` (0600) and `ssh-ca.pub`. Idempotent.
 * `dir` is made 0700; keep it out of any directory a node or workload can write.
 */
export async function createSshCa(dir: string, comment = 'nodeboot-lab-ssh-ca'): Promise<LabSshCa> {
  const d = parseName(SafePath, 'dir', dir);
  mkdirSync(d, { recursive: true, mode: 0o700 });
  const keyFile = path.join(d, 'ssh-ca');
  await keygen(keyFile, comment);
  const pubFile = `${keyFile}.pub`;
  return { dir: d, keyFile, pubFile, publicKey: readFileSync(pubFile, 'utf8').trim() };
}

/** Where the lab's server keeps its SSH CA (inside the server's directory: gone with it). */
export const labSshCaDir = (serverDir: string) => path.join(serverDir, 'pki', 'ssh-ca');

/** The SSH CA the lab's SPIRE server trusts (made by the server's setup, lab/spire-server.ts). */
export function labSshCa(lab: Lab): Promise<LabSshCa> {
  if (!lab.spire) throw new Error(`lab ${lab.prefix} runs no SPIRE server`);
  return createSshCa(labSshCaDir(lab.spire.dataDir));
}

/** sshpop input fields for a node's host key and certificate. */
export const sshpopAttestorInput = (c: Pick<NodeHostKey, 'keyFile' | 'certFile'>) => ({
  type: 'sshpop' as const,
  hostKeyPath: c.keyFile,
  hostCertPath: c.certFile,
});

/** Where a lab node keeps its attestation host key (`<node dir>/attest`). */
export function labHostKeyDir(lab: Lab, nodeName: string): string {
  return path.join(lab.node(nodeName).dir, 'attest');
}

/** The sshpop file names inside `dir`. */
export function hostKeyPaths(dir: string): { keyFile: string; pubFile: string; certFile: string } {
  const keyFile = path.join(parseName(SafePath, 'dir', dir), 'ssh_host_ed25519_key');
  return { keyFile, pubFile: `${keyFile}.pub`, certFile: `${keyFile}-cert.pub` };
}

/**
 * A host key made on the node, in `dir` (0700, root's): `ssh_host_ed25519_key`
 * (0600) and its `.pub`. An existing key is kept (a node keeps its host key
 * across certificate renewals). Only public files are read back.
 */
export async function makeNodeHostKey(t: HostTransport, dir: string, comment: string): Promise<NodeHostKey> {
  const paths = hostKeyPaths(dir);
  await ensureDir(t, path.dirname(paths.keyFile), 0o700);
  await keygen(paths.keyFile, comment, t);
  // ssh-keygen writes the private key 0600 as the caller (root); assert it, the agent trusts the file.
  const st = await t.run('stat', ['-c', '%u %a %F', '--', paths.keyFile]);
  if (st.stdout.trim() !== '0 600 regular file')
    throw new Error(`${paths.keyFile} on ${t.label} is "${st.stdout.trim()}", expected root's 0600 regular file`);
  return { transport: t, ...paths };
}

/**
 * Sign the node's host public key as a host certificate and write it to the
 * node (`certFile`, 0644; replaces an earlier one). The signing runs here, on
 * the CA's side; the private key is not touched.
 */
export async function signHostKey(ca: LabSshCa, host: NodeHostKey, opts: HostCertOptions): Promise<IssuedHostCert> {
  if (opts.principals.length === 0) throw new Error('a host certificate needs at least one principal');
  const principals = opts.principals.map((p, i) => parseName(Principal, `principals[${i}]`, p));
  const identity = opts.identity ?? principals[0]!;
  const validity = opts.validity ?? '-5m:+30d';
  if (!Validity.test(validity)) throw new Error(`validity "${validity}" is not an ssh-keygen -V window`);
  const serial = opts.serial ?? BigInt(`0x${randomBytes(7).toString('hex')}`);
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(identity))
    throw new Error(`identity "${identity}" has characters ssh-keygen -I should not get`);

  const pub = await readNodeFile(host.transport, host.pubFile);
  if (!pub || !/^ssh-ed25519 [A-Za-z0-9+/=]+(?: \S.*)?\n?$/.test(pub))
    throw new Error(`${host.pubFile} on ${host.transport.label} is not an ed25519 public key`);
  const work = path.join(ca.dir, 'issue', randomBytes(6).toString('hex'));
  mkdirSync(work, { recursive: true, mode: 0o700 });
  try {
    const pubCopy = path.join(work, 'host.pub');
    await runCommand('sh', ['-c', 'umask 022; cat > "$1"', 'write', pubCopy], { input: pub });
    await runCommand('ssh-keygen', [
      '-q',
      '-s',
      ca.keyFile,
      '-h',
      '-I',
      identity,
      '-n',
      principals.join(','),
      '-V',
      validity,
      '-z',
      serial.toString(),
      pubCopy,
    ]);
    const cert = readFileSync(path.join(work, 'host-cert.pub'), 'utf8');
    await writeNodeFile(host.transport, host.certFile, cert, 0o644);
    return { ...host, principals, identity, serial, cert };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface LabHostCertOptions extends Partial<HostCertOptions> {
  /** Sign with this CA instead of the lab's (the "another CA" refusal). */
  ca?: LabSshCa;
  /** Where on the node (default `labHostKeyDir`). */
  dir?: string;
}

/**
 * A lab node's sshpop credentials: a host key made on the node (kept if it
 * exists) and a certificate from the lab's SSH CA for `nodeId` (principal and
 * key id), valid from 5 minutes ago for 30 days, unless `opts` says otherwise.
 */
export async function issueNodeHostCert(
  lab: Lab,
  nodeName: string,
  nodeId: string,
  opts: LabHostCertOptions = {},
): Promise<IssuedHostCert> {
  const id = parseName(NodeId, 'nodeId', nodeId);
  const ca = opts.ca ?? (await labSshCa(lab));
  const host = await makeNodeHostKey(lab.nodeTransport(nodeName), opts.dir ?? labHostKeyDir(lab, nodeName), id);
  return signHostKey(ca, host, {
    principals: opts.principals ?? [id],
    identity: opts.identity ?? id,
    validity: opts.validity,
    serial: opts.serial,
  });
}

/** Refusal test: a certificate whose validity ended in 2020. */
export function issueExpiredHostCert(
  lab: Lab,
  nodeName: string,
  nodeId: string,
  opts: LabHostCertOptions = {},
): Promise<IssuedHostCert> {
  return issueNodeHostCert(lab, nodeName, nodeId, { ...opts, validity: '20200101:20200102' });
}

/** Refusal test: a certificate from the trusted CA that names `principal` (e.g. another node's id). */
export function issueHostCertForPrincipal(
  lab: Lab,
  nodeName: string,
  nodeId: string,
  principal: string,
  opts: LabHostCertOptions = {},
): Promise<IssuedHostCert> {
  return issueNodeHostCert(lab, nodeName, nodeId, { ...opts, principals: [principal], identity: principal });
}

/** Refusal test: a certificate for `nodeId` from a CA of its own (under `<lab>/ssh-ca-rogue`), which the server does not trust. */
export async function issueHostCertFromOtherCa(
  lab: Lab,
  nodeName: string,
  nodeId: string,
  opts: LabHostCertOptions = {},
): Promise<IssuedHostCert & { otherCa: LabSshCa }> {
  const otherCa = await createSshCa(path.join(lab.state.dir, 'ssh-ca-rogue'), 'nodeboot-lab-rogue-ssh-ca');
  return { ...(await issueNodeHostCert(lab, nodeName, nodeId, { ...opts, ca: otherCa })), otherCa };
}

/** Remove a node's host key and certificate (what a decommissioned lab node no longer holds). */
export async function removeNodeHostKey(
  host: Pick<NodeHostKey, 'transport' | 'keyFile' | 'pubFile' | 'certFile'>,
): Promise<void> {
  await host.transport.run('rm', ['-f', '--', host.keyFile, host.pubFile, host.certFile]);
}

/** True when the lab host has `ssh-keygen` (openssh-client). */
export function haveSshKeygen(): boolean {
  return ['/usr/bin/ssh-keygen', '/bin/ssh-keygen'].some((p) => existsSync(p));
}
