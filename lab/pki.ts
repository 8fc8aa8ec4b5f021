/**
 * The lab's node PKI for x509pop: a node CA the lab's SPIRE server trusts, and
 * a machine certificate per node whose key is made ON the node (mode 0600) and
 * never leaves it: the node hands out only its public key (`openssl pkey
 * -pubout`), the CA signs a certificate for it here (@peculiar/x509, which can
 * also backdate one for the expired-certificate test), and the certificate is
 * written back to the node.
 *
 * Production does the same with its own CA (docs/attestation.md): subject CN =
 * the node id, key usage digitalSignature, the key generated on the machine.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NodeId, SafePath, parseName } from '../common/names.js';
import { ToolError } from '../activities/host/exec.js';
import type { HostTransport } from '../activities/host/transport.js';
import { ensureDir, writeNodeFile } from '../activities/host/files.js';
import type { Lab } from './lab.js';

x509.cryptoProvider.set(webcrypto as never);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;

export interface NodeCa {
  /** The CA certificate (PEM): the server's ca_bundle_path. */
  certPath: string;
  certPem: string;
  /** sha1 of the CA certificate's DER, lowercase hex: SPIRE's `x509pop:ca:fingerprint:` selector. */
  fingerprint: string;
  /** Sign a certificate for `publicKeyPem` (SPKI PEM). */
  sign(o: { publicKeyPem: string; cn: string; notBefore?: Date; notAfter?: Date; keyUsage?: number }): Promise<string>;
}

const pemOf = (der: ArrayBuffer, label: string) => x509.PemConverter.encode(der, label);

function caFrom(certPath: string, certPem: string, privateKey: webcrypto.CryptoKey): NodeCa {
  const cert = new x509.X509Certificate(certPem);
  return {
    certPath,
    certPem,
    fingerprint: createHash('sha1').update(Buffer.from(cert.rawData)).digest('hex'),
    async sign({ publicKeyPem, cn, notBefore, notAfter, keyUsage }) {
      const spki = x509.PemConverter.decodeFirst(publicKeyPem);
      const publicKey = await webcrypto.subtle.importKey('spki', spki, { name: 'ECDSA', namedCurve: 'P-256' }, true, [
        'verify',
      ]);
      const now = Date.now();
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
          .toString('hex')
          .replace(/^[89a-f]/, '1'),
        subject: `CN=${parseName(NodeId, 'cn', cn)}`,
        issuer: cert.subject,
        notBefore: notBefore ?? new Date(now - 5 * 60 * 1000),
        notAfter: notAfter ?? new Date(now + 30 * DAY),
        signingAlgorithm: ALG,
        publicKey,
        signingKey: privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(keyUsage ?? x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          await x509.AuthorityKeyIdentifierExtension.create(cert),
        ],
      });
      return leaf.toString('pem');
    },
  };
}

/**
 * The node CA kept in `dir` (made on first use: ca.pem, ca.key 0600 in a
 * 0700 directory). Idempotent: later calls load the same CA.
 */
export async function ensureNodeCa(dir: string, name = 'nodeboot lab node CA'): Promise<NodeCa> {
  const d = parseName(SafePath, 'dir', dir);
  const certPath = path.join(d, 'ca.pem');
  const keyPath = path.join(d, 'ca.key');
  if (existsSync(certPath) && existsSync(keyPath)) {
    const der = x509.PemConverter.decodeFirst(readFileSync(keyPath, 'utf8'));
    const key = await webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    return caFrom(certPath, readFileSync(certPath, 'utf8'), key);
  }
  mkdirSync(d, { recursive: true, mode: 0o700 });
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${name}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 3650 * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  writeFileSync(keyPath, pemOf(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'), {
    mode: 0o600,
  });
  writeFileSync(certPath, ca.toString('pem'), { mode: 0o644 });
  return caFrom(certPath, ca.toString('pem'), keys.privateKey);
}

/** Where the lab's server keeps its node CA (inside the server's directory: gone with it). */
export const labNodeCaDir = (serverDir: string) => path.join(serverDir, 'pki', 'node-ca');

/** The node CA the lab's SPIRE server trusts. */
export function labNodeCa(lab: Lab): Promise<NodeCa> {
  if (!lab.spire) throw new Error(`lab ${lab.prefix} runs no SPIRE server`);
  return ensureNodeCa(labNodeCaDir(lab.spire.dataDir));
}

export interface NodeCredential {
  /** On the node. */
  certificatePath: string;
  /** On the node, root 0600. The worker and the lab never read it (only its public half). */
  privateKeyPath: string;
  certPem: string;
}

export interface IssueOptions {
  /** The certificate's subject CN (default: the node id it is for). */
  cn?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Sign with this CA instead of the lab's (the "another CA" refusal). */
  ca?: NodeCa;
  /** Directory on the node (default <node dir>/attest). */
  dir?: string;
  keyUsage?: number;
}

/**
 * Issue node `nodeId` (lab node `nodeName`) an x509pop credential: an EC P-256
 * key made on the node (kept when already there), a certificate for it from
 * the lab node CA. Returns the paths an input's nodeAttestor names.
 */
export async function issueNodeCredential(
  lab: Lab,
  nodeName: string,
  nodeId: string,
  o: IssueOptions = {},
): Promise<NodeCredential> {
  const node = lab.node(nodeName);
  const t = lab.nodeTransport(node);
  const dir = parseName(SafePath, 'dir', o.dir ?? path.join(node.dir, 'attest'));
  const ca = o.ca ?? (await labNodeCa(lab));
  await ensureDir(t, dir, 0o700);
  const privateKeyPath = path.join(dir, 'node.key');
  const certificatePath = path.join(dir, 'node.pem');
  const publicKeyPem = await nodePublicKey(t, privateKeyPath);
  const certPem = await ca.sign({
    publicKeyPem,
    cn: o.cn ?? nodeId,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    keyUsage: o.keyUsage,
  });
  await writeNodeFile(t, certificatePath, certPem, 0o644);
  return { certificatePath, privateKeyPath, certPem };
}

/** Make the key on the node (umask 077: it is never readable by others, not even for a moment) unless it exists; return its public half. */
async function nodePublicKey(t: HostTransport, keyPath: string): Promise<string> {
  await t.run('sh', [
    '-c',
    'umask 077; [ -s "$1" ] || exec openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"',
    'sh',
    keyPath,
  ]);
  await t.run('chmod', ['600', '--', keyPath]);
  const r = await t.run('openssl', ['pkey', '-in', keyPath, '-pubout']);
  if (!/-----BEGIN PUBLIC KEY-----/.test(r.stdout))
    throw new ToolError('ToolFailed', `openssl printed no public key for ${keyPath} on ${t.label}`, 'openssl');
  return r.stdout;
}

/** x509pop input fields for a credential. */
export const x509popAttestorInput = (c: NodeCredential) => ({
  type: 'x509pop' as const,
  certificatePath: c.certificatePath,
  privateKeyPath: c.privateKeyPath,
});
