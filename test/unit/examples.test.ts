// The example inputs a newcomer starts from are valid, by the same validation
// `nodeboot start` and `nodeboot fleet start` use.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkFleet } from '../../common/fleet.js';
import { checkProvisionInput } from '../../common/validate.js';

const example = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../examples/${name}`, import.meta.url), 'utf8')) as unknown;

describe('examples/', () => {
  it('node.json is a valid provisionNode input (an SSH host attesting with its machine certificate)', () => {
    const checked = checkProvisionInput(example('node.json'));
    expect(checked.problems).toEqual([]);
    expect(checked.value).toMatchObject({ host: { kind: 'ssh' }, spire: { nodeAttestor: { type: 'x509pop' } } });
  });

  it('fleet.json is a valid fleet; its dmz segment attests by x509pop, the rest by sshpop', () => {
    const { fleet, problems } = checkFleet(example('fleet.json'));
    expect(problems).toEqual([]);
    expect(fleet!.nodes.map((n) => [n.nodeId, n.segment, n.spire.nodeAttestor.type])).toEqual([
      ['rack7-01', 'onprem', 'sshpop'],
      ['rack7-02', 'onprem', 'sshpop'],
      ['dmz-01', 'dmz', 'x509pop'],
    ]);
  });
});
