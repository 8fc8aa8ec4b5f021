/**
 * A node's life on real components: provisioned → decommissioned →
 * provisioned again (a reimaged or repurposed machine). The node's state (its
 * latest provision and decommission runs) decides, not the completed provision
 * run alone: after a decommission, `nodeboot start`, the library client and a
 * fleet rollout each make a NEW `provision/<nodeId>` run, and the node's
 * registration entry is on the SPIRE server and its peer on the hub again.
 * A provisioned node still attaches; a node being decommissioned is refused.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowNotFoundError } from '@temporalio/client';
import { createActivities } from '../../activities/index.js';
import type { Ledger } from '../../inventory/index.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import * as server from '../../activities/spire/server-cli.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import { startDecommission, startProvisioning } from '../../client/provision.js';
import { maintainWorkflowId, rotateWorkflowId } from '../../common/ids.js';
import type { ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import type { Lab } from '../../lab/lab.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import type { TestDatabase } from '../helpers/database.js';
import { startLabStack, stopLabStack } from '../helpers/lab-stack.js';
import { withCliWorker, type BoundCli } from '../helpers/cli-worker.js';
import { eventually, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';

const TRUST_DOMAIN = 'reprovision.nodeboot.test';

describe('re-provisioning a decommissioned node (real lab)', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  let dir: string;
  const nodes: Record<'n1' | 'n2', { nodeId: string; input: ProvisionInputJson; file: string; spiffeId: string }> =
    {} as never;

  beforeAll(async () => {
    ({ lab, db, ledger, env } = await startLabStack({ nodes: 2, ephemeral: true, trustDomain: TRUST_DOMAIN }));
    dir = mkdtempSync(path.join(tmpdir(), 'nb-reprovision-'));
    for (const [name, uid] of [
      ['n1', 62061],
      ['n2', 62062],
    ] as const) {
      const nodeId = uniqueId(`re${name}`);
      const spiffePath = `/ns/reprovision/sa/${name}`;
      const input = labProvisionInput(lab, name, { nodeId, workloads: [{ name: 'api', spiffePath, uid, port: 9443 }] });
      const file = path.join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify(input));
      nodes[name] = { nodeId, input, file, spiffeId: `spiffe://${TRUST_DOMAIN}${spiffePath}` };
    }
  });

  afterAll(async () => {
    await stopLabStack({ lab, db, ledger, env });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const srv = () => ({ transport: lab.hubTransport(), socketPath: lab.spire!.socketPath });
  /** The node's workload entries on the SPIRE server (spire-server entry show). */
  const entriesOf = async (name: 'n1' | 'n2') => server.entryShow(srv(), { spiffeId: nodes[name].spiffeId });
  /** The hub's WireGuard peers (wg show <if> allowed-ips), by public key. */
  const hubPeers = async () => wg.peerAllowedIps(lab.hubTransport(), lab.hub.interface);

  /** Whether a workflow with this id was ever started (describe finds no run otherwise). */
  const everStarted = (workflowId: string) =>
    env.client.workflow
      .getHandle(workflowId)
      .describe()
      .then(
        () => true,
        (err: unknown) => (err instanceof WorkflowNotFoundError ? false : Promise.reject(err)),
      );

  /** Run `fn` with a worker on its own task queue and a `nodeboot` bound to it that asserts the exit code. */
  const withCli = <T>(fn: (cli: BoundCli, taskQueue: string) => Promise<T>) => withCliWorker(env, ledger, db.url, fn);

  /** The node is in the fabric: its entry on the SPIRE server, its key as a peer on the hub. */
  async function expectInFabric(name: 'n1' | 'n2', publicKey: string) {
    expect(await entriesOf(name)).toHaveLength(1);
    expect((await hubPeers()).has(publicKey)).toBe(true);
  }

  async function expectGone(name: 'n1' | 'n2', publicKey: string) {
    expect(await entriesOf(name)).toEqual([]);
    expect((await hubPeers()).has(publicKey)).toBe(false);
  }

  it('nodeboot start --wait gives a decommissioned node a new run; status says decommissioned between; repair and rerun refuse it', async () => {
    const { nodeId, file } = nodes.n1;
    await withCli(async (cli) => {
      const first = await cli(['start', '--wait', '--json', file], EXIT.OK);
      const run1 = first.json.run.runId as string;
      await expectInFabric('n1', first.json.run.receipt.publicKey);

      await cli(['decommission', '--wait', '--json', nodeId], EXIT.OK);
      await expectGone('n1', first.json.run.receipt.publicKey);

      const between = await cli(['status', '--json', nodeId], EXIT.DECOMMISSIONED, { soft: true });
      const runBetween = between.json.run;
      expect.soft(runBetween).toMatchObject({
        runId: run1,
        execution: 'COMPLETED',
        outcome: 'decommissioned',
        decommission: { workflowId: `decommission/${nodeId}`, status: 'COMPLETED' },
        next: ['nodeboot start node.json'],
      });
      const human = await cli(['status', nodeId], EXIT.DECOMMISSIONED, { soft: true });
      expect.soft(human.stdout).toMatch(/state: decommissioned/);

      // Every day-2 command refuses it the same way: nothing was started, `nodeboot start` provisions it again.
      for (const command of ['repair', 'rerun', 'maintain', 'rotate']) {
        const refused = await cli([command, '--json', nodeId], EXIT.CONFLICT, { soft: true });
        expect.soft(refused.json.error?.code, command).toBe('NODE_DECOMMISSIONED');
        expect.soft(refused.json.error?.suggestion, command).toContain('nodeboot start');
      }
      expect.soft(await everStarted(maintainWorkflowId(nodeId)), 'a maintain run').toBe(false);
      expect.soft(await everStarted(rotateWorkflowId(nodeId)), 'a rotate run').toBe(false);

      const again = await cli(['start', '--wait', '--json', file], EXIT.OK);
      expect(again.json).toMatchObject({
        started: true,
        attached: false,
        nodeStateBefore: 'decommissioned',
        run: { outcome: 'provisioned', execution: 'COMPLETED' },
      });
      const run2 = again.json.run.runId as string;
      expect(run2).not.toBe(run1);
      expect(again.stderr).toMatch(/a new run: the node was decommissioned/);
      await expectInFabric('n1', again.json.run.receipt.publicKey);

      // Provisioned and not decommissioned since: attached, never bootstrapped twice.
      const attached = await cli(['start', '--json', file], EXIT.OK);
      expect(attached.json).toMatchObject({
        started: false,
        attached: true,
        nodeStateBefore: 'provisioned',
        run: { runId: run2 },
      });
      await cli(['status', '--json', nodeId], EXIT.OK);
    });
  });

  it('the library client: a start during a decommission is refused; after it, two starts at once make one new run', async () => {
    const { nodeId, input } = nodes.n1;
    await withWorker(
      env,
      { workflowsPath: WORKFLOWS_PATH, activities: createActivities({ ledger }) },
      async (taskQueue) => {
        const before = (await startProvisioning(env.client, input, { taskQueue })).handle;
        const provisioned = await before.result();

        const decommission = await startDecommission(env.client, input, { taskQueue });
        await expect(startProvisioning(env.client, input, { taskQueue })).rejects.toMatchObject({
          name: 'NodeStateError',
          state: 'decommissioning',
          message: expect.stringContaining('is being decommissioned'),
        });
        await decommission.result();
        await expectGone('n1', provisioned.publicKey);

        const [a, b] = await Promise.all([
          startProvisioning(env.client, input, { taskQueue }),
          startProvisioning(env.client, input, { taskQueue }),
        ]);
        const [runA, runB] = await Promise.all([a.handle.describe(), b.handle.describe()]);
        expect(runA.runId).toBe(runB.runId);
        expect(runA.runId).not.toBe(provisioned.runId);
        expect(a.started || b.started).toBe(true);
        const receipt = await a.handle.result();
        expect(receipt.runId).toBe(runA.runId);
        await expectInFabric('n1', receipt.publicKey);
        // One run after the decommission, not two.
        const after = await eventually(
          async () => {
            const runs: string[] = [];
            for await (const r of env.client.workflow.list({ query: `WorkflowId = "provision/${nodeId}"` })) {
              if (r.startTime.getTime() >= runA.startTime.getTime()) runs.push(r.runId);
            }
            return runs.includes(runA.runId) ? runs : undefined;
          },
          { what: 'the new run in visibility' },
        );
        expect(after).toEqual([runA.runId]);
      },
    );
  });

  it('nodeboot fleet start counts a decommissioned node as to-do and provisions it; a provisioned one is still skipped', async () => {
    await withCli(async (cli) => {
      // n1 provisioned (attached when the test before left it so), then decommissioned; n2 provisioned and stays so.
      await cli(['start', '--wait', '--json', nodes.n1.file], EXIT.OK);
      await cli(['decommission', '--wait', '--json', nodes.n1.nodeId], EXIT.OK);
      const n2 = await cli(['start', '--wait', '--json', nodes.n2.file], EXIT.OK);
      const n2Run = n2.json.run.runId as string;

      const fleetFile = path.join(dir, 'fleet.json');
      writeFileSync(
        fleetFile,
        JSON.stringify({ fleetId: uniqueId('refleet'), window: 2, nodes: [nodes.n1.input, nodes.n2.input] }),
      );
      const rollout = await cli(['fleet', 'start', '--wait', '--json', fleetFile], EXIT.OK);
      expect(rollout.json.fleet.progress).toMatchObject({
        state: 'completed',
        total: 2,
        counts: { succeeded: 1, skipped: 1, failed: 0, pending: 0 },
      });

      const n1 = await cli(['status', '--json', nodes.n1.nodeId], EXIT.OK);
      expect(n1.json.run).toMatchObject({ outcome: 'provisioned', decommission: null });
      await expectInFabric('n1', n1.json.run.receipt.publicKey);
      const n2After = await cli(['status', '--json', nodes.n2.nodeId], EXIT.OK);
      expect(n2After.json.run.runId).toBe(n2Run);

      await cli(['decommission', '--wait', '--json', nodes.n1.nodeId], EXIT.OK);
      await cli(['decommission', '--wait', '--json', nodes.n2.nodeId], EXIT.OK);
    });
  });
});
