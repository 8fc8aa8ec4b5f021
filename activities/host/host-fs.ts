/**
 * Root's file operations on a node that shares this process's filesystem and
 * pid namespace (the `local` and `netns` transports: a network namespace
 * changes neither), done in this process instead of by a `cat`, `stat`,
 * `mkdir` or `install` child each. A child costs a fork of the worker (its
 * page tables grow with its RSS) and an exec: ~5-10 ms of CPU at the worker's
 * size, dozens of times per node (bench/results, P2).
 *
 * Only for what those commands did as root, on paths root already worked on
 * (nodeDir is root-only: host/node-dir.ts; /proc). Anything on a path another
 * uid can write still runs as that uid (host/run-as.ts): this process cannot
 * drop its rights for one call. The ssh transport has no `HostFs`; its callers
 * run the same commands remotely (host/files.ts).
 */
import { constants, promises as fs, type Stats } from 'node:fs';
import { ToolError } from './exec.js';

export interface HostFs {
  /** The file's text (UTF-8, one final newline dropped, as `cat` output is read), or `undefined` when unreadable. */
  readFile(file: string, opts?: { from?: number; maxBytes?: number }): Promise<string | undefined>;
  /** `lstat` (a link is reported as a link), or `undefined` when the path does not exist. */
  lstat(file: string): Promise<Stats | undefined>;
  /** `mkdir -p`: missing directories made with default modes, existing ones left alone. */
  mkdirs(dir: string): Promise<void>;
  /** `install -d -m <mode> [-o uid -g gid]` of a directory whose parent exists: made when missing, then given the mode and owner. */
  installDir(dir: string, mode: number, owner?: { uid: number; gid: number }): Promise<void>;
  /** Write a file under a temp name (0600 when made), give it `mode`, rename it into place. */
  writeFile(file: string, content: string, mode: number): Promise<void>;
  /** `rm -f` of one file. */
  removeFile(file: string): Promise<void>;
}

/**
 * The in-process HostFs. `reachable` runs before every operation and throws when
 * the node is gone (a deleted network namespace), as the commands' transport would.
 */
export function hostFs(label: string, reachable: () => void = () => undefined): HostFs {
  const failed = (op: string, file: string, err: unknown): ToolError => {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return new ToolError('ToolFailed', `${op} ${file} on ${label} failed: ${code}`, op);
  };
  // No such path: nothing there, or a component on the way is not a directory.
  const absent = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

  return {
    async readFile(file, opts = {}) {
      reachable();
      const max = opts.maxBytes ?? 4 * 1024 * 1024;
      let h: fs.FileHandle | undefined;
      try {
        // Non-blocking: a FIFO in the file's place must not hold a thread of the pool forever.
        h = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
        // /proc files report size 0: read until EOF, up to the cap.
        const chunks: Buffer[] = [];
        let pos = opts.from ?? 0;
        let total = 0;
        for (;;) {
          const buf = Buffer.alloc(Math.min(64 * 1024, max + 1 - total));
          const { bytesRead } = await h.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) break;
          chunks.push(buf.subarray(0, bytesRead));
          pos += bytesRead;
          total += bytesRead;
          if (total > max)
            throw new ToolError('ToolFailed', `${file} on ${label} holds more than ${max} bytes`, 'read');
        }
        return Buffer.concat(chunks)
          .toString('utf8')
          .replace(/\r?\n$/, '');
      } catch (err) {
        if (err instanceof ToolError) throw err;
        return undefined;
      } finally {
        await h?.close();
      }
    },
    async lstat(file) {
      reachable();
      try {
        return await fs.lstat(file);
      } catch (err) {
        if (absent(err)) return undefined;
        throw failed('stat', file, err);
      }
    },
    async mkdirs(dir) {
      reachable();
      try {
        await fs.mkdir(dir, { recursive: true });
      } catch (err) {
        throw failed('mkdir', dir, err);
      }
    },
    async installDir(dir, mode, owner) {
      reachable();
      try {
        await fs.mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
        });
        if (!(await fs.stat(dir)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
        // Like install: the owner first, then the mode (chown may clear set-id bits).
        if (owner) await fs.chown(dir, owner.uid, owner.gid);
        await fs.chmod(dir, mode);
      } catch (err) {
        throw failed('install', dir, err);
      }
    },
    async writeFile(file, content, mode) {
      reachable();
      const tmp = `${file}.tmp`;
      try {
        await fs.writeFile(tmp, content, { mode: 0o600 });
        await fs.chmod(tmp, mode);
        await fs.rename(tmp, file);
      } catch (err) {
        throw failed('write', file, err);
      }
    },
    async removeFile(file) {
      reachable();
      try {
        await fs.rm(file, { force: true });
      } catch (err) {
        throw failed('rm', file, err);
      }
    },
  };
}
