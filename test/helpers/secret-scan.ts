/**
 * "No secret in workflow history", checked on real runs: collect the secrets
 * that exist while nodes are provisioned (WireGuard private keys, SVID private
 * keys, join tokens, the database password), fetch the full history of every
 * run on a task queue, and look for each secret in it.
 *
 * Histories are rendered with `historyText`: JSON.stringify with a replacer
 * that (a) shows every bytes field (payload data, metadata) as its UTF-8 text
 * and its base64, because a payload is where a leaked secret would sit and its
 * JSON would otherwise be hidden behind base64 or a list of byte values,
 * (b) bypasses protobuf messages' own toJSON (which turns bytes into base64)
 * and (c) turns bigints into strings. Reports never print a secret, only its
 * label and where it was found.
 */
import { readFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import type { ProvisionInputJson } from '../../common/input.js';
import { nodePaths } from '../../activities/paths.js';
import * as server from '../../activities/spire/server-cli.js';
import { ProvisionInput } from '../../common/input.js';
import type { Lab } from '../../lab/lab.js';
import { eventually } from './temporal.js';

export interface Secret {
  /** What it is ("n1 WireGuard private key"); safe to print. */
  label: string;
  value: string;
}

export interface Leak {
  label: string;
  /** Character offset in the scanned text. */
  at: number;
  /** Text around the find, with the secret itself masked. */
  context: string;
}

/** Any PEM private key block ("-----BEGIN PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----", ...). */
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/g;
const MIN_SECRET_LENGTH = 8;

function bytesView(b: Uint8Array): { utf8: string; base64: string } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { utf8: buf.toString('utf8'), base64: buf.toString('base64') };
}

/** JSON of a history (or anything), with bytes shown as text and base64, protobuf toJSON bypassed, bigints as strings. */
export function historyText(history: unknown): string {
  return JSON.stringify(history, function (this: Record<string, unknown>, key: string, value: unknown) {
    const raw = this[key];
    if (raw instanceof Uint8Array) return bytesView(raw);
    if (typeof raw === 'bigint') return raw.toString();
    // `value` differs from `raw` when raw had a toJSON (protobuf messages, Buffer, Long):
    // serialize its own fields instead, so nested bytes reach the branch above.
    if (raw !== null && typeof raw === 'object' && raw !== value && !Array.isArray(raw)) return { ...raw };
    return value;
  });
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Every occurrence of every secret (case-insensitive) and of PEM private-key markers. */
export function findLeaks(text: string, secrets: readonly Secret[]): Leak[] {
  const leaks: Leak[] = [];
  const lower = text.toLowerCase();
  // Context for a person, with every secret in it masked (never print one).
  const mask = (from: number, len: number) => {
    let ctx = `${text.slice(Math.max(0, from - 60), from)}[SECRET]${text.slice(from + len, from + len + 60)}`;
    for (const s of secrets) ctx = ctx.replace(new RegExp(escapeRe(s.value), 'gi'), '[SECRET]');
    return ctx;
  };
  for (const s of secrets) {
    if (s.value.length < MIN_SECRET_LENGTH)
      throw new Error(`secret "${s.label}" is too short to scan for (${s.value.length} chars)`);
    const needle = s.value.toLowerCase();
    for (let at = lower.indexOf(needle); at !== -1; at = lower.indexOf(needle, at + 1)) {
      leaks.push({ label: s.label, at, context: mask(at, needle.length) });
    }
  }
  for (const m of text.matchAll(PEM_PRIVATE_KEY)) {
    leaks.push({ label: `PEM private key marker "${m[0]}"`, at: m.index, context: mask(m.index, 0) });
  }
  return leaks;
}

/** A WireGuard private key (base64 of 32 bytes) in the forms it could leak in. */
export function wireguardKeySecrets(label: string, base64Key: string): Secret[] {
  const key = base64Key.trim();
  const raw = Buffer.from(key, 'base64');
  if (raw.length !== 32) throw new Error(`${label}: not a WireGuard key (${raw.length} bytes)`);
  return [
    { label: `${label} (base64)`, value: key },
    { label: `${label} (base64 without padding)`, value: key.replace(/=+$/, '') },
    { label: `${label} (hex)`, value: raw.toString('hex') },
  ];
}

/** A PEM private key: its body (joined) and each body line, so a re-wrapped or partial copy is found too. */
export function pemKeySecrets(label: string, pem: string): Secret[] {
  const body = pem
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('-----'));
  if (body.length === 0) throw new Error(`${label}: no PEM body`);
  return [
    { label: `${label} (body)`, value: body.join('') },
    ...body.filter((l) => l.length >= 16).map((l, i) => ({ label: `${label} (line ${i + 1})`, value: l })),
  ];
}

/**
 * Secrets of one provisioned node, read from the node's own files: its
 * WireGuard key, each workload's SVID key and its attestation key (x509pop).
 */
export function nodeFileSecrets(raw: ProvisionInputJson, label = raw.nodeId): Secret[] {
  const input = ProvisionInput.parse(raw);
  const p = nodePaths(input);
  const out = wireguardKeySecrets(`${label} WireGuard private key`, readFileSync(p.wgKey, 'utf8'));
  out.push(...attestationKeySecrets(raw, label));
  for (const w of input.workloads) {
    out.push(
      ...pemKeySecrets(
        `${label} ${w.name} SVID private key`,
        readFileSync(`${p.workloadDir(w.name)}/verify/svid.0.key`, 'utf8'),
      ),
    );
  }
  return out;
}

/** The node's attestation private key (x509pop's certificate key, sshpop's host key), read from the node: none for join_token. */
export function attestationKeySecrets(raw: ProvisionInputJson, label = raw.nodeId): Secret[] {
  const a = ProvisionInput.parse(raw).spire.nodeAttestor;
  if (a.type === 'sshpop') return pemKeySecrets(`${label} sshpop host key`, readFileSync(a.hostKeyPath, 'utf8'));
  return a.type === 'x509pop'
    ? pemKeySecrets(`${label} x509pop private key`, readFileSync(a.privateKeyPath, 'utf8'))
    : [];
}

/** The hub's WireGuard private key (the lab keeps it in <hub dir>/wg/<interface>.key). */
export function hubKeySecrets(lab: Lab): Secret[] {
  return wireguardKeySecrets(
    'hub WireGuard private key',
    readFileSync(`${lab.hub.dir}/wg/${lab.hub.interface}.key`, 'utf8'),
  );
}

/** The join token embedded in a join-token agent's SPIFFE ID (spiffe://<td>/spire/agent/join_token/<token>). */
export function tokenOfAgentId(agentId: string): string | undefined {
  return /\/spire\/agent\/join_token\/([^/]+)$/.exec(agentId)?.[1];
}

/**
 * Join tokens of the agents the lab's SPIRE server has attested, with the
 * agent IDs that embed them. `onlyAgents` narrows to those agent IDs.
 */
export async function joinTokenSecrets(
  lab: Lab,
  label = 'join token',
  onlyAgents?: readonly string[],
): Promise<Secret[]> {
  const agents = await server.agentList({ transport: lab.hubTransport(), socketPath: lab.spire!.socketPath });
  const out: Secret[] = [];
  let n = 0;
  for (const a of agents) {
    const token = tokenOfAgentId(a.spiffeId);
    if (!token || (onlyAgents && !onlyAgents.includes(a.spiffeId))) continue;
    n += 1;
    out.push(
      { label: `${label} #${n}`, value: token },
      { label: `${label} #${n} (agent SPIFFE ID)`, value: a.spiffeId },
    );
  }
  return out;
}

/** A database URL whose password is a fresh canary (trust auth ignores it), and the canary. */
export function withCanaryPassword(databaseUrl: string, canary: string): { url: string; secret: Secret } {
  const u = new URL(databaseUrl);
  u.password = canary;
  return { url: u.toString(), secret: { label: 'database password', value: canary } };
}

export interface FetchedHistory {
  workflowId: string;
  runId: string;
  type: string;
  events: number;
  text: string;
  /** The history object as fetched (for planting tests). */
  history: Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>;
}

/**
 * The full history of every run on `taskQueue`. Visibility lags: waits until at
 * least `expectAtLeast` runs are listed (and every listed run is closed).
 */
export async function fetchTaskQueueHistories(
  client: Client,
  taskQueue: string,
  expectAtLeast: number,
): Promise<FetchedHistory[]> {
  const runs = await eventually(
    async () => {
      const found: { workflowId: string; runId: string; type: string; closed: boolean }[] = [];
      for await (const wf of client.workflow.list({ query: `TaskQueue="${taskQueue}"` })) {
        found.push({ workflowId: wf.workflowId, runId: wf.runId, type: wf.type, closed: wf.status.name !== 'RUNNING' });
      }
      return found.length >= expectAtLeast && found.every((r) => r.closed) ? found : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 500, what: `${expectAtLeast} closed runs on ${taskQueue} in visibility` },
  );
  return Promise.all(
    runs.map(async (r) => {
      const history = await client.workflow.getHandle(r.workflowId, r.runId).fetchHistory();
      return {
        workflowId: r.workflowId,
        runId: r.runId,
        type: r.type,
        events: history.events?.length ?? 0,
        text: historyText(history),
        history,
      };
    }),
  );
}

/** Leaks per run, as lines a person reads in a failed assertion (never the secret). */
export function leakReport(histories: readonly FetchedHistory[], secrets: readonly Secret[]): string[] {
  return histories.flatMap((h) =>
    findLeaks(h.text, secrets).map((l) => `${h.workflowId} (${h.runId}): ${l.label} at ${l.at}: …${l.context}…`),
  );
}
