/**
 * tpm_devid: the node proves it holds a DevID key that lives in its TPM. The
 * DevID certificate (from a DevID CA the server trusts, devid_ca_path) binds
 * the key to the node; the server also checks, through a credential-activation
 * challenge, that the key sits in the same TPM as an EK whose certificate
 * chains to the TPM vendor's CA (endorsement_ca_path). The key's private half
 * never leaves the TPM; the files on the node are the certificate and the
 * TPM-wrapped key blobs, which only that TPM can load.
 *
 * The agent ID is fixed by SPIRE: spiffe://<td>/spire/agent/tpm_devid/<sha1 of
 * the DevID certificate, DER> (no template), so the worker computes it from
 * the certificate on the node. A ban therefore covers that one certificate.
 * The node alias is parented on that agent ID (see `aliasOf`), made before
 * the agent attests.
 * Re-attestable: an evicted agent attests again by itself, and every SVID
 * rotation is a new attestation, so the TPM must stay reachable for the
 * agent's whole life.
 *
 * SPIRE accepts any DevID from a trusted CA: the worker checks the CN, the
 * validity and that the key blob is the certificate's key before the agent
 * starts, and the agent ID after it attested.
 */
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { nodeAliasId } from '../../../common/ids.js';
import type { ProvisionInput } from '../../../common/input.js';
import { ToolError } from '../../host/exec.js';
import type { HostTransport } from '../../host/transport.js';
import * as server from '../server-cli.js';
import type { EntrySpec, SpireAgent } from '../server-cli.js';
import { type AttestorContext, type NodeAttestorModule, type PluginData } from './contract.js';

const TOOL = 'tpm_devid';
const FIELD = 'spire.nodeAttestor';

/** The server's NodeAttestor "tpm_devid" plugin_data: the DevID CA(s) and the EK issuers (as roots: SPIRE passes no intermediates). */
export function tpmDevidServerPluginData(o: { devidCaPath: string; endorsementCaPath: string }): PluginData {
  return { devid_ca_path: o.devidCaPath, endorsement_ca_path: o.endorsementCaPath };
}

/** spiffe://<td>/spire/agent/tpm_devid/<sha1(DevID certificate DER)>, as the server names the agent. */
export function tpmDevidAgentId(trustDomain: string, certDer: Buffer): string {
  return `spiffe://${trustDomain}/spire/agent/tpm_devid/${createHash('sha1').update(certDer).digest('hex')}`;
}

type Spec = AttestorContext<'tpm_devid'>['spec'];

async function statOnNode(
  t: HostTransport,
  file: string,
  signal?: AbortSignal,
): Promise<{ uid: number; mode: number; type: string } | undefined> {
  const r = await t.run('stat', ['-L', '-c', '%u %a %F', '--', file], { allowNonZeroExit: true, signal });
  if (r.exitCode !== 0) return undefined;
  const [uid, mode, ...type] = r.stdout.trim().split(' ');
  return { uid: Number(uid), mode: parseInt(mode ?? '', 8), type: type.join(' ') };
}

/** A file's bytes from the node (base64 on the wire: the key blobs are binary). At most 64 KiB. */
async function readBinary(t: HostTransport, file: string, signal?: AbortSignal): Promise<Buffer | undefined> {
  const r = await t.run('sh', ['-c', 'head -c 65536 -- "$1" | base64 -w0', 'read-binary', file], {
    allowNonZeroExit: true,
    signal,
  });
  return r.exitCode === 0 && r.stdout.length > 0 ? Buffer.from(r.stdout.trim(), 'base64') : undefined;
}

/** A credential file the agent trusts: a regular file root owns and nobody else can rewrite. */
async function checkFile(t: HostTransport, key: keyof Spec, file: string, signal?: AbortSignal): Promise<void> {
  const s = await statOnNode(t, file, signal);
  if (!s || s.type !== 'regular file')
    throw new ToolError('InvalidInput', `${FIELD}.${key}: no file ${file} on ${t.label}`, TOOL);
  if (s.uid !== 0 || (s.mode & 0o022) !== 0) {
    throw new ToolError(
      'UnsafePath',
      `${FIELD}.${key}: ${file} on ${t.label} must be owned by root and writable only by it (is uid ${s.uid}, mode ${s.mode.toString(8)})`,
      TOOL,
    );
  }
}

/** The DevID certificate on the node, parsed; InvalidInput naming the field when it is missing or unreadable. */
async function readDevidCert(t: HostTransport, spec: Spec, signal?: AbortSignal): Promise<X509Certificate> {
  const raw = await readBinary(t, spec.devidCertPath, signal);
  const pem = raw?.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
  try {
    if (raw && pem) return new X509Certificate(pem);
    // SPIRE reads PEM or DER (util.LoadCertificate tries both): so do we.
    if (raw) return new X509Certificate(raw);
  } catch {
    /* fall through */
  }
  throw new ToolError(
    'InvalidInput',
    `${FIELD}.devidCertPath: no readable X.509 certificate at ${spec.devidCertPath} on ${t.label}`,
    TOOL,
  );
}

const TPM_ALG = { RSA: 0x0001, ECC: 0x0023, NULL: 0x0010, SHA256: 0x000b, RSASSA: 0x0014, ECDSA: 0x0018 } as const;
const ATTR_SIGN = 0x00040000;
const ECC_CURVES: Record<number, string> = { 0x0003: 'P-256', 0x0004: 'P-384', 0x0005: 'P-521' };

export interface DevidPublic {
  kind: 'rsa' | 'ec';
  sign: boolean;
  /** Signature scheme and its hash (TPM_ALG_*); NULL when the key has none (SPIRE refuses it). */
  scheme: number;
  hash: number;
  /** RSA: modulus; EC: curve and point. Big-endian, as in a JWK. */
  n?: Buffer;
  curve?: string;
  x?: Buffer;
  y?: Buffer;
}

/**
 * Parse a TPMT_PUBLIC (TPM 2.0 Part 2, 12.2.4) of an RSA or ECC key: what
 * SPIRE's devid_pub_path holds (tpm2.DecodePublic). Throws on anything else.
 */
export function parseTpmtPublic(buf: Buffer): DevidPublic {
  let o = 0;
  const u16 = () => {
    if (o + 2 > buf.length) throw new Error('truncated');
    const v = buf.readUInt16BE(o);
    o += 2;
    return v;
  };
  const u32 = () => {
    if (o + 4 > buf.length) throw new Error('truncated');
    const v = buf.readUInt32BE(o);
    o += 4;
    return v;
  };
  const b2b = () => {
    const n = u16();
    if (o + n > buf.length) throw new Error('truncated');
    const v = buf.subarray(o, o + n);
    o += n;
    return v;
  };
  const type = u16();
  u16(); // nameAlg
  const attrs = u32();
  b2b(); // authPolicy
  const symmetric = u16();
  if (symmetric !== TPM_ALG.NULL) o += 4; // keyBits, mode
  const scheme = u16();
  const hash = scheme !== TPM_ALG.NULL ? u16() : TPM_ALG.NULL;
  let pub: DevidPublic;
  if (type === TPM_ALG.RSA) {
    u16(); // keyBits
    u32(); // exponent (0 = 65537)
    pub = { kind: 'rsa', sign: (attrs & ATTR_SIGN) !== 0, scheme, hash, n: b2b() };
  } else if (type === TPM_ALG.ECC) {
    const curve = ECC_CURVES[u16()];
    const kdf = u16();
    if (kdf !== TPM_ALG.NULL) u16();
    pub = { kind: 'ec', sign: (attrs & ATTR_SIGN) !== 0, scheme, hash, curve, x: b2b(), y: b2b() };
  } else {
    throw new Error(`key type 0x${type.toString(16)} is neither RSA nor ECC`);
  }
  if (o !== buf.length) throw new Error('trailing bytes (a TPM2B_PUBLIC with its size prefix?)');
  return pub;
}

const unpad = (b: Buffer) => {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
};

/** True when the TPM key and the certificate's public key are the same key. */
export function sameKey(pub: DevidPublic, cert: X509Certificate): boolean {
  const jwk = createPublicKey(cert.publicKey.export({ format: 'pem', type: 'spki' })).export({ format: 'jwk' });
  const b = (s: string | undefined) => unpad(Buffer.from(s ?? '', 'base64url'));
  if (pub.kind === 'rsa') return jwk.kty === 'RSA' && b(jwk.n).equals(unpad(pub.n!));
  return jwk.kty === 'EC' && jwk.crv === pub.curve && b(jwk.x).equals(unpad(pub.x!)) && b(jwk.y).equals(unpad(pub.y!));
}

async function checkCredential({ input, spec, node, signal }: AttestorContext<'tpm_devid'>): Promise<void> {
  const dev = await statOnNode(node, spec.tpmDevicePath, signal);
  if (!dev || (dev.type !== 'socket' && dev.type !== 'character special file')) {
    throw new ToolError(
      'InvalidInput',
      `${FIELD}.tpmDevicePath: ${spec.tpmDevicePath} on ${node.label} is not a TPM (a character device or a TPM simulator's socket)`,
      TOOL,
    );
  }
  await checkFile(node, 'devidCertPath', spec.devidCertPath, signal);
  await checkFile(node, 'devidPubPath', spec.devidPubPath, signal);
  await checkFile(node, 'devidPrivPath', spec.devidPrivPath, signal);
  const cert = await readDevidCert(node, spec, signal);
  const cns = cert.subject
    .split('\n')
    .filter((l) => l.startsWith('CN='))
    .map((l) => l.slice(3));
  if (cns.length !== 1 || cns[0] !== input.nodeId) {
    // Another node's DevID would attest as that node: never present it (and never ban that node for it).
    throw new ToolError(
      'AttestationRejected',
      `the DevID certificate at ${spec.devidCertPath} on ${node.label} is issued to CN=${JSON.stringify(cns)}, not to node ${input.nodeId}`,
      TOOL,
    );
  }
  const now = Date.now();
  if (new Date(cert.validTo).getTime() <= now)
    throw new ToolError(
      'AttestationRejected',
      `the DevID certificate at ${spec.devidCertPath} on ${node.label} expired at ${new Date(cert.validTo).toISOString()}`,
      TOOL,
    );
  if (new Date(cert.validFrom).getTime() > now)
    throw new ToolError(
      'AttestationRejected',
      `the DevID certificate at ${spec.devidCertPath} on ${node.label} is not valid before ${new Date(cert.validFrom).toISOString()}`,
      TOOL,
    );
  const blob = await readBinary(node, spec.devidPubPath, signal);
  let pub: DevidPublic;
  try {
    pub = parseTpmtPublic(blob ?? Buffer.alloc(0));
  } catch (err) {
    throw new ToolError(
      'InvalidInput',
      `${FIELD}.devidPubPath: ${spec.devidPubPath} on ${node.label} is not a TPMT_PUBLIC of an RSA or ECC key (${(err as Error).message})`,
      TOOL,
    );
  }
  // SPIRE checks the challenge signature as SHA256WithRSA or ECDSAWithSHA256 only, after a minute of retries: say it now.
  if (!pub.sign || pub.scheme === TPM_ALG.NULL || pub.hash !== TPM_ALG.SHA256) {
    throw new ToolError(
      'InvalidInput',
      `${FIELD}.devidPubPath: the DevID key at ${spec.devidPubPath} on ${node.label} must be a signing key with scheme rsassa or ecdsa over sha256`,
      TOOL,
    );
  }
  if (!sameKey(pub, cert)) {
    throw new ToolError(
      'AttestationRejected',
      `the DevID key ${spec.devidPubPath} on ${node.label} is not the key of the certificate ${spec.devidCertPath}`,
      TOOL,
    );
  }
}

/** The agent ID of the DevID certificate now on the node, or undefined when it cannot be read. */
async function agentIdOnNode(
  input: ProvisionInput,
  spec: Spec,
  node: HostTransport,
  signal?: AbortSignal,
): Promise<string | undefined> {
  try {
    return tpmDevidAgentId(input.spire.trustDomain, Buffer.from((await readDevidCert(node, spec, signal)).raw));
  } catch {
    return undefined;
  }
}

/**
 * The node alias, parented on the agent ID with its `spiffe_id:` selector (the
 * join_token shape). An agent ID names exactly one DevID certificate, which
 * the server verifies (its CA, the key in a TPM whose EK chains to the vendor
 * CA) and the worker checked (CN = this node) before the agent presents it.
 * Unlike a `-node` entry on the CN, another DevID with the same CN (a second
 * TPM, a re-issued certificate) gets no alias until a run of this node checks it.
 */
const aliasOf = (input: ProvisionInput, agentId: string): EntrySpec => ({
  parentId: agentId,
  spiffeId: nodeAliasId(input),
  selectors: [`spiffe_id:${agentId}`],
});

export const tpmDevidAttestor: NodeAttestorModule<'tpm_devid'> = {
  type: 'tpm_devid',
  canReattest: true,
  agentId: () => undefined,
  checkCredential,
  async prepare(ctx) {
    const { input, spec, node, signal } = ctx;
    const agentId = await agentIdOnNode(input, spec, node, signal);
    if (agentId === undefined)
      throw new ToolError(
        'InvalidInput',
        `${FIELD}.devidCertPath: no readable X.509 certificate at ${spec.devidCertPath} on ${node.label}`,
        TOOL,
      );
    // The alias BEFORE the agent attests, as `token generate -spiffeID` does for join_token: step 4
    // finds the node's agent through it (the agent ID cannot be derived from the input), so a worker
    // that dies between attestation and alias still finds, adopts or undoes the agent it started.
    // An attestation the server refuses leaves it unused, and the undo deletes it.
    await server.entryCreate(ctx.server, aliasOf(input, agentId));
    const pluginData: PluginData = {
      tpm_device_path: spec.tpmDevicePath,
      devid_cert_path: spec.devidCertPath,
      devid_priv_path: spec.devidPrivPath,
      devid_pub_path: spec.devidPubPath,
    };
    return { pluginData, agentId };
  },
  /** The alias made in `prepare`, once the server attested this node's CN (created again if it went missing). */
  alias({ input }, attested: SpireAgent) {
    if (
      !attested.selectors.includes(`tpm_devid:subject:cn:${input.nodeId}`) ||
      !attested.selectors.some((s) => s.startsWith('tpm_devid:ca:fingerprint:'))
    ) {
      throw new ToolError(
        'AttestationRejected',
        `the server attested ${attested.spiffeId} without the tpm_devid selectors of node ${input.nodeId}`,
        TOOL,
      );
    }
    return aliasOf(input, attested.spiffeId);
  },
};
