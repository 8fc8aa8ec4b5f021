/**
 * What a lab node, its lab's hub and SPIRE server, and the ledger hold for a
 * node, counted on the real components: the interfaces and processes in the
 * node's namespace, the hub's WireGuard peers, SPIRE's entries and agents, and
 * the node's ledger rows. Tests that break things (test/integration/worker-crash,
 * the fault matrix in test/faults) read it twice: after a run that provisioned
 * (exactly one of each: more is a duplicate) and after an undo (nothing: what is
 * left is a leak).
 *
 * The hub and SPIRE counts are the whole lab's: callers that use them for one
 * node give it a lab (or a time slot) of its own.
 */
import { readFileSync } from 'node:fs';
import type { Ledger } from '../../inventory/index.js';
import { localTransport } from '../../activities/host/transport.js';
import * as ip from '../../activities/overlay/ip.js';
import * as wg from '../../activities/overlay/wireguard/wg-cli.js';
import * as server from '../../activities/spire/server-cli.js';
import type { Lab } from '../../lab/lab.js';

/** Name and parent of a process ("(gone)" when it exited meanwhile). */
export function procOf(pid: number): { pid: number; comm: string; ppid: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    return { pid, comm: stat.slice(stat.indexOf('(') + 1, close), ppid: Number(stat.slice(close + 2).split(' ')[1]) };
  } catch {
    return { pid, comm: '(gone)', ppid: 0 };
  }
}

/**
 * The node's processes by name. A workload's children are counted as part of
 * it (the demo workload has none now: it speaks the Workload API itself; until
 * it did, a `spire-agent api fetch` child could still be at it under load).
 */
export async function nodeProcesses(lab: Lab, node: string): Promise<{ comm: string; pid: number }[]> {
  const procs = (await ip.netnsPids(localTransport(), lab.node(node).netns)).map(procOf);
  const workloadPids = new Set(procs.filter((p) => p.comm === 'demo-workload').map((p) => p.pid));
  return procs.filter((p) => !workloadPids.has(p.ppid)).sort((a, b) => a.comm.localeCompare(b.comm));
}

/** The node's WireGuard (and any other) interfaces: every link but lo and the underlay's eth0. */
export async function nodeInterfaces(lab: Lab, node: string): Promise<string[]> {
  return (await ip.listLinks(lab.nodeTransport(node)))
    .map((l) => l.ifname)
    .filter((n) => n !== 'lo' && n !== 'eth0')
    .sort();
}

export interface Residue {
  interfaces: string[];
  /** Process names in the node's namespace (wireguard-go, spire-agent, node = a workload). */
  processes: string[];
  /** The lab hub's WireGuard peers (public keys). */
  hubPeers: string[];
  /** Every registration entry in the lab's SPIRE server (SPIFFE IDs). */
  spireEntries: string[];
  /** Every attested agent the lab's SPIRE server lists that is not banned. */
  agents: string[];
  /** Banned agents (an undo for a security failure bans; a banned agent cannot come back). */
  bannedAgents: string[];
  /** The node's ledger rows by table (the nodes row itself is its record, not counted). */
  ledger: { allocations: number; peers: number; entries: number; workloads: number };
}

/** Count everything of `nodeId` on lab node `node` (and in the lab's hub and SPIRE server). */
export async function residueOf(lab: Lab, ledger: Ledger, node: string, nodeId: string): Promise<Residue> {
  const srv = { transport: lab.hubTransport(), socketPath: lab.spire!.socketPath };
  const [interfaces, procs, hub, entries, agents, allocations, peers, ledgerEntries, workloads] = await Promise.all([
    nodeInterfaces(lab, node),
    nodeProcesses(lab, node),
    wg.show(lab.hubTransport(), lab.hub.interface),
    server.entryShow(srv),
    server.agentList(srv),
    ledger.listAllocations(nodeId),
    ledger.listPeers(nodeId),
    ledger.listEntries(nodeId),
    ledger.listWorkloads(nodeId),
  ]);
  return {
    interfaces,
    processes: procs.map((p) => p.comm),
    hubPeers: hub.peers.map((p) => p.publicKey),
    spireEntries: entries.map((e) => e.spiffeId).sort(),
    agents: agents.filter((a) => !a.banned).map((a) => a.spiffeId),
    bannedAgents: agents.filter((a) => a.banned).map((a) => a.spiffeId),
    ledger: {
      allocations: allocations.length,
      peers: peers.length,
      entries: ledgerEntries.length,
      workloads: workloads.length,
    },
  };
}

/** What one provisioned lab node with `workloads` workloads holds: the counts `duplicatesIn` compares with. */
export function provisionedCounts(workloads: number) {
  return {
    interfaces: 1,
    wireguardGo: 1,
    spireAgents: 1,
    workloadProcesses: workloads,
    hubPeers: 1,
    // The node alias entry plus one per workload.
    spireEntries: 1 + workloads,
    agents: 1,
    allocations: 1,
    peers: 1,
    entries: workloads,
    workloads,
  };
}

type Counts = ReturnType<typeof provisionedCounts>;

function countsOf(r: Residue): Counts {
  const n = (comm: string) => r.processes.filter((p) => p === comm).length;
  return {
    interfaces: r.interfaces.length,
    wireguardGo: n('wireguard-go'),
    spireAgents: n('spire-agent'),
    workloadProcesses: n('demo-workload'),
    hubPeers: r.hubPeers.length,
    spireEntries: r.spireEntries.length,
    agents: r.agents.length,
    allocations: r.ledger.allocations,
    peers: r.ledger.peers,
    entries: r.ledger.entries,
    workloads: r.ledger.workloads,
  };
}

/** "what: N (expected M)" for every count above what one provisioned node holds. */
export function duplicatesIn(r: Residue, workloads: number): string[] {
  const want = provisionedCounts(workloads);
  const have = countsOf(r);
  return (Object.keys(want) as (keyof Counts)[])
    .filter((k) => have[k] > want[k])
    .map((k) => `${k}: ${have[k]} (expected ${want[k]})`);
}

/** "what: N (expected M)" for every count below it: something a provisioned node should hold is missing. */
export function missingIn(r: Residue, workloads: number): string[] {
  const want = provisionedCounts(workloads);
  const have = countsOf(r);
  return (Object.keys(want) as (keyof Counts)[])
    .filter((k) => have[k] < want[k])
    .map((k) => `${k}: ${have[k]} (expected ${want[k]})`);
}

/** "what: N" for everything left after an undo (compensation or decommission): each is a leak. */
export function leaksIn(r: Residue): string[] {
  const have = countsOf(r);
  const leaks = (Object.keys(have) as (keyof Counts)[]).filter((k) => have[k] > 0).map((k) => `${k}: ${have[k]}`);
  const other = r.processes.filter((p) => !['wireguard-go', 'spire-agent', 'demo-workload'].includes(p));
  if (other.length) leaks.push(`other processes: ${other.join(', ')}`);
  return leaks;
}
