/**
 * A workload is untrusted, on real components (issue 11, items 3 and 7): a
 * lab node provisioned by the real workflow, then the workload's moves.
 *
 * - Root never works inside a directory the workload can write. The workload
 *   replaces its `verify` dir (where step 6 has the agent write the SVID it
 *   checks) with a link to a root-owned directory; the step runs again (as a
 *   retry or a rerun would) and must leave the target as it was, and still
 *   succeed; decommission must not follow the link either.
 * - A workload is known by pid + start time, not by argv[0]: a `#!/bin/sh`
 *   program (argv[0] is /bin/sh) is launched once, the run succeeds, running
 *   the step again starts no second copy, and decommission stops it and its
 *   children (no process left in the node's namespace).
 * - A pid file written before start times were recorded (a bare pid) is still
 *   read: the running workload is kept, and its record upgraded.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { Ledger } from '../../inventory/index.js';
import { localTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import { startDecommission, startProvisioning, validateProvisionInput } from '../../client/provision.js';
import { provisionWorkflowId } from '../../common/ids.js';
import type { ProvisionInputJson } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { Lab } from '../../lab/lab.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { requireRealComponents } from '../helpers/prereqs.js';
import { connectTestEnv, uniqueId, withWorker, type TemporalTestEnv } from '../helpers/temporal.js';

const TD = 'workload.nodeboot.test';
// Few, fast retries: on the old code the shebang run fails after spawning a copy per attempt.
const RETRY = { initialIntervalMs: 500, maximumIntervalMs: 1_000, maximumAttempts: 3 };

describe('an untrusted workload on a lab node (real lab, real workflow)', () => {
  let lab: Lab;
  let db: TestDatabase;
  let ledger: Ledger;
  let env: TemporalTestEnv;
  let acts: ReturnType<typeof createActivities>;
  const scratch: string[] = [];

  beforeAll(async () => {
    requireRealComponents(['temporal', 'spire-server', 'spire-agent']);
    [lab, db, env] = await Promise.all([
      Lab.up({ nodes: 2, ephemeral: true, trustDomain: TD }),
      createTestDatabase(),
      connectTestEnv(),
    ]);
    ledger = await Ledger.connect(db.url, { migrate: true });
    acts = createActivities({ ledger });
  });

  afterAll(async () => {
    await ledger?.close();
    await Promise.allSettled([lab?.down(), db?.drop(), env?.close()]);
    for (const d of scratch) rmSync(d, { recursive: true, force: true });
  });

  /** Run step 6 again, outside any workflow: what a retry, a reset or an on-call rerun does. */
  const launchAgain = (input: ProvisionInputJson) =>
    acts.launchWorkloads({
      input: validateProvisionInput(input),
      run: { workflowId: provisionWorkflowId(input.nodeId), runId: uniqueId('again') },
    });

  const provision = (input: ProvisionInputJson) =>
    withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: acts }, async (taskQueue) => {
      const run = await startProvisioning(env.client, input, { taskQueue });
      return run.handle.result();
    });

  const decommission = (input: ProvisionInputJson) =>
    withWorker(env, { workflowsPath: WORKFLOWS_PATH, activities: acts }, async (taskQueue) =>
      (await startDecommission(env.client, input, { taskQueue })).result(),
    );

  /** `stat` of a path on the node, not following a link: "<uid>:<gid> <mode> <type>". */
  const nodeStat = async (node: string, p: string) =>
    (await lab.nodeTransport(node).run('stat', ['-c', '%u:%g %a %F', '--', p])).stdout.trim();

  it('a verify dir replaced by a link to a root-owned dir: running the step again leaves the target alone and succeeds', async () => {
    const uid = 62101;
    const nodeId = uniqueId('wl-link');
    const input = labProvisionInput(lab, 'n1', {
      nodeId,
      workloads: [{ name: 'api', spiffePath: '/ns/wl/sa/api', uid, port: 9443 }],
      overrides: { retry: RETRY },
    });
    const receipt = await provision(input);
    expect(receipt.workloads).toHaveLength(1);
    const pid = await ledgerPid(nodeId, 'api');

    const nodeDir = lab.node('n1').dir;
    const workloadDir = `${nodeDir}/workloads/api`;
    const verifyDir = `${workloadDir}/verify`;
    expect(await nodeStat('n1', workloadDir)).toBe(`${uid}:${uid} 700 directory`);

    // A directory that belongs to root and that the workload must never get.
    const target = mkdtempSync(path.join(tmpdir(), 'nb-root-target-'));
    scratch.push(target);
    writeFileSync(path.join(target, 'root-file'), 'root\n', { mode: 0o644 });
    const before = statSync(target);
    expect(before.uid).toBe(0);

    // The workload's move, made as its own uid: `verify` becomes a link to the target.
    await lab
      .nodeTransport('n1')
      .run('setpriv', [
        `--reuid=${uid}`,
        `--regid=${uid}`,
        '--clear-groups',
        '--',
        'sh',
        '-c',
        'rm -rf -- "$1" && ln -s -- "$2" "$1"',
        'plant',
        verifyDir,
        target,
      ]);
    expect(await nodeStat('n1', verifyDir)).toMatch(/ symbolic link$/);

    const again = await launchAgain(input);

    // The target is exactly as it was: owner, mode, contents.
    const after = statSync(target);
    expect({ uid: after.uid, gid: after.gid, mode: after.mode }).toEqual({
      uid: before.uid,
      gid: before.gid,
      mode: before.mode,
    });
    expect(readdirSync(target)).toEqual(['root-file']);
    expect(statSync(path.join(target, 'root-file')).uid).toBe(0);
    // And the step still proved the workload's identity, from a fresh dir of its own, with the same process.
    expect(again.workloads).toMatchObject([{ name: 'api', spiffeId: `spiffe://${TD}/ns/wl/sa/api`, pid }]);
    expect(await nodeStat('n1', verifyDir)).toBe(`${uid}:${uid} 700 directory`);

    // A pid file from before start times were recorded (a bare pid) is still read: the workload is
    // kept, not started twice, and the record gets its start time.
    const pidFile = `${nodeDir}/workloads/api.pid`;
    expect(await readNodeText('n1', pidFile)).toMatch(new RegExp(`^${pid} \\d+$`));
    writeFileSync(pidFile, `${pid}\n`);
    const upgraded = await launchAgain(input);
    expect(upgraded.workloads[0]!.pid).toBe(pid);
    expect(await readNodeText('n1', pidFile)).toMatch(new RegExp(`^${pid} \\d+$`));

    // The link again, then decommission: rm -rf of the workload dir must not follow it out.
    await lab
      .nodeTransport('n1')
      .run('setpriv', [
        `--reuid=${uid}`,
        `--regid=${uid}`,
        '--clear-groups',
        '--',
        'sh',
        '-c',
        'rm -rf -- "$1" && ln -s -- "$2" "$1"',
        'plant',
        verifyDir,
        target,
      ]);
    await decommission(input);
    expect(readdirSync(target)).toEqual(['root-file']);
    expect(statSync(target).uid).toBe(0);
    expect((await lab.nodeTransport('n1').run('test', ['-e', workloadDir], { allowNonZeroExit: true })).exitCode).toBe(
      1,
    );
    expect(await ip.netnsPids(localTransport(), lab.node('n1').netns)).toEqual([]);
  });

  it('a #!/bin/sh workload runs once: the run succeeds, the step again starts no second copy, decommission stops it', async () => {
    const uid = 62102;
    const nodeDir = lab.node('n2').dir;
    // Written by the test, owned by root, 0755: the program a person would name in the input.
    const script = path.join(nodeDir, 'shebang-workload.sh');
    writeFileSync(
      script,
      '#!/bin/sh\n# argv[0] of this process is /bin/sh; its child holds the same process group.\nwhile :; do sleep 600; done\n',
      { mode: 0o755 },
    );
    expect(statSync(script).uid).toBe(0);
    const nodeId = uniqueId('wl-sh');
    const input = labProvisionInput(lab, 'n2', {
      nodeId,
      workloads: [{ name: 'sh', spiffePath: '/ns/wl/sa/sh', uid, command: [script] }],
      overrides: { retry: RETRY },
    });

    const receipt = await provision(input);
    expect(receipt.workloads).toMatchObject([{ name: 'sh', spiffeId: `spiffe://${TD}/ns/wl/sa/sh` }]);
    const pid = await ledgerPid(nodeId, 'sh');
    expect(await scriptCopies('n2', script)).toEqual([pid]);

    const again = await launchAgain(input);
    expect(again.workloads[0]!.pid).toBe(pid);
    expect(await scriptCopies('n2', script)).toEqual([pid]);

    await decommission(input);
    expect(await scriptCopies('n2', script)).toEqual([]);
    // Nothing at all is left in the node's namespace: not the script's `sleep` child, not the agent.
    expect(await ip.netnsPids(localTransport(), lab.node('n2').netns)).toEqual([]);
  });

  async function ledgerPid(nodeId: string, name: string): Promise<number> {
    const w = (await ledger.listWorkloads(nodeId)).find((r) => r.name === name);
    expect(w, `ledger row of workload ${name}`).toBeDefined();
    return w!.pid;
  }

  async function readNodeText(node: string, file: string): Promise<string> {
    return (await lab.nodeTransport(node).run('cat', ['--', file])).stdout.trim();
  }

  /** Pids in the node's namespace running `script` (its argv is ["/bin/sh", script]). */
  async function scriptCopies(node: string, script: string): Promise<number[]> {
    const out: number[] = [];
    for (const pid of await ip.netnsPids(localTransport(), lab.node(node).netns)) {
      const r = await localTransport().run('cat', [`/proc/${pid}/cmdline`], { allowNonZeroExit: true });
      if (r.exitCode === 0 && r.stdout.split('\0').includes(script)) out.push(pid);
    }
    return out.sort((a, b) => a - b);
  }
});
