/**
 * The read-only preflight on real components: a run whose `spire.trustDomain`
 * is not the SPIRE server's fails `InvalidInput` naming the field before step 1,
 * so nothing on the node changes (before, steps 1-3 built the overlay and step
 * 4's `token generate` was refused as InvalidArgument and retried as ToolFailed).
 */
import { chownSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { Ledger } from '../../inventory/index.js';
import * as ip from '../../activities/overlay/ip.js';
import { startProvisioning } from '../../client/provision.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { Lab } from '../../lab/lab.js';
import { statusQuery } from '../../common/definitions.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { expectStepFailureChain, failureOf } from '../helpers/failures.js';
import { requireRealComponents } from '../helpers/prereqs.js';
import { connectTestEnv, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';
import { defaultPayloadConverter } from '@temporalio/common';

describe('preflight before step 1', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  const td = 'preflight.nodeboot.test';

  beforeAll(async () => {
    requireRealComponents(['temporal', 'spire-server']);
    [lab, db, env] = await Promise.all([
      Lab.up({ nodes: 1, ephemeral: true, trustDomain: td, nodeAttestors: ['join_token'] }),
      createTestDatabase(),
      connectTestEnv(),
    ]);
    ledger = await Ledger.connect(db.url, { migrate: true });
  });

  afterAll(async () => {
    await ledger?.close();
    await Promise.allSettled([lab?.down(), db?.drop(), env?.close()]);
  });

  it("a spire.trustDomain that is not the server's fails InvalidInput naming the field, before installOverlay runs", async () => {
    const base = labProvisionInput(lab, 'n1', { nodeId: `${uniqueId('pf').slice(-10)}-n1` });
    const input = {
      ...base,
      spire: { ...base.spire, trustDomain: 'other.nodeboot.test' },
      retry: { initialIntervalMs: 200, maximumIntervalMs: 1000, maximumAttempts: 3 },
    };
    const linksBefore = (await ip.listLinks(lab.nodeTransport('n1'))).map((l) => l.ifname).sort();

    await withWorker(
      env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
      async (taskQueue) => {
        const run = await startProvisioning(env.client, input, { taskQueue });
        const err = await failureOf(run.handle.result());
        const { top, original } = expectStepFailureChain(err, 'InvalidInput', 'preflight');
        expect(original.message).toContain('spire.trustDomain');
        expect(original.message).toContain(`the SPIRE server's trust domain is "${td}"`);
        expect(top.message).toMatch(/nothing to undo/);

        // The history: one preflight attempt (not retried), and no step was ever scheduled. The
        // preflight is a local activity (LEAN_RUN_PATCH): its marker says which activity and attempt.
        const history = await run.handle.fetchHistory();
        const scheduled = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes);
        expect(scheduled).toEqual([]);
        const localActivities = (history.events ?? [])
          .filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity')
          .map((e) =>
            defaultPayloadConverter.fromPayload<{ activity_type: string; attempt: number }>(
              e.markerRecordedEventAttributes!.details!.data!.payloads![0]!,
            ),
          )
          .filter((m) => m.activity_type === 'preflight');
        expect(localActivities.map((m) => m.attempt)).toEqual([1]);

        // The status: every step still pending, the failure the run's own.
        const status = await run.handle.query(statusQuery);
        expect(status.steps.map((s) => s.state)).toEqual(status.steps.map(() => 'pending'));
        expect(status.steps.every((s) => s.runs === 0)).toBe(true);
        expect(status.lastFailure).toMatchObject({ step: 'workflow', type: 'InvalidInput' });
        expect(status.lastFailure!.message).toContain('spire.trustDomain');
      },
    );

    // The node is untouched: no overlay interface, nothing allocated.
    expect((await ip.listLinks(lab.nodeTransport('n1'))).map((l) => l.ifname).sort()).toEqual(linksBefore);
    expect(linksBefore).toEqual(['eth0', 'lo']);
    expect(await ledger.listAllocations(input.nodeId)).toEqual([]);
    expect(await ledger.listPeers(input.nodeId)).toEqual([]);
  });
  it('a nodeDir inside a directory another user owns fails UnsafePath before step 1, and nothing is made in it', async () => {
    const parent = path.join(lab.node('n1').dir, 'theirs');
    mkdirSync(parent, { mode: 0o755 });
    chownSync(parent, 61998, 61998);
    const base = labProvisionInput(lab, 'n1', { nodeId: `${uniqueId('pf').slice(-10)}-n2` });
    const input = {
      ...base,
      nodeDir: path.join(parent, 'n1'),
      retry: { initialIntervalMs: 200, maximumIntervalMs: 1000, maximumAttempts: 3 },
    };

    await withWorker(
      env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
      async (taskQueue) => {
        const run = await startProvisioning(env.client, input, { taskQueue });
        const err = await failureOf(run.handle.result());
        const { original } = expectStepFailureChain(err, 'UnsafePath', 'preflight');
        expect(original.message).toContain(`${parent} is owned by uid 61998`);
      },
    );
    expect(readdirSync(parent)).toEqual([]);
    expect((await ip.listLinks(lab.nodeTransport('n1'))).map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
  });
  it('an attestor the SPIRE server does not run fails InvalidInput naming spire.nodeAttestor.type, before step 1', async () => {
    const base = labProvisionInput(lab, 'n1', { nodeId: `${uniqueId('pf').slice(-10)}-n3` });
    const input = {
      ...base,
      spire: {
        ...base.spire,
        nodeAttestor: {
          type: 'x509pop' as const,
          certificatePath: '/etc/nodeboot/node.pem',
          privateKeyPath: '/etc/nodeboot/node.key',
        },
      },
      retry: { initialIntervalMs: 200, maximumIntervalMs: 1000, maximumAttempts: 3 },
    };
    const spireServerConfig = path.join(lab.spire!.dataDir, 'server.conf');
    await withWorker(
      env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger, spireServerConfig }) },
      async (taskQueue) => {
        const run = await startProvisioning(env.client, input, { taskQueue });
        const err = await failureOf(run.handle.result());
        const { original } = expectStepFailureChain(err, 'InvalidInput', 'preflight');
        expect(original.message).toContain(
          'spire.nodeAttestor.type: the SPIRE server does not run the "x509pop" NodeAttestor (it runs: join_token)',
        );
      },
    );
    expect((await ip.listLinks(lab.nodeTransport('n1'))).map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
    expect(await ledger.listAllocations(input.nodeId)).toEqual([]);
  });
});
