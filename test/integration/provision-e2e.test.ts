/**
 * provisionNode end to end on real components: two lab nodes (wireguard-go in
 * network namespaces), the SPIRE server on the hub, SPIRE agents on the nodes,
 * the real ledger, the real dev server. Agents attest over the overlay to a
 * SPIRE server on its PostgreSQL datastore (the other real-component tests use
 * sqlite3). Then the workloads talk mTLS across the overlay, and decommission
 * leaves no residue.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { nodePaths } from '../../activities/paths.js';
import { Ledger } from '../../inventory/index.js';
import { localTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import * as server from '../../activities/spire/server-cli.js';
import { startDecommission, startProvisioning } from '../../client/provision.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { Lab } from '../../lab/lab.js';
import { callWorkload } from '../../lab/mtls-proof.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { requireRealComponents } from '../helpers/prereqs.js';
import { connectTestEnv, eventually, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';

describe('provisionNode on real components', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  const td = 'e2e.nodeboot.test';
  const inputs: ProvisionInputJson[] = [];

  beforeAll(async () => {
    requireRealComponents(['temporal', 'spire-server', 'spire-agent']);
    [lab, db, env] = await Promise.all([
      Lab.up({ nodes: 2, ephemeral: true, trustDomain: td, datastore: 'postgres' }),
      createTestDatabase(),
      connectTestEnv(),
    ]);
    ledger = await Ledger.connect(db.url, { migrate: true });
    const tag = uniqueId('e2e').slice(-10);
    inputs.push(
      labProvisionInput(lab, 'n1', {
        nodeId: `${tag}-n1`,
        workloads: [
          {
            name: 'api',
            spiffePath: '/ns/e2e/sa/api',
            uid: 62001,
            port: 9443,
            allow: [`spiffe://${td}/ns/e2e/sa/web`],
          },
        ],
      }),
      labProvisionInput(lab, 'n2', {
        nodeId: `${tag}-n2`,
        segment: 'cloud',
        workloads: [{ name: 'web', spiffePath: '/ns/e2e/sa/web', uid: 62002, port: 9443, allow: [] }],
      }),
    );
  });

  afterAll(async () => {
    await ledger?.close();
    await Promise.allSettled([lab?.down(), db?.drop(), env?.close()]);
  });

  it('provisions two nodes, proves mTLS over the overlay, and decommissions without residue', async () => {
    await withWorker(
      env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
      async (taskQueue) => {
        const runs = await Promise.all(inputs.map((i) => startProvisioning(env.client, i, { taskQueue })));
        expect(runs.every((r) => r.started)).toBe(true);
        const receipts = await Promise.all(runs.map((r) => r.handle.result()));

        for (const [i, r] of receipts.entries()) {
          expect(r.nodeId).toBe(inputs[i]!.nodeId);
          expect(r.overlayIp).toMatch(/^10\.200\.\d+\.\d+$/);
          expect(r.keyFingerprint).toMatch(/^[0-9a-f]{16}$/);
          expect(r.hubHandshakes[0]!.latestHandshakeUnix).toBeGreaterThan(0);
          expect(r.nodeAliasId).toBe(`spiffe://${td}/node/${inputs[i]!.nodeId}`);
          expect(r.entries).toHaveLength(1);
          expect(r.workloads[0]!.svidTtlSeconds).toBeGreaterThan(3000);
        }
        expect(receipts[0]!.overlayIp).not.toBe(receipts[1]!.overlayIp);

        // A second start for a provisioned node returns the existing run, no duplicate.
        const again = await startProvisioning(env.client, inputs[0]!, { taskQueue });
        expect(again.started).toBe(false);
        expect((await again.handle.result()).runId).toBe(receipts[0]!.runId);

        // The node's private key is on the node, 0600, and in no receipt.
        const keyMode = await lab
          .nodeTransport('n1')
          .run('stat', ['-c', '%a', `${lab.node('n1').dir}/wireguard/${receipts[0]!.interface}.key`]);
        expect(keyMode.stdout.trim()).toBe('600');

        // Step 6 proves each workload's SVID, not that it serves yet (it fetches its own, then listens):
        // wait for both to log "listening", or a refused connect would pass for a refused peer below.
        for (const [input, name] of [
          [inputs[0]!, 'api'],
          [inputs[1]!, 'web'],
        ] as const) {
          const log = nodePaths(ProvisionInput.parse(input)).workloadLog(name);
          await eventually(() => Promise.resolve(readFileSync(log, 'utf8').includes('"listening"')), {
            what: `${name} listening (${log})`,
          });
        }

        // The layers together: web@n2 calls api@n1 over mTLS across the overlay; web's server, which allows nobody, refuses api.
        const ok = await callWorkload(
          lab,
          inputs[1]!,
          'web',
          62002,
          `${receipts[0]!.overlayIp}:9443`,
          `spiffe://${td}/ns/e2e/sa/api`,
        );
        expect(ok, ok.detail).toMatchObject({ ok: true, outcome: 'accepted' });
        const refused = await callWorkload(
          lab,
          inputs[0]!,
          'api',
          62001,
          `${receipts[1]!.overlayIp}:9443`,
          `spiffe://${td}/ns/e2e/sa/web`,
        );
        expect(refused, refused.detail).toMatchObject({ ok: false, outcome: 'refused by server' });
        expect(refused.detail).toContain(`spiffe://${td}/ns/e2e/sa/api`);

        // Decommission: the same undo path, leaving only events behind.
        const decs = await Promise.all(inputs.map((i) => startDecommission(env.client, i, { taskQueue })));
        await Promise.all(decs.map((d) => d.result()));
      },
    );

    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    expect(await server.entryShow(srv)).toEqual([]);
    expect((await server.agentList(srv)).length).toBe(0);
    for (const i of inputs) {
      expect(await ledger.getNode(i.nodeId)).toBeNull();
      expect(await ledger.listAllocations(i.nodeId)).toEqual([]);
      expect(await ledger.listPeers(i.nodeId)).toEqual([]);
      expect(await ledger.listEntries(i.nodeId)).toEqual([]);
      expect(await ledger.listWorkloads(i.nodeId)).toEqual([]);
      expect((await ledger.listEvents(i.nodeId)).length).toBeGreaterThan(0);
    }
    for (const n of lab.nodes) {
      const links = await ip.listLinks(lab.nodeTransport(n));
      expect(links.map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
      const procs = await ip.netnsPids(localTransport(), n.netns);
      expect(procs).toEqual([]);
    }
    const hubPeers = await ip.listLinks(lab.hubTransport());
    expect(hubPeers.some((l) => l.ifname === lab.hub.interface)).toBe(true);
    // The lab still has exactly its own namespaces (other test files run in parallel).
    const mine = (await ip.netnsList(localTransport())).filter((ns) => ns.startsWith(`${lab.prefix}-`));
    expect(mine.sort()).toEqual([lab.hub.netns, ...lab.nodes.map((n) => n.netns), lab.state.underlayNetns].sort());
  });
});
