/**
 * The README's main job, end to end: `npm run demo -- --json` provisions the
 * lab nodes (demo-n1 by its machine certificate, x509pop; demo-n2 by its SSH host
 * certificate, sshpop), proves mTLS between
 * their workloads, and prints the commands to try next. Each printed command
 * is run here exactly as printed and must work; then `--down` leaves nothing.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { Lab } from '../../lab/lab.js';
import { REPO_ROOT } from '../fixtures/nodeboot-cli.js';
import { requireRealComponents } from '../helpers/prereqs.js';

// A newcomer's shell: none of our configuration, so the printed commands must carry what they need.
const env = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^(TEMPORAL_|NODEBOOT_|DATABASE_URL$)/.test(k)),
);
const run = (file: string, args: string[], timeout = 600_000) =>
  execa(file, args, { cwd: REPO_ROOT, env, extendEnv: false, reject: false, timeout });

describe('npm run demo', () => {
  afterAll(async () => {
    const down = await run('npm', ['run', '-s', 'demo', '--', '--down'], 180_000);
    expect(down.exitCode, String(down.stderr)).toBe(0);
  });

  it('provisions the nodes, proves mTLS, and every command it prints next works as printed', async () => {
    requireRealComponents(['temporal', 'spire-server', 'spire-agent']);
    const demo = await run('npm', ['run', '-s', 'demo', '--', '--json']);
    expect(demo.exitCode, String(demo.stderr).slice(-3000)).toBe(0);
    const out = JSON.parse(String(demo.stdout)) as {
      receipts: { nodeId: string; attestationType: string; canReattest: boolean }[];
      proof: { passed: boolean };
      health: { nodeId: string; status: string; links: { link: string; status: string }[] }[];
      next: string[];
    };
    expect(out.proof.passed).toBe(true);
    // One checkNode result per node, every link ok right after provisioning.
    expect(out.health.map((h) => [h.nodeId, h.status])).toEqual([
      ['demo-n1', 'ok'],
      ['demo-n2', 'ok'],
    ]);
    for (const h of out.health)
      expect(
        h.links.filter((l) => l.status !== 'ok'),
        h.nodeId,
      ).toEqual([]);
    expect(out.receipts.find((r) => r.nodeId === 'demo-n1')).toMatchObject({
      attestationType: 'x509pop',
      canReattest: true,
    });
    expect(out.receipts.find((r) => r.nodeId === 'demo-n2')).toMatchObject({
      attestationType: 'sshpop',
      canReattest: true,
    });
    // As SPIRE's own CLI shows it.
    const state = JSON.parse(readFileSync(path.join(REPO_ROOT, '.demo/state.json'), 'utf8')) as { labPrefix: string };
    const list = await run(
      path.join(REPO_ROOT, '.tools/bin/spire-server'),
      ['agent', 'list', '-socketPath', Lab.load(state.labPrefix).spire!.socketPath],
      30_000,
    );
    expect(list.exitCode, String(list.stderr)).toBe(0);
    for (const type of ['x509pop', 'sshpop'])
      expect(String(list.stdout)).toMatch(
        new RegExp(`Attestation type\\s*:\\s*${type}[\\s\\S]*?Can re-attest\\s*:\\s*true`),
      );

    const exports = out.next.filter((l) => l.startsWith('export '));
    const urls = out.next.filter((l) => /^https?:\/\//.test(l));
    const commands = out.next.filter((l) => !exports.includes(l) && !urls.includes(l));
    expect(commands.length).toBeGreaterThanOrEqual(2);
    for (const line of commands) {
      const r = await run('bash', ['-c', [...exports, line].join('\n')], 60_000);
      expect(r.exitCode, `${line}\n${String(r.stdout)}\n${String(r.stderr)}`).toBe(0);
      expect(String(r.stdout), line).toContain('demo-n1');
    }
    expect(urls).toHaveLength(1);
    const page = await fetch(urls[0]!);
    expect(page.status, urls[0]).toBe(200);
  });
});
