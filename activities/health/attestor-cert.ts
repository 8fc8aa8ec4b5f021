/**
 * When the node attestor's certificate expires: the x509pop machine
 * certificate's notAfter, the sshpop host certificate's valid-before. An
 * agent that must attest again (evicted, data dir wiped) cannot once it has
 * passed, so `nodeboot health` and the expiry gauges show it. Read-only: only
 * the certificate (public) is read, never a key. Other attestors: nothing.
 */
import { X509Certificate } from 'node:crypto';
import { redactSecrets } from '../../common/errors.js';
import type { ProvisionInput } from '../../common/input.js';
import type { HostTransport } from '../host/transport.js';
import { readNodeFile } from '../host/files.js';
import { parseSshCertificate } from '../spire/attestors/sshpop.js';
import { secondsUntil } from './links.js';

const FOREVER = 0xffff_ffff_ffff_ffffn;

export interface AttestorCertEvidence {
  attestorCertNotAfter?: string;
  attestorCertSecondsLeft?: number;
  attestorCertError?: string;
}

export async function attestorCertExpiry(t: HostTransport, input: ProvisionInput): Promise<AttestorCertEvidence> {
  const a = input.spire.nodeAttestor;
  try {
    let notAfter: Date | null = null;
    if (a.type === 'x509pop') {
      const pem = await readNodeFile(t, a.certificatePath);
      const leaf = pem?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
      if (!leaf) return { attestorCertError: `no certificate at ${a.certificatePath}` };
      notAfter = new Date(new X509Certificate(leaf).validTo);
    } else if (a.type === 'sshpop') {
      const text = await readNodeFile(t, a.hostCertPath);
      if (!text) return { attestorCertError: `no certificate at ${a.hostCertPath}` };
      const cert = parseSshCertificate(text);
      if (cert.validBefore === FOREVER) return {};
      notAfter = new Date(Number(cert.validBefore) * 1000);
    } else {
      return {};
    }
    return { attestorCertNotAfter: notAfter.toISOString(), attestorCertSecondsLeft: secondsUntil(notAfter.getTime()) };
  } catch (err) {
    return { attestorCertError: redactSecrets(err instanceof Error ? err.message : String(err)).slice(0, 200) };
  }
}
