// checkNodeDir on this machine's real filesystem (as root, like the worker on a
// lab node): a nodeDir another user could write into, replace or redirect is
// refused, naming the component; a root-owned tree passes.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ToolError } from '../../activities/host/exec.js';
import { checkNodeDir } from '../../activities/host/node-dir.js';
import { localTransport } from '../../activities/host/transport.js';

mkdirSync('/run/nodeboot', { recursive: true, mode: 0o755 });
const base = mkdtempSync('/run/nodeboot/nodedir-');
chmodSync(base, 0o755);
afterAll(() => rmSync(base, { recursive: true, force: true }));

const t = localTransport();
const refusal = (dir: string) =>
  checkNodeDir(t, dir).then(
    () => null,
    (e: unknown) => e as ToolError,
  );

describe('checkNodeDir', () => {
  it('passes a root-owned tree, and reports where the missing part starts', async () => {
    mkdirSync(path.join(base, 'ok'), { mode: 0o755 });
    const r = await checkNodeDir(t, path.join(base, 'ok', 'n1', 'state'));
    expect(r.existing.at(-1)).toBe(path.join(base, 'ok'));
    expect(r.missingFrom).toBe(path.join(base, 'ok', 'n1'));
  });

  it('refuses a component owned by another user', async () => {
    const dir = path.join(base, 'theirs');
    mkdirSync(dir, { mode: 0o755 });
    chownSync(dir, 61999, 61999);
    const err = await refusal(path.join(dir, 'n1'));
    expect(err).toBeInstanceOf(ToolError);
    expect(err!.type).toBe('UnsafePath');
    expect(err!.message).toContain(`${dir} is owned by uid 61999`);
  });

  it('refuses a group- or world-writable component, even root-owned', async () => {
    const dir = path.join(base, 'open');
    mkdirSync(dir);
    chmodSync(dir, 0o1777);
    const err = await refusal(path.join(dir, 'n1'));
    expect(err?.type).toBe('UnsafePath');
    expect(err!.message).toMatch(/writable by others/);
  });

  it('refuses a symlinked component (root would follow it elsewhere)', async () => {
    const target = path.join(base, 'target');
    mkdirSync(target, { mode: 0o755 });
    symlinkSync(target, path.join(base, 'link'));
    const err = await refusal(path.join(base, 'link', 'n1'));
    expect(err?.type).toBe('UnsafePath');
    expect(err!.message).toMatch(/link is a symbolic link/);
  });
});
