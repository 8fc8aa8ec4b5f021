/**
 * WireGuard interface lifecycle on a node, shared by the bootstrap steps and
 * the lab's hub: bring up a userspace (wireguard-go) interface, give it an
 * address, tear it down. Each function is idempotent.
 */
import { IfName, parseName } from '../../../common/names.js';
import { ToolError, type RunOptions } from '../../host/exec.js';
import type { HostTransport } from '../../host/transport.js';
import * as ip from '../ip.js';

export interface EnsureInterfaceOptions {
  /** Where wireguard-go logs on the node. */
  logFile: string;
  mtu?: number;
  /** How long to wait for the interface to appear. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Make sure a WireGuard interface `ifname` exists on the node. Uses the kernel
 * module when `ip link add type wireguard` works, else starts wireguard-go in
 * the foreground as a daemon whose log goes to a file.
 */
export async function ensureInterface(
  t: HostTransport,
  ifname: string,
  opts: EnsureInterfaceOptions,
): Promise<{ alreadyPresent: boolean; implementation: string }> {
  const name = parseName(IfName, 'interface', ifname);
  const run: RunOptions = { signal: opts.signal };
  if (await ip.linkExists(t, name, run)) {
    return { alreadyPresent: true, implementation: 'existing' };
  }
  let implementation = 'kernel';
  const kernel = await t.run('ip', ['link', 'add', 'dev', name, 'type', 'wireguard'], {
    ...run,
    allowNonZeroExit: true,
  });
  if (kernel.exitCode !== 0) {
    implementation = 'wireguard-go';
    await t.spawnDaemon('wireguard-go', ['-f', name], {
      logFile: opts.logFile,
      env: { WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error', WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' },
    });
    await waitFor(
      () => ip.linkExists(t, name, run),
      opts.timeoutMs ?? 10_000,
      `interface ${name} did not appear`,
      opts.signal,
    );
    // The UAPI socket appears a moment after the link; `wg show` needs it.
    await waitFor(
      async () => (await t.run('wg', ['show', name, 'listen-port'], { ...run, allowNonZeroExit: true })).exitCode === 0,
      opts.timeoutMs ?? 10_000,
      `wireguard-go for ${name} is not answering`,
      opts.signal,
    );
  }
  await ip.linkUp(t, name, opts.mtu, run);
  return { alreadyPresent: false, implementation };
}

/** Delete the interface (wireguard-go exits when its link goes). No-op when absent. */
export async function removeInterface(
  t: HostTransport,
  ifname: string,
  opts: { signal?: AbortSignal } = {},
): Promise<boolean> {
  const name = parseName(IfName, 'interface', ifname);
  if (!(await ip.linkExists(t, name, { signal: opts.signal }))) return false;
  await ip.linkDelete(t, name, { signal: opts.signal });
  return true;
}

export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  signal?: AbortSignal,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (signal?.aborted) throw signal.reason;
    if (await check()) return;
    if (Date.now() > deadline) throw new ToolError('CommandTimeout', `${what} within ${timeoutMs} ms`, 'wait');
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
