/**
 * The ledger's URL holds the database password, so `nodeboot` takes it from the
 * environment only: a `--database-url` flag would put it in argv, where every
 * user on the machine reads it through `ps`. The real CLI, as a process.
 */
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../client/cli/exit-codes.js';
import { describeRun, nodeboot } from '../fixtures/nodeboot-cli.js';

const PASSWORD = 'hunter2-canary';
// Loopback port 1: nothing listens, so a command that gets as far as connecting fails fast.
const URL = `postgres://nodeboot:${PASSWORD}@127.0.0.1:1/nodeboot`;
const ENV = { TEMPORAL_ADDRESS: '127.0.0.1:1', NODEBOOT_CONNECT_TIMEOUT: '2' };

describe('nodeboot and DATABASE_URL', () => {
  it.each([
    [['history', 'edge-01', '--database-url', URL]],
    [['history', 'edge-01', `--database-url=${URL}`, '--json']],
  ])('refuses the flag with a usage error that points to DATABASE_URL, never echoing the value: %j', async (args) => {
    const r = await nodeboot(args, ENV);
    expect(r.code, describeRun(args, r)).toBe(EXIT.INVALID);
    expect(r.stdout + r.stderr).toMatch(/DATABASE_URL/);
    expect(r.stdout + r.stderr).toMatch(/--database-url/);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });

  it('reads DATABASE_URL from the environment (history then tries that ledger)', async () => {
    const args = ['history', 'edge-01', '--json'];
    const r = await nodeboot(args, { ...ENV, DATABASE_URL: URL });
    expect(r.code, describeRun(args, r)).toBe(EXIT.UNREACHABLE);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });

  it('does not offer the flag in --help', async () => {
    const r = await nodeboot(['--help'], ENV);
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout + r.stderr).not.toContain('--database-url');
    expect(r.stdout + r.stderr).toContain('DATABASE_URL');
  });
});
