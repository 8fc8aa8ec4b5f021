/**
 * Verify an X.509-SVID the way a relying party would: its URI SAN is exactly
 * the registered SPIFFE ID, it chains to the trust bundle, and its lifetime
 * matches the registration's TTL.
 */
// @peculiar/x509's dependency injection needs the Reflect metadata polyfill first.
import 'reflect-metadata';
import { SubjectAlternativeNameExtension, X509Certificate, X509ChainBuilder, cryptoProvider } from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { ToolError } from '../host/exec.js';

// @peculiar/x509 needs a WebCrypto; Node's is the one.
cryptoProvider.set(webcrypto as never);

export interface SvidCheck {
  spiffeId: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  ttlSeconds: number;
}

function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

export function uriSans(cert: X509Certificate): string[] {
  const san = cert.getExtension(SubjectAlternativeNameExtension);
  return san ? san.names.items.filter((n) => n.type === 'url').map((n) => n.value) : [];
}

export async function verifySvid(
  svidPem: string,
  bundlePem: string,
  expected: { spiffeId: string; ttlSeconds: number },
): Promise<SvidCheck> {
  const [leafPem, ...intermediatePems] = pemBlocks(svidPem);
  if (!leafPem) throw new ToolError('SvidInvalid', 'the SVID file holds no certificate', 'x509');
  const leaf = new X509Certificate(leafPem);
  const ids = uriSans(leaf);
  if (ids.length !== 1 || ids[0] !== expected.spiffeId) {
    throw new ToolError('SvidInvalid', `SVID URI SAN is ${JSON.stringify(ids)}, expected ${expected.spiffeId}`, 'x509');
  }
  const roots = pemBlocks(bundlePem).map((p) => new X509Certificate(p));
  if (roots.length === 0) throw new ToolError('SvidInvalid', 'the trust bundle holds no certificate', 'x509');
  const builder = new X509ChainBuilder({
    certificates: [...intermediatePems.map((p) => new X509Certificate(p)), ...roots],
  });
  const chain = await builder.build(leaf);
  const top = chain[chain.length - 1];
  const rooted = top !== undefined && roots.some((r) => r.equal(top));
  // Every link must verify with its issuer's key, and the top must be a bundle root.
  let signed = chain.length > 1 || (top !== undefined && roots.some((r) => r.equal(leaf)));
  for (let i = 0; i + 1 < chain.length && signed; i++) {
    signed = await chain[i]!.verify({ publicKey: chain[i + 1]!.publicKey, signatureOnly: true });
  }
  if (!rooted || !signed)
    throw new ToolError('SvidInvalid', `SVID for ${expected.spiffeId} does not chain to the trust bundle`, 'x509');

  const ttlSeconds = Math.round((leaf.notAfter.getTime() - leaf.notBefore.getTime()) / 1000);
  // SPIRE backdates notBefore by a few seconds and caps at the CA's lifetime: allow 5 min of slack down, 60 s up.
  if (ttlSeconds > expected.ttlSeconds + 60 || ttlSeconds < Math.min(expected.ttlSeconds, 3600) - 300) {
    throw new ToolError(
      'SvidInvalid',
      `SVID for ${expected.spiffeId} lives ${ttlSeconds} s, registered TTL is ${expected.ttlSeconds} s`,
      'x509',
    );
  }
  return {
    spiffeId: expected.spiffeId,
    serial: leaf.serialNumber,
    notBefore: leaf.notBefore.toISOString(),
    notAfter: leaf.notAfter.toISOString(),
    ttlSeconds,
  };
}
