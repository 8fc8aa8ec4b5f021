/**
 * The tpm_devid attestor's pure parts: the TPMT_PUBLIC parser the pre-start
 * check uses to prove the DevID key blob is the certificate's key, and the
 * agent ID formula. The blobs are real: made by tpm2_create on swtpm 0.7.1
 * (lab/tpm.ts), the TPM2B size prefix stripped as SPIRE's agent wants.
 */
import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseTpmtPublic, sameKey, tpmDevidAgentId } from '../../activities/spire/attestors/tpm-devid.js';
import { checkProvisionInput } from '../../common/validate.js';
import { sampleInput } from '../fixtures/inputs.js';

/** An RSA-2048 DevID (rsassa-sha256, sign) and the certificate the lab's DevID CA issued for it (CN=node-a). */
const RSA_PUB = Buffer.from(
  'AAEACwAEAHIAAAAQABQACwgAAAAAAAEAlqX7F3oV1aN2ZyMN7ata0IzsW8vFH92mh4YVA/B9vMUO5H9r5jzo4zAiqYRkY350GhURJLTVob7ijSO02GTxl/+o9jl4zWFxQfv+P3YmxdXHT7jsWf2u7eQRuPbAE1sEaWr0Aw1T2AgXumx4XUc9qB76qJd7ZvqCEzi45SivuQCMGF9MmqLOQZ5jRMHmYH7l2Aj7aOyqlyHiwRj/+KXZs5UH6B0+cUyHU5B+vDW8/sffItW+GlGlUtih5LNZyNfnlZEFyZb8DbjW5Yucvp/Lm5JI7LjRNKsp4HThfYw9Ww39rhJ9xweG5lsEwH3QesQxhawkisoOuFO8nqq4PWN2Kw==',
  'base64',
);
const RSA_CERT = `-----BEGIN CERTIFICATE-----
MIIC/DCCAeSgAwIBAgIQcuHdcFqL+BGxKUovxLfLXTANBgkqhkiG9w0BAQsFADAg
MR4wHAYDVQQDExVub2RlYm9vdCBsYWIgRGV2SUQgQ0EwHhcNMjYxMjAxMDkxNTMy
WhcNMjcwMzAxMDkyMDMyWjARMQ8wDQYDVQQDEwZub2RlLWEwggEiMA0GCSqGSIb3
DQEBAQUAA4IBDwAwggEKAoIBAQCWpfsXehXVo3ZnIw3tq1rQjOxby8Uf3aaHhhUD
8H28xQ7kf2vmPOjjMCKphGRjfnQaFREktNWhvuKNI7TYZPGX/6j2OXjNYXFB+/4/
dibF1cdPuOxZ/a7t5BG49sATWwRpavQDDVPYCBe6bHhdRz2oHvqol3tm+oITOLjl
KK+5AIwYX0yaos5BnmNEweZgfuXYCPto7KqXIeLBGP/4pdmzlQfoHT5xTIdTkH68
Nbz+x98i1b4aUaVS2KHks1nI1+eVkQXJlvwNuNbli5y+n8ubkkjsuNE0qyngdOF9
jD1bDf2uEn3HB4bmWwTAfdB6xDGFrCSKyg64U7yeqrg9Y3YrAgMBAAGjQTA/MAwG
A1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQDAgeAMB8GA1UdIwQYMBaAFOuzj6wnq1wY
QBu8dXtvM2yKBzGBMA0GCSqGSIb3DQEBCwUAA4IBAQBzNOO7m10pAQDsyEfg+Tnn
DnUxYtm5Bfc+Tt0wGBWgf54LJ4xmm8eyjfcm0Vyb+6zdT1phC0YoWHwty6afPGiv
RkbrT10XgyQOPDXr2LHcOD6pDJrWEG+EG66gV1cMR4OAHZlXohpEQsVbdHnn3/Pi
VFwsobDcNrAxjJUIsQTTIu8bwnawGZA41gDlE/YSj9VJIqIMtW2IqSsQChGvKLqk
qpIJI/vv2UBowzR46/v9nLclLYKDClhnN19spm8QU7NFPY0bS+teWe/Cxxxk6rS6
YJLj1jp9Zm71+KF4OOuErb/GvOJjxoi1XZYiMZuD9y7gyw0GFSecgVOAigI1lN04
-----END CERTIFICATE-----`;
/** An ECC P-256 signing key (ecdsa-sha256) and its public key as tpm2_print wrote it. */
const EC_PUB = Buffer.from(
  'ACMACwAEAHIAAAAQABgACwADABAAIInzlJW53jyMps19ZXkXGGkxCq2N5tr296xYCH8JP6mXACClrRT48ik88AcjqpjrhBQ2lT9BHilellhvnSCJKb92ZQ==',
  'base64',
);
const EC_PEM = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEifOUlbnePIymzX1leRcYaTEKrY3m
2vb3rFgIfwk/qZelrRT48ik88AcjqpjrhBQ2lT9BHilellhvnSCJKb92ZQ==
-----END PUBLIC KEY-----`;
/** An RSA signing key with a null scheme: SPIRE refuses it ("signature hash algorithm is NULL"). */
const NULL_PUB = Buffer.from(
  'AAEACwAEAHIAAAAQABAIAAAAAAABAIv6WcQJ/fw1CfcqC8SCeKKf32WoejgpK7vniVaOzi8wi8wxb1aEmYWYfrVZ643jlR+BhE481Wusc6Y7nQoRdkOHsd71kNpw3TiDArP9lxRid4h7VzQRIqbmVntEJjpk6lzRbb/3mG7v9/BD8Hy//vol1OSoXf3Eupdjh0r2M0YREG1HxtiDeN5nxuVF9LZjJiKSRd/8Txjli+aV4ViFh8rTTnoLAksHT5OV4j3r8DT9ohtVWJtIN/iIPuEGz2Cf1LqJGSe66yPt+yVZM96LyCiQJ9+sUvGuh7iGSAFg+Q2fwDI7b+JvpSkjtkMzZSR8nsZu/GjEfGyyvhMRR5auzK8=',
  'base64',
);

const certOf = (pem: string) => new X509Certificate(pem);

describe('tpm_devid: TPMT_PUBLIC of the DevID key', () => {
  it("parses an RSA DevID: a signing key, rsassa over sha256, and the certificate's key", () => {
    const pub = parseTpmtPublic(RSA_PUB);
    expect(pub).toMatchObject({ kind: 'rsa', sign: true, scheme: 0x0014, hash: 0x000b });
    expect(pub.n).toHaveLength(256);
    expect(sameKey(pub, certOf(RSA_CERT))).toBe(true);
  });

  it("tells another key from the certificate's (RSA and EC)", () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    const pub = parseTpmtPublic(RSA_PUB);
    const forged = { ...pub, n: Buffer.from(other.n!, 'base64url') };
    expect(sameKey(forged, certOf(RSA_CERT))).toBe(false);
    // An EC key against an RSA certificate.
    expect(sameKey(parseTpmtPublic(EC_PUB), certOf(RSA_CERT))).toBe(false);
  });

  it('parses an ECC P-256 DevID (ecdsa over sha256) to the point tpm2_print reports', () => {
    const pub = parseTpmtPublic(EC_PUB);
    expect(pub).toMatchObject({ kind: 'ec', sign: true, scheme: 0x0018, hash: 0x000b, curve: 'P-256' });
    const jwk = createPublicKey(EC_PEM).export({ format: 'jwk' });
    expect(pub.x!.equals(Buffer.from(jwk.x!, 'base64url'))).toBe(true);
    expect(pub.y!.equals(Buffer.from(jwk.y!, 'base64url'))).toBe(true);
  });

  it('reports a null signing scheme (which SPIRE cannot use)', () => {
    expect(parseTpmtPublic(NULL_PUB)).toMatchObject({ kind: 'rsa', scheme: 0x0010 });
  });

  it('refuses a blob that still has its TPM2B size prefix, a truncated one and garbage', () => {
    const prefixed = Buffer.concat([Buffer.from([RSA_PUB.length >> 8, RSA_PUB.length & 0xff]), RSA_PUB]);
    expect(() => parseTpmtPublic(prefixed)).toThrow();
    expect(() => parseTpmtPublic(RSA_PUB.subarray(0, RSA_PUB.length - 1))).toThrow(/truncated/);
    expect(() => parseTpmtPublic(Buffer.from('not a key'))).toThrow();
    expect(() => parseTpmtPublic(Buffer.alloc(0))).toThrow(/truncated/);
  });
});

describe('tpm_devid: agent ID', () => {
  it('is spiffe://<td>/spire/agent/tpm_devid/<sha1 of the DevID certificate DER> (SPIRE server devid.go)', () => {
    const der = Buffer.from(certOf(RSA_CERT).raw);
    expect(tpmDevidAgentId('lab.nodeboot.test', der)).toBe(
      'spiffe://lab.nodeboot.test/spire/agent/tpm_devid/' +
        certOf(RSA_CERT).fingerprint.replace(/:/g, '').toLowerCase(),
    );
    expect(tpmDevidAgentId('lab.nodeboot.test', der)).toMatch(
      /^spiffe:\/\/lab\.nodeboot\.test\/spire\/agent\/tpm_devid\/[0-9a-f]{40}$/,
    );
  });
});

describe('tpm_devid: input', () => {
  const withAttestor = (nodeAttestor: Record<string, unknown>) => {
    const i = structuredClone(sampleInput('edge-01'));
    (i.spire as Record<string, unknown>).nodeAttestor = nodeAttestor;
    return i;
  };
  const devid = {
    type: 'tpm_devid',
    tpmDevicePath: '/dev/tpmrm0',
    devidCertPath: '/var/lib/nodeboot/devid/devid.pem',
    devidPrivPath: '/var/lib/nodeboot/devid/devid.priv',
    devidPubPath: '/var/lib/nodeboot/devid/devid.pub',
  };

  it('is accepted up front with the TPM and the three DevID files', () => {
    const r = checkProvisionInput(withAttestor(devid));
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it('refuses up front, naming the field: no tpmDevicePath, a hierarchy password, a DevID file in the agent directory', () => {
    const { tpmDevicePath: _, ...noDevice } = devid;
    expect(checkProvisionInput(withAttestor(noDevice)).problems.join('\n')).toMatch(
      /spire\.nodeAttestor\.tpmDevicePath/,
    );
    expect(
      checkProvisionInput(withAttestor({ ...devid, endorsementHierarchyPasswordEnv: 'TPM_EH_PASSWORD' })).problems.join(
        '\n',
      ),
    ).toMatch(/endorsementHierarchyPasswordEnv/);
    const i = withAttestor(devid);
    (i.spire as Record<string, unknown>).nodeAttestor = { ...devid, devidPrivPath: `${i.nodeDir}/agent/devid.priv` };
    expect(checkProvisionInput(i).problems.join('\n')).toMatch(
      /spire\.nodeAttestor\.devidPrivPath: must not be under .*\/agent/,
    );
  });
});
