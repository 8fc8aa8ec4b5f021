/**
 * Run the demo workload's `call` mode as a workload's uid on its node: an mTLS
 * call across the overlay with the caller's own SVID, checking the server's
 * SPIFFE ID. Returns whether the exchange was accepted and what was said.
 */
import { TOOLS_BIN } from '../activities/host/exec.js';
import type { ProvisionInputJson } from '../common/input.js';
import { ProvisionInput } from '../common/input.js';
import { nodePaths } from '../activities/paths.js';
import type { Lab } from './lab.js';

export async function callWorkload(
  lab: Lab,
  rawInput: ProvisionInputJson,
  workload: string,
  uid: number,
  connect: string,
  expectServerId: string,
): Promise<{ ok: boolean; detail: string }> {
  const input = ProvisionInput.parse(rawInput);
  const p = nodePaths(input);
  const t = lab.nodeTransport(
    lab.nodes.find((n) => n.netns === (input.host.kind === 'netns' ? input.host.netns : ''))!,
  );
  const r = await t.run(
    'setpriv',
    [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      '--',
      process.execPath,
      lab.demoWorkload,
      'call',
      '--spire-agent',
      `${TOOLS_BIN}/spire-agent`,
      '--socket',
      p.agentSocket,
      '--dir',
      `${p.workloadDir(workload)}/call`,
      '--connect',
      connect,
      '--expect',
      expectServerId,
    ],
    { allowNonZeroExit: true, timeoutMs: 60_000 },
  );
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  let detail = line || r.stderr.trim().split('\n').at(-1) || `exit ${r.exitCode}`;
  try {
    const j = JSON.parse(line) as {
      client?: string;
      server?: string;
      reply?: { ok: boolean; refused?: string; reason?: string };
      error?: string;
    };
    detail = j.error
      ? `client refused: ${j.error}`
      : j.reply?.ok
        ? `${j.client} ⇄ ${j.server}`
        : `server refused ${j.reply?.refused ?? 'caller'}: ${j.reply?.reason ?? ''}`;
  } catch {
    /* keep the raw line */
  }
  return { ok: r.exitCode === 0, detail };
}
