/**
 * The `overlay_keys` table: the node's WireGuard public key as of its last
 * rotation (rotateOverlayKey), so key age can be computed. Public data only:
 * the private key never leaves the node. A node never rotated has no row; its
 * key is as old as its first peering (`peers.created_at`).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { NodeId, WgPublicKey } from '../common/names.js';
import type { Db } from './db.js';
import { check, iso } from './fields.js';

/** The node's WireGuard key as the ledger knows it (public data only). */
export interface OverlayKeyRecord {
  nodeId: string;
  publicKey: string;
  fingerprint: string;
  /** The last rotation; null when the key was never rotated. */
  rotatedAt: string | null;
  /** Since when the node holds this key: the last rotation, else its first peering. */
  since: string;
}

export interface KeyRotationInput {
  nodeId: string;
  publicKey: string;
  fingerprint: string;
  previousFingerprint?: string;
}

const Fingerprint = z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex characters');
const KeyRotationSchema = z.object({
  nodeId: NodeId,
  publicKey: WgPublicKey,
  fingerprint: Fingerprint,
  previousFingerprint: Fingerprint.optional(),
});

/** sha256 of a WireGuard public key, hex, first 16 chars (the same fingerprint the overlay steps report). */
export function keyFingerprint(publicKey: string): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16);
}

/**
 * Record that the node now holds `publicKey` (a finished rotation). Idempotent:
 * recording the same key again keeps the first rotation time.
 */
export async function recordKeyRotation(db: Db, rotation: KeyRotationInput): Promise<OverlayKeyRecord> {
  const r = check(KeyRotationSchema, 'rotation', rotation);
  await db.query(
    `INSERT INTO overlay_keys (node_id, public_key, fingerprint, previous_fingerprint)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (node_id) DO UPDATE SET
       public_key = EXCLUDED.public_key,
       fingerprint = EXCLUDED.fingerprint,
       previous_fingerprint = EXCLUDED.previous_fingerprint,
       rotated_at = now()
     WHERE overlay_keys.public_key <> EXCLUDED.public_key`,
    [r.nodeId, r.publicKey, r.fingerprint, r.previousFingerprint ?? null],
  );
  return (await getOverlayKey(db, r.nodeId))!;
}

/**
 * The node's key and since when it holds it: the last rotation's record, else
 * the key its peerings carry since the first one. Null when neither exists.
 */
export async function getOverlayKey(db: Db, nodeId: string): Promise<OverlayKeyRecord | null> {
  const id = check(NodeId, 'nodeId', nodeId);
  const { rows } = await db.query<{
    public_key: string;
    fingerprint: string | null;
    rotated_at: Date | null;
    since: Date;
  }>(
    `SELECT k.public_key, k.fingerprint, k.rotated_at, k.rotated_at AS since FROM overlay_keys k WHERE k.node_id = $1
     UNION ALL
     SELECT p.node_public_key, NULL, NULL, min(p.created_at) FROM peers p
      WHERE p.node_id = $1 AND NOT EXISTS (SELECT 1 FROM overlay_keys WHERE node_id = $1)
      GROUP BY p.node_public_key
     ORDER BY since
     LIMIT 1`,
    [id],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    nodeId: id,
    publicKey: row.public_key,
    fingerprint: row.fingerprint ?? keyFingerprint(row.public_key),
    rotatedAt: row.rotated_at ? iso(row.rotated_at) : null,
    since: iso(row.since),
  };
}
