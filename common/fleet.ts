/**
 * The provisionFleet input: many nodes that share most of their provisioning
 * input, rolled out through a concurrency window with a failure budget and a
 * circuit breaker on the dependencies every node needs.
 *
 * Each node's provisionNode input is `{ ...defaults, ...node }`: a shallow merge
 * at the top level, so a node names its own `nodeId`, `host` and `nodeDir` and
 * may replace any other top-level field (a whole `overlay`, say) for itself.
 * Plain JSON, like the provisionNode input. Imported by workflows: no Node built-ins.
 */
import { z } from 'zod';
import { shared } from './schema-cache.js';
import { failure, redactSecrets } from './errors.js';
import type { ProvisionInput, ProvisionInputJson } from './input.js';
import { filesystemOf } from './ids.js';
import { NodeId, describeZodError } from './names.js';
import { checkProvisionInput, type CheckOptions } from './validate.js';

export const FailureBudget = shared('fleet:FailureBudget', () =>
  z
    .object({
      /** Stop launching once more than this many nodes have failed. */
      maxFailed: z.number().int().min(0).optional(),
      /** Stop launching once more than this share of the fleet (0–100) has failed. */
      maxFailedPercent: z.number().min(0).max(100).optional(),
    })
    .strict(),
);

export const BreakerSpec = shared('fleet:BreakerSpec', () =>
  z
    .object({
      /** Check the shared dependencies before launching a node when the last check is older than this. */
      checkIntervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
      /** While open (a dependency is down), check again this often. */
      recheckIntervalMs: z.number().int().min(100).max(3_600_000).default(5_000),
      /**
       * A node that failed for a dependency-shaped reason (SPIRE server down, no
       * handshake, probe failed, ledger down) while a check finds a dependency
       * down is not charged to the budget: it is queued again, this many times,
       * for when the dependency recovers.
       */
      requeueLimit: z.number().int().min(0).max(10).default(1),
    })
    .strict(),
);

export const FleetInput = shared('fleet:FleetInput', () =>
  z
    .object({
      fleetId: NodeId,
      /** Every node's provisionNode input but its own fields (see `nodes`). */
      defaults: z.record(z.string(), z.unknown()).default({}),
      /**
       * Per segment, provisionNode fields for that segment's nodes, merged into the
       * defaults field by field (objects deeply, unless their `type`/`kind` differs;
       * arrays and plain values replace):
       * e.g. the DMZ attests with machine certificates, on-prem with SSH host
       * certificates — `{ "dmz": { "spire": { "nodeAttestor": { "type": "x509pop", ... } } } }`.
       */
      segments: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
      /** One entry per node: at least `nodeId`, usually `host` and `nodeDir`; merged over `defaults`. */
      nodes: z
        .array(z.object({ nodeId: NodeId }).passthrough())
        .min(1, 'needs at least one node')
        .max(10_000, 'at most 10000 nodes per fleet'),
      /** Nodes provisioning at the same time. */
      window: z.number().int().min(1).max(1000).default(10),
      failureBudget: FailureBudget.default({ maxFailedPercent: 10 }),
      breaker: BreakerSpec.default(BreakerSpec.parse({})),
      /**
       * Launches per workflow run: after this many the fleet lets its running
       * nodes finish and continues as new, so its history stays bounded.
       */
      nodesPerRun: z.number().int().min(1).max(5000).default(500),
    })
    .strict(),
);

export type FleetInputJson = z.input<typeof FleetInput>;
export type FleetInput = z.output<typeof FleetInput>;

/** A fleet whose every node input is valid too. */
export interface ValidFleet {
  input: FleetInput;
  /** Each node's provisionNode input, defaults applied, in rollout order. */
  nodes: ProvisionInput[];
}

/**
 * The provisionNode input of fleet node `i`, before validation: the defaults,
 * its segment's fields merged in deeply, then the node's own fields over the top.
 */
export function mergeNodeInput(
  fleet: Pick<FleetInput, 'defaults' | 'nodes'> & Partial<Pick<FleetInput, 'segments'>>,
  i: number,
): ProvisionInputJson {
  const node = fleet.nodes[i]!;
  const segment = node.segment ?? fleet.defaults.segment;
  const bySegment = typeof segment === 'string' && fleet.segments ? fleet.segments[segment] : undefined;
  const base = bySegment ? deepMerge(fleet.defaults, bySegment) : fleet.defaults;
  return { ...base, ...node } as ProvisionInputJson;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    // An object of another kind (an attestor of another `type`, a host of another `kind`) replaces; same kind merges.
    const sameKind = isPlainObject(b) && isPlainObject(v) && b.type === v.type && b.kind === v.kind;
    out[k] = sameKind ? deepMerge(b, v) : v;
  }
  return out;
}

/**
 * Every problem with a fleet input, as "path: message" lines; the valid fleet
 * when there are none. Each node's merged input goes through the one
 * provisionNode validation (common/validate.ts), so a fleet never launches a
 * node its own run would refuse; then the rules across nodes.
 */
export function checkFleet(
  raw: unknown,
  opts: CheckOptions = {},
): { fleet: ValidFleet; problems: [] } | { fleet: null; problems: string[] } {
  const parsed = FleetInput.safeParse(raw);
  if (!parsed.success) return { fleet: null, problems: describeZodError(parsed.error) };
  const input = parsed.data;
  const problems: string[] = [];
  const nodes: ProvisionInput[] = [];
  const seen = new Set<string>();
  input.nodes.forEach(({ nodeId }, i) => {
    if (seen.has(nodeId)) problems.push(`nodes.${i}.nodeId: duplicate node id "${nodeId}"`);
    seen.add(nodeId);
    const node = checkProvisionInput(mergeNodeInput(input, i), opts);
    if (node.ok) nodes.push(node.value);
    else problems.push(...node.problems.map((p) => `nodes.${i}.${p}`));
  });
  if (!opts.recordedBefore && problems.length === 0) problems.push(...sharedNodeDirProblems(nodes));
  // A segment no node is in is a typo that would silently apply nothing.
  const used = new Set(nodes.map((n) => n.segment));
  for (const name of Object.keys(input.segments)) {
    if (problems.length === 0 && !used.has(name))
      problems.push(`segments.${name}: no node of the fleet is in segment "${name}"`);
  }
  if (problems.length > 0) return { fleet: null, problems };
  return { fleet: { input, nodes }, problems: [] };
}

/**
 * Nodes on one filesystem must not share a nodeDir, nor keep one inside
 * another's: the second would adopt the first one's agent and workloads, and
 * its undo would remove them.
 */
function sharedNodeDirProblems(nodes: ProvisionInput[]): string[] {
  const problems: string[] = [];
  const claimed: { fs: string; dir: string; i: number }[] = [];
  nodes.forEach((n, i) => {
    const fs = filesystemOf(n.host);
    const clash = claimed.find(
      (c) =>
        c.fs === fs && (c.dir === n.nodeDir || c.dir.startsWith(`${n.nodeDir}/`) || n.nodeDir.startsWith(`${c.dir}/`)),
    );
    if (clash) {
      const how = clash.dir === n.nodeDir ? 'the same nodeDir as' : 'a nodeDir overlapping that of';
      problems.push(
        `nodes.${i}.nodeDir: ${n.nodeDir} is ${how} nodes.${clash.i} ("${nodes[clash.i]!.nodeId}") on the same host`,
      );
    }
    claimed.push({ fs, dir: n.nodeDir, i });
  });
  return problems;
}

/**
 * Parse a fleet and every node's merged input; throw a non-retryable
 * `InvalidInput` failure naming each bad field ("nodes.3.host.netns: ...").
 */
export function validateFleet(raw: unknown, opts: CheckOptions = {}): ValidFleet {
  const { fleet, problems } = checkFleet(raw, opts);
  if (fleet) return fleet;
  // One bad node usually means the same mistake in all of them: show a screenful.
  throw invalid(problems.length > 20 ? [...problems.slice(0, 20), `... and ${problems.length - 20} more`] : problems);
}

function invalid(problems: string[]) {
  return failure('InvalidInput', `invalid fleet input: ${problems.join('; ')}`, {
    details: [{ issues: problems.map(redactSecrets) }],
  });
}

/** Failures the budget allows before the rollout stops; null when there is no budget. */
export function allowedFailures(budget: FleetInput['failureBudget'], total: number): number | null {
  const limits = [
    budget.maxFailed,
    budget.maxFailedPercent === undefined ? undefined : Math.floor((total * budget.maxFailedPercent) / 100),
  ].filter((n): n is number => n !== undefined);
  return limits.length ? Math.min(...limits) : null;
}
