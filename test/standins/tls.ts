/**
 * A throwaway CA for the stand-ins' TLS: a TEST DOUBLE, never shipped. The
 * tests make one, the stand-in controller and package server serve
 * certificates it issues, and the worker (NODEBOOT_CA_FILE's role: the `ca`
 * of the activities' Bowtie trust) and the stand-in client trust it. Nothing
 * ever disables verification.
 */
// @peculiar/x509's dependency injection needs the Reflect metadata polyfill first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as never);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;

export interface TestServerCert {
  /** PEM certificate (leaf only; clients trust the CA). */
  cert: string;
  /** PEM PKCS#8 private key. */
  key: string;
}

export interface TestCa {
  /** The CA certificate, PEM: what a client trusts. */
  cert: string;
  /** A server certificate for these names (DNS names and IP addresses). */
  issue(names: { dns?: string[]; ips?: string[] }): Promise<TestServerCert>;
}

type KeyPair = webcrypto.CryptoKeyPair;
const keyPair = () => webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as Promise<KeyPair>;
const pemKey = async (k: webcrypto.CryptoKey) =>
  x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY');

export async function makeTestCa(name = 'node-bootstrap test CA'): Promise<TestCa> {
  const keys = await keyPair();
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 7 * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    cert: ca.toString('pem'),
    async issue({ dns = [], ips = [] }) {
      const leaf = await keyPair();
      const cert = await x509.X509CertificateGenerator.create({
        subject: `CN=${dns[0] ?? ips[0] ?? 'stand-in'}`,
        issuer: ca.subject,
        notBefore: new Date(now - DAY),
        notAfter: new Date(now + 7 * DAY),
        signingAlgorithm: ALG,
        publicKey: leaf.publicKey,
        signingKey: keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension([
            ...dns.map((value) => ({ type: 'dns' as const, value })),
            ...ips.map((value) => ({ type: 'ip' as const, value })),
          ]),
          await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      return { cert: cert.toString('pem'), key: await pemKey(leaf.privateKey) };
    },
  };
}

/** A CA and one certificate for 127.0.0.1 / localhost: what every stand-in on loopback serves. */
export async function loopbackTls(): Promise<{ ca: string; server: TestServerCert }> {
  const ca = await makeTestCa();
  return { ca: ca.cert, server: await ca.issue({ dns: ['localhost'], ips: ['127.0.0.1'] }) };
}
