/**
 * Typed wrapper of the `spire-server` CLI (v1.15).
 *
 * Every call runs `spire-server <cmd> -socketPath <admin socket> -output json`
 * through the node's `HostTransport`, parses stdout with zod and maps failures
 * to our closed error types with sanitized messages:
 *   - nothing answering on the admin socket   -> SpireServerUnavailable (transient)
 *   - a registration entry the server refuses -> EntryRejected (permanent)
 *   - a join token request the server refuses as InvalidArgument (an alias
 *     outside its trust domain)            -> InvalidInput (permanent)
 *   - anything else                           -> ToolFailed (transient)
 *
 * Two traps of the real CLI handled here:
 *   - `entry create -output json` exits 0 even when the entry was refused; the
 *     verdict is in `results[].status.code`.
 *   - for a refused or duplicate create the CLI echoes the *request* entry (no
 *     id), so the existing entry is looked up with `entry show` instead.
 */
import { inspect } from 'node:util';
import { z } from 'zod';
import { SafePath, SpiffeId, parseName } from '../../common/names.js';
import { summarizeStderr, ToolError } from '../host/exec.js';
import {
  cliFailure,
  GrpcCode,
  grpcCodeName,
  Int,
  parseJsonOutput,
  runSpire,
  SelectorJson,
  selectorString,
  SpiffeIdJson,
  spiffeIdString,
  StatusJson,
  type SpireCliTarget,
} from './cli-common.js';

export type SpireServerTarget = SpireCliTarget;

const TOOL = 'spire-server';

/** A selector as the CLI takes it: "type:value", e.g. "unix:uid:1000" or "spiffe_id:spiffe://td/x". */
export const Selector = z
  .string()
  .max(2048)
  .regex(/^[a-z0-9_-]+:[A-Za-z0-9:._/=@+-]+$/, 'must look like "unix:uid:1000"');

/** A registration entry id (SPIRE generates UUIDs; custom ids are [A-Za-z0-9_.-]). */
export const EntryId = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be a registration entry id');

/** A registration entry, flattened from SPIRE's JSON. */
export interface SpireEntry {
  id: string;
  spiffeId: string;
  parentId: string;
  /** "type:value", in the server's order. */
  selectors: string[];
  x509SvidTtl: number;
  jwtSvidTtl: number;
  admin: boolean;
  downstream: boolean;
  hint: string;
  dnsNames: string[];
  federatesWith: string[];
  /** Unix seconds. */
  createdAt: number;
  revisionNumber: number;
}

export interface EntrySpec {
  parentId: string;
  spiffeId: string;
  selectors: string[];
  /** Seconds; omitted or 0 = the server default. */
  x509SvidTtl?: number;
  jwtSvidTtl?: number;
  hint?: string;
}

export interface EntryFilter {
  spiffeId?: string;
  parentId?: string;
  selectors?: string[];
  /** How `selectors` match (the CLI's default is "superset"). */
  matchSelectorsOn?: 'exact' | 'any' | 'superset' | 'subset';
}

export interface SpireAgent {
  /** The agent's SPIFFE ID. For join_token agents it embeds the (consumed) token: treat as sensitive. */
  spiffeId: string;
  attestationType: string;
  banned: boolean;
  canReattest: boolean;
  selectors: string[];
  x509SvidSerialNumber: string;
  /** Unix seconds. */
  x509SvidExpiresAt: number;
}

/**
 * A join token. The value is reachable only through `.value`: JSON, `util.inspect`
 * (console.log, loggers) and string conversion all print it redacted, so it cannot
 * land in an activity result, a log line or workflow history by accident.
 */
export class JoinToken {
  readonly #value: string;
  constructor(
    value: string,
    /** Unix seconds. */
    readonly expiresAt: number,
  ) {
    this.#value = value;
  }
  get value(): string {
    return this.#value;
  }
  toJSON(): { value: string; expiresAt: number } {
    return { value: '[redacted]', expiresAt: this.expiresAt };
  }
  toString(): string {
    return '[redacted join token]';
  }
  [inspect.custom](): string {
    return `JoinToken { value: [redacted], expiresAt: ${this.expiresAt} }`;
  }
}

// --- JSON shapes printed by spire-server 1.15 with -output json --------------------------

const EntryJson = z.object({
  id: z.string(),
  spiffe_id: SpiffeIdJson,
  parent_id: SpiffeIdJson,
  selectors: z.array(SelectorJson).default([]),
  x509_svid_ttl: Int.default(0),
  jwt_svid_ttl: Int.default(0),
  admin: z.boolean().default(false),
  downstream: z.boolean().default(false),
  hint: z.string().default(''),
  dns_names: z.array(z.string()).default([]),
  federates_with: z.array(z.string()).default([]),
  created_at: Int.default(0),
  revision_number: Int.default(0),
});

const EntryShowJson = z.object({ entries: z.array(EntryJson).default([]) });

const EntryCreateJson = z.object({
  results: z.array(z.object({ status: StatusJson, entry: z.unknown().optional() })).length(1),
});

const EntryDeleteJson = z.object({
  results: z.array(z.object({ status: StatusJson, id: z.string().default('') })).length(1),
});

const TokenJson = z.object({ value: z.string().regex(/^[A-Za-z0-9._-]{1,255}$/), expires_at: Int });

const BundleJson = z.object({
  trust_domain: z.string(),
  x509_authorities: z.array(z.object({ asn1: z.string().regex(/^[A-Za-z0-9+/=]+$/) })).min(1),
});

const AgentJson = z.object({
  id: SpiffeIdJson,
  attestation_type: z.string().default(''),
  banned: z.boolean().default(false),
  can_reattest: z.boolean().default(false),
  selectors: z.array(SelectorJson).default([]),
  x509svid_serial_number: z.string().default(''),
  x509svid_expires_at: Int.default(0),
});

const AgentListJson = z.object({ agents: z.array(AgentJson).default([]) });

function toEntry(e: z.infer<typeof EntryJson>): SpireEntry {
  return {
    id: e.id,
    spiffeId: spiffeIdString(e.spiffe_id),
    parentId: spiffeIdString(e.parent_id),
    selectors: e.selectors.map(selectorString),
    x509SvidTtl: e.x509_svid_ttl,
    jwtSvidTtl: e.jwt_svid_ttl,
    admin: e.admin,
    downstream: e.downstream,
    hint: e.hint,
    dnsNames: e.dns_names,
    federatesWith: e.federates_with,
    createdAt: e.created_at,
    revisionNumber: e.revision_number,
  };
}

function toAgent(a: z.infer<typeof AgentJson>): SpireAgent {
  return {
    spiffeId: spiffeIdString(a.id),
    attestationType: a.attestation_type,
    banned: a.banned,
    canReattest: a.can_reattest,
    selectors: a.selectors.map(selectorString),
    x509SvidSerialNumber: a.x509svid_serial_number,
    x509SvidExpiresAt: a.x509svid_expires_at,
  };
}

// --- argv builders (exported for the unit tests) -------------------------------------------

function base(t: SpireServerTarget, cmd: string[], json = true): string[] {
  const sock = parseName(SafePath, 'socketPath', t.socketPath);
  return [...cmd, '-socketPath', sock, ...(json ? ['-output', 'json'] : [])];
}

function ttlArg(field: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 0 || v > 2_147_483_647)
    throw new ToolError('InvalidInput', `${field} must be a whole number of seconds`, TOOL);
  return v;
}

function selectorArgs(selectors: readonly string[]): string[] {
  return selectors.flatMap((s, i) => ['-selector', parseName(Selector, `selectors[${i}]`, s)]);
}

export const serverArgv = {
  healthcheck: (t: SpireServerTarget, opts: { shallow?: boolean } = {}) => [
    ...base(t, ['healthcheck'], false),
    ...(opts.shallow ? ['-shallow'] : []),
  ],
  bundleShow: (t: SpireServerTarget) => base(t, ['bundle', 'show']),
  tokenGenerate: (t: SpireServerTarget, o: { spiffeId: string; ttlSeconds: number }) => {
    const ttl = ttlArg('ttlSeconds', o.ttlSeconds);
    if (!ttl) throw new ToolError('InvalidInput', 'ttlSeconds must be at least 1', TOOL);
    return [
      ...base(t, ['token', 'generate']),
      '-spiffeID',
      parseName(SpiffeId, 'spiffeId', o.spiffeId),
      '-ttl',
      String(ttl),
    ];
  },
  entryCreate: (t: SpireServerTarget, e: EntrySpec) => {
    if (e.selectors.length === 0)
      throw new ToolError('InvalidInput', 'selectors must hold at least one selector', TOOL);
    const x509 = ttlArg('x509SvidTtl', e.x509SvidTtl);
    const jwt = ttlArg('jwtSvidTtl', e.jwtSvidTtl);
    const hint = e.hint === undefined ? undefined : parseName(EntryId, 'hint', e.hint);
    return [
      ...base(t, ['entry', 'create']),
      '-parentID',
      parseName(SpiffeId, 'parentId', e.parentId),
      '-spiffeID',
      parseName(SpiffeId, 'spiffeId', e.spiffeId),
      ...selectorArgs(e.selectors),
      ...(x509 !== undefined ? ['-x509SVIDTTL', String(x509)] : []),
      ...(jwt !== undefined ? ['-jwtSVIDTTL', String(jwt)] : []),
      ...(hint !== undefined ? ['-hint', hint] : []),
    ];
  },
  entryShow: (t: SpireServerTarget, f: EntryFilter = {}) => [
    ...base(t, ['entry', 'show']),
    ...(f.spiffeId !== undefined ? ['-spiffeID', parseName(SpiffeId, 'spiffeId', f.spiffeId)] : []),
    ...(f.parentId !== undefined ? ['-parentID', parseName(SpiffeId, 'parentId', f.parentId)] : []),
    ...selectorArgs(f.selectors ?? []),
    ...(f.selectors?.length && f.matchSelectorsOn ? ['-matchSelectorsOn', f.matchSelectorsOn] : []),
  ],
  entryShowById: (t: SpireServerTarget, id: string) => [
    ...base(t, ['entry', 'show']),
    '-entryID',
    parseName(EntryId, 'entryId', id),
  ],
  entryDelete: (t: SpireServerTarget, id: string) => [
    ...base(t, ['entry', 'delete']),
    '-entryID',
    parseName(EntryId, 'entryId', id),
  ],
  agentList: (t: SpireServerTarget, f: { attestationType?: string } = {}) => [
    ...base(t, ['agent', 'list']),
    ...(f.attestationType !== undefined
      ? ['-attestationType', parseName(EntryId, 'attestationType', f.attestationType)]
      : []),
  ],
  agentEvict: (t: SpireServerTarget, spiffeId: string) => [
    ...base(t, ['agent', 'evict']),
    '-spiffeID',
    parseName(SpiffeId, 'spiffeId', spiffeId),
  ],
  agentBan: (t: SpireServerTarget, spiffeId: string) => [
    ...base(t, ['agent', 'ban']),
    '-spiffeID',
    parseName(SpiffeId, 'spiffeId', spiffeId),
  ],
};

// --- the calls ----------------------------------------------------------------------------

async function call(t: SpireServerTarget, args: string[], what: string) {
  const r = await runSpire(t, TOOL, args);
  if (r.exitCode !== 0) throw cliFailure(r, what, 'SpireServerUnavailable');
  return r;
}

/** True when the server answers SERVING on its admin socket; false when it is down or not ready. */
export async function healthcheck(t: SpireServerTarget, opts: { shallow?: boolean } = {}): Promise<boolean> {
  const r = await runSpire(t, TOOL, serverArgv.healthcheck(t, opts));
  return r.exitCode === 0;
}

/** The trust bundle's X.509 authorities as PEM (one CERTIFICATE block each). */
export async function bundleShow(t: SpireServerTarget): Promise<string> {
  return (await bundle(t)).pem;
}

/** The server's own trust domain, as its bundle names it (`bundle show -output json` prints `trust_domain`). */
export async function bundleTrustDomain(t: SpireServerTarget): Promise<string> {
  return (await bundle(t)).trustDomain;
}

async function bundle(t: SpireServerTarget): Promise<{ trustDomain: string; pem: string }> {
  const r = await call(t, serverArgv.bundleShow(t), 'bundle show');
  const b = parseJsonOutput(r.stdout, BundleJson, TOOL, 'bundle show');
  return { trustDomain: b.trust_domain, pem: b.x509_authorities.map((a) => derToPem(a.asn1)).join('') };
}

/**
 * Mint a join token whose agent also gets the alias `spiffeId` (SPIRE creates the
 * alias entry parent=spiffe://<td>/spire/agent/join_token/<token>). The token is
 * a secret: pass `.value` only to the agent's stdin, never log or return it.
 */
export async function tokenGenerate(
  t: SpireServerTarget,
  o: { spiffeId: string; ttlSeconds: number },
): Promise<JoinToken> {
  const r = await runSpire(t, TOOL, serverArgv.tokenGenerate(t, o));
  if (r.exitCode !== 0 && /code = InvalidArgument/.test(r.stderr)) {
    // The server refuses the request itself (an alias outside its trust domain:
    // "invalid agent ID ... is not a member of trust domain"): every retry would
    // send the same request, so this is the input's fault, not an outage.
    throw new ToolError(
      'InvalidInput',
      `spire-server token generate refused the node alias ${o.spiffeId} (check spire.trustDomain): ${summarizeStderr(r.stderr, 240)}`,
      TOOL,
      r.exitCode,
    );
  }
  if (r.exitCode !== 0) throw cliFailure(r, 'token generate', 'SpireServerUnavailable');
  const tok = parseJsonOutput(r.stdout, TokenJson, TOOL, 'token generate');
  return new JoinToken(tok.value, tok.expires_at);
}

/** The SPIFFE ID a join-token agent gets. Sensitive: it embeds the token. */
export function joinTokenAgentId(trustDomain: string, token: JoinToken | string): string {
  return `spiffe://${trustDomain}/spire/agent/join_token/${typeof token === 'string' ? token : token.value}`;
}

/**
 * Create a registration entry, idempotently: when an entry with the same
 * parent ID, SPIFFE ID and selectors exists, it is returned with `created: false`
 * instead of a duplicate. A refused entry throws EntryRejected.
 */
export async function entryCreate(
  t: SpireServerTarget,
  spec: EntrySpec,
): Promise<{ entry: SpireEntry; created: boolean }> {
  const r = await call(t, serverArgv.entryCreate(t, spec), 'entry create');
  // -output json exits 0 even when the server refused the entry: the verdict is per result.
  const { results } = parseJsonOutput(r.stdout, EntryCreateJson, TOOL, 'entry create');
  const status = results[0]!.status;
  if (status.code === GrpcCode.OK) {
    const entry = EntryJson.safeParse(results[0]!.entry);
    if (!entry.success)
      throw new ToolError('ToolFailed', 'spire-server entry create returned an entry of an unexpected shape', TOOL);
    return { entry: toEntry(entry.data), created: true };
  }
  if (status.code === GrpcCode.AlreadyExists) {
    // The CLI echoes the request (no id), so find the existing entry.
    const existing = await findSimilarEntry(t, spec);
    if (existing) return { entry: existing, created: false };
    throw new ToolError(
      'ToolFailed',
      `spire-server reported an existing entry for ${spec.spiffeId} that entry show does not list (deleted meanwhile?)`,
      TOOL,
    );
  }
  throw entryStatusError('create', spec.spiffeId, status);
}

function entryStatusError(what: string, subject: string, status: z.infer<typeof StatusJson>): ToolError {
  const msg = `spire-server refused to ${what} the entry for ${subject}: ${grpcCodeName(status.code)}: ${status.message}`;
  switch (status.code) {
    case GrpcCode.Unavailable:
      return new ToolError('SpireServerUnavailable', msg, TOOL);
    case GrpcCode.Internal:
      return new ToolError('ToolFailed', msg, TOOL);
    default:
      return new ToolError('EntryRejected', msg, TOOL);
  }
}

/** The entry with exactly this parent, SPIFFE ID and selector set, if any. */
export async function findSimilarEntry(
  t: SpireServerTarget,
  spec: Pick<EntrySpec, 'parentId' | 'spiffeId' | 'selectors'>,
): Promise<SpireEntry | undefined> {
  const candidates = await entryShow(t, {
    spiffeId: spec.spiffeId,
    parentId: spec.parentId,
    selectors: spec.selectors,
    matchSelectorsOn: 'exact',
  });
  const want = [...new Set(spec.selectors)].sort().join('\n');
  return candidates.find(
    (e) =>
      e.parentId === spec.parentId &&
      e.spiffeId === spec.spiffeId &&
      [...new Set(e.selectors)].sort().join('\n') === want,
  );
}

/** Entries matching every given filter (all entries when none is given). */
export async function entryShow(t: SpireServerTarget, filter: EntryFilter = {}): Promise<SpireEntry[]> {
  const r = await call(t, serverArgv.entryShow(t, filter), 'entry show');
  return parseJsonOutput(r.stdout, EntryShowJson, TOOL, 'entry show').entries.map(toEntry);
}

/** One entry by id, or `undefined` when it does not exist. */
export async function entryGet(t: SpireServerTarget, id: string): Promise<SpireEntry | undefined> {
  const r = await runSpire(t, TOOL, serverArgv.entryShowById(t, id));
  if (r.exitCode !== 0) {
    if (/code = NotFound/.test(r.stderr)) return undefined;
    throw cliFailure(r, 'entry show', 'SpireServerUnavailable');
  }
  return parseJsonOutput(r.stdout, EntryShowJson, TOOL, 'entry show').entries.map(toEntry)[0];
}

/** Delete an entry. Returns false when it did not exist (idempotent). */
export async function entryDelete(t: SpireServerTarget, id: string): Promise<boolean> {
  const r = await call(t, serverArgv.entryDelete(t, id), 'entry delete');
  const status = parseJsonOutput(r.stdout, EntryDeleteJson, TOOL, 'entry delete').results[0]!.status;
  if (status.code === GrpcCode.OK) return true;
  if (status.code === GrpcCode.NotFound) return false;
  throw entryStatusError('delete', `entry ${id}`, status);
}

/** Attested agents (optionally only those of one attestation type). */
export async function agentList(
  t: SpireServerTarget,
  filter: { attestationType?: string } = {},
): Promise<SpireAgent[]> {
  const r = await call(t, serverArgv.agentList(t, filter), 'agent list');
  return parseJsonOutput(r.stdout, AgentListJson, TOOL, 'agent list').agents.map(toAgent);
}

/**
 * Evict an agent: its attested node is deleted (a join-token agent's alias entry
 * goes with it) and it must re-attest. Returns false when it was not there.
 */
export async function agentEvict(t: SpireServerTarget, spiffeId: string): Promise<boolean> {
  return agentAction(t, spiffeId, serverArgv.agentEvict, 'agent evict');
}

/** Ban an agent: it stays listed as banned and cannot re-attest. Returns false when it was not there. */
export async function agentBan(t: SpireServerTarget, spiffeId: string): Promise<boolean> {
  return agentAction(t, spiffeId, serverArgv.agentBan, 'agent ban');
}

const JOIN_TOKEN_AGENT_PATH = /^spiffe:\/\/[^/]+\/spire\/agent\/join_token\//;

/**
 * Why a join-token agent's ID may go on argv here (and, over SSH, into the
 * remote shell line), although it embeds the token: the CLI takes the ID only
 * as `-spiffeID` (cmd/spire-server/cli/agent/evict.go, ban.go; no stdin form),
 * and we pass it only for an agent that `agent list` shows, i.e. one that has
 * attested. The server deletes a join token when an agent attests with it,
 * before anything else (attestJoinToken in pkg/server/api/agent/v1/service.go),
 * and refuses it ever after ("join token does not exist or has already been
 * used"). Its ID is then a name only: SPIRE authenticates the agent by its SVID's
 * key, not by its ID. An ID the server does not list (a token minted but never
 * used: still a live secret until its TTL) never reaches argv.
 */
async function agentAction(
  t: SpireServerTarget,
  spiffeId: string,
  argv: (t: SpireServerTarget, id: string) => string[],
  what: string,
): Promise<boolean> {
  const args = argv(t, spiffeId); // validates the ID before anything runs
  if (JOIN_TOKEN_AGENT_PATH.test(spiffeId)) {
    const attested = await agentList(t, { attestationType: 'join_token' });
    if (!attested.some((a) => a.spiffeId === spiffeId)) return false;
  }
  const r = await runSpire(t, TOOL, args);
  if (r.exitCode === 0) return true;
  if (/code = NotFound/.test(r.stderr)) return false;
  throw cliFailure(r, what, 'SpireServerUnavailable');
}

export function derToPem(base64Der: string): string {
  const lines = base64Der.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}
