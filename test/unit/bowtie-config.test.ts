// The worker's Bowtie trust, as its config reads it once at start:
// NODEBOOT_BOWTIE_CONTROLLERS (the allow-list of controller origins) and
// NODEBOOT_CA_FILE (an extra CA). Bad values fail the start, naming the variable.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bowtieTrust, loadWorkerConfig } from '../../workers/config.js';
import { makeTestCa } from '../standins/tls.js';

const dir = mkdtempSync(path.join(tmpdir(), 'nodeboot-bowtie-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('worker config: the Bowtie controllers and CA it trusts', () => {
  it('reads the allow-list as https origins, normalized; unset allows none', () => {
    expect(loadWorkerConfig({}).NODEBOOT_BOWTIE_CONTROLLERS).toEqual([]);
    expect(loadWorkerConfig({ NODEBOOT_BOWTIE_CONTROLLERS: '' }).NODEBOOT_BOWTIE_CONTROLLERS).toEqual([]);
    expect(
      loadWorkerConfig({
        NODEBOOT_BOWTIE_CONTROLLERS: 'https://CTL1.example.net, https://10.0.0.5:8443,https://ctl2.example.net:443',
      }).NODEBOOT_BOWTIE_CONTROLLERS,
    ).toEqual(['https://ctl1.example.net', 'https://10.0.0.5:8443', 'https://ctl2.example.net']);
  });

  it('refuses plain http, paths, credentials and non-URLs, naming the variable', () => {
    for (const bad of [
      'http://ctl1.example.net',
      'https://ctl1.example.net/api',
      'https://ctl1.example.net/',
      'https://u:p@ctl1.example.net',
      'ctl1.example.net',
      'https://ctl1.example.net?x=1',
    ]) {
      expect(() => loadWorkerConfig({ NODEBOOT_BOWTIE_CONTROLLERS: `https://ok.example.net,${bad}` })).toThrow(
        new RegExp(`NODEBOOT_BOWTIE_CONTROLLERS(\\.1)?: "${bad.replace(/[.?/]/g, '\\$&')}" must be an https origin`),
      );
    }
  });

  it('reads NODEBOOT_CA_FILE once as a PEM; a missing or non-PEM file fails the start without echoing it', async () => {
    expect(bowtieTrust(loadWorkerConfig({ NODEBOOT_BOWTIE_CONTROLLERS: 'https://ctl1.example.net' }))).toEqual({
      controllers: ['https://ctl1.example.net'],
    });
    const pem = (await makeTestCa()).cert;
    const file = path.join(dir, 'ca.pem');
    writeFileSync(file, pem);
    expect(bowtieTrust(loadWorkerConfig({ NODEBOOT_CA_FILE: file }))).toEqual({ controllers: [], ca: pem });
    const secret = path.join(dir, 'not-a-cert');
    writeFileSync(secret, 'root:$6$canary-hash:19000:0:99999:7:::\n');
    const err = (() => {
      try {
        bowtieTrust(loadWorkerConfig({ NODEBOOT_CA_FILE: secret }));
      } catch (e) {
        return e as Error;
      }
      throw new Error('accepted');
    })();
    expect(err.message).toBe(`invalid worker configuration:\n  NODEBOOT_CA_FILE: ${secret}: is not a PEM certificate`);
    expect(() => bowtieTrust(loadWorkerConfig({ NODEBOOT_CA_FILE: path.join(dir, 'nope.pem') }))).toThrow(
      /NODEBOOT_CA_FILE: .*nope\.pem: cannot be read \(ENOENT\)/,
    );
    expect(() => loadWorkerConfig({ NODEBOOT_CA_FILE: 'relative.pem' })).toThrow(
      /NODEBOOT_CA_FILE: must be an absolute path/,
    );
  });
});
