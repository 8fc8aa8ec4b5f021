/**
 * The ledger schema, as numbered migrations applied at worker start.
 *
 * `applyMigrations` runs every pending migration in ONE transaction under a
 * transaction-scoped advisory lock, so two workers starting together serialize:
 * the second one waits, then sees the first one's rows in schema_migrations and
 * applies nothing. A failed migration rolls back whole. Each applied migration's
 * checksum is recorded; editing an applied migration is refused (add a new one).
 *
 * Rules for new migrations: append only, never edit or renumber one that shipped.
 */
import { createHash } from 'node:crypto';
import type { PoolClient } from 'pg';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Advisory lock key for migrations (an arbitrary constant: "nbmigr" in ASCII). */
const MIGRATION_LOCK_KEY = 0x6e626d696772n;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'inventory ledger',
    sql: `
-- One row per node this service has seen. state is free text validated by the
-- application (adding a state needs no migration).
CREATE TABLE nodes (
  node_id        text PRIMARY KEY,
  segment        text NOT NULL,
  state          text NOT NULL,
  input_hash     text,
  input_summary  jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX nodes_segment_idx ON nodes (segment);

-- Overlay IPAM: one address per node per segment CIDR.
-- No foreign key to nodes: steps may record in any order, and purge is explicit.
CREATE TABLE overlay_allocations (
  cidr           cidr NOT NULL,
  ip             inet NOT NULL,
  node_id        text NOT NULL,
  allocated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT overlay_allocations_cidr_ip_key UNIQUE (cidr, ip),
  CONSTRAINT overlay_allocations_cidr_node_key UNIQUE (cidr, node_id),
  CONSTRAINT overlay_allocations_ip_in_cidr CHECK (masklen(ip) = 32 AND ip <<= cidr)
);
CREATE INDEX overlay_allocations_node_idx ON overlay_allocations (node_id);

-- WireGuard peerings between a node and each hub (public keys only).
CREATE TABLE peers (
  node_id          text NOT NULL,
  hub_name         text NOT NULL,
  node_public_key  text NOT NULL,
  hub_public_key   text NOT NULL,
  endpoint         text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node_id, hub_name)
);

-- SPIRE registration entries, and which run created them (undo deletes exactly those).
CREATE TABLE registration_entries (
  entry_id        text PRIMARY KEY,
  node_id         text NOT NULL,
  workload        text NOT NULL,
  spiffe_id       text NOT NULL,
  parent_id       text NOT NULL,
  created_by_run  text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registration_entries_node_idx ON registration_entries (node_id);

-- Running workloads and the SVID each one holds.
CREATE TABLE workloads (
  node_id         text NOT NULL,
  name            text NOT NULL,
  spiffe_id       text NOT NULL,
  pid             integer NOT NULL,
  svid_serial     text NOT NULL,
  svid_not_after  timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node_id, name)
);

-- The audit trail. Append-only (enforced by trigger); idempotency_key makes a
-- retried append of the same event a no-op.
CREATE TABLE events (
  id               bigserial PRIMARY KEY,
  node_id          text NOT NULL,
  workflow_id      text NOT NULL,
  run_id           text NOT NULL,
  step             text NOT NULL,
  kind             text NOT NULL,
  attempt          integer,
  error_type       text,
  detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
  at               timestamptz NOT NULL DEFAULT now(),
  idempotency_key  text NOT NULL,
  CONSTRAINT events_idempotency_key_key UNIQUE (idempotency_key)
);
CREATE INDEX events_node_idx ON events (node_id, id);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events is append-only (% refused)', TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
`,
  },
  {
    version: 2,
    name: 'overlay devices',
    sql: `
-- A node's device on a managed overlay (Bowtie): the id the controller knows it
-- by and its public key. The private key stays on the node, with the client.
CREATE TABLE overlay_devices (
  node_id        text PRIMARY KEY,
  driver         text NOT NULL,
  device_id      text NOT NULL,
  public_key     text NOT NULL,
  controller_url text NOT NULL,
  recorded_at    timestamptz NOT NULL DEFAULT now()
);
`,
  },
  {
    version: 3,
    name: 'node ownership',
    sql: `
-- Where a node keeps its state: one directory on one filesystem (fs_key names the
-- machine: "local:<worker host>" for local and netns nodes, which share the worker's
-- filesystem, "ssh:<host>:<port>" for remote ones). A directory is one live node's
-- at a time: its first step claims it, the undo of that step (or a finished
-- decommission) releases it, so a second node naming it is refused.
CREATE TABLE node_dirs (
  node_id     text PRIMARY KEY,
  fs_key      text NOT NULL,
  node_dir    text NOT NULL,
  claimed_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT node_dirs_fs_dir_key UNIQUE (fs_key, node_dir)
);

-- The overlay interfaces this service created, per network stack (host_key:
-- "local:<worker host>", "netns:<worker host>:<name>", "ssh:<user>@<host>:<port>").
-- Recorded before the interface is made, so a step adopts, and an undo deletes,
-- only an interface of its own node.
CREATE TABLE node_interfaces (
  host_key    text NOT NULL,
  ifname      text NOT NULL,
  node_id     text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (host_key, ifname)
);
CREATE INDEX node_interfaces_node_idx ON node_interfaces (node_id);
`,
  },
  {
    version: 4,
    name: 'overlay key rotation',
    sql: `
-- The node's current WireGuard public key as of its last rotation (rotateOverlayKey),
-- so key age can be computed: now() - rotated_at. A node never rotated has no row;
-- its key is as old as its first peering (peers.created_at). Public data only.
CREATE TABLE overlay_keys (
  node_id               text PRIMARY KEY,
  public_key            text NOT NULL,
  fingerprint           text NOT NULL,
  previous_fingerprint  text,
  rotated_at            timestamptz NOT NULL DEFAULT now()
);
`,
  },
];

function checksum(m: Migration): string {
  return createHash('sha256').update(m.sql).digest('hex');
}

export interface MigrationResult {
  /** Versions applied by this call (empty when the schema was already current). */
  applied: number[];
  /** Highest version present after the call. */
  version: number;
}

/**
 * Apply pending migrations on `client` (a dedicated connection, not in a transaction).
 * Safe to call concurrently from many processes.
 */
export async function applyMigrations(
  client: PoolClient,
  migrations: readonly Migration[] = MIGRATIONS,
  opts: { lockTimeoutMs?: number } = {},
): Promise<MigrationResult> {
  const ordered = [...migrations].sort((a, b) => a.version - b.version);
  ordered.forEach((m, i) => {
    if (i > 0 && ordered[i - 1]!.version === m.version) throw new Error(`duplicate migration version ${m.version}`);
  });
  await client.query('BEGIN');
  try {
    // Bounded wait: a worker stuck mid-migration must not hang every other worker forever.
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [`${opts.lockTimeoutMs ?? 120_000}ms`]);
    await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_KEY.toString()]);
    await client.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version     integer PRIMARY KEY,
        name        text NOT NULL,
        checksum    text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
      )`);
    const { rows } = await client.query<{ version: number; checksum: string }>(
      'SELECT version, checksum FROM schema_migrations',
    );
    const done = new Map(rows.map((r) => [r.version, r.checksum]));
    const applied: number[] = [];
    for (const m of ordered) {
      const recorded = done.get(m.version);
      if (recorded !== undefined) {
        if (recorded !== checksum(m)) {
          throw new Error(
            `migration ${m.version} (${m.name}) was changed after it was applied; add a new migration instead`,
          );
        }
        continue;
      }
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        checksum(m),
      ]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    const version = Math.max(0, ...done.keys(), ...applied);
    return { applied, version };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
