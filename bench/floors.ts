/**
 * P1's floors: what each bootstrap step cannot go below on this machine, each
 * measured on its own on the P1 lab node with the same tools the steps use
 * (none of the step code): one node command, wireguard-go start, key
 * generation, the tunnel's round trip, one SPIRE server call (admin API and
 * CLI, side by side), an agent's
 * attestation, an SVID fetch from an agent that holds it. A step's floor is
 * the sum of the primitives it cannot do without (report.ts shows the sums).
 */
import { setprivArgv } from '../activities/host/run-as.js';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCommand, scrubbedEnv } from '../activities/host/exec.js';
import { netnsTransport } from '../activities/host/transport.js';
import { renderAgentConfig } from '../activities/spire/agent-cli.js';
import { apiAdmin } from '../activities/spire/server-api.js';
import * as server from '../activities/spire/server-cli.js';
import type { Lab } from '../lab/lab.js';
import { LAB_AGENT_SYNC_MS } from '../lab/inputs.js';
import { LAB_ENTRY_CACHE_RELOAD_MS } from '../lab/spire-server.js';
import { summarize } from './measure.js';
import { spawn } from 'node:child_process';

export interface Floors {
  /** `ip netns exec <node> true`: the price of any one command on a node. */
  nodeCommandMs: number;
  /** wireguard-go spawned in the node's namespace until its UAPI socket exists. */
  wireguardGoStartMs: number;
  /** `wg genkey` on the node (one command). */
  keyGenMs: number;
  /** Ping round trip through the tunnel (node → hub overlay address), after the handshake. */
  tunnelRttMs: number;
  /** One `spire-server` CLI call on the hub (healthcheck): process start + one admin API round trip. */
  serverCliMs: number;
  /** One admin API call over the hub's socket from the worker (healthcheck, channel already up): what the steps pay. */
  serverApiMs: number;
  /** A fresh agent with a join token, spawned until its Workload API socket exists (it attested). */
  agentAttestMs: number;
  /** `spire-agent api fetch x509` against an agent that already holds the SVID (the proof step 6 needs). */
  svidFetchMs: number;
  /** `spire-server x509 mint`: one X.509-SVID signed by the server, through its CLI. */
  svidMintMs: number;
  /** Expected wait for a new entry to reach the agent: half the server's cache refresh + half the agent's sync. */
  entryPropagationMs: number;
  samples: number;
}

/** The SPIRE server's attestation rate limit per source IP (one a second), with a margin. */
const ATTESTATION_RATE_LIMIT_MS = 1_100;

const median = (xs: number[]) => summarize(xs).median;
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}
async function repeat(n: number, fn: () => Promise<unknown>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await timed(fn));
  return median(xs);
}
async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`floor: ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * Measure on `node` of `lab`, which must be provisioned (tunnel up, agent
 * running with a workload SVID for uid `uid` at `agentSocket`).
 */
export async function measureFloors(
  lab: Lab,
  nodeName: string,
  o: { agentSocket: string; uid: number; scratchDir: string },
  samples = 5,
): Promise<Floors> {
  const node = lab.node(nodeName);
  const ns = node.netns;
  const nodeT = netnsTransport(ns);
  const hub = lab.spire!;
  const srv: server.SpireServerTarget = { transport: lab.hubTransport(), socketPath: hub.socketPath };
  mkdirSync(o.scratchDir, { recursive: true });

  const nodeCommandMs = await repeat(samples, () => nodeT.run('true', []));
  const keyGenMs = await repeat(samples, () => nodeT.run('wg', ['genkey']));

  const wgStarts: number[] = [];
  for (let i = 0; i < samples; i++) {
    const ifname = `wgfloor${i}`;
    const sock = `/var/run/wireguard/${ifname}.sock`;
    const t0 = performance.now();
    const child = spawn('ip', ['netns', 'exec', ns, 'wireguard-go', '-f', ifname], {
      env: scrubbedEnv({ WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error' }),
      stdio: 'ignore',
    });
    try {
      await until(() => existsSync(sock), 10_000, `wireguard-go ${ifname} socket`);
      wgStarts.push(performance.now() - t0);
    } finally {
      await runCommand('ip', ['-n', ns, 'link', 'del', ifname], { allowNonZeroExit: true });
      child.kill('SIGTERM');
    }
  }

  const ping = await nodeT.run('ping', ['-c', String(samples * 2), '-i', '0.05', '-q', lab.hub.overlayIp]);
  const tunnelRttMs = Number(/= [\d.]+\/([\d.]+)\//.exec(ping.stdout)?.[1] ?? NaN);

  // Both ways on the same socket: the steps take the API (a netns target), the CLI is what they took before.
  const serverCliMs = await repeat(samples, () => server.cliAdmin.healthy(srv, {}));
  await apiAdmin.healthy(srv, {}); // dial once: a worker's channel outlives the calls
  const serverApiMs = await repeat(samples, () => apiAdmin.healthy(srv, {}));

  const svidFetchMs = await repeat(samples, () =>
    nodeT.run(
      'setpriv',
      setprivArgv({ uid: o.uid, gid: o.uid }, ['spire-agent', 'api', 'fetch', 'x509', '-socketPath', o.agentSocket]),
    ),
  );
  const svidMintMs = await repeat(samples, () =>
    srv.transport.run('spire-server', [
      'x509',
      'mint',
      '-socketPath',
      hub.socketPath,
      '-spiffeID',
      `spiffe://${hub.trustDomain}/floor/mint`,
    ]),
  );

  // A second agent on the node, attesting with a fresh join token: spawn → Workload API socket.
  // The SPIRE server allows one node attestation per second per source IP (its `ratelimit
  // attestation`, on by default), and every sample comes from this node's address: each waits
  // for a second from the one before, or it measures the limiter (~990 ms) instead of the agent.
  const bundle = await server.bundleShow(srv);
  const attests: number[] = [];
  let lastAttestAt = -Infinity;
  for (let i = 0; i < Math.min(samples, 3); i++) {
    const wait = lastAttestAt + ATTESTATION_RATE_LIMIT_MS - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const dir = path.join(o.scratchDir, `agent${i}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.join(dir, 'data'), { recursive: true, mode: 0o700 });
    const bundlePath = path.join(dir, 'bundle.pem');
    writeFileSync(bundlePath, bundle);
    const socketPath = path.join(dir, 'api.sock');
    const token = await server.tokenGenerate(srv, {
      spiffeId: `spiffe://${hub.trustDomain}/floor/agent${i}`,
      ttlSeconds: 120,
    });
    const conf = path.join(dir, 'agent.conf');
    writeFileSync(
      conf,
      renderAgentConfig({
        trustDomain: hub.trustDomain,
        serverAddress: lab.hub.overlayIp,
        serverPort: hub.port,
        dataDir: path.join(dir, 'data'),
        socketPath,
        trustBundlePath: bundlePath,
        joinToken: token,
        logLevel: 'WARN',
      }),
      { mode: 0o600 },
    );
    const t0 = performance.now();
    lastAttestAt = t0;
    const child = spawn('ip', ['netns', 'exec', ns, 'spire-agent', 'run', '-config', conf], {
      env: scrubbedEnv(),
      stdio: 'ignore',
    });
    try {
      await until(() => existsSync(socketPath), 30_000, 'agent attestation');
      attests.push(performance.now() - t0);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await server.agentEvict(srv, server.joinTokenAgentId(hub.trustDomain, token)).catch(() => false);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  return {
    nodeCommandMs,
    wireguardGoStartMs: median(wgStarts),
    keyGenMs,
    tunnelRttMs,
    serverCliMs,
    serverApiMs,
    agentAttestMs: median(attests),
    svidFetchMs,
    svidMintMs,
    entryPropagationMs: LAB_ENTRY_CACHE_RELOAD_MS / 2 + LAB_AGENT_SYNC_MS / 2,
    samples,
  };
}

/** Each step's floor from the primitives (what the step cannot do without). */
export function stepFloors(f: Floors): Record<string, { ms: number; how: string }> {
  return {
    installOverlay: { ms: f.wireguardGoStartMs + f.nodeCommandMs, how: 'wireguard-go start + link up' },
    issueOverlayKey: { ms: f.keyGenMs + 2 * f.nodeCommandMs, how: 'wg genkey on the node + wg set on hub and node' },
    gatePeerHealth: { ms: 2 * f.tunnelRttMs + f.nodeCommandMs, how: 'handshake RTT + probe RTT + one command' },
    startSpireAgent: { ms: f.serverApiMs + f.agentAttestMs, how: 'token generate + agent spawn → attested' },
    registerEntries: { ms: f.serverApiMs, how: 'one entry create' },
    launchWorkloads: {
      ms: f.nodeCommandMs + f.entryPropagationMs + f.svidFetchMs,
      how: 'workload spawn + entry reaching the agent (expected) + one SVID fetch',
    },
  };
}
