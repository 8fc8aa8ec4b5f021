/**
 * The identity links of a health check (steps 4-6).
 *
 * - agent (step 4): the process in the node's pidfile is alive and answers its
 *   healthcheck; the SVID it stored (`agent-data.json`) is for one of this
 *   node's agent IDs (else it attested as someone else: a security finding),
 *   the server lists that agent and has not banned it (banned: security), and
 *   the SVID does not expire within the threshold.
 * - entry:<workload> (step 5): every entry the ledger recorded is still on the
 *   server with the recorded parent and the input's selectors (changed:
 *   security, the identity would go to another agent or process).
 * - workload:<workload> (step 6): the process in its pidfile is alive, and the
 *   SVID the agent issues its uid (fetched as that uid, like step 6 does) is
 *   for its SPIFFE ID, chains to the server's current bundle and does not
 *   expire within the threshold.
 */
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import type { HealthThresholds, LinkCheck } from '../../common/health.js';
import type { ProvisionInput } from '../../common/input.js';
import { nodePaths } from '../paths.js';
import { agentHealthcheck, fetchX509Svid } from '../spire/agent-cli.js';
import { nodeAliasId, spiffeIdOf } from '../../common/ids.js';
import { attestorOf } from '../spire/attestors/index.js';
import { readNodeFile } from '../host/files.js';
import { daemonAlive, readProcessRef } from '../host/process.js';
import * as server from '../spire/server-cli.js';
import { verifySvid } from '../workloads/svid.js';
import { expiryStatus, guarded, link, secondsUntil } from './links.js';
import type { CheckDeps } from './overlay.js';
import { attestorCertExpiry } from './attestor-cert.js';

/**
 * How long the check waits for the agent to issue a workload its SVID: longer
 * than the agent's entry sync (5 s), so an entry made again a moment ago (its
 * old SVID dropped, the new one not issued yet) is not taken for a broken workload.
 */
const FETCH_WAIT_MS = 12_000;

/** The agent's stored SVID: its SPIFFE ID and expiry, or undefined when there is none. */
async function storedAgentSvid(
  t: ReturnType<CheckDeps['transport']>,
  dataDir: string,
): Promise<{ id: string; notAfter: string } | undefined> {
  const text = await readNodeFile(t, `${dataDir}/agent-data.json`);
  if (!text) return undefined;
  try {
    const svid = (JSON.parse(text) as { svid?: unknown }).svid;
    if (!Array.isArray(svid) || typeof svid[0] !== 'string') return undefined;
    const cert = new X509Certificate(Buffer.from(svid[0], 'base64'));
    const id = /URI:(spiffe:\/\/[^,\s]+)/.exec(cert.subjectAltName ?? '')?.[1];
    return id ? { id, notAfter: new Date(cert.validTo).toISOString() } : undefined;
  } catch {
    return undefined;
  }
}

export async function spireLinks(deps: CheckDeps, input: ProvisionInput, th: HealthThresholds): Promise<LinkCheck[]> {
  const srv: server.SpireServerTarget = {
    transport: deps.transport(input.spire.serverHost),
    socketPath: input.spire.serverSocketPath,
    signal: deps.signal(),
  };
  const links: LinkCheck[] = [
    await guarded('agent', undefined, 'startSpireAgent', () => agentLink(deps, input, th, srv)),
  ];
  const recorded = await deps.ledger.listEntries(input.nodeId);
  for (const w of input.workloads) {
    links.push(
      await guarded('entry', w.name, 'registerEntries', async () => {
        const rec = recorded.find((e) => e.workload === w.name);
        if (!rec) return link('entry', w.name, 'registerEntries', 'broken', `the ledger has no entry for ${w.name}`);
        const ev: Record<string, unknown> = { entryId: rec.entryId, spiffeId: rec.spiffeId, parentId: rec.parentId };
        const entry = await server.entryGet(srv, rec.entryId);
        if (!entry)
          return link('entry', w.name, 'registerEntries', 'broken', `entry ${rec.entryId} is gone from the server`, ev);
        const want = [`unix:uid:${w.uid}`, ...w.selectors].sort();
        const have = [...entry.selectors].sort();
        ev.selectors = have;
        if (entry.parentId !== rec.parentId || entry.spiffeId !== rec.spiffeId) {
          return link(
            'entry',
            w.name,
            'registerEntries',
            'broken',
            `entry ${rec.entryId} now names ${entry.spiffeId} under ${entry.parentId}`,
            { ...ev, serverParentId: entry.parentId },
            true,
          );
        }
        if (JSON.stringify(want) !== JSON.stringify(have)) {
          return link(
            'entry',
            w.name,
            'registerEntries',
            'broken',
            `entry ${rec.entryId} selectors changed`,
            { ...ev, expectedSelectors: want },
            true,
          );
        }
        return link('entry', w.name, 'registerEntries', 'ok', `entry ${rec.entryId} in place`, ev);
      }),
    );
  }
  const bundle = await server.bundleShow(srv).catch(() => undefined);
  // No agent, no SVIDs: not worth waiting out a fetch per workload (step 6 runs after step 4 anyway).
  const agentDown = links[0]!.status === 'broken';
  for (const w of input.workloads)
    links.push(
      await guarded('workload', w.name, 'launchWorkloads', () => workloadLink(deps, input, th, w, bundle, agentDown)),
    );
  return links;
}

async function agentLink(
  deps: CheckDeps,
  input: ProvisionInput,
  th: HealthThresholds,
  srv: server.SpireServerTarget,
): Promise<LinkCheck> {
  const t = deps.transport(input.host);
  const p = nodePaths(input);
  const proc = await readProcessRef(t, p.agentPid);
  // The attestor certificate's expiry is evidence (health CLI, gauges), not a verdict: a live agent does not need it.
  const ev: Record<string, unknown> = { pid: proc?.pid ?? null, ...(await attestorCertExpiry(t, input)) };
  // `restart`: step 4 must start this agent afresh (its undo first: stop, evict, forget the alias):
  // a join-token agent restarted on its stored SVID would come back as the old ID, not the new token's.
  if (!proc || !(await daemonAlive(t, proc, 'spire-agent')))
    return link('agent', undefined, 'startSpireAgent', 'broken', 'the agent process is not running', {
      ...ev,
      restart: true,
    });
  if (!(await agentHealthcheck({ transport: t, socketPath: p.agentSocket, signal: deps.signal() }))) {
    return link(
      'agent',
      undefined,
      'startSpireAgent',
      'broken',
      `the agent (pid ${proc.pid}) does not answer its healthcheck`,
      { ...ev, restart: true },
    );
  }
  const stored = await storedAgentSvid(t, p.agentDataDir);
  if (!stored) {
    return link(
      'agent',
      undefined,
      'startSpireAgent',
      'broken',
      `the agent (pid ${proc.pid}) has no stored SVID (its data dir was wiped?): it cannot restart`,
      { ...ev, restart: true },
    );
  }
  // This node's agent IDs: the ones its alias entries name (join_token) and the one its attestor derives.
  const aliases = await server.entryShow(srv, { spiffeId: nodeAliasId(input) });
  const ours = new Set(
    aliases.flatMap((e) =>
      e.selectors.filter((s) => s.startsWith('spiffe_id:')).map((s) => s.slice('spiffe_id:'.length)),
    ),
  );
  const derived = attestorOf(input.spire.nodeAttestor.type)?.agentId(input);
  if (derived !== undefined) ours.add(derived);
  const left = secondsUntil(stored.notAfter);
  Object.assign(ev, { svidNotAfter: stored.notAfter, svidSecondsLeft: left, minSeconds: th.agentSvidMinSeconds });
  if (!ours.has(stored.id)) {
    return link(
      'agent',
      undefined,
      'startSpireAgent',
      'broken',
      `the agent (pid ${proc.pid}) is attested as another node, not under ${nodeAliasId(input)}`,
      ev,
      true,
    );
  }
  const listed = (await server.agentList(srv)).find((a) => a.spiffeId === stored.id);
  if (!listed)
    return link('agent', undefined, 'startSpireAgent', 'broken', 'the server no longer lists the agent (evicted?)', {
      ...ev,
      restart: true,
    });
  if (listed.banned)
    return link('agent', undefined, 'startSpireAgent', 'broken', 'the server has banned the agent', ev, true);
  const status = expiryStatus(left, th.agentSvidMinSeconds);
  return link(
    'agent',
    undefined,
    'startSpireAgent',
    status,
    status === 'ok' ? `agent pid ${proc.pid} healthy, SVID valid ${left} s` : `the agent's SVID expires in ${left} s`,
    ev,
  );
}

async function workloadLink(
  deps: CheckDeps,
  input: ProvisionInput,
  th: HealthThresholds,
  w: ProvisionInput['workloads'][number],
  bundle: string | undefined,
  agentDown: boolean,
): Promise<LinkCheck> {
  const t = deps.transport(input.host);
  const p = nodePaths(input);
  const spiffeId = spiffeIdOf(input, w);
  const program = path.basename((w.command ?? [process.execPath])[0]!);
  const proc = await readProcessRef(t, p.workloadPid(w.name));
  const ev: Record<string, unknown> = { pid: proc?.pid ?? null, spiffeId };
  if (!proc || !(await daemonAlive(t, proc, program)))
    return link('workload', w.name, 'launchWorkloads', 'broken', `workload ${w.name} is not running`, ev);
  if (!bundle)
    return link('workload', w.name, 'launchWorkloads', 'broken', 'not checked: the SPIRE server gave no bundle', ev);
  if (agentDown)
    return link('workload', w.name, 'launchWorkloads', 'broken', 'SVID not checked: the agent is broken', ev);
  // As the workload's uid, in its own dir (it may have planted links there: made and read as that uid).
  const verifyDir = `${p.workloadDir(w.name)}/verify`;
  const svid = await fetchX509Svid(
    { transport: t, socketPath: p.agentSocket, signal: deps.signal() },
    { writeDir: verifyDir, fresh: true, uid: w.uid, gid: w.uid, waitMs: FETCH_WAIT_MS },
  );
  const check = await verifySvid(svid.svidPem, bundle, { spiffeId, ttlSeconds: w.x509TtlSeconds });
  const left = secondsUntil(check.notAfter);
  Object.assign(ev, {
    svidSerial: check.serial,
    svidNotAfter: check.notAfter,
    svidSecondsLeft: left,
    minSeconds: th.workloadSvidMinSeconds,
  });
  const status = expiryStatus(left, th.workloadSvidMinSeconds);
  return link(
    'workload',
    w.name,
    'launchWorkloads',
    status,
    status === 'ok' ? `pid ${proc.pid}, SVID chains to the bundle, valid ${left} s` : `SVID expires in ${left} s`,
    ev,
  );
}
