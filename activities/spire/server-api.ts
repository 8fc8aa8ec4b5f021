/**
 * The SPIRE server's admin API over its unix socket (gRPC): what the
 * `spire-server` CLI does, without starting a Go process per call.
 *
 * Each method sends the request the 1.15 CLI command sends
 * (cmd/spire-server/cli/...): `healthcheck` is grpc.health.v1 Check with no
 * service name, `entry show` always filters on downstream=false and pages 500 at
 * a time, `agent list` pages 1000, `token generate -spiffeID` is one
 * CreateJoinToken whose agent_id makes the server create the alias entry.
 *
 * One channel per socket path, shared by every call and activity of the worker.
 * A channel that found nothing answering is dropped, so the next call dials
 * afresh as a CLI call would (grpc-js would otherwise wait out its reconnect
 * backoff, up to minutes, while a restarted server is already serving).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { z } from 'zod';
import { summarizeStderr, ToolError } from '../host/exec.js';
import { parseShape, StatusJson } from './cli-common.js';
import {
  AgentJson,
  aliasRefused,
  BundleJson,
  checkSocketPath,
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
  type SpireServerTarget,
} from './server-admin.js';

const PROTO_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'proto');
const PROTOS = [
  'spire/api/server/agent/v1/agent.proto',
  'spire/api/server/entry/v1/entry.proto',
  'spire/api/server/bundle/v1/bundle.proto',
  'grpc/health/v1/health.proto',
];

/** The CLI's page sizes (cmd/spire-server/cli/entry/show.go, agent/list.go). */
const ENTRY_PAGE = 500;
const AGENT_PAGE = 1000;

type Unary = (
  req: object,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => grpc.ClientUnaryCall;
type Service = grpc.Client & Record<string, Unary>;
type ServiceCtor = new (target: string, creds: grpc.ChannelCredentials, opts?: grpc.ClientOptions) => Service;

interface Clients {
  agent: Service;
  entry: Service;
  bundle: Service;
  health: Service;
}

let services: Record<keyof Clients, ServiceCtor> | undefined;

/**
 * Decoded with the proto field names (keepCase), int64 as strings and bytes as
 * base64: the shapes `-output json` prints, so server-admin.ts's schemas read both.
 */
function loadServices(): Record<keyof Clients, ServiceCtor> {
  if (services) return services;
  const def = protoLoader.loadSync(PROTOS, {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    bytes: String,
    defaults: true,
    oneofs: true,
  });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- loadPackageDefinition is untyped by nature
  const pkg = grpc.loadPackageDefinition(def) as any;
  services = {
    agent: pkg.spire.api.server.agent.v1.Agent,
    entry: pkg.spire.api.server.entry.v1.Entry,
    bundle: pkg.spire.api.server.bundle.v1.Bundle,
    health: pkg.grpc.health.v1.Health,
  };
  return services;
}

const channels = new Map<string, Clients>();

function clientsFor(socketPath: string): Clients {
  const known = channels.get(socketPath);
  if (known) return known;
  const s = loadServices();
  const agent = new s.agent(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 1000,
  });
  const shared = { channelOverride: agent.getChannel() };
  const insecure = grpc.credentials.createInsecure();
  const clients: Clients = {
    agent,
    entry: new s.entry('', insecure, shared),
    bundle: new s.bundle('', insecure, shared),
    health: new s.health('', insecure, shared),
  };
  channels.set(socketPath, clients);
  return clients;
}

function dropChannel(socketPath: string, clients: Clients): void {
  if (channels.get(socketPath) !== clients) return;
  channels.delete(socketPath);
  clients.agent.close();
}

/** Close every admin API channel (tests, and a worker that shuts down). */
export function closeServerApiChannels(): void {
  for (const [socketPath, clients] of channels) dropChannel(socketPath, clients);
}

/**
 * grpc.health.v1 Check (no service name) on any SPIRE socket, on a channel of
 * its own that is closed after the call: what `spire-agent healthcheck` and
 * `spire-server healthcheck` ask. For sockets asked once or twice each (a
 * node's agent while it starts), so that no channel per node is kept open.
 * True on SERVING; false when nothing answers, the answer is not SERVING or the
 * deadline passes; the activity's cancellation is thrown.
 */
export async function socketServing(socketPath: string, opts: { timeoutMs?: number; signal?: AbortSignal }) {
  const { signal } = opts;
  if (signal?.aborted) throw cancelled(signal, 'healthcheck');
  const client = new (loadServices().health)(`unix:${socketPath}`, grpc.credentials.createInsecure());
  try {
    const res = await invoke(client, 'Check', { service: '' }, Date.now() + (opts.timeoutMs ?? 30_000), signal);
    return (res as { status?: string }).status === 'SERVING';
  } catch (err) {
    if (signal?.aborted) throw cancelled(signal, 'healthcheck');
    if (isServiceError(err)) return false;
    throw err;
  } finally {
    client.close();
  }
}

const isServiceError = (e: unknown): e is grpc.ServiceError =>
  e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === 'number';

const codeName = (code: number) => grpc.status[code] ?? `code ${code}`;

/** One unary call with the target's deadline and cancellation; a gRPC failure is thrown as is. */
async function unary(
  t: SpireServerTarget,
  service: keyof Clients,
  method: string,
  req: object,
  what: string,
): Promise<unknown> {
  const socketPath = checkSocketPath(t);
  const { signal } = t;
  if (signal?.aborted) throw cancelled(signal, what);
  const clients = clientsFor(socketPath);
  const deadline = Date.now() + (t.timeoutMs ?? 30_000);
  try {
    return await invoke(clients[service], method, req, deadline, signal);
  } catch (err) {
    if (signal?.aborted) throw cancelled(signal, what);
    if (isServiceError(err) && err.code === grpc.status.UNAVAILABLE) dropChannel(socketPath, clients);
    throw err;
  }
}

/** `client.method(req)` until `deadline`, cancelled when `signal` aborts; the gRPC error as is. */
function invoke(client: Service, method: string, req: object, deadline: number, signal?: AbortSignal) {
  return new Promise<unknown>((resolve, reject) => {
    const call = client[method]!.call(client, req, new grpc.Metadata(), { deadline }, (err, res) => {
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(res);
    });
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function cancelled(signal: AbortSignal, what: string): unknown {
  // Surface the activity's own cancellation, as the CLI path does.
  return signal.reason ?? new ToolError('ToolFailed', `${TOOL} ${what} was cancelled`, TOOL);
}

/** Our error type for a failed call, as the CLI path classifies the same failure. */
function apiFailure(err: unknown, what: string): unknown {
  if (!isServiceError(err)) return err;
  const detail = `${codeName(err.code)}: ${summarizeStderr(err.details ?? '', 240)}`;
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED)
    return new ToolError('SpireServerUnavailable', `${TOOL} ${what} is not answering on its socket (${detail})`, TOOL);
  return new ToolError('ToolFailed', `${TOOL} ${what} failed (${detail})`, TOOL);
}

async function call(
  t: SpireServerTarget,
  service: keyof Clients,
  method: string,
  req: object,
  what: string,
): Promise<unknown> {
  try {
    return await unary(t, service, method, req, what);
  } catch (err) {
    throw apiFailure(err, what);
  }
}

/** Validate a response; on failure name the call only, never quote the message (it may hold a token). */
function parse<T>(raw: unknown, schema: z.ZodType<T>, what: string): T {
  return parseShape(raw, schema, TOOL, `${what} returned a message`);
}

/** "spiffe://td/path" as the API's SPIFFEID message (input already checked). */
function spiffeIdProto(id: string): { trust_domain: string; path: string } {
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash === -1
    ? { trust_domain: rest, path: '' }
    : { trust_domain: rest.slice(0, slash), path: rest.slice(slash) };
}

/** "type:value" split at the first colon, as util.ParseSelector does. */
function selectorProto(s: string): { type: string; value: string } {
  const at = s.indexOf(':');
  return { type: s.slice(0, at), value: s.slice(at + 1) };
}

const MATCH = { exact: 'MATCH_EXACT', any: 'MATCH_ANY', superset: 'MATCH_SUPERSET', subset: 'MATCH_SUBSET' } as const;

type RawEntry = z.infer<typeof EntryJson>;
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const cmpSelector = (a: RawEntry['selectors'][number], b: RawEntry['selectors'][number]) =>
  cmp(a.type, b.type) || cmp(a.value, b.value);

/** `entry show`'s order (util.SortTypesEntries): selectors sorted, then entries by ID, parent, TTLs, selectors. */
function sortLikeEntryShow(entries: RawEntry[]): RawEntry[] {
  for (const e of entries) e.selectors.sort(cmpSelector);
  return entries.sort(
    (a, b) =>
      cmp(a.spiffe_id.trust_domain, b.spiffe_id.trust_domain) ||
      cmp(a.spiffe_id.path, b.spiffe_id.path) ||
      cmp(a.parent_id.trust_domain, b.parent_id.trust_domain) ||
      cmp(a.parent_id.path, b.parent_id.path) ||
      a.x509_svid_ttl - b.x509_svid_ttl ||
      a.jwt_svid_ttl - b.jwt_svid_ttl ||
      a.selectors.length - b.selectors.length ||
      a.selectors.reduce((c, s, i) => c || cmpSelector(s, b.selectors[i]!), 0),
  );
}

const Page = <T extends z.ZodTypeAny>(key: string, item: T) =>
  z.object({ [key]: z.array(item).default([]), next_page_token: z.string().default('') });

async function listAll<T extends z.ZodTypeAny>(
  t: SpireServerTarget,
  service: keyof Clients,
  method: string,
  key: string,
  item: T,
  req: { filter: object; page_size: number },
  what: string,
): Promise<z.infer<T>[]> {
  const schema = Page(key, item);
  const all: z.infer<T>[] = [];
  let page_token = '';
  do {
    const page = parse(await call(t, service, method, { ...req, page_token }, what), schema, what);
    all.push(...(page[key] as z.infer<T>[]));
    page_token = page.next_page_token as string;
  } while (page_token);
  return all;
}

const BatchStatus = z.object({ results: z.array(z.object({ status: StatusJson })).length(1) });

export const apiAdmin: ServerAdmin = {
  async healthy(t) {
    // `-shallow` changes nothing in the 1.15 CLI either (healthcheck.go): one Check, no service name.
    checkSocketPath(t);
    try {
      const r = await unary(t, 'health', 'Check', { service: '' }, 'healthcheck');
      return (r as { status?: string }).status === 'SERVING';
    } catch (err) {
      if (t.signal?.aborted) throw err;
      return false;
    }
  },

  async bundle(t) {
    return toBundle(parse(await call(t, 'bundle', 'GetBundle', {}, 'bundle show'), BundleJson, 'bundle show'));
  },

  async createJoinToken(t, o) {
    const req = { ttl: o.ttlSeconds, agent_id: spiffeIdProto(o.spiffeId) };
    let raw: unknown;
    try {
      raw = await unary(t, 'agent', 'CreateJoinToken', req, 'token generate');
    } catch (err) {
      if (isServiceError(err) && err.code === grpc.status.INVALID_ARGUMENT)
        throw aliasRefused(o.spiffeId, err.details ?? '');
      throw apiFailure(err, 'token generate');
    }
    const tok = parse(raw, TokenJson, 'token generate');
    return new JoinToken(tok.value, tok.expires_at);
  },

  async createEntry(t, spec: EntrySpec) {
    const entry = {
      parent_id: spiffeIdProto(spec.parentId),
      spiffe_id: spiffeIdProto(spec.spiffeId),
      selectors: spec.selectors.map(selectorProto),
      x509_svid_ttl: spec.x509SvidTtl ?? 0,
      jwt_svid_ttl: spec.jwtSvidTtl ?? 0,
      hint: spec.hint ?? '',
    };
    const raw = await call(t, 'entry', 'BatchCreateEntry', { entries: [entry] }, 'entry create');
    const schema = z.object({
      results: z.array(z.object({ status: StatusJson, entry: z.unknown().optional() })).length(1),
    });
    const r = parse(raw, schema, 'entry create').results[0]!;
    // OK carries the new entry and AlreadyExists the existing one; a refusal carries none.
    if (r.status.code !== grpc.status.OK && r.status.code !== grpc.status.ALREADY_EXISTS) return { status: r.status };
    return { status: r.status, entry: toEntry(parse(r.entry, EntryJson, 'entry create')) };
  },

  async listEntries(t, f: EntryFilter) {
    const filter = {
      ...(f.spiffeId !== undefined ? { by_spiffe_id: spiffeIdProto(f.spiffeId) } : {}),
      ...(f.parentId !== undefined ? { by_parent_id: spiffeIdProto(f.parentId) } : {}),
      ...(f.selectors?.length
        ? {
            by_selectors: {
              selectors: f.selectors.map(selectorProto),
              match: MATCH[f.matchSelectorsOn ?? 'superset'],
            },
          }
        : {}),
      by_downstream: { value: false },
    };
    const req = { filter, page_size: ENTRY_PAGE };
    const entries = await listAll(t, 'entry', 'ListEntries', 'entries', EntryJson, req, 'entry show');
    return sortLikeEntryShow(entries).map(toEntry);
  },

  async getEntry(t, id) {
    let raw: unknown;
    try {
      raw = await unary(t, 'entry', 'GetEntry', { id }, 'entry show');
    } catch (err) {
      if (isServiceError(err) && err.code === grpc.status.NOT_FOUND) return undefined;
      throw apiFailure(err, 'entry show');
    }
    // `entry show -entryID` sorts too (its one entry's selectors).
    return toEntry(sortLikeEntryShow([parse(raw, EntryJson, 'entry show')])[0]!);
  },

  async deleteEntry(t, id) {
    const raw = await call(t, 'entry', 'BatchDeleteEntry', { ids: [id] }, 'entry delete');
    return parse(raw, BatchStatus, 'entry delete').results[0]!.status;
  },

  async listAgents(t, f) {
    const req = { filter: { by_attestation_type: f.attestationType ?? '' }, page_size: AGENT_PAGE };
    const agents = await listAll(t, 'agent', 'ListAgents', 'agents', AgentJson, req, 'agent list');
    return agents.map(toAgent);
  },

  evictAgent: (t, spiffeId) => agentAction(t, 'DeleteAgent', spiffeId, 'agent evict'),
  banAgent: (t, spiffeId) => agentAction(t, 'BanAgent', spiffeId, 'agent ban'),
};

/** The join-token agent ID travels in the request body over the local socket: no argv, no shell line. */
async function agentAction(t: SpireServerTarget, method: string, spiffeId: string, what: string): Promise<boolean> {
  try {
    await unary(t, 'agent', method, { id: spiffeIdProto(spiffeId) }, what);
    return true;
  } catch (err) {
    if (isServiceError(err) && err.code === grpc.status.NOT_FOUND) return false;
    throw apiFailure(err, what);
  }
}
