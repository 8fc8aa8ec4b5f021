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
  /** Whether the link exists, when the caller has just listed the links (saves listing them again). */
  exists?: boolean;
}

/**
 * Kernels known to have no WireGuard link type (`ip link add ... type wireguard` said
 * "Unknown device type"): the worker's own kernel for local and netns nodes (a network
 * namespace shares it), else the ssh host. Asked again after a worker restart.
 */
const noKernelWireguard = new Set<string>();
const kernelOf = (t: HostTransport) => (t.kind === 'ssh' ? `ssh ${t.label}` : 'this kernel');

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
  if (opts.exists ?? (await ip.linkExists(t, name, run))) {
    return { alreadyPresent: true, implementation: 'existing' };
  }
  let implementation = 'kernel';
  const kernel = noKernelWireguard.has(kernelOf(t))
    ? undefined
    : await t.run('ip', ['link', 'add', 'dev', name, 'type', 'wireguard'], { ...run, allowNonZeroExit: true });
  if (kernel && kernel.exitCode !== 0 && /Unknown device type/i.test(kernel.stderr)) noKernelWireguard.add(kernelOf(t));
  if (kernel === undefined || kernel.exitCode !== 0) {
    implementation = 'wireguard-go';
    await t.spawnDaemon('wireguard-go', ['-f', name], {
      logFile: opts.logFile,
      env: { WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error', WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' },
    });
    // wireguard-go makes the link, then its UAPI socket: `wg show` answering proves both.
    // Where the node shares our filesystem, ask only once the socket file is there.
    const socket = `/var/run/wireguard/${name}.sock`;
    await waitFor(
      async () =>
        (!t.fs || (await t.fs.lstat(socket)) !== undefined) &&
        (await t.run('wg', ['show', name, 'listen-port'], { ...run, allowNonZeroExit: true })).exitCode === 0,
      opts.timeoutMs ?? 10_000,
      `wireguard-go for ${name} is not answering`,
      opts.signal,
      t.fs ? 20 : 100,
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
