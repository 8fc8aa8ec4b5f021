/**
 * The rotateOverlayKey request: the node's provisioning input (validated by the
 * one validation, common/validate.ts) plus how long the new key may take to
 * handshake before the rotation rolls back. Plain JSON, no secret (there is no
 * field for one). Imported by workflows: no Node built-ins here.
 */
import { z } from 'zod';
import { shared } from './schema-cache.js';
import type { ProvisionInput, ProvisionInputJson } from './input.js';
import { describeZodError } from './names.js';
import { checkProvisionInput, PROVISIONED_NODE_RULES, type Checked } from './validate.js';

/** Drivers whose keys rotateOverlayKey can rotate (the Bowtie client keeps and rotates its own key). */
export const ROTATABLE_DRIVERS: readonly string[] = ['wireguard'];

const RotateOptions = shared('rotation:RotateOptions', () =>
  z
    .object({
      /** The node's provisioning input (its last run's, as `nodeboot rotate` reads it). */
      input: z.custom<unknown>((v) => v !== undefined, { error: "is required (the node's provisioning input)" }),
      /** A fresh handshake of the new key with every hub, and the probe, within this long; else roll back. */
      handshakeTimeoutSeconds: z.number().int().min(2).max(600).default(30),
    })
    .strict(),
);

export interface RotateRequestJson {
  input: ProvisionInputJson;
  handshakeTimeoutSeconds?: number;
}

export interface RotateRequest {
  input: ProvisionInput;
  handshakeTimeoutSeconds: number;
}

/**
 * Every problem with a rotation request as "field.path: message" lines (the
 * node input's fields unprefixed, as in a provisioning input), or the parsed request.
 */
export function checkRotateRequest(raw: unknown): Checked<RotateRequest> {
  const opts = RotateOptions.safeParse(raw);
  if (!opts.success) return { ok: false, value: null, problems: describeZodError(opts.error) };
  // A rotation touches only the tunnel: a node provisioned when a `port` alone named the
  // built-in workload (before workloads named their command) can still be rotated.
  const checked = checkProvisionInput(opts.data.input, PROVISIONED_NODE_RULES);
  if (!checked.ok) return checked;
  const input = checked.value;
  if (!ROTATABLE_DRIVERS.includes(input.overlay.driver)) {
    return {
      ok: false,
      value: null,
      problems: [
        `overlay.driver: key rotation supports "${ROTATABLE_DRIVERS.join('", "')}" only; with "${input.overlay.driver}" the overlay client keeps and rotates its own key`,
      ],
    };
  }
  return { ok: true, value: { input, handshakeTimeoutSeconds: opts.data.handshakeTimeoutSeconds }, problems: [] };
}

/** What a finished rotation returns (public data only). */
export interface RotationReceipt {
  nodeId: string;
  workflowId: string;
  runId: string;
  /** The node's public key now, and its fingerprint (sha256, 16 hex). */
  publicKey: string;
  fingerprint: string;
  previousFingerprint: string;
  /** When the ledger recorded the rotation: the key's age counts from here. */
  rotatedAt: string;
  /** The run finished a rotation a lost run had started (the interface already held the new key). */
  resumed: boolean;
  /** The new key's handshakes with every hub and the probe through the tunnel, as verified before the old peer went. */
  hubs: { name: string; latestHandshakeUnix: number; handshakeAgeSeconds: number }[];
  probe: { target: string; connectMs: number };
  /** Hubs the old peer was removed from. */
  removedOldPeer: string[];
}
