/**
 * Typed wrapper of `wg` (wireguard-tools), run on a node through its transport.
 *
 * Private keys are generated on the node, written there with mode 0600 and
 * only ever referenced by path: nothing here returns, logs or passes one in argv.
 * Interfaces are read with the `wg show <if> <field>` forms that print public
 * data only, never `wg show <if> dump`, whose first line is the private key
 * (several fields in one command: `showFields`).
 * A key file we did not write (another owner, another mode, a symlink) is
 * refused, never used as the node's key.
 */
import { z } from 'zod';
import { IfName, Ipv4Endpoint, SafePath, WgPublicKey, parseName } from '../../../common/names.js';
import type { HostTransport } from '../../host/transport.js';
import {
  ToolError,
  exitFailure,
  isProgramMissing,
  programMissingError,
  summarizeStderr,
  type RunOptions,
} from '../../host/exec.js';

export interface WgPeerConfig {
  publicKey: string;
  endpoint?: string;
  allowedIps: string[];
  persistentKeepaliveSeconds?: number;
}

export interface WgPeerState {
  publicKey: string;
  endpoint: string | null;
  allowedIps: string[];
  /** Unix seconds of the last handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
}

export interface WgInterfaceState {
  publicKey: string;
  listenPort: number;
  peers: WgPeerState[];
}

const CidrList = z.array(z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'must be an IPv4 CIDR'));

/** Exit status of the key scripts for "a key file is there, but not one we wrote". */
export const FOREIGN_KEY_EXIT = 3;

// A key file is ours only when it is a regular file (not a link) owned by the
// user running the command (root) with mode 0600; the script refuses anything else.
// Checks "$1"; exits FOREIGN_KEY_EXIT when the file there is not ours.
export const KEY_CHECK =
  'if [ -L "$1" ] || { [ -e "$1" ] && [ ! -f "$1" ]; }; then echo "not a regular file" >&2; exit 3; fi; ' +
  'if [ -s "$1" ] && [ "$(stat -c "%u %a" -- "$1")" != "$(id -u) 600" ]; then echo "owner/mode $(stat -c "%u %a" -- "$1")" >&2; exit 3; fi; ';

// Generate the key only when none exists (idempotent), then print the public key.
// The script is a constant; the path arrives as a positional parameter. The temp
// file is made with noclobber (O_EXCL), so a planted link there is not followed.
const KEYGEN_SCRIPT =
  'set -e; umask 077; mkdir -p -- "$(dirname -- "$1")"; ' +
  KEY_CHECK +
  'if [ ! -s "$1" ]; then rm -f -- "$1.tmp"; set -C; wg genkey > "$1.tmp"; set +C; mv -f -- "$1.tmp" "$1"; fi; ' +
  'wg pubkey < "$1"';

// The public key of an existing key file of ours; prints nothing when there is none.
const PUBKEY_SCRIPT = 'set -e; ' + KEY_CHECK + 'if [ -s "$1" ]; then wg pubkey < "$1"; fi';

export function keygenArgs(keyPath: string): string[] {
  return ['-c', KEYGEN_SCRIPT, 'wg-keygen', parseName(SafePath, 'privateKeyPath', keyPath)];
}

export function keyPublicArgs(keyPath: string): string[] {
  return ['-c', PUBKEY_SCRIPT, 'wg-pubkey', parseName(SafePath, 'privateKeyPath', keyPath)];
}

async function runKeyScript(t: HostTransport, args: string[], keyPath: string, opts?: RunOptions): Promise<string> {
  const r = await t.run('sh', args, { ...opts, allowNonZeroExit: true });
  if (r.exitCode === FOREIGN_KEY_EXIT) {
    throw new ToolError(
      'OwnershipConflict',
      `key file ${keyPath} on ${t.label} was not written by node-bootstrap (${summarizeStderr(r.stderr, 80)}; it must be a regular file owned by root with mode 0600): refusing to use it as the node key`,
      'wg',
      r.exitCode,
    );
  }
  if (r.exitCode !== 0)
    throw new ToolError(
      'ToolFailed',
      `wg key script for ${keyPath} exited ${r.exitCode}: ${summarizeStderr(r.stderr)}`,
      'wg',
      r.exitCode,
    );
  return r.stdout.trim();
}

/**
 * Make (or reuse) the node's private key at `keyPath`; returns only the public key.
 * An existing file that is not ours is an OwnershipConflict, and is left as it is.
 */
export async function ensureKeyPair(t: HostTransport, keyPath: string, opts?: RunOptions): Promise<string> {
  return parseName(WgPublicKey, 'wg pubkey output', await runKeyScript(t, keygenArgs(keyPath), keyPath, opts));
}

/** The public key of the node's existing key at `keyPath`; null when there is none (same checks as ensureKeyPair). */
export async function keyFilePublicKey(t: HostTransport, keyPath: string, opts?: RunOptions): Promise<string | null> {
  const out = await runKeyScript(t, keyPublicArgs(keyPath), keyPath, opts);
  return out ? parseName(WgPublicKey, 'wg pubkey output', out) : null;
}

export function setInterfaceArgs(ifname: string, cfg: { privateKeyPath: string; listenPort?: number }): string[] {
  const args = ['set', parseName(IfName, 'interface', ifname)];
  if (cfg.listenPort !== undefined) args.push('listen-port', String(cfg.listenPort));
  args.push('private-key', parseName(SafePath, 'privateKeyPath', cfg.privateKeyPath));
  return args;
}

export async function setInterface(
  t: HostTransport,
  ifname: string,
  cfg: { privateKeyPath: string; listenPort?: number },
  opts?: RunOptions,
) {
  await t.run('wg', setInterfaceArgs(ifname, cfg), opts);
}

export function setPeerArgs(ifname: string, peer: WgPeerConfig): string[] {
  return ['set', parseName(IfName, 'interface', ifname), ...peerArgs(peer)];
}

/** A peer to set, or one to remove. */
export type WgPeerChange = WgPeerConfig | { publicKey: string; remove: true };

function peerArgs(peer: WgPeerChange): string[] {
  const args = ['peer', parseName(WgPublicKey, 'peer.publicKey', peer.publicKey)];
  if ('remove' in peer) return [...args, 'remove'];
  if (peer.endpoint !== undefined) args.push('endpoint', parseName(Ipv4Endpoint, 'peer.endpoint', peer.endpoint));
  if (peer.persistentKeepaliveSeconds !== undefined)
    args.push('persistent-keepalive', String(peer.persistentKeepaliveSeconds));
  args.push('allowed-ips', parseName(CidrList, 'peer.allowedIps', peer.allowedIps).join(','));
  return args;
}

/**
 * One `wg set`: optionally the interface's key and port, then every peer change
 * in order (what several `setInterface`/`setPeer`/`removePeer` calls would do).
 */
export function configureArgs(
  ifname: string,
  cfg: { privateKeyPath?: string; listenPort?: number; peers: readonly WgPeerChange[] },
): string[] {
  const args = ['set', parseName(IfName, 'interface', ifname)];
  if (cfg.listenPort !== undefined) args.push('listen-port', String(cfg.listenPort));
  if (cfg.privateKeyPath !== undefined)
    args.push('private-key', parseName(SafePath, 'privateKeyPath', cfg.privateKeyPath));
  for (const p of cfg.peers) args.push(...peerArgs(p));
  return args;
}

export async function configure(
  t: HostTransport,
  ifname: string,
  cfg: { privateKeyPath?: string; listenPort?: number; peers: readonly WgPeerChange[] },
  opts?: RunOptions,
) {
  await t.run('wg', configureArgs(ifname, cfg), opts);
}

export async function setPeer(t: HostTransport, ifname: string, peer: WgPeerConfig, opts?: RunOptions) {
  await t.run('wg', setPeerArgs(ifname, peer), opts);
}

export function removePeerArgs(ifname: string, publicKey: string): string[] {
  return [
    'set',
    parseName(IfName, 'interface', ifname),
    'peer',
    parseName(WgPublicKey, 'peer.publicKey', publicKey),
    'remove',
  ];
}

/** Remove a peer; removing an absent peer is a no-op in wg, so this is idempotent. */
export async function removePeer(t: HostTransport, ifname: string, publicKey: string, opts?: RunOptions) {
  await t.run('wg', removePeerArgs(ifname, publicKey), opts);
}

const showArgs = (ifname: string, field: string) => ['show', parseName(IfName, 'interface', ifname), field];

/** `wg show <if> public-key`: the interface's public key, null when it has none ("(none)"). */
export async function publicKey(t: HostTransport, ifname: string, opts?: RunOptions): Promise<string | null> {
  const out = (await t.run('wg', showArgs(ifname, 'public-key'), opts)).stdout.trim();
  return out === '(none)' || out === '' ? null : parseName(WgPublicKey, 'wg public-key output', out);
}

/**
 * The public key of WireGuard interface `ifname`, `null` when it has none, or
 * `undefined` when `ifname` is no WireGuard interface (a veth, `lo`, absent).
 */
export async function probePublicKey(
  t: HostTransport,
  ifname: string,
  opts?: RunOptions,
): Promise<string | null | undefined> {
  const r = await t.run('wg', showArgs(ifname, 'public-key'), { ...opts, allowNonZeroExit: true });
  if (r.exitCode !== 0) return undefined;
  const out = r.stdout.trim();
  return out === '(none)' || out === '' ? null : parseName(WgPublicKey, 'wg public-key output', out);
}

/** Lines of "<public key>\t<value>" (the per-peer `wg show` forms). */
export function parsePeerLines(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [key, ...rest] = line.trim().split(/\s+/);
    if (key) m.set(WgPublicKey.parse(key), rest.join(' '));
  }
  return m;
}

/** `wg show <if> allowed-ips` → public key → CIDRs. */
export async function peerAllowedIps(
  t: HostTransport,
  ifname: string,
  opts?: RunOptions,
): Promise<Map<string, string[]>> {
  const r = await t.run('wg', showArgs(ifname, 'allowed-ips'), opts);
  return parseAllowedIps(r.stdout);
}

function parseAllowedIps(out: string): Map<string, string[]> {
  return new Map([...parsePeerLines(out)].map(([k, v]) => [k, v === '(none)' || v === '' ? [] : v.split(' ')]));
}

/** The `wg show <if> <field>` forms that print public data only (never `private-key`, never `dump`). */
export const PUBLIC_FIELDS = [
  'public-key',
  'listen-port',
  'allowed-ips',
  'latest-handshakes',
  'endpoints',
  'transfer',
] as const;
export type WgShowField = (typeof PUBLIC_FIELDS)[number];

/** Ends each field's output in `showFields` (no `wg show` field prints it). */
const FIELD_MARK = '--nodeboot-wg-field--';
// $1 the interface, then the fields: each field's `wg show` output, then the mark line.
const SHOW_FIELDS_SCRIPT = `i=$1; shift; for f in "$@"; do wg show "$i" "$f" || exit; printf '%s\\n' '${FIELD_MARK}'; done`;

export function showFieldsArgs(ifname: string, fields: readonly WgShowField[]): string[] {
  for (const f of fields)
    if (!(PUBLIC_FIELDS as readonly string[]).includes(f)) throw new Error(`wg show ${f} is not a public field`);
  return ['-c', SHOW_FIELDS_SCRIPT, 'wg-show', parseName(IfName, 'interface', ifname), ...fields];
}

/**
 * Several public `wg show <if> <field>` reads in one command on the node (one
 * process started by the worker instead of one per field).
 */
export async function showFields<F extends WgShowField>(
  t: HostTransport,
  ifname: string,
  fields: readonly F[],
  opts?: RunOptions,
): Promise<Record<F, string>> {
  const args = showFieldsArgs(ifname, fields);
  const r = await t.run('sh', args, { ...opts, allowNonZeroExit: true });
  if (r.exitCode !== 0) {
    if (isProgramMissing('wg', r.exitCode, r.stderr)) throw programMissingError('wg', t.label, r.exitCode);
    throw exitFailure('wg', ['show', ifname, ...fields], r, t.label);
  }
  const parts = `${r.stdout}\n`.split(`${FIELD_MARK}\n`);
  if (parts.length !== fields.length + 1)
    throw new ToolError('ToolFailed', `wg show ${ifname} on ${t.label} printed unexpected output`, 'wg');
  return Object.fromEntries(fields.map((f, i) => [f, parts[i]!.replace(/\n$/, '')])) as Record<F, string>;
}

/** The interface's public key (null when it has none) and its peers' allowed IPs, in one command. */
export async function keyAndAllowedIps(
  t: HostTransport,
  ifname: string,
  opts?: RunOptions,
): Promise<{ publicKey: string | null; allowedIps: Map<string, string[]> }> {
  const f = await showFields(t, ifname, ['public-key', 'allowed-ips'], opts);
  return { publicKey: parsePublicKey(f['public-key']), allowedIps: parseAllowedIps(f['allowed-ips']) };
}

function parsePublicKey(out: string): string | null {
  const key = out.trim();
  return key === '(none)' || key === '' ? null : parseName(WgPublicKey, 'wg public-key output', key);
}

/**
 * The interface and its peers (`public-key`, `listen-port`, `allowed-ips`,
 * `latest-handshakes`, `endpoints`, `transfer`), in one command: public data only.
 */
export async function show(t: HostTransport, ifname: string, opts?: RunOptions): Promise<WgInterfaceState> {
  const f = await showFields(t, ifname, PUBLIC_FIELDS, opts);
  const pub = parsePublicKey(f['public-key']);
  if (pub === null) throw new Error(`wg interface ${ifname} has no key`);
  const listenPort = Number(f['listen-port'].trim() || 0);
  const allowed = parseAllowedIps(f['allowed-ips']);
  const handshakes = parseLatestHandshakes(f['latest-handshakes']);
  const endpoints = parsePeerLines(f.endpoints);
  const transfer = parsePeerLines(f.transfer);
  const peers = [...allowed].map(([publicKey, allowedIps]) => {
    const endpoint = endpoints.get(publicKey);
    const [rx, tx] = (transfer.get(publicKey) ?? '0 0').split(' ');
    return {
      publicKey,
      endpoint: endpoint === undefined || endpoint === '(none)' ? null : endpoint,
      allowedIps,
      latestHandshake: handshakes.get(publicKey) ?? 0,
      rxBytes: Number(rx ?? 0),
      txBytes: Number(tx ?? 0),
    };
  });
  return { publicKey: pub, listenPort, peers };
}

/** `wg show <if> latest-handshakes` → public key → unix seconds (0 = never). */
export async function latestHandshakes(
  t: HostTransport,
  ifname: string,
  opts?: RunOptions,
): Promise<Map<string, number>> {
  const r = await t.run('wg', showArgs(ifname, 'latest-handshakes'), opts);
  return parseLatestHandshakes(r.stdout);
}

export function parseLatestHandshakes(out: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of out.split('\n')) {
    const [key, ts] = line.trim().split(/\s+/);
    if (key && ts) m.set(WgPublicKey.parse(key), Number(ts));
  }
  return m;
}

/**
 * Nodes that share this process's filesystem (local, netns) run this host's own `wg`:
 * its version is asked once per worker, not once per node.
 */
let thisHostVersion: string | undefined;

/** `wg --version` on the node (ToolMissing when it has no wg). */
export async function version(t: HostTransport, opts?: RunOptions): Promise<string> {
  if (t.fs && thisHostVersion !== undefined) return thisHostVersion;
  const r = await t.run('wg', ['--version'], opts);
  const v = r.stdout.trim().split('\n')[0] ?? 'unknown';
  if (t.fs) thisHostVersion = v;
  return v;
}
