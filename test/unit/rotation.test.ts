/**
 * The rotation's pure parts: the request validation (the one the workflow,
 * `nodeboot rotate` and the library client share) and the argv of the node-side
 * key scripts and the hub command (constant scripts, paths as parameters).
 */
import { describe, expect, it } from 'vitest';
import { discardArgs, nextKeyPathOf, promoteArgs } from '../../activities/overlay/wireguard/rotation-keys.js';
import { routelessPeerArgs } from '../../activities/overlay/wireguard/rotate.js';
import { ProvisionInput } from '../../common/input.js';
import { checkRotateRequest } from '../../common/rotation.js';
import { sampleInput } from '../fixtures/inputs.js';

const KEY = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';

describe('rotation request', () => {
  it('accepts a provisioning input, defaulting the handshake timeout', () => {
    const r = checkRotateRequest({ input: sampleInput('rot-1') });
    expect(r.ok).toBe(true);
    expect(r.value).toMatchObject({ input: { nodeId: 'rot-1' }, handshakeTimeoutSeconds: 30 });
  });

  it('names the bad field: the input, the timeout, an unknown option', () => {
    expect(checkRotateRequest({ input: { ...sampleInput('rot-1'), nodeDir: 'relative' } }).problems).toEqual([
      expect.stringMatching(/^nodeDir: /),
    ]);
    expect(checkRotateRequest({ input: sampleInput('rot-1'), handshakeTimeoutSeconds: 1 }).problems).toEqual([
      expect.stringMatching(/^handshakeTimeoutSeconds: /),
    ]);
    expect(checkRotateRequest({ input: sampleInput('rot-1'), privateKey: 'x' }).problems).toEqual([
      expect.stringMatching(/privateKey/),
    ]);
    expect(checkRotateRequest({}).problems).toEqual([expect.stringMatching(/^input: is required/)]);
  });

  it('refuses the bowtie driver, naming overlay.driver', () => {
    const bowtie = {
      ...sampleInput('rot-1'),
      overlay: {
        driver: 'bowtie' as const,
        cidr: '10.200.0.0/16',
        bowtie: {
          controllerUrl: 'https://ctl1.example.net',
          auth: { kind: 'apiKey' as const, keyIdEnv: 'NODEBOOT_CRED_ID', secretEnv: 'NODEBOOT_CRED_SECRET' },
          package: { source: '/opt/bowtie.deb', sha256: 'a'.repeat(64) },
        },
      },
    };
    expect(ProvisionInput.safeParse(bowtie).success).toBe(true);
    expect(checkRotateRequest({ input: bowtie }).problems).toEqual([
      expect.stringMatching(/^overlay\.driver: key rotation supports "wireguard" only/),
    ]);
  });

  it('overlay.maxKeyAgeDays: optional, a positive whole number of days, wireguard only', () => {
    const withAge = (v: unknown) => ({
      ...sampleInput('rot-1'),
      overlay: { ...sampleInput('rot-1').overlay, maxKeyAgeDays: v },
    });
    expect(ProvisionInput.parse(sampleInput('rot-1')).overlay.maxKeyAgeDays).toBeUndefined();
    expect(ProvisionInput.parse(withAge(90)).overlay.maxKeyAgeDays).toBe(90);
    for (const bad of [0, -1, 1.5, '90']) {
      const r = ProvisionInput.safeParse(withAge(bad));
      expect(r.success).toBe(false);
      expect(r.error?.issues[0]?.path).toEqual(['overlay', 'maxKeyAgeDays']);
    }
  });
});

describe('rotation commands', () => {
  it('the new key waits beside the current one', () => {
    expect(nextKeyPathOf('/var/lib/nb/n1/wireguard/nb1.key')).toBe('/var/lib/nb/n1/wireguard/nb1.key.next');
  });

  it('key scripts are constants with the paths as positional parameters', () => {
    const promote = promoteArgs('/d/wg/a.key.next', '/d/wg/a.key');
    expect(promote.slice(0, 1)).toEqual(['-c']);
    expect(promote.slice(2)).toEqual(['wg-promote', '/d/wg/a.key.next', '/d/wg/a.key']);
    expect(promote[1]).toMatch(/mv -f -- "\$n" "\$c"$/);
    expect(promote[1]).not.toContain('/d/wg');
    expect(discardArgs('/d/wg/a.key.next').slice(2)).toEqual(['wg-discard', '/d/wg/a.key.next']);
    expect(() => promoteArgs('/d/wg/a.key.next; rm -rf /', '/d/wg/a.key')).toThrow(/nextKeyPath/);
    expect(() => discardArgs('../a.key.next')).toThrow(/nextKeyPath/);
  });

  it('the hub learns the new peer without a route', () => {
    expect(routelessPeerArgs('wghub', KEY)).toEqual(['set', 'wghub', 'peer', KEY]);
    expect(() => routelessPeerArgs('wghub', 'not-a-key')).toThrow(/peer\.publicKey/);
  });
});
