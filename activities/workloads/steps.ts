/**
 * Bootstrap step 6: launch the node's workloads and prove each one holds the
 * SVID its registration entry promises.
 */
import path from 'node:path';
import { spiffeIdOf } from '../../common/ids.js';
import type { WorkloadSpec } from '../../common/input.js';
import type { StepDeps } from '../deps.js';
import { heartbeat } from '../host/heartbeat.js';
import { ToolError } from '../host/exec.js';
import { fsKeyOf, nodePaths } from '../paths.js';
import { fetchX509Svid } from '../spire/agent-cli.js';
import { assertRootOnlyDir, ensureDir, makeDirs, removeNodeFile } from '../host/files.js';
import { daemonAlive, readProcessRef, stopDaemon, writePidFile } from '../host/process.js';
import { bundleShow } from '../spire/server-cli.js';
import type { StepRequest, UndoRequest, UndoResult, WorkloadsEvidence } from '../types.js';
import { verifySvid } from './svid.js';

/**
 * The program a workload runs. Every workload names its own: the worker has no
 * program of its own to fall back on. Only a run recorded before that (whose
 * input was held to the older rules, common/validate.ts) can get here without one.
 */
function commandOf(w: WorkloadSpec, i: number): string[] {
  if (w.command === undefined) {
    throw new ToolError(
      'InvalidInput',
      `workloads.${i}.command: needs the program to run (there is no built-in workload: "port" alone names nothing to run)`,
      'workload',
    );
  }
  return w.command;
}

export function createWorkloadSteps(deps: StepDeps) {
  async function launchWorkloads({ input }: StepRequest): Promise<WorkloadsEvidence> {
    const t = deps.transport(input.host);
    const signal = deps.signal();
    const p = nodePaths(input);
    const overlayIp = await deps.ledger.getAllocation(input.nodeId, input.overlay.cidr);
    if (!overlayIp)
      throw new ToolError(
        'WorkloadFailed',
        `node ${input.nodeId} has no overlay address (step 2 has not run)`,
        'workload',
      );
    const bundle = await bundleShow({
      transport: deps.transport(input.spire.serverHost),
      socketPath: input.spire.serverSocketPath,
      signal,
    });

    // Root writes the pid files and opens the logs in these: no workload may be able to plant a link there.
    for (const dir of input.workloads.length > 0
      ? [path.dirname(p.workloadPid('w')), path.dirname(p.workloadLog('w'))]
      : []) {
      await makeDirs(t, dir);
      await assertRootOnlyDir(t, dir, 'nodeDir');
    }

    const out: WorkloadsEvidence['workloads'] = [];
    for (const [i, w] of input.workloads.entries()) {
      const spiffeId = spiffeIdOf(input, w);
      const command = commandOf(w, i);
      // Only for pid files written before start times were recorded (host/process.ts).
      const program = path.basename(command[0]!);
      const owner = { uid: w.uid, gid: w.uid };
      const pidFile = p.workloadPid(w.name);
      let proc = await readProcessRef(t, pidFile);
      if (proc === undefined || !(await daemonAlive(t, proc, program))) {
        await ensureDir(t, p.workloadDir(w.name), 0o700, owner);
        const pid = await t.spawnDaemon(
          'setpriv',
          [`--reuid=${w.uid}`, `--regid=${w.uid}`, '--clear-groups', '--', ...command],
          {
            logFile: p.workloadLog(w.name),
            env: { SPIFFE_ENDPOINT_SOCKET: `unix://${p.agentSocket}` },
          },
        );
        try {
          proc = await writePidFile(t, pidFile, pid);
        } catch (err) {
          // Unrecorded, no retry and no undo could find it (a full disk, seen in docs/reliability.md):
          // stop the workload just started (its own process group) before the failure leaves.
          await t.run('kill', ['-KILL', '--', `-${pid}`]).catch(() => undefined);
          throw err;
        }
      } else if (proc.startTime === undefined) {
        // Running from before start times were recorded: record it now.
        proc = await writePidFile(t, pidFile, proc.pid);
      }
      const { pid } = proc;
      heartbeat(`workload ${w.name} running (pid ${pid})`);
      // Prove the identity as the workload's own uid sees it, through the same agent. The
      // verify dir lies in the workload's own dir, where it may have planted anything (a link
      // to /etc, say): it is removed and made again as the workload's uid, never as root.
      const verifyDir = `${p.workloadDir(w.name)}/verify`;
      const svid = await fetchX509Svid(
        { transport: t, socketPath: p.agentSocket, signal },
        {
          writeDir: verifyDir,
          fresh: true,
          uid: w.uid,
          gid: w.uid,
          waitMs: Math.max(5_000, input.timeouts.launchWorkloads * 500),
        },
      );
      const check = await verifySvid(svid.svidPem, bundle, { spiffeId, ttlSeconds: w.x509TtlSeconds });
      if (!(await daemonAlive(t, proc, program))) {
        throw new ToolError(
          'WorkloadFailed',
          `workload ${w.name} exited right after start (see ${p.workloadLog(w.name)})`,
          'workload',
        );
      }
      await deps.ledger.recordWorkload({
        nodeId: input.nodeId,
        name: w.name,
        spiffeId,
        pid,
        svidSerial: check.serial,
        svidNotAfter: check.notAfter,
      });
      out.push({
        name: w.name,
        spiffeId,
        pid,
        svidSerial: check.serial,
        svidNotAfter: check.notAfter,
        svidTtlSeconds: check.ttlSeconds,
      });
    }
    return { workloads: out };
  }

  async function undoLaunchWorkloads({ input }: UndoRequest): Promise<UndoResult> {
    const t = deps.transport(input.host);
    const signal = deps.signal();
    const p = nodePaths(input);
    const removed: string[] = [];
    // Another live node holds this nodeDir (this run was refused at step 1): its workloads are not ours to stop.
    const holder = await deps.ledger.nodeDirHolder(fsKeyOf(input.host), input.nodeDir);
    const ours = holder === null || holder === input.nodeId;
    for (const w of ours ? input.workloads : []) {
      const proc = await readProcessRef(t, p.workloadPid(w.name));
      const program = path.basename((w.command ?? [process.execPath])[0]!);
      // Stopped as a process group: a shell script's children go with it.
      if (proc !== undefined && (await stopDaemon(t, proc, { program, graceMs: 5_000, signal })))
        removed.push(`workload ${w.name}`);
      await removeNodeFile(t, p.workloadPid(w.name));
      // Root may remove the workload's dir: its parent is root's (checked at launch), so the
      // path itself cannot be a planted link, and rm -r never follows the links inside.
      await t.run('rm', ['-rf', '--one-file-system', '--', p.workloadDir(w.name)], { signal });
    }
    if ((await deps.ledger.removeWorkloads(input.nodeId)) > 0) removed.push('ledger workloads');
    return { removed };
  }

  return { launchWorkloads, undoLaunchWorkloads };
}
