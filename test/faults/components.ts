/**
 * The dependencies the fault matrix breaks, each with the real way to break
 * and mend it: a Temporal dev server of its own (SIGKILL, restart on the same
 * SQLite file and port), a PostgreSQL instance of its own (pg_ctl stop/start;
 * the machine's cluster is never touched), the lab's SPIRE server (stopped,
 * started again from the same config and datastore), the hub's WireGuard
 * interface and peers, a node's tunnel, a node's processes and run dir (a
 * reboot), and a small tmpfs as a node's disk.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { localTransport } from '../../activities/host/transport.js';
import { daemonAlive, processStat, stopDaemon } from '../../activities/host/process.js';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import * as server from '../../activities/spire/server-cli.js';
import { terminateProcesses, type Lab } from '../../lab/lab.js';
import { freePort, startDevServer, type DevServerHandle } from '../../lab/temporal.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Temporal dev server of the fault row's own: its port and SQLite file stay the same across kills. */
export class DedicatedTemporal {
  private handle: DevServerHandle | undefined;
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  static async start(): Promise<DedicatedTemporal> {
    const t = new DedicatedTemporal(mkdtempSync(path.join(tmpdir(), 'nb-faults-temporal-')), await freePort());
    await t.restart();
    return t;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Start (again) on the same port and SQLite file; resolves once it serves the namespace. */
  async restart(): Promise<void> {
    this.handle = await startDevServer({
      headless: true,
      port: this.port,
      dbFilename: path.join(this.dir, 'temporal.db'),
      logFile: path.join(this.dir, 'server.log'),
    });
  }

  /** SIGKILL: no shutdown, whatever was not in the SQLite file is lost. */
  async kill(): Promise<void> {
    const pid = this.handle?.pid;
    this.handle = undefined;
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    while (existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z')) await sleep(50);
  }

  async stop(): Promise<void> {
    await this.handle?.stop();
    this.handle = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const PG_BIN = (() => {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? execFileSync('ls', [root], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .sort((a, b) => Number(b) - Number(a))
    : [];
  return versions.length ? path.join(root, versions[0]!, 'bin') : '';
})();

/**
 * A PostgreSQL instance of the fault row's own (initdb into a temp dir, run as
 * the `postgres` user, trust auth on 127.0.0.1 and its own port), so stopping
 * it stops nothing anyone else uses.
 */
export class DedicatedPostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  static async create(): Promise<DedicatedPostgres> {
    if (!PG_BIN) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql/*/bin');
    const dir = mkdtempSync(path.join(tmpdir(), 'nb-faults-pg-'));
    const { uid, gid } = pgUser();
    chownSync(dir, uid, gid);
    const pg = new DedicatedPostgres(dir, await freePort());
    await pg.asPostgres(path.join(PG_BIN, 'initdb'), ['-D', pg.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    writeFileSync(
      path.join(pg.dataDir, 'postgresql.auto.conf'),
      `listen_addresses = '127.0.0.1'\nport = ${pg.port}\nunix_socket_directories = '${dir}'\nfsync = off\n`,
    );
    await pg.start();
    await execa('psql', ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', '-c', 'CREATE DATABASE nbfaults']);
    return pg;
  }

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/nbfaults`;
  }

  private asPostgres(file: string, args: string[]) {
    const { uid, gid } = pgUser();
    return execa(file, args, { uid, gid, cwd: this.dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  }

  async start(): Promise<void> {
    await this.asPostgres(path.join(PG_BIN, 'pg_ctl'), [
      '-D',
      this.dataDir,
      '-l',
      path.join(this.dir, 'server.log'),
      '-w',
      'start',
    ]);
  }

  /** A fast shutdown: open connections are cut, as when the database host goes away. */
  async stop(): Promise<void> {
    await this.asPostgres(path.join(PG_BIN, 'pg_ctl'), ['-D', this.dataDir, '-m', 'fast', '-w', 'stop']);
  }

  async running(): Promise<boolean> {
    const r = await this.asPostgres(path.join(PG_BIN, 'pg_ctl'), ['-D', this.dataDir, 'status']).catch(() => null);
    return r !== null;
  }

  async destroy(): Promise<void> {
    if (await this.running()) await this.stop().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function pgUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no "postgres" user on this machine');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** The lab's SPIRE server: stopped (SIGTERM) and started again from the same config, keys and datastore. */
export const spireServer = {
  dir(lab: Lab): string {
    return path.dirname(path.dirname(lab.spire!.socketPath));
  },
  pid(lab: Lab): number {
    return Number(readFileSync(path.join(this.dir(lab), 'spire-server.pid'), 'utf8').trim());
  },
  async stop(lab: Lab): Promise<void> {
    await stopDaemon(localTransport(), this.pid(lab), { program: 'spire-server' });
  },
  async start(lab: Lab): Promise<void> {
    const dir = this.dir(lab);
    const t = lab.hubTransport();
    const pid = await t.spawnDaemon('spire-server', ['run', '-config', path.join(dir, 'server.conf')], {
      logFile: path.join(dir, 'spire-server.log'),
    });
    // Where the lab's teardown (stopSpireServerByDir) looks for the server to stop.
    writeFileSync(path.join(dir, 'spire-server.pid'), `${pid}\n`, { mode: 0o644 });
    const instance = JSON.parse(readFileSync(path.join(dir, 'instance.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(dir, 'instance.json'), JSON.stringify({ ...instance, pid }, null, 2), { mode: 0o600 });
    const target = { transport: t, socketPath: lab.spire!.socketPath };
    const deadline = Date.now() + 60_000;
    // By start time, not by name: the daemon runs `ip netns exec` for its first milliseconds.
    const ref = { pid, startTime: (await processStat(localTransport(), pid))?.startTime };
    for (;;) {
      if (await server.healthcheck(target).catch(() => false)) return;
      if (!(await daemonAlive(localTransport(), ref, 'spire-server')) || Date.now() > deadline)
        throw new Error(`spire-server did not come back healthy (see ${path.join(dir, 'spire-server.log')})`);
      await sleep(250);
    }
  },
  async running(lab: Lab): Promise<boolean> {
    return daemonAlive(localTransport(), this.pid(lab), 'spire-server');
  },
};

/** The hub's WireGuard interface and its peers. */
export const hub = {
  async down(lab: Lab): Promise<void> {
    await lab.hubTransport().run('ip', ['link', 'set', 'dev', lab.hub.interface, 'down']);
  },
  async up(lab: Lab): Promise<void> {
    await ip.linkUp(lab.hubTransport(), lab.hub.interface);
  },
  /** Remove every peer of the hub (the matrix gives each cell the hub to itself); returns the removed keys. */
  async removePeers(lab: Lab): Promise<string[]> {
    const peers = (await wg.show(lab.hubTransport(), lab.hub.interface)).peers.map((p) => p.publicKey);
    for (const k of peers) await wg.removePeer(lab.hubTransport(), lab.hub.interface, k);
    return peers;
  },
};

/** A node's tunnel: its WireGuard interface deleted (wireguard-go exits with it). */
export async function deleteNodeInterfaces(lab: Lab, node: string): Promise<string[]> {
  const t = lab.nodeTransport(node);
  const links = (await ip.listLinks(t)).map((l) => l.ifname).filter((n) => n !== 'lo' && n !== 'eth0');
  for (const l of links) {
    try {
      await ip.linkDelete(t, l);
    } catch (err) {
      // A tun interface goes with its wireguard-go process: after a kill it may vanish between the list and the delete.
      if ((await ip.listLinks(t)).some((k) => k.ifname === l)) throw err;
    }
  }
  return links;
}

/** A simulated reboot: every process in the node's namespace killed, its run dir (nodeDir) emptied. */
export async function rebootNode(lab: Lab, node: string): Promise<void> {
  const n = lab.node(node);
  // No SIGTERM first: a machine that loses power tells nobody.
  for (const pid of await ip.netnsPids(localTransport(), n.netns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await terminateProcesses(() => ip.netnsPids(localTransport(), n.netns));
  await deleteNodeInterfaces(lab, node);
  rmSync(n.dir, { recursive: true, force: true });
  mkdirSync(n.dir, { recursive: true, mode: 0o755 });
}

/** A small tmpfs mounted as a node's nodeDir, to be filled to the last byte. */
export class SmallDisk {
  private constructor(readonly dir: string) {}

  static async mount(dir: string, sizeMb = 16): Promise<SmallDisk> {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    await execa('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0755,uid=0,gid=0`, 'tmpfs', dir]);
    return new SmallDisk(dir);
  }

  private get filler(): string {
    return path.join(this.dir, '.fill');
  }

  /** Write until ENOSPC: the disk has no byte left. */
  async fill(): Promise<void> {
    await execa('dd', ['if=/dev/zero', `of=${this.filler}`, 'bs=64k'], { reject: false });
    const { stdout } = await execa('df', ['--output=avail', '-B1', this.dir]);
    const avail = Number(stdout.trim().split('\n').pop());
    if (avail !== 0) throw new Error(`${this.dir} still has ${avail} bytes free after filling`);
  }

  /** Free the disk again (the operator deleted the big file). */
  free(): void {
    rmSync(this.filler, { force: true });
  }

  async unmount(): Promise<void> {
    await execa('umount', ['-l', this.dir], { reject: false });
  }
}
