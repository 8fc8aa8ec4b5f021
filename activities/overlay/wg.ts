/**
 * Typed wrapper of `wg` (wireguard-tools), run on a node through its transport.
 *
 * Private keys are generated on the node, written there with mode 0600 and
 * only ever referenced by path: nothing here returns, logs or passes one in argv.
 * `wg show dump` prints the interface's private key on its first line, so the
 * parser drops that line before anything else sees it.
 */
import { z } from 'zod';
import { IfName, Ipv4Endpoint, SafePath, WgPublicKey, parseName } from '../../common/names.js';
import type { HostTransport } from '../host/transport.js';
import type { RunOptions } from '../host/exec.js';

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

// Generate the key only when none exists (idempotent), then print the public key.
// The script is a constant; the path arrives as a positional parameter.
const KEYGEN_SCRIPT =
  'set -e; umask 077; mkdir -p -- "$(dirname -- "$1")"; ' +
  'if [ ! -s "$1" ]; then wg genkey > "$1.tmp"; mv -f -- "$1.tmp" "$1"; fi; ' +
  'chmod 600 -- "$1"; wg pubkey < "$1"';

export function keygenArgs(keyPath: string): string[] {
  return ['-c', KEYGEN_SCRIPT, 'wg-keygen', parseName(SafePath, 'privateKeyPath', keyPath)];
}

/** Make (or reuse) the node's private key at `keyPath`; returns only the public key. */
export async function ensureKeyPair(t: HostTransport, keyPath: string, opts?: RunOptions): Promise<string> {
  const r = await t.run('sh', keygenArgs(keyPath), opts);
  return parseName(WgPublicKey, 'wg pubkey output', r.stdout.trim());
}

export function setInterfaceArgs(ifname: string, cfg: { privateKeyPath: string; listenPort?: number }): string[] {
  const args = ['set', parseName(IfName, 'interface', ifname)];
  if (cfg.listenPort !== undefined) args.push('listen-port', String(cfg.listenPort));
  args.push('private-key', parseName(SafePath, 'privateKeyPath', cfg.privateKeyPath));
  return args;
}

export async function setInterface(t: HostTransport, ifname: string, cfg: { privateKeyPath: string; listenPort?: number }, opts?: RunOptions) {
  await t.run('wg', setInterfaceArgs(ifname, cfg), opts);
}

export function setPeerArgs(ifname: string, peer: WgPeerConfig): string[] {
  const args = ['set', parseName(IfName, 'interface', ifname), 'peer', parseName(WgPublicKey, 'peer.publicKey', peer.publicKey)];
  if (peer.endpoint !== undefined) args.push('endpoint', parseName(Ipv4Endpoint, 'peer.endpoint', peer.endpoint));
  if (peer.persistentKeepaliveSeconds !== undefined) args.push('persistent-keepalive', String(peer.persistentKeepaliveSeconds));
  args.push('allowed-ips', parseName(CidrList, 'peer.allowedIps', peer.allowedIps).join(','));
  return args;
}

export async function setPeer(t: HostTransport, ifname: string, peer: WgPeerConfig, opts?: RunOptions) {
  await t.run('wg', setPeerArgs(ifname, peer), opts);
}

export function removePeerArgs(ifname: string, publicKey: string): string[] {
  return ['set', parseName(IfName, 'interface', ifname), 'peer', parseName(WgPublicKey, 'peer.publicKey', publicKey), 'remove'];
}

/** Remove a peer; removing an absent peer is a no-op in wg, so this is idempotent. */
export async function removePeer(t: HostTransport, ifname: string, publicKey: string, opts?: RunOptions) {
  await t.run('wg', removePeerArgs(ifname, publicKey), opts);
}

/**
 * Parse `wg show <if> dump`. Line 1 is "private-key public-key listen-port fwmark":
 * the private key is discarded here and never stored in the result.
 */
export function parseDump(dump: string): WgInterfaceState {
  const lines = dump.split('\n').filter((l) => l.length > 0);
  const head = lines.shift();
  if (head === undefined) throw new Error('wg show dump printed nothing');
  const [, publicKey, listenPort] = head.split('\t');
  const peers = lines.map((line) => {
    const f = line.split('\t');
    if (f.length < 8) throw new Error('wg show dump: malformed peer line');
    return {
      publicKey: WgPublicKey.parse(f[0]),
      endpoint: f[2] === '(none)' ? null : (f[2] ?? null),
      allowedIps: f[3] === '(none)' || !f[3] ? [] : f[3].split(','),
      latestHandshake: Number(f[4] ?? 0),
      rxBytes: Number(f[5] ?? 0),
      txBytes: Number(f[6] ?? 0),
    };
  });
  return { publicKey: WgPublicKey.parse(publicKey), listenPort: Number(listenPort ?? 0), peers };
}

export async function show(t: HostTransport, ifname: string, opts?: RunOptions): Promise<WgInterfaceState> {
  const r = await t.run('wg', ['show', parseName(IfName, 'interface', ifname), 'dump'], opts);
  return parseDump(r.stdout);
}

/** `wg show <if> latest-handshakes` → public key → unix seconds (0 = never). */
export async function latestHandshakes(t: HostTransport, ifname: string, opts?: RunOptions): Promise<Map<string, number>> {
  const r = await t.run('wg', ['show', parseName(IfName, 'interface', ifname), 'latest-handshakes'], opts);
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

export async function version(t: HostTransport, opts?: RunOptions): Promise<string> {
  const r = await t.run('wg', ['--version'], opts);
  return r.stdout.trim().split('\n')[0] ?? 'unknown';
}
