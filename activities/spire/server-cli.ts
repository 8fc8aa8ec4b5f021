/**
 * The SPIRE server calls every step, check and test uses (v1.15), and the
 * `spire-server` CLI way of making them.
 *
 * Each call goes one of two ways, picked in one place (`adminFor`): the server's
 * admin API over its unix socket (server-api.ts) when the socket is on the
 * worker's filesystem (the local and netns transports: a unix path socket is not
 * network-namespaced), or `spire-server <cmd> -socketPath <admin socket> -output json`
 * through the transport (ssh: the socket is on another machine). Either way
 * input is checked first (server-admin.ts) and failures map to our closed error
 * types with sanitized messages:
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
 *     id), so the existing entry is looked up with `entry show` instead (the
 *     API returns the existing entry itself).
 */
import { z } from 'zod';
import { ToolError } from '../host/exec.js';
import {
  cliFailure,
  GrpcCode,
  grpcCodeName,
  parseJsonOutput,
  runSpire,
  socketIsHere,
  StatusJson,
} from './cli-common.js';
import {
  AgentJson,
  aliasRefused,
  BundleJson,
  checkAgentFilter,
  checkEntryFilter,
  checkEntryId,
  checkEntrySpec,
  checkSelectors,
  checkSocketPath,
  checkSpiffeId,
  checkTokenRequest,
  EntryJson,
  JoinToken,
  toAgent,
  toBundle,
  toEntry,
  TokenJson,
  TOOL,
  type EntryFilter,
  type EntrySpec,
  type ServerAdmin,
  type SpireAgent,
  type SpireEntry,
  type SpireServerTarget,
  type Status,
} from './server-admin.js';
import { apiAdmin } from './server-api.js';

export {
  derToPem,
  EntryId,
  JoinToken,
  Selector,
  type EntryFilter,
  type EntrySpec,
  type SpireAgent,
  type SpireEntry,
  type SpireServerTarget,
} from './server-admin.js';

// --- JSON shapes printed by spire-server 1.15 with -output json (beyond the shared ones) ---

const EntryShowJson = z.object({ entries: z.array(EntryJson).default([]) });

const EntryCreateJson = z.object({
  results: z.array(z.object({ status: StatusJson, entry: z.unknown().optional() })).length(1),
});

const EntryDeleteJson = z.object({
  results: z.array(z.object({ status: StatusJson, id: z.string().default('') })).length(1),
});

const AgentListJson = z.object({ agents: z.array(AgentJson).default([]) });

// --- argv builders (exported for the unit tests) -------------------------------------------

function base(t: SpireServerTarget, cmd: string[], json = true): string[] {
  return [...cmd, '-socketPath', checkSocketPath(t), ...(json ? ['-output', 'json'] : [])];
}

const selectorArgs = (selectors: readonly string[]): string[] =>
  checkSelectors(selectors).flatMap((s) => ['-selector', s]);

export const serverArgv = {
  healthcheck: (t: SpireServerTarget, opts: { shallow?: boolean } = {}) => [
    ...base(t, ['healthcheck'], false),
    ...(opts.shallow ? ['-shallow'] : []),
  ],
  bundleShow: (t: SpireServerTarget) => base(t, ['bundle', 'show']),
  tokenGenerate: (t: SpireServerTarget, o: { spiffeId: string; ttlSeconds: number }) => {
    const { spiffeId, ttlSeconds } = checkTokenRequest(o);
    return [...base(t, ['token', 'generate']), '-spiffeID', spiffeId, '-ttl', String(ttlSeconds)];
  },
  entryCreate: (t: SpireServerTarget, spec: EntrySpec) => {
    const e = checkEntrySpec(spec);
    return [
      ...base(t, ['entry', 'create']),
      '-parentID',
      e.parentId,
      '-spiffeID',
      e.spiffeId,
      ...selectorArgs(e.selectors),
      ...(e.x509SvidTtl !== undefined ? ['-x509SVIDTTL', String(e.x509SvidTtl)] : []),
      ...(e.jwtSvidTtl !== undefined ? ['-jwtSVIDTTL', String(e.jwtSvidTtl)] : []),
      ...(e.hint !== undefined ? ['-hint', e.hint] : []),
    ];
  },
  entryShow: (t: SpireServerTarget, filter: EntryFilter = {}) => {
    const f = checkEntryFilter(filter);
    return [
      ...base(t, ['entry', 'show']),
      ...(f.spiffeId !== undefined ? ['-spiffeID', f.spiffeId] : []),
      ...(f.parentId !== undefined ? ['-parentID', f.parentId] : []),
      ...selectorArgs(f.selectors ?? []),
      ...(f.matchSelectorsOn ? ['-matchSelectorsOn', f.matchSelectorsOn] : []),
    ];
  },
  entryShowById: (t: SpireServerTarget, id: string) => [
    ...base(t, ['entry', 'show']),
    '-entryID',
    checkEntryId('entryId', id),
  ],
  entryDelete: (t: SpireServerTarget, id: string) => [
    ...base(t, ['entry', 'delete']),
    '-entryID',
    checkEntryId('entryId', id),
  ],
  agentList: (t: SpireServerTarget, filter: { attestationType?: string } = {}) => {
    const f = checkAgentFilter(filter);
    return [
      ...base(t, ['agent', 'list']),
      ...(f.attestationType !== undefined ? ['-attestationType', f.attestationType] : []),
    ];
  },
  agentEvict: (t: SpireServerTarget, spiffeId: string) => [
    ...base(t, ['agent', 'evict']),
    '-spiffeID',
    checkSpiffeId('spiffeId', spiffeId),
  ],
  agentBan: (t: SpireServerTarget, spiffeId: string) => [
    ...base(t, ['agent', 'ban']),
    '-spiffeID',
    checkSpiffeId('spiffeId', spiffeId),
  ],
};

// --- the CLI way ----------------------------------------------------------------------------

async function run(t: SpireServerTarget, args: string[], what: string) {
  const r = await runSpire(t, TOOL, args);
  if (r.exitCode !== 0) throw cliFailure(r, what, 'SpireServerUnavailable');
  return r;
}

const JOIN_TOKEN_AGENT_PATH = /^spiffe:\/\/[^/]+\/spire\/agent\/join_token\//;

export const cliAdmin: ServerAdmin = {
  async healthy(t, opts) {
    const r = await runSpire(t, TOOL, serverArgv.healthcheck(t, opts));
    return r.exitCode === 0;
  },

  async bundle(t) {
    const r = await run(t, serverArgv.bundleShow(t), 'bundle show');
    return toBundle(parseJsonOutput(r.stdout, BundleJson, TOOL, 'bundle show'));
  },

  async createJoinToken(t, o) {
    const r = await runSpire(t, TOOL, serverArgv.tokenGenerate(t, o));
    if (r.exitCode !== 0 && /code = InvalidArgument/.test(r.stderr))
      throw aliasRefused(o.spiffeId, r.stderr, r.exitCode);
    if (r.exitCode !== 0) throw cliFailure(r, 'token generate', 'SpireServerUnavailable');
    const tok = parseJsonOutput(r.stdout, TokenJson, TOOL, 'token generate');
    return new JoinToken(tok.value, tok.expires_at);
  },

  async createEntry(t, spec) {
    const r = await run(t, serverArgv.entryCreate(t, spec), 'entry create');
    // -output json exits 0 even when the server refused the entry: the verdict is per result.
    const result = parseJsonOutput(r.stdout, EntryCreateJson, TOOL, 'entry create').results[0]!;
    // For anything but OK the CLI echoes the request (no id): no entry to return.
    if (result.status.code !== GrpcCode.OK) return { status: result.status };
    const entry = EntryJson.safeParse(result.entry);
    if (!entry.success)
      throw new ToolError('ToolFailed', 'spire-server entry create returned an entry of an unexpected shape', TOOL);
    return { status: result.status, entry: toEntry(entry.data) };
  },

  async listEntries(t, filter) {
    const r = await run(t, serverArgv.entryShow(t, filter), 'entry show');
    return parseJsonOutput(r.stdout, EntryShowJson, TOOL, 'entry show').entries.map(toEntry);
  },

  async getEntry(t, id) {
    const r = await runSpire(t, TOOL, serverArgv.entryShowById(t, id));
    if (r.exitCode !== 0) {
      if (/code = NotFound/.test(r.stderr)) return undefined;
      throw cliFailure(r, 'entry show', 'SpireServerUnavailable');
    }
    return parseJsonOutput(r.stdout, EntryShowJson, TOOL, 'entry show').entries.map(toEntry)[0];
  },

  async deleteEntry(t, id) {
    const r = await run(t, serverArgv.entryDelete(t, id), 'entry delete');
    return parseJsonOutput(r.stdout, EntryDeleteJson, TOOL, 'entry delete').results[0]!.status;
  },

  async listAgents(t, filter) {
    const r = await run(t, serverArgv.agentList(t, filter), 'agent list');
    return parseJsonOutput(r.stdout, AgentListJson, TOOL, 'agent list').agents.map(toAgent);
  },

  evictAgent: (t, spiffeId) => cliAgentAction(t, spiffeId, serverArgv.agentEvict, 'agent evict'),
  banAgent: (t, spiffeId) => cliAgentAction(t, spiffeId, serverArgv.agentBan, 'agent ban'),
};

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
async function cliAgentAction(
  t: SpireServerTarget,
  spiffeId: string,
  argv: (t: SpireServerTarget, id: string) => string[],
  what: string,
): Promise<boolean> {
  const args = argv(t, spiffeId); // validates the ID before anything runs
  if (JOIN_TOKEN_AGENT_PATH.test(spiffeId)) {
    const attested = await cliAdmin.listAgents(t, { attestationType: 'join_token' });
    if (!attested.some((a) => a.spiffeId === spiffeId)) return false;
  }
  const r = await runSpire(t, TOOL, args);
  if (r.exitCode === 0) return true;
  if (/code = NotFound/.test(r.stderr)) return false;
  throw cliFailure(r, what, 'SpireServerUnavailable');
}

// --- the calls ----------------------------------------------------------------------------

/**
 * The one place the way is picked: the admin API when its socket is on this
 * machine's filesystem (local, netns), the CLI on the target otherwise (ssh).
 */
export function adminFor(t: SpireServerTarget): ServerAdmin {
  return socketIsHere(t.transport) ? apiAdmin : cliAdmin;
}

/** True when the server answers SERVING on its admin socket; false when it is down or not ready. */
export async function healthcheck(t: SpireServerTarget, opts: { shallow?: boolean } = {}): Promise<boolean> {
  return adminFor(t).healthy(t, opts);
}

/** The trust bundle's X.509 authorities as PEM (one CERTIFICATE block each). */
export async function bundleShow(t: SpireServerTarget): Promise<string> {
  return (await adminFor(t).bundle(t)).pem;
}

/** The server's own trust domain, as its bundle names it (`bundle show -output json` prints `trust_domain`). */
export async function bundleTrustDomain(t: SpireServerTarget): Promise<string> {
  return (await adminFor(t).bundle(t)).trustDomain;
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
  return adminFor(t).createJoinToken(t, checkTokenRequest(o));
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
  const checked = checkEntrySpec(spec);
  const { status, entry } = await adminFor(t).createEntry(t, checked);
  if (status.code === GrpcCode.OK && entry) return { entry, created: true };
  if (status.code === GrpcCode.AlreadyExists) {
    const existing = entry ?? (await findSimilarEntry(t, checked));
    if (existing) return { entry: existing, created: false };
    throw new ToolError(
      'ToolFailed',
      `spire-server reported an existing entry for ${spec.spiffeId} that entry show does not list (deleted meanwhile?)`,
      TOOL,
    );
  }
  throw entryStatusError('create', spec.spiffeId, status);
}

function entryStatusError(what: string, subject: string, status: Status): ToolError {
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
  return adminFor(t).listEntries(t, checkEntryFilter(filter));
}

/** One entry by id, or `undefined` when it does not exist. */
export async function entryGet(t: SpireServerTarget, id: string): Promise<SpireEntry | undefined> {
  return adminFor(t).getEntry(t, checkEntryId('entryId', id));
}

/** Delete an entry. Returns false when it did not exist (idempotent). */
export async function entryDelete(t: SpireServerTarget, id: string): Promise<boolean> {
  const status = await adminFor(t).deleteEntry(t, checkEntryId('entryId', id));
  if (status.code === GrpcCode.OK) return true;
  if (status.code === GrpcCode.NotFound) return false;
  throw entryStatusError('delete', `entry ${id}`, status);
}

/** Attested agents (optionally only those of one attestation type). */
export async function agentList(
  t: SpireServerTarget,
  filter: { attestationType?: string } = {},
): Promise<SpireAgent[]> {
  return adminFor(t).listAgents(t, checkAgentFilter(filter));
}

/**
 * Evict an agent: its attested node is deleted (a join-token agent's alias entry
 * goes with it) and it must re-attest. Returns false when it was not there.
 */
export async function agentEvict(t: SpireServerTarget, spiffeId: string): Promise<boolean> {
  return adminFor(t).evictAgent(t, checkSpiffeId('spiffeId', spiffeId));
}

/** Ban an agent: it stays listed as banned and cannot re-attest. Returns false when it was not there. */
export async function agentBan(t: SpireServerTarget, spiffeId: string): Promise<boolean> {
  return adminFor(t).banAgent(t, checkSpiffeId('spiffeId', spiffeId));
}
