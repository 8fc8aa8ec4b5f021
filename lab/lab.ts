/**
 * The lab: a hub and N nodes as Linux network namespaces on this machine.
 *
 *   <prefix>-ul    underlay "switch": a bridge joining everyone on 192.0.2.0/24 (TEST-NET-1)
 *   <prefix>-hub   the hub: WireGuard hub interface (10.200.0.1 in 10.200.0.0/16),
 *                  forwarding between nodes, and (optionally) the SPIRE server
 *   <prefix>-n1..  the nodes: only an underlay address until a bootstrap runs
 *
 * Every name carries a random per-run prefix ("nb" + 6 hex), so labs of parallel
 * test runs never collide, and every address lives inside the lab's namespaces.
 * State is kept in `.lab/<prefix>/state.json`, so `down` works from another
 * process and stale labs (their owner died) are found and removed by prefix.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { TOOLS_BIN } from '../activities/host/exec.js';
import { localTransport, netnsTransport, processAlive, type HostTransport } from '../activities/host/transport.js';
import * as ip from '../activities/overlay/ip.js';
import * as wg from '../activities/overlay/wireguard/wg-cli.js';
import { ensureInterface } from '../activities/overlay/wireguard/interface.js';

export const LAB_PREFIX_RE = /^nb[0-9a-f]{6}$/;
const LAB_NETNS_RE = /^(nb[0-9a-f]{6})-(ul|hub|n\d+)$/;

// Machine-wide (not per checkout), like /run/netns itself: every checkout sees
// every lab, so stale ones are found whoever made them.
export const LAB_ROOT = process.env.NODEBOOT_LAB_DIR ?? '/run/nodeboot/lab';

export const UNDERLAY_CIDR = '192.0.2.0/24';
export const OVERLAY_CIDR = '10.200.0.0/16';
export const HUB_UNDERLAY_IP = '192.0.2.1';
export const HUB_OVERLAY_IP = '10.200.0.1';
export const HUB_LISTEN_PORT = 51820;

/** The demo workload (a Go program, lab/demo-workload/, built by `npm run tools`): installed on the lab's nodes by `Lab.up`. */
const DEMO_WORKLOAD_BUILT = path.join(TOOLS_BIN, 'demo-workload');

export interface LabNode {
  /** "n1", "n2", ... */
  name: string;
  netns: string;
  underlayIp: string;
  /** The node's own state directory (its "disk"). */
  dir: string;
}

export interface LabHub {
  netns: string;
  interface: string;
  underlayIp: string;
  endpoint: string;
  overlayIp: string;
  overlayCidr: string;
  publicKey: string;
  dir: string;
}

export interface LabSpire {
  trustDomain: string;
  socketPath: string;
  port: number;
  datastore: 'sqlite' | 'postgres';
  dataDir: string;
  pid: number;
}

export interface LabState {
  prefix: string;
  dir: string;
  createdAt: string;
  /** The process that owns an ephemeral lab (a test run); the lab is stale once it is gone. */
  owner: { pid: number; ephemeral: boolean };
  underlayNetns: string;
  hub: LabHub;
  nodes: LabNode[];
  spire: LabSpire | null;
}

export interface LabUpOptions {
  nodes: number;
  /** Start a SPIRE server on the hub (default true). */
  spire?: boolean;
  datastore?: 'sqlite' | 'postgres';
  trustDomain?: string;
  /** The NodeAttestors the lab's SPIRE server runs (default: lab/spire-server.ts DEFAULT_LAB_ATTESTORS). */
  nodeAttestors?: readonly string[];
  /** Torn down automatically as stale once this process is gone (tests). Default false. */
  ephemeral?: boolean;
  log?: (line: string) => void;
}

const host = localTransport();

export class Lab {
  private constructor(readonly state: LabState) {}

  get prefix() {
    return this.state.prefix;
  }
  get hub() {
    return this.state.hub;
  }
  get nodes() {
    return this.state.nodes;
  }
  get spire() {
    return this.state.spire;
  }
  /**
   * The demo workload program as installed for this lab's nodes (`Lab.up`). The
   * nodes share this machine's filesystem, so one root-owned, world-readable copy
   * serves them all; inputs name it in a workload's `command` (lab/inputs.ts).
   */
  get demoWorkload(): string {
    return path.join(this.state.dir, 'bin', 'demo-workload');
  }

  hubTransport(): HostTransport {
    return netnsTransport(this.state.hub.netns);
  }

  nodeTransport(node: LabNode | string): HostTransport {
    return netnsTransport(typeof node === 'string' ? this.node(node).netns : node.netns);
  }

  node(name: string): LabNode {
    const n = this.state.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`lab ${this.prefix} has no node "${name}"`);
    return n;
  }

  static async up(opts: LabUpOptions): Promise<Lab> {
    const log = opts.log ?? (() => undefined);
    if (!Number.isInteger(opts.nodes) || opts.nodes < 0 || opts.nodes > 200) {
      throw new Error('nodes must be an integer between 0 and 200');
    }
    assertRoot();
    await reapStaleLabs(log);

    const prefix = `nb${randomBytes(3).toString('hex')}`;
    const dir = path.join(LAB_ROOT, prefix);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const hubDir = path.join(dir, 'hub');
    const state: LabState = {
      prefix,
      dir,
      createdAt: new Date().toISOString(),
      owner: { pid: process.pid, ephemeral: opts.ephemeral ?? false },
      underlayNetns: `${prefix}-ul`,
      hub: {
        netns: `${prefix}-hub`,
        interface: `${prefix}h`,
        underlayIp: HUB_UNDERLAY_IP,
        endpoint: `${HUB_UNDERLAY_IP}:${HUB_LISTEN_PORT}`,
        overlayIp: HUB_OVERLAY_IP,
        overlayCidr: OVERLAY_CIDR,
        publicKey: '',
        dir: hubDir,
      },
      nodes: Array.from({ length: opts.nodes }, (_, i) => ({
        name: `n${i + 1}`,
        netns: `${prefix}-n${i + 1}`,
        underlayIp: `192.0.2.${10 + i}`,
        dir: path.join(dir, 'nodes', `n${i + 1}`),
      })),
      spire: null,
    };
    const lab = new Lab(state);
    lab.save();
    try {
      lab.installDemoWorkload();
      await lab.buildUnderlay(log);
      await lab.buildHub(log);
      if (opts.spire ?? true) {
        await lab.startSpire(
          opts.datastore ?? 'sqlite',
          opts.trustDomain ?? 'lab.nodeboot.test',
          log,
          opts.nodeAttestors,
        );
      }
      lab.save();
      return lab;
    } catch (err) {
      await lab.down().catch(() => undefined);
      throw err;
    }
  }

  /** Load a lab created by another process (the CLI's `down`/`status`). */
  static load(prefix: string): Lab {
    if (!LAB_PREFIX_RE.test(prefix)) throw new Error(`prefix must look like "nb1a2b3c", got "${prefix}"`);
    const file = path.join(LAB_ROOT, prefix, 'state.json');
    return new Lab(JSON.parse(readFileSync(file, 'utf8')) as LabState);
  }

  /** Labs with a state file under LAB_ROOT. */
  static list(): Lab[] {
    if (!existsSync(LAB_ROOT)) return [];
    return readdirSync(LAB_ROOT)
      .filter((p) => LAB_PREFIX_RE.test(p) && existsSync(path.join(LAB_ROOT, p, 'state.json')))
      .map((p) => Lab.load(p));
  }

  /** Put the demo workload where every workload uid can read it and none can change it. */
  private installDemoWorkload() {
    if (!existsSync(DEMO_WORKLOAD_BUILT))
      throw new Error(`the demo workload is not built (${DEMO_WORKLOAD_BUILT}): run \`npm run tools\``);
    mkdirSync(path.dirname(this.demoWorkload), { recursive: true, mode: 0o755 });
    copyFileSync(DEMO_WORKLOAD_BUILT, this.demoWorkload);
    chmodSync(this.demoWorkload, 0o755);
  }

  private save() {
    writeFileSync(path.join(this.state.dir, 'state.json'), JSON.stringify(this.state, null, 2) + '\n');
  }

  private async buildUnderlay(log: (l: string) => void) {
    const ul = this.state.underlayNetns;
    log(`underlay ${ul} (${UNDERLAY_CIDR})`);
    await ip.netnsAdd(host, ul);
    const ulT = netnsTransport(ul);
    await ulT.run('ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await ip.linkUp(ulT, 'br0');
    const members = [
      { netns: this.state.hub.netns, port: 'vhub', addr: HUB_UNDERLAY_IP },
      ...this.state.nodes.map((n) => ({ netns: n.netns, port: `v${n.name}`, addr: n.underlayIp })),
    ];
    for (const m of members) {
      await ip.netnsAdd(host, m.netns);
      await ip.vethBetween(host, { netns: ul, ifname: m.port }, { netns: m.netns, ifname: 'eth0' });
      await ulT.run('ip', ['link', 'set', m.port, 'master', 'br0']);
      await ip.linkUp(ulT, m.port);
      const t = netnsTransport(m.netns);
      await ip.linkUp(t, 'lo');
      await ip.addrReplace(t, 'eth0', `${m.addr}/24`);
      await ip.linkUp(t, 'eth0');
    }
    for (const n of this.state.nodes) mkdirSync(n.dir, { recursive: true, mode: 0o755 });
  }

  private async buildHub(log: (l: string) => void) {
    const hub = this.state.hub;
    log(`hub ${hub.netns}: ${hub.interface} ${hub.overlayIp} on ${hub.endpoint}`);
    const t = this.hubTransport();
    // Nodes reach each other through the hub.
    await t.run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    await ensureInterface(t, hub.interface, { logFile: path.join(hub.dir, 'wireguard-go.log') });
    const keyPath = path.join(hub.dir, 'wg', `${hub.interface}.key`);
    hub.publicKey = await wg.ensureKeyPair(t, keyPath);
    await wg.setInterface(t, hub.interface, { privateKeyPath: keyPath, listenPort: HUB_LISTEN_PORT });
    await ip.addrReplace(t, hub.interface, `${hub.overlayIp}/16`);
    await ip.linkUp(t, hub.interface, 1420);
    this.save();
  }

  private async startSpire(
    datastore: 'sqlite' | 'postgres',
    trustDomain: string,
    log: (l: string) => void,
    nodeAttestors?: readonly string[],
  ) {
    const { startSpireServer } = await import('./spire-server.js');
    log(`SPIRE server on ${this.hub.netns} (${datastore}, trust domain ${trustDomain})`);
    const dataDir = path.join(this.hub.dir, 'spire');
    const server = await startSpireServer({
      transport: this.hubTransport(),
      dir: dataDir,
      trustDomain,
      bindAddress: '0.0.0.0',
      port: 8081,
      datastore,
      name: this.prefix,
      ...(nodeAttestors ? { nodeAttestors } : {}),
    });
    this.state.spire = { trustDomain, socketPath: server.socketPath, port: 8081, datastore, dataDir, pid: server.pid };
  }

  /**
   * Put a node on the overlay directly (no workflow): interface, key made on
   * the node, hub peer both ways. The bootstrap does this through its steps;
   * tests of lower layers use this.
   */
  async wireNode(
    name: string,
    overlayIp: string,
    ifname = `${this.prefix}${name}`.slice(0, 15),
  ): Promise<{ interface: string; publicKey: string }> {
    const node = this.node(name);
    const t = this.nodeTransport(node);
    await ensureInterface(t, ifname, { logFile: path.join(node.dir, 'wireguard-go.log') });
    const keyPath = path.join(node.dir, 'wg', `${ifname}.key`);
    const publicKey = await wg.ensureKeyPair(t, keyPath);
    await wg.setInterface(t, ifname, { privateKeyPath: keyPath });
    await ip.addrReplace(t, ifname, `${overlayIp}/16`);
    await ip.linkUp(t, ifname, 1420);
    // Hub first, so the node's first handshake is answered (not retried 5 s later).
    await wg.setPeer(this.hubTransport(), this.hub.interface, { publicKey, allowedIps: [`${overlayIp}/32`] });
    await wg.setPeer(t, ifname, {
      publicKey: this.hub.publicKey,
      endpoint: this.hub.endpoint,
      allowedIps: [OVERLAY_CIDR],
      persistentKeepaliveSeconds: 5,
    });
    return { interface: ifname, publicKey };
  }

  /** Everything a person (or `lab status --json`) wants to know about the lab. */
  async status(): Promise<LabStatus> {
    const existing = new Set(await ip.netnsList(host));
    const namespaces = await Promise.all(
      [this.state.underlayNetns, this.hub.netns, ...this.nodes.map((n) => n.netns)].map(async (ns) => {
        if (!existing.has(ns)) return { name: ns, exists: false, interfaces: [], processes: [] };
        const t = netnsTransport(ns);
        const links = await ip.listLinks(t);
        const pids = await ip.netnsPids(host, ns);
        return {
          name: ns,
          exists: true,
          interfaces: links.map((l) => ({ name: l.ifname, state: l.operstate ?? 'UNKNOWN' })),
          processes: pids.map((pid) => ({ pid, command: commandOf(pid) })),
        };
      }),
    );
    let spireHealthy: boolean | null = null;
    if (this.spire) {
      const r = await this.hubTransport()
        .run('spire-server', ['healthcheck', '-socketPath', this.spire.socketPath], {
          allowNonZeroExit: true,
          timeoutMs: 10_000,
        })
        .catch(() => ({ exitCode: 1 }));
      spireHealthy = r.exitCode === 0;
    }
    return {
      prefix: this.prefix,
      dir: this.state.dir,
      hub: { ...this.hub },
      nodes: this.nodes,
      namespaces,
      spire: this.spire ? { ...this.spire, healthy: spireHealthy } : null,
    };
  }

  /** Tear the lab down: processes, namespaces, SPIRE state, files. Idempotent. */
  async down(): Promise<void> {
    if (this.state.spire) {
      const { stopSpireServerByDir } = await import('./spire-server.js');
      await stopSpireServerByDir(this.state.spire.dataDir).catch(() => undefined);
    }
    await destroyNamespaces(this.prefix);
    rmSync(this.state.dir, { recursive: true, force: true });
  }
}

export interface LabStatus {
  prefix: string;
  dir: string;
  hub: LabHub;
  nodes: LabNode[];
  namespaces: {
    name: string;
    exists: boolean;
    interfaces: { name: string; state: string }[];
    processes: { pid: number; command: string }[];
  }[];
  spire: (LabSpire & { healthy: boolean | null }) | null;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

function assertRoot() {
  if (process.getuid?.() !== 0) {
    throw new Error('the lab needs root (network namespaces, WireGuard interfaces): run as root');
  }
}

/**
 * SIGTERM the processes `listPids` finds, wait up to 5 s for them to go, then
 * SIGKILL whatever `listPids` still finds (and wait again).
 */
export async function terminateProcesses(listPids: () => Promise<number[]>): Promise<void> {
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    const pids = await listPids();
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && pids.some(processAlive)) await new Promise((r) => setTimeout(r, 50));
  }
}

/** Kill every process in the lab's namespaces, then delete the namespaces. */
export async function destroyNamespaces(prefix: string): Promise<string[]> {
  const all = await ip.netnsList(host);
  const mine = all.filter((ns) => LAB_NETNS_RE.exec(ns)?.[1] === prefix);
  await terminateProcesses(async () => (await Promise.all(mine.map((ns) => ip.netnsPids(host, ns)))).flat());
  for (const ns of mine) await ip.netnsDelete(host, ns).catch(() => undefined);
  return mine;
}

/**
 * Remove labs nobody owns any more: ephemeral labs whose owner process is gone,
 * and namespaces with our naming pattern but no state file (a crash before save).
 */
export async function reapStaleLabs(log: (l: string) => void = () => undefined): Promise<string[]> {
  const reaped: string[] = [];
  for (const lab of Lab.list()) {
    const { pid, ephemeral } = lab.state.owner;
    if (ephemeral && !processAlive(pid)) {
      log(`removing stale lab ${lab.prefix} (owner ${pid} is gone)`);
      await lab.down();
      reaped.push(lab.prefix);
    }
  }
  const known = new Set(Lab.list().map((l) => l.prefix));
  const orphanPrefixes = new Set(
    (await ip.netnsList(host)).map((ns) => LAB_NETNS_RE.exec(ns)?.[1]).filter((p): p is string => !!p && !known.has(p)),
  );
  for (const p of orphanPrefixes) {
    // A lab being built right now by another process has namespaces before its
    // state file; only reap orphans whose directory is gone too.
    if (existsSync(path.join(LAB_ROOT, p))) continue;
    log(`removing orphaned namespaces of ${p}`);
    await destroyNamespaces(p);
    reaped.push(p);
  }
  return reaped;
}

/**
 * Tear down every lab on the machine (CLI `down`), except ephemeral labs whose
 * owner (a running test) is still alive, unless `force`.
 */
export async function downAll(
  log: (l: string) => void = () => undefined,
  opts: { force?: boolean } = {},
): Promise<string[]> {
  const gone: string[] = [];
  for (const lab of Lab.list()) {
    const { pid, ephemeral } = lab.state.owner;
    if (ephemeral && processAlive(pid) && !opts.force) {
      log(`keeping ${lab.prefix}: it belongs to running process ${pid} (use --force)`);
      continue;
    }
    log(`tearing down ${lab.prefix}`);
    await lab.down();
    gone.push(lab.prefix);
  }
  gone.push(...(await reapStaleLabs(log)));
  return gone;
}
