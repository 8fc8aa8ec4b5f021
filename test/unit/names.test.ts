import { describe, expect, it } from 'vitest';
import { NodeId, SpiffePath, parseName } from '../../common/names.js';
import { netnsTransport } from '../../activities/host/transport.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import { recordingTransport } from '../helpers/recording-transport.js';
import { redactSecrets } from '../../common/errors.js';

const BAD_NODE_IDS = [
  'edge 01',
  'edge;reboot',
  '../etc',
  'a'.repeat(41),
  '',
  '-rf',
  'Edge',
  'edge/01',
  'edge$(id)',
  'edge\n01',
];

describe('names reaching commands', () => {
  it.each(BAD_NODE_IDS)('rejects node id %j', (bad) => {
    expect(NodeId.safeParse(bad).success).toBe(false);
  });

  it('accepts plain node ids', () => {
    for (const ok of ['edge-01', 'n1', 'a'.repeat(40)]) expect(NodeId.parse(ok)).toBe(ok);
  });

  it('names the field in the error', () => {
    expect(() => parseName(NodeId, 'nodeId', 'edge;reboot')).toThrow(/^nodeId must be lowercase/);
  });

  it('rejects SPIFFE paths with traversal or odd characters', () => {
    for (const bad of ['/a/../b', 'relative', '/a b', '/a;b', '/a//b', '/.'])
      expect(SpiffePath.safeParse(bad).success).toBe(false);
    expect(SpiffePath.parse('/ns/prod/sa/api')).toBe('/ns/prod/sa/api');
  });

  it('a bad namespace name never becomes a transport (nothing runs)', () => {
    for (const bad of ['ns;reboot', '../x', 'a b', 'x'.repeat(65)]) expect(() => netnsTransport(bad)).toThrow(/netns/);
  });

  it('a bad key path never reaches the node', async () => {
    const t = recordingTransport();
    for (const bad of ['relative/key', '/etc/../root/key', '/tmp/a b', '/tmp/$(id)']) {
      await expect(wg.ensureKeyPair(t, bad)).rejects.toThrow(/privateKeyPath/);
    }
    expect(t.calls).toEqual([]);
  });
});

describe('redactSecrets', () => {
  it('removes WireGuard keys, join tokens and PEM blocks', () => {
    const text =
      'key yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk= token 3b0a1f7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b pem -----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----';
    const out = redactSecrets(text);
    expect(out).not.toMatch(/yAnz5TF|3b0a1f7e|abc/);
    expect(out).toContain('[redacted key]');
    expect(out).toContain('[redacted token]');
    expect(out).toContain('[redacted pem]');
  });
});
