/**
 * How host/process.ts names a process: pid + start time (/proc/<pid>/stat field 22)
 * in the pid file, with pid files written before that (a bare pid) still read
 * and checked by program name. A fake transport stands in for the node's /proc;
 * test/integration/trust-workload.test.ts runs the same code on a lab node.
 */
import { describe, expect, it } from 'vitest';
import type { RunOptions, RunResult } from '../../activities/host/exec.js';
import type { HostTransport } from '../../activities/host/transport.js';
import { assertRootOnlyDir } from '../../activities/host/files.js';
import {
  daemonAlive,
  parsePidFile,
  parseProcStat,
  readPidFile,
  readProcessRef,
  stopDaemon,
  writePidFile,
} from '../../activities/host/process.js';

interface Call {
  command: string;
  args: string[];
  opts?: RunOptions;
}

/** A node with a fake /proc: `procs` maps pid to its stat line and argv; `kill` removes it from the table. */
function fakeNode(procs: Map<number, { stat: string; argv: string[] }>, files: Record<string, string> = {}) {
  const calls: Call[] = [];
  const ok = (stdout = ''): RunResult => ({ stdout, stderr: '', exitCode: 0 });
  const missing: RunResult = { stdout: '', stderr: 'No such file or directory', exitCode: 1 };
  const kill = (pid: number, group: boolean) => {
    for (const [p, v] of procs)
      if (p === pid || (group && Number(v.stat.slice(v.stat.lastIndexOf(')') + 2).split(' ')[2]) === pid))
        procs.delete(p);
  };
  const transport: HostTransport = {
    kind: 'local',
    label: 'fake node',
    async run(command, args, opts) {
      calls.push({ command, args: [...args], opts });
      const proc = /^\/proc\/(\d+)\/(stat|cmdline)$/.exec(args[0] ?? '');
      if (command === 'cat' && proc) {
        const p = procs.get(Number(proc[1]));
        if (!p) return missing;
        return ok(proc[2] === 'stat' ? p.stat : p.argv.join('\0') + '\0');
      }
      if (command === 'cat' && args[0] === '--') return files[args[1]!] !== undefined ? ok(files[args[1]!]) : missing;
      if (command === 'sh' && args[2] === 'write-file') {
        files[args[3]!] = opts?.input ?? '';
        return ok();
      }
      if (command === 'sh' && args[2] === 'kill-group') {
        kill(Number(args[3]), true);
        return ok();
      }
      if (command === 'kill') {
        kill(Number(args[1]), false);
        return ok();
      }
      return ok();
    },
    async spawnDaemon() {
      throw new Error('not used');
    },
  };
  return { transport, calls, files };
}

/** A /proc/<pid>/stat line: state, ppid, pgrp, ... starttime (field 22). */
const statLine = (pid: number, comm: string, o: { state?: string; pgrp?: number; start: number }) =>
  `${pid} (${comm}) ${o.state ?? 'S'} 1 ${o.pgrp ?? pid} ${o.pgrp ?? pid} 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${o.start} 2654208 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n`;

describe('process identity (pid + start time)', () => {
  it('parses /proc/<pid>/stat even when the command name holds spaces and ")"', () => {
    expect(parseProcStat(statLine(4242, 'a) b (c', { start: 987654, pgrp: 4240 }))).toEqual({
      state: 'S',
      pgrp: 4240,
      startTime: '987654',
    });
    expect(parseProcStat('')).toBeUndefined();
    expect(parseProcStat('4242 (x) S 1 2')).toBeUndefined();
  });

  it('reads both pid file formats; garbage is no pid', async () => {
    expect(parsePidFile('4242 987654\n')).toEqual({ pid: 4242, startTime: '987654' });
    expect(parsePidFile('4242\n')).toEqual({ pid: 4242 });
    for (const bad of [undefined, '', 'x', '1\n', '4242 x', '4242 1 2', '-5'])
      expect(parsePidFile(bad), String(bad)).toBeUndefined();
    // readPidFile (spire/steps.ts reads the agent's pid file with it) still returns the pid of a new-format file.
    const { transport } = fakeNode(new Map(), { '/n/a.pid': '4242 987654\n', '/n/b.pid': '4243\n' });
    expect(await readPidFile(transport, '/n/a.pid')).toBe(4242);
    expect(await readPidFile(transport, '/n/b.pid')).toBe(4243);
    expect(await readProcessRef(transport, '/n/missing.pid')).toBeUndefined();
  });

  it('records the start time when spawned, and knows a #!/bin/sh program by it (argv[0] is the interpreter)', async () => {
    const procs = new Map([
      [4242, { stat: statLine(4242, 'demo.sh', { start: 5000 }), argv: ['/bin/sh', '/n/bin/demo.sh'] }],
    ]);
    const { transport, files } = fakeNode(procs);
    const ref = await writePidFile(transport, '/n/w.pid', 4242);
    expect(ref).toEqual({ pid: 4242, startTime: '5000' });
    expect(files['/n/w.pid']).toBe('4242 5000\n');
    expect(await daemonAlive(transport, ref, 'demo.sh')).toBe(true);
    // The old check by program name says a shell script is not running.
    expect(await daemonAlive(transport, 4242, 'demo.sh')).toBe(false);
  });

  it('a pid reused by another process (other start time) is not ours; a zombie is not alive', async () => {
    const procs = new Map([
      [4242, { stat: statLine(4242, 'sleep', { start: 9000 }), argv: ['sleep', '100'] }],
      [4243, { stat: statLine(4243, 'demo.sh', { start: 5000, state: 'Z' }), argv: [] }],
    ]);
    const { transport, calls } = fakeNode(procs);
    expect(await daemonAlive(transport, { pid: 4242, startTime: '5000' }, 'sleep')).toBe(false);
    expect(await stopDaemon(transport, { pid: 4242, startTime: '5000' }, { program: 'sleep' })).toBe(false);
    expect(calls.some((c) => c.command === 'kill' || c.args.includes('kill-group'))).toBe(false);
    expect(procs.has(4242)).toBe(true);
    expect(await daemonAlive(transport, { pid: 4243, startTime: '5000' }, 'demo.sh')).toBe(false);
  });

  it("stops a process-group leader with its group (a script's children go with it), a bare pid by name as before", async () => {
    const procs = new Map([
      [4242, { stat: statLine(4242, 'demo.sh', { start: 5000 }), argv: ['/bin/sh', '/n/bin/demo.sh'] }],
      [4250, { stat: statLine(4250, 'sleep', { start: 5010, pgrp: 4242 }), argv: ['sleep', '600'] }],
      [4300, { stat: statLine(4300, 'spire-agent', { start: 6000, pgrp: 1 }), argv: ['/opt/spire-agent', 'run'] }],
    ]);
    const { transport, calls } = fakeNode(procs);
    expect(await stopDaemon(transport, { pid: 4242, startTime: '5000' }, { program: 'demo.sh', graceMs: 0 })).toBe(
      true,
    );
    expect(calls.find((c) => c.args.includes('kill-group'))).toMatchObject({
      command: 'sh',
      args: ['-c', 'kill -TERM "-$1"', 'kill-group', '4242'],
    });
    expect([...procs.keys()]).toEqual([4300]);

    // An old pid file (bare pid): checked by program name, signalled alone (not a group leader here).
    expect(await stopDaemon(transport, 4300, { program: 'spire-agent', graceMs: 0 })).toBe(true);
    expect(calls.at(-2)).toMatchObject({ command: 'kill', args: ['-TERM', '4300'] });
    expect(procs.size).toBe(0);
    expect(await stopDaemon(transport, 4300, { program: 'spire-agent' })).toBe(false);
  });

  it('a dir root writes pid files and logs in must be a real dir of root that no other uid may write', async () => {
    const statSays = (stdout: string, exitCode = 0): HostTransport => ({
      kind: 'local',
      label: 'fake node',
      run: async () => ({ stdout, stderr: '', exitCode }),
      spawnDaemon: async () => 1,
    });
    for (const ok of ['0 0 755 directory\n', '0 0 775 directory\n', '0 5 700 directory\n']) {
      await expect(assertRootOnlyDir(statSays(ok), '/n/workloads', 'nodeDir'), ok).resolves.toBeUndefined();
    }
    for (const bad of [
      '62101 0 700 directory',
      '0 0 1777 directory',
      '0 5 775 directory',
      '0 0 777 symbolic link',
      '0 0 644 regular file',
    ]) {
      await expect(assertRootOnlyDir(statSays(bad), '/n/workloads', 'nodeDir'), bad).rejects.toMatchObject({
        type: 'InvalidInput',
        message: /^nodeDir: /,
      });
    }
    await expect(assertRootOnlyDir(statSays('', 1), '/n/workloads', 'nodeDir')).rejects.toMatchObject({
      type: 'InvalidInput',
    });
  });
});
