/**
 * An OpenSSH server inside a lab node's namespace, so the `ssh` host transport
 * is tested against the real thing.
 *
 * Keys are made by the lab (ssh-keygen): a host key for sshd and a client key
 * for the worker; a known_hosts file pins the host key. sshd listens on the
 * node's underlay address only, allows root by key only (no passwords, no
 * forwarding), and puts the pinned tools first on remote sessions' PATH.
 *
 * Where the client runs: every lab uses the same TEST-NET-1 underlay
 * (192.0.2.0/24) inside its own namespaces, and the worker's (root) namespace has
 * no route into it, by design (parallel labs would collide). So the lab runs the
 * ssh client in the hub's namespace (`ip netns exec <hub> ssh ...`), the way a
 * worker on a management host reaches a machine's address. The transport's
 * `clientNetns` option does that; the workflow input stays a plain ssh spec.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { runCommand, TOOLS_BIN } from '../activities/host/exec.js';
import { closeSshMaster, sshTransport, type SshTransportOptions } from '../activities/host/ssh.js';
import {
  localTransport,
  netnsTransport,
  processAlive,
  transportFor,
  type HostTransport,
} from '../activities/host/transport.js';
import * as ip from '../activities/overlay/ip.js';
import type { HostSpec, SshHostSpec } from '../common/input.js';
import { terminateProcesses, type Lab, type LabNode } from './lab.js';

const SSHD = '/usr/sbin/sshd';

export interface LabSshd {
  node: LabNode;
  /** The client's view of the target, as it goes into workflow input. */
  spec: SshHostSpec;
  /** Where the lab's ssh client runs. */
  clientNetns: string;
  dir: string;
  hostKeyFile: string;
  configFile: string;
  logFile: string;
  pid: number;
  /** Control sockets of this lab's masters (removed with the lab). */
  controlDir: string;
}

/** Start sshd in `nodeName`'s namespace with fresh lab keys. */
export async function startSshd(lab: Lab, nodeName: string, opts: { port?: number } = {}): Promise<LabSshd> {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: apt-get install openssh-server`);
  const node = lab.node(nodeName);
  const port = opts.port ?? 22;
  const dir = path.join(lab.state.dir, 'ssh', node.name);
  mkdirSync(path.join(dir, 'home'), { recursive: true, mode: 0o700 });
  const controlDir = path.join(lab.state.dir, 'ssh', 'control');
  mkdirSync(controlDir, { recursive: true, mode: 0o700 });
  // sshd refuses to start without its privilege-separation directory.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  const hostKeyFile = path.join(dir, 'ssh_host_ed25519_key');
  const clientKey = path.join(dir, 'client_ed25519');
  await keygen(clientKey, `nodeboot-lab-client@${lab.prefix}`);
  await runCommand('cp', ['--', `${clientKey}.pub`, path.join(dir, 'authorized_keys')]);
  const configFile = path.join(dir, 'sshd_config');
  const logFile = path.join(dir, 'sshd.log');
  const sshdConfig = [
    `ListenAddress ${node.underlayIp}:${port}`,
    `HostKey ${hostKeyFile}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
    'PermitRootLogin prohibit-password',
    'AllowUsers root',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'AllowTcpForwarding no',
    'AllowAgentForwarding no',
    'AllowStreamLocalForwarding no',
    'X11Forwarding no',
    'PermitTunnel no',
    'PermitUserEnvironment no',
    'PrintMotd no',
    'PrintLastLog no',
    // A bootstrap runs several commands at once over one master connection.
    'MaxSessions 64',
    'MaxStartups 64',
    // Remote sessions find the pinned tools (spire-agent, ...) like the netns transport does.
    // HOME: the lab host's root dotfiles (pyenv, ...) are not the node's, and
    // bash would source ~/.bashrc for every remote command (seconds each here).
    `SetEnv PATH=${TOOLS_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 LC_ALL=C.UTF-8 HOME=${path.join(dir, 'home')}`,
    'LogLevel INFO',
    '',
  ].join('\n');
  await runCommand('sh', ['-c', 'umask 077; cat > "$1"', 'write', configFile], { input: sshdConfig });

  const sshd: LabSshd = {
    node,
    spec: {
      kind: 'ssh',
      host: node.underlayIp,
      port,
      user: 'root',
      identityFile: clientKey,
      knownHostsFile: path.join(dir, 'known_hosts'),
      connectTimeoutSeconds: 10,
    },
    clientNetns: lab.hub.netns,
    dir,
    hostKeyFile,
    configFile,
    logFile,
    pid: 0,
    controlDir,
  };
  await newHostKey(sshd);
  await launch(sshd);
  return sshd;
}

/** The transport options the lab's client needs (client in the hub namespace, private control dir). */
export function labSshOptions(sshd: LabSshd): SshTransportOptions {
  return { clientNetns: sshd.clientNetns, controlDir: sshd.controlDir };
}

export function labSshTransport(sshd: LabSshd, opts: SshTransportOptions = {}): HostTransport {
  return sshTransport(sshd.spec, { ...labSshOptions(sshd), ...opts });
}

/**
 * What `createActivities({ transport })` gets in lab tests: ssh specs reach the
 * node from the hub namespace; local and netns specs as usual.
 */
export function labTransportFactory(
  lab: Lab,
  controlDir = path.join(lab.state.dir, 'ssh', 'control'),
): (spec: HostSpec) => HostTransport {
  return (spec) =>
    spec.kind === 'ssh' ? sshTransport(spec, { clientNetns: lab.hub.netns, controlDir }) : transportFor(spec);
}

/**
 * Replace the host key (a reinstalled or impersonated host): restart sshd with a
 * new key, drop every open connection, and leave known_hosts pinning the OLD key.
 */
export async function rotateHostKey(sshd: LabSshd): Promise<void> {
  await stopSshd(sshd, { closeMasters: false });
  await runCommand('rm', ['-f', '--', sshd.hostKeyFile, `${sshd.hostKeyFile}.pub`]);
  await keygen(sshd.hostKeyFile, 'nodeboot-lab-host');
  await launch(sshd);
}

/** Pin the current host key again (after a rotation the operator accepted). */
export async function pinHostKey(sshd: LabSshd): Promise<void> {
  const pub = readFileSync(`${sshd.hostKeyFile}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  const host = sshd.spec.port === 22 ? sshd.spec.host : `[${sshd.spec.host}]:${sshd.spec.port}`;
  await runCommand('sh', ['-c', 'umask 022; cat > "$1"', 'write', sshd.spec.knownHostsFile], {
    input: `${host} ${pub}\n`,
  });
}

/**
 * Stop sshd and every session it holds in the node's namespace (connections
 * outlive the listener). A master connection whose session is killed exits and
 * removes its socket; `closeMasters` (default) also closes ours politely first.
 */
export async function stopSshd(sshd: LabSshd, opts: { closeMasters?: boolean } = {}): Promise<void> {
  if (opts.closeMasters !== false) await closeSshMaster(sshd.spec, labSshOptions(sshd)).catch(() => undefined);
  await terminateProcesses(() => sshdPids(sshd));
}

/** sshd processes (listener and per-connection children) in the node's namespace. */
async function sshdPids(sshd: LabSshd): Promise<number[]> {
  const pids = await ip.netnsPids(localTransport(), sshd.node.netns).catch(() => [] as number[]);
  return pids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sshd';
    } catch {
      return false;
    }
  });
}

/**
 * An ed25519 key pair at `file` (private, 0600) and `file.pub`, unless `file`
 * exists. Made by ssh-keygen where `on` runs it (default the lab host), so a
 * node's key can be made on the node and never be read by anyone else.
 */
export async function keygen(file: string, comment: string, on?: HostTransport): Promise<void> {
  const args = ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file];
  if (!on) {
    if (!existsSync(file)) await runCommand('ssh-keygen', args);
    return;
  }
  if ((await on.run('test', ['-e', file], { allowNonZeroExit: true })).exitCode !== 0) await on.run('ssh-keygen', args);
}

async function newHostKey(sshd: LabSshd): Promise<void> {
  await keygen(sshd.hostKeyFile, 'nodeboot-lab-host');
  await pinHostKey(sshd);
}

async function launch(sshd: LabSshd): Promise<void> {
  const t = netnsTransport(sshd.node.netns);
  await runCommand(SSHD, ['-t', '-f', sshd.configFile]);
  sshd.pid = await t.spawnDaemon(SSHD, ['-D', '-e', '-f', sshd.configFile], { logFile: sshd.logFile });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await t.run('ss', ['-Hltn', `sport = :${sshd.spec.port}`], { allowNonZeroExit: true });
    if (r.stdout.includes(`${sshd.spec.host}:${sshd.spec.port}`)) return;
    if (!processAlive(sshd.pid) || Date.now() > deadline) {
      const log = existsSync(sshd.logFile) ? readFileSync(sshd.logFile, 'utf8').slice(-500) : '';
      throw new Error(`sshd in ${sshd.node.netns} did not start listening: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Remove the lab's ssh files (the lab's own `down` removes them too). */
export function removeSshFiles(sshd: LabSshd): void {
  rmSync(sshd.dir, { recursive: true, force: true });
}
