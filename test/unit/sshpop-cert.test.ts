/**
 * The sshpop attestor's pure parts against certificates made by the real
 * ssh-keygen (OpenSSH): the certificate parser the worker's pre-check relies
 * on, the server and agent plugin_data, and the alias shape.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderNodeAttestorBlock } from '../../activities/spire/agent-cli.js';
import {
  parseSshCertificate,
  sshpopAttestor,
  sshpopServerPluginData,
  SSH_CERT_HOST,
} from '../../activities/spire/attestors/sshpop.js';
import { ProvisionInput } from '../../common/input.js';
import { sampleInput } from '../fixtures/inputs.js';

let dir: string;
const keygen = (...args: string[]) =>
  execFileSync('ssh-keygen', ['-q', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'nb-sshpop-'));
  keygen('-t', 'ed25519', '-N', '', '-C', 'ca', '-f', path.join(dir, 'ca'));
  keygen('-t', 'ed25519', '-N', '', '-C', 'host', '-f', path.join(dir, 'host'));
  keygen('-t', 'rsa', '-b', '2048', '-N', '', '-C', 'rsa', '-f', path.join(dir, 'rsa'));
  keygen('-t', 'ecdsa', '-N', '', '-C', 'ec', '-f', path.join(dir, 'ec'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Sign `key`.pub with the test CA; returns the certificate line. */
function sign(key: string, ...args: string[]): string {
  keygen('-s', path.join(dir, 'ca'), ...args, path.join(dir, `${key}.pub`));
  return readFileSync(path.join(dir, `${key}-cert.pub`), 'utf8');
}
const pubBlob = (key: string) => readFileSync(path.join(dir, `${key}.pub`), 'utf8').split(' ')[1];

describe('parseSshCertificate', () => {
  it('reads a host certificate as ssh-keygen wrote it: principals, key id, serial, validity, certified key, CA', () => {
    const c = parseSshCertificate(
      sign('host', '-h', '-I', 'edge-01-id', '-n', 'edge-01,edge-01.lab', '-V', '20300101:20300201', '-z', '4242'),
    );
    expect(c.certType).toBe('ssh-ed25519-cert-v01@openssh.com');
    expect(c.type).toBe(SSH_CERT_HOST);
    expect(c.principals).toEqual(['edge-01', 'edge-01.lab']);
    expect(c.keyId).toBe('edge-01-id');
    expect(c.serial).toBe(4242n);
    // ssh-keygen -V dates are local time; compare with what the same clock says.
    expect(c.validAfter).toBe(BigInt(Math.floor(new Date(2030, 0, 1).getTime() / 1000)));
    expect(c.validBefore).toBe(BigInt(Math.floor(new Date(2030, 1, 1).getTime() / 1000)));
    expect(c.criticalOptions).toEqual([]);
    expect(c.publicKey).toBe(pubBlob('host'));
    expect(c.signatureKey).toBe(pubBlob('ca'));
  });

  it('reads RSA and ECDSA host certificates (the certified key is the .pub blob)', () => {
    for (const k of ['rsa', 'ec']) {
      const c = parseSshCertificate(sign(k, '-h', '-I', k, '-n', 'n1'));
      expect(c.publicKey).toBe(pubBlob(k));
      expect(c.principals).toEqual(['n1']);
      expect(c.validBefore).toBe(0xffff_ffff_ffff_ffffn); // no -V: forever
    }
  });

  it('tells a user certificate and its critical options apart', () => {
    const c = parseSshCertificate(
      sign('host', '-I', 'u', '-n', 'root', '-O', 'source-address=192.0.2.0/24', '-O', 'force-command=/bin/true'),
    );
    expect(c.type).toBe(1);
    expect(c.criticalOptions.sort()).toEqual(['force-command', 'source-address']);
  });

  it('refuses what is not a certificate: a plain public key, garbage, a truncated blob, a type mismatch', () => {
    expect(() => parseSshCertificate(readFileSync(path.join(dir, 'host.pub'), 'utf8'))).toThrow(
      /not an OpenSSH certificate/,
    );
    expect(() => parseSshCertificate('hello world')).toThrow(/not an OpenSSH certificate/);
    const [type, b64] = sign('host', '-h', '-I', 'x', '-n', 'x').split(' ');
    const blob = Buffer.from(b64!, 'base64');
    expect(() => parseSshCertificate(`${type} ${blob.subarray(0, blob.length - 10).toString('base64')}`)).toThrow(
      /truncated/,
    );
    expect(() => parseSshCertificate(`ssh-rsa-cert-v01@openssh.com ${b64}`)).toThrow(/does not match its type/);
  });
});

describe('sshpop config and alias', () => {
  it('server plugin_data names the CA file and the per-node agent path; the agent plugin_data only file paths', async () => {
    expect(
      renderNodeAttestorBlock({
        type: 'sshpop',
        pluginData: sshpopServerPluginData({ certAuthoritiesPath: '/lab/pki/ssh-ca.pub' }),
      }).join('\n'),
    ).toBe(
      [
        '  NodeAttestor "sshpop" {',
        '    plugin_data {',
        '      cert_authorities_path = "/lab/pki/ssh-ca.pub"',
        '      agent_path_template = "/sshpop/{{ .Hostname }}"',
        '    }',
        '  }',
      ].join('\n'),
    );
    const base = sampleInput('edge-01');
    const input = ProvisionInput.parse({
      ...base,
      spire: {
        ...base.spire,
        nodeAttestor: {
          type: 'sshpop',
          hostKeyPath: '/etc/ssh/ssh_host_ed25519_key',
          hostCertPath: '/etc/ssh/ssh_host_ed25519_key-cert.pub',
        },
      },
    });
    const spec = input.spire.nodeAttestor as Extract<typeof input.spire.nodeAttestor, { type: 'sshpop' }>;
    const ctx = { input, spec, node: undefined as never, server: undefined as never };
    const td = input.spire.trustDomain;
    expect(await sshpopAttestor.prepare(ctx)).toEqual({
      pluginData: {
        host_key_path: '/etc/ssh/ssh_host_ed25519_key',
        host_cert_path: '/etc/ssh/ssh_host_ed25519_key-cert.pub',
      },
      agentId: `spiffe://${td}/spire/agent/sshpop/edge-01`,
    });
    const attested = {
      spiffeId: `spiffe://${td}/spire/agent/sshpop/edge-01`,
      attestationType: 'sshpop',
      banned: false,
      canReattest: true,
      selectors: [],
      x509SvidSerialNumber: '1',
      x509SvidExpiresAt: 0,
    };
    expect(sshpopAttestor.alias(ctx, attested)).toEqual({
      parentId: attested.spiffeId,
      spiffeId: `spiffe://${td}/node/edge-01`,
      selectors: [`spiffe_id:${attested.spiffeId}`],
    });
    // Another node's agent ID never becomes this node's alias parent.
    expect(() =>
      sshpopAttestor.alias(ctx, { ...attested, spiffeId: `spiffe://${td}/spire/agent/sshpop/edge-02` }),
    ).toThrow(/not node edge-01/);
  });
});
