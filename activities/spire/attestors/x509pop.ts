/**
 * x509pop: the node proves possession of the private key of a machine
 * certificate issued by a CA the server trusts (ca_bundle_path). The server
 * names the agent from the certificate's subject CN (agent_path_template
 * "/x509pop/{{ .Subject.CommonName }}"), so the agent ID is known up front
 * (spiffe://<td>/spire/agent/x509pop/<nodeId>), survives renewals, and a ban
 * covers every certificate issued to the node. Re-attestable: an evicted agent
 * attests again by itself with the same certificate.
 *
 * SPIRE accepts ANY certificate from the trusted CA, another node's too (no IP
 * binding unless verify_client_ip): the worker checks the CN before the agent
 * starts, and the agent ID after it attested. The private key never leaves
 * the node: only its public half (`openssl pkey -pubout`) is read.
 */
import { nodeAliasId } from '../../../common/ids.js';
import 'reflect-metadata';
import { KeyUsageFlags, KeyUsagesExtension, X509Certificate, cryptoProvider } from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { ToolError } from '../../host/exec.js';
import type { HostTransport } from '../../host/transport.js';
import { readNodeFile } from '../../host/files.js';
import {
  serverSpiffeId,
  templatedAgentId,
  type AttestorContext,
  type NodeAttestorModule,
  type PluginData,
} from './contract.js';

cryptoProvider.set(webcrypto as never);

const TOOL = 'x509pop';

/** The server-side agent_path_template: the agent ID's path from the certificate's CN. */
export const X509POP_AGENT_PATH_TEMPLATE = '/x509pop/{{ .Subject.CommonName }}';

/** The server's NodeAttestor "x509pop" plugin_data, trusting the node CA(s) in `caBundlePath`. */
export function x509popServerPluginData(o: { caBundlePath: string }): PluginData {
  return { ca_bundle_path: o.caBundlePath, agent_path_template: X509POP_AGENT_PATH_TEMPLATE };
}

const pemCerts = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
const pemBody = (pem: string) => Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');

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

async function checkCredential({ input, spec, node, signal }: AttestorContext<'x509pop'>): Promise<void> {
  const field = 'spire.nodeAttestor';
  const key = await statOnNode(node, spec.privateKeyPath, signal);
  if (!key || key.type !== 'regular file') {
    throw new ToolError(
      'InvalidInput',
      `${field}.privateKeyPath: no file ${spec.privateKeyPath} on ${node.label}`,
      TOOL,
    );
  }
  // The agent runs as root: a key another user can read (or own and rewrite) is not this node's alone.
  if (key.uid !== 0 || (key.mode & 0o077) !== 0) {
    throw new ToolError(
      'UnsafePath',
      `${field}.privateKeyPath: ${spec.privateKeyPath} on ${node.label} must be owned by root with mode 0600 (is uid ${key.uid}, mode ${key.mode.toString(8)})`,
      TOOL,
    );
  }
  const pem = await readNodeFile(node, spec.certificatePath);
  const leafPem = pem === undefined ? undefined : pemCerts(pem)[0];
  if (!leafPem)
    throw new ToolError(
      'InvalidInput',
      `${field}.certificatePath: no PEM certificate at ${spec.certificatePath} on ${node.label}`,
      TOOL,
    );
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafPem);
  } catch {
    throw new ToolError(
      'InvalidInput',
      `${field}.certificatePath: ${spec.certificatePath} on ${node.label} is not a readable X.509 certificate`,
      TOOL,
    );
  }
  const cns = leaf.subjectName.getField('CN');
  if (cns.length !== 1 || cns[0] !== input.nodeId) {
    // Another node's certificate would attest as that node: never present it (and never ban that node for it).
    throw new ToolError(
      'AttestationRejected',
      `the certificate at ${spec.certificatePath} on ${node.label} is issued to CN=${JSON.stringify(cns)}, not to node ${input.nodeId}`,
      TOOL,
    );
  }
  const now = Date.now();
  if (leaf.notAfter.getTime() <= now)
    throw new ToolError(
      'AttestationRejected',
      `the certificate at ${spec.certificatePath} on ${node.label} expired at ${leaf.notAfter.toISOString()}`,
      TOOL,
    );
  if (leaf.notBefore.getTime() > now)
    throw new ToolError(
      'AttestationRejected',
      `the certificate at ${spec.certificatePath} on ${node.label} is not valid before ${leaf.notBefore.toISOString()}`,
      TOOL,
    );
  const ku = leaf.getExtension(KeyUsagesExtension);
  if (!ku || (ku.usages & KeyUsageFlags.digitalSignature) === 0) {
    // SPIRE refuses it too ("certificate not intended for digital signature use"), after a minute of retries.
    throw new ToolError(
      'InvalidInput',
      `${field}.certificatePath: the certificate at ${spec.certificatePath} on ${node.label} lacks key usage digitalSignature (x509pop signs a challenge with it)`,
      TOOL,
    );
  }
  // The key's public half, derived on the node: the private key itself is never read off it.
  const pub = await node.run('openssl', ['pkey', '-in', spec.privateKeyPath, '-pubout'], {
    allowNonZeroExit: true,
    signal,
  });
  if (pub.exitCode !== 0 || !/-----BEGIN PUBLIC KEY-----/.test(pub.stdout)) {
    throw new ToolError(
      'InvalidInput',
      `${field}.privateKeyPath: ${spec.privateKeyPath} on ${node.label} is not a readable unencrypted private key`,
      TOOL,
      pub.exitCode,
    );
  }
  if (!pemBody(pub.stdout).equals(Buffer.from(leaf.publicKey.rawData))) {
    throw new ToolError(
      'AttestationRejected',
      `the private key ${spec.privateKeyPath} on ${node.label} does not belong to the certificate ${spec.certificatePath}`,
      TOOL,
    );
  }
}

export const x509popAttestor: NodeAttestorModule<'x509pop'> = {
  type: 'x509pop',
  canReattest: true,
  agentId: (input) => templatedAgentId(input, 'x509pop'),
  checkCredential,
  async prepare({ input, spec }) {
    const pluginData: PluginData = {
      private_key_path: spec.privateKeyPath,
      certificate_path: spec.certificatePath,
      ...(spec.intermediatesPath !== undefined ? { intermediates_path: spec.intermediatesPath } : {}),
    };
    return { pluginData, agentId: templatedAgentId(input, 'x509pop') };
  },
  /**
   * A node entry (parent: the server) the agent matches by what the server
   * verified: the subject CN binds it to this node, the CA fingerprint (from
   * the server's own selectors) to the CA that issued its certificate.
   */
  alias({ input }, attested) {
    const cas = attested.selectors.filter((s) => s.startsWith('x509pop:ca:fingerprint:'));
    if (cas.length === 0 || !attested.selectors.includes(`x509pop:subject:cn:${input.nodeId}`)) {
      throw new ToolError(
        'AttestationRejected',
        `the server attested ${attested.spiffeId} without the x509pop selectors of node ${input.nodeId}`,
        TOOL,
      );
    }
    return {
      parentId: serverSpiffeId(input.spire.trustDomain),
      spiffeId: nodeAliasId(input),
      selectors: [`x509pop:subject:cn:${input.nodeId}`, ...cas],
    };
  },
};
