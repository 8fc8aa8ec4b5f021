/**
 * A two-namespace fixture for the SPIRE integration test: `<prefix>-srv` and
 * `<prefix>-agt` joined by a veth pair on 192.0.2.0/24 (TEST-NET-1), nothing
 * else. The lab harness (lab/lab.ts, WireGuard overlay) will replace it; until
 * then it keeps the SPIRE test independent of the overlay.
 */
import { randomBytes } from 'node:crypto';
import { runCommand } from '../../activities/host/exec.js';

export interface NetnsPair {
  prefix: string;
  serverNs: string;
  agentNs: string;
  serverIp: string;
  agentIp: string;
  /** Delete both namespaces (and with them the veth pair). Idempotent, never throws. */
  destroy(): Promise<void>;
}

export async function createNetnsPair(): Promise<NetnsPair> {
  const hex = randomBytes(3).toString('hex');
  const prefix = `nbt-${hex}`;
  const serverNs = `${prefix}-srv`;
  const agentNs = `${prefix}-agt`;
  const vethS = `nbt${hex}s`;
  const vethA = `nbt${hex}a`;
  const pair: NetnsPair = {
    prefix,
    serverNs,
    agentNs,
    serverIp: '192.0.2.1',
    agentIp: '192.0.2.2',
    async destroy() {
      for (const ns of [serverNs, agentNs]) await runCommand('ip', ['netns', 'del', ns], { allowNonZeroExit: true });
      await runCommand('ip', ['link', 'del', vethS], { allowNonZeroExit: true });
    },
  };
  try {
    const ip = (...args: string[]) => runCommand('ip', args);
    await ip('netns', 'add', serverNs);
    await ip('netns', 'add', agentNs);
    await ip('link', 'add', vethS, 'type', 'veth', 'peer', 'name', vethA);
    await ip('link', 'set', vethS, 'netns', serverNs);
    await ip('link', 'set', vethA, 'netns', agentNs);
    for (const [ns, dev, addr] of [
      [serverNs, vethS, `${pair.serverIp}/24`],
      [agentNs, vethA, `${pair.agentIp}/24`],
    ] as const) {
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'addr', 'add', addr, 'dev', dev);
      await ip('-n', ns, 'link', 'set', dev, 'up');
    }
    return pair;
  } catch (err) {
    await pair.destroy();
    throw err;
  }
}

/** Namespaces whose name starts with `prefix` (to prove cleanup). */
export async function listNetns(prefix: string): Promise<string[]> {
  const r = await runCommand('ip', ['-j', 'netns', 'list']);
  const list = (r.stdout.trim() ? (JSON.parse(r.stdout) as { name: string }[]) : []).map((n) => n.name);
  return list.filter((n) => n.startsWith(prefix));
}
