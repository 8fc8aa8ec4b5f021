/**
 * The attestor contract's pure parts: the exact NodeAttestor HCL written for
 * the agent and the server, the values it refuses to write, the registry, and
 * the input rules for credential paths.
 */
import { describe, expect, it } from 'vitest';
import { renderAgentConfig, renderNodeAttestorBlock } from '../../activities/spire/agent-cli.js';
import { attestorOf } from '../../activities/spire/attestors/index.js';
import { x509popServerPluginData } from '../../activities/spire/attestors/x509pop.js';
import { ProvisionInput } from '../../common/input.js';
import { checkProvisionInput, DRIVABLE_ATTESTORS } from '../../common/validate.js';
import { renderServerConfig } from '../../lab/spire-server.js';
import { sampleInput } from '../fixtures/inputs.js';

const agentBase = {
  trustDomain: 'td.test',
  serverAddress: '10.200.0.1',
  serverPort: 8081,
  dataDir: '/n/agent/data',
  socketPath: '/n/agent/public/api.sock',
  trustBundlePath: '/n/agent/data/b.pem',
};

describe('NodeAttestor blocks', () => {
  it('writes the x509pop agent block with the node paths only', () => {
    const conf = renderAgentConfig({
      ...agentBase,
      nodeAttestor: {
        type: 'x509pop',
        pluginData: { private_key_path: '/etc/nb/node.key', certificate_path: '/etc/nb/node.pem' },
      },
    });
    expect(conf).toContain(
      [
        '  NodeAttestor "x509pop" {',
        '    plugin_data {',
        '      private_key_path = "/etc/nb/node.key"',
        '      certificate_path = "/etc/nb/node.pem"',
        '    }',
        '  }',
      ].join('\n'),
    );
    expect(conf).not.toMatch(/join_token/);
  });

  it('keeps the join_token agent config as before, and a token only with join_token', () => {
    const conf = renderAgentConfig({ ...agentBase, joinToken: 'abc-123' });
    expect(conf).toContain('  join_token = "abc-123"');
    expect(conf).toContain(['  NodeAttestor "join_token" {', '    plugin_data {}', '  }'].join('\n'));
    expect(() =>
      renderAgentConfig({ ...agentBase, joinToken: 'abc', nodeAttestor: { type: 'x509pop', pluginData: {} } }),
    ).toThrow(/only for the join_token attestor/);
  });

  it('writes the server blocks the fleet uses, x509pop with the CN template', () => {
    const conf = renderServerConfig({
      trustDomain: 'td.test',
      bindAddress: '0.0.0.0',
      port: 8081,
      socketPath: '/s/api.sock',
      dataDir: '/s/data',
      datastore: { type: 'sqlite3', file: '/s/data/ds.sqlite3' },
      keyManager: { type: 'memory' },
      nodeAttestors: [
        { type: 'join_token', pluginData: {} },
        { type: 'x509pop', pluginData: x509popServerPluginData({ caBundlePath: '/s/pki/ca.pem' }) },
      ],
    });
    expect(conf).toContain(
      [
        '  NodeAttestor "join_token" {',
        '    plugin_data {}',
        '  }',
        '  NodeAttestor "x509pop" {',
        '    plugin_data {',
        '      ca_bundle_path = "/s/pki/ca.pem"',
        '      agent_path_template = "/x509pop/{{ .Subject.CommonName }}"',
        '    }',
        '  }',
      ].join('\n'),
    );
  });

  it.each([
    ['a quote', '/a"b'],
    ['a newline', '/a\nb'],
    ['an interpolation', '/a${x}'],
    ['a backslash', '/a\\b'],
  ])('refuses a plugin_data value with %s', (_, v) => {
    expect(() => renderNodeAttestorBlock({ type: 'x509pop', pluginData: { certificate_path: v } })).toThrow(
      /pluginData\.certificate_path/,
    );
  });
});

describe('the registry and the input rules', () => {
  it('drives exactly the attestors validation accepts', () => {
    for (const t of DRIVABLE_ATTESTORS) expect(attestorOf(t as never)?.type).toBe(t);
    expect(attestorOf('aws_iid')).toBeUndefined();
    expect(attestorOf('x509pop')?.canReattest).toBe(true);
    expect(attestorOf('join_token')?.canReattest).toBe(false);
  });

  it('derives the x509pop agent ID from the node id (the server template on the CN)', () => {
    const input = ProvisionInput.parse({
      ...sampleInput('edge-01'),
      spire: {
        ...sampleInput('edge-01').spire,
        nodeAttestor: { type: 'x509pop', certificatePath: '/etc/nb/n.pem', privateKeyPath: '/etc/nb/n.key' },
      },
    });
    expect(attestorOf('x509pop')!.agentId(input)).toBe(
      `spiffe://${input.spire.trustDomain}/spire/agent/x509pop/edge-01`,
    );
  });

  it('accepts x509pop and refuses one file for both, naming the field', () => {
    const base = sampleInput('edge-01');
    const ok = checkProvisionInput({
      ...base,
      spire: {
        ...base.spire,
        nodeAttestor: { type: 'x509pop', certificatePath: '/etc/nb/n.pem', privateKeyPath: '/etc/nb/n.key' },
      },
    });
    expect(ok.problems).toEqual([]);
    const same = checkProvisionInput({
      ...base,
      spire: {
        ...base.spire,
        nodeAttestor: { type: 'x509pop', certificatePath: '/etc/nb/n.pem', privateKeyPath: '/etc/nb/n.pem' },
      },
    });
    expect(same.problems).toEqual([
      'spire.nodeAttestor.privateKeyPath: names the same file as another credential path',
    ]);
  });
});
