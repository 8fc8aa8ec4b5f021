/**
 * Bootstrap steps 4 and 5: the SPIRE agent (node attestation over the overlay)
 * and the node's workload registration entries.
 *
 * How the node attests is its attestor's business (attestors/): the node's
 * credential is checked before the agent starts, the agent must come up as
 * exactly the agent ID the attestor expects, and the node alias is made from
 * what the server attested. A join token is minted and consumed here: it goes
 * from the server's stdout to the agent's stdin and nowhere else. The agent's
 * own SPIFFE ID embeds it, so evidence carries only a digest of agent IDs; the
 * stable handle for the node is the alias ID spiffe://<td>/node/<nodeId>, the
 * parent of every workload entry.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { nodeAliasId, spiffeIdOf } from '../../common/ids.js';
import type { ProvisionInput } from '../../common/input.js';
import type { StepDeps } from '../deps.js';
import { ToolError } from '../host/exec.js';
import { heartbeat } from '../host/heartbeat.js';
import type { HostTransport } from '../host/transport.js';
import { fsKeyOf, nodePaths } from '../paths.js';
import type { AgentEvidence, EntriesEvidence, StepRequest, UndoRequest, UndoResult } from '../types.js';
import { agentHealthcheck, startAgent, stopAgent } from './agent-cli.js';
import { attestorOf, type AttestorContext, type AttestorType, type NodeAttestorModule } from './attestors/index.js';
import { readNodeFile } from '../host/files.js';
import { daemonAlive, readProcessRef } from '../host/process.js';
import * as server from './server-cli.js';

const digest = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);

/**
 * The SPIFFE ID of the agent whose data dir is `dataDir`: the URI SAN of the
 * SVID it stored after attesting (`agent-data.json`: PEM certificates, base64;
 * public data only). Undefined when it has not attested (or the file is unreadable).
 */
export async function runningAgentId(t: HostTransport, dataDir: string): Promise<string | undefined> {
  const text = await readNodeFile(t, `${dataDir}/agent-data.json`);
  if (!text) return undefined;
  try {
    const svid = (JSON.parse(text) as { svid?: unknown }).svid;
    if (!Array.isArray(svid) || typeof svid[0] !== 'string') return undefined;
    const san = new X509Certificate(Buffer.from(svid[0], 'base64')).subjectAltName ?? '';
    return /URI:(spiffe:\/\/[^,\s]+)/.exec(san)?.[1];
  } catch {
    return undefined;
  }
}

/** How long step 4 waits for an agent found running to show who it is (attest) before giving up on it. */
const IDENTIFY_WAIT_MS = 15_000;

/** The input's attestor, or InvalidInput (validation refuses undrivable types up front: this is the backstop). */
function attestorFor(input: ProvisionInput): NodeAttestorModule {
  const type: AttestorType = input.spire.nodeAttestor.type;
  const a = attestorOf(type);
  if (!a)
    throw new ToolError(
      'InvalidInput',
      `spire.nodeAttestor.type "${type}" is accepted in input but this worker does not drive it`,
      'spire-agent',
    );
  return a as NodeAttestorModule;
}

/** An agent ID as messages and evidence may show it: join-token IDs embed the token. */
const shownId = (id: string) => (/\/spire\/agent\/join_token\//.test(id) ? `agent ${digest(id)}` : id);

export function createSpireSteps(deps: StepDeps) {
  const serverOf = (input: ProvisionInput): server.SpireServerTarget => ({
    transport: deps.transport(input.spire.serverHost),
    socketPath: input.spire.serverSocketPath,
    signal: deps.signal(),
  });

  /**
   * Agents the server has attested for this node: those its alias entries name
   * (`spiffe_id:` selectors: join_token) and the one its attestor derives
   * (x509pop: from the CN). `aliasedIds` also holds those not attested (yet):
   * a token minted but not used, an agent evicted.
   */
  async function nodeAgentIds(
    input: ProvisionInput,
  ): Promise<{ aliasEntryIds: string[]; agents: server.SpireAgent[]; agentIds: string[]; aliasedIds: Set<string> }> {
    const srv = serverOf(input);
    const aliases = await server.entryShow(srv, { spiffeId: nodeAliasId(input) });
    const candidates = new Set(
      aliases.flatMap((e) =>
        e.selectors.filter((s) => s.startsWith('spiffe_id:')).map((s) => s.slice('spiffe_id:'.length)),
      ),
    );
    const derived = attestorOf(input.spire.nodeAttestor.type)?.agentId(input);
    if (derived !== undefined) candidates.add(derived);
    const agents = (await server.agentList(srv)).filter((a) => candidates.has(a.spiffeId));
    return {
      aliasEntryIds: aliases.map((e) => e.id),
      agents,
      agentIds: agents.map((a) => a.spiffeId),
      aliasedIds: candidates,
    };
  }

  /**
   * After attestation: the agent holds exactly the ID its attestor expects
   * (else it attested as someone else: a security failure, and the agent is
   * stopped), the node alias exists, and the server's record of the agent.
   */
  async function settleAttestation(
    ctx: AttestorContext,
    attestor: NodeAttestorModule,
    expectedId: string,
    pidFile: string,
  ): Promise<server.SpireAgent | undefined> {
    const p = nodePaths(ctx.input);
    // Healthy means attested; the stored SVID may trail the health check by a moment.
    const deadline = Date.now() + IDENTIFY_WAIT_MS;
    let id = await runningAgentId(ctx.node, p.agentDataDir);
    while (id === undefined && Date.now() < deadline) {
      heartbeat('waiting for the agent to store its SVID');
      await new Promise((r) => setTimeout(r, 250));
      id = await runningAgentId(ctx.node, p.agentDataDir);
    }
    if (id !== expectedId) {
      await stopAgent(ctx.node, pidFile, { signal: ctx.signal });
      throw new ToolError(
        'AttestationRejected',
        `the agent on ${ctx.node.label} attested as ${id === undefined ? 'nobody' : shownId(id)}, not as ${shownId(expectedId)}: stopped it`,
        'spire-agent',
      );
    }
    const listed = (await server.agentList(ctx.server)).find((a) => a.spiffeId === id);
    if (listed) {
      const alias = attestor.alias(ctx, listed);
      if (alias) await server.entryCreate(ctx.server, alias);
    }
    return listed;
  }

  /**
   * An agent already runs from this node's pidfile: it is ours only when it is
   * attested under this node's alias. Another node's agent (a shared nodeDir,
   * one started by hand) is an OwnershipConflict and is left running; one that
   * has not attested within a while is AgentUnhealthy (never adopted).
   */
  async function checkRunningAgent(input: ProvisionInput, t: HostTransport, pid: number): Promise<void> {
    const p = nodePaths(input);
    const deadline = Date.now() + IDENTIFY_WAIT_MS;
    let id = await runningAgentId(t, p.agentDataDir);
    while (id === undefined && Date.now() < deadline) {
      heartbeat('waiting for the running agent to attest');
      await new Promise((r) => setTimeout(r, 500));
      id = await runningAgentId(t, p.agentDataDir);
    }
    if (id === undefined) {
      throw new ToolError(
        'AgentUnhealthy',
        `a spire-agent (pid ${pid}) runs from ${p.agentDir} on ${t.label} but has not attested: not adopting it`,
        'spire-agent',
      );
    }
    const { aliasedIds } = await nodeAgentIds(input);
    if (!aliasedIds.has(id)) {
      throw new ToolError(
        'OwnershipConflict',
        `a spire-agent (pid ${pid}, agent ${digest(id)}) already runs from ${p.agentDir} on ${t.label} and is not attested as ${nodeAliasId(input)}: refusing to adopt it`,
        'spire-agent',
      );
    }
  }

  /** Step 4: an attested, healthy agent on the node, holding the agent ID its attestor expects, and the node alias. */
  async function startSpireAgent({ input }: StepRequest): Promise<AgentEvidence> {
    const t = deps.transport(input.host);
    const p = nodePaths(input);
    const signal = deps.signal();
    const attestor = attestorFor(input);
    const alias = nodeAliasId(input);
    const srv = serverOf(input);
    const ctx: AttestorContext = { input, spec: input.spire.nodeAttestor, node: t, server: srv, signal };
    if (!(await server.healthcheck(srv)))
      throw new ToolError('SpireServerUnavailable', 'SPIRE server is not healthy', 'spire-server');
    // Read-only, before anything runs: a credential that is not this node's is never presented.
    await attestor.checkCredential(ctx);
    const evidence = (agentId: string, agentPid: number, listed: server.SpireAgent | undefined): AgentEvidence => ({
      nodeAliasId: alias,
      agentIdDigest: digest(agentId),
      agentPid,
      attestationType: attestor.type,
      // What the server says, when it lists the agent; else what the attestor promises.
      canReattest: listed?.canReattest ?? attestor.canReattest,
    });

    // Already attested as this node and running (a retry or rerun): keep it, mint nothing.
    // An agent attested as anyone else is not ours to adopt (nor, in the undo, to stop).
    const proc = await readProcessRef(t, p.agentPid);
    if (proc !== undefined && (await daemonAlive(t, proc, 'spire-agent'))) {
      const pid = proc.pid;
      await checkRunningAgent(input, t, pid);
      if (await agentHealthcheck({ transport: t, socketPath: p.agentSocket, signal })) {
        const id = (await runningAgentId(t, p.agentDataDir))!;
        const listed = await settleAttestation(ctx, attestor, attestor.agentId(input) ?? id, p.agentPid);
        return evidence(id, pid, listed);
      }
    }

    const bundle = await server.bundleShow(srv);
    const attestation = await attestor.prepare(ctx);
    const agent = await startAgent({
      transport: t,
      joinToken: attestation.joinToken,
      nodeAttestor: { type: attestor.type, pluginData: attestation.pluginData },
      trustBundlePem: bundle,
      trustDomain: input.spire.trustDomain,
      serverAddress: input.spire.serverAddress,
      serverPort: input.spire.serverPort,
      dataDir: p.agentDataDir,
      socketPath: p.agentSocket,
      pidFile: p.agentPid,
      logFile: p.agentLog,
      ...(input.spire.agentSyncIntervalMs !== undefined ? { syncIntervalMs: input.spire.agentSyncIntervalMs } : {}),
      healthTimeoutMs: Math.max(5_000, input.timeouts.startSpireAgent * 1000 - 5_000),
      signal,
    });
    const listed = await settleAttestation(ctx, attestor, attestation.agentId, p.agentPid);
    return evidence(attestation.agentId, agent.pid, listed);
  }

  /**
   * Stop the agent FIRST (a re-attestable agent evicted while it runs is back
   * within seconds); then ban it after a security failure, or evict it (never
   * one that is banned: evicting lifts a ban); then delete the node alias. Only
   * agents of this node are touched: the ones its alias names and the one its
   * attestor derives, never the ID of another node whose certificate was tried.
   * The node side (process, agent dir) only when it is this node's: not in a
   * nodeDir another node holds, not an agent attested as someone else.
   */
  async function undoStartSpireAgent({ input, reason }: UndoRequest): Promise<UndoResult> {
    const t = deps.transport(input.host);
    const p = nodePaths(input);
    const srv = serverOf(input);
    const removed: string[] = [];
    const dirHolder = await deps.ledger.nodeDirHolder(fsKeyOf(input.host), input.nodeDir);
    let ours = dirHolder === null || dirHolder === input.nodeId;
    if (ours) {
      const proc = await readProcessRef(t, p.agentPid);
      if (proc !== undefined && (await daemonAlive(t, proc, 'spire-agent'))) {
        // Unattested: no identity to take from anyone, and in our own nodeDir: ours to stop.
        const id = await runningAgentId(t, p.agentDataDir);
        ours = id === undefined || (await nodeAgentIds(input)).aliasedIds.has(id);
      }
    }
    if (ours && (await stopAgent(t, p.agentPid, { signal: deps.signal() }))) removed.push('agent process');
    const { aliasEntryIds, agents } = await nodeAgentIds(input);
    for (const a of agents) {
      const id = a.spiffeId;
      if (reason === 'security') {
        if (!a.banned && (await server.agentBan(srv, id))) removed.push(`agent ${digest(id)} (banned)`);
      } else if (!a.banned && (await server.agentEvict(srv, id))) {
        removed.push(`agent ${digest(id)} (evicted)`);
      }
    }
    for (const id of aliasEntryIds) if (await server.entryDelete(srv, id)) removed.push(`alias entry ${id}`);
    if (ours) await t.run('rm', ['-rf', '--', p.agentDir], { signal: deps.signal() });
    return { removed };
  }

  /** Step 5: one entry per workload, parented on the node alias. */
  async function registerEntries({ input, run }: StepRequest): Promise<EntriesEvidence> {
    const srv = serverOf(input);
    const parentId = nodeAliasId(input);
    const entries: EntriesEvidence['entries'] = [];
    const known = await deps.ledger.listEntries(input.nodeId);
    for (const w of input.workloads) {
      const spiffeId = spiffeIdOf(input, w);
      const { entry, created } = await server.entryCreate(srv, {
        parentId,
        spiffeId,
        selectors: [`unix:uid:${w.uid}`, ...w.selectors],
        x509SvidTtl: w.x509TtlSeconds,
        jwtSvidTtl: w.jwtTtlSeconds,
      });
      await deps.ledger.recordEntry({
        entryId: entry.id,
        nodeId: input.nodeId,
        workload: w.name,
        spiffeId,
        parentId,
        createdByRun: run.runId,
      });
      // Made again because the old one is gone from the server: the ledger forgets the old id,
      // so it records exactly the entries that exist (maintainNode checks each one it records).
      for (const stale of known.filter((e) => e.workload === w.name && e.entryId !== entry.id)) {
        if ((await server.entryGet(srv, stale.entryId)) === undefined) await deps.ledger.removeEntry(stale.entryId);
      }
      entries.push({ workload: w.name, spiffeId, entryId: entry.id, created });
      heartbeat(`entry for ${w.name}`);
    }
    return { entries };
  }

  /**
   * Delete the entries this run created (a decommission deletes all of the
   * node's), plus any entry under the node alias the ledger does not know.
   */
  async function undoRegisterEntries({ input, run, reason }: UndoRequest): Promise<UndoResult> {
    const srv = serverOf(input);
    const removed: string[] = [];
    const known = await deps.ledger.listEntries(input.nodeId);
    const mine = reason === 'decommission' ? known : known.filter((e) => e.createdByRun === run.runId);
    for (const e of mine) {
      if (await server.entryDelete(srv, e.entryId)) removed.push(`entry ${e.workload}`);
      await deps.ledger.removeEntry(e.entryId);
    }
    // An entry created just before a crash, never recorded: still ours if it names a workload of this input.
    const ids = new Set(input.workloads.map((w) => spiffeIdOf(input, w)));
    const knownIds = new Set(known.map((e) => e.entryId));
    for (const e of await server.entryShow(srv, { parentId: nodeAliasId(input) })) {
      if (!knownIds.has(e.id) && ids.has(e.spiffeId) && (await server.entryDelete(srv, e.id)))
        removed.push(`unrecorded entry ${e.spiffeId}`);
    }
    return { removed };
  }

  return { startSpireAgent, undoStartSpireAgent, registerEntries, undoRegisterEntries };
}
