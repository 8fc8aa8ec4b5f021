/**
 * The contract between the rotateOverlayKey workflow and its activities
 * (activities/overlay/wireguard/rotate.ts), beside the provisioning contract (types.ts).
 * Workflows import this file as types only.
 *
 * Every request carries the node's validated input; every result is public
 * data (public keys, fingerprints, hub names, times): the new private key is
 * made on the node and stays there. The state a later stage or a rollback
 * needs is in these results (and on the node and hubs, which each stage reads
 * again), so a worker that dies between two stages loses nothing.
 */
import type { ProvisionInput } from '../common/input.js';
import type { HealthEvidence, RunRef } from './types.js';

export interface RotationRequest {
  input: ProvisionInput;
  run: RunRef;
}

/** What stage 1 found and made: the two keys, the node's address, the hubs' keys. */
export interface RotationKeys {
  oldPublicKey: string;
  oldFingerprint: string;
  newPublicKey: string;
  newFingerprint: string;
  /** The node's overlay address: the allowed IP that moves from the old peer to the new one on every hub. */
  overlayIp: string;
  /** Where the new private key waits on the node (0600, beside the current one) until the rotation is finalized. */
  nextKeyPath: string;
  hubs: { name: string; publicKey: string }[];
  /** The interface already ran on the new key: a rotation whose run was lost is being finished. */
  resumed: boolean;
}

export interface RotationStageRequest extends RotationRequest {
  keys: RotationKeys;
}

export interface HubPeersEvidence {
  /** Per hub: whether the new peer was added now (false: it was there already, a retry). */
  hubs: { name: string; added: boolean }[];
}

export interface SwitchEvidence {
  /** Hubs whose route to the node's address now points at the new peer. */
  hubs: string[];
  /** False when the interface was on the new key already (a retry). */
  nodeSwitched: boolean;
}

export interface VerifyRequest extends RotationRequest {
  /** The key the node's interface must hold and every hub must have a handshake with. */
  publicKey: string;
  handshakeTimeoutSeconds: number;
}

export interface VerifyEvidence extends HealthEvidence {
  fingerprint: string;
}

export interface FinalizeEvidence {
  fingerprint: string;
  previousFingerprint: string;
  /** Hubs the old peer was removed from now (empty on a retry). */
  removedOldPeer: string[];
  /** When the ledger recorded the rotation (the key's age counts from here). */
  rotatedAt: string;
}

export interface RollbackRequest extends RotationRequest {
  /** Stage 1's result; null when stage 1 never returned (then the node's key files tell). */
  keys: RotationKeys | null;
  handshakeTimeoutSeconds: number;
}

export interface RollbackEvidence {
  /** The key the node is back on (its current key file's). */
  fingerprint: string;
  /** What was put back or taken away ("route on hub", "new peer on hub", "new key file", "interface key"). */
  restored: string[];
  removed: string[];
  /** The old key's tunnel, proved again after the rollback. */
  verified: VerifyEvidence;
}

export interface RotationActivities {
  /** Stage 1: the node makes its new key beside the current one (or finds the one a lost attempt made). */
  rotatePrepareKey(req: RotationRequest): Promise<RotationKeys>;
  /** Stage 2: every hub knows the new key as a peer with no route yet: the old tunnel carries everything. */
  rotateAddHubPeers(req: RotationStageRequest): Promise<HubPeersEvidence>;
  /** Stage 3: every hub routes the node's address to the new peer, then the node switches to the new key. */
  rotateSwitchKey(req: RotationStageRequest): Promise<SwitchEvidence>;
  /** Stage 4 (and after a rollback): the interface holds `publicKey`, fresh handshakes with every hub, the probe. */
  rotateVerify(req: VerifyRequest): Promise<VerifyEvidence>;
  /** Stage 5: the old peer leaves every hub, the ledger learns the new key, the new key file becomes the key file. */
  rotateFinalize(req: RotationStageRequest): Promise<FinalizeEvidence>;
  /** Undo stages 1-3: routes back to the old peer, the node back on its key file, the new peer and key gone; verified. */
  rotateRollback(req: RollbackRequest): Promise<RollbackEvidence>;
}

/** The rotation activities by name (fault injection may target them). */
export const ROTATION_ACTIVITIES = [
  'rotatePrepareKey',
  'rotateAddHubPeers',
  'rotateSwitchKey',
  'rotateVerify',
  'rotateFinalize',
  'rotateRollback',
] as const satisfies readonly (keyof RotationActivities)[];
