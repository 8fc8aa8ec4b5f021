/**
 * Root's file operations in the worker's own process (host/host-fs.ts) for the
 * transports that share its filesystem and pid namespace: what each does, that
 * the file and /proc helpers (host/files.ts, host/process.ts) use it instead of
 * starting a program, and that a netns that is gone is still unreachable.
 */
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commandsStarted, type ToolError } from '../../activities/host/exec.js';
import { checkNodeDir } from '../../activities/host/node-dir.js';
import { ensureDir, ensureParent, readNodeFile, removeNodeFile, writeNodeFile } from '../../activities/host/files.js';
import { hostFs } from '../../activities/host/host-fs.js';
import { processArgv, processStat } from '../../activities/host/process.js';
import { localTransport, netnsTransport, type HostTransport } from '../../activities/host/transport.js';

const base = mkdtempSync(path.join(tmpdir(), 'nb-hostfs-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const started = () => Object.values(commandsStarted).reduce((a, n) => a + n, 0);

describe('hostFs', () => {
  const fs = hostFs('test host');

  it('makes directories like mkdir -p and install -d', async () => {
    await fs.mkdirs(path.join(base, 'a', 'b'));
    await fs.mkdirs(path.join(base, 'a', 'b'));
    await fs.installDir(path.join(base, 'a', 'b', 'c'), 0o750);
    expect(statSync(path.join(base, 'a', 'b', 'c')).mode & 0o7777).toBe(0o750);
    // An existing leaf gets the mode (and owner) too.
    await fs.installDir(path.join(base, 'a', 'b', 'c'), 0o700, { uid: process.getuid!(), gid: process.getgid!() });
    expect(statSync(path.join(base, 'a', 'b', 'c')).mode & 0o7777).toBe(0o700);
    await expect(fs.installDir(path.join(base, 'none', 'x'), 0o700)).rejects.toMatchObject({ type: 'ToolFailed' });
  });

  it('writes through a temp name with the mode, reads like cat (from an offset, capped)', async () => {
    const f = path.join(base, 'f.txt');
    await fs.writeFile(f, 'hello\n', 0o644);
    expect(readFileSync(f, 'utf8')).toBe('hello\n');
    expect(statSync(f).mode & 0o777).toBe(0o644);
    expect(readdirSync(base)).not.toContain('f.txt.tmp');
    expect(await fs.readFile(f)).toBe('hello');
    expect(await fs.readFile(f, { from: 2 })).toBe('llo');
    expect(await fs.readFile(path.join(base, 'missing'))).toBeUndefined();
    await expect(fs.readFile('/dev/zero', { maxBytes: 16 })).rejects.toMatchObject({ type: 'ToolFailed' });
    await fs.removeFile(f);
    await fs.removeFile(f);
    expect(await fs.lstat(f)).toBeUndefined();
  });

  it('does not hang on a FIFO and reports a link as a link', async () => {
    const fifo = path.join(base, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(await fs.readFile(fifo)).toBeFalsy();
    symlinkSync('/etc', path.join(base, 'link'));
    expect((await fs.lstat(path.join(base, 'link')))?.isSymbolicLink()).toBe(true);
  });

  it('reads /proc in process: stat and cmdline of this process', async () => {
    expect((await fs.readFile(`/proc/${process.pid}/stat`))?.startsWith(`${process.pid} (`)).toBe(true);
  });
});

describe('transports that share our filesystem and pid namespace', () => {
  it('read, write and make files and read /proc without starting a program', async () => {
    const t = localTransport();
    const before = started();
    const dir = path.join(base, 'node', 'data');
    await ensureDir(t, dir, 0o711);
    await ensureParent(t, path.join(base, 'node', 'run', 'x.pid'));
    await writeNodeFile(t, path.join(dir, 'x'), 'content\n', 0o600);
    expect(await readNodeFile(t, path.join(dir, 'x'))).toBe('content');
    await removeNodeFile(t, path.join(dir, 'x'));
    const stat = await processStat(t, process.pid);
    const argv = await processArgv(t, process.pid);
    expect(started()).toBe(before);
    expect(lstatSync(dir).mode & 0o777).toBe(0o711);
    expect(lstatSync(path.join(base, 'node', 'run')).isDirectory()).toBe(true);
    expect(stat?.startTime).toMatch(/^\d+$/);
    expect(argv!.length).toBeGreaterThan(0);
  });

  it('checks nodeDir in process with the verdicts of the stat script, without starting a program', async () => {
    const inProcess = localTransport();
    const byCommand = { ...localTransport(), fs: undefined };
    const verdict = (t: HostTransport, dir: string) =>
      checkNodeDir(t, dir).then(
        (r) => r,
        (err: ToolError) => `${err.type}: ${err.message}`,
      );
    const symlink = path.join(base, 'to-etc');
    for (const dir of ['/usr/share/nb-none/x', '/etc/hostname/x', base, symlink, '/proc/self/nb']) {
      const before = started();
      const got = await verdict(inProcess, dir);
      expect(started()).toBe(before);
      expect(got).toEqual(await verdict(byCommand, dir));
    }
    expect(await verdict(inProcess, '/usr/share/nb-none/x')).toEqual({
      existing: ['/usr', '/usr/share'],
      missingFrom: '/usr/share/nb-none',
    });
    expect(await verdict(inProcess, base)).toMatch(/^UnsafePath: .*\/tmp is writable by others/);
  });

  it('a network namespace that is gone is unreachable for file operations too', async () => {
    const t = netnsTransport('nb-gone-hostfs');
    await expect(readNodeFile(t, '/etc/hostname')).rejects.toMatchObject({ type: 'HostUnreachable' });
    await expect(processStat(t, process.pid)).rejects.toMatchObject({ type: 'HostUnreachable' });
  });
});
