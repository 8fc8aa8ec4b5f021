/**
 * What the two ways of driving the SPIRE server share: the shapes callers see,
 * the input checks, and the one interface both implement.
 *
 *   - server-api.ts: the server's admin API over its unix socket (gRPC), when the
 *     socket is on the worker's filesystem (local and netns transports);
 *   - server-cli.ts: the `spire-server` CLI through the transport (ssh, where the
 *     socket is on another machine). It also holds the exported calls, which pick
 *     one of the two in one place (`adminFor`).
 *
 * Both send what the 1.15 CLI sends (cmd/spire-server/cli/...), so a caller cannot
 * tell them apart except by cost.
 */
import { inspect } from 'node:util';
import { z } from 'zod';
import { SafePath, SpiffeId, parseName } from '../../common/names.js';
import { summarizeStderr, ToolError } from '../host/exec.js';
import {
  Int,
  SelectorJson,
  selectorString,
  SpiffeIdJson,
  spiffeIdString,
  type SpireCliTarget,
  type StatusJson,
} from './cli-common.js';

export type SpireServerTarget = SpireCliTarget;

export const TOOL = 'spire-server';

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

// --- the server's messages, as the CLI prints them (protojson, proto field names) ----------
// The API client decodes with the same field names (keepCase), int64 as strings and
// bytes as base64, so one set of schemas validates both.

export const EntryJson = z.object({
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

export const TokenJson = z.object({ value: z.string().regex(/^[A-Za-z0-9._-]{1,255}$/), expires_at: Int });

export const BundleJson = z.object({
  trust_domain: z.string(),
  x509_authorities: z.array(z.object({ asn1: z.string().regex(/^[A-Za-z0-9+/=]+$/) })).min(1),
});

export const AgentJson = z.object({
  id: SpiffeIdJson,
  attestation_type: z.string().default(''),
  banned: z.boolean().default(false),
  can_reattest: z.boolean().default(false),
  selectors: z.array(SelectorJson).default([]),
  x509svid_serial_number: z.string().default(''),
  x509svid_expires_at: Int.default(0),
});

export function toEntry(e: z.infer<typeof EntryJson>): SpireEntry {
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

export function toAgent(a: z.infer<typeof AgentJson>): SpireAgent {
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

/** The bundle as callers see it: its trust domain, its X.509 authorities as PEM (one CERTIFICATE block each). */
export function toBundle(b: z.infer<typeof BundleJson>): { trustDomain: string; pem: string } {
  return { trustDomain: b.trust_domain, pem: b.x509_authorities.map((a) => derToPem(a.asn1)).join('') };
}

/**
 * The server refused a join token request itself (an alias outside its trust
 * domain: "invalid agent ID ... is not a member of trust domain"): every retry
 * would send the same request, so this is the input's fault, not an outage.
 */
export function aliasRefused(spiffeId: string, serverSaid: string, exitCode?: number): ToolError {
  return new ToolError(
    'InvalidInput',
    `spire-server token generate refused the node alias ${spiffeId} (check spire.trustDomain): ${summarizeStderr(serverSaid, 240)}`,
    TOOL,
    exitCode,
  );
}

export function derToPem(base64Der: string): string {
  const lines = base64Der.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

// --- input checks: the same for both ways, before anything is sent -------------------------

export function checkSocketPath(t: SpireServerTarget): string {
  return parseName(SafePath, 'socketPath', t.socketPath);
}

function checkTtl(field: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 0 || v > 2_147_483_647)
    throw new ToolError('InvalidInput', `${field} must be a whole number of seconds`, TOOL);
  return v;
}

export const checkSelectors = (selectors: readonly string[]): string[] =>
  selectors.map((s, i) => parseName(Selector, `selectors[${i}]`, s));

export const checkSpiffeId = (field: string, id: string): string => parseName(SpiffeId, field, id);

export const checkEntryId = (field: string, id: string): string => parseName(EntryId, field, id);

export interface TokenRequest {
  spiffeId: string;
  ttlSeconds: number;
}

export function checkTokenRequest(o: TokenRequest): TokenRequest {
  const ttl = checkTtl('ttlSeconds', o.ttlSeconds);
  if (!ttl) throw new ToolError('InvalidInput', 'ttlSeconds must be at least 1', TOOL);
  return { spiffeId: checkSpiffeId('spiffeId', o.spiffeId), ttlSeconds: ttl };
}

export function checkEntrySpec(e: EntrySpec): EntrySpec {
  if (e.selectors.length === 0) throw new ToolError('InvalidInput', 'selectors must hold at least one selector', TOOL);
  const x509 = checkTtl('x509SvidTtl', e.x509SvidTtl);
  const jwt = checkTtl('jwtSvidTtl', e.jwtSvidTtl);
  const hint = e.hint === undefined ? undefined : checkEntryId('hint', e.hint);
  return {
    parentId: checkSpiffeId('parentId', e.parentId),
    spiffeId: checkSpiffeId('spiffeId', e.spiffeId),
    selectors: checkSelectors(e.selectors),
    ...(x509 !== undefined ? { x509SvidTtl: x509 } : {}),
    ...(jwt !== undefined ? { jwtSvidTtl: jwt } : {}),
    ...(hint !== undefined ? { hint } : {}),
  };
}

export function checkEntryFilter(f: EntryFilter): EntryFilter {
  return {
    ...(f.spiffeId !== undefined ? { spiffeId: checkSpiffeId('spiffeId', f.spiffeId) } : {}),
    ...(f.parentId !== undefined ? { parentId: checkSpiffeId('parentId', f.parentId) } : {}),
    ...(f.selectors?.length ? { selectors: checkSelectors(f.selectors) } : {}),
    ...(f.selectors?.length && f.matchSelectorsOn ? { matchSelectorsOn: f.matchSelectorsOn } : {}),
  };
}

export function checkAgentFilter(f: { attestationType?: string }): { attestationType?: string } {
  return f.attestationType !== undefined ? { attestationType: checkEntryId('attestationType', f.attestationType) } : {};
}

// --- the interface both ways implement ------------------------------------------------------

export type Status = z.infer<typeof StatusJson>;

/**
 * One method per admin API call the CLI makes, on input already checked. The
 * verdicts callers act on (a per-entry status, "not found") come back as values;
 * every other failure is thrown as a ToolError of our closed set.
 */
export interface ServerAdmin {
  /** True when the server answers SERVING; false when it is down or not ready. */
  healthy(t: SpireServerTarget, opts: { shallow?: boolean }): Promise<boolean>;
  bundle(t: SpireServerTarget): Promise<{ trustDomain: string; pem: string }>;
  /** A refused alias (InvalidArgument) throws InvalidInput. */
  createJoinToken(t: SpireServerTarget, o: TokenRequest): Promise<JoinToken>;
  /** The per-entry verdict; `entry` is the created one (OK) or, where the server says which, the existing one (AlreadyExists). */
  createEntry(t: SpireServerTarget, spec: EntrySpec): Promise<{ status: Status; entry?: SpireEntry }>;
  /** Sorted as `entry show` sorts them. */
  listEntries(t: SpireServerTarget, filter: EntryFilter): Promise<SpireEntry[]>;
  getEntry(t: SpireServerTarget, id: string): Promise<SpireEntry | undefined>;
  deleteEntry(t: SpireServerTarget, id: string): Promise<Status>;
  listAgents(t: SpireServerTarget, filter: { attestationType?: string }): Promise<SpireAgent[]>;
  /** False when the server has no such agent. */
  evictAgent(t: SpireServerTarget, spiffeId: string): Promise<boolean>;
  banAgent(t: SpireServerTarget, spiffeId: string): Promise<boolean>;
}
