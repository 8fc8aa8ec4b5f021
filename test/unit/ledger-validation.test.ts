// The ledger checks every name before it queries, with the input's own schemas.
// The pool here points at a closed port: a refused name is InvalidInput (it never
// reached the database), an accepted one gets as far as LedgerUnavailable.
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ProvisionInput } from '../../common/input.js';
import { Ledger, LedgerError } from '../../inventory/index.js';

const ledger = new Ledger(
  new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none', connectionTimeoutMillis: 2_000 }),
);
afterAll(() => ledger.close());

async function errorOf(p: Promise<unknown>): Promise<LedgerError> {
  const err = await p.then(
    () => new Error('expected a LedgerError, got success'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LedgerError);
  return err as LedgerError;
}

describe('ledger names', () => {
  it('a segment the input refuses (41 characters) is refused before any query, naming the field', async () => {
    const tooLong = 'a'.repeat(41);
    expect(ProvisionInput.shape.segment.safeParse(tooLong).success).toBe(false);
    const e = await errorOf(ledger.upsertNode('n1', tooLong, 'ready'));
    expect(e.type).toBe('InvalidInput');
    expect(e.message).toMatch(/^segment /);
    expect((await errorOf(ledger.removePeers('n1', tooLong))).message).toMatch(/^hubName /);
  });

  it('a segment the input takes (40 characters) passes the check and reaches the database', async () => {
    const longest = 'a'.repeat(40);
    expect(ProvisionInput.shape.segment.safeParse(longest).success).toBe(true);
    expect((await errorOf(ledger.upsertNode('n1', longest, 'ready'))).type).toBe('LedgerUnavailable');
  });
});
