/**
 * `nodeboot repair` on real components: a join-token agent cannot re-attest,
 * so once it is evicted it is stranded (it exits, and its workloads can get no
 * new SVIDs). A repair run of the provisioned node finds steps 1-3 and the
 * entries in place, mints a FRESH join token in step 4 (the agent comes back
 * under a new agent ID: a token is never reused) and the workloads hold valid
 * SVIDs again.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ledger } from '../../inventory/index.js';
import { processAlive } from '../../activities/host/transport.js';
import { readPidFile } from '../../activities/host/process.js';
import * as server from '../../activities/spire/server-cli.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import { nodePaths } from '../../common/paths.js';
import { ProvisionInput } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import type { Lab } from '../../lab/lab.js';
import type { TestDatabase } from '../helpers/database.js';
import { startLabStack, stopLabStack } from '../helpers/lab-stack.js';
import { withCliWorker } from '../helpers/cli-worker.js';
import { eventually, uniqueId, type TemporalTestEnv } from '../helpers/temporal.js';

describe('nodeboot repair (real lab)', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  let dir: string;

  beforeAll(async () => {
    ({ lab, db, ledger, env } = await startLabStack({
      nodes: 1,
      ephemeral: true,
      trustDomain: 'repair.nodeboot.test',
    }));
    dir = mkdtempSync(path.join(tmpdir(), 'nb-repair-'));
  });

  afterAll(async () => {
    await stopLabStack({ lab, db, ledger, env });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('an evicted join-token agent is re-attested with a fresh token; the workloads get SVIDs again', async () => {
    const nodeId = uniqueId('repair');
    const input = labProvisionInput(lab, 'n1', {
      nodeId,
      workloads: [{ name: 'api', spiffePath: '/ns/repair/sa/api', uid: 62041, port: 9443 }],
    });
    const file = path.join(dir, 'node.json');
    writeFileSync(file, JSON.stringify(input));
    const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
    const t = lab.nodeTransport('n1');
    const p = nodePaths(ProvisionInput.parse(input));

    await withCliWorker(env, ledger, db.url, async (cli) => {
      const first = await cli(['start', '--wait', '--json', file], EXIT.OK);
      const run1 = first.json.run.runId as string;
      const [before] = await server.agentList(srv, { attestationType: 'join_token' });
      expect(before).toMatchObject({ canReattest: false, banned: false });
      const pid1 = (await readPidFile(t, p.agentPid))!;

      // Evicted: a join-token agent cannot come back by itself and exits.
      expect(await server.agentEvict(srv, before!.spiffeId)).toBe(true);
      await eventually(async () => (processAlive(pid1) ? undefined : true), {
        what: 'the evicted agent to exit',
        timeoutMs: 60_000,
      });
      expect(await server.agentList(srv, { attestationType: 'join_token' })).toEqual([]);

      const repaired = await cli(['repair', nodeId, '--wait', '--json'], EXIT.OK);
      expect(repaired.json).toMatchObject({
        started: true,
        repairOf: { runId: run1 },
        run: { outcome: 'provisioned' },
      });
      expect(repaired.json.run.runId).not.toBe(run1);
      // Steps 1-3 found everything in place; step 4 minted a new token: a new agent ID.
      expect(repaired.json.run.steps[0].evidence).toMatchObject({ alreadyPresent: true });
      const after = await server.agentList(srv, { attestationType: 'join_token' });
      expect(after).toHaveLength(1);
      expect(after[0]!.spiffeId).not.toBe(before!.spiffeId);
      const [workload] = repaired.json.run.receipt.workloads as { svidSerial: string; svidNotAfter: string }[];
      expect(new Date(workload!.svidNotAfter).getTime()).toBeGreaterThan(Date.now());

      // A node with no provisioning run has nothing to repair.
      const other = await cli(['repair', uniqueId('never'), '--json'], EXIT.NOT_FOUND);
      expect(other.json.ok).toBe(false);

      await cli(['decommission', '--wait', '--json', nodeId], EXIT.OK);
    });
  });
});
