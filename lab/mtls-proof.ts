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
 * How a call ended. A refusal is named by the side that refused, so a proof
 * that expects one cannot pass on a call that never reached mTLS: `failed` is
 * a call that did not get that far (nothing listening, no SVID of its own).
 */
export type CallOutcome = 'accepted' | 'refused by server' | 'refused by client' | 'failed';

export interface CallResult {
  ok: boolean;
  outcome: CallOutcome;
  detail: string;
}

/**
 * The call, asked again while nothing listens at `connect` yet (ECONNREFUSED),
 * for up to 10 s: a server workload listens only once its own SVID fetch
 * succeeds (it asks every 500 ms, lab/demo-workload/), and provisioning
 * proves the SVID is issued to its uid, not that the program already serves. A
 * refusal by mTLS is never asked again.
 */
export async function callWorkload(...args: Parameters<typeof callOnce>): Promise<CallResult> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { retry, ...r } = await callOnce(...args);
    if (!retry || Date.now() > deadline) return r;
    await new Promise((res) => setTimeout(res, 250));
  }
}

/** The JSON line `demo-workload call` prints (lab/demo-workload/main.go). */
interface CallLine {
  client?: string;
  server?: string | null;
  reply?: { ok: boolean; refused?: string | null; reason?: string };
  stage?: 'dial' | 'handshake' | 'reply';
  code?: string;
  error?: string;
}

/** Read one call's output; `retry` when nothing listened there yet. */
export function readCall(stdout: string, stderr: string, exitCode: number): CallResult & { retry: boolean } {
  const line = stdout.trim().split('\n').at(-1) ?? '';
  const raw = line || stderr.trim().split('\n').at(-1) || `exit ${exitCode}`;
  let j: CallLine;
  try {
    j = JSON.parse(line) as CallLine;
  } catch {
    return { ok: false, outcome: 'failed', detail: raw, retry: false };
  }
  if (exitCode === 0 && j.reply?.ok) {
    return { ok: true, outcome: 'accepted', detail: `${j.client} ⇄ ${j.server}`, retry: false };
  }
  if (j.reply && !j.reply.ok) {
    const who = j.reply.refused ?? 'a caller without a SPIFFE ID';
    return {
      ok: false,
      outcome: 'refused by server',
      detail: `server refused ${who}: ${j.reply.reason ?? ''}`,
      retry: false,
    };
  }
  // TLS 1.3: a server that refuses the client's certificate says so with an
  // alert the client reads after its own handshake has finished.
  const outcome: CallOutcome =
    j.stage === 'handshake'
      ? 'refused by client'
      : j.stage === 'reply' && /remote error: tls/.test(j.error ?? '')
        ? 'refused by server'
        : 'failed';
  return {
    ok: false,
    outcome,
    detail: `${outcome === 'failed' ? `call failed at ${j.stage ?? 'start'}` : outcome}: ${j.error ?? raw}`,
    retry: j.code === 'ECONNREFUSED',
  };
}

async function callOnce(
  lab: Lab,
  rawInput: ProvisionInputJson,
  workload: string,
  uid: number,
  connect: string,
  expectServerId: string,
): Promise<CallResult & { retry: boolean }> {
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
  return readCall(r.stdout, r.stderr, r.exitCode);
}
