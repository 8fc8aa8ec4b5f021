/**
 * The ssh transport's argv, quoting and error mapping, without a network.
 * (test/integration/ssh-transport.test.ts runs the same code against a real sshd.)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  classifySshExit,
  daemonArgv,
  planSsh,
  remoteArgv,
  remoteCommandLine,
  shellQuote,
  sshTransport,
} from '../../activities/host/ssh.js';
import { isProgramMissing, ToolError } from '../../activities/host/exec.js';
import { transportFor } from '../../activities/host/transport.js';
import { HostSpec, SshHostSpec } from '../../common/input.js';

const spec = SshHostSpec.parse({
  kind: 'ssh',
  host: '192.0.2.10',
  port: 2222,
  user: 'root',
  identityFile: '/etc/nodeboot/id_ed25519',
  knownHostsFile: '/etc/nodeboot/known_hosts',
});

const HOSTILE = [
  "it's",
  'a b',
  '$(touch /tmp/pwned)',
  '`id`',
  'x;rm -rf /',
  '"dq"',
  '\\',
  '',
  '*',
  '--flag',
  'line1\nline2',
  "'",
];

describe('ssh remote quoting', () => {
  it('single-quotes every word, escaping embedded quotes', () => {
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(shellQuote('')).toBe(`''`);
    expect(remoteCommandLine(['printf', '%s\n', 'a b', '$(id)'])).toBe(`cd '/' && 'printf' '%s\n' 'a b' '$(id)'`);
    expect(remoteCommandLine(['ls'], "/srv/it's")).toBe(`cd '/srv/it'\\''s' && 'ls'`);
  });

  it("the daemon script refuses a program the host lacks with the shell's exit 127 before starting anything", () => {
    const line = remoteCommandLine(
      daemonArgv('nodeboot-no-such-tool', ['run'], { logFile: '/nonexistent-dir/never/a.log' }),
    );
    let r: { status: number | null; stderr: string };
    try {
      execFileSync('sh', ['-c', line], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      r = { status: 0, stderr: '' };
    } catch (e) {
      r = e as { status: number; stderr: string };
    }
    expect(r.status).toBe(127);
    expect(isProgramMissing('nodeboot-no-such-tool', 127, r.stderr)).toBe(true);
  });

  it('a POSIX shell splits the quoted line back into exactly the original words', () => {
    const line = remoteCommandLine(['printf', '%s\\0', ...HOSTILE]);
    const out = execFileSync('sh', ['-c', line], { encoding: 'utf8' });
    expect(out.split('\0').slice(0, -1)).toEqual(HOSTILE);
  });

  it('wraps env and uid/gid as remote argv (env names are checked)', () => {
    expect(remoteArgv('wg', ['show'], { env: { A: 'x y' } })).toEqual(['env', 'A=x y', 'wg', 'show']);
    expect(remoteArgv('id', [], { uid: 1000, gid: 1000 })).toEqual([
      'setpriv',
      '--reuid=1000',
      '--regid=1000',
      '--clear-groups',
      '--',
      'id',
    ]);
    expect(() => remoteArgv('x', [], { env: { 'A;B': '1' } })).toThrow(/environment variable name/);
  });

  it('a daemon gets its log file and argv as positional words, never inside the script', () => {
    const argv = daemonArgv('spire-agent', ['run', '-config', '/dev/stdin'], {
      logFile: '/var/log/a.log',
      input: 'secret',
    });
    expect(argv.slice(0, 4)).toEqual(['env', 'NB_STDIN=1', 'sh', '-c']);
    expect(argv.slice(5)).toEqual([
      'nodeboot-daemon',
      '/var/log/a.log',
      'spire-agent',
      'spire-agent',
      'run',
      '-config',
      '/dev/stdin',
    ]);
    expect(argv.join(' ')).not.toContain('secret');
  });
});

describe('ssh argv', () => {
  it('pins the host key, runs in batch mode, reuses a master and ends options before the host', () => {
    const plan = planSsh(spec, `'true'`, { controlPath: '/run/x/abc.sock', master: 'no' });
    expect(plan.file).toBe('ssh');
    expect(plan.args).toEqual([
      '-F', '/dev/null',
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'UserKnownHostsFile=/etc/nodeboot/known_hosts',
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'UpdateHostKeys=no',
      '-o', 'CheckHostIP=no',
      '-o', 'IdentityFile=/etc/nodeboot/id_ed25519',
      '-o', 'IdentitiesOnly=yes',
      '-o', 'IdentityAgent=none',
      '-o', 'PasswordAuthentication=no',
      '-o', 'KbdInteractiveAuthentication=no',
      '-o', 'ForwardAgent=no',
      '-o', 'ForwardX11=no',
      '-o', 'ClearAllForwardings=yes',
      '-o', 'ConnectTimeout=10',
      '-o', 'ServerAliveInterval=5',
      '-o', 'ServerAliveCountMax=3',
      '-o', 'ControlMaster=no',
      '-o', 'ControlPath=/run/x/abc.sock',
      '-l', 'root',
      '-p', '2222',
      '-T',
      '--', '192.0.2.10', `'true'`,
    ]); // prettier-ignore
  });

  it('the master is opened in the background with ControlPersist; the lab client runs in a netns', () => {
    const plan = planSsh(spec, undefined, {
      controlPath: '/run/x/abc.sock',
      master: 'yes',
      persistSeconds: 60,
      clientNetns: 'nb123456-hub',
      extra: ['-f', '-N'],
    });
    expect(plan.file).toBe('ip');
    expect(plan.args.slice(0, 4)).toEqual(['netns', 'exec', 'nb123456-hub', 'ssh']);
    expect(plan.args.join(' ')).toContain('-o ControlMaster=yes -o ControlPath=/run/x/abc.sock -o ControlPersist=60');
    expect(plan.args.slice(-4)).toEqual(['-f', '-N', '--', '192.0.2.10']);
  });
});

describe('ssh error mapping', () => {
  const changed = `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Host key for 192.0.2.10 has changed and you have requested strict checking.
Host key verification failed.`;
  it.each([
    [255, changed, 'HostKeyMismatch'],
    [
      255,
      'No ED25519 host key is known for 192.0.2.10 and you have requested strict checking.\r\nHost key verification failed.',
      'HostKeyMismatch',
    ],
    [255, 'ssh: connect to host 192.0.2.10 port 22: Connection refused', 'HostUnreachable'],
    [255, 'ssh: connect to host 192.0.2.10 port 22: Connection timed out', 'HostUnreachable'],
    [255, 'ssh: connect to host 192.0.2.99 port 22: No route to host', 'HostUnreachable'],
    [255, 'ssh: Could not resolve hostname node-9.example: Name or service not known', 'HostUnreachable'],
    [255, 'kex_exchange_identification: read: Connection reset by peer', 'HostUnreachable'],
    [255, 'root@192.0.2.10: Permission denied (publickey).', 'HostAuthRejected'],
    [255, 'Received disconnect from 192.0.2.10 port 22:2: Too many authentication failures', 'HostAuthRejected'],
    [255, 'Cannot open network namespace "nb123456-hub": No such file or directory', 'HostUnreachable'],
    [255, 'remote tool said goodbye', undefined],
    // A remote tool's own words, even with ssh's phrase in them, are the tool's failure.
    [255, 'cat: /etc/x: Permission denied (os error 13)', undefined],
    [255, 'mytool: Permission denied (publickey) while reading the key file', undefined],
    [255, 'error: Permission denied (', undefined],
    [255, 'echo: Host key verification failed. (not really)', undefined],
    [1, 'Host key verification failed.', undefined],
    [127, 'bash: line 1: wg: command not found', undefined],
  ] as const)('exit %i: %j -> %s', (code, stderr, type) => {
    expect(classifySshExit(code, stderr)).toBe(type);
  });
});

describe('a program the host does not have', () => {
  it.each([
    ['wg', 255, 'exec of "wg" failed: No such file or directory', true], // ip netns exec
    ['wg', 1, 'exec of "wg" failed: No such file or directory', true], // ip netns exec (iproute2 6.1)
    ['wg', 127, 'bash: line 1: wg: command not found', true],
    ['wg', 127, 'sh: 1: wg: not found', true], // dash
    ['wg', 127, 'zsh:1: command not found: wg', true],
    ['/opt/bin/wg', 127, 'bash: line 1: /opt/bin/wg: No such file or directory', true],
    ['wg', 127, 'setpriv: failed to execute wg: No such file or directory', true],
    ['wg', 127, 'env: \u2018wg\u2019: No such file or directory', true],
    ['wg', 1, 'bash: line 1: wg: command not found', false], // not the shell's exit for it
    ['sh', 127, 'sh: 1: wg: not found', false], // sh ran; what *it* ran is missing: sh's failure
    ['wg', 255, 'exec of "ip" failed: No such file or directory', false],
    ['wg', 255, 'Unable to access interface: Permission denied', false],
  ] as const)('%s exit %i %j -> %s', (command, code, stderr, missing) => {
    expect(isProgramMissing(command, code, stderr)).toBe(missing);
  });
});

describe('ssh client files on the worker', () => {
  it.each(['knownHostsFile', 'identityFile'] as const)(
    'a missing %s is a configuration error naming the field (before ssh runs), not a host key mismatch',
    async (field) => {
      const dir = mkdtempSync(path.join(tmpdir(), 'nb-ssh-'));
      try {
        const files = { identityFile: path.join(dir, 'id_ed25519'), knownHostsFile: path.join(dir, 'known_hosts') };
        for (const f of Object.values(files)) writeFileSync(f, '', { mode: 0o600 });
        rmSync(files[field]);
        const t = sshTransport(
          { ...spec, ...files, host: '127.0.0.1', port: 1, connectTimeoutSeconds: 1 },
          { controlDir: path.join(dir, 'ctl') },
        );
        const err = await t.run('true', []).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ToolError);
        expect((err as ToolError).type).toBe('InvalidInput');
        expect((err as ToolError).message).toContain(`host.${field} ${files[field]}`);
        expect(existsSync(path.join(dir, 'ctl'))).toBe(false); // no ssh (not even a master) was started
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('ssh host spec', () => {
  it('is part of HostSpec and TransportSpec, with defaults', () => {
    const parsed = HostSpec.parse({
      kind: 'ssh',
      host: 'node-1.example.org',
      identityFile: '/k/id',
      knownHostsFile: '/k/kh',
    });
    expect(parsed).toMatchObject({ port: 22, user: 'root', connectTimeoutSeconds: 10 });
    expect(transportFor(parsed).kind).toBe('ssh');
    expect(transportFor(parsed).label).toBe('ssh root@node-1.example.org:22');
  });

  it.each([
    [{ host: '-oProxyCommand=sh' }, 'host'],
    [{ host: 'a b' }, 'host'],
    [{ user: 'root;id' }, 'user'],
    [{ identityFile: '../id' }, 'identityFile'],
    [{ knownHostsFile: '/k/$(id)' }, 'knownHostsFile'],
    [{ port: 0 }, 'port'],
    [{ extra: 1 }, ''],
  ])('refuses %j (names the field)', (bad, field) => {
    const r = HostSpec.safeParse({
      kind: 'ssh',
      host: '192.0.2.10',
      identityFile: '/k/id',
      knownHostsFile: '/k/kh',
      ...bad,
    });
    expect(r.success).toBe(false);
    if (field) expect(r.error!.issues[0]!.path).toContain(field);
    expect(() =>
      sshTransport({ kind: 'ssh', host: '192.0.2.10', identityFile: '/k/id', knownHostsFile: '/k/kh', ...bad }),
    ).toThrow(/host\./);
  });
});
