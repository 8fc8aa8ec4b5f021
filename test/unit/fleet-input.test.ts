// The fleet file: the documented example is valid, every bad field is named
// with its node's index, and the failure budget's arithmetic.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { allowedFailures, checkFleet, FleetInput } from '../../common/fleet.js';
import { sampleInput } from '../fixtures/inputs.js';

const { nodeId: _unused, ...defaults } = sampleInput('template');

describe('fleet input', () => {
  it('accepts the example in docs/operating.md, node fields merged over the defaults', () => {
    const doc = readFileSync(new URL('../../docs/operating.md', import.meta.url), 'utf8');
    const example = /## Fleets[\s\S]*?```json\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const { fleet, problems } = checkFleet(JSON.parse(example!));
    expect(problems).toEqual([]);
    expect(fleet!.nodes[0]).toMatchObject({
      nodeId: 'rack7-01',
      segment: 'onprem',
      host: { kind: 'ssh', host: 'rack7-01.example.net' },
    });
  });

  it('names each bad field with its node index, and duplicate node ids', () => {
    const { fleet, problems } = checkFleet({
      fleetId: 'f1',
      defaults,
      nodes: [
        { nodeId: 'a' },
        { nodeId: 'b', nodeDir: 'relative' },
        { nodeId: 'a', host: { kind: 'netns', netns: 'Bad' } },
      ],
    });
    expect(fleet).toBeNull();
    expect(problems).toEqual([
      expect.stringMatching(/^nodes\.1\.nodeDir: /),
      'nodes.2.nodeId: duplicate node id "a"',
      expect.stringMatching(/^nodes\.2\.host\.netns: /),
    ]);
  });

  it("merges a segment's fields deeply into the defaults (the attestor per segment), then the node's own over the top", () => {
    const dir = (n: string) => `/var/lib/node-bootstrap/${n}`;
    const { fleet, problems } = checkFleet({
      fleetId: 'f2',
      defaults,
      segments: { dmz: { spire: { nodeAttestor: { type: 'join_token', tokenTtlSeconds: 120 } } } },
      nodes: [
        { nodeId: 'dmz-1', segment: 'dmz', nodeDir: dir('dmz-1') },
        { nodeId: 'lab-1', nodeDir: dir('lab-1') },
      ],
    });
    expect(problems).toEqual([]);
    const [dmz, lab] = fleet!.nodes;
    expect(dmz!.spire).toMatchObject({
      trustDomain: defaults.spire.trustDomain,
      serverAddress: defaults.spire.serverAddress,
      nodeAttestor: { tokenTtlSeconds: 120 },
    });
    expect(lab!.spire.nodeAttestor).toEqual({ type: 'join_token', tokenTtlSeconds: 600 });
    // A segment that no node is in is a typo, named.
    const typo = checkFleet({ fleetId: 'f3', defaults, segments: { dnz: {} }, nodes: [{ nodeId: 'a' }] });
    expect(typo.problems).toEqual(['segments.dnz: no node of the fleet is in segment "dnz"']);
  });

  it('rejects fleet-level mistakes before looking at nodes', () => {
    const { problems } = checkFleet({ fleetId: 'Bad Id', nodes: [], window: 0, surprise: true });
    expect(problems.map((p) => p.split(':')[0])).toEqual(
      expect.arrayContaining(['fleetId', 'nodes', 'window', '(input)']),
    );
  });

  it('allows the smaller of maxFailed and maxFailedPercent of the fleet; none without a budget', () => {
    expect(allowedFailures({ maxFailed: 3, maxFailedPercent: 10 }, 100)).toBe(3);
    expect(allowedFailures({ maxFailed: 30, maxFailedPercent: 10 }, 100)).toBe(10);
    expect(allowedFailures({ maxFailedPercent: 10 }, 5)).toBe(0); // 0.5 rounds down: the first failure stops a 5-node fleet
    expect(allowedFailures({}, 100)).toBeNull();
    expect(FleetInput.parse({ fleetId: 'f', nodes: [{ nodeId: 'n' }] }).failureBudget).toEqual({
      maxFailedPercent: 10,
    });
  });
});
