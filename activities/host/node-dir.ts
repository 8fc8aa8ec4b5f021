/**
 * Is a node's `nodeDir` safe for root to work in? Root creates the node's key,
 * the agent's data and the workloads' directories there, and removes them on
 * undo, so nobody but the account that runs our commands may be able to put
 * anything into that path first: no component may be a symlink, owned by
 * another user, or writable by group or others. The schema already refuses
 * system and world-writable trees by name (common/validate.ts); this checks the
 * node itself, read-only, before any step changes it.
 */
import { parseName, SafePath } from '../../common/names.js';
import { ToolError } from './exec.js';
import type { HostFs } from './host-fs.js';
import type { HostTransport } from './transport.js';

export interface NodeDirCheck {
  /** The components of nodeDir that exist, checked. */
  existing: string[];
  /** The first component that does not exist yet (created later by the steps, as our user). */
  missingFrom: string | null;
}

/** Every ancestor of `dir` and `dir` itself: "/a", "/a/b", "/a/b/c". */
export function componentsOf(dir: string): string[] {
  const parts = dir.split('/').filter(Boolean);
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join('/')}`);
}

/**
 * Check nodeDir on the node; throws a non-retryable `UnsafePath` naming the
 * component and what is wrong with it.
 */
export async function checkNodeDir(
  t: HostTransport,
  nodeDir: string,
  opts: { signal?: AbortSignal } = {},
): Promise<NodeDirCheck> {
  const dir = parseName(SafePath, 'nodeDir', nodeDir);
  const paths = componentsOf(dir);
  const { us, lines } = t.fs ? await statInProcess(t.fs, paths) : await statByCommand(t, paths, opts.signal);
  const existing: string[] = [];
  for (const line of lines) {
    const { path: p, uid, mode, kind } = line;
    const bits = parseInt(mode, 8);
    const why =
      kind === 'symbolic link'
        ? 'is a symbolic link (name the real directory)'
        : kind !== 'directory'
          ? `is a ${kind}, not a directory`
          : Number(uid) !== 0 && Number(uid) !== us
            ? `is owned by uid ${uid}, not by root`
            : bits & 0o022
              ? `is writable by ${bits & 0o002 ? 'others' : 'its group'} (mode ${mode})`
              : null;
    if (why)
      throw new ToolError(
        'UnsafePath',
        `nodeDir ${dir}: ${p} ${why}: another user could plant files or links where root works`,
        'nodedir',
      );
    existing.push(p);
  }
  return { existing, missingFrom: paths[existing.length] ?? null };
}

interface ComponentStat {
  path: string;
  uid: string;
  /** Octal permission bits, as `stat -c %a` prints them. */
  mode: string;
  /** As `stat -c %F` names it ("directory", "symbolic link", ...). */
  kind: string;
}

/** One command: our uid, then "path|uid|octal mode|type" for each component that exists. */
async function statByCommand(
  t: HostTransport,
  paths: string[],
  signal?: AbortSignal,
): Promise<{ us: number; lines: ComponentStat[] }> {
  const r = await t.run(
    'sh',
    [
      '-c',
      'id -u; for p in "$@"; do [ -e "$p" ] || [ -L "$p" ] || break; stat -c "%n|%u|%a|%F" -- "$p"; done',
      'nodedir',
      ...paths,
    ],
    { signal },
  );
  const [uidLine, ...lines] = r.stdout.split('\n').filter(Boolean);
  return {
    us: Number(uidLine),
    lines: lines.map((line) => {
      const [p, uid, mode, ...type] = line.split('|');
      return { path: p!, uid: uid!, mode: mode!, kind: type.join('|') };
    }),
  };
}

/** The same, read in this process (a node that shares our filesystem; our commands run as our uid). */
async function statInProcess(fs: HostFs, paths: string[]): Promise<{ us: number; lines: ComponentStat[] }> {
  const lines: ComponentStat[] = [];
  for (const p of paths) {
    const st = await fs.lstat(p);
    if (!st) break;
    const kind = st.isSymbolicLink()
      ? 'symbolic link'
      : st.isDirectory()
        ? 'directory'
        : st.isFile()
          ? 'regular file'
          : st.isSocket()
            ? 'socket'
            : st.isFIFO()
              ? 'fifo'
              : 'special file';
    lines.push({ path: p, uid: String(st.uid), mode: (st.mode & 0o7777).toString(8), kind });
  }
  return { us: process.geteuid?.() ?? 0, lines };
}
