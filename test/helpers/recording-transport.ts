/** A HostTransport that records argv instead of running anything (unit tests of wrappers). */
import type { DaemonOptions, HostTransport } from '../../activities/host/transport.js';
import type { RunOptions, RunResult } from '../../activities/host/exec.js';

export interface RecordedCall {
  command: string;
  args: string[];
  opts?: RunOptions | DaemonOptions;
  daemon?: boolean;
}

export function recordingTransport(
  reply: (call: RecordedCall) => Partial<RunResult> = () => ({}),
): HostTransport & { calls: RecordedCall[] } {
  const calls: RecordedCall[] = [];
  return {
    kind: 'local',
    label: 'recording',
    calls,
    async run(command, args, opts) {
      const call = { command, args: [...args], opts };
      calls.push(call);
      return { stdout: '', stderr: '', exitCode: 0, ...reply(call) };
    },
    async spawnDaemon(command, args, opts) {
      calls.push({ command, args: [...args], opts, daemon: true });
      return 4242;
    },
  };
}
