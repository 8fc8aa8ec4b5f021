/**
 * The Bowtie client on a node, as ../shared/bowtie-api.md describes it: a
 * Debian package seeded by /etc/bowtie/configuration/config.toml, and a local
 * HTTP API on the node's loopback (:17133). Everything here runs on the node
 * through its host transport (netns, ssh), so it reads the local API with the
 * node's own `curl`.
 *
 * `installRoot` (the input's overlay.bowtie.installRoot) puts the package, its
 * dpkg database and the config under a directory instead of "/": for nodes
 * that share one filesystem (the lab's network namespaces) or image builds.
 */
import { createHash } from 'node:crypto';
import type { BowtieSpec } from '../../../common/input.js';
import { ToolError, type RunOptions } from '../../host/exec.js';
import type { HostTransport } from '../../host/transport.js';
import { httpsRequest, tlsTrustError, type HttpsResponse } from './trust.js';

export const CONFIG_PATH = '/etc/bowtie/configuration/config.toml';

const rootOf = (b: BowtieSpec) => b.installRoot?.replace(/\/+$/, '') ?? '';
export const configPathOf = (b: BowtieSpec) => `${rootOf(b)}${CONFIG_PATH}`;

/** config.toml: the documented keys (controller entrypoints, never prompt), then the input's extra keys. */
export function renderConfig(b: BowtieSpec): string {
  const value = (v: string | number | boolean | string[]): string =>
    Array.isArray(v)
      ? `[${v.map((x) => JSON.stringify(x)).join(', ')}]`
      : typeof v === 'string'
        ? JSON.stringify(v)
        : String(v);
  const lines = [
    '# Written by node-bootstrap (overlay driver "bowtie"). Changes are overwritten on the next bootstrap.',
    `entrypoint = ${value(b.entrypoints ?? [b.controllerUrl])}`,
    'auth_prompt_strategy = "never"',
    ...Object.entries(b.clientConfig).map(([k, v]) => `${k} = ${value(v)}`),
  ];
  return lines.join('\n') + '\n';
}

/** Write config.toml when it differs (atomic rename). True when it changed. */
export async function seedConfig(t: HostTransport, b: BowtieSpec, opts: RunOptions = {}): Promise<boolean> {
  const r = await t.run(
    'sh',
    [
      '-c',
      'set -e; mkdir -p "$(dirname "$1")"; cat > "$1.nodeboot-new"; chmod 0644 "$1.nodeboot-new"; ' +
        'if cmp -s "$1.nodeboot-new" "$1"; then rm -f "$1.nodeboot-new"; echo unchanged; else mv -f "$1.nodeboot-new" "$1"; echo written; fi',
      'bowtie-seed',
      configPathOf(b),
    ],
    { ...opts, input: renderConfig(b) },
  );
  return r.stdout.includes('written');
}

/** Remove the seeded config (and its directories when empty). True when it was there. */
export async function removeConfig(t: HostTransport, b: BowtieSpec, opts: RunOptions = {}): Promise<boolean> {
  const r = await t.run(
    'sh',
    [
      '-c',
      // Only the two directories the seed made (configuration/, bowtie/), and only when empty.
      'if [ -e "$1" ]; then rm -f -- "$1"; echo removed; fi; d=$(dirname "$1"); rmdir "$d" 2>/dev/null && rmdir "$(dirname "$d")" 2>/dev/null; true',
      'bowtie-unseed',
      configPathOf(b),
    ],
    opts,
  );
  return r.stdout.includes('removed');
}

/** A package source the worker downloads (else a path on the node); an http:// one is a URL too, to be refused. */
export const isUrl = (b: BowtieSpec) => /^https?:\/\//.test(b.package.source);
/** A downloaded package larger than this is refused (it is held in memory and copied over stdin). */
const MAX_PACKAGE_BYTES = 512 << 20;
/** Where a downloaded package is put on the node. */
const stagedPath = (b: BowtieSpec, stageDir: string) => `${stageDir}/${b.package.name}.deb`;

const dpkgAdminArgs = (b: BowtieSpec) => (b.installRoot ? [`--admindir=${rootOf(b)}/var/lib/dpkg`] : []);

/** The package's installed version, or null. */
export async function installedVersion(t: HostTransport, b: BowtieSpec, opts: RunOptions = {}): Promise<string | null> {
  if (
    b.installRoot &&
    (await t.run('test', ['-f', `${rootOf(b)}/var/lib/dpkg/status`], { ...opts, allowNonZeroExit: true })).exitCode !==
      0
  ) {
    return null; // no package database in the root yet
  }
  const r = await t.run(
    'dpkg-query',
    [...dpkgAdminArgs(b), '-W', '-f', '${db:Status-Status} ${Version}', b.package.name],
    { ...opts, allowNonZeroExit: true },
  );
  const [status, version] = r.stdout.trim().split(' ');
  return r.exitCode === 0 && status === 'installed' && version ? version : null;
}

/** The package bytes from its https URL, checked against the input's sha256 in the worker, before anything reaches the node. */
export async function fetchPackage(
  b: BowtieSpec,
  opts: { signal?: AbortSignal; fetchTimeoutMs?: number; ca?: string } = {},
): Promise<Buffer> {
  const url = b.package.source;
  if (!/^https:\/\//.test(url))
    throw new ToolError(
      'InvalidInput',
      `overlay.bowtie.package.source: ${url} is not https:// (the worker downloads only over verified TLS)`,
      'fetch',
    );
  // Bytes from a URL are trusted only by their hash.
  if (!b.package.sha256)
    throw new ToolError('InvalidInput', 'overlay.bowtie.package.sha256: is required for a package URL', 'fetch');
  let res: HttpsResponse;
  try {
    const timeout = AbortSignal.timeout(opts.fetchTimeoutMs ?? 60_000);
    res = await httpsRequest(url, {
      ca: opts.ca,
      maxBytes: MAX_PACKAGE_BYTES,
      signal: opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout,
    });
  } catch (err) {
    if (err instanceof ToolError) throw err;
    if (opts.signal?.aborted) throw err; // cancellation is not an outage
    if (tlsTrustError(err)) {
      throw new ToolError(
        'InvalidInput',
        `overlay.bowtie.package.source: ${url}: TLS certificate not trusted (${(err as { code?: string }).code}); the worker trusts the system roots and NODEBOOT_CA_FILE`,
        'fetch',
      );
    }
    throw new ToolError(
      'ToolFailed',
      `overlay.bowtie.package.source: fetching ${url} failed: ${(err as { code?: string }).code ?? (err as Error).message}`,
      'fetch',
    );
  }
  // Only a 2xx is the package (a redirect is not followed); 5xx may pass, 4xx will not.
  if (res.status < 200 || res.status >= 300) {
    throw new ToolError(
      res.status >= 500 ? 'ToolFailed' : 'InvalidInput',
      `overlay.bowtie.package.source: ${url} answered ${res.status}`,
      'fetch',
    );
  }
  const sum = createHash('sha256').update(res.body).digest('hex');
  if (sum !== b.package.sha256) {
    throw new ToolError(
      'InvalidInput',
      `overlay.bowtie.package.sha256: ${url} has sha256 ${sum}, expected ${b.package.sha256}`,
      'sha256',
    );
  }
  return res.body;
}

/**
 * Put the .deb on the node: a node path is used where it is; a URL is fetched
 * by the worker, checked (fetchPackage) and copied over (base64 on stdin), or
 * `fetched` (its bytes from fetchPackage) copied. The sha256, when given, is
 * checked on the node too, so either way the node installs exactly those bytes.
 */
export async function stagePackage(
  t: HostTransport,
  b: BowtieSpec,
  stageDir: string,
  opts: RunOptions & { fetchTimeoutMs?: number; ca?: string; fetched?: Buffer } = {},
): Promise<string> {
  const { fetchTimeoutMs, ca, fetched, ...runOpts } = opts;
  let debPath = b.package.source;
  if (isUrl(b)) {
    const bytes = fetched ?? (await fetchPackage(b, { signal: opts.signal, fetchTimeoutMs, ca }));
    debPath = stagedPath(b, stageDir);
    await t.run(
      'sh',
      [
        '-c',
        'set -e; mkdir -p "$(dirname "$1")"; base64 -d > "$1.part"; mv -f "$1.part" "$1"',
        'bowtie-stage',
        debPath,
      ],
      {
        ...runOpts,
        input: bytes.toString('base64'),
        maxBuffer: 1 << 20,
        timeoutMs: 120_000,
      },
    );
  } else if ((await t.run('test', ['-f', debPath], { ...runOpts, allowNonZeroExit: true })).exitCode !== 0) {
    throw new ToolError('InvalidInput', `overlay.bowtie.package.source: ${debPath} is not a file on the node`, 'test');
  }
  if (b.package.sha256) {
    const sum = (await t.run('sha256sum', ['--', debPath], runOpts)).stdout.trim().split(/\s+/)[0];
    if (sum !== b.package.sha256) {
      throw new ToolError(
        'InvalidInput',
        `overlay.bowtie.package.sha256: ${debPath} has sha256 ${sum}, expected ${b.package.sha256}`,
        'sha256sum',
      );
    }
  }
  return debPath;
}

/** Install the staged .deb: dpkg into installRoot, or apt-get into "/" (pulls its dependencies). */
export async function installPackage(
  t: HostTransport,
  b: BowtieSpec,
  debPath: string,
  opts: RunOptions = {},
): Promise<void> {
  const o = { ...opts, timeoutMs: 300_000 };
  if (b.installRoot) {
    const admin = `${rootOf(b)}/var/lib/dpkg`;
    await t.run(
      'sh',
      [
        '-c',
        'set -e; mkdir -p "$1/info" "$1/updates" "$1/triggers"; touch "$1/status" "$1/available"',
        'dpkg-skeleton',
        admin,
      ],
      opts,
    );
    await t.run('dpkg', [`--root=${rootOf(b)}`, '--force-script-chrootless', '--force-confold', '-i', debPath], o);
  } else {
    await t.run(
      'apt-get',
      ['install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', debPath],
      {
        ...o,
        env: { DEBIAN_FRONTEND: 'noninteractive' },
      },
    );
  }
}

/** Purge the package (its maintainer scripts stop the client). True when it was installed. */
export async function purgePackage(t: HostTransport, b: BowtieSpec, opts: RunOptions = {}): Promise<boolean> {
  if ((await installedVersion(t, b, opts)) === null) return false;
  const o = { ...opts, timeoutMs: 300_000 };
  if (b.installRoot)
    await t.run('dpkg', [`--root=${rootOf(b)}`, '--force-script-chrootless', '--purge', b.package.name], o);
  else await t.run('apt-get', ['purge', '-y', b.package.name], { ...o, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  return true;
}

export async function removeStaged(
  t: HostTransport,
  b: BowtieSpec,
  stageDir: string,
  opts: RunOptions = {},
): Promise<boolean> {
  if (!isUrl(b)) return false; // the node's own file: not ours to delete
  const r = await t.run(
    'sh',
    [
      '-c',
      'if [ -e "$1" ]; then rm -f -- "$1"; echo removed; fi; rmdir "$(dirname "$1")" 2>/dev/null || true',
      'bowtie-unstage',
      stagedPath(b, stageDir),
    ],
    opts,
  );
  return r.stdout.includes('removed');
}

// --- the client's local API --------------------------------------------------------------

export interface LocalDeviceView {
  /** The device id the client reports while it waits for approval. */
  pendingId: string | null;
  /** The active device's state ("pending", "accepted", ...), when the client reports one. */
  state: string | null;
  /** The active device's id, when the client reports it. */
  activeId: string | null;
}

/**
 * Ask the client's local API what it knows, or null when nothing answers yet
 * (the service is still starting). `GET /organizations/states` →
 * `.pending_device.id`; `GET /organizations/active/device` → `.state`.
 */
export async function readLocalApi(
  t: HostTransport,
  port: number,
  opts: RunOptions = {},
): Promise<LocalDeviceView | null> {
  const get = async (path: string): Promise<Record<string, unknown> | null | 'down'> => {
    const r = await t.run(
      'curl',
      ['-sS', '--max-time', '3', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`],
      { ...opts, allowNonZeroExit: true, timeoutMs: 6_000 },
    );
    if (r.exitCode === 7 || r.exitCode === 28 || r.exitCode === 52 || r.exitCode === 56) return 'down';
    if (r.exitCode !== 0)
      throw new ToolError(
        'ToolFailed',
        `curl of the Bowtie client's local API ${path} exited ${r.exitCode}`,
        'curl',
        r.exitCode,
      );
    const nl = r.stdout.lastIndexOf('\n');
    const status = Number(r.stdout.slice(nl + 1));
    if (status === 404) return null;
    if (status < 200 || status >= 300) return 'down';
    try {
      const body = JSON.parse(r.stdout.slice(0, nl)) as unknown;
      return body && typeof body === 'object' ? (body as Record<string, unknown>) : null;
    } catch {
      throw new ToolError('ToolFailed', `the Bowtie client's local API ${path} did not answer JSON`, 'curl');
    }
  };
  const states = await get('/organizations/states');
  if (states === 'down') return null;
  const active = await get('/organizations/active/device');
  if (active === 'down') return null;
  const str = (v: unknown) => (typeof v === 'string' && v ? v : null);
  const pending = states?.pending_device as Record<string, unknown> | null | undefined;
  return { pendingId: str(pending?.id), state: str(active?.state), activeId: str(active?.id) };
}
