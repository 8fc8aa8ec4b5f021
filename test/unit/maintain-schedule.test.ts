/**
 * `nodeboot maintain schedule` and `nodeboot health` on the command line, and
 * the schedule's own validation: a bad option names the field and touches no
 * server.
 */
import { describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { parseCommandLine } from '../../client/cli/args.js';
import { InvalidInputError } from '../../client/provision.js';
import { parseEvery, scheduleFleetMaintenance } from '../../client/schedule.js';
import { maintainScheduleId } from '../../common/maintain-fleet.js';
import { sampleInput } from '../fixtures/inputs.js';

const usageError = (argv: string[]) => {
  try {
    parseCommandLine(argv);
  } catch (err) {
    return (err as Error).message;
  }
  return null;
};

describe('maintain schedule / health command lines', () => {
  it('parses the schedule forms', () => {
    expect(
      parseCommandLine(['maintain', 'schedule', 'demo', '--every', '5m', '--segment', 'dmz', '--max-repairs', '3']),
    ).toMatchObject({
      command: 'maintain',
      sub: 'schedule',
      target: 'demo',
      flags: { every: '5m', segment: 'dmz', 'max-repairs': 3 },
    });
    expect(parseCommandLine(['maintain', 'schedule', '--list'])).toMatchObject({
      sub: 'schedule',
      target: undefined,
      flags: { list: true },
    });
    expect(parseCommandLine(['maintain', 'schedule', 'demo', '--delete'])).toMatchObject({
      target: 'demo',
      flags: { delete: true },
    });
    expect(parseCommandLine(['maintain', 'n1', '--wait'])).toMatchObject({
      command: 'maintain',
      target: 'n1',
      flags: { wait: true },
    });
    expect(parseCommandLine(['health', 'n1', '--json'])).toMatchObject({ command: 'health', target: 'n1' });
    expect(parseCommandLine(['fleet', 'health', 'demo', '--segment', 'a'])).toMatchObject({
      command: 'fleet',
      sub: 'health',
      target: 'demo',
      flags: { segment: 'a' },
    });
  });

  it('refuses what does not fit, naming it', () => {
    expect(usageError(['maintain', 'schedule', 'demo'])).toMatch(/needs --every/);
    expect(usageError(['maintain', 'schedule'])).toMatch(/needs a fleet id/);
    expect(usageError(['maintain', 'n1', '--every', '5m'])).toMatch(/--every does not apply/);
    expect(usageError(['maintain', 'schedule', 'demo', '--every', '5m', '--wait'])).toMatch(/--wait does not apply/);
    expect(usageError(['fleet', 'status', 'demo', '--segment', 'a'])).toMatch(/--segment does not apply/);
    expect(usageError(['maintain', 'schedule', 'demo', '--every', 'soon'])).toBe('invalid flags');
    expect(usageError(['maintain', 'schedule', 'demo', '--every', '5m', '--max-broken-percent', '140'])).toBe(
      'invalid flags',
    );
  });
});

describe('scheduleFleetMaintenance', () => {
  // Any use of the client would throw: invalid options must be refused before it is touched.
  const untouchable = new Proxy(
    {},
    {
      get: () => {
        throw new Error('the client was used');
      },
    },
  ) as Client;
  const { nodeId: _n, ...defaults } = sampleInput('template');
  const fleet = {
    fleetId: 'demo',
    defaults,
    nodes: [{ nodeId: 'demo-n1', nodeDir: '/var/lib/node-bootstrap/demo-n1' }],
  };

  it('reads intervals', () => {
    expect([parseEvery('5m'), parseEvery('1h'), parseEvery('30s'), parseEvery('2d'), parseEvery('5 minutes')]).toEqual([
      300_000,
      3_600_000,
      30_000,
      172_800_000,
      null,
    ]);
  });

  it('a bad interval, budget or segment names the field and changes nothing', async () => {
    const err = await scheduleFleetMaintenance(untouchable, fleet, {
      every: '10s',
      segment: 'nowhere',
      budget: { maxConcurrentRepairs: 0 },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    const fields = (err as InvalidInputError).fields.join('\n');
    expect(fields).toMatch(/^every: /m);
    expect(fields).toMatch(/^budget\.maxConcurrentRepairs: /m);
    expect(fields).toMatch(/^segment: no node of fleet demo/m);
  });

  it('names the schedule after the fleet and segment', () => {
    expect(maintainScheduleId('demo')).toBe('maintain-fleet-demo');
    expect(maintainScheduleId('demo', 'dmz')).toBe('maintain-fleet-demo-dmz');
  });
});
