/**
 * `nodeboot rerun` on real components: a failure injected at step 4 does not
 * cost steps 1-3 their work, proved by the ledger.
 *
 * The injection: the first run asks for the x509pop node attestor with a
 * machine certificate that is not on the node, so step 4 fails with a
 * permanent InvalidInput after steps 1-3 (interface, key, overlay address,
 * hub peering, handshake) succeeded for real. With onFailure 'hold' the run
 * waits instead of compensating. The operator fixes the input and runs
 * `nodeboot rerun <node> --input fixed.json`: the held run is terminated
 * without compensation, and the new run's steps 1-3 find everything in place.
 * The ledger shows the same address row (same allocated_at), the same peers
 * (same key, same timestamps), and no compensation anywhere. Then
 * `nodeboot history` reads both runs from the ledger and
 * `nodeboot decommission` removes the node.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ledger } from '../../inventory/index.js';
import * as server from '../../activities/spire/server-cli.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import type { ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import type { Lab } from '../../lab/lab.js';
import type { TestDatabase } from '../helpers/database.js';
import { startLabStack, stopLabStack } from '../helpers/lab-stack.js';
import { withCliWorker } from '../helpers/cli-worker.js';
import { uniqueId, type TemporalTestEnv } from '../helpers/temporal.js';

interface LedgerRows {
  allocations: { cidr: string; ip: string; allocated_at: Date }[];
  peers: { hub_name: string; node_public_key: string; created_at: Date; updated_at: Date }[];
  node: { state: string; created_at: Date }[];
}

describe('nodeboot rerun after a failure at step 4 (real lab, real ledger)', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  let dir: string;

  beforeAll(async () => {
    ({ lab, db, ledger, env } = await startLabStack({ nodes: 1, ephemeral: true, trustDomain: 'rerun.nodeboot.test' }));
    dir = mkdtempSync(path.join(tmpdir(), 'nb-rerun-'));
  });

  afterAll(async () => {
    await stopLabStack({ lab, db, ledger, env });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function rows(nodeId: string): Promise<LedgerRows> {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const q = async <T>(sql: string) => (await c.query(sql, [nodeId])).rows as T[];
      return {
        allocations: await q(
          'SELECT cidr::text AS cidr, host(ip) AS ip, allocated_at FROM overlay_allocations WHERE node_id = $1 ORDER BY cidr',
        ),
        peers: await q(
          'SELECT hub_name, node_public_key, created_at, updated_at FROM peers WHERE node_id = $1 ORDER BY hub_name',
        ),
        node: await q('SELECT state, created_at FROM nodes WHERE node_id = $1'),
      };
    } finally {
      await c.end();
    }
  }

  it('rerun with a fixed input completes the node without redoing steps 1-3 (same address row, same peers, no compensation)', async () => {
    const nodeId = uniqueId('rerun');
    const fixed = labProvisionInput(lab, 'n1', {
      nodeId,
      workloads: [{ name: 'api', spiffePath: '/ns/rerun/sa/api', uid: 62011, port: 9443 }],
      overrides: { onFailure: 'hold' },
    });
    const broken: ProvisionInputJson = {
      ...fixed,
      spire: {
        ...fixed.spire,
        nodeAttestor: {
          type: 'x509pop',
          certificatePath: '/etc/nodeboot/agent.crt',
          privateKeyPath: '/etc/nodeboot/agent.key',
        },
      },
    };
    const brokenFile = path.join(dir, 'broken.json');
    const fixedFile = path.join(dir, 'fixed.json');
    writeFileSync(brokenFile, JSON.stringify(broken, null, 2));
    writeFileSync(fixedFile, JSON.stringify(fixed, null, 2));

    await withCliWorker(env, ledger, db.url, async (cli) => {
      // Run 1: steps 1-3 for real, then step 4 fails for good and the run holds.
      const held = await cli(['start', '--wait', '--json', brokenFile], EXIT.HELD);
      expect(held.json.run).toMatchObject({
        outcome: 'held',
        heldStep: 'startSpireAgent',
        lastFailure: { step: 'startSpireAgent', type: 'InvalidInput', errorClass: 'permanent' },
      });
      expect(held.json.run.lastFailure.message).toMatch(/spire\.nodeAttestor\.\w+Path/); // the machine certificate is not on the node
      expect(held.json.run.steps.slice(0, 3).map((s: { state: string }) => s.state)).toEqual([
        'succeeded',
        'succeeded',
        'succeeded',
      ]);
      const run1 = held.json.run.runId as string;
      const key1 = held.json.run.steps[1].evidence as { overlayIp: string; publicKey: string };
      const before = await rows(nodeId);
      expect(before.allocations).toHaveLength(1);
      expect(before.allocations[0]!.ip).toBe(key1.overlayIp);
      expect(before.peers).toHaveLength(1);
      expect(before.peers[0]!.node_public_key).toBe(key1.publicKey);

      // The operator fixes the attestor and reruns.
      const rerun = await cli(['rerun', nodeId, '--input', fixedFile, '--wait', '--json'], EXIT.OK);
      expect(rerun.json).toMatchObject({
        started: true,
        inputFrom: 'file',
        rerunOf: { runId: run1, terminated: true },
        run: { outcome: 'provisioned' },
      });
      const run2 = rerun.json.run.runId as string;
      expect(run2).not.toBe(run1);
      expect(rerun.json.run.steps[0].evidence).toMatchObject({ alreadyPresent: true });
      expect(rerun.json.run.receipt).toMatchObject({
        overlayIp: key1.overlayIp,
        publicKey: key1.publicKey,
        attestationType: 'join_token',
      });

      // The ledger: the same allocation row and peer rows, untouched.
      const after = await rows(nodeId);
      expect(after.allocations).toEqual(before.allocations);
      expect(after.peers).toEqual(before.peers);
      expect(after.node[0]!.created_at).toEqual(before.node[0]!.created_at);

      // Events: run 1 held at step 4 and was never compensated; run 2 re-ran 1-3 and finished.
      const events = await ledger.listEvents(nodeId);
      const of = (runId: string) => events.filter((e) => e.runId === runId).map((e) => `${e.step}:${e.kind}`);
      expect(of(run1)).toEqual(
        expect.arrayContaining(['issueOverlayKey:succeeded', 'startSpireAgent:failed', 'startSpireAgent:held']),
      );
      expect(events.filter((e) => e.kind === 'compensated' || e.kind === 'compensation_failed')).toEqual([]);
      expect(of(run2)).toEqual(
        expect.arrayContaining([
          'installOverlay:succeeded',
          'issueOverlayKey:succeeded',
          'gatePeerHealth:succeeded',
          'startSpireAgent:succeeded',
          'launchWorkloads:succeeded',
          'workflow:succeeded',
        ]),
      );

      const history = await cli(['history', '--json', nodeId], EXIT.OK);
      expect(new Set(history.json.events.map((e: { runId: string }) => e.runId))).toEqual(new Set([run1, run2]));

      const status = await cli(['status', '--json', nodeId], EXIT.OK);
      expect(status.json.run).toMatchObject({ runId: run2, outcome: 'provisioned' });

      // And out again: decommission leaves no address, peer or SPIRE entry behind.
      const gone = await cli(['decommission', '--wait', '--json', nodeId], EXIT.OK);
      expect(gone.json).toMatchObject({ state: 'succeeded', cancelledProvisionRun: null });
    });

    const final = await rows(nodeId);
    expect(final.allocations).toEqual([]);
    expect(final.peers).toEqual([]);
    expect(await server.entryShow({ transport: lab.hubTransport(), socketPath: lab.spire!.socketPath })).toEqual([]);
  });
});
