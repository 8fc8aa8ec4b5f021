/**
 * sshpop: the node proves possession of its SSH host key, certified as a host
 * key by an SSH CA the server trusts (cert_authorities_path). The server names
 * the agent from the certificate's first principal (agent_path_template
 * "/sshpop/{{ .Hostname }}"), so the agent ID is known up front
 * (spiffe://<td>/spire/agent/sshpop/<nodeId>), survives certificate renewals,
 * and a ban covers every certificate issued for the node. Re-attestable: an
 * evicted agent attests again by itself.
 *
 * The server emits NO selectors for sshpop, so the node alias is parented on
 * the attested agent ID itself (selector spiffe_id:<agentID>), like a join
 * token's. SPIRE accepts any host certificate from the trusted CA, another
 * node's too (nothing binds it to the peer's address): the worker checks the
 * principal, validity and key before the agent starts, and steps.ts checks the
 * agent ID after it attested. The host private key never leaves the node:
 * only the certificate (public) and the key's public half (`ssh-keygen -y`,
 * run on the node) are read.
 */
import { nodeAliasId } from '../../../common/ids.js';
import { ToolError } from '../../host/exec.js';
import type { HostTransport } from '../../host/transport.js';
import { readNodeFile } from '../../host/files.js';
import { templatedAgentId, type AttestorContext, type NodeAttestorModule, type PluginData } from './contract.js';

const TOOL = 'sshpop';

/** The server-side agent_path_template: the agent ID's path from the certificate's first principal. */
export const SSHPOP_AGENT_PATH_TEMPLATE = '/sshpop/{{ .Hostname }}';

/** The server's NodeAttestor "sshpop" plugin_data, trusting the SSH CA public key(s) in `certAuthoritiesPath` (authorized_keys format). */
export function sshpopServerPluginData(o: { certAuthoritiesPath: string }): PluginData {
  return { cert_authorities_path: o.certAuthoritiesPath, agent_path_template: SSHPOP_AGENT_PATH_TEMPLATE };
}

/** The fields of an OpenSSH certificate (PROTOCOL.certkeys) that attestation depends on. */
export interface SshCertificate {
  /** e.g. "ssh-ed25519-cert-v01@openssh.com" */
  certType: string;
  /** The certified public key as a plain public-key blob ("ssh-ed25519" + key), base64: what `ssh-keygen -y` prints. */
  publicKey: string;
  serial: bigint;
  /** 1 = user, 2 = host. */
  type: number;
  keyId: string;
  principals: string[];
  /** Unix seconds; validBefore 2^64-1 means forever. */
  validAfter: bigint;
  validBefore: bigint;
  criticalOptions: string[];
  /** The CA's public-key blob, base64. */
  signatureKey: string;
}

export const SSH_CERT_HOST = 2;

/** The public-key fields after the nonce, per certified key type (how many SSH strings/mpints each has). */
const KEY_FIELDS: Record<string, number> = {
  'ssh-ed25519': 1,
  'ssh-rsa': 2,
  'ssh-dss': 4,
  'ecdsa-sha2-nistp256': 2,
  'ecdsa-sha2-nistp384': 2,
  'ecdsa-sha2-nistp521': 2,
  'sk-ssh-ed25519@openssh.com': 2,
  'sk-ecdsa-sha2-nistp256@openssh.com': 3,
};

class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  get offset() {
    return this.off;
  }
  private take(n: number): Buffer {
    if (n < 0 || this.off + n > this.buf.length) throw new Error('truncated');
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }
  uint32 = () => this.take(4).readUInt32BE(0);
  uint64 = () => this.take(8).readBigUInt64BE(0);
  bytes = () => this.take(this.uint32());
  string = () => this.bytes().toString('utf8');
  slice = (from: number, to: number) => this.buf.subarray(from, to);
  get done() {
    return this.off === this.buf.length;
  }
}

const sshString = (b: Buffer) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length, 0);
  return Buffer.concat([len, b]);
};

/** Names in a packed list of SSH strings (principals) or of name/data pairs (options). */
function packedNames(buf: Buffer, pairs: boolean): string[] {
  const r = new Reader(buf);
  const out: string[] = [];
  while (!r.done) {
    out.push(r.string());
    if (pairs) r.bytes();
  }
  return out;
}

/**
 * Parse one OpenSSH certificate line ("<type>-cert-v01@openssh.com <base64> [comment]").
 * Throws on anything else. The signature is not verified here: the SPIRE server does that against its CAs.
 */
export function parseSshCertificate(text: string): SshCertificate {
  const [certType, b64] = text.trim().split(/\s+/);
  if (!certType || !b64 || !certType.endsWith('-cert-v01@openssh.com') || !/^[A-Za-z0-9+/]+=*$/.test(b64)) {
    throw new Error('not an OpenSSH certificate line');
  }
  const plainType = certType.slice(0, -'-cert-v01@openssh.com'.length);
  const fields = KEY_FIELDS[plainType];
  if (fields === undefined) throw new Error(`unsupported certificate key type ${plainType}`);
  const r = new Reader(Buffer.from(b64, 'base64'));
  if (r.string() !== certType) throw new Error('the certificate blob does not match its type');
  r.bytes(); // nonce
  const keyStart = r.offset;
  for (let i = 0; i < fields; i++) r.bytes();
  const publicKey = Buffer.concat([sshString(Buffer.from(plainType)), r.slice(keyStart, r.offset)]).toString('base64');
  const serial = r.uint64();
  const type = r.uint32();
  const keyId = r.string();
  const principals = packedNames(r.bytes(), false);
  const validAfter = r.uint64();
  const validBefore = r.uint64();
  const criticalOptions = packedNames(r.bytes(), true);
  r.bytes(); // extensions
  r.bytes(); // reserved
  const signatureKey = r.bytes().toString('base64');
  r.bytes(); // signature
  if (!r.done) throw new Error('trailing bytes after the signature');
  return {
    certType,
    publicKey,
    serial,
    type,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    signatureKey,
  };
}

/** uid and mode of a file on the node (following links, as the agent does), or undefined when it is not there. */
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

const FOREVER = 0xffff_ffff_ffff_ffffn;
const iso = (s: bigint) => new Date(Number(s) * 1000).toISOString();

async function checkCredential({ input, spec, node, signal }: AttestorContext<'sshpop'>): Promise<void> {
  const field = 'spire.nodeAttestor';
  const key = await statOnNode(node, spec.hostKeyPath, signal);
  if (!key || key.type !== 'regular file')
    throw new ToolError('InvalidInput', `${field}.hostKeyPath: no file ${spec.hostKeyPath} on ${node.label}`, TOOL);
  // The agent runs as root: a host key another user can read (or own and rewrite) is not this node's alone.
  if (key.uid !== 0 || (key.mode & 0o077) !== 0) {
    throw new ToolError(
      'UnsafePath',
      `${field}.hostKeyPath: ${spec.hostKeyPath} on ${node.label} must be owned by root with mode 0600 (is uid ${key.uid}, mode ${key.mode.toString(8)})`,
      TOOL,
    );
  }
  const text = await readNodeFile(node, spec.hostCertPath);
  if (text === undefined)
    throw new ToolError('InvalidInput', `${field}.hostCertPath: no file ${spec.hostCertPath} on ${node.label}`, TOOL);
  let cert: SshCertificate;
  try {
    cert = parseSshCertificate(text);
  } catch (err) {
    throw new ToolError(
      'InvalidInput',
      `${field}.hostCertPath: ${spec.hostCertPath} on ${node.label} is not an OpenSSH certificate (${(err as Error).message})`,
      TOOL,
    );
  }
  const where = `the host certificate ${spec.hostCertPath} on ${node.label}`;
  if (cert.type !== SSH_CERT_HOST) {
    throw new ToolError(
      'InvalidInput',
      `${field}.hostCertPath: ${where} is a user certificate; sshpop needs a host certificate (ssh-keygen -s <ca> -h)`,
      TOOL,
    );
  }
  if (cert.principals[0] !== input.nodeId) {
    // The first principal names the agent: another node's certificate would attest as that node.
    // Never present it (and never ban that node for it).
    throw new ToolError(
      'AttestationRejected',
      `${where} is issued to ${JSON.stringify(cert.principals)}, not to node ${input.nodeId} (its first principal must be the node id)`,
      TOOL,
    );
  }
  if (cert.criticalOptions.length > 0) {
    throw new ToolError(
      'InvalidInput',
      `${field}.hostCertPath: ${where} has critical options ${JSON.stringify(cert.criticalOptions)}, which the server refuses`,
      TOOL,
    );
  }
  const now = BigInt(Math.floor(Date.now() / 1000));
  if (cert.validBefore !== FOREVER && now >= cert.validBefore)
    throw new ToolError('AttestationRejected', `${where} expired at ${iso(cert.validBefore)}`, TOOL);
  if (now < cert.validAfter)
    throw new ToolError('AttestationRejected', `${where} is not valid before ${iso(cert.validAfter)}`, TOOL);
  // The key's public half, derived on the node (-P '': an encrypted key fails instead of prompting; the agent cannot use one either).
  const pub = await node.run('ssh-keygen', ['-y', '-P', '', '-f', spec.hostKeyPath], {
    allowNonZeroExit: true,
    signal,
    timeoutMs: 10_000,
  });
  const derived = pub.exitCode === 0 ? pub.stdout.trim().split(/\s+/)[1] : undefined;
  if (!derived) {
    throw new ToolError(
      'InvalidInput',
      `${field}.hostKeyPath: ${spec.hostKeyPath} on ${node.label} is not a readable unencrypted OpenSSH private key`,
      TOOL,
      pub.exitCode,
    );
  }
  if (derived !== cert.publicKey) {
    throw new ToolError(
      'AttestationRejected',
      `the host key ${spec.hostKeyPath} on ${node.label} is not the key certified by ${spec.hostCertPath}`,
      TOOL,
    );
  }
}

export const sshpopAttestor: NodeAttestorModule<'sshpop'> = {
  type: 'sshpop',
  canReattest: true,
  agentId: (input) => templatedAgentId(input, 'sshpop'),
  checkCredential,
  async prepare({ input, spec }) {
    return {
      pluginData: { host_key_path: spec.hostKeyPath, host_cert_path: spec.hostCertPath },
      agentId: templatedAgentId(input, 'sshpop'),
    };
  },
  /**
   * sshpop gives the agent no selectors: the alias is parented on the agent
   * ID the server derived from this node's certificate (steps.ts has checked
   * it is this node's), the shape a join token's alias has.
   */
  alias({ input }, attested) {
    if (attested.spiffeId !== templatedAgentId(input, 'sshpop') || attested.attestationType !== 'sshpop') {
      throw new ToolError(
        'AttestationRejected',
        `the server attested ${attested.spiffeId} (${attested.attestationType}), not node ${input.nodeId} by sshpop`,
        TOOL,
      );
    }
    return { parentId: attested.spiffeId, spiffeId: nodeAliasId(input), selectors: [`spiffe_id:${attested.spiffeId}`] };
  },
};
