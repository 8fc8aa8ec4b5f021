/**
 * Our own proof that the overlay carries traffic: a TCP connect from the node,
 * through the tunnel, to the SPIRE server port. Every overlay driver's health
 * gate ends with it, whatever the driver's own signals say.
 */
import { heartbeat } from '../host/heartbeat.js';
import { ToolError } from '../host/exec.js';
import type { HostTransport } from '../host/transport.js';
import type { HealthEvidence } from '../types.js';

/**
 * When a polling step that started at `started` gives up: 3 s before its
 * start-to-close deadline, so it fails with its own error type rather than a
 * timeout (at least 2 s of polling).
 */
export function stepDeadline(timeoutSeconds: number, started: number): number {
  return started + Math.max(2_000, timeoutSeconds * 1000 - 3_000);
}

/** Connect until it works or `deadline` (epoch ms) passes; ProbeFailed then. */
export async function probeThroughTunnel(
  t: HostTransport,
  target: { address: string; port: number },
  deadline: number,
  signal?: AbortSignal,
): Promise<HealthEvidence['probe']> {
  const name = `${target.address}:${target.port}`;
  for (;;) {
    const started = Date.now();
    const r = await t.run('timeout', ['3', 'bash', '-c', 'exec 3<>"/dev/tcp/$1/$2"', 'tcp-probe', target.address, String(target.port)], {
      signal,
      allowNonZeroExit: true,
      timeoutMs: 5_000,
    });
    if (r.exitCode === 0) return { target: name, connectMs: Date.now() - started };
    if (Date.now() > deadline) throw new ToolError('ProbeFailed', `TCP probe through the tunnel to ${name} failed`, 'bash');
    heartbeat(`probing ${name}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}
