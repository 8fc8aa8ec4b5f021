/**
 * Run the demo workload's `call` mode as a workload's uid on its node: an mTLS
 * call across the overlay with the caller's own SVID, checking the server's
 * SPIFFE ID. Returns whether the exchange was accepted and what was said.
 */
import type { ProvisionInputJson } from '../common/input.js';
import { ProvisionInput } from '../common/input.js';
import { nodePaths } from '../activities/paths.js';
import type { Lab } from './lab.js';

/**
 * The call, asked again while nothing listens at `connect` yet (ECONNREFUSED),
 * for up to 10 s: a server workload listens only once its own SVID fetch
 * succeeds (it asks every 500 ms, lab/demo-workload/), and provisioning
 * proves the SVID is issued to its uid, not that the program already serves. A
 * refusal by mTLS is never asked again.
 */
export async function callWorkload(...args: Parameters<typeof callOnce>): Promise<{ ok: boolean; detail: string }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await callOnce(...args);
    if (r.ok || !/ECONNREFUSED/.test(r.detail) || Date.now() > deadline) return r;
    await new Promise((res) => setTimeout(res, 250));
  }
}

async function callOnce(
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
      lab.demoWorkload,
      'call',
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
