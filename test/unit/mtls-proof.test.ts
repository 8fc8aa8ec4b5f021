/**
 * How the lab reads `demo-workload call`'s JSON line (lab/mtls-proof.ts): a
 * refusal is named by the side that refused, and only "nothing listens there
 * yet" is asked again. The lines are the Go program's own (lab/demo-workload/).
 */
import { describe, expect, it } from 'vitest';
import { readCall } from '../../lab/mtls-proof.js';

const client = 'spiffe://demo.nodeboot.test/ns/demo/sa/web';
const server = 'spiffe://demo.nodeboot.test/ns/demo/sa/api';
const line = (o: object) => `${JSON.stringify(o)}\n`;

describe('readCall', () => {
  it('an accepted exchange names both SPIFFE IDs', () => {
    const r = readCall(line({ client, server, reply: { ok: true, server, client } }), '', 0);
    expect(r).toEqual({ ok: true, outcome: 'accepted', detail: `${client} ⇄ ${server}`, retry: false });
  });

  it('nothing listening yet is asked again, and is no refusal', () => {
    const error = 'dial tcp 10.200.0.3:8443: connect: connection refused';
    const r = readCall(line({ client, stage: 'dial', code: 'ECONNREFUSED', error }), '', 1);
    expect(r).toMatchObject({ ok: false, outcome: 'failed', retry: true });
    expect(r.detail).toContain(error);
  });

  it('an unreachable address is a failure, not asked again', () => {
    const error = 'dial tcp 10.200.0.9:8443: i/o timeout';
    expect(readCall(line({ client, stage: 'dial', error }), '', 1)).toMatchObject({ outcome: 'failed', retry: false });
  });

  it("the server's refusal in its reply names the caller", () => {
    const r = readCall(
      line({ client, server, reply: { ok: false, refused: client, reason: 'SPIFFE ID not allowed' } }),
      '',
      1,
    );
    expect(r).toMatchObject({ ok: false, outcome: 'refused by server', retry: false });
    expect(r.detail).toBe(`server refused ${client}: SPIFFE ID not allowed`);
  });

  it("the server's TLS alert after the client's handshake is the server's refusal", () => {
    const error = 'remote error: tls: bad certificate';
    expect(readCall(line({ client, stage: 'reply', error }), '', 1)).toMatchObject({ outcome: 'refused by server' });
  });

  it("the client's own refusal of the server's ID is the client's", () => {
    const error = `unexpected ID "${server}"`;
    expect(readCall(line({ client, stage: 'handshake', error }), '', 1)).toMatchObject({
      outcome: 'refused by client',
      retry: false,
    });
  });

  it('no JSON line (no SVID within the deadline) is a failure with the stderr line', () => {
    const stderr = 'demo-workload: no SVID within 1m0s: context deadline exceeded\n';
    expect(readCall('', stderr, 1)).toEqual({
      ok: false,
      outcome: 'failed',
      detail: 'demo-workload: no SVID within 1m0s: context deadline exceeded',
      retry: false,
    });
  });
});
